"""``arbiter-cluster`` (arbiter/tools/cluster.py): N workers next to a Redis of their own,
supervised: both serve the API, a worker killed with SIGKILL comes back, SIGTERM to the
supervisor stops every process it started. Everything is polled with deadlines."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from arbiter.tools import cluster as tool
from cluster_support import wait_until

SCRIPT = os.path.join(os.path.dirname(sys.executable), "arbiter-cluster")
READY = re.compile(r"^worker (\d+) ready: (ws://\S+) \(node (\S+), pid (\d+)\)$")


def free_block(n, tries=50):
    """A port p with p .. p+n-1 all free on 127.0.0.1 now."""
    for _ in range(tries):
        base = tool.free_port()
        if base + n - 1 > 65535:
            continue
        held = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no %d free ports in a row" % n)


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def rooms(http):
    try:
        with urlopen(http + "/api/rooms", timeout=2) as reply:
            return json.loads(reply.read())
    except (URLError, OSError):
        return None


class Supervised:
    """arbiter-cluster as a subprocess; its stdout lines read by a thread into a queue."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self.lines = []
        self._queue = queue.Queue()
        with open(log_path, "wb") as err:
            self.proc = subprocess.Popen([SCRIPT] + args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def why(self, what):
        return ("%s\nstdout so far:\n%s\nstderr:\n%s"
                % (what, "\n".join(self.lines), "\n".join(self.log().splitlines()[-80:])))

    def expect(self, pattern, timeout=30.0):
        """The next stdout line that matches ``pattern`` (a regex): its match."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(self.why("no line like %r within %.0f s"
                                              % (pattern, timeout)))
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(self.why("arbiter-cluster ended (%s) before a line "
                                              "like %r" % (self.proc.wait(), pattern)))
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found


@pytest.fixture
def supervised(tmp_path):
    started = []

    def start(*args):
        s = Supervised(list(args), str(tmp_path / ("cluster-%d.log" % len(started))))
        started.append(s)
        return s

    yield start
    for s in started:                # whatever happened: its workers and Redis die with it
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_two_workers_restart_after_a_kill_and_stop_on_sigterm(supervised):
    base = free_block(2)
    c = supervised("--workers", "2", "--port", str(base), "--start-redis")
    secret = c.expect(r"^secret: ([0-9a-f]{32})$").group(1)
    redis_url, redis_pid = c.expect(r"^redis ready: (redis://127\.0\.0\.1:\d+/0) \(pid (\d+)\)$") \
        .groups()
    workers = {}
    for _ in range(2):
        found = c.expect(READY.pattern)
        workers[int(found.group(1))] = found
    c.expect(r"^cluster ready: 2 workers$")
    assert sorted(workers) == [0, 1]
    host = socket.gethostname()
    for i, found in workers.items():
        assert found.group(2) == "ws://127.0.0.1:%d/ws" % (base + i)
        assert found.group(3) == "%s-%d" % (host, i)
        assert rooms("http://127.0.0.1:%d" % (base + i)) == {"rooms": []}, c.why("no API")
        with open("/proc/%s/cmdline" % found.group(4), "rb") as f:
            argv = f.read().split(b"\0")
        with open("/proc/%s/environ" % found.group(4), "rb") as f:
            environ = f.read().split(b"\0")
        # one Redis, one secret: given in the environment, never on the command line
        assert redis_url.encode() in argv and not any(secret.encode() in a for a in argv)
        assert b"ARBITER_SECRET=" + secret.encode() in environ

    old = int(workers[1].group(4))
    os.kill(old, signal.SIGKILL)
    again = c.expect(r"^worker 1 ready: ", timeout=30)
    new = int(READY.match(again.string).group(4))
    assert new != old and gone(old)
    wait_until(lambda: rooms("http://127.0.0.1:%d" % (base + 1)) == {"rooms": []}, timeout=10,
               message=lambda: c.why("restarted worker 1 does not serve the API"))
    assert "died (killed by SIGKILL); restarting in 0.5 s" in c.log()

    c.proc.send_signal(signal.SIGTERM)
    try:
        code = c.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(c.why("arbiter-cluster did not stop within 30 s of SIGTERM"))
    assert code == 0, c.why("exit code %d" % code)
    pids = [int(workers[0].group(4)), new, int(redis_pid)]
    wait_until(lambda: all(gone(p) for p in pids), timeout=10,
               message=lambda: c.why("left running: %s" % [p for p in pids if not gone(p)]))
    assert "SIGTERM: stopping the workers" in c.log()
    assert "stopped the Redis it started" in c.log()


def test_a_worker_refusing_its_options_stops_the_cluster(supervised):
    """A usage error is not restarted forever: the supervisor stops with exit code 2."""
    base = free_block(1)
    c = supervised("--workers", "1", "--port", str(base), "--redis",
                   "redis://127.0.0.1:%d/0" % tool.free_port(), "--secret", "s",
                   "--", "--no-such-option")
    try:
        code = c.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(c.why("still running"))
    assert code == 2, c.why("exit code %d" % code)
    log = c.log()
    assert "option --no-such-option not recognized" in log
    assert "refused its options" in log and "nothing answers at redis://" in log
    assert "secret:" not in "\n".join(c.lines)            # given, so not printed


def test_options():
    options, extra = tool.parse(["--workers", "3", "--port", "9000", "--", "--max-players", "8"])
    assert (options.workers, options.port, extra) == (3, 9000, ["--max-players", "8"])
    assert options.public_host == "127.0.0.1"
    options, _ = tool.parse(["--interface", "0.0.0.0"])
    assert options.public_host == socket.gethostname()
    assert tool.parse([])[0].workers == (os.cpu_count() or 1)
    workers = tool.workers_for(tool.parse(["--workers", "2", "--public-host", "game.example",
                                           "--node-prefix", "box"])[0],
                               ["--grace", "5"], "redis://r:6379/0", "sss")
    w = workers[1]
    assert (w.port, w.node_id, w.public_url) == (8081, "box-1", "ws://game.example:8081/ws")
    assert w.argv[1:3] == ["-m", "arbiter"] and w.argv[-2:] == ["--grace", "5"]
    assert "--secret" not in w.argv and "sss" not in w.argv   # the secret is not in `ps`
    for bad in (["--port", "0"], ["--workers", "0"], ["--", "--port", "1"],
                ["--", "--secret=x"], ["--start-redis", "--redis", "redis://x:1/0"]):
        with pytest.raises(SystemExit):
            tool.parse(bad)
