"""The contract: what a frame must get, worked out from its bytes alone
(a reference decoder of its own, not the server's), and state mirrors."""

import itertools
import json
import math
import re
from dataclasses import dataclass

import msgpack

from arbiter import codes
from arbiter.schema import Schema, WireError
from arbiter.tools.fuzzing.values import MAX_DEPTH, MAX_INT, MSGPACK, _JSON_BRACKET, _JSON_STRING, _SURROGATE


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


def default_schema():
    """What a server running the cube game accepts."""
    from arbiter.games.cubes import CubeGame
    from arbiter.lockstep import LockstepRoom
    from arbiter.room import RealtimeRoom
    return Schema.build(CubeGame, (RealtimeRoom, LockstepRoom))


def contract_answer(payload, binary, encoding, joined, max_size=65536, schema=None):
    """The answer the contract gives a (reassembled) message on a connection to a
    server whose :class:`~arbiter.schema.Schema` is ``schema`` (the cube game's by default)."""
    if schema is None:
        schema = default_schema()
    if len(payload) > max_size:
        return Answer("close", 1009, why="over %d bytes" % max_size)
    if not binary and not _utf8_ok(payload):
        return Answer("close", 1007, why="text frame that is not UTF-8")
    try:
        obj = reference_parse(payload, binary, encoding)
    except _Bad as e:
        return Answer("error", codes.BAD_MESSAGE, why=str(e))
    if type(obj) is not dict:
        return Answer("error", codes.BAD_MESSAGE, why="not a map")
    t = obj.get("t")
    if type(t) is not str or not schema.knows(t):
        return Answer("error", codes.BAD_MESSAGE, why="unknown t %r" % (t,))
    if not joined and t != "hello":
        return Answer("error", codes.NOT_JOINED, why="%s before hello" % t)
    if joined and t == "hello":
        return Answer("error", codes.ALREADY_JOINED, why="second hello")
    try:
        msg = schema.validate(t, obj)
    except WireError as e:
        return Answer("error", e.code, why=e.msg)
    except Exception as e:               # the validator itself broke: a server bug
        return Answer("crash", why="%s: %s" % (type(e).__name__, e))
    if t in schema.extensions and not schema.is_input(t):   # lockstep/lobby: not realtime
        return Answer("error", codes.BAD_MESSAGE, why="%s is not used in a realtime room" % t)
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
