"""Test doubles for Arbiter, shipped with it (as treq ships ``treq.testing``).

:class:`FakeClient` drives a real :class:`protocols.player.PlayerProtocol`
through a ``StringTransport``: a real WebSocket handshake and real (masked)
frames, no socket. Pair it with a server built on a ``task.Clock``::

    clock = task.Clock()
    service, factory, _ = build(Config(), clock=clock)
    service.startService()
    alice = FakeClient(factory)
    alice.send({"t": "hello", "v": 1})
    clock.advance(0.05)
    alice.received()   # -> [welcome, snapshot, ...]
"""

import base64
import json
import os
import struct

import msgpack
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from arbiter import compact
from arbiter.interfaces import IOutbox

from protocols import wire
from protocols.framing import FrameReader, frame

_port = [40000]


class FakeClient:
    """A WebSocket client speaking real frames to a server protocol in memory."""

    def __init__(self, factory, protocols=(wire.JSON,), path="/ws"):
        _port[0] += 1
        addr = IPv4Address("TCP", "127.0.0.1", _port[0])
        self.proto = factory.buildProtocol(addr)
        self.transport = StringTransport(peerAddress=addr)
        self.proto.makeConnection(self.transport)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
                 "Sec-WebSocket-Version: 13"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: %s" % ", ".join(protocols))
        self.proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = self.transport.value()
        head, sep, rest = raw.partition(b"\r\n\r\n")
        self.response = head.decode("latin-1")
        self.status = int(self.response.split(" ", 2)[1]) if self.response else None
        self.subprotocol = None
        for line in self.response.split("\r\n"):
            if line.lower().startswith("sec-websocket-protocol:"):
                self.subprotocol = line.split(":", 1)[1].strip()
        self.encoding = self.subprotocol or wire.JSON
        self.transport.clear()
        self._reader = FrameReader()
        self._reader.feed(rest)
        self.close_code = None
        self.close_reason = None
        self.pongs = 0

    @property
    def open(self):
        return self.status == 101 and self.close_code is None

    # -- sending ---------------------------------------------------------------
    def send_frame(self, payload, opcode):
        """One final frame, masked with a fresh key, as a browser sends it."""
        self.proto.dataReceived(frame(payload, opcode, os.urandom(4)))

    def send(self, msg):
        """Send a map in this connection's encoding."""
        payload, binary = wire.encode(msg, self.encoding)
        self.send_frame(payload, 2 if binary else 1)

    def send_text(self, text):
        self.send_frame(text.encode("utf-8") if isinstance(text, str) else text, 1)

    def send_binary(self, data):
        self.send_frame(data, 2)

    # -- receiving ------------------------------------------------------------
    def frames(self):
        """Every complete frame the server wrote since the last call: (opcode, payload)."""
        data = self.transport.value()
        self.transport.clear()
        return [(opcode, payload) for _, opcode, payload in self._reader.read(data)]

    def received(self):
        """Decoded messages since the last call (close and ping frames are noted)."""
        msgs = []
        for opcode, payload in self.frames():
            if opcode == 1:
                msgs.append(json.loads(payload.decode("utf-8")))
            elif opcode == 2 and payload[:1] == b"\xc1":
                # a compact state frame (sync "compact"): kind, tick and ack read, the
                # frame kept for a CompactMirror (arbiter/compact.py)
                kind, tick, ack, _ = compact.read_header(payload)
                msgs.append({"t": "compact", "kind": kind, "tick": tick, "ack": ack,
                             "frame": payload})
            elif opcode == 2:
                msgs.append(msgpack.unpackb(payload, raw=False, strict_map_key=False))
            elif opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode("utf-8", "replace")
            elif opcode == 9:
                self.pongs += 1
                self.send_frame(payload, 0xA)
        return msgs

    def lose(self):
        """The TCP connection drops (no close handshake)."""
        from twisted.python.failure import Failure
        from twisted.internet.error import ConnectionLost
        self.proto.connectionLost(Failure(ConnectionLost()))

    def hello(self, **fields):
        msg = {"t": "hello", "v": 1}
        msg.update(fields)
        self.send(msg)
        return self.received()


@implementer(IOutbox)
class RecordingOutbox:
    """An outbox that records what a room sends, for room-level unit tests."""

    def __init__(self):
        self.sent = []        # (player id or "*room", msg)
        self.closed = []

    def send(self, player, msg):
        self.sent.append((player.id, msg))

    def broadcast(self, room, msg, exclude=None):
        for p in room.players.values():
            if p is not exclude and p.connected:
                self.sent.append((p.id, msg))

    def congested(self, player):
        return False if player.connected else None

    def send_state(self, room, tick, deliveries, bodies):
        for p, kind, ack, view in deliveries:
            body, _ = bodies[kind, view]
            key = "state" if kind == "snapshot" else "patch"
            self.sent.append((p.id, {"t": kind, "tick": tick, "ack": ack, key: body}))
        return []

    def close(self, player, code, reason):
        self.closed.append((player.id, code))

    def close_all(self, code, reason):
        return None

    def after_tick(self):
        pass

    def to(self, pid):
        return [m for p, m in self.sent if p == pid]
