"""The game interface a realtime room drives.

A room owns players, the input queue, the state map and the clock; a game owns
what the inputs mean. Subclass :class:`Game` and pass it to the server
(``--game module:Class``) to run your own game on Arbiter; see docs/GAMES.md.

Per input the room runs, in order: ``bad_seq`` and the rate buckets (room
rules), then ``game.handle(player, msg)``, which returns ``None`` when applied
or a :class:`~arbiter.rules.Reject`. Each simulation tick: ``step(dt)``, then
every tick rule; every 100 ms the batched rules; on each state tick
``on_state_tick(tick)``.
"""

from zope.interface import implementer

from arbiter.interfaces import IGame


@implementer(IGame)
class Game:
    """Base class: a game with no entities, that accepts only ``say``."""

    #: message types this game takes as numbered inputs (``say`` is the room's).
    input_types = frozenset()
    #: the game's own numbered inputs, beyond protocol v1's: type -> check(raw map) ->
    #: fields (arbiter/schema.py has the field checks). The service's schema accepts them.
    input_checks = {}
    #: None, or ``intent_view(kind, src, tick)``: what ``sync: "intent"`` clients get
    intent_view = None
    #: None, or the arbiter.columns.Columns holding the game's entity positions
    columns = None

    def __init__(self, room):
        self.room = room
        self.state = room.state      # the room's TrackedMap: {"entities", "players", ...}
        self.world = room.world

    def world_wire(self):
        """``welcome.world``."""
        return self.world.as_wire()

    def welcome_fields(self):
        """Extra top-level fields of ``welcome`` (extensions; none in protocol v1)."""
        return {}

    def player_joined(self, player):
        """A new player entered (not a resume). Create its entities here."""

    def player_removed(self, player):
        """A player's grace period ended: remove what it owned."""

    def handle(self, player, msg):
        """Apply one numbered input; return None, or a Reject to refuse it."""
        return None

    def step(self, dt):
        """Advance the simulation by ``dt`` seconds."""

    def tick_rules(self, sim_tick):
        """Rules that run every simulation tick after ``step``."""

    def batch_rules(self, window):
        """Rules over the last 100 ms: ``window`` lists (player, msg) processed in it."""

    def on_state_tick(self, tick):
        """Called once per state tick, before the patch is collected."""

    def sync_positions(self, flush):
        """A columnar game (``columns``): called on each state tick before the patch is
        collected; returns ``columns.publish()`` and, with ``flush``, writes the
        positions into the state map (docs/GAMES.md). Others: None."""
        return None

    def flush_positions(self):
        """A columnar game: write its positions into the state map (before a snapshot)."""

    def take_corrections(self):
        """Corrections queued by rules since the last call (sent after each tick)."""
        return []

    # -- per-player views (docs/GAMES.md, "Hidden information") ---------------------------
    #: True when :meth:`view_of` may hide entities; the room then cuts each player's
    #: snapshot and delta to what it may see (False: everyone sees everything, no cost)
    views_on = False

    def view_of(self, player):
        """The entity keys (a frozenset of the ``entities`` map's keys) ``player`` may see
        this state tick, or None for all of them. Called once per state tick per player
        while ``views_on``; an entity that enters the set reaches the player whole, one that
        leaves it is deleted from its mirror (``null``). Spectators: what you decide here."""
        return None

    # -- rounds (arbiter/rounds.py) -------------------------------------------------------
    def round_started(self, n):
        """Round ``n`` (2, 3, ...) began: scores are back at 0. Reset the world here."""

    def round_ended(self, result):
        """The round ended: ``result`` is {round, reason, scores, winner}. The room stands
        still until the next one. To end a round yourself: ``self.room.end_round(...)``."""
