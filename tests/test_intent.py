"""The opt-in "intent" sync (docs/EXTENSIONS.md) against a real server."""

import pytest
import pytest_twisted

from protocols.client import connect
from arbiter.config import Config, World
from arbiter.games.cubes import extrapolate
from protocols import wire


@pytest.mark.parametrize("encoding", [wire.JSON, wire.MSGPACK])
@pytest_twisted.inlineCallbacks
def test_intent_client_extrapolates_what_state_client_sees(make_server, encoding):
    """An intent client gets a moving cube once per order and extrapolates it to
    within 0.02 of the position state clients get every tick; stops agree exactly."""
    server = make_server(Config(port=0, world=World(size=100, speed=5)))
    a = yield connect(server.url, name="A", encoding=encoding)
    b = yield connect(server.url, name="B", encoding=encoding, sync="intent")
    seq = a.spawn(at=[0, 0])
    yield a.wait_ack(seq)
    (cid,) = a.my_cubes()
    key = str(cid)
    yield b.wait_for(lambda c: key in c.state["entities"])
    pos_updates = []
    b.on_message = lambda m: m.get("t") == "delta" and key in m["patch"].get("entities", {}) \
        and pos_updates.append(m["patch"]["entities"][key])
    a.order([cid], [3, 0])
    yield b.wait_for(lambda c: c.state["entities"][key].get("to") == [3, 0])
    assert b.state["entities"][key]["since"] == b.tick
    for _ in range(5):
        yield a.wait_for(lambda c, t=a.tick: c.tick > t)
        yield b.wait_for(lambda c, t=a.tick: c.tick >= t)
        mine = extrapolate(b.state["entities"][key], a.tick, b.rate, b.world["speed"])
        theirs = a.state["entities"][key]["pos"]
        assert abs(mine[0] - theirs[0]) <= 0.02 and abs(mine[1] - theirs[2]) <= 0.02
    yield b.wait_for(lambda c: "to" not in c.state["entities"][key])
    assert b.state["entities"][key]["pos"] == [3, 0.5, 0]
    assert "since" not in b.state["entities"][key]
    assert len(pos_updates) == 2          # the order, then the stop: nothing in between
    yield a.close()
    yield b.close()


def test_the_stop_carries_the_final_pos_even_when_it_was_reached_a_tick_earlier(txaio_clock):
    """From (0, 0) toward (0.5, 0.06), 0.50359 away at 0.25 a tick: after two ticks the cube
    is 0.0036 short, which rounds to the target already; the third tick it arrives and only
    `to` changes. The intent client skipped the second tick's pos-only patch (it
    extrapolates), so the stop must bring the final pos."""
    from arbiter.app.testing import InMemoryServer
    from arbiter.codes import JSON
    from arbiter.config import Config
    from arbiter.state import apply_merge_patch
    server = InMemoryServer(Config(port=0))
    c = server.client((JSON,))
    msgs = c.hello(name="I", room="main", sync="intent")
    state = msgs[1]["state"]
    c.send({"t": "spawn", "seq": 1, "at": [0, 0]})
    server.tick()
    for m in c.received():
        if m["t"] == "delta":
            apply_merge_patch(state, m["patch"])
    [cube] = [k for k, e in state["entities"].items() if e["kind"] == "cube"]
    c.send({"t": "order", "seq": 2, "ids": [int(cube)], "to": [0.5, 0.06]})
    server.tick(4)
    for m in c.received():
        if m["t"] == "delta":
            apply_merge_patch(state, m["patch"])
    assert state["entities"][cube]["pos"] == [0.5, 0.5, 0.06]
    assert "to" not in state["entities"][cube] and "since" not in state["entities"][cube]
    server.stop()
