"""The lockstep demo game: tiny, deterministic, integer-only.

The same rules run in the browser (web/static/js/lockstep-game.js) and in the
bots (arbiter.tools.lockstep_bots); with the same seed, config and master packets
both reach the same checksum every turn. Everything is 32-bit integer
arithmetic so that Python and JavaScript agree bit for bit.

Each player steers a dot on a wrapping ``size`` x ``size`` grid (default 64, 8-1024)
by setting its velocity; dots that pass over a coin score and the coin jumps
to a new place drawn from the game's own PRNG (xorshift32, seeded from the
room's seed). Commands: ``["v", dx, dy]`` with dx, dy integers in [-2, 2].
Anything else is ignored, the same way on every client.
"""

MASK = 0xFFFFFFFF


def as_int(v):
    """``v`` as an int if it is an integral number (JSON 2.0 counts: JS cannot tell), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        if not v.is_integer():
            return None
        v = int(v)
    return v


def int_option(config, key, default, lo, hi):
    """An integer setting from the setup config, ``default`` if it is not one, clamped."""
    v = as_int(config.get(key, default))
    return default if v is None else max(lo, min(hi, v))


def xorshift32(x):
    x ^= (x << 13) & MASK
    x ^= x >> 17
    x ^= (x << 5) & MASK
    return x & MASK


def fnv1a(values):
    """FNV-1a (32-bit) over a sequence of non-negative 32-bit integers, 4 bytes each."""
    h = 0x811C9DC5
    for v in values:
        v &= MASK
        for shift in (0, 8, 16, 24):
            h ^= (v >> shift) & 0xFF
            h = (h * 0x01000193) & MASK
    return h


class DemoGame:
    """One client's copy of the game."""

    def __init__(self, seed, players, config=None):
        config = config or {}
        self.size = int_option(config, "size", 64, 8, 1024)
        self.coins_n = int_option(config, "coins", 5, 0, 64)
        self.rng = (int(seed) & MASK) or 0x9E3779B9
        self.turn = 0
        self.frame = 0
        self.players = list(players)
        self.units = {}
        for i, pid in enumerate(self.players):
            self.units[pid] = [(i * 11 + 3) % self.size, (i * 7 + 5) % self.size, 0, 0, 0]
        self.coins = [self._place() for _ in range(self.coins_n)]

    def _next(self):
        self.rng = xorshift32(self.rng)
        return self.rng

    def _place(self):
        return [self._next() % self.size, self._next() % self.size]

    def apply(self, pid, cmd):
        unit = self.units.get(pid)
        if unit is None or not isinstance(cmd, list) or len(cmd) != 3 or cmd[0] != "v":
            return
        dx, dy = as_int(cmd[1]), as_int(cmd[2])
        if dx is None or dy is None or not (-2 <= dx <= 2 and -2 <= dy <= 2):
            return
        unit[2], unit[3] = dx, dy

    def step(self):
        self.frame += 1
        size = self.size
        for pid in self.players:
            unit = self.units.get(pid)
            if unit is None:
                continue
            unit[0] = (unit[0] + unit[2]) % size
            unit[1] = (unit[1] + unit[3]) % size
            for coin in self.coins:
                if coin[0] == unit[0] and coin[1] == unit[1]:
                    unit[4] += 1
                    coin[0], coin[1] = self._place()

    def apply_master(self, master):
        """One master packet: drops, everyone's commands in player order, then ``frames`` steps."""
        for pid in master.get("dropped", ()):
            self.units.pop(pid, None)
        cmds = master.get("cmds", {})
        for pid in self.players:
            for cmd in cmds.get(pid, ()):
                self.apply(pid, cmd)
        for _ in range(max(1, as_int(master.get("frames", 1)) or 1)):
            self.step()
        self.turn = master["turn"]

    def checksum(self):
        values = [self.turn, self.frame, self.rng]
        for pid in self.players:
            unit = self.units.get(pid)
            if unit is not None:
                values.extend(v & MASK for v in unit)
        for coin in self.coins:
            values.extend(coin)
        return fnv1a(values)
