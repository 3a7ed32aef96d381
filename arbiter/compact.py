"""The compact sync (``hello.sync: "compact"``, docs/PROTOCOL.md section 20).

A realtime room's ``snapshot`` and ``delta`` messages as binary records instead of a
merge patch: every entity gets a *slot* (a small integer) when it appears, with its id
and strings; after that, a position change is the slot and the position in 0.01 units
as two- or four-byte integers. Anything the records do not cover (players, a game's own
keys, other entity fields) travels as a MessagePack merge patch in the ``REST``
section. The client's mirror ends up exactly as a ``state`` client's.

One :class:`CompactCodec` per room builds each tick's sections once; every compact
client's frame is ``head + varuint(its ack) + sections`` (``frame_parts``).
"""

import struct

import msgpack
import numpy as np

MARKER = 0xC1                 # never the first byte of a MessagePack value
DELTA, SNAPSHOT = 0x01, 0x02
APPEAR, MOVE_XZ, MOVE, TO, STOP, GONE, REST, STEP_XZ = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08)
HAS_TO, HAS_OWNER, HAS_COLOR = 0x01, 0x02, 0x04
MAX_SLOTS = 0xFFFF


def varuint(n):
    """Unsigned LEB128: seven bits a byte, least significant first, high bit = more."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _text(s):
    raw = s.encode("utf-8")
    return varuint(len(raw)) + raw


def pos_bytes_for(world_size):
    """2 when every position of a plane of this size fits a signed 16-bit count of
    0.01 units, else 4 (``welcome.compact.pos``)."""
    return 2 if world_size / 2 * 100 <= 32767 else 4


def frame_parts(kind, tick, sections):
    """A compact frame in two pieces around the ``ack`` (``varuint(ack)``)."""
    return bytes((MARKER, SNAPSHOT if kind == "snapshot" else DELTA)) + varuint(tick), sections


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class CompactCodec:
    """A room's slot table and its per-tick compact sections.

    ``advance(patch)`` runs once per state tick while the room has compact players
    (it keeps the slot table in step with the clients); ``delta()`` and
    ``snapshot(state)`` give that tick's sections. ``reset()`` forgets the table when
    no compact player is left (the next one starts with a snapshot).
    """

    def __init__(self, pos_bytes=2, columns=None):
        self.width = pos_bytes
        self.limit = (1 << (8 * pos_bytes - 1)) - 1
        self._pos = "<" + ("h" if pos_bytes == 2 else "i")
        # a columnar game's entities (arbiter/columns.py): their slot is their row, and
        # their position changes come from the arrays (``advance``'s ``moves``)
        self.columns = columns
        self._moves_dtype = np.dtype([("s", "<u2"), ("x", self._pos[0] + self._pos[1]),
                                      ("z", self._pos[0] + self._pos[1])])
        self._steps_dtype = np.dtype([("s", "<u2"), ("x", "i1"), ("z", "i1")])
        self.reset()

    def reset(self):
        self.active = False
        self.slots = {}          # entity key -> slot
        self.ys = {}             # entity key -> its y, in 0.01 units, as clients have it
        self.plain = set()       # keys of entities sent whole in REST (not slotted)
        self._free = []          # slots given back before this tick
        self._freed = []         # slots given back this tick (reusable from the next)
        self._next = 0 if self.columns is None else MAX_SLOTS   # columnar: from the top
        self._delta = b""

    # -- slots --------------------------------------------------------------------
    def _take_slot(self):
        if self._free:
            return self._free.pop()
        if self.columns is not None:
            # rows (the columnar entities' slots) count up from 0, these down from the top
            if self._next < self.columns.n:
                return None
            self._next -= 1
            return self._next + 1
        if self._next > MAX_SLOTS:
            return None
        slot = self._next
        self._next += 1
        return slot

    def _q(self, v):
        q = int(round(v * 100))
        return q if -self.limit <= q <= self.limit else None

    def _appear(self, key, e, out, slot=None):
        """The APPEAR record of entity ``key`` (a full entity map) under ``slot`` (a new
        one when None), or False when it cannot be one (then it goes whole in REST).
        Fields the record does not carry are put in ``out`` (for REST)."""
        kind = e.get("kind")
        pos = e.get("pos")
        if not isinstance(kind, str) or not isinstance(pos, list) or len(pos) != 3 \
                or not all(_number(v) for v in pos) or not key.isdigit() \
                or str(int(key)) != key:
            return False
        q = [self._q(v) for v in pos]
        if None in q:
            return False
        owner, color, to = e.get("owner"), e.get("color"), e.get("to")
        flags = 0
        tail = b""
        if to is not None:
            if not isinstance(to, list) or len(to) != 2 or not all(_number(v) for v in to):
                return False
            tq = [self._q(v) for v in to]
            if None in tq:
                return False
            flags |= HAS_TO
            tail = struct.pack(self._pos[0] + 2 * self._pos[1], *tq)
        strings = _text(kind)
        if isinstance(owner, str):
            flags |= HAS_OWNER
            strings += _text(owner)
        if isinstance(color, str):
            flags |= HAS_COLOR
            strings += _text(color)
        if slot is None:
            columns = self.columns
            slot = columns.rows.get(key) if columns is not None else None
            if slot is None:
                slot = self._take_slot()
            if slot is None:
                return False
        self.slots[key] = slot
        self.ys[key] = q[1]
        for field, v in e.items():
            if field in ("kind", "pos") or (field == "owner" and flags & HAS_OWNER) or \
                    (field == "color" and flags & HAS_COLOR) or (field == "to" and v is not None):
                continue
            out[field] = v
        return (struct.pack("<H", slot) + varuint(int(key)) + bytes((flags,)) + strings
                + struct.pack(self._pos[0] + 3 * self._pos[1], *q) + tail)

    # -- one tick ----------------------------------------------------------------------
    def _qpos(self, v):
        """A ``pos`` value as (qx, qy, qz) in hundredths, or None when it is not three
        numbers that fit."""
        if isinstance(v, list) and len(v) == 3 and all(_number(c) for c in v):
            q = self._q
            qx, qy, qz = q(v[0]), q(v[1]), q(v[2])
            if qx is not None and qy is not None and qz is not None:
                return qx, qy, qz
        return None

    def advance(self, patch, moves=None, memo=None):
        """Take this tick's merge patch (and a columnar game's ``moves``: rows and their
        new positions, from ``Columns.publish``): update the slot table, build the delta.
        ``memo``: a dict shared by codecs fed parts of the same patch in one tick (per-player
        views), so each ``pos`` is quantised once, not once per player."""
        self._free.extend(self._freed)
        self._freed = []
        self.active = True
        appear, xz, xyz, to, stop, gone = [], [], [], [], [], []
        rest_entities = {}
        ents = patch.get("entities")
        columns = self.columns
        if ents:
            slots = self.slots
            q = self._q
            for key, e in ents.items():
                slot = slots.get(key)
                if slot is None:
                    if e is None:
                        if key in self.plain:
                            self.plain.discard(key)
                            rest_entities[key] = None
                        continue
                    if key in self.plain:
                        rest_entities[key] = e
                        continue
                    extra = {}
                    record = self._appear(key, e, extra) if isinstance(e, dict) else False
                    if record is False:
                        self.plain.add(key)
                        rest_entities[key] = e
                    else:
                        appear.append(record)
                        if extra:
                            rest_entities[key] = extra
                    continue
                if e is None:
                    del slots[key]
                    self.ys.pop(key, None)
                    if columns is None or slot > self._next:
                        self._freed.append(slot)     # a row is freed by the Columns
                    gone.append(slot)
                    continue
                other = None
                in_columns = columns is not None and key in columns.rows
                for field, v in e.items():
                    if field == "pos" and in_columns:
                        continue                 # from the arrays (``moves``)
                    if field == "pos":
                        if memo is None:
                            qp = self._qpos(v)
                        else:
                            hit = memo.get(id(v))
                            if hit is not None and hit[0] is v:
                                qp = hit[1]
                            else:               # (the list itself is kept: ids stay unique)
                                qp = self._qpos(v)
                                memo[id(v)] = (v, qp)
                        if qp is not None:
                            qx, qy, qz = qp
                            if qy == self.ys.get(key):
                                xz.append((slot, qx, qz))
                            else:
                                self.ys[key] = qy
                                xyz.append((slot, qx, qy, qz))
                            continue
                    elif field == "to":
                        if v is None:
                            stop.append(slot)
                            continue
                        if isinstance(v, list) and len(v) == 2 and all(_number(c) for c in v):
                            tx, tz = q(v[0]), q(v[1])
                            if tx is not None and tz is not None:
                                to.append((slot, tx, tz))
                                continue
                    if other is None:
                        other = rest_entities[key] = {}
                    other[field] = v
        rest = {k: v for k, v in patch.items() if k != "entities"}
        if rest_entities:
            rest["entities"] = rest_entities
        extra = steps = None
        if moves is not None and len(moves[0]):
            rows, qx, qz, dx, dz = moves
            # a step of at most 1.27 units on each axis goes as STEP_XZ (4 bytes), the
            # rest (a teleport, a rule) as MOVE_XZ with the position itself
            small = (np.abs(dx) <= 127) & (np.abs(dz) <= 127)
            if small.all():
                big = None
            else:
                big = ~small
                steps_rows = rows[small]
            if big is None or steps_rows.size:
                sel = slice(None) if big is None else small
                records = np.empty(len(rows[sel]), self._steps_dtype)
                records["s"] = rows[sel]
                records["x"] = dx[sel]
                records["z"] = dz[sel]
                steps = (records.tobytes(), len(records))
            if big is not None and big.any():
                records = np.empty(int(big.sum()), self._moves_dtype)
                records["s"] = rows[big]
                records["x"] = qx[big]
                records["z"] = qz[big]
                extra = (records.tobytes(), len(records))
        self._delta = self._sections(appear, xz, xyz, to, stop, gone, rest, extra, steps)

    def delta(self):
        """This tick's delta sections (after ``advance``)."""
        return self._delta

    def snapshot(self, state):
        """The sections of a snapshot of ``state`` (the whole state map, as of this
        tick's ``advance``), with the slots the table holds; a fresh table (after
        ``reset``) is filled from it. The codec is active from then on."""
        self.active = True
        appear = []
        rest_entities = {}
        for key, e in (state.get("entities") or {}).items():
            slot = self.slots.get(key)
            if slot is None and key in self.plain:
                rest_entities[key] = e
                continue
            extra = {}
            record = self._appear(key, e, extra, slot) if isinstance(e, dict) else False
            if record is False:
                if slot is not None:          # no longer fits a record: whole, in REST
                    del self.slots[key]
                    if self.columns is None or slot > self._next:
                        self._freed.append(slot)
                self.plain.add(key)
                rest_entities[key] = e
            else:
                appear.append(record)
                if extra:
                    rest_entities[key] = extra
        rest = {k: v for k, v in state.items() if k != "entities"}
        if rest_entities:
            rest["entities"] = rest_entities
        return self._sections(appear, [], [], [], [], [], rest)

    def _sections(self, appear, xz, xyz, to, stop, gone, rest, moves=None, steps=None):
        out = []
        p = self._pos[1]
        if appear:
            out.append(bytes((APPEAR,)) + varuint(len(appear)) + b"".join(appear))
        if xz or moves:
            body, count = moves if moves else (b"", 0)
            out.append(bytes((MOVE_XZ,)) + varuint(len(xz) + count) + struct.pack(
                "<" + ("H" + 2 * p) * len(xz), *[v for r in xz for v in r]) + body)
        if xyz:
            out.append(bytes((MOVE,)) + varuint(len(xyz)) + struct.pack(
                "<" + ("H" + 3 * p) * len(xyz), *[v for r in xyz for v in r]))
        if to:
            out.append(bytes((TO,)) + varuint(len(to)) + struct.pack(
                "<" + ("H" + 2 * p) * len(to), *[v for r in to for v in r]))
        if stop:
            out.append(bytes((STOP,)) + varuint(len(stop)) + struct.pack(
                "<%dH" % len(stop), *stop))
        if gone:
            out.append(bytes((GONE,)) + varuint(len(gone)) + struct.pack(
                "<%dH" % len(gone), *gone))
        if rest:
            body = msgpack.packb(rest, use_bin_type=True)
            out.append(bytes((REST,)) + varuint(len(body)) + body)
        if steps:
            body, count = steps
            out.append(bytes((STEP_XZ,)) + varuint(count) + body)
        return b"".join(out)


# -- reading (the reference decoder: the Python client and the tests use it) -------------
class CompactError(ValueError):
    """A compact frame that does not follow docs/PROTOCOL.md section 20."""


class _Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def byte(self):
        if self.at >= len(self.data):
            raise CompactError("the frame ends early (at byte %d)" % self.at)
        b = self.data[self.at]
        self.at += 1
        return b

    def varuint(self):
        n = shift = 0
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise CompactError("a varuint longer than 9 bytes")

    def take(self, n):
        if self.at + n > len(self.data):
            raise CompactError("the frame ends early (%d bytes wanted at %d)" % (n, self.at))
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def text(self):
        return bytes(self.take(self.varuint())).decode("utf-8")

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))


def read_header(payload):
    """(kind, tick, ack, offset of the sections) of a compact frame."""
    r = _Reader(payload)
    if r.byte() != MARKER:
        raise CompactError("not a compact frame (it does not start with 0xC1)")
    kind = r.byte()
    if kind not in (DELTA, SNAPSHOT):
        raise CompactError("unknown frame kind 0x%02x" % kind)
    tick = r.varuint()
    ack = r.varuint()
    return ("snapshot" if kind == SNAPSHOT else "delta"), tick, ack, r.at


class CompactMirror:
    """A client's view built from compact frames: ``state`` is exactly the map a
    ``state`` client's merge patches build (docs/PROTOCOL.md 5)."""

    def __init__(self, pos_bytes=2):
        self.pos = "<" + ("h" if pos_bytes == 2 else "i")
        self.state = {}
        self.slots = {}          # slot -> entity key

    def apply(self, payload):
        """Apply one frame; returns (kind, tick, ack)."""
        from arbiter.state import apply_merge_patch
        kind, tick, ack, at = read_header(payload)
        r = _Reader(payload)
        r.at = at
        if kind == "snapshot":
            self.state = {"entities": {}}
            self.slots = {}
        ents = self.state.setdefault("entities", {})
        p = self.pos[1]
        last = 0
        while r.at < len(payload):
            tag = r.byte()
            if tag <= last or tag > STEP_XZ:
                raise CompactError("section 0x%02x out of order or unknown" % tag)
            last = tag
            if tag == REST:
                apply_merge_patch(self.state, msgpack.unpackb(
                    bytes(r.take(r.varuint())), raw=False, strict_map_key=False))
                continue
            count = r.varuint()
            if tag == STEP_XZ:
                # (slot, dx, dz): the position moves by that many hundredths
                slots = self.slots
                for slot, dx, dz in struct.iter_unpack("<Hbb", bytes(r.take(count * 4))):
                    key = slots.get(slot)
                    e = ents.get(key) if key is not None else None
                    if e is None:
                        raise CompactError("slot %d names no entity" % slot)
                    x, y, z = e["pos"]
                    e["pos"] = [(round(x * 100) + dx) / 100, y, (round(z * 100) + dz) / 100]
                continue
            if tag == MOVE_XZ:
                # the common section, read whole: (slot, x, z) records
                fmt = "<H" + 2 * p
                size = struct.calcsize(fmt)
                slots = self.slots
                for slot, x, z in struct.iter_unpack(fmt, bytes(r.take(count * size))):
                    key = slots.get(slot)
                    e = ents.get(key) if key is not None else None
                    if e is None:
                        raise CompactError("slot %d names no entity" % slot)
                    e["pos"] = [x / 100, e["pos"][1], z / 100]
                continue
            for _ in range(count):
                if tag == APPEAR:
                    (slot,) = r.unpack("<H")
                    key = str(r.varuint())
                    flags = r.byte()
                    e = {"kind": r.text()}
                    if flags & HAS_OWNER:
                        e["owner"] = r.text()
                    if flags & HAS_COLOR:
                        e["color"] = r.text()
                    x, y, z = r.unpack(self.pos[0] + 3 * p)
                    e["pos"] = [x / 100, y / 100, z / 100]
                    if flags & HAS_TO:
                        tx, tz = r.unpack(self.pos[0] + 2 * p)
                        e["to"] = [tx / 100, tz / 100]
                    ents[key] = e
                    self.slots[slot] = key
                    continue
                (slot,) = r.unpack("<H")
                key = self.slots.get(slot)
                if key is None or key not in ents:
                    raise CompactError("slot %d names no entity" % slot)
                e = ents[key]
                if tag == MOVE_XZ:
                    x, z = r.unpack(self.pos[0] + 2 * p)
                    e["pos"] = [x / 100, e["pos"][1], z / 100]
                elif tag == MOVE:
                    x, y, z = r.unpack(self.pos[0] + 3 * p)
                    e["pos"] = [x / 100, y / 100, z / 100]
                elif tag == TO:
                    tx, tz = r.unpack(self.pos[0] + 2 * p)
                    e["to"] = [tx / 100, tz / 100]
                elif tag == STOP:
                    e.pop("to", None)
                elif tag == GONE:
                    del ents[key]
                    del self.slots[slot]
        return kind, tick, ack
