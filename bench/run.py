#!/usr/bin/env python3
"""The "cubes" benchmark (docs/BENCHMARKS.md) against Arbiter and Colyseus.

Arbiter alone, or alternately with the Colyseus harness of bench/colyseus,
point by point.

    python bench/run.py                              # the matrix, one pass, msgpack
    python bench/run.py --passes 3 --colyseus        # alternate with bench/colyseus
    python bench/run.py --points 400:8 100:100 --encoding json
    python bench/run.py --points 100:100 --sync compact --loadgen-procs 3 --loadgen-cpus 1-3

For each point: the server (``python -m arbiter`` with the workload's world:
plane 100 x 100, cube speed 5, rooms of R) starts pinned to CPU 0, then
``arbiter-loadtest`` runs pinned to CPU 1 (``--loadgen-cpus``; in
``--loadgen-procs`` worker processes, one per CPU of that list round-robin) and
samples the server's CPU and RSS from /proc over its window. With ``--colyseus``
(the harness in bench/colyseus, after ``npm ci --prefix bench/colyseus``; or
``--colyseus DIR`` for another copy of it), ``run.sh N R`` of the harness runs
right after each Arbiter point. Every run is appended to bench/results/<stamp>.jsonl; at the end a
table of medians per point (and arbiter/Colyseus ratios) is printed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COLYSEUS = os.path.join(HERE, "colyseus")     # the harness: bench/colyseus/run.sh N R
DEFAULT_POINTS = ["50:8", "100:8", "200:8", "400:8", "50:50", "100:100"]
COLUMNS = [("cpu", "cpu", "%.3f"), ("rss_mb", "RSS MB", "%.0f"),
           ("kb_per_client_s", "down kB/cl/s", "%.1f"),
           ("lat_p50_ms", "p50 ms", "%.1f"), ("lat_p99_ms", "p99 ms", "%.1f"),
           ("updates_per_s", "upd/s", "%.2f"), ("updates_per_s_min", "min", "%.2f")]


def cpu_busy(interval=1.0):
    """Busy fraction of CPU 0 and CPU 1 over ``interval`` seconds."""
    def read():
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(("cpu0 ", "cpu1 ")):
                    v = [int(x) for x in line.split()[1:9]]
                    out[line[:4]] = (sum(v), v[3] + v[4])
        return out
    a = read()
    time.sleep(interval)
    b = read()
    return [1 - (b[c][1] - a[c][1]) / max(1, b[c][0] - a[c][0]) for c in ("cpu0", "cpu1")]


def wait_quiet(max_s):
    """Wait (bounded) until both CPUs were under 5% busy for 3 s; seconds waited."""
    t0 = time.time()
    quiet = 0
    while time.time() - t0 < max_s and quiet < 3:
        quiet = quiet + 1 if max(cpu_busy()) <= 0.05 else 0
    return round(time.time() - t0, 1)


def run_arbiter(n, r, args):
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "arbiter", "--port", "0",
           "--world-size", "100", "--cube-speed", "5", "--max-players", str(r),
           "--max-cubes", "4", "--grace", "1"] + args.server_arg
    env = dict(os.environ)
    if args.server_pythonpath:      # e.g. an older tree, for before/after comparisons
        env["PYTHONPATH"] = args.server_pythonpath
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=env, text=True, cwd=args.server_pythonpath or ROOT)
    try:
        port = None
        deadline = time.time() + 20
        while time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            if line.startswith("ARBITER_PORT="):
                port = int(line.split("=", 1)[1])
                break
        if port is None:
            raise RuntimeError("server did not start")
        time.sleep(0.5)
        lt = ["taskset", "-c", args.loadgen_cpus, sys.executable, "-m",
              "arbiter.tools.loadtest",
              "--url", "ws://127.0.0.1:%d/ws" % port, "-n", str(n), "-r", str(r),
              "--encoding", args.encoding, "--warmup", str(args.warmup),
              "--duration", str(args.duration), "--server-pid", str(server.pid), "-q"]
        if args.sync != "state":
            lt += ["--sync", args.sync]
        if args.decode_every != 1:
            lt += ["--decode-every", str(args.decode_every)]
        if args.loadgen_procs > 1:
            lt += ["--procs", str(args.loadgen_procs), "--cpus", args.loadgen_cpus]
        limit = 60 * 2 + args.warmup + args.duration + 30
        p = subprocess.run(lt, capture_output=True, text=True, timeout=limit, cwd=ROOT)
        if p.returncode != 0 or not p.stdout.strip():
            raise RuntimeError("loadtest failed: %s" % p.stderr[-500:])
        out = json.loads(p.stdout.strip().splitlines()[-1])
        out["server"] = "arbiter"
        if out.get("rss_mb") and out.get("rss_idle_mb"):
            out["kb_rss_per_client"] = round(
                (out["rss_mb"] - out["rss_idle_mb"]) * 1024 / max(1, out["connected"]), 1)
        return out
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_colyseus(n, r, args):
    env = dict(os.environ, QUIET_MAX=str(args.quiet_max), DECODE_EVERY=str(args.decode_every),
               WARMUP=str(int(args.warmup)), WINDOW=str(int(args.duration)))
    p = subprocess.run(["./run.sh", str(n), str(r)], cwd=args.colyseus, capture_output=True,
                       text=True, env=env, timeout=400)
    lines = [x for x in p.stdout.strip().splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError("colyseus run failed: %s" % p.stderr[-500:])
    out = json.loads(lines[-1])
    out["kb_per_client_s"] = round(out["bytes_per_client_s"] / 1000.0, 2)
    mins = out.get("updates_per_s_min")
    if mins is None:
        for k in ("updates_min", "updates_per_s_slowest"):
            if k in out:
                out["updates_per_s_min"] = out[k]
    return out


def other_cpu(row):
    """CPU (cores, both CPUs) used by processes other than the server and the
    load generator during the window: this machine may be shared."""
    if "other_cpu" in row:
        return row["other_cpu"]
    if "cpu0_other" in row and "cpu1_other" in row:
        return round(row["cpu0_other"] + row["cpu1_other"], 3)
    return None


def acceptable(row, other, max_other):
    """A run counts if it ran and nothing else used more than ``max_other`` CPU."""
    return "error" not in row and not isinstance(row.get("failed"), str) \
        and other is not None and other <= max_other


def med(rows, key):
    vals = [x[key] for x in rows if isinstance(x.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v, f):
    return "-" if v is None else f % v


def table(results, points):
    head = ["N/R", "server", "runs (ok)"] + [c[1] for c in COLUMNS] + ["KB RSS/cl", "loadgen cpu"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pt in points:
        per = {}
        for srv in ("arbiter", "colyseus"):
            rows = [x for x in results if x["point"] == pt and x["server"] == srv]
            if not rows:
                continue
            ok = sum(1 for x in rows if x.get("accepted"))
            all_rows = len(rows)
            if ok:
                rows = [x for x in rows if x.get("accepted")]
            per[srv] = {k: med(rows, k) for k, _, _ in COLUMNS}
            cells = [pt, srv, "%d (%d)" % (all_rows, ok)] + [fmt(per[srv][k], f) for k, _, f in COLUMNS]
            cells.append(fmt(med(rows, "kb_rss_per_client"), "%.0f"))
            cells.append(fmt(med(rows, "loadgen_cpu"), "%.2f"))
            lines.append("| " + " | ".join(cells) + " |")
        if len(per) == 2:
            cells = [pt, "ratio", ""]
            for k, _, _ in COLUMNS:
                a, c = per["arbiter"][k], per["colyseus"][k]
                cells.append("%.2f" % (a / c) if a is not None and c else "-")
            lines.append("| " + " | ".join(cells + ["", ""]) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", nargs="*", default=DEFAULT_POINTS, help="N:R points")
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--encoding", default="msgpack", choices=("json", "msgpack"))
    p.add_argument("--sync", default="state", choices=("state", "intent", "compact"),
                   help="the bots' sync mode (compact needs --encoding msgpack)")
    p.add_argument("--loadgen-procs", type=int, default=1, metavar="K",
                   help="arbiter-loadtest --procs K: the bots in K processes (for rooms one "
                        "process cannot decode; see docs/LOADTEST.md)")
    p.add_argument("--loadgen-cpus", default="1", metavar="LIST",
                   help="CPUs of the load generator (taskset style; default 1); with "
                        "--loadgen-procs, its workers are pinned one per CPU round-robin")
    p.add_argument("--decode-every", type=int, default=1, metavar="K",
                   help="NOT the scenario: only every K-th bot decodes (a server probe; "
                        "passed to Colyseus as DECODE_EVERY too)")
    p.add_argument("--colyseus", nargs="?", const=COLYSEUS, default=None, metavar="DIR",
                   help="alternate with the Colyseus harness in DIR (default: bench/colyseus; "
                        "run 'npm ci --prefix bench/colyseus' first)")
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--quiet-max", type=float, default=30,
                   help="max seconds to wait for idle CPUs before each run")
    p.add_argument("--max-other", type=float, default=0.15,
                   help="a run during which other processes used more CPU than this "
                        "(cores) is marked rejected and retried")
    p.add_argument("--tries", type=int, default=3, help="attempts per run (default 3)")
    p.add_argument("--server-pythonpath", default=None,
                   help="PYTHONPATH for the server only (run another tree's server)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra argument for the server (repeat)")
    p.add_argument("--out", default=None, help="results file (default bench/results/<stamp>.jsonl)")
    p.add_argument("--tag", default="", help="free text stored with every row")
    p.add_argument("--summarize", nargs="+", metavar="FILE",
                   help="only print the table of these results files")
    args = p.parse_args(argv)
    if args.sync == "compact" and args.encoding != "msgpack":
        p.error("--sync compact needs --encoding msgpack")
    if args.loadgen_procs < 1:
        p.error("--loadgen-procs must be at least 1")
    if args.summarize:
        print(summarize(args.summarize, args.max_other))
        return 0
    if args.colyseus:
        args.colyseus = os.path.abspath(args.colyseus)
        if not os.path.isfile(os.path.join(args.colyseus, "run.sh")):
            p.error("--colyseus: no run.sh in %s" % args.colyseus)
        if not os.path.isdir(os.path.join(args.colyseus, "node_modules")):
            p.error("--colyseus: %s has no node_modules: run 'npm ci --prefix %s' first"
                    % (args.colyseus, os.path.relpath(args.colyseus)))

    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = args.out or os.path.join(HERE, "results", time.strftime("%Y%m%d-%H%M%S") + ".jsonl")
    results = []
    print("results -> %s" % out, file=sys.stderr)
    for pas in range(1, args.passes + 1):
        for pt in args.points:
            n, r = (int(x) for x in pt.split(":"))
            runners = [("arbiter", run_arbiter)]
            if args.colyseus:
                runners.append(("colyseus", run_colyseus))
            for name, fn in runners:
                for attempt in range(1, args.tries + 1):
                    waited = wait_quiet(args.quiet_max) if name == "arbiter" else None
                    try:
                        row = fn(n, r, args)
                    except Exception as e:
                        row = {"server": name, "error": str(e)}
                    other = other_cpu(row)
                    row.update(point=pt, pass_=pas, attempt=attempt, tag=args.tag,
                               at=time.strftime("%H:%M:%S"), other=other,
                               accepted=acceptable(row, other, args.max_other),
                               encoding=args.encoding if name == "arbiter" else "schema",
                               sync=args.sync if name == "arbiter" else None)
                    if waited is not None:
                        row["quiet_wait_s"] = waited
                    row["server"] = name
                    with open(out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print("%s pass %d %s %s try %d other=%s accepted=%s: %s%s" % (
                        row["at"], pas, pt, name, attempt, other, row["accepted"],
                        row.get("error") or " ".join(
                            "%s=%s" % (k, row.get(k)) for k, _, _ in COLUMNS),
                        " LOADGEN-BOUND (%s)" % "; ".join(row.get("loadgen_why") or [])
                        if row.get("loadgen_bound") else ""),
                        file=sys.stderr, flush=True)
                    if row["accepted"] or attempt == args.tries:
                        results.append(row)
                        break
    print(table(results, args.points))
    return 0


def summarize(paths, max_other=0.2, points=None):
    """The table from results files (``python bench/run.py --summarize FILE...``):
    every attempt, accepted again by ``max_other``; medians over the accepted ones."""
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    for x in rows:
        x["accepted"] = acceptable(x, other_cpu(x), max_other)
    pts = points or list(dict.fromkeys(x["point"] for x in rows))
    return table(rows, pts)


if __name__ == "__main__":
    sys.exit(main())
