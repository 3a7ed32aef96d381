"""The code in docs/GAMES.md is real: every ``python`` block runs, in order, in one namespace
(the example game's classes, then the snippets that play it through InMemoryServer and assert
what the wire shows), and the example game it builds is checked further below, as a
client would see it. Also: the contents line of docs/PROTOCOL.md links to headings that exist.
"""

import os
import re

import pytest

from arbiter.app.testing import InMemoryServer
from arbiter.codes import JSON, MSGPACK
from arbiter.compact import CompactMirror
from arbiter.config import Config
from arbiter.state import apply_merge_patch

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def python_blocks(name):
    """[(first line number, code)] of the ```python blocks of docs/<name>."""
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, start = [], None
    for i, line in enumerate(lines):
        if start is None and line.strip() == "```python":
            start = i + 1
        elif start is not None and line.strip() == "```":
            out.append((start + 1, "\n".join(lines[start:i])))
            start = None
    assert start is None, "docs/%s: a python block is not closed" % name
    return out


def run_games_md():
    """Every block of GAMES.md, in order, in one namespace; line numbers as in the file."""
    ns = {"__name__": "games_md"}
    for line, code in python_blocks("GAMES.md"):
        exec(compile("\n" * (line - 1) + code, os.path.join(DOCS, "GAMES.md"), "exec"), ns)
    return ns


@pytest.fixture(scope="module")
def games_md():
    import txaio
    from twisted.internet import task

    old, txaio.config.loop = txaio.config.loop, task.Clock()
    try:
        yield run_games_md()
    finally:
        txaio.config.loop = old


def test_games_md_runs(games_md):
    """(The fixture ran every block; the snippets' asserts held.)"""
    for name in ("Chase", "DarkChase", "ChaseRounds", "PaintGame", "Swarm"):
        assert name in games_md
    assert len(python_blocks("GAMES.md")) >= 10


# -- the example game, further ----------------------------------------------------------------

class Mirror:
    """One connection and the entities it mirrors from what it received (merge patches, or
    compact frames through CompactMirror)."""

    def __init__(self, server, name, sync="state", role="player", token=None):
        enc = MSGPACK if sync == "compact" else JSON
        self.client = server.client((enc,))
        hello = {"name": name, "room": "main"}
        if sync != "state":
            hello["sync"] = sync
        if role != "player":
            hello["role"] = role
        if token:
            hello["token"] = token
        self.compact = CompactMirror() if sync == "compact" else None
        self.state = None
        self.msgs = []
        self.seen = set()
        msgs = self.client.hello(**hello)
        self.you, self.token = msgs[0]["you"], msgs[0]["token"]
        self.welcome = msgs[0]
        self.take(msgs[1:])

    def take(self, msgs):
        for m in msgs:
            self.msgs.append(m)
            if m["t"] == "compact":
                self.compact.apply(m["frame"])
                self.state = self.compact.state
            elif m["t"] == "snapshot":
                self.state = m["state"]
            elif m["t"] == "delta":
                apply_merge_patch(self.state, m["patch"])
            else:
                continue
            self.seen |= set(self.state.get("entities", {}))

    def read(self):
        self.take(self.client.received())
        return self

    @property
    def entities(self):
        return self.state["entities"]


def in_sight(game, pid):
    me = game.entities[game.avatars[pid]]["pos"]
    r2 = game.RADIUS ** 2
    return {k for k, e in game.entities.items()
            if (e["pos"][0] - me[0]) ** 2 + (e["pos"][2] - me[2]) ** 2 <= r2}


def truth(game, keys):
    snap = game.state.snapshot()["entities"]
    return {k: snap[k] for k in keys}


@pytest.mark.parametrize("sync", ["state", "compact"])
def test_the_dark_chase_mirrors_are_the_truth_cut_to_each_view(games_md, sync):
    """Players walk across the plane (``order``): after every state tick each mirror holds
    exactly what its player may see; a spectator's holds everything; a player who comes
    back gets a snapshot of its view."""
    server = InMemoryServer(game_factory=games_md["DarkChase"])
    players = [Mirror(server, "P%d" % i, sync) for i in range(3)]
    players.append(Mirror(server, "J"))                      # a JSON state client among them
    watcher = Mirror(server, "W", role="spectator")
    game = server.service.rooms.get("main").game
    for i, p in enumerate(players):
        game.entities[game.avatars[p.you]]["pos"] = [-15.0 + 10 * i, 0.5, -15.0]
    seq = {p.you: 0 for p in players}
    everyone = players + [watcher]
    for step in range(120):
        if step % 30 == 0:
            for i, p in enumerate(players):
                seq[p.you] += 1
                to = [(-1) ** (step // 30 + i) * 15, 15 - 10 * i]
                p.client.send({"t": "order", "seq": seq[p.you],
                               "ids": [int(game.avatars[p.you])], "to": to})
        server.tick()
        for p in everyone:
            p.read()
        for p in players:
            keys = in_sight(game, p.you)
            assert set(p.entities) == keys, (step, p.you)
            assert p.entities == truth(game, keys)
        assert watcher.entities == truth(game, set(game.entities))
    assert all(len(p.seen) > len(in_sight(game, p.you)) for p in players[:3])   # it did change
    # back after a lost connection: a snapshot of its view, nothing else
    gone = players[0]
    gone.client.lose()
    server.tick()
    back = Mirror(server, "P0", sync, token=gone.token)
    server.tick()
    back.read()
    assert back.you == gone.you and set(back.entities) == in_sight(game, gone.you)


def test_the_game_ends_its_round_and_starts_the_next(games_md):
    """ChaseRounds: the CATCHES-th catch ends the round with the top score as winner (reason
    of its own), round_ended gets the result, round_started(2) moves the drone, scores 0."""
    class Quick(games_md["ChaseRounds"]):
        CATCHES = 3

    server = InMemoryServer(Config(port=0, round_seconds=60, round_pause=1.0),
                            game_factory=Quick)
    alice, bob = Mirror(server, "Alice"), Mirror(server, "Bob")
    game = server.service.rooms.get("main").game
    room = game.room
    catchers = [alice, alice, bob]
    for who in catchers:
        d = game.entities[game.drone]["pos"]
        far = [-20.0 if d[0] > 0 else 20.0, 0.5, -20.0 if d[2] > 0 else 20.0]
        for p in (alice, bob):                      # the catcher on the drone, the other far
            game.entities[game.avatars[p.you]]["pos"] = list(d) if p is who else far
        server.tick()
    alice.read()
    [end] = [m for m in alice.msgs if m["t"] == "event" and m["kind"] == "round_end"]
    assert end["reason"] == "caught 3 times" and end["winner"] == alice.you
    assert end["scores"] == {alice.you: 2, bob.you: 1}
    assert game.results == [{"round": 1, "reason": "caught 3 times",
                             "scores": {alice.you: 2, bob.you: 1}, "winner": alice.you}]
    assert alice.state["round"]["result"]["winner"] == alice.you
    assert [m for m in alice.msgs if m["t"] == "event" and m["kind"] == "caught"] == [
        {"t": "event", "kind": "caught", "player": p.you} for p in catchers]
    still = dict(game.entities[game.drone])
    server.tick(10)
    assert dict(game.entities[game.drone]) == still          # the world stands still
    server.tick(15)
    alice.read()
    assert {"t": "event", "kind": "round_start", "round": 2} in alice.msgs
    assert game.catches == 0 and room.rounds.n == 2
    assert alice.state["players"][alice.you]["score"] == 0
    assert "result" not in alice.state["round"] and alice.state["round"]["phase"] == "running"
    server.stop()


def test_chase_without_rounds_never_ends_a_round(games_md):
    server = InMemoryServer(game_factory=games_md["ChaseRounds"])
    a = Mirror(server, "A")
    game = server.service.rooms.get("main").game
    for _ in range(12):                                     # more than CATCHES catches
        game.entities[game.avatars[a.you]]["pos"] = list(game.entities[game.drone]["pos"])
        server.tick()
    a.read()
    assert a.state["players"][a.you]["score"] == 12
    assert "round" not in a.state and not [m for m in a.msgs if m["t"] == "phase"]
    server.stop()


# -- docs/PROTOCOL.md's contents line ---------------------------------------------------------

def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_protocol_contents_link_to_headings():
    with open(os.path.join(DOCS, "PROTOCOL.md"), encoding="utf-8") as f:
        text = f.read()
    anchors = {slug(m) for m in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    contents = text.split("Contents:", 1)[1].split("\n---", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert links and [l for l in links if l not in anchors] == []
    sections = re.findall(r"^## (\d+)\. ", text, re.M)
    assert [int(n) for n in sections] == list(range(1, len(sections) + 1))
    assert len(links) == len(sections)
