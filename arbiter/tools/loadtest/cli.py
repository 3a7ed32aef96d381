"""The command line: ``arbiter-loadtest`` (``python -m arbiter.tools.loadtest``)."""

import argparse
import json
import os
import sys

from arbiter.tools.loadtest.run import ENCODINGS, SYNCS, LoadTest

__all__ = ["main", "parser"]


def parser():
    p = argparse.ArgumentParser(
        prog="arbiter-loadtest",
        description="N bots play the cubes workload against an Arbiter server "
                    "(docs/LOADTEST.md).")
    p.add_argument("--url", default="ws://127.0.0.1:8080/ws", help="the server's WebSocket URL")
    p.add_argument("-n", "--clients", type=int, default=50, help="bots (default 50)")
    p.add_argument("-r", "--room-size", type=int, default=8, help="bots per room (default 8)")
    p.add_argument("--encoding", choices=sorted(ENCODINGS), default=None,
                   help="default json; msgpack with --sync compact (which needs it)")
    p.add_argument("--sync", choices=SYNCS, default="state",
                   help="the hello's sync mode (docs/PROTOCOL.md 11 and 20; default state)")
    p.add_argument("--room-prefix", default="cubes", help="rooms are PREFIX-0, PREFIX-1, ...")
    p.add_argument("--cubes", type=int, default=4, help="cubes each bot spawns (default 4)")
    p.add_argument("--order-interval", type=float, default=0.1,
                   help="seconds between a bot's orders (default 0.1)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    p.add_argument("--duration", type=float, default=20.0, help="measured window, seconds")
    p.add_argument("--grace", type=float, default=0.5, help="seconds after the window")
    p.add_argument("--join-timeout", type=float, default=60.0,
                   help="bound on joining (and on spawning), seconds")
    p.add_argument("--concurrency", type=int, default=10, help="joins in flight (default 10)")
    p.add_argument("--server-pid", type=int, default=None,
                   help="read this process's CPU (over the window) and RSS from /proc")
    p.add_argument("--decode-every", type=int, default=1, metavar="K",
                   help="NOT the scenario: after spawning only every K-th bot decodes and "
                        "measures latency, the others count state messages (a probe of the "
                        "server when one process cannot decode everything; default 1)")
    p.add_argument("--autobahn-framing", action="store_true",
                   help="let Autobahn frame every message (slower; see docs/LOADTEST.md)")
    p.add_argument("--procs", type=int, default=1, metavar="K",
                   help="run the bots in K worker processes (about N/K each) and merge "
                        "their figures (default 1: this process)")
    p.add_argument("--cpus", default=None, metavar="LIST",
                   help="pin to these CPUs (taskset style: 1,2 or 1-3); with --procs, "
                        "worker k to the k-th of them (round-robin)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--first-bot", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--progress-interval", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return p


def main(argv=None):
    p = parser()
    opts = p.parse_args(argv)
    if opts.clients < 1 or opts.room_size < 1:
        print("arbiter-loadtest: -n and -r must be at least 1", file=sys.stderr)
        return 2
    if opts.encoding is None:
        opts.encoding = "msgpack" if opts.sync == "compact" else "json"
    if opts.sync == "compact" and opts.encoding != "msgpack":
        p.error("--sync compact needs --encoding msgpack (compact frames are binary)")
    if not 1 <= opts.procs <= opts.clients:
        p.error("--procs must be between 1 and -n")
    cpus = None
    if opts.cpus:
        from arbiter.tools.loadtest.procs import cpu_list
        try:
            cpus = cpu_list(opts.cpus)
        except ValueError as e:
            p.error("--cpus: %s" % e)
    opts.cpu_list = cpus
    if opts.worker is None and not opts.quiet:
        print("arbiter-loadtest: %d bots in rooms of %d, %s, sync %s, %s" % (
            opts.clients, opts.room_size, opts.encoding, opts.sync,
            "1 process" if opts.procs == 1 else "%d processes" % opts.procs)
            + ("" if cpus is None else " on CPUs %s" % ",".join(map(str, cpus))),
            file=sys.stderr)
    if opts.procs > 1:
        return _parent(opts)
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    from twisted.internet import reactor
    test = LoadTest(opts, reactor)
    outcome = {}
    hard = opts.join_timeout * 2 + opts.warmup + opts.duration + opts.grace + 15
    if opts.worker is not None:
        hard += 20          # the start waits for the other workers' joins

    def done(r):
        outcome["r"] = r
        if reactor.running:
            reactor.stop()

    def hard_stop():
        outcome.setdefault("r", RuntimeError("hard time limit (%.0f s) reached" % hard))
        if reactor.running:
            reactor.stop()

    reactor.callWhenRunning(lambda: test.run().addBoth(done))
    reactor.callLater(hard, hard_stop)
    reactor.run()
    r = outcome.get("r")
    if not isinstance(r, dict):
        err = r.getErrorMessage() if hasattr(r, "getErrorMessage") else str(r)
        print("arbiter-loadtest: %s%s" % ("" if opts.worker is None else
                                          "worker %d: " % opts.worker, err), file=sys.stderr)
        return 1
    return _report(r, opts)


def _report(r, opts):
    if r.get("loadgen_bottleneck") and opts.worker is None:
        print("arbiter-loadtest: %s" % r["loadgen_bottleneck"], file=sys.stderr)
    sys.stdout.write(json.dumps(r) + "\n")
    sys.stdout.flush()
    return 0


def _parent(opts):
    from arbiter.tools.loadtest.procs import run_parent
    try:
        r = run_parent(opts)
    except Exception as e:
        print("arbiter-loadtest: %s" % e, file=sys.stderr)
        return 1
    return _report(r, opts)

