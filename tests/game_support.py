"""A player of the cube game on a server in memory, as the game's tests read it: the
messages it got, its mirror of the state (merge patches applied), its numbered inputs."""

from arbiter.app.testing import InMemoryServer
from arbiter.codes import JSON
from arbiter.config import Config
from arbiter.state import apply_merge_patch


def server_with(**options):
    """A server on a task.Clock with these Config options, and its room "main"."""
    server = InMemoryServer(Config(port=0, **options))
    server.service.create_room("main")
    return server, server.service.rooms.get("main")


class Player:
    def __init__(self, server, name, encoding=JSON):
        self.client = server.join(name, protocols=(encoding,))
        self.you = self.client.you
        self.state = self.client.state
        self.msgs = []
        self.seq = 0

    def send(self, msg):
        """Send a numbered input (the next seq); returns its seq."""
        self.seq += 1
        msg["seq"] = self.seq
        self.client.send(msg)
        return self.seq

    def read(self):
        """Take what arrived: kept in ``msgs``, state messages applied to ``state``."""
        for m in self.client.received():
            self.msgs.append(m)
            if m["t"] == "delta":
                apply_merge_patch(self.state, m["patch"])
            elif m["t"] == "snapshot":
                self.state = m["state"]
        return self

    def of(self, t, **match):
        """The messages of type ``t`` received so far whose fields match."""
        return [m for m in self.msgs if m["t"] == t
                and all(m.get(k) == v for k, v in match.items())]

    def kinds(self, kind):
        """The entities of the mirror of this kind, by key."""
        return {k: e for k, e in self.state["entities"].items() if e["kind"] == kind}
