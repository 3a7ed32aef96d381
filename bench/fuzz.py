#!/usr/bin/env python3
"""A long fuzzing run: hostile frames against one in-memory server, honest players beside them.

    python bench/fuzz.py --frames 1000000 --seed 7
    python bench/fuzz.py --frames 100000 --kinds lone_surrogate,deep_nesting --progress

The same pipeline and generators as tests/test_fuzz.py (arbiter/tools/fuzzing/):
a JSON and a msgpack hostile connection send generated frames (about
``--frames-per-tick`` between two ticks of a task.Clock), a JSON and a msgpack
honest player play in the same room, every answer is checked against the
contract, and at the end the honest mirrors are compared with a resync and a
newcomer's snapshot. A connection closed (1008 after 20 bad messages in 10 s,
1007, 1009, 4001, 4003) is replaced by a new one; now and then the clock jumps
ahead by up to 12 s. Prints frames sent by kind, errors/rejects/closes by code,
internal_error and logged tracebacks, honest inputs sent/acked/applied, and
the distinct violations with a first occurrence each (``generate(...)`` there
makes that frame again). Exits 1 if anything was wrong: an internal_error, a
traceback, a lost honest input or any other answer the contract does not give.
See docs/FUZZING.md.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)           # this checkout's arbiter, not an installed copy

from arbiter.tools import fuzzing  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=100000, help="hostile frames to send (100000)")
    p.add_argument("--seed", type=int, default=0,
                   help="the run's seed: the same seed gives the same run")
    p.add_argument("--frames-per-tick", type=float, default=8,
                   help="mean hostile frames between two ticks (8)")
    p.add_argument("--kinds", default="",
                   help="comma-separated frame kinds to send (default: all, weighted); one of "
                        + ", ".join(fuzzing.KINDS))
    p.add_argument("--progress", action="store_true", help="a line on stderr every 10%%")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--log", action="store_true",
                   help="print the server's log on stderr (by default it is only counted: "
                        "tracebacks are in the report)")
    args = p.parse_args(argv)
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)] if args.log else [],
                                     redirectStandardIO=False)

    weights = None
    if args.kinds:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in fuzzing.GENERATORS]
        if unknown:
            p.error("unknown kinds: %s" % ", ".join(unknown))
        weights = {k: fuzzing.WEIGHTS[k] or 1 for k in kinds}

    step = max(1, args.frames // 10)
    marks = [step]
    started = time.perf_counter()

    def progress(sent, report):
        if args.progress and sent >= marks[0]:
            marks[0] += step
            el = time.perf_counter() - started
            print("%d frames, %.0f s, %.0f frames/s, %d violations, %d internal_error, "
                  "%d tracebacks" % (sent, el, sent / el, sum(report.violation_counts.values()),
                                     report.internal_errors, len(report.tracebacks)),
                  file=sys.stderr, flush=True)

    report = fuzzing.run_random(args.frames, seed=args.seed, frames_per_tick=args.frames_per_tick,
                                weights=weights, progress=progress)
    print("fuzz run: --frames %d --seed %d" % (args.frames, args.seed))
    print(report.summary())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "frames": args.frames, "seed": args.seed, "elapsed": report.elapsed,
                "frames_by_kind": report.frames, "fragmented": report.fragmented,
                "errors": report.errors, "rejects": report.rejects,
                "closes": {str(k): v for k, v in report.closes.items()},
                "internal_errors": report.internal_errors, "tracebacks": report.tracebacks,
                "honest": {"sent": report.honest_sent, "acked": report.honest_acked,
                           "applied": report.honest_applied},
                "connections": report.connections, "joins": report.joins,
                "violations": report.violation_counts, "distinct": report.distinct,
                "examples": report.examples,
            }, f, indent=1, default=str)
    print("RESULT: %s" % ("ok" if report.ok else "FAILED"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
