#!/usr/bin/env python3
"""The netcode lab: how the cube demo feels through a delayed, jittery, stalling link.

    python bench/netcode.py                      # the four conditions, 90 s each
    python bench/netcode.py --seconds 30 --conditions full

A real server (``python -m arbiter``), the delay proxy in front of it (``arbiter-netem``:
75 ms each way +- 15 ms jitter = 150 ms round trip +- 30, and a 300 ms stall every 10 s),
the demo page in real Chromium through the proxy (player A), and a Python client through
the proxy (player B, bench/netcode_bot.py) that keeps its avatar circling A's at a distance
that swings across the tag radius. A's page holds arrow keys in a fixed pattern and tags
B every 300 ms; a recorder injected into the page notes every frame (what is drawn: A's own
avatar, B's avatar, the render tick and delay), every state message, key, correction,
reject and tag. The figures (docs/NETCODE.md) are computed from those records:

- keypress -> own avatar moves on screen, in frames (1 = the next frame);
- corrections per minute and the largest visible snap of the own avatar;
- interpolation: frames per minute in which B (moving) is drawn standing still or jumping
  more than one tick's travel, outside stalls and within 500 ms after one; the view delay;
- lag-compensated tags: the share whose verdict (hit: ``tag`` event; miss: ``reject``
  ``miss``) matches what A saw on screen when it tagged (drawn distance <= tag radius).

Conditions: ``full`` (prediction and interpolation on), ``nostall`` (no stalls), ``nopredict``,
``nointerp``, ``full-old`` / ``nostall-old``: the client without the lab's fixes (the
render clock not eased), for before-and-after figures, and ``full-x50`` / ``full-x150``: with
the client's opt-in extrapolation. Each writes bench/results/netcode-<stamp>-<condition>.json (the raw records
and the figures); bench/plot_netcode.py draws the plots.
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("ARBITER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--enable-unsafe-swiftshader", "--no-sandbox", "--disable-background-networking",
                 "--disable-component-update"]
TAG_RADIUS = 2.0
AVATAR_SPEED = 8.0
TICK = 0.05                    # s: 20 state ticks a second
CONDITIONS = {
    "full": dict(predict=True, interpolate=True, stalls=True),
    "nostall": dict(predict=True, interpolate=True, stalls=False),
    "nopredict": dict(predict=False, interpolate=True, stalls=True),
    "nointerp": dict(predict=True, interpolate=False, stalls=True),
    # the client before the netcode lab's fixes: the render tick as the tick clock gives
    # it (no easing), no extrapolation through a late state
    "full-old": dict(predict=True, interpolate=True, stalls=True, smooth=False),
    "nostall-old": dict(predict=True, interpolate=True, stalls=False, smooth=False),
    # the eased render clock (the default) with 50 or 150 ms of extrapolation (opt-in)
    "full-x50": dict(predict=True, interpolate=True, stalls=True, extrapolate=50),
    "full-x150": dict(predict=True, interpolate=True, stalls=True, extrapolate=150),
}
# A's keys: (key or None, seconds), repeated
PATTERN = [("ArrowRight", 1.2), (None, 0.4), ("ArrowUp", 1.2), (None, 0.4),
           ("ArrowLeft", 1.2), (None, 0.4), ("ArrowDown", 1.2), (None, 0.4)]

RECORDER = r"""
() => {
  const d = window.arbiterDemo, c = d.client;
  const lab = window.__lab = {frames: [], keys: [], tags: [], rejects: [], corrections: [],
                              states: []};
  const avatarOf = (owner) => {
    for (const [id, e] of Object.entries(c.state.entities))
      if (e && e.kind === "avatar" && e.owner === owner) return id;
    return null;
  };
  lab.me = avatarOf(c.you);
  lab.you = c.you;
  const other = () => {
    for (const [id, e] of Object.entries(c.state.entities))
      if (e && e.kind === "avatar" && e.owner !== c.you) return id;
    return null;
  };
  c.on("correction", (ev) => lab.corrections.push({t: performance.now(), err: ev.error,
                                                  snapped: ev.snapped, reason: ev.reason}));
  c.on("reject", (msg) => lab.rejects.push({t: performance.now(), seq: msg.seq, code: msg.code}));
  c.on("state", (msg) => {
    const o = other(), oe = o && c.state.entities[o], me = c.state.entities[lab.me];
    lab.states.push({t: performance.now(), tick: msg.tick, ack: msg.ack,
                     other: oe ? [oe.pos[0], oe.pos[2]] : null,
                     own: me ? [me.pos[0], me.pos[2]] : null});
  });
  window.addEventListener("keydown", (e) => {
    if (!e.repeat) lab.keys.push({t: performance.now(), code: e.code, frame: lab.frames.length});
  }, true);
  function frame() {
    // what is on screen now is what the page's last view() drew: its time and render tick
    const now = c._lastViewAt ?? performance.now();
    let own = null, oth = null, othId = null;
    for (const e of d.drawnEntities("avatar")) {
      if (!e.inScene) continue;
      if (e.id === lab.me) own = [e.pos[0], e.pos[2]];
      else { oth = [e.pos[0], e.pos[2]]; othId = e.id; }
    }
    if (lab.frames.length && lab.frames[lab.frames.length - 1].t === now) {
      requestAnimationFrame(frame);        // no new frame drawn since the last look
      return;
    }
    lab.frames.push({t: now, rt: c._lastRenderTick ?? c.renderTick(now), delay: c.renderDelay,
                     tick: c.tick,
                     own, other: oth, otherId: othId});
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
  lab.tagger = setInterval(() => {
    const f = lab.frames[lab.frames.length - 1];
    if (!f || !f.own || !f.other || !f.otherId) return;
    const dist = Math.hypot(f.own[0] - f.other[0], f.own[1] - f.other[1]);
    const seq = c.tag(f.otherId);
    if (seq) lab.tags.push({t: performance.now(), seq, dist, frame: lab.frames.length - 1});
  }, 300);
  return lab.me;
}
"""


class Proc:
    """A subprocess whose stdout is read on a thread; ``wait_for(regex)`` gives a match."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, cwd=str(ROOT), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern, timeout=30):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.lines):
                    raise RuntimeError("no %r from %s:\n%s" % (pattern, self.proc.args,
                                                               "".join(self.lines[-30:])))
                self.cond.wait(min(left, 0.5))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_condition(name, seconds, delay, jitter, stall_every, stall_ms, seed, out_dir, stamp,
                  viewport=(960, 540)):
    from playwright import sync_api
    cond = CONDITIONS[name]
    server = Proc([sys.executable, "-m", "arbiter", "--port", "0"])
    port = int(server.wait_for(r"ARBITER_PORT=(\d+)").group(1))
    netem_args = [str(BIN / "arbiter-netem"), "--listen", "127.0.0.1:0",
                  "--to", "127.0.0.1:%d" % port, "--delay", str(delay), "--jitter", str(jitter),
                  "--seed", str(seed)]
    if cond["stalls"]:
        netem_args += ["--stall-every", str(stall_every), "--stall", str(stall_ms)]
    netem = Proc(netem_args)
    nport = int(netem.wait_for(r"NETEM_PORT=(\d+)").group(1))
    room = "lab-%s-%d" % (name, os.getpid())
    bot = None
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto("http://127.0.0.1:%d/?room=%s&name=A" % (nport, room))
            page.wait_for_function("() => window.arbiterDemo && window.arbiterDemo.client"
                                   " && window.arbiterDemo.client.you", timeout=30000)
            page.evaluate("(o) => { const c = window.arbiterDemo.client;"
                          " c.predict = o.predict; c.interpolate = o.interpolate;"
                          " if (o.smooth === false) { c.smoothClock = false;"
                          " c.maxExtrapolation = 0; }"
                          " if (o.extrapolate !== undefined) c.maxExtrapolation = o.extrapolate;"
                          " }", cond)
            bot = Proc([sys.executable, str(ROOT / "bench" / "netcode_bot.py"), "--url",
                        "ws://127.0.0.1:%d/ws" % nport, "--room", room, "--seconds",
                        str(seconds + 8)])
            bot.wait_for("BOT_READY")
            page.wait_for_function("() => window.arbiterDemo.drawnEntities('avatar')"
                                   ".filter(e => e.inScene).length === 2", timeout=30000)
            page.evaluate(RECORDER)
            page.mouse.move(640, 400)
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < seconds:
                key, hold = PATTERN[i % len(PATTERN)]
                i += 1
                if key:
                    page.keyboard.down(key)
                page.wait_for_timeout(hold * 1000)       # the scenario's own timing
                if key:
                    page.keyboard.up(key)
            page.evaluate("() => clearInterval(window.__lab.tagger)")
            page.wait_for_timeout(1500)                  # the last tags' verdicts
            lab = page.evaluate("() => window.__lab")
            fps = len(lab["frames"]) / seconds
            browser.close()
        done = bot.wait_for(r"BOT_DONE (.*)$", timeout=seconds + 30)
        botdata = json.loads(done.group(1))
    finally:
        for p in (bot, netem, server):
            if p is not None:
                p.stop()
    figures = compute(lab, botdata, seconds)
    figures.update(condition=name, seconds=seconds, fps=round(fps, 1), delay_ms=delay,
                   viewport="%dx%d" % viewport,
                   jitter_ms=jitter, stall_every_s=stall_every if cond["stalls"] else 0,
                   stall_ms=stall_ms if cond["stalls"] else 0, **cond)
    path = out_dir / ("netcode-%s-%s.json" % (stamp, name))
    path.write_text(json.dumps({"figures": figures, "lab": lab, "bot": botdata}))
    return figures, path


def stalls_of(states, gap_ms=250):
    """(start, end) in page ms of the gaps between state messages of at least gap_ms."""
    out = []
    for a, b in zip(states, states[1:]):
        if b["t"] - a["t"] >= gap_ms:
            out.append((a["t"], b["t"]))
    return out


def compute(lab, bot, seconds):
    frames = lab["frames"]
    states = lab["states"]
    minutes = seconds / 60.0
    fig = {}
    # -- keypress -> own avatar moves on screen (with prediction: the next frame) --------------
    latencies = []
    for k in lab["keys"]:
        i0 = k["frame"]
        if i0 < 1 or i0 >= len(frames) or not frames[i0 - 1]["own"]:
            continue
        before = frames[i0 - 1]["own"]
        for j in range(i0, min(len(frames), i0 + 200)):
            p = frames[j]["own"]
            if p and math.hypot(p[0] - before[0], p[1] - before[1]) > 0.001:
                latencies.append(j - i0 + 1)
                break
    fig["key_to_motion_frames"] = {
        "median": statistics.median(latencies) if latencies else None,
        "max": max(latencies) if latencies else None, "n": len(latencies)}
    # -- corrections and snaps ---------------------------------------------------------------
    fig["corrections_per_min"] = round(len(lab["corrections"]) / minutes, 2)
    fig["corrections_by_reason"] = {}
    for c in lab["corrections"]:
        fig["corrections_by_reason"][c["reason"]] = fig["corrections_by_reason"].get(
            c["reason"], 0) + 1
    snap = 0.0
    for a, b in zip(frames, frames[1:]):
        if a["own"] and b["own"]:
            moved = math.hypot(b["own"][0] - a["own"][0], b["own"][1] - a["own"][1])
            expected = AVATAR_SPEED * (b["t"] - a["t"]) / 1000
            snap = max(snap, moved - expected)
    fig["largest_own_snap"] = round(snap, 3)
    # -- interpolation of B ------------------------------------------------------------------
    truth = {}
    for s in states:
        if s["other"]:
            truth[s["tick"]] = s["other"]
    stalls = stalls_of(states)
    fig["stalls_seen"] = len(stalls)

    def true_at(rt):
        """B's authoritative (x, z) at fractional tick rt: the states, interpolated."""
        if rt is None:
            return None
        a, b = truth.get(math.floor(rt)), truth.get(math.floor(rt) + 1)
        if a is None:
            return None
        if b is None:
            return a
        f = rt - math.floor(rt)
        return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)

    def near_stall(t, after=500):
        return any(s - 20 <= t <= e + after for s, e in stalls)

    def anomaly(a, b):
        """(standing still, jumping) for B between two frames: drawn still while its true
        path moved in the time between them; or drawn moving more than that true path did,
        by over half a tick's travel. The true path is taken from frame a's render tick
        over the frames' wall-clock interval (the render tick should run with the clock:
        one that stops, starved, or leaps to catch up is what the eye sees)."""
        if not (a["other"] and b["other"]) or a["otherId"] != b["otherId"] \
                or a["rt"] is None:
            return False, False
        d = math.hypot(b["other"][0] - a["other"][0], b["other"][1] - a["other"][1])
        ta = true_at(a["rt"])
        tb = true_at(a["rt"] + (b["t"] - a["t"]) / (TICK * 1000))
        if ta is None or tb is None:
            return False, False
        true_d = math.hypot(tb[0] - ta[0], tb[1] - ta[1])
        return d < 1e-6 and true_d > 0.01, d > true_d + AVATAR_SPEED * TICK / 2

    still = jump = still_stall = jump_stall = 0
    for a, b in zip(frames, frames[1:]):
        bad_still, bad_jump = anomaly(a, b)
        if near_stall(b["t"]):
            still_stall += bad_still
            jump_stall += bad_jump
        else:
            still += bad_still
            jump += bad_jump
    fig["interp_still_per_min"] = round(still / minutes, 2)
    fig["interp_jump_per_min"] = round(jump / minutes, 2)
    fig["interp_bad_in_stall_windows"] = still_stall + jump_stall
    # recovery: after each stall, how long until B is drawn moving smoothly again
    recover = []
    for s, e in stalls:
        bad_until = e
        for a, b in zip(frames, frames[1:]):
            if b["t"] < e or b["t"] > e + 3000:
                continue
            if any(anomaly(a, b)):
                bad_until = b["t"]
        recover.append(bad_until - e)
    fig["recovery_ms"] = {"median": statistics.median(recover) if recover else None,
                          "max": max(recover) if recover else None}
    delays = [f["delay"] for f in frames if f["delay"] is not None]
    fig["view_delay_ms"] = {"median": round(statistics.median(delays), 1) if delays else None,
                            "p90": round(sorted(delays)[int(len(delays) * 0.9)], 1)
                            if delays else None}
    # -- lag-compensated tags ------------------------------------------------------------------
    rejected = {r["seq"]: r["code"] for r in lab["rejects"]}
    top_ack = max((s["ack"] for s in states), default=0)
    agree = n = 0
    by_kind = {"hit_hit": 0, "hit_miss": 0, "miss_hit": 0, "miss_miss": 0}
    for tag in lab["tags"]:
        code = rejected.get(tag["seq"])
        if code not in (None, "miss") or tag["seq"] > top_ack:
            continue                  # rate limited, or no verdict yet
        saw = tag["dist"] <= TAG_RADIUS
        server = code is None
        n += 1
        agree += saw == server
        by_kind["%s_%s" % ("hit" if saw else "miss", "hit" if server else "miss")] += 1
    fig["tags"] = {"n": n, "agree_pct": round(100.0 * agree / n, 2) if n else None, **by_kind}
    fig["bot"] = {"updates_per_s": round(bot.get("updates_per_s", 0), 2),
                  "rtt_ms_median": statistics.median(bot["rtt_ms"]) if bot.get("rtt_ms")
                  else None}
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    p.add_argument("--seconds", type=float, default=90)
    p.add_argument("--delay", type=int, default=75, help="ms each way")
    p.add_argument("--jitter", type=int, default=15, help="ms each way")
    p.add_argument("--stall-every", type=float, default=10)
    p.add_argument("--stall", type=int, default=300, help="ms")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--viewport", default="960x540",
                   help="the page's size (Chromium renders WebGL in software here: a smaller "
                        "page draws more frames a second)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in a.conditions:
        figures, path = run_condition(name, a.seconds, a.delay, a.jitter, a.stall_every, a.stall,
                                      a.seed, out, stamp,
                                      tuple(int(v) for v in a.viewport.split("x")))
        print(json.dumps(figures), flush=True)
        print("-> %s" % path, flush=True)


if __name__ == "__main__":
    main()
