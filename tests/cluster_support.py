"""Cluster-mode test support: a real ``redis-server`` and real Arbiter nodes as subprocesses.

    def test_something(redis_server, cluster):
        a, b, c = cluster(3)                     # three nodes on one Redis, one secret
        urlopen(a.http + "/api/rooms")
        redis_server.cli("EXISTS", "arbiter:node:" + a.node_id)   # -> "1"
        b.kill()                                 # SIGKILL: a crash
        redis_server.stop(); redis_server.start()   # Redis restarts empty, same port

:class:`RedisServer` is Debian's ``redis-server`` on a free port of 127.0.0.1 in a temporary
folder, without persistence. :class:`ClusterNode` is ``python -m arbiter`` in cluster mode on
a free port; its standard error is kept in a file, and every error about it (it died, a
wait timed out) carries that log. :class:`Cluster` is the ``cluster`` fixture: it starts
nodes that share the ``redis_server`` fixture and one secret, and stops them all after the
test. Nothing outlives a test: the fixtures stop what they started whatever happened, an
``atexit`` hook kills whatever is left, and every process here gets SIGKILL if pytest
itself dies (Linux's parent-death signal).
"""

import atexit
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

from arbiter.tools.cluster import LocalRedis, RedisError, describe_exit, die_with_parent, free_port

__all__ = ["RedisServer", "RedisError", "ClusterNode", "NodeError", "Cluster", "free_port",
           "wait_until"]

_LIVE = set()          # everything started here and not yet stopped, for the atexit hook


@atexit.register
def _kill_leftovers():
    for thing in list(_LIVE):
        try:
            thing.kill()
        except Exception:
            pass


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Poll ``predicate()`` until it is true; AssertionError after ``timeout`` seconds.
    ``message`` may be a callable, called only then (for a log, say)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError("not within %.1f s: %s" % (timeout, text))
        time.sleep(interval)


class RedisServer(LocalRedis):
    """``redis-server`` on 127.0.0.1:``port`` (a free one by default), not started yet.

    ``start()`` starts it and waits until it answers PING (returns self); ``stop()`` shuts it
    down and waits; ``kill()`` is SIGKILL; ``start()`` again brings it back on the same port,
    empty. ``url`` is ``redis://127.0.0.1:PORT/0``; ``cli(*args)`` runs one command through
    ``redis-cli`` and returns what it printed; ``close()`` stops it and removes its folder.
    """

    def start(self, timeout=10.0):
        _LIVE.add(self)
        super().start(timeout)
        return self

    def stop(self, timeout=10.0):
        super().stop(timeout)
        _LIVE.discard(self)

    def kill(self):
        super().kill()
        _LIVE.discard(self)

    def cli(self, *args, timeout=10.0):
        """``redis-cli -h 127.0.0.1 -p PORT ARGS...``: its output without the last newline
        ("1", "PONG", one line per element of a list...). An error reply comes back as text
        ("ERR ..."); RedisError when redis-cli itself fails (no server there, say)."""
        argv = ["redis-cli", "-h", self.host, "-p", str(self.port)] + [str(a) for a in args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RedisError("%s failed (%s): %s%s" % (" ".join(argv),
                                                       describe_exit(done.returncode),
                                                       done.stdout, done.stderr))
        return done.stdout.rstrip("\n")

    def __repr__(self):
        return "<RedisServer %s %s>" % (self.url, "pid %d" % self.pid if self.pid else "stopped")


class NodeError(RuntimeError):
    """A node died or did not get ready in time; the message carries its log."""


class ClusterNode:
    """One ``python -m arbiter`` node in cluster mode, as a subprocess on 127.0.0.1.

    ``redis``: the :class:`RedisServer` it shares. ``secret=None`` leaves ``--secret`` out
    (the node then refuses to start). ``args``: more command-line options. The port is
    chosen free beforehand, so ``http``, ``ws_url`` and the ``--public-url`` are known before
    it starts.
    """

    def __init__(self, redis, *, secret, node_id=None, port=None, args=(), log_dir=None):
        self.redis = redis
        self.secret = secret
        self.node_id = node_id or "node-%s" % secrets.token_hex(3)
        self.port = port or free_port()
        self.http = "http://127.0.0.1:%d" % self.port
        self.ws_url = "ws://127.0.0.1:%d/ws" % self.port
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="arbiter-node-")
        self.stdout_path = os.path.join(self.log_dir, "%s.stdout" % self.node_id)
        self.stderr_path = os.path.join(self.log_dir, "%s.log" % self.node_id)
        self.argv = [sys.executable, "-m", "arbiter", "--port", str(self.port),
                     "--interface", "127.0.0.1", "--redis", redis.url,
                     "--public-url", self.ws_url]
        if secret is not None:
            self.argv += ["--secret", secret]
        self.argv += ["--node-id", self.node_id] + [str(a) for a in args]
        self.proc = None

    # starting ----------------------------------------------------------------------------
    def start(self, registered=True, timeout=30.0):
        """Start it and wait until it is ready (see :meth:`wait_ready`); returns self."""
        self.spawn()
        self.wait_ready(registered=registered, timeout=timeout)
        return self

    def spawn(self):
        """Start the process without waiting."""
        if self.running:
            raise NodeError("%s is already running (pid %d)" % (self.node_id, self.pid))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=env, preexec_fn=die_with_parent,
                                         start_new_session=True)
        _LIVE.add(self)
        return self

    def wait_ready(self, registered=True, timeout=30.0):
        """Wait until it prints ``ARBITER_PORT=`` and, when ``registered``, until its key
        ``arbiter:node:<id>`` exists in Redis; NodeError (with its log) if it dies first or
        ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        what = "listening (ARBITER_PORT= on stdout)"
        while not self._printed_port():
            self._check(deadline, what, timeout)
            time.sleep(0.02)
        if registered:
            what = "its key arbiter:node:%s in Redis" % self.node_id
            while self.redis.cli("EXISTS", "arbiter:node:%s" % self.node_id) != "1":
                self._check(deadline, what, timeout)
                time.sleep(0.05)
        return self

    def _printed_port(self):
        try:
            with open(self.stdout_path, encoding="utf-8", errors="replace") as f:
                return "ARBITER_PORT=" in f.read()
        except OSError:
            return False

    def _check(self, deadline, what, timeout):
        if self.proc is None:
            raise NodeError(self.why("is not running"))
        code = self.proc.poll()
        if code is not None:
            _LIVE.discard(self)
            raise NodeError(self.why("ended (%s) while waiting for %s" % (describe_exit(code),
                                                                          what)))
        if time.monotonic() > deadline:
            raise NodeError(self.why("still not ready after %.0f s: waiting for %s"
                                     % (timeout, what)))

    # stopping ----------------------------------------------------------------------------
    def kill(self):
        """SIGKILL and wait: a crash."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        _LIVE.discard(self)

    def stop(self, timeout=10.0):
        """SIGTERM and wait (a clean shutdown); SIGKILL and NodeError after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise NodeError(self.why("did not stop within %.0f s of SIGTERM; killed"
                                         % timeout))
        _LIVE.discard(self)

    # looking at it -------------------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    def log(self):
        """Everything it wrote to standard error so far (across restarts)."""
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def why(self, what, tail=60):
        lines = self.log().splitlines()
        shown = "\n".join(lines[-tail:]) or "(nothing)"
        return ("node %s (port %d, pid %s) %s\ncommand: %s\nits log (%s, last %d lines):\n%s"
                % (self.node_id, self.port, self.pid, what, " ".join(self.argv),
                   self.stderr_path, tail, shown))

    def __repr__(self):
        return "<ClusterNode %s %s pid=%s>" % (self.node_id, self.http, self.pid)


class Cluster:
    """The ``cluster`` fixture: ``cluster(n=3, **kw)`` starts n nodes on ``redis`` with one
    shared ``secret`` and returns them (a list of :class:`ClusterNode`), all started at once
    and then waited for. ``kw``: ``args`` (more options for each node), ``registered`` and
    ``timeout`` (see :meth:`ClusterNode.wait_ready`), ``secret`` (another one, or None for
    none), and ``node_id`` / ``port`` when n is 1.
    Node ids are ``node-0``, ``node-1``, ... across calls. ``nodes`` lists every node started;
    ``close()`` stops them all."""

    def __init__(self, redis, log_dir=None, secret=None):
        self.redis = redis
        self.secret = secret or secrets.token_hex(16)
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="arbiter-cluster-")
        self.nodes = []

    def __call__(self, n=3, *, args=(), registered=True, timeout=30.0, **kw):
        if n != 1 and ({"node_id", "port"} & set(kw)):
            raise TypeError("node_id and port are for one node at a time (n=1)")
        secret = kw.pop("secret", self.secret)
        given_id = kw.pop("node_id", None)
        new = []
        for _ in range(n):
            node = ClusterNode(self.redis, secret=secret,
                               node_id=given_id or "node-%d" % len(self.nodes), args=args,
                               log_dir=self.log_dir, **kw)
            self.nodes.append(node)
            new.append(node.spawn())
        deadline = time.monotonic() + timeout
        for node in new:
            node.wait_ready(registered=registered,
                            timeout=max(0.1, deadline - time.monotonic()))
        return new

    def node(self, **kw):
        """One more node: ``cluster.node(...)`` is ``cluster(1, ...)[0]``."""
        return self(1, **kw)[0]

    def close(self, timeout=10.0):
        """SIGTERM to every running node, then wait for each (SIGKILL after ``timeout``)."""
        for node in self.nodes:
            if node.running:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        stuck = []
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stuck.append(node.why("did not stop within %.0f s of SIGTERM; killed"
                                      % timeout))
            node.kill()
        if stuck:
            raise NodeError("\n\n".join(stuck))
