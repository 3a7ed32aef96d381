"""Lockstep rooms: the server relays commands, every client runs the same engine.

The server runs no game. In phase ``running`` it gathers each player's
``turn`` packet (its commands for that turn, possibly none), checks sender,
turn number and size, and once every player's packet is in (or the turn's
timeout passed: the missing players get an empty turn and are named in
``late``) broadcasts one ``master`` packet with everyone's commands and the
timing it chose. Clients apply master packets in order. Packets also carry the
checksum of a turn the client has applied: checksums that differ for one turn
halt the game (phase ``running.desync``) and everyone is told the turn and who
diverged. The wire messages are in docs/LOCKSTEP.md.

This module is the room: membership, ``welcome`` and ``catchup``, the phases
and the messages. The turns themselves (packets, the turn timer, masters,
timing, checksums) are its :class:`~arbiter.lockstep_turns.TurnScheduler`'s
(arbiter/lockstep_turns.py); the room is that scheduler's
:class:`~arbiter.lockstep_turns.ITurnHost`.
"""

import os

from twisted.logger import Logger
from zope.interface import implementer

from arbiter import phases
from arbiter.ids import PlayerIds
from arbiter.phases import (DESYNC, ENDED, LAGGING, PAUSED, RUNNING, SETUP, Lobby,
                            is_running, send_reject, set_phase)
from arbiter.codes import NOT_IN_GAME, NOT_RUNNING, SPECTATOR
from arbiter.lockstep_packets import check_turn
from arbiter.lockstep_turns import ITurnHost, TurnScheduler
from arbiter.interfaces import IRoom
from arbiter.membership import JoinError, Player, RoomBase
from arbiter import codes
from arbiter.schema import WireError

log = Logger()

# a say takes from these rate buckets (arbiter/membership.py), as in a realtime room
SAY_BUCKETS = ("all", "say")


@implementer(IRoom, ITurnHost)
class LockstepRoom(RoomBase):
    """A lockstep room: setup lobby, then turns of master packets."""

    mode = "lockstep"
    #: what clients may send a lockstep room besides protocol v1 (arbiter/schema.py)
    messages = {codes.TURN: check_turn, **phases.MESSAGES}

    def __init__(self, name, config, outbox, signer, clock, ids=None, seed=None,
                 max_players=None, min_players=1, game="demo", setup=None, turn_ms=None,
                 turn_timeout=None, drop_after=None, input_delay=2, adapt_every=10,
                 metrics=None):
        self._init_base(name, config, outbox, signer, SETUP)
        self.clock = clock
        self.metrics = metrics
        self.now = clock.seconds()
        self.max_players = max_players or config.world.max_players
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        self.game = game
        self.drop_after = config.lockstep_drop_after if drop_after is None else drop_after
        self._ids = ids or PlayerIds()
        self.lobby = Lobby(self, setup, min_players)
        self.turns = TurnScheduler(
            clock, self, config.lockstep_turn_ms if turn_ms is None else turn_ms,
            config.lockstep_turn_timeout if turn_timeout is None else turn_timeout,
            input_delay, adapt_every)
        self.start_config = None       # the lobby's config at the start
        self._drop_timers = {}

    # -- what the service and the factory use -------------------------------------
    @property
    def tick(self):
        return self.turns.turn

    @property
    def turn(self):
        """The last closed turn."""
        return self.turns.turn

    @property
    def turn_ms(self):
        return self.turns.turn_ms

    @property
    def input_delay(self):
        return self.turns.input_delay

    def describe(self):
        """The room as the lobby lists it."""
        d = {"id": self.name, "mode": self.mode, "phase": self.phase,
             "players": self.player_count, "max_players": self.max_players,
             "spectators": self.spectator_count, "game": self.game}
        if is_running(self.phase):
            d["turn"] = self.turn
        return self.lobby_fields(d)

    # -- membership ------------------------------------------------------------------
    def join(self, name, role="player", sync="state", pid=None):
        """A new player; once the game runs every newcomer is a spectator."""
        if self.phase == ENDED:
            raise JoinError(codes.ROOM_ENDED, "room %s has ended" % self.name,
                            codes.CLOSE_ROOM_ENDED)
        if self.phase != SETUP:
            role = "spectator"
        if role != "spectator" and self.seats_taken() >= self.max_players:   # (held seats count)
            raise JoinError(codes.ROOM_FULL, "room %s is full (%d players)"
                            % (self.name, self.max_players), codes.CLOSE_ROOM_FULL)
        pid = pid or next(self._ids)
        player = Player(pid, name or "guest-%s" % pid, self, role, self.clock.seconds())
        player.token = self.signer.seal(room=self.name, pid=pid, n=player.nonce)
        self.players[pid] = player
        log.info("{role} {pid} ({name}) joined lockstep room {room}", role=role, pid=pid,
                 name=player.name, room=self.name)
        return player

    def token_used(self, pid):
        return pid in self.players or pid in self.turns.order

    def current_time(self):
        return self.clock.seconds()

    def resume(self, body):
        """The player a reconnect token names; returns (player, taken_over)."""
        player, taken_over = self.claim(body)
        if not taken_over:
            player.connected = True
            player.gone_at = None
            timer = self._drop_timers.pop(player.id, None)
            if timer is not None and timer.active():
                timer.cancel()
        return player, taken_over

    def welcome(self, player):
        """``welcome``, then ``setup``, then (in a running game) ``catchup``."""
        self.out.send(player, {
            "t": "welcome", "you": player.id, "name": player.name, "room": self.name,
            "token": player.token, "tick": self.turn, "ack": player.ack,
            "rate": max(1, int(1000 // max(1, self.turn_ms))), "mode": self.mode,
            "role": player.role, "phase": self.phase,
            "world": {"max_players": self.max_players, "game": self.game},
            **({"user": player.user} if player.user is not None else {}),
        })
        if self.phase == SETUP:
            self.lobby.changed()
            return
        self.out.send(player, self.lobby.wire())
        if self.start_config is not None:
            self.out.send(player, self.catchup(player))
        if is_running(self.phase) and player.id in self.turns.active:
            self._refresh_phase()
            self.turns.schedule()

    def disconnect(self, player):
        """The connection closed: in a running game a player in it pauses the game."""
        if not player.connected:
            return
        player.connected = False
        player.gone_at = self.clock.seconds()
        if player.is_spectator:
            self.players.pop(player.id, None)
            return
        if self.phase == SETUP:
            self.lobby.changed()
            return
        if player.id in self.turns.active and is_running(self.phase):
            log.info("player {pid} left running lockstep room {room}: paused",
                     pid=player.id, room=self.name)
            if self.drop_after > 0:
                self._drop_timers[player.id] = self.clock.callLater(
                    self.drop_after, self._drop, player.id)
            self._refresh_phase()
            self.turns.settle()

    def _remove(self, player):
        self.players.pop(player.id, None)
        if self.phase == SETUP:
            self.lobby.changed()

    # -- setup -> running --------------------------------------------------------------
    def start(self):
        """Every present player is ready: the game starts."""
        present = self.lobby.present()
        for p in list(self.players.values()):       # absent players leave the lobby
            if not p.is_spectator and not p.connected:
                self.players.pop(p.id, None)
        self.turns.begin([p.id for p in present])
        self.start_config = dict(self.lobby.config)
        set_phase(self, RUNNING)
        self.out.broadcast(self, self.start_message())
        log.info("lockstep room {room} started with {n} players", room=self.name,
                 n=len(self.turns.order))
        self.turns.schedule()

    def start_message(self):
        order = self.turns.order
        return {"t": "start", "seed": self.seed, "game": self.game,
                "config": self.start_config, "players": list(order),
                "names": {pid: self.players[pid].name for pid in order
                          if pid in self.players},
                "input_delay": self.input_delay, "turn_ms": self.turn_ms,
                "frames": self.turns.frames}

    def catchup(self, player):
        """Everything a (re)joining client needs to rebuild the game from the start."""
        msg = self.start_message()
        msg["t"] = "catchup"
        msg["phase"] = self.phase
        msg["turn"] = self.turn
        msg["masters"] = self.turns.masters
        if player.id in self.turns.active:
            msg["next"] = self.turns.next_for(player.id)
        if self.turns.desync is not None:
            msg["desync"] = self.turns.desync
        return msg

    # -- messages ------------------------------------------------------------------------
    def submit(self, player, msg):
        """Realtime inputs: only ``say`` means something here (PROTOCOL.md 15.10).

        A ``say`` is processed at once as a realtime room processes it on its
        tick: ``bad_seq`` unless its ``seq`` is above the last one processed
        (``welcome.ack`` after a resume), then ``rate_limited`` over the
        all-inputs or the say bucket, then relayed to everyone as event ``say``
        (spectators' too, 10). Every other input is ``not_in_game``."""
        seq = msg["seq"]
        if msg.t != codes.SAY:
            self._reject(player, seq, NOT_IN_GAME, "%s is a realtime input; a lockstep room "
                         "takes turn packets" % msg.t)
            return 0
        if seq <= player.ack:
            self._reject(player, seq, codes.BAD_SEQ, "seq %d is not above %d"
                         % (seq, player.ack))
            return 0
        player.ack = seq
        now = self.clock.seconds()
        buckets = [player.buckets[b] for b in SAY_BUCKETS]
        if not all(b.can_take(now) for b in buckets):
            self._reject(player, seq, codes.RATE_LIMITED, "too many say inputs")
            return 0
        for b in buckets:
            b.take()
        self.out.broadcast(self, {"t": "event", "kind": "say", "player": player.id,
                                  "text": msg["text"]})
        return 0

    def _reject(self, player, seq, code, text):
        self.out.send(player, {"t": "reject", "seq": seq, "code": code, "msg": text})

    def request_snapshot(self, player):
        """``resync``: the whole game again (``catchup``) once it runs."""
        self.out.send(player, self.lobby.wire())
        if self.start_config is not None:
            self.out.send(player, self.catchup(player))

    def handle_message(self, player, msg):
        if self.lobby.handle(player, msg):
            return
        if msg.t != "turn":
            raise WireError(codes.BAD_MESSAGE, "%s is not used in a lockstep room" % msg.t)
        turn = msg["turn"]
        if player.is_spectator:
            return send_reject(self, player, SPECTATOR,
                               "spectators cannot send turn packets", ref="turn", turn=turn)
        if not is_running(self.phase) or self.phase == DESYNC:
            return send_reject(self, player, NOT_RUNNING, "turn packets wait for a "
                               "running game, the room is in %s" % self.phase,
                               ref="turn", turn=turn)
        refused = self.turns.take(player.id, msg)
        if refused is not None:
            code, text = refused
            send_reject(self, player, code, text, ref="turn", turn=turn)

    # -- what the turn scheduler asks and tells (ITurnHost) ------------------------------
    def turns_may_close(self):
        return self.phase in (RUNNING, LAGGING)

    def is_present(self, pid):
        player = self.players.get(pid)
        return player is not None and player.connected

    def rtt_ms(self, pid):
        player = self.players.get(pid)
        return None if player is None else player.rtt_ms

    def broadcast(self, msg):
        self.out.broadcast(self, msg)

    def lagging_changed(self):
        self._refresh_phase()

    def desynced(self, found):
        log.warn("lockstep room {room} desynced at turn {turn}: {who} diverged",
                 room=self.name, turn=found.turn, who=found.diverged)
        set_phase(self, DESYNC, turn=found.turn, diverged=list(found.diverged))
        msg = {"t": "desync"}
        msg.update(self.turns.desync)
        self.out.broadcast(self, msg)

    # -- pause, drop, end ------------------------------------------------------------------
    def _disconnected(self):
        return [pid for pid in self.turns.order
                if pid in self.turns.active and not self.is_present(pid)]

    def _refresh_phase(self):
        """running / running.paused / running.lagging from who is missing."""
        if self.phase in (DESYNC, ENDED, SETUP):
            return
        missing = self._disconnected()
        if missing:
            if self.phase != PAUSED:
                set_phase(self, PAUSED, waiting=missing)
                self.turns.stop()
            return
        want = LAGGING if self.turns.lagging else RUNNING
        if self.phase != want:
            if self.phase == PAUSED:
                self.turns.restart_clock()       # the turn clock restarts
                want = RUNNING
            info = ({"waiting": self.turns.waiting_for(self.turn + 1)} if want == LAGGING
                    else {})
            set_phase(self, want, **info)

    def _drop(self, pid):
        """A disconnected player waited out ``drop_after``: the game goes on without it."""
        self._drop_timers.pop(pid, None)
        player = self.players.get(pid)
        if player is None or player.connected or pid not in self.turns.active:
            return
        self.turns.drop(pid)
        self.players.pop(pid, None)
        log.info("player {pid} dropped from lockstep room {room}", pid=pid, room=self.name)
        self.out.broadcast(self, {"t": "event", "kind": "dropped", "player": pid,
                                  "turn": self.turn + 1})
        if not self.turns.active:
            self.end("every player left")
            return
        self.turns.settle()
        self._refresh_phase()
        self.turns.schedule()

    def end(self, reason="ended"):
        """Phase ``ended``: tell everyone, stop the timers, close every connection."""
        self.turns.stop()
        for timer in self._drop_timers.values():
            if timer.active():
                timer.cancel()
        self._drop_timers.clear()
        if self.phase != ENDED:
            set_phase(self, ENDED, reason=reason)
        self._close_everyone(reason)

    def run_tick(self, now, dt):
        """The service's tick: setup-phase players whose grace ran out leave."""
        self.now = now
        if self.phase == SETUP:
            for player in list(self.players.values()):
                if not player.connected and now - player.gone_at >= self.config.grace:
                    self._remove(player)
