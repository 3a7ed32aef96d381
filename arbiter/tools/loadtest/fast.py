"""BotProtocol: the bots' socket protocol, with the framing of the busy paths done in-line."""

import re
from os import urandom

import msgpack

from arbiter.compact import MARKER, read_header
from protocols.client import ArbiterClientProtocol, open_socket
from protocols.framing import FrameReader, frame, write_now

__all__ = ["BotProtocol", "peek_ack"]


_JSON_HEAD = re.compile(rb'\{"t":"(?:delta|snapshot)","tick":\d+,"ack":(\d+)')


def peek_ack(payload, is_binary):
    """The ``ack`` of a state message without decoding its patch (``--decode-every``
    probe only); None for any other message."""
    if not is_binary:
        m = _JSON_HEAD.match(payload)
        return int(m.group(1)) if m else None
    if payload[0] == MARKER:             # a compact frame: the ack is in its header
        try:
            return read_header(payload)[2]
        except ValueError:
            return None
    u = msgpack.Unpacker(raw=False)
    u.feed(payload)
    try:
        n = u.read_map_header()
        fields = {}
        for _ in range(min(n, 3)):
            k = u.unpack()
            if k in ("patch", "state"):
                break
            fields[k] = u.unpack()
    except Exception:
        return None
    if fields.get("t") in ("delta", "snapshot") and isinstance(fields.get("ack"), int):
        return fields["ack"]
    return None


def _fast_frame(b0, b1):
    """Read in-line: final, no RSV bits, unmasked, and text, binary or ping."""
    return b0 & 0xF0 == 0x80 and not b1 & 0x80 and b0 & 0x0F in (1, 2, 9)


class BotProtocol(ArbiterClientProtocol):
    """ArbiterClientProtocol with the framing of the busy paths done in-line.

    Once open, complete unfragmented text/binary frames from the server go
    straight to ``onMessage`` and pings are answered with a pong; inputs go out
    as one masked frame each. Anything else (close, fragments, extensions) hands
    the rest of the stream to Autobahn for good. This is only the framing (RFC
    6455, with ``protocols.framing``'s ``FrameReader`` and ``frame``); decoding and the state mirror are ArbiterClient's. It exists because
    Autobahn's per-frame Python work made the load generator, not the server,
    the bottleneck (docs/LOADTEST.md); ``--autobahn-framing`` turns it off.
    """

    fast = True

    def connectionMade(self):
        super().connectionMade()
        # Autobahn's client does not turn Nagle off here (it reads the option before
        # the factory sets it), so small inputs could wait for the previous ACK
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass

    def onOpen(self):
        self._reader = FrameReader(_fast_frame)
        self.fast = self.fast and self._perMessageCompress is None
        super().onOpen()

    def dataReceived(self, data):
        if not self.fast or self.state != self.STATE_OPEN:
            return super().dataReceived(data)
        reader = self._reader
        for _, op, payload in reader.read(data):
            if op == 9:
                write_now(self.transport, frame(payload, 0xA, urandom(4)))
            else:
                self.onMessage(payload, op == 2)
                if not self.fast or self.state != self.STATE_OPEN:
                    rest = reader.rest()
                    if rest:
                        super().dataReceived(rest)
                    return
        if reader.refused:           # a frame of another kind: Autobahn's from here on
            self.fast = False
            return super().dataReceived(reader.rest())

    def onMessage(self, payload, isBinary):
        client = self.client
        if client is None:          # a socket the bot left (a redirect)
            return
        if client.skim:
            ack = peek_ack(payload, isBinary)
            if ack is not None:
                client.bytes_in += len(payload)
                client.skimmed(ack)
                return
        super().onMessage(payload, isBinary)

    def send_fast(self, payload, is_binary):
        if self.fast and self.state == self.STATE_OPEN:
            write_now(self.transport, frame(payload, 2 if is_binary else 1, urandom(4)))
        else:
            self.sendMessage(payload, is_binary)


def _open(client, url, encoding, fast=True):
    """protocols.client.open_socket for an existing bot, speaking BotProtocol (also
    for each redirect ``protocols.client.join`` follows)."""
    return open_socket(url, encoding, client=client, protocol=BotProtocol, fast=fast)

