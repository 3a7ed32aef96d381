"""Input schemas: the field checks, and the :class:`Schema` one service accepts.

Everything a client can send is checked against a :class:`Schema` before a
room sees it. A service builds its own from its game class (``Game.input_checks``:
the game's own numbered inputs) and its room kinds (``messages``: the setup
lobby's ``configure``/``ready``, lockstep's ``turn``), so what one server
accepts never depends on what else the process imported. A check takes the raw
map and returns the checked fields, or raises :class:`WireError` whose ``code``
is the protocol error code and whose ``msg`` names the field, the value and
what was expected. The bytes -> map step is ``protocols.wire.parse``.
"""

import math
import re
from dataclasses import dataclass

from arbiter import codes

MAX_SEQ = codes.MAX_INT
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


def bad(msg):
    """A ``bad_message`` :class:`WireError`."""
    return WireError(codes.BAD_MESSAGE, msg)


def show(value):
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


# -- field checks (public: games and room kinds use them in their own checks) ----------

def is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and (not isinstance(v, float) or math.isfinite(v)))


def integer(name, v, lo=None, hi=None):
    if not isinstance(v, int) or isinstance(v, bool):
        raise bad("expected integer for %s, got %s" % (name, show(v)))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise bad("%s out of range [%s, %s]: %s" % (name, lo, hi, v))
    return v


def number(name, v, lo=None, hi=None):
    if not is_number(v):
        raise bad("expected number for %s, got %s" % (name, show(v)))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise bad("%s out of range [%s, %s]: %s" % (name, lo, hi, v))
    return v


def text(name, v, lo, hi, no_control=False):
    if not isinstance(v, str):
        raise bad("expected string for %s, got %s" % (name, show(v)))
    if not lo <= len(v) <= hi:
        raise bad("%s must be %d to %d characters, got %d" % (name, lo, hi, len(v)))
    if no_control and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in v):
        raise bad("%s must not contain control characters" % (name,))
    return v


def pair(name, v, lo=None, hi=None):
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise bad("expected [x, z] for %s, got %s" % (name, show(v)))
    return [number(name, v[0], lo, hi), number(name, v[1], lo, hi)]


def entity_id(name, v):
    """An entity id: a positive integer, or the same written in decimal."""
    if isinstance(v, str) and v.isdigit() and v.isascii() and len(v) <= 16:
        v = int(v)
    elif isinstance(v, str):
        raise bad("expected entity id for %s, got %s" % (name, show(v)))
    return integer(name, v, 1, MAX_SEQ)


def seq(f):
    """The ``seq`` of a numbered input."""
    return integer("seq", f.get("seq"), 1, MAX_SEQ)


# -- protocol v1 ---------------------------------------------------------------------
MAX_AUTH = 4096      # characters of hello's ``auth`` (arbiter/auth.py: MAX_CREDENTIALS)


def check_hello(f):
    out = {}
    if f.get("v") != 1 or isinstance(f.get("v"), bool):
        raise bad("expected v = 1, got %s" % show(f.get("v")))
    if "name" in f:
        out["name"] = text("name", f["name"], 1, 32, no_control=True)
    room = f.get("room", "main")
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise bad("room must be 1-64 characters of [A-Za-z0-9_-], got %s" % show(room))
    out["room"] = room
    if "token" in f:
        if not isinstance(f["token"], str):
            raise bad("expected string for token, got %s" % show(f["token"]))
        out["token"] = f["token"]
    # extensions (docs/PROTOCOL.md): role and sync mode
    role = f.get("role", "player")
    if role not in ("player", "spectator"):
        raise bad("role must be 'player' or 'spectator', got %s" % show(role))
    out["role"] = role
    if "sync" in f:
        if f["sync"] not in ("state", "intent", "compact"):
            raise bad("sync must be 'state', 'intent' or 'compact', got %s" % show(f["sync"]))
        out["sync"] = f["sync"]
    if "auth" in f:                  # credentials for the server's authenticator (LOBBY.md)
        out["auth"] = text("auth", f["auth"], 1, MAX_AUTH)
    return out


def check_move(f):
    return {"seq": seq(f), "dt": number("dt", f.get("dt"), 1, 250),
            "dir": pair("dir", f.get("dir"), -1, 1)}


def check_spawn(f):
    out = {"seq": seq(f)}
    if "at" in f:
        out["at"] = pair("at", f["at"])
    return out


def check_delete(f):
    return {"seq": seq(f), "id": entity_id("id", f.get("id"))}


def check_order(f):
    ids = f.get("ids")
    if not isinstance(ids, (list, tuple)) or not 1 <= len(ids) <= 16:
        raise bad("ids must be a list of 1 to 16 entity ids, got %s" % show(ids))
    return {"seq": seq(f), "ids": [entity_id("ids", i) for i in ids],
            "to": pair("to", f.get("to"))}


def check_tag(f):
    out = {"seq": seq(f), "id": entity_id("id", f.get("id")),
           "view": integer("view", f.get("view"), 0, MAX_SEQ)}
    if "view_frac" in f:             # extension (PROTOCOL.md 23): how far toward view + 1
        frac = number("view_frac", f["view_frac"])
        if not 0 <= frac < 1:
            raise bad("view_frac must be in [0, 1), got %s" % show(frac))
        out["view_frac"] = frac
    return out


def check_say(f):
    return {"seq": seq(f), "text": text("text", f.get("text"), 1, 200)}


def check_ping(f):
    return {"ts": number("ts", f.get("ts"))}


def check_resync(f):
    return {}


V1_CHECKS = {
    codes.HELLO: check_hello, codes.MOVE: check_move, codes.SPAWN: check_spawn,
    codes.DELETE: check_delete, codes.ORDER: check_order, codes.TAG: check_tag,
    codes.SAY: check_say, codes.PING: check_ping, codes.RESYNC: check_resync,
}


class Schema:
    """The message types one service accepts, each with its check.

    Protocol v1's types always; ``inputs`` (type -> check) are numbered inputs
    like ``move`` (queued for the tick, acked, rate-limited); ``messages``
    (type -> check) go to the room's ``handle_message`` at once."""

    def __init__(self, inputs=None, messages=None):
        self.checks = dict(V1_CHECKS)
        self.inputs = set(codes.V1_INPUTS)
        self.extensions = set()
        for table, numbered in ((messages or {}, False), (inputs or {}, True)):
            for t, check in table.items():
                if t in V1_CHECKS:
                    raise ValueError("%s is a protocol v1 message type" % t)
                if self.checks.get(t, check) is not check:
                    raise ValueError("two different checks for message type %s" % t)
                self.checks[t] = check
                self.extensions.add(t)
                if numbered:
                    self.inputs.add(t)

    @classmethod
    def build(cls, game_class, room_kinds):
        """The schema of a service running ``game_class`` (its ``input_checks``)
        in rooms of ``room_kinds`` (each kind's ``messages``)."""
        messages = {}
        for kind in room_kinds:
            messages.update(kind.messages)
        return cls(inputs=game_class.input_checks, messages=messages)

    def knows(self, t):
        return t in self.checks

    def is_input(self, t):
        """True for numbered inputs (v1's and the game's)."""
        return t in self.inputs

    def classify(self, obj):
        """A parsed client value -> its type ``t``, if it is a map of a known type.

        Fields are not checked yet: a known message before ``hello`` is
        ``not_joined`` whatever its fields (PROTOCOL.md)."""
        if not isinstance(obj, dict):
            raise bad("expected a map, got %s" % type(obj).__name__)
        t = obj.get("t")
        if not isinstance(t, str):
            raise bad("expected string for t, got %s" % show(t))
        if t not in self.checks:
            raise bad("unknown message type %s" % show(t))
        return t

    def validate(self, t, obj):
        """Check a classified message's fields -> :class:`Message`, or :class:`WireError`."""
        return Message(t, self.checks[t](obj))
