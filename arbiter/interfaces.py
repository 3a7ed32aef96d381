"""The contracts between the layers, as zope.interface interfaces.

``IDirectory``: where rooms live when the server is one node of a cluster
(``arbiter.app.cluster.RedisDirectory``; absent in one process).
``IOutbox``: what rooms and the service call on the network edge (the
``protocols.factory.ArbiterFactory`` in a server, ``protocols.testing.RecordingOutbox``
in tests). ``IRoom``: what the service, the HTTP API and the edge call on a room
(realtime and lockstep rooms alike). ``IGame``: what a realtime room calls on its
game. ``tests/test_interfaces.py`` checks every implementation with ``verifyObject``.
"""

from zope.interface import Attribute, Interface


class IOutbox(Interface):
    """Where rooms send: one player, a whole room, a state tick; closing."""

    def send(player, msg):
        """Send one message map to one player (nothing if it is not connected)."""

    def broadcast(room, msg, exclude=None):
        """Send one message map to every connected player of ``room`` but ``exclude``."""

    def congested(player):
        """True while ``player``'s connection cannot take state messages (a full
        buffer), False when it can, None when it has no open connection."""

    def send_state(room, tick, deliveries, bodies):
        """A state tick of a realtime room: ``deliveries`` are (player, kind, ack,
        sync view) as the room decided them, ``bodies`` maps (kind, view) to (the
        map to encode, float32). Returns the players whose message could not be
        encoded (the room sends them a snapshot later)."""

    def close(player, code, reason):
        """Close one player's connection with a WebSocket close code."""

    def close_all(code, reason):
        """Close every connection; returns a Deferred (or None) that fires when done."""

    def after_tick():
        """Called by the service after each tick (resume connections paused for flooding)."""


class DirectoryUnavailable(Exception):
    """The directory (Redis) cannot be reached or did not answer in time."""


class IDirectory(Interface):
    """Rooms spread over nodes: placement, claims and routing (docs/SCALING.md).

    Every method that needs the shared store returns a Deferred and fails with
    :class:`DirectoryUnavailable` when the store cannot answer; nothing in a
    tick ever waits for one.
    """

    node_id = Attribute("this node's name")
    public_url = Attribute("this node's WebSocket URL as clients reach it")

    def place(name, create=True):
        """Where room ``name`` lives: fires with None when it is this node's to host
        (claimed for it now if nobody owned it and ``create``), with the owner's public
        URL when another node owns it, and with ``False`` when nobody owns it and
        ``create`` is false."""

    def room_opened(room):
        """A room was created on this node (it holds the room's claim)."""

    def room_closed(room):
        """A room of this node closed or ended: give its claim up."""

    def list_rooms():
        """Fires with (rooms, complete): every node's rooms as ``describe()`` maps with
        ``node`` and ``ws_url``; ``complete`` is False when only this node's could be
        read (Redis away)."""

    def create(room_id, mode, options):
        """Place a new API room on the least-loaded node and create it there: fires with
        the room's ``describe()`` map (with ``node`` and ``ws_url``); fails with
        ``arbiter.service.Refused`` (``room_exists``) or DirectoryUnavailable."""

    def at_owner(room_id, op, args):
        """Run the service's API operation ``op`` (``ArbiterService.API_OPS``) on the
        node that owns ``room_id``: fires with its result map (with ``node`` and
        ``ws_url``); fails with ``Refused`` (``unknown_room``...) or DirectoryUnavailable."""


class IRoom(Interface):
    """A room, as the service, the HTTP API and the network edge see it."""

    name = Attribute("the room's id")
    mode = Attribute("'realtime' or 'lockstep'")
    phase = Attribute("the phase (arbiter/phases.py)")
    players = Attribute("player id -> Player, spectators included")
    lobby = Attribute("the arbiter.phases.Lobby of a room with a setup phase, else None")
    persistent = Attribute("True for rooms made through the API: kept when empty")
    incarnation = Attribute("names this room in join tokens (they die with it)")
    tick = Attribute("the last state tick (lockstep: the last closed turn)")
    tick_slot = Attribute("the slot of the tick period this room ticks in (the service's)")
    now = Attribute("the time of the room's last tick or join, in seconds")
    empty = Attribute("True when no player (or spectator) is in the room")
    player_count = Attribute("players, spectators not counted")
    spectator_count = Attribute("spectators")

    def join(name, role="player", sync="state", pid=None):
        """A new player (or spectator); raises JoinError."""

    def join_with_token(body, hello):
        """A player admitted by an HTTP join token's body; raises JoinError."""

    def resume(body):
        """The player a reconnect token's body names: (player, taken_over); JoinError."""

    def welcome(player):
        """Send a (re)joined player what it needs first (welcome, snapshot or setup...)."""

    def disconnect(player):
        """The player's connection closed (not taken over)."""

    def submit(player, msg):
        """Queue a validated numbered input; returns how many of the player's are queued."""

    def request_snapshot(player):
        """``resync``: send the player the whole state again."""

    def handle_message(player, msg):
        """A validated message of the room kind's ``messages`` (configure, ready, turn)."""

    def start():
        """Setup is over (every present player is ready): the game starts."""

    def end(reason="ended"):
        """Phase ``ended``: tell everyone and close every connection."""

    def current_time():
        """The room's clock, in seconds."""

    def run_tick(now, dt):
        """One tick of the service's loop."""

    def describe():
        """The room as the lobby (GET /api/rooms) lists it."""


class IGame(Interface):
    """What a realtime room calls on its game (arbiter/games/base.py has the defaults)."""

    input_types = Attribute("message types the game takes as numbered inputs")
    input_checks = Attribute("the game's own input types -> check(raw map) -> fields")
    intent_view = Attribute("None, or intent_view(kind, src, tick) -> the intent sync view")

    def world_wire():
        """``welcome.world``."""

    def player_joined(player):
        """A new player entered (not a resume)."""

    def player_removed(player):
        """A player's grace period ended."""

    def handle(player, msg):
        """Apply one numbered input: None, or a Reject."""

    def step(dt):
        """Advance the simulation by ``dt`` seconds."""

    def tick_rules(sim_tick):
        """Rules that run every simulation tick."""

    def batch_rules(window):
        """Rules over the last 100 ms of processed inputs."""

    def on_state_tick(tick):
        """Once per state tick, before the patch is collected."""

    def take_corrections():
        """Corrections queued since the last call."""
