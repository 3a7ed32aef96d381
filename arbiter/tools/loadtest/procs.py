"""``--procs K``: the bots in K worker processes, one start, one merged result.

One Python process decodes a few hundred thousand cube updates a second; a room of 100
in ``state`` sync is 800,000. With ``--procs K`` this process (the parent) starts K
copies of ``arbiter-loadtest`` (``--worker k``), each with about N/K of the bots
(bot i is still bot i: same name, same room i // R), pinned to one CPU of ``--cpus`` if
given. Each worker joins and spawns, says ``{"ready": k}`` on its stdout and waits; once
every worker is ready (or has ended) the parent sends them all one start time (the
machine's monotonic clock, the same in every process), so the warm-ups and windows
coincide. The parent samples the server and the CPUs over that window itself, then
merges what the workers report: sums of bytes, messages and orders, the raw latency
samples (for p50/p99 of all of them), every bot's updates per second (mean and min), and
each process's own load generator figures (``loadgen_procs``), with the verdict of
``loadgen_bound`` per process.
"""

import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time

from arbiter.tools.loadtest.run import bottleneck, other_cpu
from arbiter.tools.loadtest.stats import ProcSampler, _r, cpu_times, percentile

__all__ = ["cpu_list", "merge", "run_parent", "split"]


def cpu_list(text):
    """CPU numbers from ``taskset``-style text: ``"1,2"``, ``"1-3"``, ``"0,2-3"``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    if not out or any(c < 0 for c in out):
        raise ValueError("no CPU numbers in %r" % text)
    return out


def split(n, k):
    """(first bot, bots) of each of ``k`` workers: ``n`` bots in contiguous shares that
    differ by at most one."""
    shares = []
    first = 0
    for w in range(k):
        size = n // k + (1 if w < n % k else 0)
        shares.append((first, size))
        first += size
    return shares


def worker_argv(o, k, first, n, cpu):
    argv = [sys.executable, "-m", "arbiter.tools.loadtest", "--worker", str(k),
            "--first-bot", str(first), "-n", str(n), "--url", o.url,
            "-r", str(o.room_size), "--encoding", o.encoding, "--sync", o.sync,
            "--room-prefix", o.room_prefix, "--cubes", str(o.cubes),
            "--order-interval", repr(o.order_interval), "--warmup", repr(o.warmup),
            "--duration", repr(o.duration), "--grace", repr(o.grace),
            "--join-timeout", repr(o.join_timeout), "--concurrency", str(o.concurrency),
            "--decode-every", str(o.decode_every),
            "--progress-interval", repr(o.progress_interval)]
    if o.seed is not None:
        argv += ["--seed", str(o.seed + k)]
    if o.autobahn_framing:
        argv.append("--autobahn-framing")
    if o.quiet:
        argv.append("-q")
    if cpu is not None:
        argv += ["--cpus", str(cpu)]
    return argv


class Worker:
    def __init__(self, k, first, n, cpu, argv, lines):
        self.k, self.first, self.n, self.cpu = k, first, n, cpu
        self.ready = None
        self.result = None
        self.ended = False
        # the workers import the very package this process runs
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]]
                                                      if env.get("PYTHONPATH") else []))
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=root)
        self.pid = self.proc.pid

        def read():
            for line in self.proc.stdout:
                lines.put((self, line))
            lines.put((self, None))
        threading.Thread(target=read, name="worker-%d" % k, daemon=True).start()

    def take(self, line):
        if line is None:
            self.ended = True
            return
        try:
            obj = json.loads(line)
        except ValueError:
            return
        if isinstance(obj, dict) and "ready" in obj:
            self.ready = obj
        elif isinstance(obj, dict):
            self.result = obj

    def start(self, t0):
        try:
            self.proc.stdin.write(json.dumps({"start": t0}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _wait(lines, workers, until, deadline):
    """Take worker lines until ``until()`` holds or the deadline (monotonic) passes."""
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            w, line = lines.get(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        w.take(line)
    return True


def _sleep_until(t):
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 1.0))


def run_parent(o, err=sys.stderr):
    """One run with ``o.procs`` workers; the merged result (a dict), or raises."""
    cpus = cpu_list(o.cpus) if o.cpus else None
    server = ProcSampler(o.server_pid) if o.server_pid else None
    head = {"N": o.clients, "R": o.room_size, "encoding": o.encoding, "url": o.url,
            "sync": o.sync, "decode_every": o.decode_every, "procs": o.procs,
            "loadgen_cpus": cpus}
    if server:
        head["rss_idle_mb"] = server.rss_mb()
    lines = queue.Queue()
    workers = []
    t_start = time.monotonic()
    try:
        for k, (first, n) in enumerate(split(o.clients, o.procs)):
            cpu = cpus[k % len(cpus)] if cpus else None
            workers.append(Worker(k, first, n, cpu, worker_argv(o, k, first, n, cpu), lines))
        # joins and spawns are bounded by --join-timeout each, in every worker at once
        _wait(lines, workers, lambda: all(w.ready or w.ended for w in workers),
              t_start + 2 * o.join_timeout + 20)
        ready = [w for w in workers if w.ready]
        if not ready:
            raise RuntimeError("no bot joined (no worker of %d got ready)" % len(workers))
        t0 = time.monotonic() + 0.3
        for w in ready:
            w.start(t0)
        me = ProcSampler(os.getpid())
        _sleep_until(t0 + o.warmup)
        a = _sample(server, me)
        _sleep_until(t0 + o.warmup + o.duration)
        b = _sample(server, me)
        if server:
            head["rss_mb"] = server.rss_mb()
        _wait(lines, workers, lambda: all(w.ended for w in ready),
              t0 + o.warmup + o.duration + o.grace + 30)
        for w in workers:
            if w.proc.poll() is None:
                try:
                    w.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        for w in workers:
            w.stop()
    return merge(head, workers, a, b, o)


def _sample(server, me):
    return {"t": time.perf_counter(), "server_cpu": server.cpu_seconds() if server else None,
            "parent_cpu": me.cpu_seconds(), "cpus": cpu_times()}


def merge(head, workers, a, b, o):
    """The result of a --procs run from the workers' results (their ``raw`` samples)
    and the parent's samples ``a`` and ``b`` of the window."""
    wall = b["t"] - a["t"]
    f = dict(head)
    done = [w for w in workers if w.result is not None and "raw" in w.result]
    per, latencies, ups = [], [], []
    rooms, nodes = set(), collections.Counter()
    rejects, errors = collections.Counter(), collections.Counter()
    sums = collections.Counter()
    for w in workers:
        r = w.result
        if r is None or "raw" not in r:
            per.append({"proc": w.k, "cpu": w.cpu, "N": w.n, "pid": w.pid,
                        "error": "ended without a result (exit status %s%s)" % (
                            w.proc.returncode, "" if w.ready else ", never ready")})
            sums["failed"] += w.n
            continue
        raw = r["raw"]
        latencies.extend(raw["latencies"])
        ups.extend(raw["ups"])
        rooms.update(raw["rooms"])
        nodes.update(r.get("nodes", {}))
        rejects.update(r.get("rejects", {}))
        errors.update(r.get("errors", {}))
        for k in ("connected", "failed", "dropped", "redirects", "broken_frames"):
            sums[k] += r.get(k, 0)
        sums["bytes_s"] += raw["bytes"] / raw["wall"]
        sums["msgs_s"] += raw["msgs"] / raw["wall"]
        sums["orders_s"] += raw["orders"] / raw["wall"]
        sums["target_s"] += r["orders_target_per_s"]
        sums["loadgen_cpu"] += r["loadgen_cpu"]
        per.append({"proc": w.k, "cpu": w.cpu, "N": w.n, "pid": w.pid,
                    "connected": r["connected"], "failed": r["failed"],
                    "dropped": r["dropped"], "window_s": r["window_s"], "acks": r["acks"],
                    "loadgen_cpu": r["loadgen_cpu"],
                    "loadgen_lag_p99_ms": r["loadgen_lag_p99_ms"],
                    "orders_per_s": r["orders_per_s"],
                    "orders_target_per_s": r["orders_target_per_s"],
                    "updates_per_s": r["updates_per_s"],
                    "updates_per_s_min": r["updates_per_s_min"],
                    "lat_p99_ms": r["lat_p99_ms"],
                    "loadgen_bound": r["loadgen_bound"], "loadgen_why": r["loadgen_why"]})
    if not done:
        raise RuntimeError("no worker reported a result")
    n = len(ups)
    f.update({
        "connected": sums["connected"], "failed": sums["failed"], "dropped": sums["dropped"],
        "rooms": len(rooms), "redirects": sums["redirects"], "nodes": dict(nodes),
        "window_s": round(wall, 3),
        "cpu": None if a["server_cpu"] is None or b["server_cpu"] is None else
        round((b["server_cpu"] - a["server_cpu"]) / wall, 4),
        "bytes_per_client_s": round(sums["bytes_s"] / n, 1),
        "kb_per_client_s": round(sums["bytes_s"] / n / 1000.0, 2),
        "lat_p50_ms": _r(percentile(latencies, 50)),
        "lat_p99_ms": _r(percentile(latencies, 99)),
        "lat_max_ms": _r(max(latencies) if latencies else None),
        "acks": len(latencies),
        "updates_per_s": round(sum(ups) / n, 2),
        "updates_per_s_min": round(min(ups), 2),
        "msgs_in_per_s": round(sums["msgs_s"], 1),
        "orders_per_s": round(sums["orders_s"], 1),
        "orders_target_per_s": round(sums["target_s"], 1),
        "loadgen_cpu": round(sums["loadgen_cpu"], 4),
        "loadgen_lag_p99_ms": max((p["loadgen_lag_p99_ms"] for p in per
                                   if p.get("loadgen_lag_p99_ms") is not None), default=None),
        "rejects": dict(rejects),
        "errors": dict(errors),
        "broken_frames": sums["broken_frames"],
    })
    clk = os.sysconf("SC_CLK_TCK")
    for name in sorted(b["cpus"]):
        if name in a["cpus"]:
            f["%s_busy" % name] = round((b["cpus"][name][0] - a["cpus"][name][0]) / clk / wall, 3)
    if f["cpu"] is not None and "cpu0_busy" in f:
        f["other_cpu"] = other_cpu(f, f["cpu"] + f["loadgen_cpu"])
    labelled = [("process %d%s" % (p["proc"], "" if p["cpu"] is None else " (CPU %d)" % p["cpu"]),
                 p.get("loadgen_why") or []) for p in per]
    f["loadgen_bound"] = any(why for _, why in labelled)
    f["loadgen_why"] = ["%s: %s" % (label, w) for label, why in labelled for w in why]
    f["loadgen_bottleneck"] = bottleneck(labelled)
    f["loadgen_procs"] = per
    return f
