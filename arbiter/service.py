"""The Arbiter service: one LoopingCall on an injected clock ticks every room.

With ``tick_spread`` K > 1 the loop runs K times per tick period and each call
ticks the rooms of one slot (rooms are dealt to slots in turn as they are
created): every room still ticks ``tick_rate`` times a second, but the rooms'
work and their bursts of frames are spread over the period instead of landing
at once, which is what keeps input-to-ack latency flat with many rooms.
"""

import itertools
import json
import time

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from arbiter.config import Config
from arbiter.games.cubes import CubeGame
from arbiter.ids import PlayerIds
from arbiter.quietlog import QuietLog
from arbiter import codes, phases
from arbiter.lockstep import LockstepRoom
from arbiter.room import JoinError, RealtimeRoom, RoomRegistry
from arbiter.schema import Schema
from arbiter.tokens import BadToken, Signer

log = Logger()


class Refused(Exception):
    """Admission refused: ``code`` (``room_ended``, ``room_full``) and a message."""

    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code
        self.msg = msg


class ArbiterService(Service):
    """Owns the rooms and the tick loop; the factory (its ``outbox``) owns sockets.

    ``clock`` is any IReactorTime (the reactor in a server, arbiter/app/server.py;
    a ``task.Clock`` in tests); ``monotonic`` gives the ``now`` of ``pong`` in seconds.
    """

    name = "arbiter"

    def __init__(self, config=None, *, clock, game_factory=CubeGame,
                 monotonic=time.monotonic, metrics=None):
        self.config = config or Config()
        self.clock = clock
        self.monotonic = monotonic
        self.game_factory = game_factory
        self.signer = Signer(self.config.secret)
        self.rooms = RoomRegistry()
        self.outbox = None
        self.metrics = metrics
        self.room_factories = {"realtime": self._make_realtime, "lockstep": self._make_lockstep}
        # what this server's clients may send: its game's inputs, its room kinds' messages
        self.schema = Schema.build(game_factory, (RealtimeRoom, LockstepRoom))
        self._player_ids = PlayerIds()
        self._loop = None
        self._loop_done = None       # the LoopingCall's Deferred (TimerService's idiom)
        self.loop_failures = 0
        self._slot = -1
        self._next_slot = itertools.count()
        self.ticks = 0
        self.overruns = 0
        self.failures = QuietLog(self.clock.seconds, log)

    # -- lifecycle ---------------------------------------------------------------
    def startService(self):
        super().startService()
        self._start_loop()

    def _start_loop(self):
        # As twisted.application.internet.TimerService does: keep the loop's
        # Deferred and handle its failure, so the loop never dies silently.
        self._loop = LoopingCall.withCount(self._tick)
        self._loop.clock = self.clock
        self._loop_done = self._loop.start(
            1.0 / (self.config.tick_rate * self.config.tick_spread), now=False)
        self._loop_done.addErrback(self._loop_failed)

    def _loop_failed(self, failure):
        """The tick raised outside the per-room guard (metrics, the outbox's after_tick):
        log it and start the loop again."""
        self.loop_failures += 1
        log.failure("the tick loop failed; restarting it", failure)
        if self.running:
            self._start_loop()

    def stopService(self):
        """Stop ticking and close every client with 1001; fires when they are closed."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._loop_done = None
        super().stopService()
        if self.outbox is not None:
            return self.outbox.close_all(codes.CLOSE_GOING_AWAY, "server shutting down")
        return None

    def _tick(self, count=1):
        if count > 1:
            self.overruns += count - 1
        spread = self.config.tick_spread
        if spread == 1:
            self.tick_once(min(count, 5))
            return
        # every slot the clock passed since the last call ticks its rooms (normally one)
        slots = {}
        for _ in range(min(count, 5 * spread)):
            self._slot = (self._slot + 1) % spread
            slots[self._slot] = slots.get(self._slot, 0) + 1
        self.tick_once(slots=slots)

    def tick_once(self, count=1, slots=None):
        """Tick rooms: every room by ``count`` periods, or with ``slots`` (slot ->
        periods) only the rooms of those slots."""
        started = time.perf_counter()
        now = self.clock.seconds()
        period = 1.0 / self.config.tick_rate
        for room in self.rooms:
            n = count if slots is None else slots.get(room.tick_slot, 0)
            if not n:
                continue
            try:
                room.run_tick(now, n * period)
            except Exception:
                # A bug in one room's game must not stop the others, nor the loop.
                self.failures.failure(room.name, "tick of room {room} failed", room=room.name)
            if room.empty and not room.persistent:
                self.rooms.discard(room)
                log.info("room {room} closed (empty)", room=room.name)
        self.ticks += 1
        if self.outbox is not None:
            self.outbox.after_tick()
        if self.metrics is not None:
            self.metrics.tick_done(time.perf_counter() - started, count - 1)

    # -- rooms ---------------------------------------------------------------------
    def _make_realtime(self, name, **options):
        return RealtimeRoom(name, self.config, self.outbox, self.signer, self.game_factory,
                            self.clock.seconds(), ids=self._player_ids,
                            metrics=self.metrics, **options)

    def _make_lockstep(self, name, **options):
        return LockstepRoom(name, self.config, self.outbox, self.signer, self.clock,
                            ids=self._player_ids, metrics=self.metrics, **options)

    def create_room(self, name, mode="realtime", persistent=False, lobby=None, **options):
        """Create a room (raises KeyError for an unknown mode, ValueError if it exists).

        ``persistent``: kept when empty (rooms made through the API). ``lobby``:
        (config, min_players) puts a realtime room in phase ``setup`` first."""
        if self.rooms.get(name) is not None:
            raise ValueError("room %s already exists" % name)
        room = self.room_factories[mode](name, **options)
        room.tick_slot = next(self._next_slot) % self.config.tick_spread
        room.persistent = persistent
        if lobby is not None:
            phases.enter_setup(room, *lobby)
        return self.rooms.add(room)

    def end_room(self, room, reason):
        """End ``room`` (phase ``ended``, every connection closed) and forget it."""
        room.end(reason)
        self.rooms.discard(room)
        log.info("room {room} ended: {reason}", room=room.name, reason=reason)

    def admit(self, room, name, role):
        """A signed join token for a new player of ``room`` (docs/HTTP.md): returns
        (token, player id, role, expires). A running lockstep game admits only
        spectators. Raises Refused(room_ended | room_full)."""
        if room.phase == phases.ENDED:
            raise Refused(codes.ROOM_ENDED, "room %s has ended" % json.dumps(room.name))
        if room.mode == "lockstep" and room.phase != phases.SETUP:
            role = "spectator"          # a running lockstep game takes no new players
        if role == "player":
            info = room.describe()
            if info["players"] >= info["max_players"]:
                raise Refused(codes.ROOM_FULL, "room %s is full (%d of %d players)"
                              % (json.dumps(room.name), info["players"], info["max_players"]))
        pid = next(self._player_ids)
        expires = self.clock.seconds() + self.config.join_token_ttl
        token = self.signer.seal(room=room.name, player=pid, name=name, role=role,
                                 exp=expires, inc=room.incarnation)
        return token, pid, role, expires

    def join(self, hello):
        """Honour a validated ``hello``: returns (room, player, taken_over).

        A new realtime room is created on first use. Raises JoinError."""
        name = hello["room"]
        room = self.rooms.get(name)
        if room is not None:
            room.now = self.clock.seconds()
        token = hello.get("token")
        if token is not None:
            try:
                body = self.signer.open(token, name, now=self.clock.seconds())
            except BadToken as e:
                raise JoinError(codes.BAD_TOKEN, str(e), codes.CLOSE_BAD_TOKEN)
            if room is None:
                raise JoinError(codes.BAD_TOKEN, "token is dead: the room is gone",
                                codes.CLOSE_BAD_TOKEN)
            if "pid" in body and "n" in body:
                player, taken_over = room.resume(body)
                return room, player, taken_over
            # a join token from the HTTP API (docs/HTTP.md): a new player
            player = room.join_with_token(body, hello)
            return room, player, False
        if room is None:
            room = self.create_room(name)
        player = room.join(hello.get("name"), role=hello.get("role", "player"),
                           sync=hello.get("sync", "state"))
        return room, player, False
