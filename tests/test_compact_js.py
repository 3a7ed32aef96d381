"""The JavaScript client's compact decoder and intent extrapolation against the server.

A random session plays on the whole server in memory (arbiter.app.testing.InMemoryServer:
a ``state`` client, ``compact`` clients, players spawning, ordering, deleting, moving,
leaving); the compact frames each compact client received and the state client's mirror
after every tick go to a JSON file, and node replays the frames through
web/static/js/arbiter/compact.js (tests/js/compact_replay.mjs) and compares its mirror with
the state client's, tick by tick, exactly. The same run computes random intent
extrapolations with web/static/js/arbiter/intent.js, compared with
arbiter.games.cubes.extrapolate.
"""

import json
import random
import shutil
import subprocess
from pathlib import Path

from arbiter import codes, compact
from arbiter.app.testing import InMemoryServer
from arbiter.config import Config, World
from arbiter.games.base import Game
from arbiter.games.cubes import extrapolate
from arbiter.movement import round2
from arbiter.state import apply_merge_patch

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
assert NODE, "node is not on the PATH (the JS client tests need it)"
MP = (codes.MSGPACK,)


class CompactWatcher:
    """A compact client: the frames it received (hex), tick by tick, and the Python
    reference decoder's mirror of them."""

    def __init__(self, server, name, room):
        self.client = server.client(MP)
        msgs = self.client.hello(name=name, room=room, sync="compact")
        assert msgs[0]["t"] == "welcome", msgs
        assert [m["t"] for m in msgs[1:]] == [], "no state right after a compact welcome"
        self.pos = msgs[0]["compact"]["pos"]
        self.mirror = compact.CompactMirror(self.pos)
        self.ticks = []
        self.kinds = set()

    def take(self, state):
        frames = []
        for m in self.client.received():
            if m["t"] == "compact":
                frames.append(m["frame"].hex())
                self.mirror.apply(m["frame"])
                self.kinds.add(m["kind"])
        self.ticks.append({"frames": frames, "state": json.loads(json.dumps(state))})
        assert self.mirror.state == state, "the reference decoder disagrees (tick %d)" % len(self.ticks)

    def session(self):
        return {"pos": self.pos, "ticks": self.ticks}


def play(seed, steps, world=None):
    """A random session in one room; returns the compact watchers' recorded sessions."""
    rng = random.Random(seed)
    server = InMemoryServer(Config(port=0, grace=0.2, **({"world": world} if world else {})))
    half = server.config.world.size / 2 - 1
    v1 = server.join("v1", room="r", protocols=MP)
    state = v1.state
    watchers = [CompactWatcher(server, "c0", "r")]
    players = []
    try:
        for step in range(steps):
            if rng.random() < 0.08 or not players:
                c = server.join("p%d" % step, room="r", protocols=MP)
                c.seq = 0
                c.cubes = []
                players.append(c)
            if step == steps // 3:
                watchers.append(CompactWatcher(server, "c1", "r"))   # joins midway
            for p in rng.sample(players, min(len(players), 3)):
                r = rng.random()
                p.seq += 1
                if r < 0.25:
                    at = [round(rng.uniform(-half, half), 2), round(rng.uniform(-half, half), 2)]
                    p.send({"t": "spawn", "seq": p.seq, **({"at": at} if rng.random() < 0.5 else {})})
                elif r < 0.55 and p.cubes:
                    p.send({"t": "order", "seq": p.seq,
                            "ids": rng.sample(p.cubes, rng.randint(1, len(p.cubes))),
                            "to": [rng.uniform(-half, half), rng.uniform(-half, half)]})
                elif r < 0.65 and p.cubes:
                    p.send({"t": "delete", "seq": p.seq, "id": p.cubes.pop(rng.randrange(len(p.cubes)))})
                elif r < 0.93:
                    p.send({"t": "move", "seq": p.seq, "dx": rng.uniform(-1, 1),
                            "dz": rng.uniform(-1, 1), "dt": rng.randint(10, 250)})
                elif len(players) > 1:
                    players.remove(p)
                    p.lose()
            if rng.random() < 0.03:
                rng.choice(watchers).client.send({"t": "resync"})
            server.tick()
            for c in players:
                for m in c.received():
                    if m["t"] in ("delta", "snapshot"):
                        ents = (m.get("patch") or m.get("state") or {}).get("entities") or {}
                        for k, e in ents.items():
                            if e and e.get("kind") == "cube" and e.get("owner") == c.you \
                                    and int(k) not in c.cubes:
                                c.cubes.append(int(k))
            for m in v1.received():
                if m["t"] == "delta":
                    apply_merge_patch(state, m["patch"])
                elif m["t"] == "snapshot":
                    state = m["state"]
            for w in watchers:
                w.take(state)
    finally:
        server.stop()
    for w in watchers:
        assert w.kinds == {"snapshot", "delta"}
    return [w.session() for w in watchers]


class Drift(Game):
    """A game of its own whose entities do what the cube game's never do: change y
    (MOVE), carry fields of their own (REST), have no owner or colour, or a position
    no record can carry (an entity whole in REST); a top-level key of its own."""

    def __init__(self, room, seed=5):
        super().__init__(room)
        self.rng = random.Random(seed)
        self.next_id = 1
        self.state["score"] = 0

    def on_state_tick(self, tick):
        rng = self.rng
        ents = self.state["entities"]
        grid = lambda: round2(rng.uniform(-15, 15))   # noqa: E731
        if rng.random() < 0.3 or not ents:
            e = {"kind": rng.choice(["blob", "rock"]), "pos": [grid(), 0.5, grid()]}
            if rng.random() < 0.5:
                e["owner"] = "p%d" % rng.randint(1, 3)
            if rng.random() < 0.5:
                e["color"] = "#%06x" % rng.randrange(1 << 24)
            if rng.random() < 0.3:
                e["to"] = [grid(), grid()]
            if rng.random() < 0.3:
                e["hp"] = rng.randint(1, 9)
            if rng.random() < 0.1:
                e["pos"] = "nowhere"          # fits no record: whole, in REST
            ents[str(self.next_id)] = e
            self.next_id += 1
        for key in rng.sample(sorted(ents), min(len(ents), 4)):
            e = ents[key]
            if not isinstance(e["pos"], list):
                if rng.random() < 0.3:
                    e["pos"] = [grid(), 0.5, grid()]
                continue
            r = rng.random()
            if r < 0.35:
                e["pos"] = [grid(), e["pos"][1], grid()]                      # MOVE_XZ
            elif r < 0.5:
                e["pos"] = [grid(), round2(rng.uniform(0, 3)), grid()]         # MOVE
            elif r < 0.6:
                e["to"] = [grid(), grid()]                                     # TO
            elif r < 0.7 and "to" in e:
                del e["to"]                                                    # STOP
            elif r < 0.8:
                e["hp"] = rng.randint(0, 9)                                    # REST
            elif r < 0.85 and "hp" in e:
                del e["hp"]
            elif r < 0.95:
                del ents[key]                                                  # GONE
        if rng.random() < 0.2:
            self.state["score"] = self.state["score"] + 1


def play_drift(ticks):
    server = InMemoryServer(Config(port=0), game_factory=Drift)
    v1 = server.join("v1", room="d", protocols=MP)
    state = v1.state
    watcher = CompactWatcher(server, "c", "d")
    try:
        for _ in range(ticks):
            server.tick()
            for m in v1.received():
                if m["t"] == "delta":
                    apply_merge_patch(state, m["patch"])
                elif m["t"] == "snapshot":
                    state = m["state"]
            watcher.take(state)
    finally:
        server.stop()
    return [watcher.session()]


def intent_cases(n=300):
    rng = random.Random(7)
    grid = lambda: round(rng.uniform(-20, 20), 2)   # noqa: E731
    cases = []
    for _ in range(n):
        since = rng.randint(0, 500)
        entity = {"pos": [grid(), 0.5, grid()], "to": [grid(), grid()], "since": since}
        if rng.random() < 0.1:
            del entity[rng.choice(["to", "since"])]
        tick = since + rng.choice([rng.randint(-5, 400), rng.randint(0, 1600) / 4])
        cases.append([entity, tick, rng.choice([10, 20, 30, 60]), rng.choice([1, 5, 7.5, 12])])
    return cases


def section_tags(sessions):
    """The section tags (1 APPEAR ... 7 REST, 8 STEP_XZ) the sessions' frames hold."""
    seen = set()
    for s in sessions:
        p = "<" + ("h" if s["pos"] == 2 else "i")
        for tick in s["ticks"]:
            for frame in tick["frames"]:
                data = bytes.fromhex(frame)
                r = compact._Reader(data)
                r.at = compact.read_header(data)[3]
                while r.at < len(data):
                    tag = r.byte()
                    seen.add(tag)
                    if tag == compact.REST:
                        r.take(r.varuint())
                        continue
                    for _ in range(r.varuint()):
                        if tag == compact.APPEAR:
                            r.unpack("<H")
                            r.varuint()
                            flags = r.byte()
                            for bit in (0, compact.HAS_OWNER, compact.HAS_COLOR):
                                if bit == 0 or flags & bit:
                                    r.text()
                            r.unpack(p[0] + 3 * p[1] + (2 * p[1] if flags & compact.HAS_TO else ""))
                        elif tag in (compact.MOVE_XZ, compact.TO):
                            r.unpack("<H" + 2 * p[1])
                        elif tag == compact.STEP_XZ:
                            r.unpack("<Hbb")
                        elif tag == compact.MOVE:
                            r.unpack("<H" + 3 * p[1])
                        else:
                            r.unpack("<H")
    return seen


def test_compact_js_builds_the_state_clients_mirror_and_extrapolates_like_python(tmp_path):
    sessions = (play(1, 150) + play(2, 150) + play(3, 60, world=World(size=1000))
                + play_drift(120))
    assert {s["pos"] for s in sessions} == {2, 4}
    cases = intent_cases()
    path = tmp_path / "session.json"
    path.write_text(json.dumps({"sessions": sessions, "intent": cases}))
    proc = subprocess.run([NODE, str(ROOT / "tests" / "js" / "compact_replay.mjs"), str(path)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    assert out["ticks"] == sum(len(s["ticks"]) for s in sessions)
    assert out["frames"] == sum(len(t["frames"]) for s in sessions for t in s["ticks"]) > 300
    assert out["entities"] >= 8
    tags = section_tags(sessions)
    assert tags == set(range(1, 9)), "every section (APPEAR ... STEP_XZ) was played: %s" % tags
    want = [list(extrapolate(e, t, rate, speed)) for e, t, rate, speed in cases]
    assert out["intent"] == want
    assert sum(1 for (e, *_), w in zip(cases, want) if w != [e["pos"][0], e["pos"][2]]) > 200
