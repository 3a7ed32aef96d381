"""/metrics in the Prometheus text format moves with real traffic."""

import pytest_twisted
import treq
from twisted.internet import reactor, task

from protocols.client import connect
from protocols import wire


def _values(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest_twisted.inlineCallbacks
def _scrape(server):
    resp = yield treq.get(server.http + "/metrics")
    assert resp.code == 200
    assert resp.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    body = yield resp.text()
    return _values(body)


@pytest_twisted.inlineCallbacks
def test_metrics_count_real_traffic(server):
    """Connections, players, rooms, inputs, rejects by code, ticks and bytes out all move."""
    before = yield _scrape(server)
    assert before["arbiter_connections"] == 0
    a = yield connect(server.url, name="A", room="m1", encoding=wire.MSGPACK)
    b = yield connect(server.url, name="B", room="m2")
    seq = a.spawn(at=[1, 1])
    yield a.wait_ack(seq)
    bad = a.delete(999)                       # not_owner
    yield a.wait_ack(bad)
    yield task.deferLater(reactor, 0.2, lambda: None)
    now = yield _scrape(server)
    assert now["arbiter_connections"] == 2
    assert now["arbiter_players"] == 2
    assert now["arbiter_rooms"] == 2
    assert now["arbiter_inputs_total"] - before.get("arbiter_inputs_total", 0) == 2
    assert now['arbiter_rejects_total{code="not_owner"}'] == 1
    assert now["arbiter_tick_seconds_count"] > before["arbiter_tick_seconds_count"]
    assert now["arbiter_bytes_out_total"] > before["arbiter_bytes_out_total"] + 100
    assert "arbiter_tick_overruns_total" in now
    assert "arbiter_slow_consumer_drops_total" in now
    yield a.close()
    yield b.close()
    yield task.deferLater(reactor, 0.1, lambda: None)
    after = yield _scrape(server)
    assert after["arbiter_connections"] == 0


def test_a_failure_outside_the_rooms_is_logged_and_the_loop_goes_on():
    """An exception outside the per-room guard (here the outbox's after_tick) reaches
    the LoopingCall's Deferred: the service logs it and restarts the loop."""
    from twisted.logger import globalLogPublisher

    from arbiter.app.server import build
    from arbiter.config import Config

    clock = task.Clock()
    service, factory, _ = build(Config(port=0), clock=clock)
    calls = []

    def after_tick():
        calls.append(clock.seconds())
        if len(calls) == 2:
            raise RuntimeError("after_tick broke")

    factory.after_tick = after_tick
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        service.startService()
        for _ in range(10):
            clock.advance(0.05)
    finally:
        globalLogPublisher.removeObserver(events.append)
    service.stopService()
    assert service.loop_failures == 1
    assert any(e.get("log_failure") is not None and "after_tick broke" in str(e["log_failure"].value)
               for e in events)
    assert len(calls) >= 8, "the loop stopped after the failure: %r" % calls
