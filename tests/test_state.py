"""Property and example tests for the change-tracking state (arbiter.state)."""

import copy

import pytest
from hypothesis import given, settings, strategies as st

from arbiter.state import TrackedMap, apply_merge_patch, diff

keys = st.sampled_from(["a", "b", "c", "1", "2"])
leaves = st.one_of(
    st.integers(-5, 5), st.booleans(), st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=3),
)
values = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=6)
paths = st.lists(keys, min_size=0, max_size=3)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), paths, keys, values),
        st.tuples(st.just("del"), paths, keys, st.none()),
        st.just(("collect",)),
    ),
    max_size=40,
)


def _walk(root, path):
    node = root
    for k in path:
        nxt = node.get(k)
        if not isinstance(nxt, TrackedMap):
            return node
        node = nxt
    return node


@settings(max_examples=300, deadline=None)
@given(ops)
def test_patches_replay_to_current_state(script):
    """For any mutations, each tick's patch applied to the mirror gives exactly the current state."""
    root = TrackedMap({"entities": {}, "players": {}})
    mirror = copy.deepcopy(root.snapshot())
    root.collect()
    for op in script + [("collect",)]:
        if op[0] == "set":
            _walk(root, op[1])[op[2]] = copy.deepcopy(op[3])
        elif op[0] == "del":
            node = _walk(root, op[1])
            node.pop(op[2], None)
        else:
            mirror = apply_merge_patch(mirror, root.collect())
            assert mirror == root.snapshot()
            assert root.collect() == {}


def test_untouched_tick_is_empty():
    """A tick with no change collects an empty patch."""
    root = TrackedMap({"entities": {"1": {"pos": [0, 0.5, 0]}}})
    root.collect()
    assert root.collect() == {}
    root["entities"]["1"]["pos"] = [0, 0.5, 0]   # same value again
    assert root.collect() == {}


def test_nested_change_and_delete():
    """Nested edits become nested patches; deletes become null."""
    root = TrackedMap({"entities": {"1": {"pos": [0, 0.5, 0], "to": [1, 1]}, "2": {"pos": [1, 0.5, 1]}}})
    root.collect()
    root["entities"]["1"]["pos"] = [0.25, 0.5, 0]
    del root["entities"]["1"]["to"]
    del root["entities"]["2"]
    assert root.collect() == {"entities": {"1": {"pos": [0.25, 0.5, 0], "to": None}, "2": None}}


def test_replacing_a_map_deletes_old_keys():
    """Replacing a nested map wholesale emits null for keys the new one lacks."""
    root = TrackedMap({"p": {"a": 1, "b": 2}})
    root.collect()
    root["p"] = {"b": 3}
    assert root.collect() == {"p": {"a": None, "b": 3}}


def test_none_is_refused():
    """Storing None is an error, since null means delete in a merge patch."""
    with pytest.raises(TypeError):
        TrackedMap()["x"] = None


def test_diff_round_trip():
    """diff(before, after) applied to before gives after."""
    before = {"a": {"x": 1, "y": [1]}, "b": 2}
    after = {"a": {"y": [2]}, "c": {"d": {}}}
    assert apply_merge_patch(copy.deepcopy(before), diff(before, after)) == after


def test_setdefault_returns_the_tracked_map():
    """setdefault with a dict gives back the live tracked map, so edits through it are sent."""
    root = TrackedMap()
    root.collect()
    root.setdefault("tiles", {})["1,2"] = "p1"
    assert root.collect() == {"tiles": {"1,2": "p1"}}
    root.setdefault("tiles", {})["3,4"] = "p2"
    assert root.collect() == {"tiles": {"3,4": "p2"}}
