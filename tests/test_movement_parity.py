"""web/static/js/arbiter/movement.js and arbiter/movement.py agree to the last bit."""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from arbiter.movement import round2, step_avatar

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js" / "movement_cases.mjs"
NODE = shutil.which("node")

assert NODE, "node is not on the PATH (the JS parity and unit tests need it)"


def _cases(n=6000, seed=20261122):
    """Seeded inputs: realistic ones, edge ones and wild ones."""
    rng = random.Random(seed)
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.005, -0.005, 0.015, -0.015, 2.675, -2.675]
    steps = []
    for i in range(n):
        size = rng.choice([40.0, 40, 10.0, 7.3, rng.uniform(1, 200)])
        half = size / 2
        speed = rng.choice([8.0, 8, 5.0, 0.1, rng.uniform(0.1, 50)])
        kind = i % 4
        if kind == 0:      # what a client sends: positions on the 0.01 grid, integer dt
            x = round(rng.uniform(-half, half), 2)
            z = round(rng.uniform(-half, half), 2)
            dx = rng.choice([-1, 0, 1, rng.uniform(-1, 1)])
            dz = rng.choice([-1, 0, 1, rng.uniform(-1, 1)])
            dt = rng.randint(1, 250)
        elif kind == 1:    # fractional dt, off-grid positions
            x = rng.uniform(-half, half)
            z = rng.uniform(-half, half)
            dx = rng.uniform(-1, 1)
            dz = rng.uniform(-1, 1)
            dt = rng.uniform(1, 250)
        elif kind == 2:    # edge values and diagonals
            x = rng.choice(edges + [half, -half, half - 0.005])
            z = rng.choice(edges + [half, -half, -half + 0.005])
            dx = rng.choice([0.7071067811865476, -0.7071067811865476, 1, -1, 0.6, 0.8])
            dz = rng.choice([0.7071067811865476, -0.7071067811865476, 1, -1, 0.8, 0.6])
            dt = rng.choice([1, 16, 16.7, 33, 33.4, 100, 250])
        else:              # directions longer than 1 and positions off the plane
            x = rng.uniform(-2 * half, 2 * half)
            z = rng.uniform(-2 * half, 2 * half)
            dx = rng.uniform(-5, 5)
            dz = rng.uniform(-5, 5)
            dt = rng.uniform(1, 250)
        steps.append([x, z, dx, dz, dt, speed, size])
    rounds = edges + [rng.uniform(-100, 100) for _ in range(2000)]
    rounds += [k / 1000 for k in range(-3000, 3001)]  # every half-way case near 0
    return steps, rounds


def _run_node(steps, rounds):
    proc = subprocess.run(
        [NODE, str(SCRIPT)],
        input=json.dumps({"steps": steps, "rounds": rounds}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def test_step_avatar_identical():
    """stepAvatar in JS returns exactly what step_avatar returns in Python, for 6000 inputs."""
    steps, rounds = _cases()
    js = _run_node(steps, rounds)
    mismatches = [
        (case, list(step_avatar(*case)), got)
        for case, got in zip(steps, js["steps"])
        if list(step_avatar(*case)) != got
    ]
    assert not mismatches[:5], "%d mismatches, first: %r" % (len(mismatches), mismatches[:5])


def test_round2_identical():
    """round2 rounds half away from zero the same way in both languages."""
    steps, rounds = _cases(n=0)
    js = _run_node([], rounds)
    mismatches = [(v, round2(v), got) for v, got in zip(rounds, js["rounds"]) if round2(v) != got]
    assert not mismatches[:5], "%d mismatches, first: %r" % (len(mismatches), mismatches[:5])
