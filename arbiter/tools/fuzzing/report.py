"""The run's report, and the fuzzer's view of its connections and honest players."""

from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class Report:
    """What a run sent and saw."""

    frames: Counter = field(default_factory=Counter)        # hostile frames by kind
    fragmented: int = 0
    errors: Counter = field(default_factory=Counter)        # error codes to hostile connections
    rejects: Counter = field(default_factory=Counter)       # reject codes to hostile players
    closes: Counter = field(default_factory=Counter)        # close codes to hostile connections
    internal_errors: int = 0
    tracebacks: list = field(default_factory=list)
    log_events: Counter = field(default_factory=Counter)    # every log event, by level
    honest_sent: int = 0
    honest_acked: int = 0
    honest_applied: int = 0
    connections: int = 0
    joins: int = 0
    ticks: int = 0
    simulated: float = 0.0
    elapsed: float = 0.0
    violations: list = field(default_factory=list)          # the first ones, in full
    violation_counts: Counter = field(default_factory=Counter)   # by category
    distinct: Counter = field(default_factory=Counter)      # by signature (expected, got)
    examples: dict = field(default_factory=dict)            # signature -> its first occurrence

    @property
    def frames_sent(self):
        return sum(self.frames.values())

    @property
    def honest_lost(self):
        return self.honest_sent - self.honest_applied

    @property
    def ok(self):
        return not self.violation_counts and not self.tracebacks and not self.internal_errors

    def summary(self):
        """The report as lines of text."""
        rate = self.frames_sent / self.elapsed if self.elapsed else 0
        lines = [
            "frames sent: %d (%d fragmented) in %.1f s, %.0f frames/s; %d ticks, %.1f s simulated"
            % (self.frames_sent, self.fragmented, self.elapsed, rate, self.ticks, self.simulated),
            "  by kind: " + ", ".join("%s %d" % kv for kv in sorted(self.frames.items())),
            "hostile connections: %d opened, %d joined a room" % (self.connections, self.joins),
            "errors by code: " + _counts(self.errors),
            "rejects by code: " + _counts(self.rejects),
            "closes by code: " + _counts(self.closes),
            "internal_error: %d" % self.internal_errors,
            "logged tracebacks: %d" % len(self.tracebacks),
            "log events by level: " + _counts(self.log_events),
            "honest inputs: %d sent, %d acked, %d applied, %d lost"
            % (self.honest_sent, self.honest_acked, self.honest_applied, self.honest_lost),
            "violations: " + _counts(self.violation_counts, "none"),
        ]
        if self.tracebacks:
            lines.append("distinct tracebacks:")
            for tb, n in Counter(self.tracebacks).most_common(10):
                lines.append("  %dx %s" % (n, tb))
        if self.distinct:
            lines.append("distinct violations (count, signature, first occurrence):")
            for sig, n in self.distinct.most_common(30):
                lines.append("  %dx %s\n      %s" % (n, sig, self.examples[sig]))
        return "\n".join(lines)


def _counts(counter, empty="-"):
    return ", ".join("%s %d" % kv for kv in sorted(counter.items(), key=str)) or empty


class _Conn:
    """A client connection the run drives: its FakeClient and what it expects."""

    def __init__(self, client, encoding, opened_at):
        self.client = client
        self.encoding = encoding
        self.opened_at = opened_at
        self.joined = False
        self.you = None
        self.room = None
        self.bad_times = deque()
        self.ping_times = deque()


class _Honest:
    """An honest player: plays by the rules, mirrors the state, checks every answer."""

    def __init__(self, conn, name, rng):
        self.conn = conn
        self.name = name
        self.rng = rng
        self.state = {}
        self.ack = 0
        self.seq = 0
        self.avatar = None
        self.predicted = None
        self.pending = []            # (seq, kind, detail) sent since the last tick
        self.cubes_before = set()
        self.last_say_tick = -100
        self.events = []             # say events heard since the last check
        self.pongs = []
        self.snapshots = 0

    def my_cubes(self):
        me = self.conn.you
        return {k for k, e in self.state.get("entities", {}).items()
                if e.get("owner") == me and e.get("kind") == "cube"}
