"""Rule primitives: token buckets, the movement budget, and rule outcomes.

A fast rule runs on every input during a tick and answers ``None`` (pass) or a
:class:`Reject`; a batched rule runs every 100 ms over that window and may emit
:class:`Correction` values. Both are plain values; the room sends them.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reject:
    """An input refused by a rule: ``reject {seq, code, msg}`` to its sender."""

    code: str
    msg: str


@dataclass(frozen=True, slots=True)
class Correction:
    """A rule overrode an entity's state: ``correct {id, pos, reason, seq}``."""

    player: str
    id: int
    pos: list
    reason: str
    seq: int


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second of the given clock."""

    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, capacity, rate, now):
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.stamp = now

    def refill(self, now):
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def can_take(self, now, n=1):
        self.refill(now)
        return self.tokens >= n

    def take(self, n=1):
        self.tokens -= n


class MovementBudget:
    """Move credit in ms: grows with wall time up to ``cap_ms``; each move spends its ``dt``."""

    __slots__ = ("cap_ms", "credit", "stamp")

    def __init__(self, now, cap_ms=250 + 150):
        self.cap_ms = cap_ms
        self.credit = float(cap_ms)
        self.stamp = now

    def spend(self, now, dt_ms):
        """Spend up to ``dt_ms``; returns how many ms of movement are allowed."""
        if now > self.stamp:
            self.credit = min(self.cap_ms, self.credit + (now - self.stamp) * 1000)
        self.stamp = now
        allowed = min(dt_ms, self.credit)
        self.credit -= allowed
        return allowed
