#!/usr/bin/env python3
"""Cluster mode on this machine: figures for docs/SCALING.md ("Measured").

    python bench/cluster.py                         # the default set, about 7-8 minutes
    python bench/cluster.py --parts cost --cost-points 400 --passes 9
    python bench/cluster.py --summarize bench/results/cluster-*.jsonl

Three measurements, on the cubes workload of bench/run.py (docs/BENCHMARKS.md; world
plane 100, cube speed 5, rooms of R = 8, msgpack, the same server options):

``cluster``  Redis + 2 nodes, node n0 pinned to CPU 0 and n1 to CPU 1, then
             ``arbiter-loadtest`` with every bot sent to n0's URL: the bots of rooms
             placed on n1 are redirected (``moved``). On a 2-core machine the load
             generator and Redis are not pinned: they share the two cores with the
             nodes, so the absolute figures understate what a node with a core of
             its own gets. Per node: players, rooms, CPU (cores), RSS.
``redis``    (measured inside the other two) Redis commands from ``INFO stats``
             (total_commands_processed, which counts the commands run inside
             scripts too) and ``INFO commandstats`` (the breakdown), over the
             steady window (heartbeats only) and over the join phase (placements:
             per room placed, heartbeats taken out).
``cost``     one node in single mode (no --redis) against one node in cluster
             mode (a 1-node cluster with its Redis), the same N players in the
             same rooms, alternated run by run (single, cluster, single, ...), the
             node pinned to CPU 0, the load generator to CPU 1 (as bench/run.py)
             and Redis to CPU 1 too. The server CPU is the load generator's own
             figure (``--server-pid``), as in bench/run.py; the table also divides
             it by the load generator's CPU of the same run (cpu/lg), which cancels
             the drift of a shared machine's speed, as that moves both.

Every attempt is appended to bench/results/cluster-<stamp>.jsonl (gitignored, as
bench/run.py's files); at the end a table of medians (and min-max spreads) is printed.
A run during which other processes used more than --max-other cores is rejected and
tried again (as in bench/run.py).
"""

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from arbiter.tools.cluster import LocalRedis, free_port          # noqa: E402
from arbiter.tools.loadtest.stats import ProcSampler, cpu_times  # noqa: E402


def _load_bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


single = _load_bench_run()          # bench/run.py: wait_quiet, acceptable, med, fmt
SECRET = "bench-cluster-secret"


def world_args(r):
    """The server options of bench/run.py's run_arbiter (the cubes workload's world)."""
    return ["--world-size", "100", "--cube-speed", "5", "--max-players", str(r),
            "--max-cubes", "4", "--grace", "1"]


# -- Redis, over a plain socket (no client library needed) -----------------------------
def redis_cmd(port, *args, host="127.0.0.1"):
    """One command; its reply (bulk strings as str, arrays as lists)."""
    out = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(x).encode() for x in args))
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return _reply(f)


def _reply(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis: %s" % rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_reply(f) for _ in range(n)]
    raise RuntimeError("redis: unexpected reply %r" % line)


def redis_stats(port):
    """total_commands_processed, {command: calls} and Redis's CPU seconds, in one INFO
    (which itself counts as one command, taken out by the callers)."""
    text = redis_cmd(port, "INFO", "stats", "commandstats", "cpu")
    total, calls, usec, cpu = 0, {}, {}, 0.0
    for line in text.splitlines():
        if line.startswith("total_commands_processed:"):
            total = int(line.split(":", 1)[1])
        elif line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            fields = dict(x.split("=") for x in fields.split(","))
            calls[name] = int(fields["calls"])
            usec[name] = int(fields["usec"])
        elif line.startswith(("used_cpu_sys:", "used_cpu_user:")):
            cpu += float(line.split(":", 1)[1])
    return {"t": time.perf_counter(), "total": total, "calls": calls, "usec": usec, "cpu": cpu}


def redis_delta(a, b):
    """Commands between two samples, without the INFO that took sample ``a``. ``usec``:
    Redis's time in each command (a script's includes the commands it runs)."""
    calls = {k: v - a["calls"].get(k, 0) for k, v in b["calls"].items()}
    calls = {k: v for k, v in calls.items() if v and k != "info"}
    usec = {k: b["usec"][k] - a["usec"].get(k, 0) for k in calls}
    return {"dt": b["t"] - a["t"], "total": b["total"] - a["total"] - 1, "calls": calls,
            "usec": usec, "cpu": b["cpu"] - a["cpu"]}


def script_usec(d):
    """(script calls, microseconds Redis spent in them) in a delta."""
    return (d["calls"].get("eval", 0) + d["calls"].get("evalsha", 0),
            d["usec"].get("eval", 0) + d["usec"].get("evalsha", 0))


def heartbeat_share(d, nodes):
    """(heartbeats, commands they ran) in a delta, from the scripts of arbiter/app/cluster.py:
    a heartbeat is one EVAL running SET card, SADD, SET rooms, HSET count, SMEMBERS, a GET
    per node card, and a GET + SET per room it refreshes; it is the only SADD. A placement
    that claims a room runs one SET and one HINCRBY, so the SETs left are the refreshes."""
    c = d["calls"]
    beats = c.get("sadd", 0)
    refreshes = max(0, c.get("set", 0) - 2 * beats - c.get("hincrby", 0))
    return beats, beats * (6 + nodes) + 2 * refreshes


# -- processes ------------------------------------------------------------------------
class Node:
    def __init__(self, cpus, r, redis=None, node_id=None, extra=()):
        self.port = free_port()
        self.url = "ws://127.0.0.1:%d/ws" % self.port
        self.node_id = node_id
        cmd = ["taskset", "-c", cpus, sys.executable, "-m", "arbiter", "--port", str(self.port)]
        cmd += world_args(r) + list(extra)
        if redis is not None:
            cmd += ["--redis", redis.url, "--public-url", self.url, "--node-id", node_id]
        env = dict(os.environ, ARBITER_SECRET=SECRET, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=ROOT)
        self.sampler = ProcSampler(self.proc.pid)
        deadline = time.time() + 20
        ok = False
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("ARBITER_PORT="):
                ok = True
                break
        if not ok:
            self.stop()
            raise RuntimeError("node %s did not start" % (node_id or "single"))
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis(cpus):
    redis = LocalRedis().start()
    subprocess.run(["taskset", "-pc", cpus, str(redis.pid)], stdout=subprocess.DEVNULL,
                   check=False)
    return redis


def wait_registered(redis, ids, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        members = set(redis_cmd(redis.port, "SMEMBERS", "arbiter:nodes") or [])
        if set(ids) <= members and all(redis_cmd(redis.port, "EXISTS", "arbiter:node:" + i)
                                       for i in ids):
            time.sleep(1.2)   # one more heartbeat: every node has seen every other's card
            return
        time.sleep(0.1)
    raise RuntimeError("nodes %s did not register in Redis" % ids)


def run_loadtest(url, n, r, args, cpus, server_pid=None, on_window=None):
    """arbiter-loadtest pinned to ``cpus``; ``on_window(proc)`` is called (in this thread)
    once its progress line says the measured window has begun; returns (result, extra)."""
    lt = ["taskset", "-c", cpus, sys.executable, "-m", "arbiter.tools.loadtest",
          "--url", url, "-n", str(n), "-r", str(r), "--encoding", args.encoding,
          "--warmup", str(args.warmup), "--duration", str(args.duration)]
    if server_pid:
        lt += ["--server-pid", str(server_pid)]
    proc = subprocess.Popen(lt, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    window = threading.Event()
    tail = []

    def read_err():
        for line in proc.stderr:
            tail.append(line)
            del tail[:-20]
            if "window" in line[:20]:
                window.set()
    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    extra = None
    limit = 120 + args.warmup + args.duration + 30
    try:
        if on_window is not None:
            t0 = time.time()
            while not window.wait(0.2):
                if proc.poll() is not None or time.time() - t0 > limit:
                    break
            if window.is_set():
                extra = on_window(proc)
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("loadtest did not finish")
    except BaseException:          # interrupted: the load generator goes too
        proc.kill()
        proc.wait()
        raise
    reader.join(2)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError("loadtest failed: %s" % "".join(tail)[-500:])
    return json.loads(out.strip().splitlines()[-1]), extra


def measure_window(nodes, redis, args):
    """A callback for run_loadtest: samples the nodes, Redis, the load generator and the
    CPUs at the start of the window and ``duration - 1.5`` s later (the progress line is
    up to 1 s late, so the span lies inside the loadtest's window)."""
    def sample(proc):
        lg = ProcSampler(proc.pid)
        procs = [n.sampler for n in nodes] + [lg] + ([ProcSampler(redis.pid)] if redis else [])

        def snap():
            return {"t": time.perf_counter(), "cpu": [p.cpu_seconds() for p in procs],
                    "cpus": cpu_times(), "redis": redis_stats(redis.port) if redis else None}
        a = snap()
        time.sleep(max(1.0, args.duration - 1.5))
        b = snap()
        wall = b["t"] - a["t"]
        cpu = [None if x is None or y is None else (y - x) / wall
               for x, y in zip(a["cpu"], b["cpu"])]
        clk = os.sysconf("SC_CLK_TCK")
        busy = sum((b["cpus"][c][0] - a["cpus"][c][0]) / clk / wall
                   for c in b["cpus"] if c in a["cpus"])
        out = {"span_s": round(wall, 2), "node_cpu": [round(x, 4) for x in cpu[:len(nodes)]],
               "loadgen_cpu_span": round(cpu[len(nodes)], 4),
               "node_rss_mb": [round(n.sampler.rss_mb() or 0, 1) for n in nodes],
               "busy": round(busy, 3)}
        if redis:
            out["redis_cpu"] = round(cpu[-1], 4)
            out["redis_window"] = redis_delta(a["redis"], b["redis"])
            out["redis_at_window"] = a["redis"]
            out["cards"] = {}
            for n in nodes:
                raw = redis_cmd(redis.port, "GET", "arbiter:node:" + n.node_id)
                out["cards"][n.node_id] = json.loads(raw) if raw else None
        out["other"] = round(busy - sum(x for x in cpu if x is not None), 3)
        return out
    return sample


def redis_figures(row, before, nodes_n):
    """Steady-window and join-phase Redis figures of a run, into ``row``."""
    w = row.pop("redis_window")
    at_window = row.pop("redis_at_window")
    dt = w["dt"]
    rooms = row["rooms"]
    beats_w, _ = heartbeat_share(w, nodes_n)
    per_s = w["total"] / dt
    row["redis"] = {
        "cmds_per_s": round(per_s, 1),
        "cmds_per_s_per_node": round(per_s / nodes_n, 1),
        "cmds_per_s_per_node_per_100_rooms": round(per_s / nodes_n / (rooms / nodes_n) * 100, 1),
        # the calls the nodes make themselves (the rest run inside their scripts)
        "calls_per_s_per_node": round(sum(v for k, v in w["calls"].items()
                                          if k in ("eval", "evalsha", "publish"))
                                      / dt / nodes_n, 2),
        "cmds_per_heartbeat": round(w["total"] / max(1, beats_w), 1),
        "breakdown_per_s": {k: round(v / dt, 2) for k, v in sorted(w["calls"].items())},
        "heartbeats_per_s_per_node": round(beats_w / dt / nodes_n, 2),
        # Redis's time per heartbeat script (its commands included; no socket I/O)
        "usec_per_heartbeat": round(script_usec(w)[1] / max(1, beats_w), 1),
        "cpu": row.get("redis_cpu"),
    }
    j = redis_delta(before, at_window)
    beats, beat_cmds = heartbeat_share(j, nodes_n)
    scripts = j["calls"].get("eval", 0) + j["calls"].get("evalsha", 0) - beats
    cmds = j["total"] - beat_cmds
    # the join phase's heartbeats had fewer rooms than the window's: an upper bound taken out
    usec = script_usec(j)[1] - beats * row["redis"]["usec_per_heartbeat"]
    row["placement"] = {
        "rooms": rooms, "bots": row["connected"], "heartbeats": beats,
        "evals": scripts, "commands": cmds,
        "evals_per_room": round(scripts / max(1, rooms), 2),
        "cmds_per_room": round(cmds / max(1, rooms), 1),
        "evals_per_bot": round(scripts / max(1, row["connected"]), 2),
        "usec_per_placement_eval": round(usec / max(1, scripts), 1) if scripts else None,
        "breakdown": j["calls"],
    }
    # the window's commands that are not heartbeats: 0 when nothing but heartbeats ran
    row["redis"]["not_heartbeat_in_window"] = w["total"] - heartbeat_share(w, nodes_n)[1]


def tree_state():
    """The commit measured, and the tracked files that differ from it (others may be
    editing the work tree while this runs)."""
    def git(*a):
        p = subprocess.run(["git"] + list(a), cwd=ROOT, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no")
             .splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "dirty": dirty}


def finish(row, args):
    """Acceptance as in bench/run.py: it ran, nothing else used more than --max-other."""
    other = row.get("other")
    row["accepted"] = single.acceptable(row, other, args.max_other) \
        and not row.get("loadgen_bound") and not row.get("failed") and not row.get("dropped")
    return row


# -- the three measurements --------------------------------------------------------------
def run_cluster(n, r, args, nodes_n=2):
    """Redis + ``nodes_n`` nodes (node i on CPU i), loadtest and Redis unpinned, every bot
    to node 0. One row, with per-node figures."""
    redis = start_redis("0,1")
    nodes = []
    try:
        for i in range(nodes_n):
            nodes.append(Node(str(i % 2), r, redis, "n%d" % i))
        wait_registered(redis, [x.node_id for x in nodes])
        for x in nodes:
            x.rss_idle = x.sampler.rss_mb()
        before = redis_stats(redis.port)
        out, win = run_loadtest(nodes[0].url, n, r, args, "0,1", nodes[0].proc.pid,
                                measure_window(nodes, redis, args))
        if win is None:
            raise RuntimeError("the window was not seen")
        row = dict(out, **win)
        row["lt_other_cpu"] = row.pop("other_cpu", None)   # the loadtest's, counts n1 + Redis
        per = []
        for i, x in enumerate(nodes):
            card = win["cards"].get(x.node_id) or {}
            per.append({"id": x.node_id, "url": x.url, "cpu": win["node_cpu"][i],
                        "rss_mb": win["node_rss_mb"][i], "rss_idle_mb": round(x.rss_idle, 1),
                        "players": card.get("players"), "rooms": card.get("rooms"),
                        "bots": out.get("nodes", {}).get(x.url, 0)})
        row["per_node"] = per
        del row["cards"]
        rooms = [p["rooms"] or 0 for p in per]
        row["rooms_max"], row["rooms_min"] = max(rooms), min(rooms)
        row["rooms_max_over_min"] = round(max(rooms) / min(rooms), 3) if min(rooms) else None
        redis_figures(row, before, nodes_n)
        row["cpu_nodes_total"] = round(sum(p["cpu"] for p in per), 4)
        return row
    finally:
        for x in nodes:
            x.stop()
        redis.close()


def run_cost(n, r, mode, args):
    """One node pinned to CPU 0 (single mode, or a 1-node cluster with Redis on CPU 1),
    the loadtest on CPU 1."""
    redis = start_redis("1") if mode == "cluster" else None
    node = None
    try:
        node = Node("0", r, redis, "n0" if redis else None)
        if redis:
            wait_registered(redis, ["n0"])
        else:
            time.sleep(0.5)
        before = redis_stats(redis.port) if redis else None
        out, win = run_loadtest(node.url, n, r, args, "1", node.proc.pid,
                                measure_window([node], redis, args))
        if win is None:
            raise RuntimeError("the window was not seen")
        row = dict(out, **win)
        row.pop("cards", None)
        row["lt_other_cpu"] = row.pop("other_cpu", None)
        if redis:
            redis_figures(row, before, 1)
        return row
    finally:
        if node is not None:
            node.stop()
        if redis is not None:
            redis.close()


# -- tables ------------------------------------------------------------------------------
def spread(rows, get, f="%.3f"):
    """median [min–max] of ``get(row)`` over the rows that have it."""
    def value(x):
        try:
            return get(x)
        except (KeyError, TypeError, IndexError):
            return None
    vals = [v for v in (value(x) for x in rows) if isinstance(v, (int, float))]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f % vals[0]
    return (f + " [" + f + "–" + f + "]") % (statistics.median(vals), min(vals), max(vals))


def node_get(i, key):
    return lambda x: x["per_node"][i][key] if len(x.get("per_node", [])) > i else None


def tables(rows):
    ok = [x for x in rows if x.get("accepted")]
    out = []
    cl = [x for x in ok if x["part"] == "cluster"]
    if cl:
        out.append("2-node cluster, every bot sent to n0 (n0 on CPU 0, n1 on CPU 1; the load "
                   "generator and Redis share both cores): median [min–max] of accepted runs")
        head = ["N/R", "runs", "n0 cpu", "n1 cpu", "n0 RSS MB", "n1 RSS MB", "n0 players",
                "n1 players", "rooms n0/n1", "max/min", "p50 ms", "p99 ms", "upd/s mean",
                "upd/s min", "kB/cl/s", "redirects", "loadgen cpu"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for pt in dict.fromkeys(x["point"] for x in cl):
            rs = [x for x in cl if x["point"] == pt]
            out.append("| " + " | ".join([
                pt, str(len(rs)), spread(rs, node_get(0, "cpu")), spread(rs, node_get(1, "cpu")),
                spread(rs, node_get(0, "rss_mb"), "%.0f"), spread(rs, node_get(1, "rss_mb"), "%.0f"),
                spread(rs, node_get(0, "players"), "%.0f"), spread(rs, node_get(1, "players"), "%.0f"),
                "/".join("%s" % single.fmt(single.med(
                    [{"v": x["per_node"][i]["rooms"]} for x in rs], "v"), "%.0f")
                    for i in range(2)),
                spread(rs, lambda x: x.get("rooms_max_over_min"), "%.2f"),
                spread(rs, lambda x: x.get("lat_p50_ms"), "%.1f"),
                spread(rs, lambda x: x.get("lat_p99_ms"), "%.1f"),
                spread(rs, lambda x: x.get("updates_per_s"), "%.2f"),
                spread(rs, lambda x: x.get("updates_per_s_min"), "%.2f"),
                spread(rs, lambda x: x.get("kb_per_client_s"), "%.1f"),
                spread(rs, lambda x: x.get("redirects"), "%.0f"),
                spread(rs, lambda x: x.get("loadgen_cpu"), "%.2f")]) + " |")
        out.append("")
    red = [x for x in ok if "redis" in x]
    if red:
        out.append("Redis, steady window (heartbeats) and join phase (placements): median "
                   "[min–max]; commands include those run inside scripts")
        head = ["setup", "N/R", "runs", "rooms/node", "cmds/s/node", "per node per 100 rooms",
                "heartbeats/s/node", "cmds/heartbeat", "µs/heartbeat", "node calls/s/node",
                "Redis cpu", "placement evals/room", "placement cmds/room",
                "placement evals/bot", "µs/placement eval"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for setup in dict.fromkeys(x["setup"] for x in red):
            for pt in dict.fromkeys(x["point"] for x in red if x["setup"] == setup):
                rs = [x for x in red if x["point"] == pt and x["setup"] == setup]
                out.append("| " + " | ".join([
                    setup, pt, str(len(rs)),
                    spread(rs, lambda x: x["rooms"] / x["nodes_n"], "%.1f"),
                    spread(rs, lambda x: x["redis"]["cmds_per_s_per_node"], "%.1f"),
                    spread(rs, lambda x: x["redis"]["cmds_per_s_per_node_per_100_rooms"], "%.0f"),
                    spread(rs, lambda x: x["redis"]["heartbeats_per_s_per_node"], "%.2f"),
                    spread(rs, lambda x: x["redis"]["cmds_per_heartbeat"], "%.1f"),
                    spread(rs, lambda x: x["redis"]["usec_per_heartbeat"], "%.0f"),
                    spread(rs, lambda x: x["redis"]["calls_per_s_per_node"], "%.2f"),
                    spread(rs, lambda x: x["redis"]["cpu"], "%.4f"),
                    spread(rs, lambda x: x["placement"]["evals_per_room"], "%.2f"),
                    spread(rs, lambda x: x["placement"]["cmds_per_room"], "%.1f"),
                    spread(rs, lambda x: x["placement"]["evals_per_bot"], "%.2f"),
                    spread(rs, lambda x: x["placement"]["usec_per_placement_eval"], "%.0f")])
                    + " |")
        out.append("")
    cost = [x for x in ok if x["part"] == "cost"]
    if cost:
        out.append("The cost of cluster mode on one node (CPU 0; loadtest and Redis on CPU 1), "
                   "alternated: median [min–max] of accepted runs. cpu/lg = the node's CPU "
                   "divided by the load generator's in the same run (the same bots, so it "
                   "cancels the machine's drift in speed, which moves both)")
        head = ["N/R", "mode", "runs", "cpu", "cpu/lg", "RSS MB", "p50 ms", "p99 ms",
                "upd/s min", "kB/cl/s", "cluster/single: cpu medians; cpu of each pair; "
                "cpu/lg medians"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def per_lg(x):
            return x["cpu"] / x["loadgen_cpu"]
        for pt in dict.fromkeys(x["point"] for x in cost):
            pairs = {}
            for x in cost:
                if x["point"] == pt and x.get("cpu"):
                    # a pass of one invocation: its single run and its cluster run
                    key = (x.get("run_id") or x.get("tag"), x["pass_"])
                    pairs.setdefault(key, {}).setdefault(x["mode"], x["cpu"])
            ratios = [p["cluster"] / p["single"] for p in pairs.values()
                      if "single" in p and "cluster" in p]
            meds, norm = {}, {}
            for mode in ("single", "cluster"):
                rs = [x for x in cost if x["point"] == pt and x["mode"] == mode]
                meds[mode] = single.med(rs, "cpu")
                vals = [per_lg(x) for x in rs if x.get("cpu") and x.get("loadgen_cpu")]
                norm[mode] = statistics.median(vals) if vals else None
                cells = [pt, mode, str(len(rs)), spread(rs, lambda x: x.get("cpu")),
                         spread(rs, per_lg),
                         spread(rs, lambda x: x.get("rss_mb"), "%.0f"),
                         spread(rs, lambda x: x.get("lat_p50_ms"), "%.1f"),
                         spread(rs, lambda x: x.get("lat_p99_ms"), "%.1f"),
                         spread(rs, lambda x: x.get("updates_per_s_min"), "%.2f"),
                         spread(rs, lambda x: x.get("kb_per_client_s"), "%.1f"), ""]
                if mode == "cluster" and meds["single"] and norm["single"]:
                    cells[-1] = "%.3f; %s (%d pairs); %.3f" % (
                        meds["cluster"] / meds["single"],
                        spread([{"v": v} for v in ratios], lambda x: x["v"], "%.3f"),
                        len(ratios), norm["cluster"] / norm["single"])
                out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def summarize(paths, max_other):
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    for x in rows:
        if "error" not in x:
            finish(x, argparse.Namespace(max_other=max_other))
    return tables(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["cluster", "cost"],
                   choices=("cluster", "cost"),
                   help="what to run (the Redis figures come with both)")
    p.add_argument("--points", nargs="+", type=int, default=[200, 400], metavar="N",
                   help="players for the 2-node cluster (default 200 400)")
    p.add_argument("--cost-points", nargs="+", type=int, default=[200], metavar="N",
                   help="players for single vs cluster mode (default 200)")
    p.add_argument("-r", "--room-size", type=int, default=8)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--encoding", default="msgpack", choices=("json", "msgpack"))
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--quiet-max", type=float, default=20,
                   help="max seconds to wait for idle CPUs before each run")
    p.add_argument("--max-other", type=float, default=0.15,
                   help="reject (and retry) a run during which other processes used more "
                        "CPU than this (cores)")
    p.add_argument("--tries", type=int, default=2, help="attempts per run (default 2)")
    p.add_argument("--out", default=None,
                   help="results file (default bench/results/cluster-<stamp>.jsonl)")
    p.add_argument("--tag", default="", help="free text stored with every row")
    p.add_argument("--summarize", nargs="+", metavar="FILE",
                   help="only print the tables of these results files")
    args = p.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize, args.max_other))
        return 0
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = args.out or os.path.join(HERE, "results",
                                   "cluster-%s.jsonl" % time.strftime("%Y%m%d-%H%M%S"))
    print("results -> %s" % out, file=sys.stderr)
    print("note: on this %d-core machine the load generator (and Redis) run on the same cores "
          "as the nodes; absolute figures understate what a real deployment gets"
          % (os.cpu_count() or 0), file=sys.stderr)
    r = args.room_size
    run_id = "%s-%d" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid())   # pairs are per run
    plan = []
    for pas in range(1, args.passes + 1):
        if "cluster" in args.parts:
            plan += [("cluster", n, None, pas) for n in args.points]
        if "cost" in args.parts:
            for n in args.cost_points:
                plan += [("cost", n, "single", pas), ("cost", n, "cluster", pas)]
    rows = []
    for part, n, mode, pas in plan:
        for attempt in range(1, args.tries + 1):
            waited = single.wait_quiet(args.quiet_max)
            tree = tree_state()
            try:
                if part == "cluster":
                    row = run_cluster(n, r, args)
                    row.update(setup="2 nodes", nodes_n=2)
                else:
                    row = run_cost(n, r, mode, args)
                    row.update(setup="1 node" if mode == "cluster" else "single", mode=mode,
                               nodes_n=1 if mode == "cluster" else 0)
            except Exception as e:
                row = {"error": str(e)}
            row.update(part=part, point="%d:%d" % (n, r), pass_=pas, attempt=attempt,
                       tag=args.tag, at=time.strftime("%H:%M:%S"), quiet_wait_s=waited,
                       encoding=args.encoding, warmup=args.warmup, duration=args.duration,
                       run_id=run_id, **tree)
            if mode:
                row["mode"] = mode
            finish(row, args)
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            if "error" in row:
                desc = row["error"]
            elif part == "cluster":
                desc = "nodes cpu %s rooms %s p50 %s p99 %s upd min %s redirects %s redis %s/s" % (
                    [q["cpu"] for q in row["per_node"]], [q["rooms"] for q in row["per_node"]],
                    row.get("lat_p50_ms"), row.get("lat_p99_ms"), row.get("updates_per_s_min"),
                    row.get("redirects"), row["redis"]["cmds_per_s"])
            else:
                desc = "cpu %s p50 %s p99 %s upd min %s%s" % (
                    row.get("cpu"), row.get("lat_p50_ms"), row.get("lat_p99_ms"),
                    row.get("updates_per_s_min"),
                    " redis %s/s" % row["redis"]["cmds_per_s"] if "redis" in row else "")
            print("%s %s%s pass %d %s %s %s try %d other=%s accepted=%s: %s" % (
                row["at"], tree["commit"], "+dirty" if tree["dirty"] else "", pas, part,
                mode or "", row["point"], attempt, row.get("other"), row["accepted"], desc),
                file=sys.stderr, flush=True)
            if row["accepted"] or attempt == args.tries:
                rows.append(row)
                break
    print(tables(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
