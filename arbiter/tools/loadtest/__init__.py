"""``arbiter-loadtest``: N bots play the "cubes" workload against an Arbiter server.

    arbiter-loadtest --url ws://127.0.0.1:8080/ws -n 400 -r 8 --encoding msgpack \\
        --warmup 5 --duration 20 --server-pid 1234

Each bot is an :class:`protocols.client.ArbiterClient`: it joins room
``<prefix>-<k>`` (R bots a room), spawns 4 cubes, then every 100 ms (random
phase) orders one of its cubes (round-robin) to a random point of the plane.
Every bot decodes and applies every state message to its mirror, as a real
client must (``--sync state|intent|compact``; compact frames with
``arbiter.compact.CompactMirror``). Latency runs from sending an ``order`` to the first state message
whose ``ack`` covers it, decode and apply included.

A progress line goes to stderr once a second; at the end one JSON object goes to
stdout (see docs/LOADTEST.md for its fields). The run always ends by itself:
joins are bounded by ``--join-timeout``, then warm-up, window and grace, with a
hard stop after all of that. ``--procs K`` runs the bots in K worker processes
(``--cpus`` pins them) and merges their figures, saying which process, if any, was
the bottleneck rather than the server.

The package: :mod:`.bot` (the bot), :mod:`.fast` (its socket protocol, framing
in-line), :mod:`.run` (:class:`LoadTest`, one run), :mod:`.procs` (``--procs``: the
workers and the merge), :mod:`.stats` (figures from the bots and /proc) and
:mod:`.cli` (the options and ``main``).
"""

from arbiter.tools.loadtest.bot import Bot
from arbiter.tools.loadtest.cli import main, parser  # noqa: F401
from arbiter.tools.loadtest.fast import BotProtocol, peek_ack  # noqa: F401
from arbiter.tools.loadtest.run import ENCODINGS, LoadTest  # noqa: F401
from arbiter.tools.loadtest.stats import ProcSampler, cpu_times, percentile  # noqa: F401

__all__ = ["Bot", "LoadTest", "main", "percentile", "ProcSampler"]
