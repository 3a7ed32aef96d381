"""Every implementation of the contracts in arbiter/interfaces.py provides them fully."""

import pytest
from twisted.internet import task
from zope.interface.verify import verifyClass, verifyObject

from arbiter.app.server import build
from arbiter.config import Config
from arbiter.games.base import Game
from arbiter.games.cubes import CubeGame
from arbiter.games.paint import PaintGame
from arbiter.interfaces import IGame, IOutbox, IRoom
from arbiter.lockstep import LockstepRoom
from arbiter.lockstep_turns import ITurnHost, ITurnScheduler, TurnScheduler
from arbiter.room import RealtimeRoom
from arbiter.tokens import Signer
from protocols.factory import ArbiterFactory
from protocols.testing import RecordingOutbox


@pytest.fixture
def server():
    clock = task.Clock()
    service, factory, _ = build(Config(port=0), clock=clock)
    return service, factory


def test_the_factory_is_an_outbox(server):
    _, factory = server
    assert verifyClass(IOutbox, ArbiterFactory)
    assert verifyObject(IOutbox, factory)


def test_the_recording_outbox_is_an_outbox():
    assert verifyObject(IOutbox, RecordingOutbox())


def test_a_realtime_room_is_a_room(server):
    service, _ = server
    room = service.create_room("rt")
    assert isinstance(room, RealtimeRoom)
    assert verifyObject(IRoom, room)


def test_a_lockstep_room_is_a_room(server):
    service, _ = server
    room = service.create_room("ls", "lockstep")
    assert isinstance(room, LockstepRoom)
    assert verifyObject(IRoom, room)


def test_a_recorded_lockstep_room_is_a_room():
    clock = task.Clock()
    room = LockstepRoom("x", Config(), RecordingOutbox(), Signer(b"k"), clock)
    assert verifyObject(IRoom, room)


def test_a_lockstep_room_and_its_turn_scheduler_meet_through_two_small_interfaces():
    """The room is its scheduler's host; the scheduler is what the room uses."""
    room = LockstepRoom("x", Config(), RecordingOutbox(), Signer(b"k"), task.Clock())
    assert verifyClass(ITurnHost, LockstepRoom) and verifyObject(ITurnHost, room)
    assert verifyClass(ITurnScheduler, TurnScheduler)
    assert verifyObject(ITurnScheduler, room.turns)
    assert room.turns.host is room


@pytest.mark.parametrize("game_class", [Game, CubeGame, PaintGame])
def test_every_game_is_a_game(server, game_class):
    service, _ = server
    service.game_factory = game_class
    room = service.create_room("g-" + game_class.__name__)
    assert verifyClass(IGame, game_class)
    assert verifyObject(IGame, room.game)
