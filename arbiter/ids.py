"""Player ids that are not handed out twice, not even by two runs of the server.

A restart loses every room, player and token (docs/EXTENSIONS.md, "What a
restart loses"); if the new process counted ``p1``, ``p2``… again, a client's
old id would name somebody else. Each :class:`PlayerIds` therefore carries a
random suffix drawn when it is made (once per process): ``p1-k3x9``,
``p2-k3x9``…, the counter first so ids stay short and readable.
"""

import itertools
import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class PlayerIds:
    """An iterator of fresh player ids: ``p<n>-<suffix>``."""

    def __init__(self, suffix=None):
        if suffix is None:
            suffix = "".join(secrets.choice(_ALPHABET) for _ in range(5))
        self.suffix = suffix
        self._count = itertools.count(1)

    def __iter__(self):
        return self

    def __next__(self):
        return "p%d-%s" % (next(self._count), self.suffix)
