"""Integration: real clients on a real socket play a short game."""

import pytest
import pytest_twisted

from protocols.client import connect
from protocols import wire


@pytest.mark.parametrize("encoding", [wire.JSON, wire.MSGPACK])
@pytest_twisted.inlineCallbacks
def test_two_players_see_each_others_cubes(server, encoding):
    """A spawns a cube and orders it; B sees it appear, move and stop at the target."""
    a = yield connect(server.url, name="A", encoding=encoding)
    b = yield connect(server.url, name="B", encoding=wire.JSON)
    seq = a.spawn(at=[1, 1])
    yield a.wait_ack(seq)
    (cid,) = a.my_cubes()
    yield b.wait_for(lambda c: cid in c.entities("cube", a.you))
    a.order([cid], [3, 1])
    yield b.wait_for(lambda c: c.entities()[cid].get("to") == [3, 1])
    yield b.wait_for(lambda c: c.entities()[cid]["pos"] == [3, 0.5, 1] and "to" not in c.entities()[cid])
    assert a.entities()[cid]["pos"] == [3, 0.5, 1]
    yield a.close()
    yield b.close()


@pytest_twisted.inlineCallbacks
def test_client_sockets_have_nagle_off(server):
    """The Python client sends small inputs at once (TCP_NODELAY), not held back by Nagle."""
    import socket
    a = yield connect(server.url, name="A")
    sock = a.proto.transport.getHandle()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    yield a.close()


@pytest_twisted.inlineCallbacks
def test_connect_joins_a_lockstep_room(server):
    """connect() fires for a lockstep room too, which answers hello with welcome and no snapshot."""
    server.service.create_room("duel", mode="lockstep")
    a = yield connect(server.url, name="A", room="duel")
    assert a.mode == "lockstep" and a.you and a.room == "duel"
    yield a.close()
