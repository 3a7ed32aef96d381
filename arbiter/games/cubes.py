"""The cube game: avatars driven by ``move``, cubes spawned, deleted and ordered,
``tag`` with lag compensation, and an example authority rule.
"""

import math
from collections import deque

import numpy as np

from zope.interface import implementer

from arbiter.columns import Columns
from arbiter.games.base import Game
from arbiter.interfaces import IGame
from arbiter.movement import round2, step_avatar, step_toward
from arbiter.rules import Correction, MovementBudget, Reject
from arbiter import codes

PALETTE = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000",
    "#aaffc3", "#808000",
]
Y = 0.5

#: the ``owner`` of the entities the server owns (drones, pickups): never a player's id
SERVER = "server"
DRONE_COLOR = "#ff2d55"
PICKUP_COLOR = "#ffd60a"
DRONE_SPEED = 3.0        # units/s: slower than an avatar (8), so it can be outrun
DRONE_CHASE = 8.0        # a drone chases the nearest connected avatar within this
DRONE_TOUCH = 1.0        # ... and costs its player a point when within this
DRONE_COOLDOWN = 5.0     # seconds a drone leaves a player it touched alone (it wanders)
PICKUP_REACH = 1.0       # an avatar within this takes the pickup


def extrapolate(entity, tick, rate, speed):
    """(x, z) of a cube at state tick ``tick`` as a ``sync: "intent"`` client
    computes it from its mirror: from ``pos`` at ``since`` toward ``to`` at
    ``speed`` units/s, ``rate`` ticks a second (docs/EXTENSIONS.md)."""
    pos = entity["pos"]
    to = entity.get("to")
    since = entity.get("since")
    if to is None or since is None:
        return pos[0], pos[2]
    x, z, _ = step_toward(pos[0], pos[2], to[0], to[1], speed * max(0, tick - since) / rate)
    return round2(x), round2(z)


class Drone:
    """A server-owned entity that wanders and chases (its state map node holds ``pos``)."""

    __slots__ = ("id", "key", "node", "goal", "last_hit")

    def __init__(self, id, node):
        self.id = id
        self.key = str(id)
        self.node = node
        self.goal = None          # (x, z) it wanders toward
        self.last_hit = {}        # player id -> room.now of its last touch


class Cube:
    """A cube: its row in the game's Columns (position, target) and its state-map node."""

    __slots__ = ("id", "key", "owner", "row", "to", "node")

    def __init__(self, id, owner, row, node):
        self.id = id
        self.key = str(id)
        self.owner = owner
        self.row = row
        self.to = None
        self.node = node


@implementer(IGame)
class CubeGame(Game):
    input_types = frozenset(("move", "spawn", "delete", "order", "tag"))

    def __init__(self, room):
        super().__init__(room)
        self.entities = self.state["entities"]
        self.columns = Columns()  # the cubes' positions and targets (arbiter/columns.py)
        self.cubes = {}          # id -> Cube
        self.by_row = {}         # Columns row -> Cube
        self.moving = {}         # id -> Cube with a target
        self.by_key = {}         # str(id) -> Cube (state map keys)
        self.retargeted = {}     # str(id) -> room.tick when its last order was applied
        self.avatars = {}        # player id -> avatar entity id
        self.avatar_owner = {}   # avatar entity id -> player id
        self.budgets = {}        # player id -> MovementBudget
        self.colors = {}
        self.history = deque()   # (tick, {avatar id: (x, z)}), at least 1 s
        self.pending_corrections = {}
        self.recenter_every = room.config.recenter_every
        self.window_start = {}   # player id -> avatar (x, z) when the 100 ms window opened
        # server-owned entities (docs/GAMES.md, "Entities the server owns")
        config = room.config
        self.drones = {}         # id -> Drone
        self.pickups = {}        # id -> its state map node
        for _ in range(config.drones):
            self._add_drone()
        for _ in range(config.pickups):
            self._add_pickup()
        self.view_radius = config.view_radius
        self.views_on = self.view_radius > 0
        self._sight = None       # (room.tick, keys, xs, zs): where everything is, per tick

    # -- entities the server owns -------------------------------------------------
    def _random_point(self, margin=1.0):
        half = self.world.size / 2 - margin
        rng = self.room.rng
        return round2(rng.uniform(-half, half)), round2(rng.uniform(-half, half))

    def _add_drone(self):
        eid = self.room.new_entity_id()
        x, z = self._random_point()
        self.entities[str(eid)] = {"kind": "drone", "owner": SERVER, "pos": [x, Y, z],
                                   "color": DRONE_COLOR}
        self.drones[eid] = Drone(eid, self.entities[str(eid)])

    def _add_pickup(self):
        eid = self.room.new_entity_id()
        x, z = self._random_point()
        self.entities[str(eid)] = {"kind": "pickup", "owner": SERVER, "pos": [x, Y, z],
                                   "color": PICKUP_COLOR}
        self.pickups[eid] = self.entities[str(eid)]

    def _clear_of_server_entities(self, x, z):
        """True when (x, z) is out of every pickup's reach and every drone's touch, with
        half a unit to spare."""
        for node in list(self.pickups.values()) + [d.node for d in self.drones.values()]:
            pos = node["pos"]
            reach = (PICKUP_REACH if node["kind"] == "pickup" else DRONE_TOUCH) + 0.5
            if (pos[0] - x) ** 2 + (pos[2] - z) ** 2 <= reach * reach:
                return False
        return True

    def server_owned(self, eid):
        """True for an entity id (int) the server owns: nobody orders, deletes or tags it."""
        return eid in self.drones or eid in self.pickups

    def _live_avatars(self):
        """(player id, x, z) of every connected player's avatar."""
        players = self.room.players
        out = []
        for pid, eid in self.avatars.items():
            player = players.get(pid)
            if player is not None and player.connected:
                pos = self.entities[str(eid)]["pos"]
                out.append((pid, pos[0], pos[2]))
        return out

    def step_drones(self, dt, avatars):
        """Each drone chases the nearest connected avatar within DRONE_CHASE, else wanders
        toward a random point; touching an avatar costs its player a point (once per
        DRONE_COOLDOWN per drone), and the drone turns away to wander."""
        room = self.room
        for drone in self.drones.values():
            pos = drone.node["pos"]
            x, z = pos[0], pos[2]
            near, best = None, DRONE_CHASE * DRONE_CHASE
            for pid, ax, az in avatars:
                d = (ax - x) * (ax - x) + (az - z) * (az - z)
                if d <= best and room.now - drone.last_hit.get(pid, -DRONE_COOLDOWN) \
                        >= DRONE_COOLDOWN:
                    near, best = (pid, ax, az), d
            if near is not None:
                goal = near[1], near[2]
            else:
                if drone.goal is None:
                    drone.goal = self._random_point()
                goal = drone.goal
            nx, nz, arrived = step_toward(x, z, goal[0], goal[1], DRONE_SPEED * dt)
            nx, nz = round2(nx), round2(nz)
            if near is None and arrived:
                drone.goal = None
            if nx != x or nz != z:
                drone.node["pos"] = [nx, Y, nz]
            if near is not None:
                pid = near[0]
                dx, dz = near[1] - nx, near[2] - nz
                if dx * dx + dz * dz <= DRONE_TOUCH * DRONE_TOUCH:
                    drone.last_hit[pid] = room.now
                    player = room.players.get(pid)
                    if player is not None:
                        room.add_score(player, -1)
                        room.broadcast_event("hit", player=pid, by="drone")
                    drone.goal = self._random_point()

    def take_pickups(self, avatars):
        """A pickup goes to the nearest avatar within PICKUP_REACH (a point, event
        ``pickup``); another one appears at a random place."""
        room = self.room
        for eid in list(self.pickups):
            pos = self.pickups[eid]["pos"]
            taker, best = None, PICKUP_REACH * PICKUP_REACH
            for pid, ax, az in avatars:
                d = (ax - pos[0]) * (ax - pos[0]) + (az - pos[2]) * (az - pos[2])
                if d <= best:
                    taker, best = pid, d
            if taker is None:
                continue
            del self.pickups[eid]
            del self.entities[str(eid)]
            player = room.players.get(taker)
            if player is not None:
                room.add_score(player, 1)
                room.broadcast_event("pickup", player=taker)
            self._add_pickup()

    # -- rounds --------------------------------------------------------------------
    def round_started(self, n):
        """A new round: the pickups move to new places, the drones start afresh."""
        for eid in list(self.pickups):
            del self.pickups[eid]
            del self.entities[str(eid)]
        for _ in range(self.room.config.pickups):
            self._add_pickup()
        for drone in self.drones.values():
            drone.last_hit.clear()
            drone.goal = None

    # -- per-player views: --view-radius ---------------------------------------------
    def welcome_fields(self):
        """``welcome.view_radius`` when views are on (so a client can draw its horizon)."""
        return {"view_radius": self.view_radius} if self.views_on else {}

    def view_of(self, player):
        """Within ``view_radius`` of the player's avatar (on the x-z plane, edge included),
        and the player's own entities wherever they are; a spectator, or a player without
        an avatar, sees everything."""
        if player.is_spectator:
            return None
        eid = self.avatars.get(player.id)
        if eid is None:
            return None
        sight = self._sight
        if sight is None or sight[0] != self.room.tick:
            sight = self._sight = self._look()
        visible = sight[1].get(player.id)
        if visible is None:              # (joined since this tick's look)
            visible = sight[1][player.id] = self._look(player.id)
        return visible

    def _look(self, only=None):
        """Every player's view at once: where everything is (the cubes from the columns,
        the rest from the map), against every avatar in one NumPy pass.
        Returns (room.tick, {player id: frozenset of keys}); with ``only``, that
        player's frozenset alone."""
        cols = self.columns
        rows = np.flatnonzero(cols.alive[:cols.n])
        rowlist = rows.tolist()
        keys = [cols.key[r] for r in rowlist]
        by_row = self.by_row
        owners = [by_row[r].owner for r in rowlist]
        xs = [cols.qx[rows] / 100]
        zs = [cols.qz[rows] / 100]
        ents = self.entities
        other = [str(e) for e in self.avatar_owner] + [d.key for d in self.drones.values()] \
            + [str(e) for e in self.pickups]
        if other:
            poss = [ents[k]["pos"] for k in other]
            xs.append(np.array([p[0] for p in poss]))
            zs.append(np.array([p[2] for p in poss]))
            keys += other
            owners += [ents[k]["owner"] for k in other]
        x = np.concatenate(xs)
        z = np.concatenate(zs)
        keys = np.array(keys, dtype=object)
        owners = np.array(owners, dtype=object)
        pids = [only] if only is not None else list(self.avatars)
        me = [ents[str(self.avatars[pid])]["pos"] for pid in pids]
        ax = np.array([p[0] for p in me])[:, None]
        az = np.array([p[2] for p in me])[:, None]
        near = (x[None, :] - ax) ** 2 + (z[None, :] - az) ** 2 <= \
            self.view_radius * self.view_radius
        # and your own entities wherever they are (you know where your cubes went)
        views = {pid: frozenset(keys[row | (owners == pid)].tolist())
                 for pid, row in zip(pids, near)}
        if only is not None:
            return views[only]
        return self.room.tick, views

    def player_joined(self, player):
        used = set(self.colors.values())
        color = next((c for c in PALETTE if c not in used), PALETTE[len(self.colors) % len(PALETTE)])
        self.colors[player.id] = player.color = color
        eid = self.room.new_entity_id()
        half = self.world.size / 2
        for _ in range(20):
            x = round2(self.room.rng.uniform(-half, half) * 0.5)
            z = round2(self.room.rng.uniform(-half, half) * 0.5)
            if self._clear_of_server_entities(x, z):
                break                    # (not born on a pickup, nor in a drone's reach)
        self.entities[str(eid)] = {"kind": "avatar", "owner": player.id,
                                   "pos": [x, Y, z], "color": color}
        self.avatars[player.id] = eid
        self.avatar_owner[eid] = player.id
        self.budgets[player.id] = MovementBudget(self.room.now)

    def player_removed(self, player):
        pid = player.id
        for cube in [c for c in self.cubes.values() if c.owner == pid]:
            self._remove_cube(cube)
        eid = self.avatars.pop(pid, None)
        if eid is not None:
            self.avatar_owner.pop(eid, None)
            del self.entities[str(eid)]
        self.budgets.pop(pid, None)
        self.colors.pop(pid, None)
        self.window_start.pop(pid, None)

    # -- inputs -------------------------------------------------------------
    def handle(self, player, msg):
        return getattr(self, "_" + msg.t)(player, msg)

    def _in_plane(self, p):
        half = self.world.size / 2
        return -half <= p[0] <= half and -half <= p[1] <= half

    def _own_cube(self, player, eid):
        cube = self.cubes.get(eid)
        if cube is None or cube.owner != player.id:
            return None
        return cube

    def _move(self, player, msg):
        eid = self.avatars.get(player.id)
        if eid is None:
            return Reject(codes.NOT_OWNER, "you have no avatar")
        dt = msg["dt"]
        allowed = self.budgets[player.id].spend(self.room.now, dt)
        node = self.entities[str(eid)]
        pos = node["pos"]
        if allowed > 0:
            dx, dz = msg["dir"]
            x, z = step_avatar(pos[0], pos[2], dx, dz, allowed, self.world.avatar_speed, self.world.size)
            if x != pos[0] or z != pos[2]:
                node["pos"] = pos = [x, Y, z]
        if allowed < dt:
            self.pending_corrections[(player.id, eid)] = Correction(
                player.id, eid, pos, codes.SPEED, msg["seq"])
        return None

    def _spawn(self, player, msg):
        at = msg.get("at")
        if at is not None and not self._in_plane(at):
            return Reject(codes.OUT_OF_BOUNDS, "spawn point %r is outside the plane" % (at,))
        owned = sum(1 for c in self.cubes.values() if c.owner == player.id)
        if owned >= self.world.max_cubes:
            return Reject(codes.LIMIT, "you already have %d cubes (max_cubes)" % owned)
        if at is None:
            half = self.world.size / 2
            at = [self.room.rng.uniform(-half, half), self.room.rng.uniform(-half, half)]
        x, z = round2(at[0]), round2(at[1])
        eid = self.room.new_entity_id()
        key = str(eid)
        self.entities[key] = {"kind": "cube", "owner": player.id, "pos": [x, Y, z],
                              "color": self.colors.get(player.id, PALETTE[0])}
        node = self.entities[key]
        row = self.columns.add(key, node, x, Y, z)
        cube = self.cubes[eid] = Cube(eid, player.id, row, node)
        self.by_key[key] = cube
        self.by_row[row] = cube
        return None

    def _delete(self, player, msg):
        cube = self._own_cube(player, msg["id"])
        if cube is None:
            return Reject(codes.NOT_OWNER, "entity %d is not a cube of yours" % msg["id"])
        self._remove_cube(cube)
        return None

    def _remove_cube(self, cube):
        self.columns.remove(cube.key)
        self.by_row.pop(cube.row, None)
        self.cubes.pop(cube.id, None)
        self.moving.pop(cube.id, None)
        self.by_key.pop(cube.key, None)
        self.retargeted.pop(cube.key, None)
        del self.entities[str(cube.id)]

    def _order(self, player, msg):
        cubes = []
        for eid in msg["ids"]:
            cube = self._own_cube(player, eid)
            if cube is None:
                return Reject(codes.NOT_OWNER, "entity %d is not a cube of yours" % eid)
            cubes.append(cube)
        to = msg["to"]
        if not self._in_plane(to):
            return Reject(codes.OUT_OF_BOUNDS, "target %r is outside the plane" % (to,))
        to = [round2(to[0]), round2(to[1])]
        tick = self.room.tick
        columns = self.columns
        for cube in cubes:
            cube.to = to
            cube.node["to"] = to
            columns.target(cube.row, to[0], to[1])
            self.moving[cube.id] = cube
            self.retargeted[cube.key] = tick
        return None

    def _tag(self, player, msg):
        if self.server_owned(msg["id"]):
            return Reject(codes.NOT_OWNER, "entity %d is the server's" % msg["id"])
        target = self.avatar_owner.get(msg["id"])
        if target is None or target == player.id:
            return Reject(codes.MISS, "entity %d is not another player's avatar" % msg["id"])
        tick = self.room.tick
        view = max(tick - self.room.config.send_rate, min(msg["view"], tick))
        then = None
        frac = msg.get("view_frac") or 0.0
        for i, (t, positions) in enumerate(self.history):
            if t == view:
                then = positions.get(msg["id"])
                if then is not None and frac and view < tick and i + 1 < len(self.history):
                    # the target between two ticks, where the tagger's frame drew it
                    after = self.history[i + 1][1].get(msg["id"])
                    if after is not None:
                        then = (then[0] + (after[0] - then[0]) * frac,
                                then[1] + (after[1] - then[1]) * frac)
                break
        if then is None:
            p = self.entities[str(msg["id"])]["pos"]
            then = (p[0], p[2])
        me = self.entities[str(self.avatars[player.id])]["pos"]
        dx, dz = me[0] - then[0], me[2] - then[1]
        if dx * dx + dz * dz > self.world.tag_radius ** 2:
            if self.views_on:        # the distance would tell where a hidden avatar is
                return Reject(codes.MISS, "target was out of reach at tick %d (tag_radius %s)"
                              % (view, self.world.tag_radius))
            return Reject(codes.MISS, "target was %.2f away at tick %d (tag_radius %s)"
                          % ((dx * dx + dz * dz) ** 0.5, view, self.world.tag_radius))
        self.room.add_score(player, 1)
        self.room.broadcast_event("tag", player=player.id, target=target)
        return None

    # -- simulation -----------------------------------------------------------
    def step(self, dt):
        # every moving cube in one pass over the arrays (arbiter/columns.py: the same
        # float operations as movement.step_toward and round2)
        for row in self.columns.step(self.world.speed * dt).tolist():
            cube = self.by_row[row]
            cube.to = None
            del cube.node["to"]
            del self.moving[cube.id]
        if self.drones or self.pickups:
            avatars = self._live_avatars()
            if self.drones:
                self.step_drones(dt, avatars)
            if self.pickups:
                self.take_pickups(avatars)

    def sync_positions(self, flush):
        """The room's state tick: the cubes whose rounded position changed, for the
        compact sync; with ``flush``, written into the state map too (for merge patches)."""
        moves = self.columns.publish()
        if flush:
            self.columns.flush()
        return moves

    def flush_positions(self):
        """Bring the state map's cube positions up to date (before a snapshot)."""
        self.columns.flush()

    def tick_rules(self, sim_tick):
        if self.recenter_every and sim_tick % self.recenter_every == 0:
            self.recenter_second_cubes()

    def recenter_second_cubes(self):
        """The example authority rule: each player's second cube goes back to the centre.

        Copy this shape for your own rules: change the state, then queue a
        Correction so the owner's client snaps instead of trusting its prediction.
        """
        by_owner = {}
        for cube in self.cubes.values():   # dict order = spawn order
            by_owner.setdefault(cube.owner, []).append(cube)
        for pid, cubes in by_owner.items():
            if len(cubes) < 2:
                continue
            cube = cubes[1]
            self.columns.place(cube.row, 0.0, 0.0)
            if cube.to is not None:
                cube.to = None
                del cube.node["to"]
                self.moving.pop(cube.id, None)
            player = self.room.players.get(pid)
            self.pending_corrections[(pid, cube.id)] = Correction(
                pid, cube.id, [0.0, Y, 0.0], "recenter", player.ack if player else 0)

    def place_avatar(self, pid, x, z):
        """Put a player's avatar somewhere on purpose (spawn points, teleports):
        the movement audit accepts it. Send a Correction too if the owner predicts."""
        eid = self.avatars[pid]
        self.entities[str(eid)]["pos"] = [round2(x), Y, round2(z)]
        self.window_start[pid] = (round2(x), round2(z))
        return eid

    def batch_rules(self, window):
        """Every 100 ms: the movement audit.

        An avatar may have moved at most ``avatar_speed`` times the ``dt`` of
        the moves accepted in the window. Anything further (a custom rule, a
        plugin or a bug that moved it) is undone: back to where the window
        started, with ``correct`` (reason ``speed``) to its owner.
        """
        allowed = {}
        moves = {}
        last_seq = {}
        for player, msg in window:
            if msg.t == "move":
                allowed[player.id] = allowed.get(player.id, 0) + msg["dt"]
                moves[player.id] = moves.get(player.id, 0) + 1
                last_seq[player.id] = msg["seq"]
        reach = self.world.avatar_speed / 1000
        for pid, eid in self.avatars.items():
            node = self.entities[str(eid)]
            pos = node["pos"]
            start = self.window_start.get(pid)
            if start is not None:
                dx, dz = pos[0] - start[0], pos[2] - start[1]
                # each move's position is rounded to 0.01: up to 0.005 more per move (eight
                # honest 32 ms moves go 2.08, not 2.048), and 0.015 for the float sums
                limit = allowed.get(pid, 0) * reach + 0.005 * moves.get(pid, 0) + 0.015
                if dx * dx + dz * dz > limit * limit:
                    node["pos"] = pos = [start[0], Y, start[1]]
                    player = self.room.players.get(pid)
                    self.pending_corrections[(pid, eid)] = Correction(
                        pid, eid, pos, codes.SPEED, last_seq.get(pid, player.ack if player else 0))
            self.window_start[pid] = (pos[0], pos[2])

    def take_corrections(self):
        out = list(self.pending_corrections.values())
        self.pending_corrections.clear()
        return out

    # -- the "intent" sync view (docs/EXTENSIONS.md) ---------------------------------
    def intent_view(self, kind, src, tick):
        """``src`` (this tick's snapshot or delta patch) for ``sync: "intent"`` clients.

        A moving cube is sent only when its motion changes: with ``pos`` as of
        ``tick``, ``to`` and ``since: tick``; the client moves it from there
        toward ``to`` at ``world.speed``. Its other per-tick ``pos`` changes are
        left out. When it stops, ``to`` and ``since`` go ``null`` with the final
        ``pos``, as for every client. Everything else is as in ``src``."""
        ents = src.get("entities")
        if not ents:
            return src
        by_key = self.by_key
        out = {}
        if kind == "snapshot":
            for k, e in ents.items():
                cube = by_key.get(k)
                if cube is not None and cube.to is not None:
                    e = dict(e)
                    e["since"] = tick
                out[k] = e
        else:
            ordered_at = tick - 1           # room.tick while this tick's inputs ran
            retargeted = self.retargeted
            for k, e in ents.items():
                cube = by_key.get(k) if e is not None else None
                if cube is None:
                    out[k] = e
                    continue
                if cube.to is not None:
                    if retargeted.get(k) != ordered_at and len(e) == 1 and "pos" in e:
                        continue            # the client extrapolates it
                    e = dict(e)
                    e["pos"] = cube.node["pos"]
                    e["to"] = cube.to
                    e["since"] = tick
                elif "to" in e:
                    # it stopped: the final pos always comes with it (it may have reached
                    # its rounded final position a tick earlier, in a patch skipped above)
                    e = dict(e)
                    e["pos"] = cube.node["pos"]
                    e["since"] = None
                out[k] = e
        view = dict(src)
        view["entities"] = out
        return view

    def on_state_tick(self, tick):
        positions = {}
        for eid in self.avatar_owner:
            p = self.entities[str(eid)]["pos"]
            positions[eid] = (p[0], p[2])
        self.history.append((tick, positions))
        keep = 2 * self.room.config.send_rate + 2
        while len(self.history) > keep:
            self.history.popleft()
