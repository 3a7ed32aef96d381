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
"""

import struct

from twisted.internet import tcp

__all__ = ["InlineFraming", "queued", "server_frame", "write_now"]

_DIRECT = (tcp.Server, tcp.Client)

_head = struct.Struct("!BB").pack
_head16 = struct.Struct("!BBH").pack
_head64 = struct.Struct("!BBQ").pack


def server_frame(payload, is_binary):
    """The bytes of one final, unmasked, uncompressed frame carrying ``payload``."""
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
