#!/usr/bin/env python3
"""The server's state path alone: the cubes workload on a server in memory.

    python bench/state_path.py                       # 400 players in rooms of 8, state sync
    python bench/state_path.py -n 400 -r 8 --sync compact --runs 5
    python bench/state_path.py -n 100 -r 100 --sync compact --profile 30
    python bench/state_path.py -n 400 -r 8 --view-radius 25     # per-player views on

The whole server (arbiter.app.testing.InMemoryServer: the service, the rooms, the
WebSocket edge) runs on a ``task.Clock``; its clients are FakeClients (real frames, no
sockets, no decoding). The workload is bench/run.py's (plane 100 x 100, 4 cubes per
player, every player orders one of its cubes every 100 ms). What is timed: the server's
CPU for the inputs (frames in) and the ticks (state out), per second of game time, i.e.
the cores it would need at 20 Hz without the kernel's socket work. What is not timed:
the fake clients draining their frames. A figure to compare trees and sync modes
(medians of --runs), not a replacement for bench/run.py's figures over real sockets.
"""

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import txaio  # noqa: E402

from arbiter import codes  # noqa: E402
from arbiter.app.testing import InMemoryServer  # noqa: E402
from arbiter.config import Config, World  # noqa: E402


def run(n, r, sync, seconds, seed=1, profile=None, view_radius=0.0):
    """(server cores, bytes sent per client per second)."""
    world = World(size=100.0, speed=5.0, max_players=r, max_cubes=4)
    server = InMemoryServer(Config(port=0, world=world, grace=1.0, view_radius=view_radius))
    txaio.config.loop = server.clock
    rng = random.Random(seed)
    clients = []
    for i in range(n):
        c = server.client((codes.MSGPACK,))
        fields = {"sync": sync} if sync != "state" else {}
        c.hello(name="b%d" % i, room="room-%d" % (i // r), **fields)
        c.seq = 0
        clients.append(c)
    for c in clients:
        for _ in range(4):
            c.seq += 1
            c.send({"t": "spawn", "seq": c.seq})
    server.tick(2)
    # the cube ids each client owns, read from the rooms (the clients don't decode)
    for c in clients:
        room = server.service.rooms.get(c.proto.room.name)
        c.cubes = [cube.id for cube in room.game.cubes.values() if cube.owner == c.proto.player.id]
        c.frames()
    ticks = seconds * 20
    phase = {id(c): rng.randrange(2) for c in clients}
    busy = 0.0
    sent = 0
    prof = cProfile.Profile() if profile else None
    for t in range(ticks):
        started = time.process_time()
        if prof:
            prof.enable()
        for c in clients:
            if (t + phase[id(c)]) % 2 == 0 and c.cubes:
                c.seq += 1
                cid = c.cubes[c.seq % len(c.cubes)]
                c.send({"t": "order", "seq": c.seq, "ids": [cid],
                        "to": [round(rng.uniform(-50, 50), 2), round(rng.uniform(-50, 50), 2)]})
        server.tick()
        if prof:
            prof.disable()
        busy += time.process_time() - started
        for c in clients:
            sent += len(c.transport.value())
            c.transport.clear()
    server.stop()
    if prof:
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(profile)
    return busy / seconds, sent / n / seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=400)
    p.add_argument("-r", type=int, default=8)
    p.add_argument("--sync", default="state", choices=("state", "intent", "compact"))
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--view-radius", type=float, default=0.0,
                   help="per-player views: players see entities within this (0 = all)")
    p.add_argument("--profile", type=int, default=0, metavar="LINES",
                   help="one profiled run instead; print the top LINES functions")
    a = p.parse_args(argv)
    if a.profile:
        run(a.n, a.r, a.sync, int(a.seconds), profile=a.profile, view_radius=a.view_radius)
        return
    results = [run(a.n, a.r, a.sync, int(a.seconds), seed=i + 1, view_radius=a.view_radius)
               for i in range(a.runs)]
    cores = [c for c, _ in results]
    print("n=%d r=%d sync=%s view_radius=%g: server CPU %.3f cores (median of %d: %s), "
          "%.2f kB/client/s down" % (a.n, a.r, a.sync, a.view_radius,
                                    statistics.median(cores), a.runs,
                                    ", ".join("%.3f" % c for c in cores),
                                    statistics.median(b for _, b in results) / 1000))


if __name__ == "__main__":
    main()
