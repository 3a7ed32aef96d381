"""web/static/js/demo/lockstep-game.js and arbiter/lockstep_game.py reach the same checksums."""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from arbiter.lockstep_game import DemoGame, fnv1a, xorshift32

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js" / "lockstep_cases.mjs"
NODE = shutil.which("node")
assert NODE, "node is not on the PATH (the JS parity and unit tests need it)"


def _games(n=40, turns=150, seed=4242):
    """Seeded games: odd configs, good and junk commands, late and dropped players."""
    rng = random.Random(seed)
    games = []
    for g in range(n):
        players = ["p%d" % i for i in range(rng.randint(1, 6))]
        config = rng.choice([{}, {"size": 8, "coins": 40}, {"size": 32.0, "coins": 3},
                             {"size": "big", "coins": -4}, {"size": 5000}, {"coins": 64}])
        junk = [["v", 3, 0], ["v", 1.5, 0], ["v", True, 1], ["x", 1, 1], "v", ["v", 1],
                ["v", 2.0, -2.0], None, {"v": 1}]
        masters = []
        alive = list(players)
        for t in range(1, turns + 1):
            cmds = {}
            for pid in alive:
                cmds[pid] = [rng.choice(junk) if rng.random() < 0.1
                             else ["v", rng.randint(-2, 2), rng.randint(-2, 2)]
                             for _ in range(rng.choice([0, 0, 1, 2]))]
            m = {"turn": t, "cmds": cmds, "turn_ms": 100, "frames": rng.choice([1, 1, 3, 7])}
            if len(alive) > 1 and rng.random() < 0.01:
                m["dropped"] = [alive.pop(rng.randrange(len(alive)))]
            masters.append(m)
        seed_value = rng.choice([0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53, rng.randrange(2 ** 32)])
        games.append({"seed": seed_value, "players": players, "config": config,
                      "masters": masters})
    return games


def _python(game):
    g = DemoGame(game["seed"], game["players"], game["config"])
    sums = [g.checksum()]
    for m in game["masters"]:
        g.apply_master(m)
        sums.append(g.checksum())
    return sums


def test_js_and_python_agree_on_every_checksum():
    """40 seeded games of 150 turns: the JS port's checksum equals Python's after every turn."""
    games = _games()
    # through JSON as on the wire: 32.0 arrives in JS as 32
    out = subprocess.run([NODE, str(SCRIPT)], input=json.dumps(games), capture_output=True,
                         text=True, timeout=60, check=True)
    js = json.loads(out.stdout)
    for i, game in enumerate(games):
        assert js[i] == _python(json.loads(json.dumps(game))), "game %d differs" % i


def test_known_values_of_the_primitives():
    """xorshift32 and FNV-1a give their published values (pins both ports)."""
    assert xorshift32(1) == 270369
    assert fnv1a([]) == 0x811C9DC5
    assert fnv1a([0]) == 0x4B95F515


def test_the_game_is_deterministic_and_sensitive():
    """Same inputs give the same checksums; one changed command changes them from that turn."""
    game = _games(n=1)[0]
    assert _python(game) == _python(json.loads(json.dumps(game)))
    other = json.loads(json.dumps(game))
    pid = other["players"][0]
    other["masters"][9]["cmds"][pid] = [["v", 2, 2]]
    other["masters"][10]["cmds"][pid] = [["v", -1, 1]]
    a, b = _python(game), _python(other)
    assert a[:10] == b[:10] and a[11:] != b[11:]
