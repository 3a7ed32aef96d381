#!/usr/bin/env python3
"""How long a join takes in cluster mode: connect, hello, welcome and first snapshot.

    arbiter-cluster --workers 2 --start-redis --port 18600 &
    python bench/join_latency.py --url ws://127.0.0.1:18600/ws -n 120

Joins ``-n`` new rooms through one node, one after another: rooms placed on that node
("placed here": one Redis round trip) and rooms placed on another ("redirected": the
``moved`` answer, a second connection); then joins again rooms that node has ("existing
room": no Redis). Prints the median and the 95th percentile of each, in ms.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor  # noqa: E402

from protocols.client import connect  # noqa: E402


@defer.inlineCallbacks
def measure(url, n):
    out = {"placed here": [], "redirected": [], "existing room": []}
    clients = []
    try:
        for i in range(n):
            t = time.perf_counter()
            c = yield connect(url, name="l", room="lat-%d-%d" % (os.getpid(), i),
                              encoding="arbiter.v1.msgpack")
            out["redirected" if c.redirects else "placed here"].append(
                (time.perf_counter() - t) * 1000)
            clients.append(c)
        for c in [c for c in clients if not c.redirects]:
            t = time.perf_counter()
            again = yield connect(url, name="m", room=c.room, encoding="arbiter.v1.msgpack")
            out["existing room"].append((time.perf_counter() - t) * 1000)
            again.close()
        for kind, v in out.items():
            if v:
                v.sort()
                print("%-14s n=%3d  median %.1f ms  p95 %.1f ms"
                      % (kind, len(v), statistics.median(v), v[max(0, int(len(v) * 0.95) - 1)]))
    finally:
        for c in clients:
            c.close()
        reactor.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    p.add_argument("-n", type=int, default=120)
    a = p.parse_args(argv)
    reactor.callWhenRunning(measure, a.url, a.n)
    reactor.run()


if __name__ == "__main__":
    main()
