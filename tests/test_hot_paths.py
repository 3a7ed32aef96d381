"""The fast paths taken for speed give the same results as the plain ones."""

import copy
import random

from hypothesis import given, settings, strategies as st

from arbiter.movement import round2, step_toward
from arbiter.state import TrackedMap, apply_merge_patch

keys = st.sampled_from(["a", "b", "1"])
leaves = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.lists(st.integers(0, 2), max_size=2))
values = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=2), max_leaves=4)
ops = st.lists(st.one_of(
    st.tuples(st.just("set"), st.lists(keys, max_size=2), keys, values),
    st.tuples(st.just("leaf"), st.lists(keys, max_size=2), keys, leaves),
    st.tuples(st.just("del"), st.lists(keys, max_size=2), keys),
    st.just(("collect",))), max_size=30)

from test_state import _walk  # noqa: E402  (the same path walker as the tracker's own test)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_set_leaf_tracks_like_setitem(script):
    """Mixing set_leaf with item assignment and deletion, patches still replay exactly."""
    root = TrackedMap({"e": {}})
    mirror = copy.deepcopy(root.snapshot())
    root.collect()
    for op in script + [("collect",)]:
        if op[0] == "set":
            _walk(root, op[1])[op[2]] = copy.deepcopy(op[3])
        elif op[0] == "leaf":
            _walk(root, op[1]).set_leaf(op[2], copy.deepcopy(op[3]))
        elif op[0] == "del":
            _walk(root, op[1]).pop(op[2], None)
        else:
            mirror = apply_merge_patch(mirror, root.collect())
            assert mirror == root.snapshot()


def test_columnar_cube_step_matches_movement():
    """Columns.step (every moving cube in one NumPy pass) equals step_toward + round2 on
    each cube, bit for bit, over many steps; arrivals stop exactly at the target."""
    from arbiter.columns import Columns

    rng = random.Random(7)
    cols = Columns(capacity=4)          # grows while rows are added
    exact = {}
    for i in range(2000):
        x, z = rng.uniform(-50, 50), rng.uniform(-50, 50)
        row = cols.add(str(i), None, round2(x), 0.5, round2(z))
        cols.x[row], cols.z[row] = x, z                     # an unrounded exact position
        to = [round2(rng.uniform(-50, 50)), round2(rng.uniform(-50, 50))]
        if rng.random() < 0.1:
            to = [round2(x + rng.uniform(-0.3, 0.3)), round2(z)]
        if rng.random() < 0.9:
            cols.target(row, to[0], to[1])
            exact[row] = (x, z, to, False)
    for _ in range(30):
        arrived = set(cols.step(0.25).tolist())
        for row, (x, z, to, done) in list(exact.items()):
            if done:
                continue
            ex, ez, now_done = step_toward(x, z, to[0], to[1], 0.25)
            exact[row] = (ex, ez, to, now_done)
            assert (float(cols.x[row]), float(cols.z[row])) == (ex, ez)
            assert cols.position(row) == (round2(ex), round2(ez))
            assert (row in arrived) == now_done
            assert bool(cols.moving[row]) == (not now_done)
