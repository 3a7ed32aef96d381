"""In-line WebSocket framing (protocols/framing.py) behaves as Autobahn's own."""

import os
import struct

import pytest
from twisted.internet import task

from arbiter.config import Config
from arbiter.app.server import build
from protocols.testing import FakeClient
from protocols import wire
from protocols.framing import FrameReader, frame, server_frame


@pytest.fixture
def factory(txaio_clock):
    clock = task.Clock()
    service, factory, _ = build(Config(port=0), clock=clock, monotonic=clock.seconds)
    service.startService()
    yield factory
    service.stopService()


def masked(payload, opcode, fin=True):
    return frame(payload, opcode, os.urandom(4), fin)


def joined(factory, encoding=wire.JSON):
    c = FakeClient(factory, [encoding])
    c.hello(name="A")
    return c


def test_server_frame_lengths():
    """Frames of every length class carry the payload with the right header."""
    for n, head in ((5, b"\x82\x05"), (200, b"\x82\x7e\x00\xc8"),
                    (70000, b"\x82\x7f" + struct.pack("!Q", 70000))):
        assert server_frame(b"x" * n, True) == head + b"x" * n
    assert server_frame(b"{}", False) == b"\x81\x02{}"


def test_frame_is_server_frame_unmasked_and_writes_malformed_frames():
    """frame() without a key is server_frame; fin, RSV bits and the length are the caller's."""
    for n in (0, 125, 126, 65535, 65536):
        for binary in (False, True):
            assert frame(b"x" * n, 2 if binary else 1) == server_frame(b"x" * n, binary)
    assert frame(b"ab", 0, fin=False) == b"\x00\x02ab"
    assert frame(b"ab", 1, rsv=5, length=300) == b"\xd1\x7e\x01\x2cab"
    key = b"\x01\x02\x03\x04"
    assert frame(b"\x01\x02\x03\x04\x05", 2, key) == b"\x82\x85" + key + b"\0\0\0\0\x04"


def test_frame_reader_reads_any_split_and_keeps_the_rest():
    """Masked or not, any length class, fed a byte at a time or all at once."""
    sent = [(True, 1, b"a" * 5), (False, 2, b"b" * 200), (True, 0, b""), (True, 9, b"c" * 70000)]
    data = b"".join(frame(p, op, os.urandom(4) if i % 2 else None, fin)
                    for i, (fin, op, p) in enumerate(sent))
    for step in (1, 7, len(data)):
        reader, got = FrameReader(), []
        for i in range(0, len(data), step):
            got.extend(reader.read(data[i:i + step]))
        assert got == sent and reader.rest() == b""
    reader = FrameReader(lambda b0, b1: b0 & 0x0F != 8)
    reader.feed(frame(b"x", 1))
    frames = reader.read(frame(b"\x03\xe8", 8) + frame(b"y", 1)[:1])
    assert next(frames) == (True, 1, b"x")
    assert list(frames) == [] and reader.refused
    assert reader.rest() == frame(b"\x03\xe8", 8) + b"\x81"
    assert not reader.refused
    reader.feed(frame(b"a", 1) + frame(b"b", 2))
    for f in reader.read():
        break                        # the reader's user stops after one frame
    assert reader.rest() == frame(b"b", 2)


def test_frames_split_and_batched(factory):
    """Frames cut at any byte, or several in one read, each reach the server once."""
    c = joined(factory)
    data = b"".join(masked(b'{"t":"ping","ts":%d}' % i, 1) for i in range(3))
    for i in range(len(data)):
        c.proto.dataReceived(data[i:i + 1])
    c.proto.dataReceived(data)
    pongs = [m["ts"] for m in c.received() if m["t"] == "pong"]
    assert pongs == [0, 1, 2, 0, 1, 2]


def test_big_fragmented_and_control_frames_go_to_autobahn(factory):
    """A 300-byte message, a fragmented one and a ping between them all still work."""
    c = joined(factory)
    say = b'{"t":"say","seq":1,"text":"%s"}' % (b"y" * 200)
    first, second = b'{"t":"ping",', b'"ts":7}'
    c.proto.dataReceived(masked(say, 1) + masked(first, 1, fin=False) + masked(b"hi", 9)
                         + masked(second, 0) + masked(b'{"t":"ping","ts":8}', 1))
    msgs = c.received()
    assert [m["ts"] for m in msgs if m["t"] == "pong"] == [7, 8]


def test_invalid_utf8_text_closes_1007(factory):
    """Invalid UTF-8 in a short text frame is still Autobahn's 1007 close."""
    c = joined(factory)
    c.proto.dataReceived(masked(b'{"t":"\xff"}', 1))
    c.received()
    assert c.close_code == 1007


def test_pong_reaches_the_player(factory):
    """A pong read in-line measures the player's round trip."""
    c = joined(factory)
    c.proto.send_ping()
    c.received()              # FakeClient answers pings with pongs
    assert c.pongs == 1
    assert c.proto.player.rtt_ms == 0


def test_join_with_a_snapshot_over_64k(factory):
    """The 64 KiB limit is for what clients send: a big room's snapshot still goes out."""
    a = joined(factory)
    room = a.proto.room
    for i in range(1000, 1800):
        room.state["entities"][str(i)] = {"kind": "cube", "owner": "p1",
                                          "pos": [12.34, 0.5, -23.45], "to": [1.5, 2.5],
                                          "color": "#e6194b"}
    factory.service.tick_once()
    late = FakeClient(factory, [wire.JSON])
    msgs = late.hello(name="late")
    assert [m["t"] for m in msgs[:2]] == ["welcome", "snapshot"]
    assert len(msgs[1]["state"]["entities"]) > 800
    assert late.open


def test_large_message_to_a_client_whose_socket_is_full(factory):
    """A message over 64 KiB to a congested client is queued for it, not an error in the tick."""
    a = joined(factory)
    a.proto.pauseProducing()                  # the transport's buffer is full
    big = {"t": "event", "kind": "say", "player": a.proto.player.id, "text": "y" * 70000}
    factory.send(a.proto.player, big)
    a.proto.resumeProducing()
    (msg,) = [m for m in a.received() if m["t"] == "event"]
    assert msg == big and a.open
