"""What every room shares: players, join errors, and :class:`RoomBase`.

Realtime rooms (arbiter/room.py) and lockstep rooms (arbiter/lockstep.py) both
derive from :class:`RoomBase`: membership counts, joining with an HTTP join
token, taking over with a reconnect token, persistence, incarnation and ending
are written once, here.
"""

import os

from zope.interface import implementer

from arbiter import codes, phases
from arbiter.interfaces import IRoom
from arbiter.rules import TokenBucket

# Rate buckets per player (capacity, refill per second), PROTOCOL.md "Rules".
ALL_INPUTS = (120, 60)
SAY = (5, 5)
SPAWN_DELETE = (10, 10)


class JoinError(Exception):
    """A ``hello`` that cannot be honoured: the error code, a message, the close code
    (and for ``moved``, the owner's ``url``)."""

    def __init__(self, code, msg, close_code=None, url=None):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.close_code = close_code
        self.url = url

    def wire(self):
        """The ``error`` message that tells the client."""
        msg = {"t": "error", "code": self.code, "msg": self.msg}
        if self.url is not None:
            msg["url"] = self.url
        return msg


class Player:
    """One player's place in a room: identity, acks, rate buckets, connection flag."""

    def __init__(self, pid, name, room, role, now):
        self.id = pid
        self.name = name
        self.room = room
        self.role = role
        self.nonce = os.urandom(6).hex()
        self.token = None
        self.connected = True
        self.gone_at = None
        self.ack = 0             # highest seq processed
        self.sent_ack = -1       # ack carried by the last state message
        self.needs_snapshot = False
        self.queued = 0
        self.color = None
        self.sync = "state"
        self.rtt_ms = None
        self.ping_reported_at = None
        self.user = None         # the authenticated user id (docs/LOBBY.md), None for a guest
        self.visible = None      # entity keys this player has under a game's view (None: all)
        self.view_codec = None   # its own compact codec under a game's view
        self.buckets = {
            "all": TokenBucket(*ALL_INPUTS, now),
            "say": TokenBucket(*SAY, now),
            "spawn": TokenBucket(*SPAWN_DELETE, now),
        }

    @property
    def is_spectator(self):
        return self.role == "spectator"

    def __repr__(self):
        return "<Player %s %r in %s>" % (self.id, self.name, self.room.name)


@implementer(IRoom)
class RoomBase:
    """What every kind of room does the same way: who is in it, joining with an
    HTTP join token, taking a reconnect token, ending. Subclasses set the
    attributes below in their ``__init__`` (calling :meth:`_init_base`) and
    implement ``join``, ``resume``, ``welcome``, ``disconnect``, ``submit``,
    ``request_snapshot``, ``handle_message``, ``start``, ``run_tick`` and ``describe``."""

    mode = None
    #: what clients may send this kind of room besides protocol v1 (arbiter/schema.py)
    messages = {}

    def _init_base(self, name, config, outbox, signer, phase, lobby=None):
        self.name = name
        self.config = config
        self.out = outbox
        self.signer = signer
        self.players = {}          # id -> Player (players and spectators)
        self.phase = phase
        self.lobby = lobby         # an arbiter.phases.Lobby while the room has a setup phase
        self.persistent = False    # made through the API: kept when empty
        # join tokens name this incarnation: they die with the room, not with its name
        self.incarnation = os.urandom(6).hex()
        self.tick_slot = 0
        # the lobby (docs/LOBBY.md): a private room is not listed and takes join tokens
        # only; a self-service room lets anyone mint join tokens even with --api-key; a
        # quick-match room carries its match key (POST /api/match)
        self.private = False
        self.self_service = False
        self.match = None          # None, or {"tag": str|None} for a room quick match fills
        self.reserved = {}         # player id of an unused join token -> its expiry
        self.hold_until = 0.0      # kept, even empty, until then (a room made for a match)

    def lobby_fields(self, d):
        """``describe()``'s lobby keys: ``private``, ``match``/``tag`` when they apply."""
        if self.private:
            d["private"] = True
        if self.reserved and self.seats_taken() > self.player_count:
            d["reserved"] = self.seats_taken() - self.player_count   # seats join tokens hold
        if self.match is not None:
            d["match"] = True
            if self.match.get("tag"):
                d["tag"] = self.match["tag"]
        return d

    def reserve(self, pid, expires):
        """A join token for ``pid`` was minted: its seat is held until ``expires``."""
        self.reserved[pid] = expires
        self.hold_until = 0.0      # from now on the seats keep the room

    def seats_taken(self):
        """Players plus the seats held by join tokens not yet used (expired ones freed)."""
        if self.reserved:
            now = self.current_time()
            for pid in [p for p, exp in self.reserved.items() if exp <= now]:
                del self.reserved[pid]
        return self.player_count + len(self.reserved)

    def player_of_user(self, user):
        """The player (connected or in its grace period) authenticated as ``user``."""
        for player in self.players.values():
            if player.user == user:
                return player
        return None

    @property
    def player_count(self):
        return sum(1 for p in self.players.values() if not p.is_spectator)

    @property
    def spectator_count(self):
        return sum(1 for p in self.players.values() if p.is_spectator)

    @property
    def empty(self):
        """No player, and no seat held for a join token (a quick match's room waits for
        the players it admitted)."""
        return (not self.players and not (self.reserved and self.seats_taken())
                and not (self.hold_until and self.current_time() < self.hold_until))

    def claim(self, body):
        """The player a reconnect token's body names, its old connection (if still
        open) closed with 4000. Returns (player, taken_over); JoinError(bad_token)
        if the player is gone."""
        player = self.players.get(body.get("pid"))
        if player is None or player.nonce != body.get("n"):
            raise JoinError(codes.BAD_TOKEN, "token is dead: the player is gone",
                            codes.CLOSE_BAD_TOKEN)
        taken_over = player.connected
        if taken_over:
            self.out.close(player, codes.CLOSE_TAKEN_OVER, "taken over by a new connection")
        return player, taken_over

    def token_used(self, pid):
        """True if the player id of a join token has been in this room already."""
        return pid in self.players

    def join_with_token(self, body, hello):
        """A player admitted by an HTTP join token (docs/HTTP.md): its id is the token's."""
        pid = body.get("player")
        if body.get("inc") != self.incarnation:
            raise JoinError(codes.BAD_TOKEN, "join token is for an earlier room of that name",
                            codes.CLOSE_BAD_TOKEN)
        if not isinstance(pid, str) or self.token_used(pid):
            raise JoinError(codes.BAD_TOKEN, "join token already used: reconnect with the "
                            "token from welcome", codes.CLOSE_BAD_TOKEN)
        role = "spectator" if "spectator" in (body.get("role"), hello.get("role")) else "player"
        self.reserved.pop(pid, None)
        player = self.join(body.get("name"), role=role, sync=hello.get("sync", "state"),
                           pid=pid)
        if body.get("user"):
            self.set_user(player, body["user"])
        return player

    def set_user(self, player, user):
        """``player`` is the authenticated ``user`` (docs/LOBBY.md)."""
        player.user = user

    def current_time(self):
        """The room's clock, in seconds."""
        raise NotImplementedError

    def end(self, reason="ended"):
        """Phase ``ended``: tell everyone (rooms with phases), close every connection."""
        if self.lobby is not None or self.persistent:
            phases.set_phase(self, phases.ENDED, reason=reason)
        self.phase = phases.ENDED
        self._close_everyone(reason)

    def _close_everyone(self, reason):
        for player in list(self.players.values()):
            if player.connected:
                self.out.close(player, codes.CLOSE_ENDED, "room ended: %s" % reason)
