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
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from arbiter.auth import AuthRefused, AuthRequest, Identity
from arbiter.config import Config
from arbiter.interfaces import DirectoryUnavailable
from arbiter.games.cubes import CubeGame
from arbiter.ids import PlayerIds
from arbiter.quietlog import QuietLog
from arbiter import codes, phases
from arbiter.lockstep import LockstepRoom
from arbiter.room import JoinError, RealtimeRoom, RoomRegistry
from arbiter.phases import ENDED
from arbiter.schema import Schema
from arbiter.tokens import BadToken, Signer

log = Logger()


UNKNOWN_ROOM = "unknown_room"
ROOM_EXISTS = "room_exists"
API_KEY_REQUIRED = "api_key_required"
AUTH_TIMEOUT = 5.0        # seconds an authenticator may take before the join is refused


class Refused(Exception):
    """An API operation refused: ``code`` (``room_ended``, ``room_full``,
    ``unknown_room``, ``room_exists``) and a message."""

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
                 monotonic=time.monotonic, metrics=None, authenticator=None):
        self.config = config or Config()
        #: None (guests, as in protocol v1), or ``authenticate(credentials, AuthRequest)``
        #: returning an Identity (or a Deferred of one) or raising AuthRefused
        self.authenticator = authenticator
        self.clock = clock
        self.monotonic = monotonic
        self.game_factory = game_factory
        self.signer = Signer(self.config.secret)
        self.rooms = RoomRegistry()
        self.outbox = None
        self.directory = None        # an IDirectory in cluster mode (arbiter/app/cluster.py)
        self.lan = None              # a LAN listener with --lan-announce (arbiter/app/lan.py)
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
                self._forget(room)
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
        self.rooms.add(room)
        if self.directory is not None:
            self.directory.room_opened(room)
        return room

    def _forget(self, room):
        if self.rooms.get(room.name) is room:
            self.rooms.discard(room)
            if self.directory is not None:
                self.directory.room_closed(room)

    def end_room(self, room, reason):
        """End ``room`` (phase ``ended``, every connection closed) and forget it."""
        room.end(reason)
        self._forget(room)
        log.info("room {room} ended: {reason}", room=room.name, reason=reason)

    def evict(self, room, url):
        """Cluster mode: another node holds ``room``'s claim (docs/SCALING.md, twins).
        This node's copy is given up: its players get ``moved`` to ``url``, the
        owner's address, and close 4005; their clients join the owner's room."""
        moved = JoinError(codes.MOVED, "room %s now lives on another node; join it at %s"
                          % (json.dumps(room.name), url), codes.CLOSE_MOVED, url=url)
        room.phase = ENDED
        for player in list(room.players.values()):
            if player.connected:
                self.outbox.send(player, moved.wire())
                self.outbox.close(player, codes.CLOSE_MOVED, "room moved to %s" % url)
        self.rooms.discard(room)
        log.warn("room {room} is owned by another node now ({url}): this node's copy is "
                 "given up", room=room.name, url=url)

    # -- the API's operations (web/api.py; in cluster mode run on the owning node) ----
    API_OPS = ("show", "join", "delete")

    def room_info(self, room):
        """The room as GET /api/rooms/{id} shows it (without URLs)."""
        out = room.describe()
        lobby = room.lobby
        if lobby is not None:
            setup = lobby.wire()
            out["config"] = setup["config"]
            out["min_players"] = setup["min_players"]
            out["members"] = setup["players"]
        return out

    def api_create(self, room_id, mode, options):
        """POST /api/rooms with its body checked (web/api.py): a persistent room.
        ``options`` is JSON-able (it may have crossed Redis): ``lobby`` is
        [config, min_players]. Raises Refused(room_exists)."""
        if self.rooms.get(room_id) is not None:
            raise Refused(ROOM_EXISTS, "a room with id %s exists already" % json.dumps(room_id))
        options = dict(options)
        lobby = options.pop("lobby", None)
        private = options.pop("private", False)
        self_service = options.pop("self_service", False)
        match = options.pop("match", None)
        room = self.create_room(room_id, mode, persistent=match is None, lobby=lobby,
                                **options)
        room.private = bool(private)
        room.self_service = bool(self_service)
        room.match = match               # quick match's rooms go when their players do
        if match is not None:
            # ... but not before the first seat is asked for (across a cluster, a moment)
            room.hold_until = self.clock.seconds() + 10.0
        log.info("room {room} ({mode}) created through the API", room=room_id, mode=mode)
        return self.room_info(room)

    def api_op(self, op, room_id, args):
        """One of API_OPS on room ``room_id``: ``show``; ``delete``; ``join`` with
        ``args`` {name, role} (a signed join token). Raises Refused."""
        room = self.rooms.get(room_id)
        if room is None:
            raise Refused(UNKNOWN_ROOM, "no room with id %s" % json.dumps(room_id))
        if op == "show":
            return self.room_info(room)
        if op == "delete":
            self.end_room(room, "deleted through the API")
            return {"id": room.name, "phase": ENDED}
        if op == "join":
            if self.config.api_key and not args.get("key_ok") and not room.self_service:
                raise Refused(API_KEY_REQUIRED, "join tokens for room %s need the API key "
                              "(the room is not self-service)" % json.dumps(room_id))
            if args.get("match") is not None and not self._fits(room, args["match"]):
                raise Refused(codes.ROOM_FULL, "room %s no longer fits this match"
                              % json.dumps(room_id))
            name = args["name"]
            token, pid, role, expires = self.admit(room, name, args["role"],
                                                   user=args.get("user"))
            out = {"token": token, "player": pid, "name": name, "role": role,
                   "room": room_id, "expires": expires, "ttl": self.config.join_token_ttl}
            if args.get("user"):
                out["user"] = args["user"]
            return out
        raise ValueError("unknown API operation %r" % (op,))

    @staticmethod
    def _fits(room, match):
        """True when ``room`` is a quick-match room for ``match`` ({mode, tag, max_players,
        game}) that takes players now."""
        if room.match is None or room.private or room.mode != match["mode"]:
            return False
        if room.match.get("tag") != match.get("tag"):
            return False
        info = room.describe()
        if info["max_players"] != match["max_players"]:
            return False
        if room.mode == "lockstep":
            return room.phase == phases.SETUP and info.get("game") == match.get("game")
        return phases.is_running(room.phase)

    def admit(self, room, name, role, user=None):
        """A signed join token for a new player of ``room`` (docs/HTTP.md): returns
        (token, player id, role, expires). A running lockstep game admits only
        spectators. A player's seat is held from now until the token is used or expires,
        so tokens never promise more seats than the room has. ``user``: the authenticated
        user the token is for. Raises Refused(room_ended | room_full)."""
        if room.phase == phases.ENDED and getattr(room, "rounds", None) is None:
            # (a realtime room between rounds is ``ended`` too, and takes players)
            raise Refused(codes.ROOM_ENDED, "room %s has ended" % json.dumps(room.name))
        if room.mode == "lockstep" and room.phase != phases.SETUP:
            role = "spectator"          # a running lockstep game takes no new players
        again = user is not None and room.player_of_user(user) is not None
        if role == "player" and not again:
            info = room.describe()
            taken = room.seats_taken()
            if taken >= info["max_players"]:
                raise Refused(codes.ROOM_FULL, "room %s is full (%d of %d seats taken)"
                              % (json.dumps(room.name), taken, info["max_players"]))
        pid = next(self._player_ids)
        expires = self.clock.seconds() + self.config.join_token_ttl
        fields = {"user": user} if user is not None else {}
        token = self.signer.seal(room=room.name, player=pid, name=name, role=role,
                                 exp=expires, inc=room.incarnation, **fields)
        if role == "player" and not again:
            room.reserve(pid, expires)
        return token, pid, role, expires

    # -- authentication (arbiter/auth.py) ---------------------------------------------------
    def authenticate(self, credentials, request):
        """A Deferred that fires with the Identity the authenticator gives ``credentials``,
        or fails with JoinError: ``unauthorized`` (4006) when it refuses, ``unavailable``
        (1013) when it fails or takes longer than AUTH_TIMEOUT seconds."""
        d = defer.maybeDeferred(self.authenticator, credentials, request)
        d.addTimeout(AUTH_TIMEOUT, self.clock)

        def checked(value):
            try:
                return Identity.check(value)
            except ValueError as e:
                self.failures.failure("auth result", "the authenticator returned a bad "
                                      "identity: {e}", e=str(e))
                raise JoinError(codes.UNAVAILABLE, "the login check failed on the server; "
                                "try again later", codes.CLOSE_TRY_AGAIN)

        def refused(failure):
            if failure.check(AuthRefused):
                raise JoinError(codes.UNAUTHORIZED, "not logged in: %s"
                                % (str(failure.value) or "credentials refused"),
                                codes.CLOSE_UNAUTHORIZED)
            if failure.check(defer.TimeoutError):
                raise JoinError(codes.UNAVAILABLE, "the login check did not answer in %g s; "
                                "try again" % AUTH_TIMEOUT, codes.CLOSE_TRY_AGAIN)
            self.failures.failure("auth", "the authenticator failed", failure=failure)
            raise JoinError(codes.UNAVAILABLE, "the login check failed on the server; try "
                            "again later", codes.CLOSE_TRY_AGAIN)
        return d.addCallbacks(checked, refused)

    def join(self, hello, peer=""):
        """Honour a validated ``hello``: returns (room, player, taken_over).

        With an authenticator, a hello without a token is checked first (its ``auth``):
        the answer is a Deferred of the same triple, or of JoinError ``unauthorized``; a
        user who is in the room already takes its place over, as a reconnection does.

        A new realtime room is created on first use. Raises JoinError. In cluster
        mode, a hello for a room this node does not have returns a Deferred instead:
        the directory finds (or claims) the room's node, and the Deferred fires with
        the same triple or fails with JoinError (``moved`` to the owner's URL, or
        ``unavailable`` while Redis cannot be reached)."""
        if self.authenticator is not None and hello.get("token") is None:
            request = AuthRequest(room=hello["room"], name=hello.get("name"), via="ws",
                                  peer=peer)
            d = self.authenticate(hello.get("auth"), request)
            return d.addCallback(lambda identity: self._route(hello, identity))
        return self._route(hello)

    def _route(self, hello, identity=None):
        name = hello["room"]
        room = self.rooms.get(name)
        if room is None and self.directory is not None:
            d = self.directory.place(name, create=hello.get("token") is None)
            d.addCallbacks(self._placed, self._not_placed, callbackArgs=(hello, identity),
                           errbackArgs=(name,))
            return d
        return self._join_here(hello, room, identity)

    def _placed(self, owner, hello, identity=None):
        name = hello["room"]
        if isinstance(owner, str):
            raise JoinError(codes.MOVED, "room %s lives on another node: join it at %s"
                            % (json.dumps(name), owner), codes.CLOSE_MOVED, url=owner)
        return self._join_here(hello, self.rooms.get(name), identity)

    def _not_placed(self, failure, name):
        failure.trap(DirectoryUnavailable)
        raise JoinError(codes.UNAVAILABLE, "room %s cannot be placed now: %s; try again "
                        "later" % (json.dumps(name), failure.getErrorMessage()),
                        codes.CLOSE_TRY_AGAIN)

    def _join_here(self, hello, room, identity=None):
        name = hello["room"]
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
            again = room.player_of_user(body["user"]) if body.get("user") else None
            if again is not None:            # the same user, back through a join token
                room.reserved.pop(body.get("player"), None)
                return (room,) + room.resume({"pid": again.id, "n": again.nonce})
            # a join token from the HTTP API (docs/HTTP.md): a new player
            player = room.join_with_token(body, hello)
            return room, player, False
        if identity is not None and room is not None:
            again = room.player_of_user(identity.user)
            if again is not None:            # a second connection of this user: takeover
                return (room,) + room.resume({"pid": again.id, "n": again.nonce})
        if room is not None and room.private:
            raise JoinError(codes.PRIVATE_ROOM, "room %s is private: join it with a join "
                            "token (POST /api/rooms/{id}/join)" % json.dumps(name),
                            codes.CLOSE_PRIVATE_ROOM)
        if room is None:
            room = self.create_room(name)
        player = room.join(identity.name if identity is not None else hello.get("name"),
                           role=hello.get("role", "player"), sync=hello.get("sync", "state"))
        if identity is not None:
            room.set_user(player, identity.user)
        return room, player, False
