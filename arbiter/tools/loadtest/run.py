"""LoadTest: one bounded run (join, spawn, warm up, measure, report)."""

import collections
import os
import random
import sys
import time

from twisted.internet import defer, task

from protocols import wire
from protocols.client import join
from arbiter.tools.loadtest.bot import Bot
from arbiter.tools.loadtest.fast import _open
from arbiter.tools.loadtest.stats import ProcSampler, _r, cpu_times, len_msgs, percentile

__all__ = ["ENCODINGS", "LoadTest"]

ENCODINGS = {"json": wire.JSON, "msgpack": wire.MSGPACK}


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

    # -- phases -------------------------------------------------------------------
    @defer.inlineCallbacks
    def run(self):
        o = self.o
        result = {"N": o.clients, "R": o.room_size, "encoding": o.encoding, "url": o.url,
                  "sync": o.sync, "decode_every": o.decode_every}
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
            self.phase = "warm-up"
            for b in live:
                loop = b.orders_loop = task.LoopingCall(b.send_order)
                loop.clock = self.reactor
                self.reactor.callLater(self.rng.uniform(0, o.order_interval),
                                       loop.start, o.order_interval, True)
            yield task.deferLater(self.reactor, o.warmup, lambda: None)
            self.phase = "window"
            start = self._sample(live)
            self.measuring = True
            yield task.deferLater(self.reactor, o.duration, lambda: None)
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

    def join_all(self):
        sem = defer.DeferredSemaphore(self.o.concurrency)
        ds = []
        for i in range(self.o.clients):
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
        }
        # how busy each CPU was, and with work that was neither the server's nor ours
        # (this machine may be shared: such runs do not compare)
        clk = self.me.clk
        for name in sorted(b["cpus"]):
            if name in a["cpus"]:
                busy = (b["cpus"][name][0] - a["cpus"][name][0]) / clk / wall
                f["%s_busy" % name] = round(busy, 3)
        if "cpu0_busy" in f and "cpu1_busy" in f and f["cpu"] is not None:
            f["other_cpu"] = round(f["cpu0_busy"] + f["cpu1_busy"] - f["cpu"] - f["loadgen_cpu"], 3)
        f["loadgen_bound"] = bool(f["loadgen_cpu"] >= 0.9 or (f["loadgen_lag_p99_ms"] or 0) > 50
                                  or f["orders_per_s"] < 0.95 * f["orders_target_per_s"])
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
            line = ("[%5.1fs %-8s] conn %d/%d fail %d rooms %d | in %.0f msg/s %.1f kB/s "
                    "| out %.0f msg/s | lat p50 %s p99 %s ms | upd %.1f/s per client" % (
                        time.monotonic() - self.t0, self.phase, conn, self.o.clients,
                        self.failed, len({b.room for b in live}),
                        (snap[2] - self._last[2]) / dt, (snap[1] - self._last[1]) / dt / 1000,
                        (snap[3] - self._last[3]) / dt, _r(percentile(recent, 50)),
                        _r(percentile(recent, 99)),
                        (snap[4] - self._last[4]) / dt / max(1, conn)))
            self.err.write(line + ("\r" if self.err.isatty() else "\n"))
            self.err.flush()
        self._last = snap



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
