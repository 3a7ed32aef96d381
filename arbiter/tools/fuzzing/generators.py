"""Generators of hostile frames: each takes a ``random.Random``."""

import math
from dataclasses import dataclass

import msgpack

from arbiter.tools.fuzzing.values import Deep, F32, JSON, Lit, MAX_INT, MSGPACK, Pairs, _SURROGATE, encode_as, to_msgpack


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
