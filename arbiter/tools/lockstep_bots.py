"""Deterministic lockstep bots: a test harness for lockstep rooms.

A :class:`LockstepBot` is a real client on a real socket (``protocols.client``); it
joins through ``protocols.client.join``, so in a cluster it follows ``moved`` to the
room's node. It runs the demo game (``arbiter.lockstep_game``), sends one ``turn`` packet per
turn ``input_delay`` turns ahead, attaches the checksum of the turn it just
applied, and can add a random latency (FIFO, like TCP) to what it sends. A bot
made with ``desync_at=K`` corrupts its own copy of the game at turn K: the
server must halt the game at turn K and name it.

    python -m arbiter.tools.lockstep_bots --url http://127.0.0.1:8080 --bots 4 --turns 1000

creates a lockstep room through the HTTP API, runs the bots and prints figures.
"""

import random
import sys
import time

from autobahn.exception import Disconnected
from twisted.internet import defer

from arbiter.lockstep_game import DemoGame
from protocols import wire
from protocols.client import MAX_REDIRECTS, ArbiterClient, join


class LockstepBot:
    """One bot: its connection, its copy of the game, its checksums."""

    def __init__(self, name, latency=(0.0, 0.0), desync_at=None, fps=1000, reactor=None,
                 command_every=3, lose_turns=()):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.name = name
        self.latency = latency               # (min, max) seconds added to each send
        self.desync_at = desync_at
        self.fps = fps
        self.command_every = command_every
        self.lose_turns = set(lose_turns)    # packets for these turns are "lost" (never sent)
        self.rng = random.Random(name)       # deterministic commands and delays
        self.client = None
        self.game = None
        self.start = None
        self.input_delay = 2
        self.sent_upto = 0
        self.checksums = {}                  # turn -> this bot's checksum
        self.phase = None
        self.desync = None
        self.rejects = []
        self.late_turns = []                 # turns whose master named this bot late
        self._last_delivery = 0.0

    @property
    def you(self):
        return self.client.you

    @property
    def turn(self):
        return self.game.turn if self.game is not None else 0

    # -- connecting ------------------------------------------------------------------
    @defer.inlineCallbacks
    def connect(self, url, room, token=None, role=None, encoding=wire.JSON,
                max_redirects=MAX_REDIRECTS):
        """Open a socket, say hello (with a join or reconnect token), wait for welcome.

        Joins through ``protocols.client.join``: a cluster node that does not own the
        room answers ``moved``, and the same hello goes to the room's node (at most
        ``max_redirects`` in a row); ``self.client.url`` is where the bot plays. Fails
        with ``JoinRefused`` when the server refuses the hello, ``ConnectionError`` when
        it cannot be reached."""
        client = ArbiterClient(self.reactor)
        self.client = client
        client.on_message = self._on_message
        extra = {"role": role} if role else {}
        yield join(client, url, dict(extra, name=self.name, room=room, token=token),
                   encoding, max_redirects=max_redirects)
        return self

    def ready(self, flag=True):
        self.client.send({"t": "ready", "ready": flag})

    def configure(self, **config):
        self.client.send({"t": "configure", "config": config})

    def wait_turn(self, turn, timeout=30.0):
        return self.client.wait_for(lambda c: self.turn >= turn or self.desync is not None,
                                    timeout)

    def wait_phase(self, phase, timeout=10.0):
        return self.client.wait_for(lambda c: self.phase == phase, timeout)

    def wait_desync(self, timeout=30.0):
        return self.client.wait_for(lambda c: self.desync is not None, timeout)

    # -- the game ----------------------------------------------------------------------
    def _on_message(self, msg):
        t = msg.get("t")
        if t == "welcome":
            self.phase = msg.get("phase")
        elif t == "phase":
            self.phase = msg["phase"]
        elif t == "setup":
            self.phase = msg.get("phase", self.phase)
        elif t == "start":
            self._begin(msg)
            self._send_ahead(0)
        elif t == "catchup":
            self._begin(msg)
            self.phase = msg["phase"]
            for master in msg["masters"]:
                self._apply(master, report=False)
            if msg.get("desync"):
                self.desync = msg["desync"]
            if "next" in msg:
                self.sent_upto = msg["next"] - 1
                self._send_ahead(self.turn)
        elif t == "master":
            if self.game is not None and msg["turn"] == self.game.turn + 1:
                self._apply(msg)
                self._send_ahead(msg["turn"], check=(msg["turn"], self.checksums[msg["turn"]]))
        elif t == "desync":
            self.desync = msg
        elif t == "reject":
            self.rejects.append(msg)

    def _begin(self, msg):
        self.start = msg
        self.input_delay = msg["input_delay"]
        self.game = DemoGame(msg["seed"], msg["players"], msg["config"])
        self.sent_upto = 0

    def _apply(self, master, report=True):
        game = self.game
        game.apply_master(master)
        if self.desync_at is not None and master["turn"] == self.desync_at:
            unit = game.units.get(self.you)
            if unit is not None:
                unit[0] = (unit[0] + 1) % game.size      # the deliberate bug
        self.checksums[master["turn"]] = game.checksum()
        if self.you in master.get("late", ()):
            self.late_turns.append(master["turn"])

    def _send_ahead(self, applied, check=None):
        """Send packets up to turn ``applied + input_delay``."""
        if self.you not in self.start["players"]:
            return                                   # a spectator
        lat_ms = round((self.latency[0] + self.latency[1]) * 1000)   # mean round trip
        while self.sent_upto < applied + self.input_delay:
            self.sent_upto += 1
            packet = {"t": "turn", "turn": self.sent_upto, "cmds": self._commands(),
                      "lat": lat_ms, "fps": self.fps}
            if check is not None:
                packet["check"] = list(check)
                check = None
            if self.sent_upto not in self.lose_turns:
                self._send(packet)

    def _commands(self):
        if self.rng.randrange(self.command_every):
            return []
        return [["v", self.rng.randint(-2, 2), self.rng.randint(-2, 2)]]

    def _send(self, packet):
        lo, hi = self.latency
        if hi <= 0:
            self.client.send(packet)
            return
        now = self.reactor.seconds()
        at = max(self._last_delivery, now + self.rng.uniform(lo, hi))
        self._last_delivery = at
        self.reactor.callLater(at - now, self._deliver, packet)

    def _deliver(self, packet):
        try:
            self.client.send(packet)
        except Disconnected:
            pass                 # the connection dropped while the packet was "in flight"


# -- a command-line run against a server ---------------------------------------------

@defer.inlineCallbacks
def run(reactor, http, bots=4, turns=1000, latency=(0.0, 0.003), desync_at=None,
        api_key=None, turn_ms=0):
    """Create a room through the API, play ``turns`` turns, return figures."""
    import json
    import treq

    headers = {"Content-Type": ["application/json"]}
    if api_key:
        headers["Authorization"] = ["Bearer " + api_key]
    resp = yield treq.post(http + "/api/rooms", json.dumps(
        {"mode": "lockstep", "min_players": bots, "turn_ms": turn_ms}).encode(),
        headers=headers)
    room = yield resp.json()
    if resp.code != 201:
        raise RuntimeError("create failed: %s" % room)
    players = []
    for i in range(bots):
        resp = yield treq.post(room["join_url"], json.dumps({"name": "bot%d" % i}).encode(),
                               headers=headers)
        join = yield resp.json()
        bot = LockstepBot("bot%d" % i, latency=latency, reactor=reactor,
                          desync_at=desync_at if i == bots - 1 else None)
        yield bot.connect(join["ws_url"], room["id"], token=join["token"])
        players.append(bot)
    started = time.perf_counter()
    for bot in players:
        bot.ready()
    yield defer.gatherResults([b.wait_turn(turns, timeout=600) for b in players])
    elapsed = time.perf_counter() - started
    resp = yield treq.delete(http + "/api/rooms/" + room["id"], headers=headers)
    yield resp.content()
    agreed = all(b.checksums.get(t) == players[0].checksums.get(t)
                 for b in players for t in range(1, min(b.turn for b in players) + 1))
    return {"room": room["id"], "turns": min(b.turn for b in players), "seconds": elapsed,
            "turns_per_second": min(b.turn for b in players) / elapsed, "agreed": agreed,
            "desync": players[0].desync}


def _report(result, bots):
    print("room %s: %d bots, %d turns in %.2f s (%.0f turns/s); checksums %s"
          % (result["room"], bots, result["turns"], result["seconds"],
             result["turns_per_second"], "agree" if result["agreed"] else "DIFFER"))
    if result["desync"]:
        print("desync at turn %(turn)d: %(diverged)s diverged" % result["desync"])


def main(argv=None):
    import argparse
    from twisted.internet import task

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--bots", type=int, default=4)
    p.add_argument("--turns", type=int, default=1000)
    p.add_argument("--latency-ms", type=float, nargs=2, default=(0.0, 3.0))
    p.add_argument("--desync-at", type=int, default=None)
    p.add_argument("--turn-ms", type=int, default=0)
    p.add_argument("--api-key", default=None)
    a = p.parse_args(argv)

    def go(reactor):
        d = run(reactor, a.url.rstrip("/"), a.bots, a.turns,
                (a.latency_ms[0] / 1000, a.latency_ms[1] / 1000), a.desync_at, a.api_key,
                a.turn_ms)
        return d.addCallback(_report, a.bots)

    task.react(go)


if __name__ == "__main__":
    sys.exit(main())
