"""Values a generator puts in a message, and encoders that can write what
json.dumps / msgpack.packb will not (the contract's numbers too)."""

import json
import math
import re
import struct

import msgpack

from protocols import wire


JSON, MSGPACK = wire.JSON, wire.MSGPACK

# -- the contract's numbers ------------------------------------------------------------
MAX_INT = 2 ** 53 - 1           # integers outside +-MAX_INT are bad_message
MAX_DEPTH = 32                  # maps and lists nested deeper are bad_message
BAD_LIMIT = 20                  # the 20th bad_message ...
BAD_WINDOW = 10.0               # ... within 10 s closes with 1008
PINGS_ALWAYS_ANSWERED = 16      # pings per connection and second that always get a pong
HELLO_TIMEOUT = 10.0            # an unjoined connection may be closed 1008 after this

_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


# == values a generator puts in a message ================================================

class Lit:
    """A number written literally in JSON (``1e400``, ``NaN``, 5000 digits); in
    msgpack, the float (or nothing) it stands for."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "Lit(%s)" % (self.text if len(self.text) < 24 else self.text[:20] + "...")

    def as_float(self):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(
            self.text) or float(self.text)


class Deep:
    """``levels`` nested lists (or maps): ``[[[...]]]`` built without recursion."""

    __slots__ = ("levels", "maps")

    def __init__(self, levels, maps=False):
        self.levels = levels
        self.maps = maps

    def __repr__(self):
        return "Deep(%d%s)" % (self.levels, ", maps" if self.maps else "")


class Pairs:
    """A map as explicit (key, value) pairs: non-string or repeated keys."""

    __slots__ = ("items",)

    def __init__(self, items):
        self.items = list(items)

    def __repr__(self):
        return "Pairs(%r)" % (self.items,)


class F32:
    """A float sent as msgpack float32."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "F32(%r)" % (self.value,)


# -- encoders that can say what json.dumps / msgpack.packb will not ---------------------------

def _json_str(s, raw):
    if raw:      # unescaped: a lone surrogate becomes bytes that are not UTF-8
        return json.dumps(s, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(s).encode("ascii")


def to_json(obj, raw=False):
    """JSON bytes for a generated value; ``raw`` writes strings unescaped."""
    t = type(obj)
    if t is str:
        return _json_str(obj, raw)
    if t is bool:
        return b"true" if obj else b"false"
    if obj is None:
        return b"null"
    if t is int:
        return str(obj).encode()
    if t is float:
        if math.isnan(obj):
            return b"NaN"
        if math.isinf(obj):
            return b"Infinity" if obj > 0 else b"-Infinity"
        return repr(obj).encode()
    if t is Lit:
        return obj.text.encode()
    if t is F32:
        return to_json(obj.value, raw)
    if t is Deep:
        if obj.maps:
            return b'{"a":' * obj.levels + b"0" + b"}" * obj.levels
        return b"[" * obj.levels + b"]" * obj.levels
    if t is dict or t is Pairs:
        items = obj.items() if t is dict else obj.items
        return b"{" + b",".join(
            (_json_str(k, raw) if isinstance(k, str) else _json_str(str(k), raw))
            + b":" + to_json(v, raw) for k, v in items) + b"}"
    if t is list or t is tuple:
        return b"[" + b",".join(to_json(v, raw) for v in obj) + b"]"
    if t is bytes:                      # JSON has no bytes: a list of numbers
        return to_json(list(obj), raw)
    if t is msgpack.ExtType:
        return to_json([obj.code, list(obj.data)], raw)
    if t is msgpack.Timestamp:
        return to_json(obj.seconds, raw)
    raise TypeError("cannot write %r as JSON" % (obj,))


def _mp_head(n, fix, fixmax, c16, c32):
    if n <= fixmax:
        return bytes([fix | n])
    if n < 65536:
        return bytes([c16]) + struct.pack("!H", n)
    return bytes([c32]) + struct.pack("!I", n)


def _mp_str(s):
    b = s.encode("utf-8", "surrogatepass")
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    if n < 65536:
        return b"\xda" + struct.pack("!H", n) + b
    return b"\xdb" + struct.pack("!I", n) + b


def to_msgpack(obj):
    """msgpack bytes for a generated value (strings may hold lone surrogates)."""
    t = type(obj)
    if t is str:
        return _mp_str(obj)
    if t is Lit:
        try:
            return msgpack.packb(obj.as_float())
        except (ValueError, OverflowError):
            return msgpack.packb(math.inf)
    if t is F32:
        return msgpack.packb(obj.value, use_single_float=True)
    if t is Deep:
        if obj.maps:
            return b"\x81\xa1a" * (obj.levels - 1) + b"\x80"
        return b"\x91" * (obj.levels - 1) + b"\x90"
    if t is dict or t is Pairs:
        items = list(obj.items() if t is dict else obj.items)
        return _mp_head(len(items), 0x80, 15, 0xDE, 0xDF) + b"".join(
            to_msgpack(k) + to_msgpack(v) for k, v in items)
    if t is list or t is tuple:
        return _mp_head(len(obj), 0x90, 15, 0xDC, 0xDD) + b"".join(to_msgpack(v) for v in obj)
    if t is int and not -2 ** 63 <= obj < 2 ** 64:
        return msgpack.packb(float(obj) if abs(obj) < 1e308 else math.inf)
    return msgpack.packb(obj, use_bin_type=True)


def encode_as(obj, encoding, raw=False):
    """(payload, is_binary) of a generated message in a session's encoding."""
    if encoding == MSGPACK:
        return to_msgpack(obj), True
    return to_json(obj, raw), False
