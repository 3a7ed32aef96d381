"""A game of one's own on Arbiter: the paint example from docs/GAMES.md."""

import pytest
from twisted.internet import task

from arbiter.config import Config
from arbiter.games.paint import PaintGame
from arbiter.app.server import build
from protocols.testing import FakeClient


@pytest.fixture
def paint(txaio_clock):
    clock = task.Clock()
    service, factory, _ = build(Config(port=0), clock=clock, game_factory=PaintGame)
    service.startService()
    yield clock, factory
    service.stopService()


def test_custom_input_is_validated_queued_and_acked(paint):
    """A game's own input type is checked at the edge, applied on the tick and acked."""
    clock, factory = paint
    a, b = FakeClient(factory), FakeClient(factory)
    welcome = a.hello(name="A")[0]
    assert welcome["world"]["grid"] == 16
    b.hello(name="B")
    a.send({"t": "paint", "seq": 1, "cell": [2, 3]})
    a.send({"t": "paint", "seq": 2, "cell": [99, 0]})
    a.send({"t": "paint", "seq": 3, "cell": "x"})
    clock.advance(0.06)
    msgs = a.received()
    assert [m["code"] for m in msgs if m["t"] == "error"] == ["bad_message"]
    assert [(m["seq"], m["code"]) for m in msgs if m["t"] == "reject"] == [(2, "out_of_bounds")]
    delta = [m for m in b.received() if m["t"] == "delta"][-1]
    assert list(delta["patch"]["cells"]) == ["2,3"]
    assert [m for m in msgs if m["t"] == "delta"][-1]["ack"] == 2


def test_cube_inputs_are_not_part_of_a_custom_game(paint):
    """Inputs the game does not take are refused, not crashed on."""
    clock, factory = paint
    a = FakeClient(factory)
    a.hello()
    a.send({"t": "spawn", "seq": 1})
    clock.advance(0.06)
    (r,) = [m for m in a.received() if m["t"] == "reject"]
    assert r["seq"] == 1 and r["code"] == "unsupported"


class Explodes(PaintGame):
    """A game with a bug: painting cell [0, 0] raises; stepping room 'boom' raises."""

    def handle(self, player, msg):
        if msg["cell"] == [0, 0]:
            raise RuntimeError("bug in game code")
        return super().handle(player, msg)

    def step(self, dt):
        if self.room.name == "boom":
            raise RuntimeError("bug in step")


def test_a_failing_game_hurts_no_one_else(txaio_clock):
    """A game that raises on an input or in a room's step leaves other inputs and rooms running."""
    clock = task.Clock()
    service, factory, _ = build(Config(port=0), clock=clock, game_factory=Explodes)
    service.startService()
    a, b = FakeClient(factory), FakeClient(factory)
    a.hello(name="A")
    b.hello(name="B", room="boom")
    a.send({"t": "paint", "seq": 1, "cell": [0, 0]})
    a.send({"t": "paint", "seq": 2, "cell": [1, 1]})
    clock.advance(0.06)
    clock.advance(0.05)
    msgs = a.received()
    assert [(m["seq"], m["code"]) for m in msgs if m["t"] == "reject"] == [(1, "internal_error")]
    deltas = [m for m in msgs if m["t"] == "delta"]
    assert deltas[0]["ack"] == 2 and "1,1" in deltas[0]["patch"]["cells"]
    assert service.ticks == 2
    service.stopService()
