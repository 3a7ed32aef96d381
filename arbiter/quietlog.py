"""Logging that no client can flood: the first occurrence in full, then counts.

A server that logs every bad frame or every failing input hands each client a
way to grow its log as fast as it can send. :class:`QuietLog` logs the first
occurrence of each kind (a failure with its traceback, or a line), then only
counts repeats, and logs the count in one line at most every ``every`` seconds
or when :meth:`flush` is called (a connection closing, say).
"""

from twisted.logger import Logger


class QuietLog:
    """First occurrence of each ``key`` logged, repeats counted and summarised."""

    def __init__(self, seconds, log=None, every=60.0, subject=""):
        self._seconds = seconds          # a callable giving the time in seconds
        self._log = log or Logger()
        self._every = every
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
        if self._first(key):
            self._log.warn(fmt + " (repeats are counted, not logged)", **fields)

    def _summarise(self, key):
        n = self._repeats.pop(key, 0)
        self._reported_at[key] = self._seconds()
        if n:
            self._log.warn("{subject}{key}: {n} more since the last report",
                           subject=self.subject and self.subject + ": ", key=key, n=n)

    def flush(self):
        """Log the counts not yet reported."""
        for key in list(self._repeats):
            self._summarise(key)
