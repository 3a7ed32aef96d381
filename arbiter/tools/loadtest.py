"""``arbiter-loadtest``: N bots play the "cubes" workload against an Arbiter server.

    arbiter-loadtest --url ws://127.0.0.1:8080/ws -n 400 -r 8 --encoding msgpack \\
        --warmup 5 --duration 20 --server-pid 1234

Each bot is an :class:`protocols.client.ArbiterClient`: it joins room
``<prefix>-<k>`` (R bots a room), spawns 4 cubes, then every 100 ms (random
phase) orders one of its cubes (round-robin) to a random point of the plane.
Every bot decodes and applies every state message to its mirror, as a real
client must. Latency runs from sending an ``order`` to the first state message
whose ``ack`` covers it, decode and apply included.

A progress line goes to stderr once a second; at the end one JSON object goes to
stdout (see docs/LOADTEST.md for its fields). The run always ends by itself:
joins are bounded by ``--join-timeout``, then warm-up, window and grace, with a
hard stop after all of that.
"""

import argparse
import collections
import json
import os
import random
import re
import sys
import time

import msgpack

from twisted.internet import defer, task


from protocols.client import ArbiterClient, ArbiterClientProtocol, open_socket
from arbiter.state import apply_merge_patch
from protocols import wire
from protocols.framing import unmask, write_now

__all__ = ["Bot", "LoadTest", "main", "percentile", "ProcSampler"]

ENCODINGS = {"json": wire.JSON, "msgpack": wire.MSGPACK}


def percentile(values, q):
    """The q-th percentile (0-100) of ``values`` by nearest rank; None if empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class ProcSampler:
    """CPU seconds (user+sys) and VmRSS of a process, read from /proc."""

    def __init__(self, pid):
        self.pid = pid
        self.clk = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # after "pid (comm)": state is fields[0]; utime, stime are stat fields 14, 15
        return (int(fields[11]) + int(fields[12])) / self.clk

    def rss_mb(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None


def cpu_times():
    """{cpu name: (busy, total)} jiffies from /proc/stat, or {} where there is none."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3:4].isdigit():
                    name, *v = line.split()
                    v = [int(x) for x in v[:8]]
                    out[name] = (sum(v) - v[3] - v[4], sum(v))
    except OSError:
        pass
    return out


class Bot(ArbiterClient):
    """One simulated player: the client's mirror, plus order timing and counters."""

    def __init__(self, test, index, reactor):
        super().__init__(reactor, keep=8)
        self.test = test
        self.index = index
        self.cube_ids = []
        self.next_cube = 0
        self.pending = collections.deque()   # (seq, sent at) of unacknowledged orders
        self.window_updates = 0
        self.orders_loop = None
        self.msgs_in = 0
        self.skim = False        # --decode-every: count state messages, do not decode

    def skimmed(self, ack):
        self.msgs_in += 1
        self.updates += 1
        self.window_updates += 1
        self.ack = ack
        pending = self.pending
        while pending and pending[0][0] <= ack:
            pending.popleft()

    def send(self, msg):
        payload, binary = wire.encode(msg, self.encoding)
        self.proto.send_fast(payload, binary)

    def _on_message(self, msg):
        self.msgs_in += 1
        # the fast path of ArbiterClient._on_message for deltas, same effect
        if msg.get("t") == "delta":
            apply_merge_patch(self.state, msg["patch"])
            self.tick = msg["tick"]
            ack = self.ack = msg["ack"]
            self.updates += 1
            self.window_updates += 1
            if self.pending and self.pending[0][0] <= ack:
                self._acked(ack)
            if self._waiters:
                self._check_waiters()
            return
        super()._on_message(msg)
        t = msg.get("t")
        if t == "snapshot":
            self.window_updates += 1
            if self.pending and self.pending[0][0] <= self.ack:
                self._acked(self.ack)
        elif t == "reject":
            self.test.rejects[msg.get("code")] += 1
        elif t == "error":
            self.test.errors[msg.get("code")] += 1

    def _acked(self, ack):
        now = time.perf_counter()
        pending = self.pending
        record = self.test.latencies.append if self.test.measuring else None
        while pending and pending[0][0] <= ack:
            _, sent = pending.popleft()
            if record is not None:
                record((now - sent) * 1000.0)

    def send_order(self):
        if not self.cube_ids or self.close_code is not None:
            return
        cid = self.cube_ids[self.next_cube % len(self.cube_ids)]
        self.next_cube += 1
        half = self.test.half
        rnd = self.test.rng.uniform
        seq = self.order([cid], [round(rnd(-half, half), 2), round(rnd(-half, half), 2)])
        self.pending.append((seq, time.perf_counter()))
        self.test.orders_sent += 1


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
                raise RuntimeError("no bot joined (failed: %d)" % self.failed)
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
        try:
            yield _open(bot, self.o.url, self.encoding, fast=not self.o.autobahn_framing)
            extra = {"sync": self.o.sync} if self.o.sync != "state" else {}
            bot.hello(name="bot-%d" % i, room=room, **extra)
            yield bot.wait_for(lambda c: c.joined or c.errors, timeout=self.o.join_timeout)
            if not bot.joined:
                raise RuntimeError(bot.errors[-1]["code"])
            if bot.world:
                self.half = bot.world["size"] / 2.0
        except Exception:
            self.failed += 1
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


def len_msgs(bot):
    return bot.msgs_in


def _r(v):
    return None if v is None else round(v, 2)


_JSON_HEAD = re.compile(rb'\{"t":"(?:delta|snapshot)","tick":\d+,"ack":(\d+)')


def peek_ack(payload, is_binary):
    """The ``ack`` of a state message without decoding its patch (``--decode-every``
    probe only); None for any other message."""
    if not is_binary:
        m = _JSON_HEAD.match(payload)
        return int(m.group(1)) if m else None
    u = msgpack.Unpacker(raw=False)
    u.feed(payload)
    try:
        n = u.read_map_header()
        fields = {}
        for _ in range(min(n, 3)):
            k = u.unpack()
            if k in ("patch", "state"):
                break
            fields[k] = u.unpack()
    except Exception:
        return None
    if fields.get("t") in ("delta", "snapshot") and isinstance(fields.get("ack"), int):
        return fields["ack"]
    return None


def masked_frame(opcode, payload, _urandom=os.urandom):
    """A client's WebSocket frame (RFC 6455 5.2): FIN, ``opcode``, masked ``payload``."""
    n = len(payload)
    key = _urandom(4)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + unmask(payload, key)


class BotProtocol(ArbiterClientProtocol):
    """ArbiterClientProtocol with the framing of the busy paths done in-line.

    Once open, complete unfragmented text/binary frames from the server go
    straight to ``onMessage`` and pings are answered with a pong; inputs go out
    as one masked frame each. Anything else (close, fragments, extensions) hands
    the rest of the stream to Autobahn for good. This is only the framing (RFC
    6455); decoding and the state mirror are ArbiterClient's. It exists because
    Autobahn's per-frame Python work made the load generator, not the server,
    the bottleneck (docs/LOADTEST.md); ``--autobahn-framing`` turns it off.
    """

    fast = True

    def connectionMade(self):
        super().connectionMade()
        # Autobahn's client does not turn Nagle off here (it reads the option before
        # the factory sets it), so small inputs could wait for the previous ACK
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass

    def onOpen(self):
        self._rest = b""
        self.fast = self.fast and self._perMessageCompress is None
        super().onOpen()

    def dataReceived(self, data):
        if not self.fast or self.state != self.STATE_OPEN:
            return super().dataReceived(data)
        buf = self._rest + data if self._rest else data
        n = len(buf)
        i = 0
        while n - i >= 2:
            b0 = buf[i]
            b1 = buf[i + 1]
            op = b0 & 0x0F
            if b1 & 0x80 or b0 & 0x70 or not b0 & 0x80 or op not in (1, 2, 9):
                self.fast = False
                self._rest = b""
                return super().dataReceived(buf[i:])
            ln = b1
            h = 2
            if ln == 126:
                if n - i < 4:
                    break
                ln = int.from_bytes(buf[i + 2:i + 4], "big")
                h = 4
            elif ln == 127:
                if n - i < 10:
                    break
                ln = int.from_bytes(buf[i + 2:i + 10], "big")
                h = 10
            end = i + h + ln
            if end > n:
                break
            payload = buf[i + h:end]
            i = end
            if op == 9:
                write_now(self.transport, masked_frame(0xA, payload))
            else:
                self.onMessage(payload, op == 2)
                if not self.fast or self.state != self.STATE_OPEN:
                    self._rest = b""
                    if i < n:
                        super().dataReceived(buf[i:])
                    return
        self._rest = buf[i:] if i < n else b""

    def onMessage(self, payload, isBinary):
        client = self.client
        if client.skim:
            ack = peek_ack(payload, isBinary)
            if ack is not None:
                client.bytes_in += len(payload)
                client.skimmed(ack)
                return
        super().onMessage(payload, isBinary)

    def send_fast(self, payload, is_binary):
        if self.fast and self.state == self.STATE_OPEN:
            write_now(self.transport, masked_frame(2 if is_binary else 1, payload))
        else:
            self.sendMessage(payload, is_binary)


def _open(client, url, encoding, fast=True):
    """protocols.client.open_socket for an existing bot, speaking BotProtocol."""
    return open_socket(url, encoding, client=client, protocol=BotProtocol, fast=fast)


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


def parser():
    p = argparse.ArgumentParser(
        prog="arbiter-loadtest",
        description="N bots play the cubes workload against an Arbiter server "
                    "(docs/LOADTEST.md).")
    p.add_argument("--url", default="ws://127.0.0.1:8080/ws", help="the server's WebSocket URL")
    p.add_argument("-n", "--clients", type=int, default=50, help="bots (default 50)")
    p.add_argument("-r", "--room-size", type=int, default=8, help="bots per room (default 8)")
    p.add_argument("--encoding", choices=sorted(ENCODINGS), default="json")
    p.add_argument("--sync", choices=("state", "intent"), default="state",
                   help="the hello's sync mode (docs/EXTENSIONS.md)")
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
    p.add_argument("--progress-interval", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return p


def main(argv=None):
    opts = parser().parse_args(argv)
    if opts.clients < 1 or opts.room_size < 1:
        print("arbiter-loadtest: -n and -r must be at least 1", file=sys.stderr)
        return 2
    from twisted.internet import reactor
    test = LoadTest(opts, reactor)
    outcome = {}
    hard = opts.join_timeout * 2 + opts.warmup + opts.duration + opts.grace + 15

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
        print("arbiter-loadtest: %s" % err, file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(r) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
