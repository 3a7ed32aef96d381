#!/usr/bin/env python3
"""Server CPU against N (rooms of R) from bench/run.py's results: docs/img/cpu-vs-n.png.

    pip install -e '.[bench]'            # matplotlib (or: pip install matplotlib==3.11.2)
    python bench/plot.py --tag sweep --tag main-compact --tag main-state
    python bench/plot.py bench/results/sweep-*.jsonl --r 8 --out /tmp/cpu.png

Reads the rows of bench/results/*.jsonl (or the files given) that carry one of the ``--tag``
values (``bench/run.py --tag``), keeps the accepted runs of rooms of ``--r``, and draws one line
per server and sync (Arbiter compact, Arbiter state, Colyseus): the median server CPU (cores)
at each N, with the range of the runs as an error bar. A point where the load generator was the
bottleneck in most of its runs (``loadgen_bound``) is drawn hollow and labelled: it measures
the load generator, not the server, and the line does not go through it. ``--extrapolate``
adds, per line, a dotted straight-line fit of its clean points out to the largest N plotted,
marked as an extrapolation. Runs made with ``--decode-every K`` (K > 1: a probe of the
server, not the scenario; every client still receives every frame and sends its orders) are a
series of their own, dashed. The medians are printed as a table on stdout.
"""

import argparse
import glob
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STYLE = {  # series -> (label, colour, marker)
    ("arbiter", "compact"): ("Arbiter, compact sync", "tab:blue", "o"),
    ("arbiter", "state"): ("Arbiter, state sync (v1 msgpack)", "tab:orange", "s"),
    ("arbiter", "intent"): ("Arbiter, intent sync", "tab:purple", "D"),
    ("colyseus", None): ("Colyseus 0.18", "tab:green", "^"),
}


def style(key):
    """(label, colour, marker, line style) of a series (server, sync, decode_every)."""
    label, colour, marker = STYLE.get(key[:2], (str(key[:2]), None, "o"))
    if key[2] > 1:
        return ("%s, probe: 1 client in %d decodes" % (label, key[2]), colour, marker, "--")
    return label, colour, marker, "-"


def excluded(key, patterns):
    """Whether series ``key`` (server, sync, decode_every) matches one of ``patterns``
    (server[:sync][:K], empty parts match anything)."""
    for pat in patterns:
        parts = (pat.split(":") + ["", ""])[:3]
        if parts[0] and parts[0] != key[0]:
            continue
        if parts[1] and parts[1] != (key[1] or ""):
            continue
        if parts[2] and int(parts[2]) != key[2]:
            continue
        return True
    return False


def load(paths, tags, r):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                x = json.loads(line)
                if tags and x.get("tag") not in tags:
                    continue
                if not x.get("accepted") or "point" not in x:
                    continue
                n, rr = (int(v) for v in x["point"].split(":"))
                if rr != r or not isinstance(x.get("cpu"), (int, float)):
                    continue
                x["_n"] = n
                rows.append(x)
    return rows


def series(rows):
    """{(server, sync, decode_every): [(N, median cpu, lo, hi, runs, bound, row medians)]}, sorted by N."""
    groups = {}
    for x in rows:
        key = (x["server"], x.get("sync") if x["server"] == "arbiter" else None,
               x.get("decode_every") or 1)
        groups.setdefault(key, {}).setdefault(x["_n"], []).append(x)
    out = {}
    for key, by_n in groups.items():
        pts = []
        for n in sorted(by_n):
            xs = by_n[n]
            cpus = [x["cpu"] for x in xs]
            bound = sum(1 for x in xs if x.get("loadgen_bound")) * 2 > len(xs)

            def med(k):
                v = [x[k] for x in xs if isinstance(x.get(k), (int, float))]
                return statistics.median(v) if v else None
            pts.append(dict(n=n, cpu=statistics.median(cpus), lo=min(cpus), hi=max(cpus),
                            runs=len(xs), bound=bound, p99=med("lat_p99_ms"),
                            upd_min=med("updates_per_s_min"), loadgen_cpu=med("loadgen_cpu"),
                            kb=med("kb_per_client_s")))
        out[key] = pts
    return out


def fit(pts):
    """Least-squares line cpu = a + b N through the clean points (None if fewer than 2)."""
    if len(pts) < 2:
        return None
    xs = [p["n"] for p in pts]
    ys = [p["cpu"] for p in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def print_table(data):
    print("| series | N | runs | cpu median (range) | p99 ms | upd/s min | down kB/cl/s "
          "| loadgen cpu | loadgen-bound |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(data, key=lambda k: (str(k[:2]), k[2])):
        label = style(key)[0]
        for p in data[key]:
            f = lambda v, s: "-" if v is None else s % v  # noqa: E731
            print("| %s | %d | %d | %.3f (%.3f–%.3f) | %s | %s | %s | %s | %s |" % (
                label, p["n"], p["runs"], p["cpu"], p["lo"], p["hi"], f(p["p99"], "%.1f"),
                f(p["upd_min"], "%.2f"), f(p["kb"], "%.1f"), f(p["loadgen_cpu"], "%.2f"),
                "yes" if p["bound"] else "no"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", help="results files (default bench/results/*.jsonl)")
    p.add_argument("--tag", action="append", default=[],
                   help="keep rows with this tag (repeat; default: every row)")
    p.add_argument("--r", type=int, default=8, help="room size R of the points (default 8)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "img", "cpu-vs-n.png"))
    p.add_argument("--extrapolate", action="store_true",
                   help="dotted line fits of the clean points out to the largest N")
    p.add_argument("--exclude", action="append", default=[], metavar="SERIES",
                   help="leave a series out of the plot (not the table): server[:sync][:K], "
                        "e.g. colyseus::4 for Colyseus's --decode-every 4 probe (repeat)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)

    paths = args.files or sorted(glob.glob(os.path.join(HERE, "results", "*.jsonl")))
    rows = load(paths, set(args.tag), args.r)
    if not rows:
        p.error("no accepted rows with rooms of %d%s" % (
            args.r, " and tag %s" % ", ".join(args.tag) if args.tag else ""))
    data = series(rows)
    print_table(data)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6.2), dpi=120)
    n_max = max(x["_n"] for x in rows)
    rank = list(STYLE)
    order = sorted(data, key=lambda k: (k[2], rank.index(k[:2]) if k[:2] in rank else 99))
    order = [k for k in order if not excluded(k, args.exclude)]
    bound_labelled = False
    for key in order:
        label, colour, marker, ls = style(key)
        pts = data[key]
        clean = [q for q in pts if not q["bound"]]
        dirty = [q for q in pts if q["bound"]]
        if clean:
            ax.errorbar([q["n"] for q in clean], [q["cpu"] for q in clean],
                        yerr=[[q["cpu"] - q["lo"] for q in clean],
                              [q["hi"] - q["cpu"] for q in clean]],
                        color=colour, marker=marker, linewidth=1.8, markersize=6, linestyle=ls,
                        capsize=3, label=label)
        if dirty:
            ax.plot([q["n"] for q in dirty], [q["cpu"] for q in dirty], linestyle="none",
                    marker=marker, markersize=9, markerfacecolor="white", markeredgecolor=colour,
                    markeredgewidth=1.8,
                    label=None if clean else label)
            bound_labelled = True
        for q in pts:
            if q["cpu"] >= 0.95 and q["upd_min"] is not None and q["upd_min"] < 19.5:
                ax.annotate("%.0f upd/s" % q["upd_min"], (q["n"], q["cpu"]),
                            textcoords="offset points", fontsize=7,
                            xytext=(-14, -18) if key[1] == "state" else (-44, 8),
                            color=colour)
        # extrapolate the scenario's lines only (not the probes)
        line = fit(clean) if args.extrapolate and key[2] == 1 else None
        if line and clean and clean[-1]["n"] < n_max:
            a, b = line
            x0 = clean[-1]["n"]
            x1 = n_max if b <= 0 else min(n_max, (1.05 - a) / b)
            if x1 > x0:
                ax.plot([x0, x1], [a + b * x0, a + b * x1], linestyle=":", color=colour,
                        linewidth=1.5)
    if bound_labelled:
        ax.plot([], [], linestyle="none", marker="o", markerfacecolor="white",
                markeredgecolor="grey", label="hollow: load generator bound (measures it, not the server)")
    if args.extrapolate:
        ax.plot([], [], linestyle=":", color="grey",
                label="dotted: extrapolated (line fit of the clean points)")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.text(0.01, 1.0, " one core", transform=ax.get_yaxis_transform(), va="bottom",
            fontsize=8, color="grey")
    ax.set_xlabel("N (clients, rooms of %d)" % args.r)
    ax.set_ylabel("server CPU (cores, user + sys)")
    ax.set_xlim(0, n_max * 1.05)
    ax.set_ylim(0, max(1.1, max(x["cpu"] for x in rows) * 1.1))
    ax.set_title(args.title or "Server CPU against N, the cubes workload at 20 Hz "
                 "(medians; bars: range)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2,
              frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out)
    print("wrote %s" % os.path.relpath(args.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
