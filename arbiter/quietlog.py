"""Logging that no client can flood: the first occurrence in full, then counts.

A server that logs every bad frame or every failing input hands each client a
way to grow its log as fast as it can send. :class:`QuietLog` logs the first
occurrence of each kind (a failure with its traceback, or a line), then only
counts repeats, and logs the count in one line at most every ``every`` seconds
or when :meth:`flush` is called (a connection closing, say).

A client that opens connection after connection would still get a few lines
for each; a :class:`LogBudget` shared by every connection caps the lines about
clients for the whole server (a burst, then a steady rate) and says how many
it held back.
"""

from twisted.logger import Logger


class LogBudget:
    """Lines a whole server may log about its clients: ``burst`` at once, then
    ``rate`` a second. Lines over it are counted; the next line let through is
    preceded by the count."""

    def __init__(self, seconds, rate=1.0, burst=20, log=None):
        self._seconds = seconds
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = seconds()
        self._log = log or Logger()
        self.held_back = 0               # lines not logged since the last one that was

    def allow(self):
        """True if one more line may be logged now (and the count of the lines
        held back before it has been logged)."""
        now = self._seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self.held_back += 1
            return False
        self._tokens -= 1
        if self.held_back:
            n, self.held_back = self.held_back, 0
            self._log.warn("{n} log lines about clients were held back (over the log budget)",
                           n=n)
        return True


class QuietLog:
    """First occurrence of each ``key`` logged, repeats counted and summarised.

    With a :class:`LogBudget`, lines (not failures, which are the server's own
    bugs) also need the budget's leave."""

    def __init__(self, seconds, log=None, every=60.0, subject="", budget=None):
        self._seconds = seconds          # a callable giving the time in seconds
        self._log = log or Logger()
        self._every = every
        self._budget = budget
        self.subject = subject
        self._repeats = {}               # key -> repeats not yet reported
        self._reported_at = {}           # key -> time of the last line for it

    def _first(self, key):
        """True (and noted) if ``key`` has not been logged yet; else count it."""
        if key not in self._reported_at:
            self._reported_at[key] = self._seconds()
            return True
        self._repeats[key] = self._repeats.get(key, 0) + 1
        if self._seconds() - self._reported_at[key] >= self._every:
            self._summarise(key)
        return False

    def failure(self, key, fmt, **fields):
        """Call inside ``except``: the traceback the first time, then a count."""
        if self._first(key):
            self._log.failure(fmt + " (repeats are counted, not logged)", **fields)

    def warn(self, key, fmt, **fields):
        """A line the first time, then a count."""
        if self._first(key) and (self._budget is None or self._budget.allow()):
            self._log.warn(fmt + " (repeats are counted, not logged)", **fields)

    def _summarise(self, key):
        n = self._repeats.pop(key, 0)
        self._reported_at[key] = self._seconds()
        if n and (self._budget is None or self._budget.allow()):
            self._log.warn("{subject}{key}: {n} more since the last report",
                           subject=self.subject and self.subject + ": ", key=key, n=n)

    def flush(self):
        """Log the counts not yet reported."""
        for key in list(self._repeats):
            self._summarise(key)
