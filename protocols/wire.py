"""The wire: message schemas, decoding with validation, encoding (JSON and msgpack).

Everything a client can send is checked here, at the edge. ``decode`` returns
a :class:`Message` or raises :class:`WireError` whose ``code`` is the protocol
error code and whose ``msg`` names the field, the value and what was expected.
Wire constants (subprotocols, error and close codes) live here too.
"""

import itertools
import json
import math
import re
from dataclasses import dataclass

import msgpack

JSON = "arbiter.v1.json"
MSGPACK = "arbiter.v1.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)

# close codes
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TAKEN_OVER = 4000
CLOSE_BAD_TOKEN = 4001
CLOSE_ROOM_FULL = 4003

# error codes (``error`` messages)
BAD_MESSAGE = "bad_message"
NOT_JOINED = "not_joined"
ALREADY_JOINED = "already_joined"
BAD_TOKEN = "bad_token"
ROOM_FULL = "room_full"
# reject codes, in the order of precedence PROTOCOL.md gives
BAD_SEQ = "bad_seq"
RATE_LIMITED = "rate_limited"
NOT_OWNER = "not_owner"
OUT_OF_BOUNDS = "out_of_bounds"
LIMIT = "limit"
MISS = "miss"
SPEED = "speed"

MAX_INT = 2 ** 53 - 1     # the largest integer a JavaScript client holds exactly
MAX_SEQ = MAX_INT
MAX_DEPTH = 32            # maps and arrays nested in one client message
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


class WireError(Exception):
    """A message that could not be accepted: ``code`` and a human ``msg``."""

    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded, validated client message: its type and its checked fields."""

    t: str
    fields: dict

    def __getitem__(self, key):
        return self.fields[key]

    def get(self, key, default=None):
        return self.fields.get(key, default)


def _bad(msg):
    return WireError(BAD_MESSAGE, msg)


def _show(value):
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def _is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and (not isinstance(v, float) or math.isfinite(v)))


def _int(name, v, lo=None, hi=None):
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad("expected integer for %s, got %s" % (name, _show(v)))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _bad("%s out of range [%s, %s]: %s" % (name, lo, hi, v))
    return v


def _number(name, v, lo=None, hi=None):
    if not _is_number(v):
        raise _bad("expected number for %s, got %s" % (name, _show(v)))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _bad("%s out of range [%s, %s]: %s" % (name, lo, hi, v))
    return v


def _text(name, v, lo, hi, no_control=False):
    if not isinstance(v, str):
        raise _bad("expected string for %s, got %s" % (name, _show(v)))
    if not lo <= len(v) <= hi:
        raise _bad("%s must be %d to %d characters, got %d" % (name, lo, hi, len(v)))
    if no_control and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in v):
        raise _bad("%s must not contain control characters" % (name,))
    return v


def _pair(name, v, lo=None, hi=None):
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise _bad("expected [x, z] for %s, got %s" % (name, _show(v)))
    return [_number(name, v[0], lo, hi), _number(name, v[1], lo, hi)]


def entity_id(name, v):
    """An entity id: a positive integer, or the same written in decimal."""
    if isinstance(v, str) and v.isdigit() and v.isascii() and len(v) <= 16:
        v = int(v)
    elif isinstance(v, str):
        raise _bad("expected entity id for %s, got %s" % (name, _show(v)))
    return _int(name, v, 1, MAX_SEQ)


def _seq(f):
    return _int("seq", f.get("seq"), 1, MAX_SEQ)


# public names for field checks in extensions
seq = _seq
integer = _int
number = _number
text = _text
pair = _pair


def _check_hello(f):
    out = {}
    if f.get("v") != 1 or isinstance(f.get("v"), bool):
        raise _bad("expected v = 1, got %s" % _show(f.get("v")))
    if "name" in f:
        out["name"] = _text("name", f["name"], 1, 32, no_control=True)
    room = f.get("room", "main")
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise _bad("room must be 1-64 characters of [A-Za-z0-9_-], got %s" % _show(room))
    out["room"] = room
    if "token" in f:
        if not isinstance(f["token"], str):
            raise _bad("expected string for token, got %s" % _show(f["token"]))
        out["token"] = f["token"]
    # extensions (docs/EXTENSIONS.md): role and sync mode
    role = f.get("role", "player")
    if role not in ("player", "spectator"):
        raise _bad("role must be 'player' or 'spectator', got %s" % _show(role))
    out["role"] = role
    if "sync" in f:
        if f["sync"] not in ("state", "intent"):
            raise _bad("sync must be 'state' or 'intent', got %s" % _show(f["sync"]))
        out["sync"] = f["sync"]
    return out


def _check_move(f):
    return {"seq": _seq(f), "dt": _number("dt", f.get("dt"), 1, 250),
            "dir": _pair("dir", f.get("dir"), -1, 1)}


def _check_spawn(f):
    out = {"seq": _seq(f)}
    if "at" in f:
        out["at"] = _pair("at", f["at"])
    return out


def _check_delete(f):
    return {"seq": _seq(f), "id": entity_id("id", f.get("id"))}


def _check_order(f):
    ids = f.get("ids")
    if not isinstance(ids, (list, tuple)) or not 1 <= len(ids) <= 16:
        raise _bad("ids must be a list of 1 to 16 entity ids, got %s" % _show(ids))
    return {"seq": _seq(f), "ids": [entity_id("ids", i) for i in ids],
            "to": _pair("to", f.get("to"))}


def _check_tag(f):
    return {"seq": _seq(f), "id": entity_id("id", f.get("id")),
            "view": _int("view", f.get("view"), 0, MAX_SEQ)}


def _check_say(f):
    return {"seq": _seq(f), "text": _text("text", f.get("text"), 1, 200)}


def _check_ping(f):
    return {"ts": _number("ts", f.get("ts"))}


def _check_resync(f):
    return {}


CHECKS = {
    "hello": _check_hello,
    "move": _check_move,
    "spawn": _check_spawn,
    "delete": _check_delete,
    "order": _check_order,
    "tag": _check_tag,
    "say": _check_say,
    "ping": _check_ping,
    "resync": _check_resync,
}
# Numbered inputs: queued for the next tick, acked, rate-limited. Games add their own
# with ``register_extension(t, check, input=True)``.
INPUT_TYPES = {"move", "spawn", "delete", "order", "tag", "say"}
# Extension message types handled by other layers (lockstep rooms, setup phase);
# they are validated by their handlers. See docs/EXTENSIONS.md.
EXTENSIONS = {}


def register_extension(t, check, input=False):
    """Accept message type ``t``, validated by ``check(raw_map) -> fields``
    (raise ``WireError(BAD_MESSAGE, ...)``; the helpers ``seq``, ``number``,
    ``integer``, ``text``, ``pair`` and ``entity_id`` name field and value).

    With ``input=True`` it is a numbered input (it must carry ``seq``): queued,
    processed on the next tick, acked and rate-limited like ``move``; a game
    takes it by listing ``t`` in ``Game.input_types``. Otherwise the room's
    ``handle_message`` gets it at once."""
    if t in CHECKS:
        raise ValueError("%s is a protocol v1 message type" % t)
    EXTENSIONS[t] = check
    if input:
        INPUT_TYPES.add(t)


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


def check_plain(obj):
    """Raise ``bad_message`` unless ``obj`` is plain data any client can be sent
    back: maps with string keys, lists, valid Unicode strings, finite floats,
    integers within +-(2^53 - 1), booleans and null, at most MAX_DEPTH deep.
    The error names the field (``config.colors[2]``) and what was wrong."""
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


def classify(payload, is_binary, encoding):
    """Bytes off the socket -> (t, raw map) for a known type, or :class:`WireError`.

    Fields are not checked yet: a known message before ``hello`` is
    ``not_joined`` whatever its fields (PROTOCOL.md)."""
    obj = parse(payload, is_binary, encoding)
    if not isinstance(obj, dict):
        raise _bad("expected a map, got %s" % type(obj).__name__)
    t = obj.get("t")
    if not isinstance(t, str):
        raise _bad("expected string for t, got %s" % _show(t))
    if t not in CHECKS and t not in EXTENSIONS:
        raise _bad("unknown message type %s" % _show(t))
    return t, obj


def validate(t, obj):
    """Check a classified message's fields -> :class:`Message`, or :class:`WireError`."""
    check = CHECKS.get(t) or EXTENSIONS[t]
    return Message(t, check(obj))


def decode(payload, is_binary, encoding):
    """Bytes off the socket -> a validated :class:`Message`, or :class:`WireError`."""
    return validate(*classify(payload, is_binary, encoding))


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


_MP_HEAD = {}


def state_frame(kind, tick, ack, body, encoding, key="patch"):
    """A ``delta``/``snapshot`` frame with this player's ``ack``, from a body
    encoded once per room (``encode_patch``): only the small head differs."""
    if encoding == MSGPACK:
        head = _MP_HEAD.get((kind, key))
        if head is None:
            head = _MP_HEAD[(kind, key)] = b"\x84" + msgpack.packb("t") + msgpack.packb(kind)
        return (head + b"\xa4tick" + msgpack.packb(tick) + b"\xa3ack" + msgpack.packb(ack)
                + msgpack.packb(key) + body), True
    return (b'{"t":"%s","tick":%d,"ack":%d,"%s":' % (kind.encode(), tick, ack, key.encode())
            + body + b"}"), False


def state_frame_parts(kind, tick, body, encoding, key="patch"):
    """``state_frame`` in two pieces around the ``ack`` value: for every player,
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
    "JSON", "MSGPACK", "SUBPROTOCOLS", "WireError", "Message", "classify", "decode", "validate",
    "encode", "encode_patch", "state_frame", "state_frame_parts", "ack_bytes", "decode_server", "register_extension",
    "INPUT_TYPES", "entity_id",
]
