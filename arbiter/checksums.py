"""Desync detection for lockstep rooms: checksums per turn, agreement or divergence.

Clients report the checksum of their game state after a turn. Once every
expected player has reported a turn, the turn is *agreed* (all equal) or has
*diverged*: the players in the single largest group of equal checksums are
taken as right and the others are named; with no single largest group every
reporter is named. A later report for an agreed turn (a player catching up)
is compared with the agreed value.
"""

from dataclasses import dataclass, field

KEEP = 4096          # turns remembered, agreed or pending


@dataclass(frozen=True)
class Divergence:
    """Checksums differ at ``turn``; ``diverged`` names who (in game order)."""

    turn: int
    diverged: list
    checksums: dict = field(default_factory=dict)

    def as_wire(self):
        return {"turn": self.turn, "diverged": list(self.diverged),
                "checksums": dict(self.checksums)}


class ChecksumLedger:
    """The checksums of one game, by turn."""

    def __init__(self, keep=KEEP):
        self.keep = keep
        self.pending = {}      # turn -> {player id: checksum}, not all in yet
        self.agreed = {}       # turn -> the checksum everyone reported

    def report(self, pid, turn, value, expected, order):
        """Record one report; returns a :class:`Divergence` or None.

        ``expected``: the players whose reports a turn waits for; ``order``:
        the game's player order, for naming."""
        if turn in self.agreed:
            if self.agreed[turn] != value:
                return Divergence(turn, [pid], {pid: value, "agreed": self.agreed[turn]})
            return None
        self.pending.setdefault(turn, {})[pid] = value
        if len(self.pending) > self.keep:
            del self.pending[min(self.pending)]
        return self.settle(turn, expected, order)

    def settle(self, turn, expected, order):
        """Decide ``turn`` if every expected player has reported it."""
        got = self.pending.get(turn)
        if not got or any(pid not in got for pid in expected):
            return None
        del self.pending[turn]
        groups = {}
        for pid, v in got.items():
            groups.setdefault(v, set()).add(pid)
        if len(groups) == 1:
            self.agreed[turn] = next(iter(groups))
            if len(self.agreed) > self.keep:
                del self.agreed[min(self.agreed)]
            return None
        sizes = sorted((len(g) for g in groups.values()), reverse=True)
        right = max(groups.values(), key=len) if sizes[0] > sizes[1] else set()
        diverged = [pid for pid in order if pid in got and pid not in right]
        diverged += sorted(pid for pid in got if pid not in order and pid not in right)
        return Divergence(turn, diverged, got)

    def settle_all(self, expected, order):
        """After the expected players changed (a drop, a disconnect): the first divergence."""
        for turn in sorted(self.pending):
            found = self.settle(turn, expected, order)
            if found is not None:
                return found
        return None
