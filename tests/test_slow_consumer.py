"""Integration: a client that stops reading, over real sockets."""

import socket

import pytest_twisted
from twisted.internet import defer, reactor, task

from protocols.client import connect
from arbiter.config import Config, World


@defer.inlineCallbacks
def until(condition, timeout=60.0, step=0.05):
    """Fire once condition() is true (checked every ``step`` s); fail after ``timeout``."""
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError("condition not met in %s s" % timeout)
        yield task.deferLater(reactor, step, lambda: None)
        waited += step


@pytest_twisted.inlineCallbacks
def test_stalled_reader_is_skipped_then_resynced(make_server):
    """A client that stops reading costs the others nothing; when it reads again it gets a snapshot."""
    server = make_server(Config(port=0, world=World(size=100, max_cubes=64)))
    slow = yield connect(server.url, name="slow")
    busy = yield connect(server.url, name="busy")
    # small socket buffers on both ends, so that the stall shows within seconds
    slow.proto.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server_side = server.factory.players[slow.you]
    server_side.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for _ in range(10):
        busy.spawn()
    yield busy.wait_ack(busy.seq)

    ticks = []
    busy.on_message = lambda m: m["t"] == "delta" and ticks.append(m["tick"])

    def churn():
        far = 45 if busy.seq % 2 else -45
        busy.order(list(busy.my_cubes()), [far, (busy.seq % 9) * 5 - 20])

    mover = task.LoopingCall(churn)
    mover.start(0.2)
    slow.proto.transport.pauseProducing()          # the slow client stops reading
    yield until(lambda: server_side.congested)
    start = len(ticks)
    yield until(lambda: len(ticks) >= start + 20)  # 20 more state ticks go by
    mover.stop()

    seen = ticks[start:]
    assert seen == list(range(seen[0], seen[0] + len(seen))), "busy missed a state tick"
    assert server_side.congested_bytes <= server.service.config.send_buffer_limit
    assert server.service.metrics.slow_skips._value.get() >= 1    # counted on /metrics
    assert server.service.rooms.get("main").players[slow.you].needs_snapshot

    snapshots = []
    slow.on_message = lambda m: m["t"] == "snapshot" and snapshots.append(m)
    slow.proto.transport.resumeProducing()         # it reads again
    yield slow.wait_for(lambda c: snapshots, timeout=30)
    yield busy.wait_for(lambda c: c.tick >= snapshots[-1]["tick"])
    yield slow.wait_for(lambda c: c.tick == busy.tick)
    assert slow.state == busy.state
    yield slow.close()
    yield busy.close()
