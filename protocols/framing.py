"""WebSocket framing (RFC 6455 section 5) for the server's busiest frames, in-line.

Autobahn does a lot of Python work per frame (logging helpers, traffic
statistics, an observable event with a Deferred per message). For the frames a
game server handles thousands of times a second that work was about a third of
the server's CPU under the cubes benchmark (docs/BENCHMARKS.md), so:

- ``server_frame`` builds the one unmasked, unfragmented frame Autobahn would
  send for a message (``ArbiterFactory.send_state`` writes state frames with it);
- :class:`InlineFraming`, mixed into the player protocol, reads small, complete,
  masked text/binary/pong frames itself and hands them to ``onMessage`` /
  ``onPong``. Anything else (handshake, close, ping, fragments, frames of 126
  bytes or more, invalid UTF-8 in a text frame, an extension) goes to Autobahn
  unchanged, so limits, close codes and errors are Autobahn's, as before.

It is also the one home of RFC 6455 framing for everything else that speaks
frames without Autobahn: :func:`frame` writes any frame (a client's masked one,
or a malformed one: fin, RSV bits, opcode and declared length are the caller's),
and :class:`FrameReader` reads frames from a byte stream incrementally
(``protocols.testing.FakeClient``, the load tester's ``BotProtocol``).
Two hot paths keep code of their own, because the general one is measurably
slower there (timeit, CPython 3.11): ``server_frame`` is ``frame(payload, 2 if
is_binary else 1)`` written out (the call through :func:`frame` costs the state
path about 60 ns a frame, +60%), and :class:`InlineFraming` keeps its own loop
rather than reading through :class:`FrameReader` (a generator step, a header
check call and the general length decoding per frame: +15 to +20% a frame).
"""

import struct

from twisted.internet import tcp

__all__ = ["FrameReader", "InlineFraming", "frame", "queued", "server_frame", "unmask",
           "write_now"]

_DIRECT = (tcp.Server, tcp.Client)

_head = struct.Struct("!BB").pack
_head16 = struct.Struct("!BBH").pack
_head64 = struct.Struct("!BBQ").pack


def frame(payload, opcode, mask=None, fin=True, rsv=0, length=None):
    """The bytes of one frame (RFC 6455 5.2) carrying ``payload``.

    ``mask``: None for an unmasked frame (a server's), or the 4-byte masking key
    of a client's frame (``os.urandom(4)``, or a fixed key to repeat a run).
    ``fin``, ``rsv`` (the three RSV bits as a number, 0-7), ``opcode`` and
    ``length`` (the payload length the header declares; by default the real one)
    are written as given, so malformed frames can be made too."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    m = 0 if mask is None else 0x80
    if n < 126:
        head = _head(b0, m | n)
    elif n < 65536:
        head = _head16(b0, m | 126, n)
    else:
        head = _head64(b0, m | 127, n)
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def server_frame(payload, is_binary):
    """The bytes of one final, unmasked, uncompressed frame carrying ``payload``:
    ``frame(payload, 2 if is_binary else 1)``, written out for the state path."""
    n = len(payload)
    op = 0x82 if is_binary else 0x81
    if n < 126:
        return _head(op, n) + payload
    if n < 65536:
        return _head16(op, 126, n) + payload
    return _head64(op, 127, n) + payload


def write_now(transport, data):
    """``transport.write(data)``, but sent on the socket at once when nothing is
    queued before it (a plain TCP transport with an empty buffer).

    Twisted's ``write`` only queues: the reactor then registers the socket for
    writing, sends on the next loop and unregisters it, two ``epoll_ctl`` calls
    around every ``send``. For a server that writes thousands of small frames a
    second that was a quarter of its system calls. Whatever the socket does not
    take at once goes through ``transport.write`` as before, so ordering,
    back-pressure (the producer's ``pauseProducing``) and error handling stay
    Twisted's."""
    if (type(transport) in _DIRECT and not transport.dataBuffer
            and not transport._tempDataBuffer and transport.connected
            and not transport.disconnecting and not transport.TLS):
        try:
            n = transport.socket.send(data)
        except OSError:
            n = 0                    # EAGAIN and friends: Twisted's write path copes
        if n == len(data):
            return
        data = data[n:]
    transport.write(data)


def queued(transport):
    """The bytes ``transport`` holds in user space (written, not yet taken by the
    socket), or None when it cannot tell (not a plain TCP transport)."""
    if type(transport) in _DIRECT:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return None


def unmask(payload, key):
    """``payload`` XOR the 4-byte masking ``key`` repeated (RFC 6455 5.3)."""
    n = len(payload)
    if not n:
        return payload
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


class FrameReader:
    """Frames from a byte stream, incrementally: ``for fin, opcode, payload in
    reader.read(data)`` yields each complete frame (the payload unmasked); what is
    not a complete frame yet stays for the next ``read``.

    ``accept(b0, b1)``, if given, sees each frame's first two bytes as soon as
    they arrive; when it says no, reading stops before that frame and
    ``refused`` is True: :meth:`rest` hands that frame and all after it to
    someone else. A caller may also stop in the middle: :meth:`rest` is then
    everything after the last frame it was given."""

    __slots__ = ("accept", "refused", "_buf", "_pos")

    def __init__(self, accept=None):
        self.accept = accept
        self.refused = False
        self._buf = b""
        self._pos = 0

    def feed(self, data):
        """Keep ``data`` for the next :meth:`read` without reading it yet."""
        pos = self._pos
        buf = self._buf
        self._buf = buf[pos:] + data if pos < len(buf) else data
        self._pos = 0

    def read(self, data=b""):
        """``data`` and what was kept: the complete frames, one by one."""
        pos = self._pos
        buf = self._buf
        buf = self._buf = buf[pos:] + data if pos < len(buf) else data
        self._pos = i = 0
        n = len(buf)
        accept = self.accept
        while n - i >= 2:
            b0 = buf[i]
            b1 = buf[i + 1]
            if accept is not None and not accept(b0, b1):
                self.refused = True
                return
            ln = b1 & 0x7F
            h = i + 2
            if ln == 126:
                if n - i < 4:
                    return
                ln = int.from_bytes(buf[h:h + 2], "big")
                h += 2
            elif ln == 127:
                if n - i < 10:
                    return
                ln = int.from_bytes(buf[h:h + 8], "big")
                h += 8
            if b1 & 0x80:
                i = h + 4 + ln
                if i > n:
                    return
                payload = unmask(buf[h + 4:i], buf[h:h + 4])
            else:
                i = h + ln
                if i > n:
                    return
                payload = buf[h:i]
            self._pos = i
            yield b0 >= 0x80, b0 & 0x0F, payload

    def rest(self):
        """Every byte not yet read as a frame; the reader is left empty."""
        rest = self._buf[self._pos:]
        self._buf = b""
        self._pos = 0
        self.refused = False
        return rest


class InlineFraming:
    """Mixin for an Autobahn ``WebSocketServerProtocol``: see the module docstring."""

    inline_framing = True
    _inline_rest = b""

    def dataReceived(self, data):
        if (not self.inline_framing or self.state != self.STATE_OPEN or self.data
                or self.current_frame is not None or self.inside_message
                or self._perMessageCompress is not None):
            return super().dataReceived(data)
        buf = self._inline_rest + data if self._inline_rest else data
        self._inline_rest = b""
        n = len(buf)
        i = 0
        while n - i >= 2:
            b0 = buf[i]
            b1 = buf[i + 1]
            op = b0 & 0x0F
            ln = b1 & 0x7F
            # final, no RSV bits, masked, short, and text, binary or pong
            if b0 & 0xF0 != 0x80 or not b1 & 0x80 or ln > 125 or op not in (1, 2, 10):
                return super().dataReceived(buf[i:])
            end = i + 6 + ln
            if end > n:
                break
            payload = unmask(buf[i + 6:end], buf[i + 2:i + 6])
            if op == 1:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    return super().dataReceived(buf[i:])    # Autobahn fails it (1007)
            i = end
            if op == 10:
                self.onPong(payload)
            else:
                self.onMessage(payload, op == 2)
            if self.state != self.STATE_OPEN:
                if i < n:
                    super().dataReceived(buf[i:])
                return
        if i < n:
            self._inline_rest = buf[i:]
