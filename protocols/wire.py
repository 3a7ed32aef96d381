"""The wire's encodings: JSON and msgpack, strictly parsed and once-encoded.

``parse`` turns the bytes of one client message into plain data (or raises
:class:`~arbiter.schema.WireError` ``bad_message``); the service's
:class:`~arbiter.schema.Schema` then checks its type and fields. ``encode`` and
the state frame parts turn server messages into bytes. The vocabulary (message
types, codes) is :mod:`arbiter.codes`.
"""

import itertools
import json
import math
import re

import msgpack

from arbiter.codes import JSON, MAX_DEPTH, MAX_INT, MSGPACK, SUBPROTOCOLS
from arbiter.schema import WireError, bad as _bad, show as _show


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


_json_decoder = json.JSONDecoder(parse_constant=_reject_constant)

# -- strict decoding (docs/EXTENSIONS.md, "Hostile input") ---------------------
# Nothing that could not be encoded again gets past ``parse``: every string is
# valid Unicode (no lone surrogates), every map key is a string, integers stay
# within what a JavaScript client can hold, floats are finite, msgpack carries
# no bin or ext values, and nesting stops at MAX_DEPTH -- checked before the
# JSON decoder recurses, and without recursion afterwards.

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# '[' and '{' -> +1, ']' and '}' -> -1 (as signed bytes), everything else deleted
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# A JSON payload without an escape ``\u``, a run of 16 digits or an exponent
# holds no lone surrogate, no integer beyond 2^53 - 1 and no float that
# overflows to infinity: it needs no walk. (Digits read as "0", "E" as "e".)
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")
_SIXTEEN_DIGITS = b"0" * 16


def _json_needs_walk(payload):
    if b"\\u" in payload:
        return True
    d = payload.translate(_DIGITS)
    return _SIXTEEN_DIGITS in d or b"e0" in d or b"e-0" in d or b"e+0" in d


def _json_depth_ok(payload):
    """True if no JSON value in ``payload`` nests deeper than MAX_DEPTH (strings skipped)."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH:
        return True
    signs = _STRING.sub(b'""', payload).translate(_BRACKETS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(signs).cast("b")), default=0) <= MAX_DEPTH


def _where(path, key):
    if isinstance(key, int):
        return "%s[%d]" % (path, key)
    return "%s.%s" % (path, key) if path else key


def _bad_text(v):
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        return "holds %s, not valid Unicode" % _show(v[e.start:e.end])
    return None


def _plain(obj, depth):
    """True when ``obj`` (a map or a list at ``depth``) is plain data: the quick check,
    without the paths an error names (``check_plain`` finds those when it fails)."""
    if depth > MAX_DEPTH:
        return False
    if type(obj) is dict:
        for k in obj:
            if type(k) is not str or (not k.isascii() and _bad_text(k)):
                return False
        values = obj.values()
    else:
        values = obj
    for v in values:
        t = type(v)
        if t is str:
            if not v.isascii() and _bad_text(v):
                return False
        elif t is int:
            if not -MAX_INT <= v <= MAX_INT:
                return False
        elif t is float:
            if v - v != 0:                  # NaN or an infinity
                return False
        elif t is dict or t is list:
            if not _plain(v, depth + 1):
                return False
        elif v is not None and t is not bool:
            return False
    return True


def check_plain(obj):
    """Raise ``bad_message`` unless ``obj`` is plain data any client can be sent
    back: maps with string keys, lists, valid Unicode strings, finite floats,
    integers within +-(2^53 - 1), booleans and null, at most MAX_DEPTH deep.
    The error names the field (``config.colors[2]``) and what was wrong."""
    if _plain(obj, 1):
        return
    stack = [(obj, "", 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        value, path, depth = pop()
        if depth > MAX_DEPTH:
            raise _bad("%s nests deeper than %d levels" % (path or "message", MAX_DEPTH))
        items = value.items() if type(value) is dict else enumerate(value)
        for k, v in items:
            tk = type(k)
            if tk is str:
                if not k.isascii() and _bad_text(k):
                    raise _bad("key %s in %s %s" % (_show(k), path or "message", _bad_text(k)))
            elif tk is not int or type(value) is dict:
                raise _bad("map keys must be strings, got %s in %s"
                           % (_show(k), path or "message"))
            tv = type(v)
            if tv is str:
                if not v.isascii():
                    why = _bad_text(v)
                    if why:
                        raise _bad("%s %s" % (_where(path, k), why))
            elif tv is int:
                if not -MAX_INT <= v <= MAX_INT:
                    raise _bad("%s out of range [-(2^53-1), 2^53-1]: %s"
                               % (_where(path, k), _show(v)))
            elif tv is float:
                if not math.isfinite(v):
                    raise _bad("%s must be a finite number, got %r" % (_where(path, k), v))
            elif tv is dict or tv is list:
                if v:
                    push((v, _where(path, k), depth + 1))
                elif depth + 1 > MAX_DEPTH:
                    raise _bad("%s nests deeper than %d levels" % (_where(path, k), MAX_DEPTH))
            elif v is not None and tv is not bool:
                raise _bad("%s: %s values are not allowed" % (_where(path, k), tv.__name__))


def parse(payload, is_binary, encoding):
    """Bytes off the socket -> the raw map (not yet validated), plain data only
    (:func:`check_plain`)."""
    if encoding == MSGPACK:
        if not is_binary:
            raise _bad("text frame in a msgpack session")
        try:
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except UnicodeDecodeError:
            raise _bad("not msgpack: a string is not valid UTF-8")
        except msgpack.StackError:
            raise _bad("message nests deeper than %d levels" % MAX_DEPTH)
        except Exception as e:
            raise _bad("not msgpack: %s" % (type(e).__name__ if not str(e) else e,))
        walk = True
    else:
        if is_binary:
            raise _bad("binary frame in a JSON session")
        if not _json_depth_ok(payload):
            raise _bad("message nests deeper than %d levels" % MAX_DEPTH)
        try:
            obj = _json_decoder.decode(payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad("not JSON: %s" % (e,))
        walk = _json_needs_walk(payload)
    tobj = type(obj)
    if tobj is dict or tobj is list:
        if walk:
            check_plain(obj)
    return obj



# -- encoding ---------------------------------------------------------------

def _json_dumps(obj, _enc=json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode):
    return _enc(obj).encode("utf-8")


def encode(msg, encoding):
    """A server message map -> (payload bytes, is_binary)."""
    if encoding == MSGPACK:
        return msgpack.packb(msg, use_bin_type=True), True
    return _json_dumps(msg), False


def encode_patch(patch, encoding, float32=False):
    """Encode a patch (or state) once, to be spliced into per-player frames."""
    if encoding == MSGPACK:
        return msgpack.packb(patch, use_bin_type=True, use_single_float=float32)
    return _json_dumps(patch)


def state_frame_parts(kind, tick, body, encoding, key="patch"):
    """A ``delta``/``snapshot`` frame in two pieces around the ``ack`` value, from a
    body encoded once per room (``encode_patch``): for every player,
    ``head + ack_bytes(ack, encoding) + tail`` is that player's frame payload."""
    if encoding == MSGPACK:
        return (b"\x84\xa1t" + msgpack.packb(kind) + b"\xa4tick" + msgpack.packb(tick) + b"\xa3ack",
                msgpack.packb(key) + body)
    return (b'{"t":"%s","tick":%d,"ack":' % (kind.encode(), tick),
            b',"%s":' % key.encode() + body + b"}")


def ack_bytes(ack, encoding, _pack=msgpack.packb):
    """The encoded ``ack`` value that goes between ``state_frame_parts``."""
    if encoding == MSGPACK:
        return _pack(ack)
    return b"%d" % ack


def decode_server(payload, is_binary):
    """Decode a server message (for clients and tests)."""
    if is_binary:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return json.loads(payload.decode("utf-8"))


__all__ = [
    "JSON", "MSGPACK", "SUBPROTOCOLS", "WireError", "parse", "check_plain", "encode",
    "encode_patch", "state_frame_parts", "ack_bytes", "decode_server",
]
