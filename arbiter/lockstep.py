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
"""

import itertools
import os

from twisted.logger import Logger
from zope.interface import implementer

from arbiter import phases
from arbiter.ids import PlayerIds
from arbiter.phases import (DESYNC, ENDED, LAGGING, PAUSED, RUNNING, SETUP, Lobby,
                            is_running, send_reject, set_phase)
from arbiter.checksums import ChecksumLedger
from arbiter.codes import (BAD_TURN, DUPLICATE, LATE, NOT_IN_GAME, NOT_RUNNING, SPECTATOR,
                           TOO_BIG)
from arbiter.lockstep_packets import MAX_AHEAD, MAX_CMD_BYTES, adapt_timing, check_turn
from arbiter.interfaces import IRoom
from arbiter.membership import JoinError, Player, RoomBase
from arbiter import codes
from arbiter.schema import WireError

log = Logger()

EPS = 1e-6
ROOM_ENDED = "room_ended"     # not (yet) in arbiter/codes.py: the JS client has no name for it
CLOSE_ROOM_ENDED = 4004


@implementer(IRoom)
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
        self.base_turn_ms = config.lockstep_turn_ms if turn_ms is None else turn_ms
        self.turn_timeout = (config.lockstep_turn_timeout if turn_timeout is None
                             else turn_timeout)
        self.drop_after = config.lockstep_drop_after if drop_after is None else drop_after
        self.input_delay = max(1, int(input_delay))
        self.adapt_every = max(1, int(adapt_every))
        self.lag_after = min(0.25, self.turn_timeout / 2.0)
        self._ids = ids or PlayerIds()
        self.lobby = Lobby(self, setup, min_players)
        # the game, from start on
        self.order = []                # player ids in the game, in join order
        self.active = set()            # ... minus the dropped ones
        self.start_config = None
        self.turn = 0                  # the last closed turn
        self.turn_ms = self.base_turn_ms
        self.frames = 1
        self.pending = {}              # turn -> {pid: cmds}
        self.masters = []              # every master packet, masters[n - 1] is turn n
        self.ledger = ChecksumLedger()
        self.reports = {}              # pid -> (lat, fps)
        self.to_drop = []              # dropped players announced in the next master
        self.desync = None
        self.last_close_at = None
        self.lagging = False
        self._timer = None
        self._drop_timers = {}

    # -- what the service and the factory use -------------------------------------
    @property
    def tick(self):
        return self.turn

    def describe(self):
        """The room as the lobby lists it."""
        d = {"id": self.name, "mode": self.mode, "phase": self.phase,
             "players": self.player_count, "max_players": self.max_players,
             "spectators": self.spectator_count, "game": self.game}
        if is_running(self.phase):
            d["turn"] = self.turn
        return d

    # -- membership ------------------------------------------------------------------
    def join(self, name, role="player", sync="state", pid=None):
        """A new player; once the game runs every newcomer is a spectator."""
        if self.phase == ENDED:
            raise JoinError(ROOM_ENDED, "room %s has ended" % self.name, CLOSE_ROOM_ENDED)
        if self.phase != SETUP:
            role = "spectator"
        if role != "spectator" and self.player_count >= self.max_players:
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
        return pid in self.players or pid in self.order

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
            "token": player.token, "tick": self.turn, "ack": 0,
            "rate": max(1, int(1000 // max(1, self.turn_ms))), "mode": self.mode,
            "role": player.role, "phase": self.phase,
            "world": {"max_players": self.max_players, "game": self.game},
        })
        if self.phase == SETUP:
            self.lobby.changed()
            return
        self.out.send(player, self.lobby.wire())
        if self.start_config is not None:
            self.out.send(player, self.catchup(player))
        if is_running(self.phase) and player.id in self.active:
            self._refresh_phase()
            self._schedule()

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
        if player.id in self.active and is_running(self.phase):
            log.info("player {pid} left running lockstep room {room}: paused",
                     pid=player.id, room=self.name)
            if self.drop_after > 0:
                self._drop_timers[player.id] = self.clock.callLater(
                    self.drop_after, self._drop, player.id)
            self._refresh_phase()
            self._settle_checks()

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
        self.order = [p.id for p in present]
        self.active = set(self.order)
        self.start_config = dict(self.lobby.config)
        self.last_close_at = self.clock.seconds()
        set_phase(self, RUNNING)
        self.out.broadcast(self, self.start_message())
        log.info("lockstep room {room} started with {n} players", room=self.name,
                 n=len(self.order))
        self._schedule()

    def start_message(self):
        return {"t": "start", "seed": self.seed, "game": self.game,
                "config": self.start_config, "players": list(self.order),
                "names": {pid: self.players[pid].name for pid in self.order
                          if pid in self.players},
                "input_delay": self.input_delay, "turn_ms": self.turn_ms,
                "frames": self.frames}

    def catchup(self, player):
        """Everything a (re)joining client needs to rebuild the game from the start."""
        msg = self.start_message()
        msg["t"] = "catchup"
        msg["phase"] = self.phase
        msg["turn"] = self.turn
        msg["masters"] = self.masters
        if player.id in self.active:
            have = self.pending
            nxt = self.turn + 1
            while player.id in have.get(nxt, ()):
                nxt += 1
            msg["next"] = nxt
        if self.desync is not None:
            msg["desync"] = self.desync
        return msg

    # -- messages ------------------------------------------------------------------------
    def submit(self, player, msg):
        """Realtime inputs: only ``say`` means something here."""
        if msg.t == "say":
            self.out.broadcast(self, {"t": "event", "kind": "say", "player": player.id,
                                      "text": msg["text"]})
        else:
            self.out.send(player, {"t": "reject", "seq": msg["seq"], "code": NOT_IN_GAME,
                                   "msg": "%s is a realtime input; a lockstep room takes "
                                          "turn packets" % msg.t})
        return 0

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
        if player.id not in self.active:
            return send_reject(self, player, NOT_IN_GAME, "player %s is not in this game"
                               % player.id, ref="turn", turn=turn)
        if "lat" in msg.fields or "fps" in msg.fields:
            lat, fps = self.reports.get(player.id, (None, None))
            self.reports[player.id] = (msg.get("lat", lat), msg.get("fps", fps))
        if "check" in msg.fields:
            self._take_check(player.id, *msg["check"])
            if self.phase == DESYNC:
                return
        if turn <= self.turn:
            return send_reject(self, player, LATE, "turn %d is closed (the last closed turn "
                               "is %d): your commands for it were dropped"
                               % (turn, self.turn), ref="turn", turn=turn)
        if turn > self.turn + MAX_AHEAD:
            return send_reject(self, player, BAD_TURN, "turn %d is too far ahead: expected "
                               "%d to %d" % (turn, self.turn + 1, self.turn + MAX_AHEAD),
                               ref="turn", turn=turn)
        if msg["size"] > MAX_CMD_BYTES:
            return send_reject(self, player, TOO_BIG, "commands for turn %d are %d bytes, "
                               "at most %d allowed" % (turn, msg["size"], MAX_CMD_BYTES),
                               ref="turn", turn=turn)
        slot = self.pending.setdefault(turn, {})
        if player.id in slot:
            return send_reject(self, player, DUPLICATE, "turn %d already has your packet"
                               % turn, ref="turn", turn=turn)
        slot[player.id] = msg["cmds"]
        if turn == self.turn + 1:
            self._schedule()

    # -- turns ---------------------------------------------------------------------------
    def _waiting_for(self, turn):
        slot = self.pending.get(turn, {})
        return [pid for pid in self.order if pid in self.active and pid not in slot]

    def _disconnected(self):
        return [pid for pid in self.order if pid in self.active
                and not (pid in self.players and self.players[pid].connected)]

    def _schedule(self):
        """Close the next turn now, or set the one timer for when something is due.

        A turn closes ``turn_ms`` after the previous one once every player's
        packet is in; a turn still incomplete ``lag_after`` past that moves the
        room to ``running.lagging``; ``turn_timeout`` past it the turn closes
        anyway and the missing players are named in ``late``."""
        self._cancel_timer()
        if self.phase not in (RUNNING, LAGGING):
            return
        now = self.clock.seconds()
        due = self.last_close_at + self.turn_ms / 1000.0
        if not self._waiting_for(self.turn + 1):
            at = due
        else:
            lag_at = due + self.lag_after
            if not self.lagging and now + EPS >= lag_at:
                self.lagging = True
                self._refresh_phase()
            at = due + self.turn_timeout if self.lagging else lag_at
        if at <= now + EPS:
            self._close_turn()
            return
        self._timer = self.clock.callLater(at - now, self._schedule)

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _close_turn(self):
        n = self.turn + 1
        slot = self.pending.pop(n, {})
        cmds = {pid: slot.get(pid, []) for pid in self.order if pid in self.active}
        master = {"t": "master", "turn": n, "cmds": cmds, "turn_ms": self.turn_ms,
                  "frames": self.frames}
        late = [pid for pid in cmds if pid not in slot]
        if late:
            master["late"] = late
        if self.to_drop:
            master["dropped"], self.to_drop = self.to_drop, []
        self.turn = n
        self.masters.append(master)
        self.last_close_at = self.clock.seconds()
        self.out.broadcast(self, master)
        if n % self.adapt_every == 0:
            self._adapt()
        if self.lagging:
            self.lagging = False
            self._refresh_phase()
        self._schedule()

    def _adapt(self):
        reports = []
        for pid in self.active:
            lat, fps = self.reports.get(pid, (None, None))
            player = self.players.get(pid)
            if lat is None and player is not None and player.rtt_ms is not None:
                lat = player.rtt_ms
            reports.append((lat, fps))
        self.turn_ms, self.frames = adapt_timing(self.base_turn_ms, reports,
                                                 self.input_delay, self.turn_ms)

    # -- checksums -----------------------------------------------------------------------
    def _expected_checks(self):
        return [pid for pid in self.order if pid in self.active
                and pid in self.players and self.players[pid].connected]

    def _take_check(self, pid, turn, value):
        if turn > self.turn:
            return          # a checksum of a turn not closed yet cannot be right; ignore
        found = self.ledger.report(pid, turn, value, self._expected_checks(), self.order)
        if found is not None:
            self._halt(found)

    def _settle_checks(self):
        found = self.ledger.settle_all(self._expected_checks(), self.order)
        if found is not None:
            self._halt(found)

    def _halt(self, found):
        self.desync = found.as_wire()
        self._cancel_timer()
        log.warn("lockstep room {room} desynced at turn {turn}: {who} diverged",
                 room=self.name, turn=found.turn, who=found.diverged)
        set_phase(self, DESYNC, turn=found.turn, diverged=list(found.diverged))
        msg = {"t": "desync"}
        msg.update(self.desync)
        self.out.broadcast(self, msg)

    # -- pause, drop, end ------------------------------------------------------------------
    def _refresh_phase(self):
        """running / running.paused / running.lagging from who is missing."""
        if self.phase in (DESYNC, ENDED, SETUP):
            return
        missing = self._disconnected()
        if missing:
            if self.phase != PAUSED:
                set_phase(self, PAUSED, waiting=missing)
                self._cancel_timer()
            return
        want = LAGGING if self.lagging else RUNNING
        if self.phase != want:
            if self.phase == PAUSED:
                self.lagging = False
                want = RUNNING
                self.last_close_at = self.clock.seconds()   # the turn clock restarts
            info = {"waiting": self._waiting_for(self.turn + 1)} if want == LAGGING else {}
            set_phase(self, want, **info)

    def _drop(self, pid):
        """A disconnected player waited out ``drop_after``: the game goes on without it."""
        self._drop_timers.pop(pid, None)
        player = self.players.get(pid)
        if player is None or player.connected or pid not in self.active:
            return
        self.active.discard(pid)
        self.to_drop.append(pid)
        self.players.pop(pid, None)
        self.reports.pop(pid, None)
        log.info("player {pid} dropped from lockstep room {room}", pid=pid, room=self.name)
        self.out.broadcast(self, {"t": "event", "kind": "dropped", "player": pid,
                                  "turn": self.turn + 1})
        if not self.active:
            self.end("every player left")
            return
        self._settle_checks()
        self._refresh_phase()
        self._schedule()

    def end(self, reason="ended"):
        """Phase ``ended``: tell everyone, stop the timers, close every connection."""
        self._cancel_timer()
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
