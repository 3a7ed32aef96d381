#!/usr/bin/env python3
"""The other player of the netcode lab (bench/netcode.py): a Python client that keeps
its avatar moving around the first player's avatar, at a distance that swings across the
tag radius, so the page has a moving remote avatar to draw and to tag.

    python bench/netcode_bot.py --url ws://127.0.0.1:9000/ws --room lab --seconds 60

It prints ``BOT_READY`` once it is in the room and, at the end, one JSON line
``BOT_DONE {...}`` with what it saw: state messages per second, the round trips it
measured, and its avatar's authoritative position per state tick.
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor, task  # noqa: E402

from protocols.client import connect  # noqa: E402

STEP = 0.05           # seconds between moves: 20 a second, each for 50 ms


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--room", default="lab")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--radius", type=float, default=2.0, help="the distance it swings around")
    a = p.parse_args(argv)
    out = {}

    @defer.inlineCallbacks
    def run():
        client = yield connect(a.url, name="B", room=a.room)
        states = []
        rtts = []
        real = client._on_message

        def on_message(msg):
            real(msg)
            t = msg.get("t")
            if t in ("delta", "snapshot"):
                eid, e = client.my_avatar()
                if e is not None:
                    states.append((msg["tick"], round(time.monotonic(), 4), e["pos"][0],
                                   e["pos"][2]))
            elif t == "pong":
                rtts.append((time.monotonic() - msg["ts"]) * 1000)
        client._on_message = on_message
        print("BOT_READY", flush=True)
        started = time.monotonic()

        def step():
            now = time.monotonic() - started
            if int(now / 0.5) != int((now - STEP) / 0.5):
                client.ping(time.monotonic())
            mine = client.my_avatar()[1]
            others = [e for e in client.entities("avatar").values() if e["owner"] != client.you]
            if mine is None or not others:
                return
            ax, az = others[0]["pos"][0], others[0]["pos"][2]
            # a point circling the other avatar, its distance swinging 0.8 .. 3.2 units
            r = a.radius + 1.2 * math.sin(now * 0.9)
            angle = now * 1.1
            tx, tz = ax + r * math.cos(angle), az + r * math.sin(angle)
            dx, dz = tx - mine["pos"][0], tz - mine["pos"][2]
            n = math.hypot(dx, dz)
            if n > 0.05:
                client.move(dx / n, dz / n, dt=int(STEP * 1000))
        loop = task.LoopingCall(step)
        loop.start(STEP)
        yield task.deferLater(reactor, a.seconds, lambda: None)
        loop.stop()
        out.update(states=states, updates_per_s=len(states) / a.seconds,
                   rtt_ms=sorted(rtts))
        client.close()

    def done(result):
        if isinstance(result, Exception) or hasattr(result, "getTraceback"):
            print("BOT_FAILED %s" % getattr(result, "getTraceback", lambda: result)(),
                  flush=True)
        print("BOT_DONE " + json.dumps(out), flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: run().addBoth(done))
    reactor.run()


if __name__ == "__main__":
    main()
