"""Shared fixtures: a real Arbiter server on 127.0.0.1 (integration tests)."""

import pytest
import pytest_twisted
import txaio

from arbiter.config import Config


class RunningServer:
    def __init__(self, service, factory, port):
        self.service = service
        self.factory = factory
        self.port = port.getHost().port
        self._port = port
        self.url = "ws://127.0.0.1:%d/ws" % self.port
        self.http = "http://127.0.0.1:%d" % self.port


def start_server(config=None, **build_kwargs):
    from twisted.internet import reactor
    from arbiter.app.server import build

    service, factory, site = build(config or Config(port=0), **build_kwargs)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    service.startService()
    return RunningServer(service, factory, port)


def stop_server(server):
    pytest_twisted.blockon(server.service.stopService())
    pytest_twisted.blockon(server._port.stopListening())


@pytest.fixture
def server():
    """A server with default settings on a free port; stopped after the test."""
    s = start_server()
    yield s
    stop_server(s)


@pytest.fixture
def make_server():
    """Start servers with a given Config; all are stopped after the test."""
    started = []

    def make(config=None, **kwargs):
        s = start_server(config, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        stop_server(s)


@pytest.fixture
def txaio_clock():
    """Autobahn's own timers on a task.Clock, for unit tests with fake transports."""
    from twisted.internet import task

    old = txaio.config.loop
    clock = task.Clock()
    txaio.config.loop = clock
    yield clock
    txaio.config.loop = old


# Cluster mode: a real redis-server and Arbiter nodes as subprocesses (tests/cluster_support.py)

@pytest.fixture
def redis_server():
    """Debian's redis-server on a free port of 127.0.0.1, empty, no persistence; stopped
    (and its folder removed) after the test. See cluster_support.RedisServer."""
    from cluster_support import RedisServer

    redis = RedisServer()
    try:
        yield redis.start()
    finally:
        redis.close()


@pytest.fixture
def cluster(redis_server, tmp_path_factory):
    """``cluster(n=3, **kw)``: n Arbiter nodes on ``redis_server`` with one shared secret
    (``cluster.secret``), ready; all stopped after the test. See cluster_support.Cluster."""
    from cluster_support import Cluster

    nodes = Cluster(redis_server, log_dir=str(tmp_path_factory.mktemp("cluster")))
    try:
        yield nodes
    finally:
        nodes.close()
