"""Columnar entity positions: one row per entity, its components in NumPy arrays.

The cube game keeps its cubes here instead of in the state map (docs/STATE.md,
"Columnar entities"): a tick steps every moving cube in one vectorised pass, and what
changed is found by comparing arrays, not by tracking every dict write. The state map
still holds each entity's other fields (``kind``, ``owner``, ``color``, ``to``); its
``pos`` is written from here only when a client needs merge patches (``flush``), and
the compact sync (arbiter/compact.py) reads the changed rows straight from the arrays.

Results are identical to arbiter/movement.py's ``step_toward`` and ``round2``: the same
IEEE double operations in the same order (NumPy's ``sqrt`` is correctly rounded, like
``math.sqrt``), and positions are rounded half away from zero to hundredths.
"""

import numpy as np

_F = np.float64
_I = np.int64


def quantise(v):
    """Hundredths, rounded half away from zero, as integers (``round2(v) == q / 100``)."""
    a = np.floor(np.abs(v) * 100 + 0.5)
    return np.where(v >= 0, a, -a).astype(_I)


class Columns:
    """Rows of (x, y, z, target) for entities, with what clients were last told.

    Arrays: ``x``, ``z`` (the exact position), ``tx``, ``tz`` (the target of a moving
    row), ``qx``, ``qy``, ``qz`` (the position in hundredths, as clients see it),
    ``px``, ``pz`` (as the last state tick published it), ``mx``, ``mz`` (as the state
    map holds it), ``moving``, ``alive``. A freed row is reused only after the next
    ``publish`` (the compact sync's slots are these rows; PROTOCOL.md 20.3).
    """

    def __init__(self, capacity=16):
        self.n = 0                   # rows in use or freed (high-water mark)
        self.key = []                # row -> entity key (str) or None
        self.node = []               # row -> the entity's state-map node
        self.rows = {}               # entity key -> row
        self._free = []
        self._freed = []
        self._alloc(capacity)

    def _alloc(self, capacity):
        old = getattr(self, "x", None)
        names = ("x", "z", "tx", "tz")
        ints = ("qx", "qy", "qz", "px", "pz", "mx", "mz")
        for name in names:
            a = np.zeros(capacity, _F)
            if old is not None:
                a[:self.n] = getattr(self, name)[:self.n]
            setattr(self, name, a)
        for name in ints:
            a = np.zeros(capacity, _I)
            if old is not None:
                a[:self.n] = getattr(self, name)[:self.n]
            setattr(self, name, a)
        for name in ("moving", "alive"):
            a = np.zeros(capacity, bool)
            if old is not None:
                a[:self.n] = getattr(self, name)[:self.n]
            setattr(self, name, a)
        self.capacity = capacity

    def __contains__(self, key):
        return key in self.rows

    def __len__(self):
        return len(self.rows)

    # -- rows -------------------------------------------------------------------
    def add(self, key, node, x, y, z):
        """A new row for entity ``key`` at (x, y, z) (already rounded), its map ``node``
        holding the same ``pos``; returns the row."""
        if self._free:
            row = self._free.pop()
        else:
            if self.n == self.capacity:
                self._alloc(self.capacity * 2)
            row = self.n
            self.n += 1
            self.key.append(None)
            self.node.append(None)
        self.key[row] = key
        self.node[row] = node
        self.rows[key] = row
        qx, qz = int(quantise(_F(x))), int(quantise(_F(z)))
        self.x[row], self.z[row] = x, z
        self.qx[row] = self.px[row] = self.mx[row] = qx
        self.qz[row] = self.pz[row] = self.mz[row] = qz
        self.qy[row] = int(quantise(_F(y)))
        self.moving[row] = False
        self.alive[row] = True
        return row

    def remove(self, key):
        row = self.rows.pop(key)
        self.key[row] = None
        self.node[row] = None
        self.alive[row] = False
        self.moving[row] = False
        self._freed.append(row)
        return row

    def place(self, row, x, z):
        """Put a row at (x, z) (exact); it stops."""
        self.x[row], self.z[row] = x, z
        self.qx[row], self.qz[row] = int(quantise(_F(x))), int(quantise(_F(z)))
        self.moving[row] = False

    def target(self, row, tx, tz):
        self.tx[row], self.tz[row] = tx, tz
        self.moving[row] = True

    def stop(self, row):
        self.moving[row] = False

    def position(self, row):
        """(x, z) as clients see it: rounded to 0.01."""
        return int(self.qx[row]) / 100, int(self.qz[row]) / 100

    # -- a simulation step --------------------------------------------------------------
    def step(self, dist):
        """Every moving row goes ``dist`` toward its target (movement.step_toward, then
        round2, on each). Returns the rows that arrived (they stop)."""
        rows = np.flatnonzero(self.moving[:self.n])
        if not rows.size:
            return rows
        x, z = self.x[rows], self.z[rows]
        tx, tz = self.tx[rows], self.tz[rows]
        ddx = tx - x
        ddz = tz - z
        remaining = np.sqrt(ddx * ddx + ddz * ddz)
        arrive = (remaining <= dist) | (remaining == 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = dist / remaining
            nx = np.where(arrive, tx, x + ddx * f)
            nz = np.where(arrive, tz, z + ddz * f)
        self.x[rows] = nx
        self.z[rows] = nz
        self.qx[rows] = quantise(nx)
        self.qz[rows] = quantise(nz)
        arrived = rows[arrive]
        self.moving[arrived] = False
        return arrived

    # -- what changed ---------------------------------------------------------------
    def publish(self):
        """Rows whose rounded position changed since the last call, with it and the
        step from what the last call published: (rows, qx, qz, dx, dz), in hundredths.
        Rows freed before this call may be reused after it."""
        n = self.n
        changed = np.flatnonzero(((self.qx[:n] != self.px[:n]) | (self.qz[:n] != self.pz[:n]))
                                 & self.alive[:n])
        qx, qz = self.qx[changed], self.qz[changed]
        dx = qx - self.px[changed]
        dz = qz - self.pz[changed]
        self.px[changed] = qx
        self.pz[changed] = qz
        self._free.extend(self._freed)
        self._freed = []
        return changed, qx, qz, dx, dz

    def flush(self):
        """Write into the state map the positions it does not have yet (its nodes'
        ``pos``); returns how many."""
        n = self.n
        stale = np.flatnonzero(((self.qx[:n] != self.mx[:n]) | (self.qz[:n] != self.mz[:n]))
                               & self.alive[:n])
        if not stale.size:
            return 0
        qx = self.qx[stale].tolist()
        qz = self.qz[stale].tolist()
        qy = self.qy[stale].tolist()
        nodes = self.node
        for row, x, y, z in zip(stale.tolist(), qx, qy, qz):
            nodes[row].set_leaf("pos", [x / 100, y / 100, z / 100])
        self.mx[stale] = self.qx[stale]
        self.mz[stale] = self.qz[stale]
        return len(qx)
