"""A tiny second game, the worked example of docs/GAMES.md: players paint cells.

Run it with ``twistd -n arbiter --game arbiter.games.paint:PaintGame``. Input:
``{"t": "paint", "seq": n, "cell": [i, j]}``; state gains a top-level
``cells`` map, ``"i,j" -> "#rrggbb"`` (the painter's colour).
"""

from zope.interface import implementer

from arbiter.games.base import Game
from arbiter.interfaces import IGame
from arbiter import codes, schema
from arbiter.rules import Reject

GRID = 16
COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"]


def check_paint(raw):
    cell = raw.get("cell")
    if not isinstance(cell, list) or len(cell) != 2:
        raise schema.bad("expected [i, j] for cell, got %r" % (cell,))
    return {"seq": schema.seq(raw), "cell": [schema.integer("cell", c) for c in cell]}


@implementer(IGame)
class PaintGame(Game):
    input_types = frozenset({"paint"})
    input_checks = {"paint": check_paint}

    def __init__(self, room):
        super().__init__(room)
        self.state["cells"] = {}

    def world_wire(self):
        return {"grid": GRID, "max_players": self.world.max_players}

    def player_joined(self, player):
        player.color = COLORS[len(self.room.players) % len(COLORS)]

    def handle(self, player, msg):
        i, j = msg["cell"]
        if not (0 <= i < GRID and 0 <= j < GRID):
            return Reject(codes.OUT_OF_BOUNDS, "cell %r is off the %dx%d grid" % ([i, j], GRID, GRID))
        self.state["cells"]["%d,%d" % (i, j)] = player.color
        return None

    def player_removed(self, player):
        cells = self.state["cells"]
        for key in [k for k, c in cells.items() if c == player.color]:
            del cells[key]
