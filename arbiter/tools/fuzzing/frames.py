"""Odd payloads, the generator table, and raw WebSocket frames."""

import random

from arbiter.tools.fuzzing.generators import Frame, _base, gen_bin_ext_key, gen_deep, gen_huge_int, gen_lone_surrogate, gen_non_finite, gen_random_bytes, gen_random_fields, gen_trailing, gen_truncated, gen_valid, gen_wrong_frame_type, gen_wrong_type, valid_message
from arbiter.tools.fuzzing.values import JSON, MSGPACK, encode_as, to_json
from protocols import framing


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
    """One masked client frame (RFC 6455 5.2), with a fixed key so a run repeats:
    ``protocols.framing.frame`` (which also writes RSV bits and false lengths)."""
    return framing.frame(payload, opcode, key, fin)


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
