"""Realtime rooms: players, the input queue, the rule pipeline and state ticks.

A room never touches a socket. It talks to an *outbox*
(:class:`arbiter.interfaces.IOutbox`: the :class:`protocols.factory.ArbiterFactory`
in a server, a :class:`protocols.testing.RecordingOutbox` in tests) with
``send(player, msg)``, ``broadcast(room, msg, exclude=None)``,
``send_state(room, tick, deliveries, bodies)`` and ``close(player, code, reason)``;
the room decides what each player's state message is (asking the outbox only
whether that player's connection is ``congested``).
"""

import itertools
import random

from twisted.logger import Logger
from zope.interface import implementer

from arbiter import codes, phases
from arbiter.ids import PlayerIds
from arbiter.interfaces import IRoom
from arbiter.compact import CompactCodec, pos_bytes_for
from arbiter.membership import JoinError, Player, RoomBase  # noqa: F401 (JoinError: API)
from arbiter.quietlog import QuietLog
from arbiter.rounds import RoundClock
from arbiter.rules import Reject
from arbiter.schema import WireError
from arbiter.state import TrackedMap

log = Logger()

INPUT_QUEUE_PAUSE = 256   # queued inputs at which a player's socket stops being read


_BUCKETS_FOR = {"say": ("all", "say"), "spawn": ("all", "spawn"), "delete": ("all", "spawn")}


@implementer(IRoom)
class RealtimeRoom(RoomBase):
    """A realtime room: the server simulates, clients predict and reconcile."""

    mode = "realtime"
    #: what clients may send besides protocol v1 (arbiter/schema.py): an API room's setup
    messages = phases.MESSAGES

    def __init__(self, name, config, outbox, signer, game_factory, now, seed=None,
                 max_players=None, ids=None, metrics=None):
        self._init_base(name, config, outbox, signer, phases.RUNNING)
        mp = max_players or config.world.max_players
        self.world = config.world if mp == config.world.max_players else \
            config.with_world(max_players=mp).world
        self.metrics = metrics
        self.now = now
        self.rng = random.Random(seed)
        self.state = TrackedMap({"entities": {}, "players": {}})
        self.gone = {}             # id -> Player within its grace period
        self.queue = []            # (player, Message) in arrival order
        self.window = []           # inputs processed since the last batch
        self.tick = 0              # state ticks
        self.sim_tick = 0
        self.ticks_per_state = config.tick_rate // config.send_rate
        self.ticks_per_batch = max(1, round(config.tick_rate * 0.1))
        self._ids = ids or PlayerIds()
        self._entity_ids = itertools.count(1)
        self.game = game_factory(self)
        self.compact = CompactCodec(pos_bytes_for(self.world.size),    # sync "compact"
                                    columns=self.game.columns)
        self.failures = QuietLog(lambda: self.now, log, subject="room %s" % name)
        self.rounds = RoundClock.from_config(self, config)   # None: no rounds (v1)
        self._snapshot_cache = None
        self._pos_memo = None
        self.state.collect()

    # -- membership ----------------------------------------------------------
    def new_entity_id(self):
        return next(self._entity_ids)

    def join(self, name, role="player", sync="state", pid=None):
        """A new player (or spectator). Raises JoinError(room_full)."""
        if role != "spectator" and self.seats_taken() >= self.world.max_players:   # (held seats count)
            raise JoinError(codes.ROOM_FULL, "room %s is full (%d players)"
                            % (self.name, self.world.max_players), codes.CLOSE_ROOM_FULL)
        pid = pid or next(self._ids)
        player = Player(pid, name or "guest-%s" % pid, self, role, self.now)
        player.sync = sync
        player.token = self.signer.seal(room=self.name, pid=pid, n=player.nonce)
        self.players[pid] = player
        if role != "spectator":
            self.state["players"][pid] = {"name": player.name, "connected": True,
                                          "ping": 0, "score": 0}
            self.game.player_joined(player)
            self.broadcast_event("join", exclude=player, player=pid, name=player.name)
        log.info("player {pid} ({name}) joined room {room}", pid=pid, name=player.name,
                 room=self.name)
        return player

    def resume(self, body):
        """The player a valid token names, back from its grace period (or taken over).

        Returns (player, taken_over). Raises JoinError(bad_token) if it is gone."""
        player, taken_over = self.claim(body)
        if not taken_over:
            player.connected = True
            player.gone_at = None
            self.gone.pop(player.id, None)
            if not player.is_spectator:
                self.state["players"][player.id]["connected"] = True
                self.broadcast_event("join", exclude=player, player=player.id, name=player.name)
        player.sent_ack = -1
        player.needs_snapshot = False
        return player, taken_over

    def welcome(self, player):
        """``welcome`` then ``snapshot``: the first two messages after ``hello``. A
        compact player's snapshot comes with the next state tick (the codec's slots
        move in step with the ticks)."""
        welcome = {
            "t": "welcome", "you": player.id, "name": player.name, "room": self.name,
            "token": player.token, "tick": self.tick, "rate": self.config.send_rate,
            "ack": player.ack, "world": self.game.world_wire(),
        }
        welcome.update(self.game.welcome_fields())
        if player.user is not None:
            welcome["user"] = player.user
        if player.sync == "compact":
            welcome["compact"] = {"v": 1, "pos": self.compact.width}
            self.out.send(player, welcome)
            player.needs_snapshot = True
            player.sent_ack = -1
        else:
            self.out.send(player, welcome)
            self.game.flush_positions()
            state = self.state.snapshot()
            if self.game.views_on:
                # a per-player view (docs/GAMES.md): what it may not see is not sent
                player.visible = visible = self.game.view_of(player)
                if visible is not None:
                    state["entities"] = {k: e for k, e in state["entities"].items()
                                         if k in visible}
            self.out.send(player, {"t": "snapshot", "tick": self.tick, "ack": player.ack,
                                   "state": state})
            player.sent_ack = player.ack
        if self.lobby is not None:
            self.lobby.changed()

    def disconnect(self, player):
        """The player's connection closed (not a takeover): grace period starts."""
        if not player.connected:
            return
        player.connected = False
        if player.is_spectator:
            self._remove(player)
            return
        player.gone_at = self.now
        self.gone[player.id] = player
        self.state["players"][player.id]["connected"] = False
        self.broadcast_event("leave", exclude=player, player=player.id)
        log.info("player {pid} disconnected from {room}; grace {grace}s",
                 pid=player.id, room=self.name, grace=self.config.grace)
        if self.lobby is not None:
            self.lobby.changed()

    def _remove(self, player):
        self.players.pop(player.id, None)
        self.gone.pop(player.id, None)
        if not player.is_spectator:
            self.game.player_removed(player)
            if player.id in self.state["players"]:
                del self.state["players"][player.id]
        log.info("player {pid} removed from room {room}", pid=player.id, room=self.name)

    def add_score(self, player, n):
        node = self.state["players"].get(player.id)
        if node is not None:
            node["score"] = node["score"] + n

    def end_round(self, reason="game", winner=None):
        """A game declares the round over (arbiter/rounds.py): ``winner`` a player id,
        or None for the single highest score. Needs rounds on (``--round-points`` or
        ``--round-seconds``); without them it raises ValueError."""
        if self.rounds is None:
            raise ValueError("this server runs no rounds (round_points and round_seconds are 0)")
        self.rounds.end(reason, winner)

    def broadcast_event(self, kind, exclude=None, **fields):
        msg = {"t": "event", "kind": kind}
        msg.update(fields)
        self.out.broadcast(self, msg, exclude)

    # -- inputs ----------------------------------------------------------------
    def submit(self, player, msg):
        """Queue a validated numbered input for the next tick; returns how many are queued."""
        self.queue.append((player, msg))
        player.queued += 1
        return player.queued

    def request_snapshot(self, player):
        player.needs_snapshot = True

    def current_time(self):
        return self.now

    def start(self):
        """Setup is over (an API room's lobby): inputs are taken from now on."""
        phases.set_phase(self, phases.RUNNING)
        if self.rounds is not None and not self.rounds.over:
            self.rounds.restart_clock()      # the round runs from the end of setup

    def _state_for(self, player, changed, congested):
        """This state tick's message to ``player``: (kind, ack, sync view), or None.

        A player whose connection is ``congested`` is skipped and gets a snapshot
        once it drains; one with nothing new (no patch, no new ack) gets nothing."""
        if congested:
            if not player.needs_snapshot:
                player.needs_snapshot = True
                if self.metrics is not None:
                    self.metrics.slow_skips.inc()
            return None
        if player.needs_snapshot:
            kind = "snapshot"
            player.needs_snapshot = False
        elif changed or player.ack != player.sent_ack:
            kind = "delta"
        else:
            return None
        player.sent_ack = player.ack
        return kind, player.ack, player.sync

    def _state_body(self, kind, patch, tick, view):
        """(the map to encode, float32) of this tick's ``kind`` message for a sync view;
        for ``compact``, (the frame's sections, None) (arbiter/compact.py)."""
        if kind == "snapshot":
            self.game.flush_positions()
        if view.__class__ is tuple:
            return self._view_body(kind, patch, tick, view)
        if view == "compact":
            codec = self.compact
            return (codec.snapshot(self.state.snapshot()) if kind == "snapshot"
                    else codec.delta()), None
        src = self.state.snapshot() if kind == "snapshot" else patch
        intent_view = self.game.intent_view
        if view == "intent" and intent_view is not None:
            # docs/PROTOCOL.md: intent clients get float32 in msgpack
            return intent_view(kind, src, tick), True
        return src, False

    # -- per-player views (Game.view_of; docs/GAMES.md) ---------------------------------
    def _view_key(self, player, kind, visible):
        """The delivery's view for a player under a game's view: (sync, the entity keys
        it had, the keys it may see now, its id for its own compact codec). Players whose
        keys agree share one body."""
        prev = player.visible
        player.visible = visible
        if kind == "snapshot":
            prev = None
        elif (prev is None) != (visible is None):
            kind = "snapshot"          # from everything to a view, or back: start afresh
            prev = None
        sync = player.sync
        return kind, (sync, prev, visible, player.id if sync == "compact" else None)

    def _tick_snapshot(self):
        """This state tick's whole state as plain maps (once per tick, when a view needs it)."""
        cached = self._snapshot_cache
        if cached is None or cached[0] != self.tick:
            cached = self._snapshot_cache = (self.tick, self.state.snapshot())
        return cached[1]

    def _view_body(self, kind, patch, tick, view):
        sync, prev, visible, pid = view
        if visible is None:            # sees everything: the room's own body
            src = self.state.snapshot() if kind == "snapshot" else patch
        elif kind == "snapshot":
            src = dict(self._tick_snapshot())
            src["entities"] = {k: e for k, e in src["entities"].items() if k in visible}
        else:
            src = {k: v for k, v in patch.items() if k != "entities"}
            ents = {}
            changed = patch.get("entities")
            if changed:
                for k, e in changed.items():
                    if k in visible and k in prev:
                        ents[k] = e
            entered = visible - prev
            if entered:
                whole = self.state["entities"]
                for k in entered:
                    ents[k] = whole[k].snapshot()
            for k in prev - visible:
                ents[k] = None           # out of sight (or gone): removed from its mirror
            if ents:
                src["entities"] = ents
        if sync == "compact":
            # its own slot table: a compact client's slots are those of what it sees
            player = self.players[pid]
            codec = player.view_codec
            if codec is None:
                codec = player.view_codec = CompactCodec(self.compact.width)
            if kind == "snapshot":
                codec.reset()
                return codec.snapshot(src), None
            memo = self._pos_memo
            if memo is None or memo[0] != tick:
                # each position quantised once per tick for all the players' codecs (the
                # lists are the patch's own, alive for the whole tick)
                memo = self._pos_memo = (tick, {})
            codec.advance(src, memo=memo[1])
            return codec.delta(), None
        intent_view = self.game.intent_view
        if sync == "intent" and intent_view is not None:
            return intent_view(kind, src, tick), True
        return src, False

    def handle_message(self, player, msg):
        """A validated message other than the realtime inputs (extensions)."""
        if self.lobby is not None and self.lobby.handle(player, msg):
            return
        raise WireError(codes.BAD_MESSAGE, "%s is not used in a realtime room" % msg.t)

    def _reject(self, player, seq, code, text):
        self.out.send(player, {"t": "reject", "seq": seq, "code": code, "msg": text})
        if self.metrics is not None:
            self.metrics.rejected(code)

    def _process(self, player, msg):
        seq = msg["seq"]
        if seq <= player.ack:
            self._reject(player, seq, codes.BAD_SEQ, "seq %d is not above %d" % (seq, player.ack))
            return
        now = self.now
        buckets = [player.buckets[b] for b in _BUCKETS_FOR.get(msg.t, ("all",))]
        player.ack = seq
        for b in buckets:
            if not b.can_take(now):
                self._reject(player, seq, codes.RATE_LIMITED, "too many %s inputs" % msg.t)
                return
        for b in buckets:
            b.take()
        if player.is_spectator:
            self._reject(player, seq, codes.SPECTATOR, "spectators cannot send inputs")
            return
        if self.phase != "running" and msg.t != "say":
            self._reject(player, seq, codes.NOT_RUNNING, "inputs wait for phase running, "
                         "the room is in %s" % self.phase)
            return
        if msg.t == "say":
            self.broadcast_event("say", player=player.id, text=msg["text"])
            return
        if msg.t not in self.game.input_types:
            self._reject(player, seq, codes.UNSUPPORTED, "this game takes no %s inputs" % msg.t)
            return
        outcome = self.game.handle(player, msg)
        if isinstance(outcome, Reject):
            self._reject(player, seq, outcome.code, outcome.msg)
        else:
            self.window.append((player, msg))

    # -- the tick ----------------------------------------------------------------
    def run_tick(self, now, dt):
        """One simulation tick: inputs, rules, step, and (on state ticks) the patch.

        Each input is processed on its own: if it fails, that input alone is
        answered (``reject`` ``internal_error``) and every other input of the
        tick is applied as if it had not been there. Each later stage is guarded
        the same way, so a failing game rule never stops the state tick, the
        acks or the end of grace periods."""
        self.now = now
        queue, self.queue = self.queue, []
        if queue and self.metrics is not None:
            self.metrics.inputs.inc(len(queue))
        for player, msg in queue:
            player.queued -= 1
            if player.id in self.players:
                try:
                    self._process(player, msg)
                except Exception:
                    self._input_failed(player, msg)
        game = self.game
        rounds = self.rounds
        if rounds is None or not rounds.over:        # between rounds the world stands still
            self._guarded("step", game.step, dt)
        self.sim_tick += 1
        if rounds is None or not rounds.over:
            self._guarded("tick rules", game.tick_rules, self.sim_tick)
        if rounds is not None and (rounds.over or self.phase == phases.RUNNING):
            self._guarded("rounds", rounds.check, now)      # (not in a setup lobby)
        if self.sim_tick % self.ticks_per_batch == 0:
            window, self.window = self.window, []
            self._guarded("batched rules", game.batch_rules, window)
        for c in self._guarded("corrections", game.take_corrections) or ():
            player = self.players.get(c.player)
            if player is not None:
                self.out.send(player, {"t": "correct", "id": c.id, "pos": c.pos,
                                       "reason": c.reason, "seq": c.seq})
        if self.sim_tick % self.ticks_per_state == 0:
            self._guarded("state tick", self._state_tick, now)
        if self.gone:
            for player in list(self.gone.values()):
                if now - player.gone_at >= self.config.grace:
                    self._guarded("removing a player", self._remove, player)

    def _guarded(self, stage, fn, *args):
        """``fn(*args)``; a failure is logged (once, then counted) and the tick goes on."""
        try:
            return fn(*args)
        except Exception:
            self.failures.failure(stage, "room {room}: {stage} failed",
                                  room=self.name, stage=stage)
            return None

    def _input_failed(self, player, msg):
        """An input that raised: answered alone, logged once per kind of input."""
        self.failures.failure("input " + msg.t, "room {room}: {t} from {pid} failed",
                              room=self.name, t=msg.t, pid=player.id)
        seq = msg.get("seq")
        if seq is not None and seq > player.ack:
            player.ack = seq
        if seq is not None:
            try:
                self._reject(player, seq, codes.INTERNAL_ERROR,
                             "the server failed on this input; it was dropped")
            except Exception:
                pass

    def _state_tick(self, now):
        self.tick += 1
        players_node = self.state["players"]
        for player in self.players.values():
            rtt = player.rtt_ms
            if rtt is None or player.is_spectator:
                continue
            if player.ping_reported_at is None or now - player.ping_reported_at >= 1.0:
                node = players_node[player.id]
                if node["ping"] != rtt:
                    node["ping"] = rtt
                player.ping_reported_at = now
        self.game.on_state_tick(self.tick)
        # a columnar game's positions: into the state map only if a merge-patch client
        # is here; the compact sync takes them from the arrays
        viewing = self.game.views_on
        flush = viewing                  # views are cut from the state map
        if not flush:
            for player in self.players.values():
                if player.connected and player.sync != "compact":
                    flush = True
                    break
        moves = self.game.sync_positions(flush)
        patch = self.state.collect()
        self._advance_compact(patch, moves, viewing)
        # something to send: the patch, or positions that moved in a columnar game's
        # arrays without being written into the map (a room of compact clients only)
        changed = bool(patch) or (moves is not None and len(moves[0]) > 0)
        # who gets what is decided here; the outbox only encodes (once per kind,
        # encoding and view), splices each player's ack in and writes
        out = self.out
        deliveries = []
        needed = set()
        for player in self.players.values():
            if not player.connected:
                continue
            congested = out.congested(player)
            if congested is None:
                continue                 # no connection registered for it (yet)
            what = self._state_for(player, changed, congested)
            if what is not None:
                if viewing:
                    visible = self.game.view_of(player)
                    if visible is not None or player.visible is not None:
                        kind, view = self._view_key(player, what[0], visible)
                        what = (kind, what[1], view)
                deliveries.append((player,) + what)
                needed.add((what[0], what[2]))
        if not deliveries:
            return
        bodies = {key: self._state_body(key[0], patch, self.tick, key[1]) for key in needed}
        for player in out.send_state(self, self.tick, deliveries, bodies) or ():
            self.request_snapshot(player)        # could not be encoded: a snapshot next time

    def _advance_compact(self, patch, moves=None, viewing=False):
        """Keep the compact codec's slot table in step while compact players are here;
        a fresh table starts with a snapshot for each of them. (Under a game's views
        each compact player has a codec of its own: ``_view_body``.)"""
        codec = self.compact
        wanted = False
        for player in self.players.values():
            if player.connected and player.sync == "compact" and not viewing:
                wanted = True
                if not codec.active:
                    player.needs_snapshot = True
        if wanted:
            if codec.active:
                codec.advance(patch, moves)
        elif codec.active:
            codec.reset()

    def describe(self):
        """The room as the lobby lists it."""
        return self.lobby_fields({
            "id": self.name, "mode": self.mode, "phase": self.phase,
            "players": self.player_count, "max_players": self.world.max_players,
            "spectators": self.spectator_count})

    def set_user(self, player, user):
        """``player`` is the authenticated ``user``: ``players[id].user`` in the state."""
        player.user = user
        node = self.state["players"].get(player.id)
        if node is not None:
            node["user"] = user


class RoomRegistry:
    """Rooms by name; realtime rooms are created on first use."""

    def __init__(self):
        self.rooms = {}

    def get(self, name):
        return self.rooms.get(name)

    def add(self, room):
        self.rooms[room.name] = room
        return room

    def discard(self, room):
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    def __iter__(self):
        return iter(list(self.rooms.values()))

    def __len__(self):
        return len(self.rooms)
