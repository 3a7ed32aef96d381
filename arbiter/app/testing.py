"""A whole Arbiter server in memory, for tests of the server and of your game.

:class:`InMemoryServer` builds the server exactly as the daemon does
(:func:`arbiter.app.server.build`) on a ``task.Clock``, and reaches it with
:class:`protocols.testing.FakeClient` (real WebSocket frames, no socket)::

    server = InMemoryServer(game_factory=PaintGame)
    alice = server.join("Alice")
    alice.send({"t": "paint", "seq": 1, "cell": [2, 3]})
    server.tick()
    alice.received()          # -> [delta with ack 1, ...]
    server.stop()

Autobahn's own timers run on txaio's loop, not on this clock: point
``txaio.config.loop`` at ``server.clock`` (and back) if a test must not leave
them behind (tests/conftest.py's ``txaio_clock`` fixture does that).
"""

from twisted.internet import task

from arbiter.app.server import build
from arbiter.codes import JSON
from arbiter.config import Config
from protocols.testing import FakeClient


class InMemoryServer:
    """A server on a ``task.Clock`` (``clock``), with ``service`` and ``factory``."""

    def __init__(self, config=None, game_factory=None, authenticator=None):
        self.clock = task.Clock()
        self.config = config or Config(port=0)
        self.service, self.factory, self.site = build(
            self.config, clock=self.clock, monotonic=self.clock.seconds,
            game_factory=game_factory, authenticator=authenticator)
        self.service.startService()

    def client(self, protocols=(JSON,)):
        """A new connection (WebSocket handshake done, no ``hello`` yet)."""
        return FakeClient(self.factory, protocols)

    def join(self, name="A", room="main", protocols=(JSON,), **fields):
        """A connection that said ``hello`` and got ``welcome`` and ``snapshot``;
        they are kept on it as ``welcome``, ``you``, ``token`` and ``state``."""
        client = self.client(protocols)
        msgs = client.hello(name=name, room=room, **fields)
        if [m["t"] for m in msgs[:2]] != ["welcome", "snapshot"]:
            raise AssertionError("hello was not answered with welcome, snapshot: %r" % (msgs,))
        client.welcome = msgs[0]
        client.you = msgs[0]["you"]
        client.token = msgs[0]["token"]
        client.state = msgs[1]["state"]
        return client

    def tick(self, n=1):
        """Run exactly ``n`` tick periods: the loop's calls one by one (no float
        drift), ``tick_spread`` of them a period, so every room ticks ``n`` times."""
        for _ in range(n * self.config.tick_spread):
            due = self.service._loop.call.getTime()
            self.clock.advance(max(0.0, due - self.clock.seconds()) + 1e-9)

    def stop(self):
        """Stop ticking and close every connection (1001)."""
        return self.service.stopService()
