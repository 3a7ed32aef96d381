"""Hostile-input fuzzing of the whole pipeline, in memory (issue 9).

A :class:`Fuzzer` builds a server on one ``task.Clock`` (Autobahn's timers
included), puts honest players in a room (one JSON, one msgpack), and lets
hostile connections (one per encoding) throw generated frames at it: random
bytes, frames of the wrong type, truncated, fragmented and odd payloads, and
well-formed maps with hostile contents (lone surrogates, deep nesting, huge
integers, non-finite numbers, msgpack bin/ext values and non-string keys, wrong
field types, known types with random fields). Honest players play between the
frames and check every state message they get.

Every hostile frame's answer is checked against the contract (PROTOCOL.md and
docs/EXTENSIONS.md), worked out by :func:`contract_answer` from the bytes alone
with a reference decoder of its own, not the server's:

- ``bad_message`` (1008 after the 20th within 10 s), ``not_joined`` or
  ``already_joined``; 1009 for a message over the size cap; 1007 for a text
  frame that is not UTF-8;
- for a well-formed valid message, the normal answer (``welcome`` +
  ``snapshot``, ``pong``, ``bad_token``/``room_full`` with their closes, or
  nothing until the next tick).

No ``internal_error`` may reach any client and no log event may carry a
traceback; every honest input must be acked by the next state message and
applied (its cube exists, its move lands where the client predicted, its
``say`` is heard), and at the end the honest players' mirrors (snapshot +
merge patches) must equal the snapshot a ``resync`` and a newly joining
player get.

Generators take a ``random.Random``; each frame comes from its own seed, so
``(kind, seed)`` reproduces it. ``tests/test_fuzz.py`` draws plans of frames
with hypothesis; ``bench/fuzz.py`` runs the same pipeline for a million frames.
This module needs no hypothesis. See docs/FUZZING.md.
"""

import gc
import itertools
import json
import math
import random
import re
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import msgpack
import txaio
from twisted.internet import task
from twisted.logger import globalLogPublisher

from arbiter.config import Config
from arbiter.movement import round2, step_avatar
from arbiter.testing import FakeClient
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


# == generators ================================================================================

NAME_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.é"
              "ßøñ日本語한국어\u200b\ufeff" + "😀🎲𝄞")
TEXT_CHARS = NAME_CHARS + "\n\t\x00\x7f\"\\{}[]/"
ROOM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
FIELDS = {
    "hello": ("v", "name", "room", "token", "role", "sync"),
    "move": ("seq", "dt", "dir"), "spawn": ("seq", "at"), "delete": ("seq", "id"),
    "order": ("seq", "ids", "to"), "tag": ("seq", "id", "view"), "say": ("seq", "text"),
    "ping": ("ts",), "resync": (),
    "configure": ("seq", "config"), "ready": ("seq", "ready"), "turn": ("seq", "turn", "inputs"),
}
TYPES = tuple(FIELDS)
INPUTS = ("move", "spawn", "delete", "order", "tag", "say")

BIG_INTS = [MAX_INT, -MAX_INT, MAX_INT + 1, -MAX_INT - 1, 2 ** 53 + 2, 2 ** 63 - 1, -2 ** 63,
            2 ** 64 - 1]
JSON_BIG_INTS = BIG_INTS + [10 ** 30, -10 ** 40, Lit("1" + "0" * 4400), Lit("-" + "9" * 5000)]
NON_FINITE = [math.nan, math.inf, -math.inf, Lit("1e400"), Lit("-1e400"),
              Lit("1.8e308"), F32(math.nan), F32(math.inf)]


def text(rng, lo, hi, chars=NAME_CHARS):
    n = rng.randint(lo, hi)
    return "".join(rng.choice(chars) for _ in range(n))


def lone_surrogate(rng):
    return chr(rng.choice([0xD800, 0xDBFF, 0xDC00, 0xDFFF, rng.randint(0xD800, 0xDFFF)]))


def with_surrogate(rng, s):
    i = rng.randint(0, len(s))
    if rng.random() < 0.15:
        bad = "\udc00\ud800"                    # a pair in the wrong order: two lone halves
    else:
        bad = lone_surrogate(rng)
    return s[:i] + bad + s[i:]


def room_name(rng):
    if rng.random() < 0.7:
        return "main"
    return "".join(rng.choice(ROOM_CHARS) for _ in range(rng.randint(1, 12)))


def seq(rng):
    return rng.choice([1, 2, rng.randint(1, 1000), rng.randint(1, MAX_INT), MAX_INT])


def number(rng, lo=-1e6, hi=1e6):
    r = rng.random()
    if r < 0.3:
        return rng.randint(int(lo), int(hi))
    if r < 0.9:
        return rng.uniform(lo, hi)
    return rng.choice([lo, hi, 0, -0.0, 5e-324 if lo <= 0 <= hi else lo])


def entity_id(rng):
    v = rng.choice([1, 2, 3, rng.randint(1, 50), rng.randint(1, MAX_INT)])
    return str(v) if rng.random() < 0.2 else v


def valid_message(rng, t, joined=False):
    """A well-formed message of type ``t`` whose fields all pass validation."""
    if t == "hello":
        m = {"t": "hello", "v": 1}
        if rng.random() < 0.7:
            m["name"] = text(rng, 1, 32)
        m["room"] = room_name(rng)
        if rng.random() < 0.1:
            m["role"] = "spectator"
        elif rng.random() < 0.2:
            m["role"] = "player"
        if rng.random() < 0.2:
            m["sync"] = rng.choice(["state", "intent"])
        if rng.random() < 0.05:
            m["token"] = text(rng, 0, 40, ROOM_CHARS + ".")
        return m
    if t == "ping":
        return {"t": "ping", "ts": number(rng, -MAX_INT, MAX_INT)}
    if t == "resync":
        return {"t": "resync"}
    if t == "move":
        return {"t": "move", "seq": seq(rng), "dt": number(rng, 1, 250),
                "dir": [number(rng, -1, 1), number(rng, -1, 1)]}
    if t == "spawn":
        m = {"t": "spawn", "seq": seq(rng)}
        if rng.random() < 0.8:
            m["at"] = [number(rng, -30, 30), number(rng, -30, 30)]
        return m
    if t == "delete":
        return {"t": "delete", "seq": seq(rng), "id": entity_id(rng)}
    if t == "order":
        return {"t": "order", "seq": seq(rng),
                "ids": [entity_id(rng) for _ in range(rng.randint(1, 16))],
                "to": [number(rng, -30, 30), number(rng, -30, 30)]}
    if t == "tag":
        return {"t": "tag", "seq": seq(rng), "id": entity_id(rng),
                "view": rng.choice([0, 1, rng.randint(0, 1000), MAX_INT])}
    if t == "say":
        return {"t": "say", "seq": seq(rng), "text": text(rng, 1, 200, TEXT_CHARS)}
    # lockstep/lobby extensions: never used in a realtime room, whatever their fields
    return {"t": t, "seq": seq(rng), FIELDS[t][-1]: random_value(rng, JSON)}


def scalar(rng, encoding):
    """A hostile or harmless scalar."""
    r = rng.random()
    if r < 0.2:
        return rng.choice(JSON_BIG_INTS if encoding == JSON else BIG_INTS)
    if r < 0.3:
        return rng.choice(NON_FINITE)
    if r < 0.45:
        return text(rng, 0, 6) if rng.random() < 0.6 else with_surrogate(rng, text(rng, 0, 6))
    if r < 0.55 and encoding == MSGPACK:
        return rng.choice([b"", b"\x00\xff", msgpack.ExtType(rng.randint(0, 127), b"x"),
                           msgpack.Timestamp(rng.randint(0, 2 ** 32)), F32(0.5)])
    return rng.choice([0, 1, -1, 0.5, -0.0, 1e300, 5e-324, True, False, None, "", "x" * 33,
                       "x" * 201, "1", "main", "hello", "😀", "[[[[", "\"{\\"])


def random_value(rng, encoding, depth=0):
    """A random value: mostly scalars, sometimes short lists and maps."""
    r = rng.random()
    if depth >= 3 or r < 0.7:
        return scalar(rng, encoding)
    if r < 0.85:
        return [random_value(rng, encoding, depth + 1) for _ in range(rng.randint(0, 4))]
    return {text(rng, 0, 5): random_value(rng, encoding, depth + 1)
            for _ in range(rng.randint(0, 4))}


def other_type_value(rng, encoding, current):
    """A value of another type than ``current`` (for wrong_type)."""
    for _ in range(20):
        v = random_value(rng, encoding)
        if type(v) is not type(current) or (isinstance(v, (int, float)) and rng.random() < 0.3):
            return v
    return [current]


@dataclass
class Frame:
    """One hostile frame: what it is and the bytes of its payload."""

    kind: str
    payload: bytes
    binary: bool
    note: str = ""
    fragments: list = None          # cut points: sent as several frames
    pings: tuple = ()               # fragment positions followed by a WebSocket ping
    origin: tuple = None            # generate()'s arguments, to make it again

    def __repr__(self):
        p = self.payload
        shown = repr(p[:160]) + ("...(%d bytes)" % len(p) if len(p) > 160 else "")
        frag = " in %d fragments" % (len(self.fragments) + 1) if self.fragments else ""
        return "<%s %s frame%s%s: %s>" % (self.kind, "binary" if self.binary else "text",
                                          frag, " (%s)" % self.note if self.note else "", shown)


def _base(rng, encoding, joined):
    """A valid message to mutate: any type, hello more often before joining."""
    t = "hello" if (not joined and rng.random() < 0.5) else rng.choice(TYPES)
    return valid_message(rng, t, joined)


def _put(rng, m, value, known=None):
    """Put ``value`` in message ``m``: in a known field, an unknown one, or nested."""
    fields = [f for f in FIELDS.get(m.get("t"), ()) if f != "t"]
    r = rng.random()
    if known is not None or (fields and r < 0.45):
        m[known or rng.choice(fields)] = value
        return "in %s" % (known or "a known field")
    if r < 0.75:
        m[rng.choice(["x", "extra", "pad", "data", "ts2"])] = value
        return "in an unknown field"
    m["nest"] = rng.choice([[value], {"k": [1, value]}, [[{"a": value}]]])
    return "nested in an unknown field"


def gen_valid(rng, encoding, joined):
    if not joined and rng.random() < 0.6:
        m = valid_message(rng, "hello")
    else:
        m = valid_message(rng, rng.choice(TYPES), joined)
    return m, "valid %s" % m["t"]


def gen_random_fields(rng, encoding, joined):
    t = rng.choice(TYPES)
    m = valid_message(rng, t, joined) if rng.random() < 0.4 else {"t": t}
    names = FIELDS[t] + ("x", "t2", "", "seq", "v")
    for _ in range(rng.randint(0, 6)):
        key = rng.choice(names) if rng.random() < 0.8 else text(rng, 1, 8)
        m[key] = random_value(rng, encoding)
    return m, "%s with random fields" % t


def gen_lone_surrogate(rng, encoding, joined):
    m = _base(rng, encoding, joined)
    r = rng.random()
    if r < 0.3 and m["t"] in ("hello", "say"):
        f = "name" if m["t"] == "hello" else "text"
        m[f] = with_surrogate(rng, m.get(f) or text(rng, 1, 8))[:32 if f == "name" else 200]
        if not _SURROGATE.search(m[f]):
            m[f] = lone_surrogate(rng)
        where = "in %s" % f
    elif r < 0.45:
        m[with_surrogate(rng, text(rng, 0, 4))] = 1
        where = "in a key"
    elif r < 0.55:
        m["t"] = with_surrogate(rng, m["t"])
        where = "in t"
    elif r < 0.62 and m["t"] == "hello":
        m["room"] = with_surrogate(rng, m["room"])
        where = "in room"
    else:
        where = _put(rng, m, with_surrogate(rng, text(rng, 0, 8)))
    return m, "lone surrogate " + where


def gen_deep(rng, encoding, joined):
    m = _base(rng, encoding, joined)
    if encoding == JSON:
        levels = rng.choice([rng.randint(1, 40), 31, 32, 33, 100, 1000, 10000])
    else:
        levels = rng.choice([rng.randint(1, 40), 31, 32, 33, 100, 1010, 1100, 3000])
    d = Deep(levels, maps=rng.random() < 0.3)
    if rng.random() < 0.1:
        return d, "the message itself %d levels deep" % levels
    if rng.random() < 0.1:
        m["s"] = "[" * rng.randint(33, 200) + '"\\' + "{" * 40   # brackets in a string only
        return m, "brackets inside a string"
    return m, "%d levels %s" % (levels + 1, _put(rng, m, d))


def gen_huge_int(rng, encoding, joined):
    m = _base(rng, encoding, joined)
    v = rng.choice(JSON_BIG_INTS if encoding == JSON else BIG_INTS)
    known = next((f for f in ("seq", "ts", "v", "id", "view", "dt")
                  if f in m and rng.random() < 0.6), None)
    if known is None and "dir" in m and rng.random() < 0.5:
        m["dir"] = [v, 0]
        return m, "%r in dir" % (v,)
    return m, "%r %s" % (v, _put(rng, m, v, known))


def gen_non_finite(rng, encoding, joined):
    m = _base(rng, encoding, joined)
    v = rng.choice(NON_FINITE)
    known = next((f for f in ("ts", "dt") if f in m and rng.random() < 0.6), None)
    if known is None and "to" in m and rng.random() < 0.5:
        m["to"] = [0, v]
        return m, "%r in to" % (v,)
    return m, "%r %s" % (v, _put(rng, m, v, known))


def gen_bin_ext_key(rng, encoding, joined):
    m = _base(rng, encoding, joined)
    r = rng.random()
    if r < 0.4:
        key = rng.choice([1, -1, 0, 2 ** 40, 1.5, True, False, None, b"t", b"\xff"])
        items = list(m.items())
        items.insert(rng.randint(0, len(items)), (key, rng.choice([1, "x", None])))
        if rng.random() < 0.3:            # nested instead
            m["x"] = Pairs([(key, 1)])
            what = "non-string key %r nested" % (key,)
        else:
            m = Pairs(items)
            what = "non-string key %r" % (key,)
    else:
        v = rng.choice([b"", b"bin", b"\xed\xa0\x80", msgpack.ExtType(rng.randint(0, 127), b"e"),
                        msgpack.Timestamp(0), msgpack.ExtType(0, b"")])
        known = "name" if m["t"] == "hello" and rng.random() < 0.5 else None
        known = known or ("text" if m["t"] == "say" and rng.random() < 0.5 else None)
        what = "%r %s" % (v, _put(rng, m, v, known))
    if encoding == JSON:      # a JSON session has no such values: the msgpack bytes, as sent
        return Frame("bin_ext_key", to_msgpack(m), True, note="msgpack " + what), None
    return m, what


def gen_wrong_type(rng, encoding, joined):
    m = _base(rng, encoding, joined)
    fields = [f for f in FIELDS[m["t"]] if f in m] or ["t"]
    f = rng.choice(fields + ["t"] if rng.random() < 0.1 else fields)
    m[f] = other_type_value(rng, encoding, m.get(f))
    return m, "%s = %r" % (f, m[f])


def _payload(rng, encoding, joined):
    """Any generated message as bytes (for truncating, padding, framing wrongly)."""
    g = rng.choice([gen_valid, gen_valid, gen_random_fields, gen_wrong_type, gen_huge_int])
    m, _ = g(rng, encoding, joined)
    return encode_as(m, encoding)[0]


def gen_random_bytes(rng, encoding, joined):
    n = rng.choice([0, 1, 2, 3, rng.randint(0, 16), rng.randint(0, 130), rng.randint(0, 600)])
    if rng.random() < 0.3:
        data = text(rng, 0, n, TEXT_CHARS).encode("utf-8")
        what = "%d random characters" % n
    else:
        data = rng.randbytes(n)
        what = "%d random bytes" % n
    return Frame("random_bytes", data, rng.random() < 0.5, note=what), None


def gen_wrong_frame_type(rng, encoding, joined):
    other = MSGPACK if encoding == JSON else JSON
    r = rng.random()
    if r < 0.5:     # our encoding, the other frame type
        data = _payload(rng, encoding, joined)
        note = "%s bytes in a %s frame" % (encoding.split(".")[-1],
                                           "binary" if encoding == JSON else "text")
        return Frame("wrong_frame_type", data, encoding == JSON, note=note), None
    m, _ = gen_valid(rng, other, joined)         # the other session's message, as it sends it
    data, binary = encode_as(m, other)
    return Frame("wrong_frame_type", data, binary, note="a %s message" % other.split(".")[-1]), None


def gen_truncated(rng, encoding, joined):
    data = _payload(rng, encoding, joined)
    cut = rng.randrange(len(data)) if data else 0
    return Frame("truncated", data[:cut], encoding == MSGPACK,
                 note="%d of %d bytes" % (cut, len(data))), None


def gen_trailing(rng, encoding, joined):
    data = _payload(rng, encoding, joined)
    tail = rng.choice([b" ", b"\n", b"x", b"}", b"{}", b"\x00", b"1", b"//", b"\xc0",
                       rng.randbytes(rng.randint(1, 8))])
    return Frame("trailing_garbage", data + tail, encoding == MSGPACK, note="+%r" % (tail,)), None


ODD_JSON = [b"", b" ", b"\n", b"null", b"true", b"0", b"-0", b"1e400", b'"hello"', b"[]", b"{}",
            b'{"t":null}', b'{"t":"PING","ts":1}', b'{"t":"ping ","ts":1}', b'{"t":"ping"}',
            b'{"t":["ping"],"ts":1}', b'\xef\xbb\xbf{"t":"ping","ts":1}',
            b'{"t":"ping","ts":1}{"t":"ping","ts":2}', b'{"t":"ping","ts":1}\n',
            b'{"t":"ping","ts":1,"t":"resync"}', b'{"t":"ping","ts":-0.0}',
            b'{"t":"ping","ts":1E5}', b'{"t":"ping","ts":0.1e-400}', b'{"t":"hello","v":1.0}',
            b'{"t":"hello","v":true}', b'{"t":"resync","\\u0074":"x"}',
            b'{"t":"ping","ts":1,"s":"\\ud83d\\ude00"}', b'{"t":"ping","ts":1,"s":"\\u0000"}',
            b"[" * 33 + b"]" * 33, b'{"t":"ping","ts":1,"x":"' + b"[" * 100 + b'"}']
ODD_MSGPACK = [b"", b"\xc0", b"\xc1", b"\x90", b"\x80", b"\xa4ping", b"\x91\xa4ping",
               b"\x81\xa1t\xc0", b"\x82\xa1t\xa4ping\xa2ts\xc0",
               b"\x82\xa1t\xa4ping\xa2ts\x01\x00",
               b"\x82\xa1t\xa4ping\xa2ts\xcb" + b"\x7f\xf8" + b"\0" * 6,
               b"\x83\xa1t\xa4ping\xa2ts\x01\xa1t\xa6resync", b"\xdf\xff\xff\xff\xff",
               b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
               b"\x82\xa1t\xa4ping\xa2ts\xd3" + b"\x80" + b"\0" * 7]


def padded(rng, encoding, size, t="ping"):
    """A valid message padded to exactly ``size`` bytes (an unknown field ``pad``)."""
    m = valid_message(rng, t)
    m["pad"] = ""
    base = len(encode_as(m, encoding)[0])
    n = max(0, size - base)
    for _ in range(4):
        m["pad"] = "x" * n
        got = len(encode_as(m, encoding)[0])
        if got == size:
            break
        n = max(0, n + size - got)
    return encode_as(m, encoding)[0]


def gen_odd(rng, encoding, joined):
    if rng.random() < 0.35:
        size = rng.choice([124, 125, 126, 127, 128, 65535, 65536])
        data = padded(rng, encoding, size, rng.choice(["ping", "say", "spawn", "hello"]))
        return Frame("odd_payload", data, encoding == MSGPACK, note="%d bytes" % len(data)), None
    data = rng.choice(ODD_JSON if encoding == JSON else ODD_MSGPACK)
    return Frame("odd_payload", data, encoding == MSGPACK), None


def gen_oversize(rng, encoding, joined):
    size = rng.choice([65537, 65538, rng.randint(65537, 70000)])
    data = padded(rng, encoding, size)
    return Frame("oversize", data, encoding == MSGPACK, note="%d bytes" % len(data)), None


BAD_UTF8 = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xff", b"\xfe", b"\x80",
            b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf", b"\xc3"]


def gen_invalid_utf8(rng, encoding, joined):
    m = _base(rng, JSON, joined)
    data = to_json(m)
    i = rng.randint(0, len(data))
    bad = rng.choice(BAD_UTF8)
    if rng.random() < 0.5 and data.endswith(b'"}'):
        i = len(data) - 2                  # inside the last string
    return Frame("invalid_utf8", data[:i] + bad + data[i:], False, note="%r at %d" % (bad, i)), None


GENERATORS = {
    "valid": gen_valid,
    "random_fields": gen_random_fields,
    "lone_surrogate": gen_lone_surrogate,
    "deep_nesting": gen_deep,
    "huge_int": gen_huge_int,
    "non_finite": gen_non_finite,
    "bin_ext_key": gen_bin_ext_key,
    "wrong_type": gen_wrong_type,
    "random_bytes": gen_random_bytes,
    "wrong_frame_type": gen_wrong_frame_type,
    "truncated": gen_truncated,
    "trailing_garbage": gen_trailing,
    "odd_payload": gen_odd,
    "oversize": gen_oversize,
    "invalid_utf8": gen_invalid_utf8,
}
KINDS = tuple(GENERATORS)
MAP_KINDS = ("lone_surrogate", "deep_nesting", "huge_int", "non_finite", "bin_ext_key",
             "wrong_type", "random_fields")
RAW_KINDS = ("random_bytes", "wrong_frame_type", "truncated", "trailing_garbage",
             "odd_payload", "oversize", "invalid_utf8")
# how often each kind comes up in a long run (bench/fuzz.py)
WEIGHTS = {"valid": 10, "random_fields": 10, "lone_surrogate": 10, "deep_nesting": 6,
           "huge_int": 6, "non_finite": 6, "bin_ext_key": 6, "wrong_type": 10,
           "random_bytes": 8, "wrong_frame_type": 5, "truncated": 8, "trailing_garbage": 3,
           "odd_payload": 6, "oversize": 0.3, "invalid_utf8": 3}


def generate(kind, seed, encoding, joined, fragment=None):
    """The hostile frame of ``kind`` number ``seed`` for a session (``fragment``:
    None = decided by the seed, True/False = forced)."""
    rng = random.Random("%s/%d/%s" % (kind, seed, encoding))
    made, note = GENERATORS[kind](rng, encoding, joined)
    if isinstance(made, Frame):
        frame = made
    else:
        raw = encoding == JSON and rng.random() < 0.1 and kind == "lone_surrogate"
        data, binary = encode_as(made, encoding, raw=raw)
        frame = Frame(kind, data, binary, note=note + (" (written unescaped)" if raw else ""))
    frame.origin = (kind, seed, encoding, joined, fragment)
    if fragment is None:
        fragment = rng.random() < 0.1
    if fragment and len(frame.payload) > 1:
        n = rng.randint(1, min(4, len(frame.payload) - 1))
        frame.fragments = sorted(rng.sample(range(0, len(frame.payload) + 1), n))
        if rng.random() < 0.3:
            frame.pings = (rng.randrange(n),)
    return frame


def message_frame(obj, encoding, kind="explicit", raw=False, note=""):
    """A frame carrying ``obj`` (a generated value: Deep, Lit, Pairs... allowed) as a
    client of ``encoding`` sends it; ``raw`` writes JSON strings unescaped."""
    data, binary = encode_as(obj, encoding, raw=raw)
    return Frame(kind, data, binary, note=note)


def mask_frame(payload, opcode, fin=True, key=b"\x37\xfa\x21\x3d"):
    """One masked client frame (RFC 6455 5.2)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    if n:
        mask = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + payload


def frame_bytes(frame):
    """The bytes a client writes for ``frame`` (fragments and pings included)."""
    op = 2 if frame.binary else 1
    if not frame.fragments:
        return mask_frame(frame.payload, op)
    cuts = [0] + list(frame.fragments) + [len(frame.payload)]
    out = []
    for i in range(len(cuts) - 1):
        last = i == len(cuts) - 2
        out.append(mask_frame(frame.payload[cuts[i]:cuts[i + 1]], op if i == 0 else 0, fin=last))
        if i in frame.pings and not last:
            out.append(mask_frame(b"fz", 9))
    return b"".join(out)


# == the contract: what a frame must get, from its bytes alone =============================

@dataclass(frozen=True)
class Answer:
    """What the contract says a frame gets: ``close`` (code), ``error`` (code),
    ``valid`` (the validated message) or ``crash`` (the validator itself raised)."""

    kind: str
    code: object = None
    msg: object = None
    why: str = ""


class _Bad(Exception):
    pass


_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _json_too_deep(text):
    """True if a JSON text nests deeper than MAX_DEPTH (brackets in strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    stripped = _JSON_STRING.sub('""', text) if '"' in text else text
    brackets = "".join(_JSON_BRACKET.findall(stripped))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def check_plain(obj):
    """Raise _Bad unless ``obj`` is plain data: string keys, valid Unicode,
    integers within +-MAX_INT, finite floats, at most MAX_DEPTH deep (no recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Bad("deeper than %d" % MAX_DEPTH)
        if type(value) is dict:
            for k in value:
                if type(k) is not str:
                    raise _Bad("key %r" % (k,))
                if _SURROGATE.search(k):
                    raise _Bad("lone surrogate in a key")
            values = value.values()
        else:
            values = value
        for v in values:
            tv = type(v)
            if tv is str:
                if _SURROGATE.search(v):
                    raise _Bad("lone surrogate")
            elif tv is int:
                if not -MAX_INT <= v <= MAX_INT:
                    raise _Bad("integer %d" % v)
            elif tv is float:
                if not math.isfinite(v):
                    raise _Bad("float %r" % v)
            elif tv is dict or tv is list:
                stack.append((v, depth + 1))
            elif v is not None and tv is not bool:
                raise _Bad("%s value" % tv.__name__)


def reference_parse(payload, binary, encoding):
    """The client's map, decoded strictly by the contract (not by protocols.wire)."""
    if encoding == MSGPACK:
        if not binary:
            raise _Bad("text frame in a msgpack session")
        try:
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as e:
            raise _Bad("not msgpack: %s" % type(e).__name__)
    else:
        if binary:
            raise _Bad("binary frame in a JSON session")
        text_ = payload.decode("utf-8")
        if _json_too_deep(text_):
            raise _Bad("deeper than %d" % MAX_DEPTH)
        try:
            obj = json.loads(text_, parse_constant=_reject_constant)
        except ValueError as e:
            raise _Bad("not JSON: %s" % (e,))
    if type(obj) in (dict, list):
        check_plain(obj)
    return obj


def _utf8_ok(payload):
    try:
        payload.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def contract_answer(payload, binary, encoding, joined, max_size=65536):
    """The answer the contract gives a (reassembled) message on a connection."""
    if len(payload) > max_size:
        return Answer("close", 1009, why="over %d bytes" % max_size)
    if not binary and not _utf8_ok(payload):
        return Answer("close", 1007, why="text frame that is not UTF-8")
    try:
        obj = reference_parse(payload, binary, encoding)
    except _Bad as e:
        return Answer("error", wire.BAD_MESSAGE, why=str(e))
    if type(obj) is not dict:
        return Answer("error", wire.BAD_MESSAGE, why="not a map")
    t = obj.get("t")
    if type(t) is not str or not (t in wire.CHECKS or t in wire.EXTENSIONS):
        return Answer("error", wire.BAD_MESSAGE, why="unknown t %r" % (t,))
    if not joined and t != "hello":
        return Answer("error", wire.NOT_JOINED, why="%s before hello" % t)
    if joined and t == "hello":
        return Answer("error", wire.ALREADY_JOINED, why="second hello")
    try:
        msg = wire.validate(t, obj)
    except wire.WireError as e:
        return Answer("error", e.code, why=e.msg)
    except Exception as e:               # the validator itself broke: a server bug
        return Answer("crash", why="%s: %s" % (type(e).__name__, e))
    if t in wire.EXTENSIONS:             # lockstep/lobby messages: not in a realtime room
        return Answer("error", wire.BAD_MESSAGE, why="%s is not used in a realtime room" % t)
    return Answer("valid", msg=msg)


# == the run ===================================================================================

def _mirror(target, patch):
    """RFC 7386: apply merge ``patch`` to ``target`` (plain dicts) in place."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            t = target.get(k)
            if not isinstance(t, dict):
                t = target[k] = {}
            _mirror(t, v)
        else:
            target[k] = v
    return target


def _signature(text_):
    """A violation's text without its particulars (numbers, names, values)."""
    text_ = re.sub(r"honest-\d|newcomer", "honest", text_).replace("'s ", "s ")
    text_ = re.split(r"[\[{('\"<]", text_, 1)[0]
    return re.sub(r"-?\d+(\.\d+)?", "N", text_).strip()[:90]


def first_difference(a, b, path="state"):
    """Where two plain values first differ (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                return "%s.%s only in the second: %r" % (path, k, b[k])
            if k not in b:
                return "%s.%s only in the first: %r" % (path, k, a[k])
            d = first_difference(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if a != b or (type(a) is bool) != (type(b) is bool):
        return "%s: %r != %r" % (path, a, b)
    return None


@dataclass
class Report:
    """What a run sent and saw."""

    frames: Counter = field(default_factory=Counter)        # hostile frames by kind
    fragmented: int = 0
    errors: Counter = field(default_factory=Counter)        # error codes to hostile connections
    rejects: Counter = field(default_factory=Counter)       # reject codes to hostile players
    closes: Counter = field(default_factory=Counter)        # close codes to hostile connections
    internal_errors: int = 0
    tracebacks: list = field(default_factory=list)
    log_events: Counter = field(default_factory=Counter)    # every log event, by level
    honest_sent: int = 0
    honest_acked: int = 0
    honest_applied: int = 0
    connections: int = 0
    joins: int = 0
    ticks: int = 0
    simulated: float = 0.0
    elapsed: float = 0.0
    violations: list = field(default_factory=list)          # the first ones, in full
    violation_counts: Counter = field(default_factory=Counter)   # by category
    distinct: Counter = field(default_factory=Counter)      # by signature (expected, got)
    examples: dict = field(default_factory=dict)            # signature -> its first occurrence

    @property
    def frames_sent(self):
        return sum(self.frames.values())

    @property
    def honest_lost(self):
        return self.honest_sent - self.honest_applied

    @property
    def ok(self):
        return not self.violation_counts and not self.tracebacks and not self.internal_errors

    def summary(self):
        """The report as lines of text."""
        rate = self.frames_sent / self.elapsed if self.elapsed else 0
        lines = [
            "frames sent: %d (%d fragmented) in %.1f s, %.0f frames/s; %d ticks, %.1f s simulated"
            % (self.frames_sent, self.fragmented, self.elapsed, rate, self.ticks, self.simulated),
            "  by kind: " + ", ".join("%s %d" % kv for kv in sorted(self.frames.items())),
            "hostile connections: %d opened, %d joined a room" % (self.connections, self.joins),
            "errors by code: " + _counts(self.errors),
            "rejects by code: " + _counts(self.rejects),
            "closes by code: " + _counts(self.closes),
            "internal_error: %d" % self.internal_errors,
            "logged tracebacks: %d" % len(self.tracebacks),
            "log events by level: " + _counts(self.log_events),
            "honest inputs: %d sent, %d acked, %d applied, %d lost"
            % (self.honest_sent, self.honest_acked, self.honest_applied, self.honest_lost),
            "violations: " + _counts(self.violation_counts, "none"),
        ]
        if self.tracebacks:
            lines.append("distinct tracebacks:")
            for tb, n in Counter(self.tracebacks).most_common(10):
                lines.append("  %dx %s" % (n, tb))
        if self.distinct:
            lines.append("distinct violations (count, signature, first occurrence):")
            for sig, n in self.distinct.most_common(30):
                lines.append("  %dx %s\n      %s" % (n, sig, self.examples[sig]))
        return "\n".join(lines)


def _counts(counter, empty="-"):
    return ", ".join("%s %d" % kv for kv in sorted(counter.items(), key=str)) or empty


class _Conn:
    """A client connection the run drives: its FakeClient and what it expects."""

    def __init__(self, client, encoding, opened_at):
        self.client = client
        self.encoding = encoding
        self.opened_at = opened_at
        self.joined = False
        self.you = None
        self.room = None
        self.bad_times = deque()
        self.ping_times = deque()


class _Honest:
    """An honest player: plays by the rules, mirrors the state, checks every answer."""

    def __init__(self, conn, name, rng):
        self.conn = conn
        self.name = name
        self.rng = rng
        self.state = {}
        self.ack = 0
        self.seq = 0
        self.avatar = None
        self.predicted = None
        self.pending = []            # (seq, kind, detail) sent since the last tick
        self.cubes_before = set()
        self.last_say_tick = -100
        self.events = []             # say events heard since the last check
        self.pongs = []
        self.snapshots = 0

    def my_cubes(self):
        me = self.conn.you
        return {k for k, e in self.state.get("entities", {}).items()
                if e.get("owner") == me and e.get("kind") == "cube"}


class Fuzzer:
    """One in-memory server, honest players and hostile connections; see the module doc.

    Use as a context manager (it points Autobahn's timers at its clock and
    watches the global log), then call :meth:`hostile`, :meth:`honest_act`,
    :meth:`tick` and :meth:`gap` in any order, and :meth:`finish` for the
    final checks and the :class:`Report`."""

    def __init__(self, seed=0, config=None, honest=(JSON, MSGPACK), hostiles=(JSON, MSGPACK),
                 room="main", game_factory=None, keep_violations=50):
        self.seed = seed
        self.game_factory = game_factory
        self.rng = random.Random("fuzzer/%d" % seed)
        self.config = config or Config(port=0, grace=2.0)
        self.honest_encodings = honest
        self.hostile_encodings = hostiles
        self.room = room
        self.keep = keep_violations
        self.report = Report()
        self.clock = task.Clock()
        self.honest = []
        self.slots = [None] * len(hostiles)
        self._acted = False
        self._tick_no = 0
        self._started = None
        self._old_loop = None
        self.max_size = self.config.max_message_size
        self.hello_timeout = getattr(self.config, "hello_timeout", HELLO_TIMEOUT)
        # pings a connection may send in any second and still get every pong: with a
        # bucket of ping_burst and ping_rate a second, at most ping_rate, at most half the burst
        self.pings_answered = min(getattr(self.config, "ping_rate", PINGS_ALWAYS_ANSWERED),
                                  getattr(self.config, "ping_burst", 2 * PINGS_ALWAYS_ANSWERED) / 2)
        self._current = None             # the frame being sent (for messages)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        from arbiter.server import build
        self._started = time.perf_counter()
        self._old_loop = txaio.config.loop
        txaio.config.loop = self.clock
        globalLogPublisher.addObserver(self._observe)
        self.service, self.factory, _ = build(self.config, clock=self.clock,
                                              monotonic=self.clock.seconds,
                                              game_factory=self.game_factory)
        self.service.startService()
        for i, enc in enumerate(self.honest_encodings):
            self.honest.append(self._join_honest("honest-%d" % i, enc))

    def stop(self):
        try:
            service = getattr(self, "service", None)
            if service is not None and service.running:
                service.stopService()
        finally:
            globalLogPublisher.removeObserver(self._observe)
            txaio.config.loop = self._old_loop

    def _observe(self, event):
        level = event.get("log_level")
        self.report.log_events[getattr(level, "name", str(level))] += 1
        f = event.get("log_failure")
        if f is not None:
            self.report.tracebacks.append("%s: %s (%s)" % (
                getattr(f.type, "__name__", f.type), str(f.value)[:200],
                (event.get("log_format") or "")[:120]))

    # -- bookkeeping -------------------------------------------------------------
    def violation(self, category, text_, sig=None):
        """Note something a client saw (or the log got) that the contract forbids."""
        r = self.report
        r.violation_counts[category] += 1
        frame = self._current
        where = ""
        if frame is not None:
            where = " after %r" % (frame,)
            if frame.origin is not None:
                where += " = generate%r" % (frame.origin,)
        full = "[%s] %s%s" % (category, text_, where)
        sig = "%s: %s%s" % (category, sig or _signature(text_),
                            " (%s frame)" % frame.kind if frame is not None else "")
        r.distinct[sig] += 1
        if sig not in r.examples:
            r.examples[sig] = full
        if len(r.violations) < self.keep:
            r.violations.append(full)

    def _safely(self, what, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            self.violation("exception", "%s raised %s: %s" % (what, type(e).__name__, e))
            return None

    def _received(self, conn):
        """(messages, close code) the client got since the last call."""
        c = conn.client
        before = c.close_code
        try:
            msgs = c.received()
        except Exception as e:
            self.violation("undecodable", "a frame to the client did not decode: %r" % (e,))
            msgs = []
        for m in msgs:
            if m.get("code") == "internal_error":
                self.report.internal_errors += 1
                self.violation("internal_error", "%s got %r" % (self._who(conn), m))
        return msgs, (c.close_code if c.close_code != before else None)

    def _who(self, conn):
        if isinstance(conn, _Honest):
            conn = conn.conn
        for h in self.honest:
            if h.conn is conn:
                return "honest %s (%s)" % (h.name, conn.encoding.split(".")[-1])
        return "hostile %s connection" % conn.encoding.split(".")[-1]

    # -- honest players ------------------------------------------------------------
    def _join_honest(self, name, encoding):
        client = FakeClient(self.factory, (encoding,))
        conn = _Conn(client, encoding, self.clock.seconds())
        h = _Honest(conn, name, random.Random("%s/%d" % (name, self.seed)))
        client.send({"t": "hello", "v": 1, "name": name, "room": self.room})
        msgs, close = self._received(conn)
        if [m.get("t") for m in msgs[:2]] != ["welcome", "snapshot"] or close:
            self.violation("join", "%s could not join: %r, close %r" % (name, msgs[:3], close))
            return h
        conn.joined = True
        conn.you = msgs[0]["you"]
        h.state = msgs[1]["state"]
        h.ack = msgs[1]["ack"]
        for k, e in h.state["entities"].items():
            if e.get("kind") == "avatar" and e.get("owner") == conn.you:
                h.avatar = k
                h.predicted = (e["pos"][0], e["pos"][2])
        self._honest_absorb(h, msgs[2:])
        return h

    def _send_honest(self, h, msg):
        h.seq += 1
        msg["seq"] = h.seq
        h.conn.client.send(msg)
        self.report.honest_sent += 1

    def honest_act(self):
        """Every honest player sends this tick's inputs (once per tick)."""
        if self._acted:
            return
        self._acted = True
        world = self.config.world
        half = world.size / 2
        for h in self.honest:
            if not h.conn.joined:
                continue
            rng = h.rng
            h.cubes_before = h.my_cubes()
            h.events = []
            if rng.random() < 0.8:
                d = [round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3)]
                self._send_honest(h, {"t": "move", "dt": 50, "dir": d})
                h.pending.append((h.seq, "move", d))
            r = rng.random()
            mine = sorted(h.cubes_before, key=int)
            if r < 0.25 and len(mine) < 6:
                at = [round(rng.uniform(-half, half) * 0.9, 3),
                      round(rng.uniform(-half, half) * 0.9, 3)]
                self._send_honest(h, {"t": "spawn", "at": at})
                h.pending.append((h.seq, "spawn", at))
            elif r < 0.45 and mine:
                ids = rng.sample(mine, rng.randint(1, min(3, len(mine))))
                to = [round(rng.uniform(-half, half), 3), round(rng.uniform(-half, half), 3)]
                self._send_honest(h, {"t": "order", "ids": [int(i) for i in ids], "to": to})
                h.pending.append((h.seq, "order", (ids, to)))
            elif r < 0.5 and mine:
                victim = rng.choice(mine)
                self._send_honest(h, {"t": "delete", "id": int(victim)})
                h.pending.append((h.seq, "delete", victim))
            elif r < 0.56 and self._tick_no - h.last_say_tick >= 10:
                h.last_say_tick = self._tick_no
                words = text(rng, 1, 60, TEXT_CHARS)
                self._send_honest(h, {"t": "say", "text": words})
                h.pending.append((h.seq, "say", words))
            elif r < 0.6:
                ts = round(rng.uniform(0, 1e6), 3)
                h.conn.client.send({"t": "ping", "ts": ts})
                h.pongs.append(ts)
                msgs, close = self._received(h.conn)
                self._honest_absorb(h, msgs, close)
                if h.pongs:
                    self.violation("honest", "%s got no pong for ping %r" % (h.name, ts))
                    h.pongs = []

    def _honest_absorb(self, h, msgs, close=None):
        if close is not None:
            self.violation("honest", "%s was closed with %s" % (h.name, close))
            h.conn.joined = False
        for m in msgs:
            t = m.get("t")
            if t == "delta":
                _mirror(h.state, m["patch"])
                self._honest_state(h, m)
            elif t == "snapshot":
                h.state = m["state"]
                h.snapshots += 1
                self._honest_state(h, m)
            elif t == "event":
                if m.get("kind") == "say":
                    h.events.append((m.get("player"), m.get("text")))
            elif t == "pong":
                if m.get("ts") in h.pongs:
                    h.pongs.remove(m["ts"])
                else:
                    self.violation("honest", "%s got a pong it did not ask for: %r" % (h.name, m))
            else:
                self.violation("honest", "%s got %r" % (h.name, m),
                               sig="an honest player got %s %s" % (t, m.get("code", "")))

    def _honest_state(self, h, m):
        ack = m.get("ack")
        if not isinstance(ack, int) or ack < h.ack:
            self.violation("honest", "%s: ack went from %s to %r" % (h.name, h.ack, ack))
            return
        if ack > h.ack:
            self.report.honest_acked += ack - h.ack
        h.ack = ack

    def _check_honest_tick(self):
        """After a tick: each honest player's inputs acked, and their effects there."""
        for h in self.honest:
            if not h.conn.joined or not h.pending:
                h.pending = []
                continue
            if h.ack != h.seq:
                self.violation("honest", "%s sent up to seq %d, the tick's state acked %d"
                               % (h.name, h.seq, h.ack))
                h.pending = []
                continue
            ents = h.state.get("entities", {})
            mine_after = h.my_cubes()
            for seq_, kind, detail in h.pending:
                ok = True
                if kind == "move":
                    x, z = h.predicted
                    world = self.config.world
                    h.predicted = step_avatar(x, z, detail[0], detail[1], 50,
                                              world.avatar_speed, world.size)
                elif kind == "spawn":
                    new = mine_after - h.cubes_before
                    want = [round2(detail[0]), 0.5, round2(detail[1])]
                    ok = len(new) == 1 and ents[next(iter(new))]["pos"] == want
                    if not ok:
                        self.violation("honest", "%s: spawn %d at %r: new cubes %r"
                                       % (h.name, seq_, want, {k: ents[k] for k in new}))
                elif kind == "order":
                    ids, to = detail
                    to = [round2(to[0]), round2(to[1])]
                    for i in ids:
                        e = ents.get(i)
                        if e is None or not (e.get("to") == to or (
                                "to" not in e and [e["pos"][0], e["pos"][2]] == to)):
                            ok = False
                            self.violation("honest", "%s: order %d of cube %s to %r: cube is %r"
                                           % (h.name, seq_, i, to, e))
                elif kind == "delete":
                    ok = detail not in ents
                    if not ok:
                        self.violation("honest", "%s: deleted cube %s still there"
                                       % (h.name, detail))
                elif kind == "say":
                    for other in self.honest:
                        if other.conn.joined and (h.conn.you, detail) not in other.events:
                            ok = False
                            self.violation("honest", "%s did not hear %s say %r"
                                           % (other.name, h.name, detail))
                if ok:
                    self.report.honest_applied += 1
            if any(k == "move" for _, k, _ in h.pending):
                av = ents.get(h.avatar)
                got = (av["pos"][0], av["pos"][2]) if av else None
                if got != h.predicted:
                    moves = sum(1 for _, k, _ in h.pending if k == "move")
                    self.report.honest_applied -= moves
                    self.violation("honest", "%s's avatar is at %r, predicted %r"
                                   % (h.name, got, h.predicted))
                    h.predicted = got or h.predicted
            h.pending = []
        for h in self.honest:
            h.events = []

    # -- hostile connections ---------------------------------------------------------
    def _open(self, slot):
        enc = self.hostile_encodings[slot]
        client = FakeClient(self.factory, (enc,))
        self.report.connections += 1
        conn = self.slots[slot] = _Conn(client, enc, self.clock.seconds())
        if client.status != 101:
            self.violation("handshake", "hostile %s connection refused: %s"
                           % (enc, client.response))
        return conn

    def _drop(self, slot):
        conn = self.slots[slot]
        self.slots[slot] = None
        if conn is not None:       # the client goes away (no close handshake)
            self._safely("connectionLost", conn.client.lose)

    def hostile(self, slot, kind, seed, fragment=None):
        """Send hostile frame (kind, seed) on connection ``slot`` and check its answer."""
        conn = self._conn(slot)
        return self.send(slot, generate(kind, seed, conn.encoding, conn.joined, fragment))

    def _conn(self, slot):
        if self.slots[slot] is not None:     # events since its last frame (a leave, say)
            self._hostile_background(slot, self.slots[slot])
        return self.slots[slot] or self._open(slot)

    def send(self, slot, frame):
        """Send ``frame`` on hostile connection ``slot`` (opened if need be) and check
        the answer against the contract; returns (messages, close code) it got."""
        conn = self._conn(slot)
        self.report.frames[frame.kind] += 1
        if frame.fragments:
            self.report.fragmented += 1
        self._current = frame
        try:
            return self._hostile_frame(slot, conn, frame)
        finally:
            self._current = None

    def _hostile_frame(self, slot, conn, frame):
        answer = contract_answer(frame.payload, frame.binary, conn.encoding, conn.joined,
                                 self.max_size)
        now = self.clock.seconds()
        if frame.pings or (answer.kind == "valid" and answer.msg.t == "ping"):
            conn.ping_times.append(now)
        while conn.ping_times and conn.ping_times[0] <= now - 1.0:
            conn.ping_times.popleft()
        busy_pinger = len(conn.ping_times) > self.pings_answered
        self._safely("dataReceived", conn.client.proto.dataReceived, frame_bytes(frame))
        msgs, close = self._received(conn)
        # everyone else on the server sees only events between ticks
        for other_slot, other in enumerate(self.slots):
            if other is not None and other is not conn:
                self._hostile_background(other_slot, other)
        self._count(msgs, close)
        seen = msgs
        if busy_pinger:       # over the ping rate, one rate_limited error may come with any answer
            msgs = [m for m in msgs if m.get("code") != wire.RATE_LIMITED or m.get("t") != "error"]
        self._judge(conn, answer, msgs, close, busy_pinger)
        for m in msgs:        # follow the server, right or wrong, so one mistake is reported once
            if m.get("t") == "welcome" or m.get("code") == wire.ALREADY_JOINED:
                conn.joined = True
        if close is not None or conn.client.close_code is not None:
            self._drop(slot)
        return seen, close

    def _count(self, msgs, close):
        for m in msgs:
            if m.get("t") == "error":
                self.report.errors[m.get("code")] += 1
            elif m.get("t") == "reject":
                self.report.rejects[m.get("code")] += 1
        if close is not None:
            self.report.closes[close] += 1

    def _judge(self, conn, answer, msgs, close, busy_pinger):
        """Compare what the connection got with what the contract says it gets."""
        def wrong(expected):
            got = ", ".join("%s %s" % (m.get("t"), m.get("code", "")) if m.get("t") == "error"
                            else str(m.get("t")) for m in msgs) or "nothing"
            got += ", close %s" % close if close else ""
            why = re.sub(r"-?\d+", "N", answer.why.split(":")[0])[:40]
            self.violation("contract", "expected %s (%s), got %r%s" % (
                expected, answer.why, msgs[:4], ", close %s" % close if close else ""),
                sig="expected %s (%s), got %s" % (expected, why, got))

        kinds = [m.get("t") for m in msgs]
        if answer.kind == "crash":
            self.violation("contract", "the validator raised on a frame: %s" % answer.why)
            return
        if answer.kind == "close":
            if close != answer.code or msgs:
                wrong("close %d" % answer.code)
            return
        if answer.kind == "error":
            errs = [m.get("code") for m in msgs if m.get("t") == "error"]
            if kinds != ["error"] or errs != [answer.code]:
                wrong("error %s" % answer.code)
                if wire.BAD_MESSAGE in errs:
                    self._note_bad(conn)
                return
            if answer.code != wire.BAD_MESSAGE:
                if close is not None:
                    wrong("error %s and no close" % answer.code)
                return
            limit = self._note_bad(conn)
            if limit and close != wire.CLOSE_POLICY:
                wrong("error bad_message and close 1008 (the %dth within 10 s)" % BAD_LIMIT)
            elif not limit and close is not None:
                wrong("error bad_message and no close")
            return
        msg = answer.msg
        t = msg.t
        if t == "hello":
            self._judge_hello(conn, msg, msgs, close, wrong)
        elif t == "ping":
            if kinds == ["pong"] and msgs[0].get("ts") == msg["ts"] and close is None:
                return
            if busy_pinger and not msgs and close is None:
                return           # over the ping rate: no pong
            wrong("pong with ts %r" % (msg["ts"],))
        else:                     # resync and numbered inputs: answered on the tick
            if msgs or close is not None:
                wrong("nothing until the next tick")

    def _judge_hello(self, conn, msg, msgs, close, wrong):
        kinds = [m.get("t") for m in msgs]
        if kinds == ["welcome", "snapshot"] and close is None and "token" not in msg.fields:
            w = msgs[0]
            if w.get("room") != msg["room"] or (
                    "name" in msg.fields and w.get("name") != msg["name"]):
                wrong("welcome to room %r as %r" % (msg["room"], msg.get("name")))
            conn.joined = True
            conn.you = w.get("you")
            conn.room = msg["room"]
            self.report.joins += 1
            return
        if kinds == ["error"]:
            code = msgs[0].get("code")
            if code == wire.BAD_TOKEN and "token" in msg.fields and close == wire.CLOSE_BAD_TOKEN:
                return
            if code == wire.ROOM_FULL and close == wire.CLOSE_ROOM_FULL and msg["role"] == "player":
                return
        wrong("welcome + snapshot (or bad_token/4001, room_full/4003)")

    def _note_bad(self, conn):
        """Count a bad_message; True if it is the 20th within the window."""
        now = self.clock.seconds()
        conn.bad_times.append(now)
        while conn.bad_times and conn.bad_times[0] <= now - BAD_WINDOW:
            conn.bad_times.popleft()
        return len(conn.bad_times) >= BAD_LIMIT

    def _hostile_background(self, slot, conn):
        """Messages to a hostile connection it did not just ask for (events, state)."""
        msgs, close = self._received(conn)
        if not msgs and close is None:
            return
        self._count(msgs, close)
        for m in msgs:
            t = m.get("t")
            if t in ("delta", "snapshot", "event", "correct", "reject"):
                continue
            self.violation("unexpected", "%s got %r between its frames" % (self._who(conn), m),
                           sig="a hostile connection got %s %s" % (t, m.get("code", "")))
        if close is not None:
            age = self.clock.seconds() - conn.opened_at
            if not (close == wire.CLOSE_POLICY and not conn.joined
                    and age >= self.hello_timeout - 1e-6):
                self.violation("unexpected", "%s closed with %s (joined %s, %.2f s old)"
                               % (self._who(conn), close, conn.joined, age))
            self._drop(slot)

    # -- time ---------------------------------------------------------------------------
    def tick(self):
        """Honest players act (if they have not yet) and the server ticks once."""
        self.honest_act()
        ticks = self.service.ticks
        for _ in range(3):
            # to the loop's next call; after a gap that ended on an interval boundary
            # that call can find itself in the same interval (float rounding) and
            # tick nothing, so go on to the following one
            loop = self.service._loop
            due = loop.call.getTime() if loop is not None and loop.call is not None else \
                self.clock.seconds() + 1.0 / self.config.tick_rate
            step = max(0.0, due - self.clock.seconds()) + 1e-9
            self._safely("the clock", self.clock.advance, step)
            if self.service.ticks != ticks:
                break
        self._advance(0)

    def gap(self, seconds):
        """A quiet stretch of ``seconds`` (one late tick for everything queued)."""
        self._advance(seconds)

    def _advance(self, seconds):
        self._safely("the clock", self.clock.advance, seconds)
        self._acted = False
        self._tick_no += 1
        self.report.ticks += 1
        self.drain()
        self._check_honest_tick()

    def drain(self):
        """Read every client's messages."""
        for slot, conn in enumerate(self.slots):
            if conn is not None:
                self._hostile_background(slot, conn)
        for h in self.honest:
            if h.conn.joined:
                msgs, close = self._received(h.conn)
                self._honest_absorb(h, msgs, close)

    # -- the end ---------------------------------------------------------------------------
    def finish(self):
        """Final checks: acks, mirrors against resync and a newcomer's snapshot. The Report."""
        try:
            self._finish()
        except Exception as e:
            self.violation("exception", "final checks raised %s: %s" % (type(e).__name__, e))
        gc.collect()             # "Unhandled error in Deferred" is logged on collection
        self.report.simulated = self.clock.seconds()
        self.report.elapsed = time.perf_counter() - self._started
        return self.report

    def _finish(self):
        for slot in range(len(self.slots)):
            if self.slots[slot] is not None:
                self._drop(slot)
        self.tick()
        self.gap(self.config.grace + 0.5)          # hostile players' grace runs out
        self._acted = True                          # from here on, honest players only watch
        self.tick()
        live = [h for h in self.honest if h.conn.joined]
        for h in self.honest:
            if h.ack != h.seq:
                self.violation("honest", "%s: %d inputs sent, ack %d at the end"
                               % (h.name, h.seq, h.ack))
        # resync: one honest player's snapshot against the others' mirrors, in turn
        for h in live:
            h.conn.client.send({"t": "resync"})
            self._acted = True
            snapshots = h.snapshots
            self.tick()
            if h.snapshots != snapshots + 1:
                self.violation("state", "%s got %d snapshots after resync"
                               % (h.name, h.snapshots - snapshots))
                continue
            for other in live:
                if other is not h:
                    d = first_difference(other.state, h.state)
                    if d:
                        self.violation("state", "%s's mirror differs from %s's resync snapshot: %s"
                                       % (other.name, h.name, d))
        # a newcomer joins: welcome + snapshot, equal to every mirror but for itself
        enc = self.rng.choice(self.honest_encodings or (JSON,))
        newcomer = self._join_honest("newcomer", enc)
        if not newcomer.conn.joined:
            return
        self.honest.append(newcomer)
        me = newcomer.conn.you
        theirs = json.loads(json.dumps(newcomer.state))
        theirs["players"].pop(me, None)
        if newcomer.avatar is not None:
            theirs["entities"].pop(newcomer.avatar, None)
        for h in live:
            d = first_difference(h.state, theirs)
            if d:
                self.violation("state", "%s's mirror differs from the newcomer's snapshot: %s"
                               % (h.name, d))
        self._acted = False
        self.tick()                                 # everyone plays one more tick
        for h in live:
            d = first_difference(h.state, newcomer.state)
            if d:
                self.violation("state", "%s's mirror differs from the newcomer's after a tick: %s"
                               % (h.name, d))
        for h in self.honest:
            if h.ack != h.seq:
                self.violation("honest", "%s: %d inputs sent, ack %d at the end"
                               % (h.name, h.seq, h.ack))
        if self.report.honest_applied != self.report.honest_sent:
            self.violation("honest", "%d honest inputs sent, %d applied"
                           % (self.report.honest_sent, self.report.honest_applied))


def run_random(frames, seed=0, frames_per_tick=8, gap_every=400, weights=None, fuzzer=None,
               progress=None):
    """Send ``frames`` hostile frames drawn from ``seed`` (bench/fuzz.py); the Report."""
    rng = random.Random("plan/%d" % seed)
    weights = weights or WEIGHTS
    kinds = [k for k in KINDS if weights.get(k)]
    cum = []
    total = 0.0
    for k in kinds:
        total += weights[k]
        cum.append(total)
    fz = fuzzer or Fuzzer(seed=seed)
    with fz:
        sent = 0
        while sent < frames:
            n = min(frames - sent, rng.randint(0, 2 * frames_per_tick))
            act_at = rng.randint(0, n)
            for i in range(n):
                if i == act_at:
                    fz.honest_act()
                kind = kinds[_bisect(cum, rng.random() * total)]
                fz.hostile(rng.randrange(len(fz.slots)), kind, rng.getrandbits(32))
            sent += n
            if gap_every and rng.random() < 1.0 / gap_every:
                fz.gap(rng.choice([0.3, 1.0, 2.5, 6.0, 10.5, 12.0]))
            else:
                fz.tick()
            if progress is not None:
                progress(sent, fz.report)
        return fz.finish()


def _bisect(cum, x):
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo
