"""Room phases and the setup lobby (docs/LOCKSTEP.md, "Phases").

Every room is in one phase: ``setup`` (players join, edit the shared setup
configuration, mark themselves ready), ``running`` with its children
``running.paused`` (a player of a lockstep game is disconnected),
``running.lagging`` (a turn waits for a late packet) and ``running.desync``
(checksums diverged: the game is halted), or ``ended``. Realtime rooms made by
a ``hello`` start in ``running`` and never send phase messages (PROTOCOL.md).

A :class:`Lobby` is the setup phase of one room: it owns the shared config and
the ready flags, broadcasts the whole ``setup`` message on every change, and
calls ``room.start()`` once every present player is ready and there are at
least ``min_players``.
"""

import json

from arbiter import codes
from arbiter.rules import TokenBucket
from arbiter.schema import WireError, bad

SETUP = "setup"
RUNNING = "running"
PAUSED = "running.paused"
LAGGING = "running.lagging"
DESYNC = "running.desync"
ENDED = "ended"
PHASES = (SETUP, RUNNING, PAUSED, LAGGING, DESYNC, ENDED)

SETUP_RATE = (10, 5)       # configure + ready per player: bucket capacity, refill per second

MAX_CONFIG_BYTES = 4096
MAX_CONFIG_KEYS = 32


def is_running(phase):
    """True for ``running`` and its children."""
    return phase == RUNNING or phase.startswith(RUNNING + ".")


def send_reject(room, player, code, text, **extra):
    """A ``reject`` for an extension message (it has no ``seq``; ``ref`` names the message)."""
    msg = {"t": "reject", "code": code, "msg": text}
    msg.update(extra)
    room.out.send(player, msg)


def check_config(name, value):
    """A setup configuration: a map of at most 32 keys, at most 4096 bytes as JSON."""
    if not isinstance(value, dict):
        raise bad("expected a map for %s, got %s" % (name, type(value).__name__))
    if len(value) > MAX_CONFIG_KEYS:
        raise bad("%s has %d keys, at most %d allowed" % (name, len(value), MAX_CONFIG_KEYS))
    for k in value:
        if not isinstance(k, str) or not 1 <= len(k) <= 32:
            raise bad("%s keys must be strings of 1-32 characters, got %r" % (name, k))
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise bad("%s must be plain JSON: %s" % (name, e))
    if size > MAX_CONFIG_BYTES:
        raise bad("%s is %d bytes as JSON, at most %d allowed" % (name, size, MAX_CONFIG_BYTES))
    return value


def _check_configure(f):
    return {"config": check_config("config", f.get("config"))}


def _check_ready(f):
    ready = f.get("ready", True)
    if not isinstance(ready, bool):
        raise bad("expected true or false for ready, got %r" % (ready,))
    return {"ready": ready}


# the setup lobby's messages: part of every room kind's ``messages`` (arbiter/schema.py)
MESSAGES = {codes.CONFIGURE: _check_configure, codes.READY: _check_ready}


class Lobby:
    """The setup phase of one room: shared configuration and ready flags."""

    def __init__(self, room, config=None, min_players=1):
        self.room = room
        self.config = dict(config or {})
        self.min_players = max(1, int(min_players))
        self.ready = {}            # player id -> bool
        self.buckets = {}          # player id -> TokenBucket (each change is broadcast)

    # -- what everyone sees ------------------------------------------------------
    def present(self):
        """The players (not spectators) whose connection is open."""
        return [p for p in self.room.players.values()
                if not p.is_spectator and p.connected]

    def wire(self):
        """The whole ``setup`` message."""
        players = {}
        for p in self.room.players.values():
            if not p.is_spectator:
                players[p.id] = {"name": p.name, "ready": self.ready.get(p.id, False),
                                 "connected": p.connected}
        return {"t": "setup", "phase": self.room.phase, "config": self.config,
                "players": players, "min_players": self.min_players,
                "max_players": self.room.describe()["max_players"]}

    def broadcast(self):
        self.room.out.broadcast(self.room, self.wire())

    def send(self, player):
        self.room.out.send(player, self.wire())

    # -- changes -------------------------------------------------------------------
    def changed(self):
        """Membership changed (join, leave, removal): tell everyone, maybe start."""
        for pid in list(self.ready):
            if pid not in self.room.players:
                del self.ready[pid]
                self.buckets.pop(pid, None)
        if self.room.phase == SETUP:
            self.broadcast()
            self.try_start()

    def handle(self, player, msg):
        """``configure`` or ``ready`` from ``player``; True when handled here."""
        if msg.t not in ("configure", "ready"):
            return False
        if player.is_spectator:
            send_reject(self.room, player, codes.SPECTATOR, "spectators cannot send %s" % msg.t,
                        ref=msg.t)
            return True
        now = self.room.current_time()
        bucket = self.buckets.get(player.id)
        if bucket is None:
            bucket = self.buckets[player.id] = TokenBucket(*SETUP_RATE, now)
        if not bucket.can_take(now):
            send_reject(self.room, player, codes.RATE_LIMITED, "too many %s messages: at most %d "
                        "a second" % (msg.t, SETUP_RATE[1]), ref=msg.t)
            return True
        bucket.take()
        if self.room.phase != SETUP:
            send_reject(self.room, player, codes.NOT_SETUP, "%s is only accepted in phase setup, "
                        "the room is in %s" % (msg.t, self.room.phase), ref=msg.t)
            return True
        if msg.t == "configure":
            merged = dict(self.config)
            for k, v in msg["config"].items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            try:
                check_config("config", merged)
            except WireError as e:
                send_reject(self.room, player, codes.TOO_BIG, e.msg, ref=msg.t)
                return True
            self.config = merged
            # a changed configuration must be agreed to again
            self.ready = {pid: False for pid in self.ready}
            self.broadcast()
        else:
            self.ready[player.id] = msg["ready"]
            self.broadcast()
            self.try_start()
        return True

    def try_start(self):
        present = self.present()
        if len(present) < self.min_players:
            return False
        if not all(self.ready.get(p.id) for p in present):
            return False
        self.room.start()
        return True


def set_phase(room, phase, **info):
    """Move ``room`` to ``phase`` and broadcast ``phase`` (only on a change)."""
    if phase not in PHASES:
        raise ValueError("unknown phase %r, expected one of %s" % (phase, ", ".join(PHASES)))
    if room.phase == phase and not info:
        return
    room.phase = phase
    msg = {"t": "phase", "phase": phase}
    msg.update(info)
    room.out.broadcast(room, msg)


def enter_setup(room, config=None, min_players=1):
    """Put a realtime room made through the HTTP API into phase ``setup``.

    Its inputs are refused with ``not_running`` until every present player is
    ready; then it moves to ``running`` and the game plays as PROTOCOL.md says."""
    room.lobby = Lobby(room, config, min_players)
    room.phase = SETUP
    return room.lobby
