#!/usr/bin/env python3
"""Plots of a netcode-lab run (bench/netcode.py) for docs/NETCODE.md.

    python bench/plot_netcode.py bench/results/netcode-<stamp>-full.json [--old <...-full-old.json>]

Draws docs/img/netcode.png, three panels over the same stretch of the run (one stall in it):
1. own avatar: where the page drew it (predicted) and where the server had it (the
   states' authoritative position, as they arrived) — x over time;
2. the other player's avatar through a stall: where the page drew it, and its true path
   (the states, placed at the time the render clock reached their tick); with ``--old``, the
   same from the client without the lab's fixes;
3. the view delay the client settled on, with the stalls shaded.
"""

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(path):
    d = json.loads(Path(path).read_text())
    return d["lab"], d["figures"]


def stalls_of(states, gap_ms=250):
    return [(a["t"], b["t"]) for a, b in zip(states, states[1:]) if b["t"] - a["t"] >= gap_ms]


def window_around_stall(lab, before=1500, after=2000):
    stalls = stalls_of(lab["states"])
    frames = lab["frames"]
    t0 = frames[0]["t"]
    for s, e in stalls:
        if s - before > t0 + 5000:
            return s - before, e + after, (s, e)
    mid = frames[len(frames) // 2]["t"]
    return mid - before, mid + after, None


def remote_series(lab, lo, hi):
    """(t s, drawn x) and (t s, true x at the render tick) for the other avatar."""
    truth = {s["tick"]: s["other"] for s in lab["states"] if s["other"]}
    drawn, true = [], []
    for f in lab["frames"]:
        if not lo <= f["t"] <= hi or not f["other"] or f["rt"] is None:
            continue
        drawn.append((f["t"] / 1000, f["other"][0]))
        rt = f["rt"]
        a, b = truth.get(math.floor(rt)), truth.get(math.floor(rt) + 1)
        if a and b:
            k = rt - math.floor(rt)
            true.append((f["t"] / 1000, a[0] + (b[0] - a[0]) * k))
    return drawn, true


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--old", help="the same condition from the client without the fixes")
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "netcode.png"))
    a = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lab, fig_ = load(a.run)
    lo, hi, stall = window_around_stall(lab)
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=False)

    # 1. own avatar: predicted (drawn) vs authoritative
    ax = axes[0]
    f = [x for x in lab["frames"] if lo <= x["t"] <= hi and x["own"]]
    s = [x for x in lab["states"] if lo <= x["t"] <= hi and x["own"]]
    ax.plot([x["t"] / 1000 for x in f], [x["own"][0] for x in f], label="drawn (predicted)",
            color="#1f77b4")
    ax.step([x["t"] / 1000 for x in s], [x["own"][0] for x in s], where="post",
            label="server's, as states arrive", color="#ff7f0e", alpha=0.8)
    ax.set_ylabel("own avatar x")
    ax.set_title("Your avatar: prediction runs ~%d ms ahead of the server's word; %s "
                 "corrections/min" % (fig_["bot"]["rtt_ms_median"] or 0,
                                      fig_["corrections_per_min"]), fontsize=10)
    ax.legend(loc="upper left", fontsize=8)

    # 2. remote avatar through a stall
    ax = axes[1]
    drawn, true = remote_series(lab, lo, hi)
    ax.plot([t for t, _ in true], [x for _, x in true], label="true path at the render tick",
            color="#2ca02c", linewidth=3, alpha=0.5)
    ax.plot([t for t, _ in drawn], [x for _, x in drawn], label="drawn", color="#d62728")
    if a.old:
        old_lab, _ = load(a.old)
        olo, ohi, ostall = window_around_stall(old_lab)
        od, _ = remote_series(old_lab, olo, ohi)
        shift = (lo - olo) / 1000
        ax.plot([t + shift for t, _ in od], [x for _, x in od], label="drawn, before the fixes "
                "(another run, aligned on its stall)", color="#7f7f7f", linestyle="--")
    if stall:
        ax.axvspan(stall[0] / 1000, stall[1] / 1000, color="#999999", alpha=0.25,
                   label="stall (no state arrives)")
    ax.set_ylabel("other avatar x")
    ax.set_title("The other player through a %d ms stall" % fig_.get("stall_ms", 0), fontsize=10)
    ax.legend(loc="upper left", fontsize=8)

    # 3. view delay over the whole run
    ax = axes[2]
    fr = [x for x in lab["frames"] if x["delay"] is not None]
    t0 = lab["frames"][0]["t"]
    ax.plot([(x["t"] - t0) / 1000 for x in fr], [x["delay"] for x in fr], color="#9467bd",
            label="view delay (interpolationDelay + jitter)")
    for s0, e0 in stalls_of(lab["states"]):
        ax.axvspan((s0 - t0) / 1000, (e0 - t0) / 1000, color="#999999", alpha=0.3)
    ax.set_xlabel("seconds")
    ax.set_ylabel("ms")
    ax.set_title("View delay the client settles on (stalls shaded): median %s ms"
                 % fig_["view_delay_ms"]["median"], fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    for ax in axes[:2]:
        ax.set_xlabel("seconds (page clock)")
    fig.suptitle("Netcode lab: %d ms +- %d each way, %d ms stall every %d s, %s fps"
                 % (fig_["delay_ms"], fig_["jitter_ms"], fig_.get("stall_ms", 0),
                    fig_.get("stall_every_s", 0), fig_["fps"]), fontsize=11)
    fig.tight_layout()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
