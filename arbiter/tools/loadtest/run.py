"""LoadTest: one bounded run (join, spawn, warm up, measure, report)."""

import collections
import json
import os
import random
import sys
import threading
import time

from twisted.internet import defer, task

from protocols import wire
from protocols.client import join
from arbiter.tools.loadtest.bot import Bot
from arbiter.tools.loadtest.fast import _open
from arbiter.tools.loadtest.stats import ProcSampler, _r, cpu_times, len_msgs, percentile

__all__ = ["ENCODINGS", "LoadTest", "SYNCS", "loadgen_why"]

ENCODINGS = {"json": wire.JSON, "msgpack": wire.MSGPACK}
SYNCS = ("state", "intent", "compact")


def loadgen_why(f):
    """Why one load generator process measured itself rather than the server (its
    figures: ``loadgen_cpu``, ``loadgen_lag_p99_ms``, ``orders_per_s`` and
    ``orders_target_per_s``): a list of reasons, empty when it kept up."""
    why = []
    if f["loadgen_cpu"] >= 0.9:
        why.append("CPU %.2f >= 0.9 cores" % f["loadgen_cpu"])
    if (f["loadgen_lag_p99_ms"] or 0) > 50:
        why.append("event loop lateness p99 %.0f ms > 50 ms" % f["loadgen_lag_p99_ms"])
    if f["orders_per_s"] < 0.95 * f["orders_target_per_s"]:
        why.append("orders sent %.0f/s < 95%% of %.0f/s" % (f["orders_per_s"],
                                                           f["orders_target_per_s"]))
    return why


class LoadTest:
    """One bounded run: join, spawn, warm up, measure, report."""

    def __init__(self, opts, reactor, out=sys.stdout, err=sys.stderr):
        self.o = opts
        self.reactor = reactor
        self.out = out
        self.err = err
        self.rng = random.Random(opts.seed)
        self.encoding = ENCODINGS[opts.encoding]
        self.bots = []
        self.failed = 0
        self.last_failure = None
        self.closed_early = 0
        self.latencies = []
        self.measuring = False
        self.orders_sent = 0
        self.rejects = collections.Counter()
        self.errors = collections.Counter()
        self.half = 50.0
        self.phase = "joining"
        self.t0 = time.monotonic()
        self.server = ProcSampler(opts.server_pid) if opts.server_pid else None
        self.me = ProcSampler(os.getpid())
        self._last = None
        self._lag = []
        self._lag_expected = None
        self.worker = getattr(opts, "worker", None)     # --procs: this worker's index
        self.first = getattr(opts, "first_bot", 0) or 0
        self._stdin = sys.stdin     # worker: where the parent's start line comes from

    # -- phases -------------------------------------------------------------------
    @defer.inlineCallbacks
    def run(self):
        o = self.o
        result = {"N": o.clients, "R": o.room_size, "encoding": o.encoding, "url": o.url,
                  "sync": o.sync, "decode_every": o.decode_every, "procs": 1,
                  "loadgen_cpus": getattr(o, "cpu_list", None)}
        if self.server:
            result["rss_idle_mb"] = self.server.rss_mb()
        progress = task.LoopingCall(self.progress)
        progress.clock = self.reactor
        progress.start(o.progress_interval, now=False)
        lag = task.LoopingCall(self._lag_probe)
        lag.clock = self.reactor
        lag.start(0.05, now=True)
        try:
            yield self.join_all()
            result["join_s"] = round(time.monotonic() - self.t0, 2)
            live = [b for b in self.bots if b.joined and b.close_code is None]
            if not live:
                raise RuntimeError("no bot joined (failed: %d%s)" % (
                    self.failed, "; last: %s" % self.last_failure if self.last_failure else ""))
            self.phase = "spawning"
            yield self.spawn_all(live)
            # the orders start at ``t0`` (monotonic; with --procs, the parent's time,
            # the same in every worker), the window at t0 + warm-up
            t0 = yield self.ready(live)
            self.phase = "warm-up"
            for b in live:
                loop = b.orders_loop = task.LoopingCall(b.send_order)
                loop.clock = self.reactor
                self.reactor.callLater(self._until(t0) + self.rng.uniform(0, o.order_interval),
                                       loop.start, o.order_interval, True)
            yield task.deferLater(self.reactor, self._until(t0 + o.warmup), lambda: None)
            self.phase = "window"
            start = self._sample(live)
            self.measuring = True
            yield task.deferLater(self.reactor, self._until(t0 + o.warmup + o.duration),
                                  lambda: None)
            end = self._sample(live)
            self.measuring = False
            if self.server:
                result["rss_mb"] = self.server.rss_mb()
            self.phase = "grace"
            for b in live:
                if b.orders_loop is not None and b.orders_loop.running:
                    b.orders_loop.stop()
            yield task.deferLater(self.reactor, o.grace, lambda: None)
            result.update(self._figures(start, end, live))
        finally:
            progress.stop()
            lag.stop()
            self.phase = "closing"
            yield self.close_all()
        return result

    @staticmethod
    def _until(t):
        """Seconds from now to monotonic time ``t`` (0 if past)."""
        return max(0.0, t - time.monotonic())

    def ready(self, live):
        """The monotonic time the orders start: now, or, for a worker of --procs, the
        time the parent gives once every worker has joined (a line on stdin)."""
        if self.worker is None:
            return defer.succeed(time.monotonic())
        self.out.write(json.dumps({"ready": self.worker, "joined": len(live)}) + "\n")
        self.out.flush()
        self.phase = "ready"

        def started(line):
            try:
                return float(json.loads(line)["start"])
            except Exception:
                raise RuntimeError("no start from the parent process (got %r)" % (line,))
        d = defer.Deferred()

        def read():             # a daemon thread: it never holds the process up
            line = self._stdin.readline()
            self.reactor.callFromThread(d.callback, line)
        threading.Thread(target=read, name="start-line", daemon=True).start()
        return d.addCallback(started)

    def join_all(self):
        sem = defer.DeferredSemaphore(self.o.concurrency)
        ds = []
        for i in range(self.first, self.first + self.o.clients):
            room = "%s-%d" % (self.o.room_prefix, i // self.o.room_size)
            ds.append(sem.run(self.join_one, i, room))
        d = defer.DeferredList(ds, consumeErrors=True)
        return _bounded(d, self.o.join_timeout, self.reactor)

    @defer.inlineCallbacks
    def join_one(self, i, room):
        bot = Bot(self, i, self.reactor)
        self.bots.append(bot)
        fast = not self.o.autobahn_framing
        hello = {"name": "bot-%d" % i, "room": room}
        if self.o.sync != "state":
            hello["sync"] = self.o.sync
        try:
            # join follows a cluster's redirects (error moved) to the room's node
            yield join(bot, self.o.url, hello, self.encoding, timeout=self.o.join_timeout,
                       opener=lambda client, url, encoding: _open(client, url, encoding, fast))
            if bot.world:
                self.half = bot.world["size"] / 2.0
        except Exception as e:
            self.failed += 1
            self.last_failure = str(e) or type(e).__name__
            if bot.proto is not None:
                bot.drop()

    @defer.inlineCallbacks
    def spawn_all(self, live):
        ds = []
        for b in live:
            seq = 0
            for _ in range(self.o.cubes):
                seq = b.spawn()
            ds.append(b.wait_ack(seq, timeout=self.o.join_timeout))
        yield _bounded(defer.DeferredList(ds, consumeErrors=True), self.o.join_timeout,
                       self.reactor)
        for b in live:
            b.cube_ids = sorted(b.my_cubes())
            b.skim = b.index % self.o.decode_every != 0

    def _sample(self, live):
        return {
            "t": time.perf_counter(),
            "server_cpu": self.server.cpu_seconds() if self.server else None,
            "me_cpu": self.me.cpu_seconds(),
            "bytes": [b.bytes_in for b in live],
            "updates": [b.window_updates for b in live],
            "msgs": sum(len_msgs(b) for b in live),
            "orders": self.orders_sent,
            "lag": len(self._lag),
            "cpus": cpu_times(),
        }

    def _figures(self, a, b, live):
        wall = b["t"] - a["t"]
        n = len(live)
        connected = sum(1 for x in live if x.close_code is None)
        bytes_ = [y - x for x, y in zip(a["bytes"], b["bytes"])]
        ups = [(y - x) / wall for x, y in zip(a["updates"], b["updates"])]
        lags = self._lag[a["lag"]:b["lag"]]
        f = {
            "connected": connected,
            "failed": self.failed,
            "dropped": n - connected,
            "rooms": len({x.room for x in live}),
            "redirects": sum(len(x.redirects) for x in self.bots),
            "nodes": dict(collections.Counter(x.url for x in live)),
            "window_s": round(wall, 3),
            "cpu": None if a["server_cpu"] is None else
            round((b["server_cpu"] - a["server_cpu"]) / wall, 4),
            "bytes_per_client_s": round(sum(bytes_) / n / wall, 1),
            "kb_per_client_s": round(sum(bytes_) / n / wall / 1000.0, 2),
            "lat_p50_ms": _r(percentile(self.latencies, 50)),
            "lat_p99_ms": _r(percentile(self.latencies, 99)),
            "lat_max_ms": _r(max(self.latencies) if self.latencies else None),
            "acks": len(self.latencies),
            "updates_per_s": round(sum(ups) / n, 2),
            "updates_per_s_min": round(min(ups), 2),
            "msgs_in_per_s": round((b["msgs"] - a["msgs"]) / wall, 1),
            "orders_per_s": round((b["orders"] - a["orders"]) / wall, 1),
            "orders_target_per_s": round(n / self.o.order_interval, 1),
            "loadgen_cpu": round((b["me_cpu"] - a["me_cpu"]) / wall, 4),
            "loadgen_lag_p99_ms": _r(percentile(lags, 99)),
            "rejects": dict(self.rejects),
            "errors": dict(self.errors),
            "broken_frames": sum(x.broken_frames for x in self.bots),
        }
        # how busy each CPU was, and with work that was neither the server's nor ours
        # (this machine may be shared: such runs do not compare)
        clk = self.me.clk
        for name in sorted(b["cpus"]):
            if name in a["cpus"]:
                busy = (b["cpus"][name][0] - a["cpus"][name][0]) / clk / wall
                f["%s_busy" % name] = round(busy, 3)
        if f["cpu"] is not None and "cpu0_busy" in f:
            f["other_cpu"] = other_cpu(f, f["cpu"] + f["loadgen_cpu"])
        why = loadgen_why(f)
        f["loadgen_bound"] = bool(why)
        f["loadgen_why"] = why
        f["loadgen_bottleneck"] = bottleneck([(None, why)])
        if self.worker is not None:
            # what the parent merges: the raw samples, not their percentiles
            f["raw"] = {
                "worker": self.worker, "pid": os.getpid(), "wall": wall,
                "bytes": sum(bytes_), "ups": [round(u, 3) for u in ups],
                "latencies": [round(x, 3) for x in self.latencies],
                "lags": [round(x, 3) for x in lags],
                "rooms": sorted({x.room for x in live}),
                "msgs": b["msgs"] - a["msgs"], "orders": b["orders"] - a["orders"],
            }
        return f

    def close_all(self):
        ds = []
        for b in self.bots:
            if b.proto is not None and b.close_code is None:
                if b.orders_loop is not None and b.orders_loop.running:
                    b.orders_loop.stop()
                b.close()
                ds.append(b.closed)
        return _bounded(defer.DeferredList(ds, consumeErrors=True), 5.0, self.reactor)

    # -- live figures ----------------------------------------------------------------
    def _lag_probe(self):
        now = time.perf_counter()
        if self._lag_expected is not None:
            self._lag.append(max(0.0, (now - self._lag_expected) * 1000.0))
        self._lag_expected = now + 0.05

    def progress(self):
        now = time.perf_counter()
        live = [b for b in self.bots if b.joined]
        snap = (now, sum(b.bytes_in for b in live), sum(len_msgs(b) for b in live),
                self.orders_sent, sum(b.updates for b in live), len(self.latencies))
        if self._last is not None and not self.o.quiet:
            dt = snap[0] - self._last[0]
            conn = sum(1 for b in live if b.close_code is None)
            recent = self.latencies[self._last[5]:]
            line = ("" if self.worker is None else "w%d " % self.worker) + (
                    "[%5.1fs %-8s] conn %d/%d fail %d rooms %d | in %.0f msg/s %.1f kB/s "
                    "| out %.0f msg/s | lat p50 %s p99 %s ms | upd %.1f/s per client" % (
                        time.monotonic() - self.t0, self.phase, conn, self.o.clients,
                        self.failed, len({b.room for b in live}),
                        (snap[2] - self._last[2]) / dt, (snap[1] - self._last[1]) / dt / 1000,
                        (snap[3] - self._last[3]) / dt, _r(percentile(recent, 50)),
                        _r(percentile(recent, 99)),
                        (snap[4] - self._last[4]) / dt / max(1, conn)))
            self.err.write(line + ("\r" if self.err.isatty() and self.worker is None else "\n"))
            self.err.flush()
        self._last = snap



def other_cpu(f, ours):
    """CPU (cores, all CPUs) used by anything but the server and the load generator
    (``ours``: their cores) over the window, from the ``cpuN_busy`` figures."""
    return round(sum(v for k, v in f.items() if k.startswith("cpu") and k.endswith("_busy"))
                 - ours, 3)


def bottleneck(procs):
    """A sentence saying the load generator, not the server, was the bottleneck, and
    which process (``procs``: (label or None, reasons) per process); None if none was."""
    bound = [(label, why) for label, why in procs if why]
    if not bound:
        return None
    return "the load generator, not the server, is the bottleneck: " + "; ".join(
        ("%s: " % label if label else "") + ", ".join(why) for label, why in bound)


def _bounded(d, timeout, reactor):
    """``d``, or None after ``timeout`` seconds, whichever comes first."""
    out = defer.Deferred()
    call = reactor.callLater(timeout, lambda: out.called or out.callback(None))

    def done(r):
        if call.active():
            call.cancel()
        if not out.called:
            out.callback(r)
    d.addBoth(done)
    return out
