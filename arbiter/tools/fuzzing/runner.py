"""Random runs: frames drawn by weight, ticks and quiet gaps."""

import random

from arbiter.tools.fuzzing.frames import KINDS, WEIGHTS
from arbiter.tools.fuzzing.fuzzer import Fuzzer


def run_random(frames, seed=0, frames_per_tick=8, gap_every=400, weights=None, fuzzer=None,
               progress=None):
    """Send ``frames`` hostile frames drawn from ``seed`` (bench/fuzz.py); the Report."""
    rng = random.Random("plan/%d" % seed)
    weights = weights or WEIGHTS
    kinds = [k for k in KINDS if weights.get(k)]
    cum = []
    total = 0.0
    for k in kinds:
        total += weights[k]
        cum.append(total)
    fz = fuzzer or Fuzzer(seed=seed)
    with fz:
        sent = 0
        while sent < frames:
            n = min(frames - sent, rng.randint(0, 2 * frames_per_tick))
            act_at = rng.randint(0, n)
            for i in range(n):
                if i == act_at:
                    fz.honest_act()
                kind = kinds[_bisect(cum, rng.random() * total)]
                fz.hostile(rng.randrange(len(fz.slots)), kind, rng.getrandbits(32))
            sent += n
            if gap_every and rng.random() < 1.0 / gap_every:
                fz.gap(rng.choice([0.3, 1.0, 2.5, 6.0, 10.5, 12.0]))
            else:
                fz.tick()
            if progress is not None:
                progress(sent, fz.report)
        return fz.finish()


def _bisect(cum, x):
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo
