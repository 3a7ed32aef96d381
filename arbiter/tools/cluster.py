"""``arbiter-cluster``: N Arbiter nodes on one machine, sharing one Redis (cluster mode).

    arbiter-cluster --workers 4 --port 8080 --start-redis -- --max-players 8

Worker ``i`` (from 0) is ``python -m arbiter`` on port ``PORT + i`` with the public URL
``ws://PUBLIC_HOST:PORT+i/ws`` and the node id ``<hostname>-<i>``; everything after ``--``
is given to every worker. The secret is generated once when not given, so the workers
share it, and printed. ``--start-redis`` starts a local ``redis-server`` on a free port in
a temporary folder (no persistence) and stops it at the end; otherwise ``--redis`` names
the Redis to use.

The supervisor prints one line per worker when it is ready (and again after a restart),
restarts a worker that died unexpectedly (after 0.5 s, doubling while it keeps dying, at
most 30 s), and on SIGINT, SIGTERM or SIGHUP passes the signal on to the workers and
waits for them (SIGKILL after ``--stop-timeout`` seconds, or at a second signal). The
workers and Redis die with it even if it is killed itself (Linux: PR_SET_PDEATHSIG).
Their standard error comes out on its own, each line after ``[node id]``.
"""

import argparse
import ctypes
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

PROG = "arbiter-cluster"
# options arbiter-cluster sets for each worker itself
PER_WORKER = ("--port", "-p", "--interface", "-i", "--redis", "--public-url", "--secret",
              "--node-id")


def log(message):
    print("%s: %s" % (PROG, message), file=sys.stderr, flush=True)


def say(message):
    print(message, flush=True)


def free_port(interface="127.0.0.1"):
    """A TCP port nothing listens on now (someone may take it before it is used)."""
    with socket.socket() as s:
        s.bind((interface, 0))
        return s.getsockname()[1]


def die_with_parent():
    """For ``preexec_fn``: SIGKILL this child when its parent dies (Linux; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:                            # the parent died before prctl
        os._exit(1)


def redis_answers(host, port, timeout=0.5):
    """True when something at host:port answers a Redis PING (PONG, or an error such as
    NOAUTH: a Redis all the same)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    return reply[:1] in (b"+", b"-")


def describe_exit(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit code %d" % code


class RedisError(RuntimeError):
    pass


class LocalRedis:
    """A ``redis-server`` on host:port with its data folder in a temporary directory, no
    persistence (``--save "" --appendonly no``), its output in ``redis.log`` there.

    ``start()`` again after ``stop()`` or ``kill()`` brings it back on the same port, empty.
    ``close()`` stops it and removes the folder.
    """

    def __init__(self, port=None, host="127.0.0.1", executable="redis-server"):
        self.host = host
        self.port = port or free_port(host)
        self.executable = executable
        self.directory = tempfile.mkdtemp(prefix="arbiter-redis-")
        self.log_path = os.path.join(self.directory, "redis.log")
        self.proc = None

    @property
    def url(self):
        return "redis://%s:%d/0" % (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self, timeout=10.0, interrupted=lambda: False):
        """Start it and wait until it answers PING; RedisError (with its log) otherwise."""
        if self.running:
            raise RedisError("redis-server is already running (pid %d)" % self.proc.pid)
        if shutil.which(self.executable) is None:
            raise RedisError("%s not found: install it (Debian: apt-get install redis-server, "
                             "or make redis-deps)" % self.executable)
        argv = [self.executable, "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--dir", self.directory,
                "--daemonize", "no", "--logfile", ""]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.directory,
                                         preexec_fn=die_with_parent, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not redis_answers(self.host, self.port):
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise RedisError("redis-server on port %d ended at start (%s):\n%s"
                                 % (self.port, describe_exit(code), self.log()))
            if interrupted():
                self.kill()
                raise RedisError("interrupted while redis-server was starting")
            if time.monotonic() > deadline:
                self.kill()
                raise RedisError("redis-server on port %d did not answer PING within %.0f s:\n%s"
                                 % (self.port, timeout, self.log()))
            time.sleep(0.02)
        return self

    def stop(self, timeout=10.0):
        """SIGTERM (a clean shutdown, nothing saved) and wait; SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        """SIGKILL and wait: gone at once, as in a crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class Worker:
    def __init__(self, index, port, node_id, public_url, argv):
        self.index = index
        self.port = port
        self.node_id = node_id
        self.public_url = public_url
        self.argv = argv
        self.proc = None
        self.ready = False
        self.ever_ready = False
        self.started_at = 0.0
        self.failures = 0            # unexpected deaths in a row (reset by a long run)
        self.restart_at = None


class Supervisor:
    BACKOFF = 0.5                # first restart delay, seconds; doubles while it keeps dying
    BACKOFF_MAX = 30.0
    STABLE = 30.0                # a worker that ran this long before dying starts over at 0.5 s

    def __init__(self, workers, redis=None, stop_timeout=10.0, secret=""):
        self.workers = workers
        self.secret = secret         # given to the workers as ARBITER_SECRET
        self.redis = redis           # a LocalRedis we started, or None
        self.stop_timeout = stop_timeout
        self.stopping = False
        self.signals = []
        self.kill_at = None
        self.exit_code = 0
        self.all_ready_said = False
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)

    # signals -----------------------------------------------------------------------------
    def install_signals(self):
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum, frame):
        # only noted here: the loop acts on it (printing from a handler can hit a print
        # it interrupted); the wake-up fd ends the loop's select at once
        self.signals.append(signum)

    def handle_signals(self):
        while self.signals:
            signum = self.signals.pop(0)
            if self.stopping:
                log("%s again: killing the workers" % signal.Signals(signum).name)
                self.signal_workers(signal.SIGKILL)
            else:
                log("%s: stopping the workers" % signal.Signals(signum).name)
                self.stop(signum)

    def stop(self, signum=signal.SIGTERM):
        if self.stopping:
            return
        self.stopping = True
        self.kill_at = time.monotonic() + self.stop_timeout
        for w in self.workers:
            w.restart_at = None
        self.signal_workers(signum)

    def signal_workers(self, signum):
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                try:
                    w.proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    # workers -----------------------------------------------------------------------------
    def spawn(self, w):
        # the secret goes by the environment, not the command line that `ps` shows
        env = dict(os.environ, PYTHONUNBUFFERED="1", ARBITER_SECRET=self.secret)
        w.proc = subprocess.Popen(w.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, preexec_fn=die_with_parent,
                                  start_new_session=True)
        w.ready = False
        w.started_at = time.monotonic()
        w.restart_at = None
        for stream, name in ((w.proc.stdout, "out"), (w.proc.stderr, "err")):
            self.selector.register(stream, selectors.EVENT_READ, [w, name, b"", w.proc.pid])

    def on_output(self, key):
        w, name, pending, pid = key.data
        data = os.read(key.fd, 65536)
        if not data:
            self.selector.unregister(key.fileobj)
            key.fileobj.close()
            if pending:
                self.on_line(w, name, pending, pid)
            return
        *lines, key.data[2] = (pending + data).split(b"\n")
        for line in lines:
            self.on_line(w, name, line, pid)

    def on_line(self, w, name, line, pid):
        text = line.decode("utf-8", "replace").rstrip("\r")
        if name == "err":
            sys.stderr.write("[%s] %s\n" % (w.node_id, text))
            sys.stderr.flush()
        elif text.startswith("ARBITER_PORT=") and w.proc is not None and w.proc.pid == pid:
            w.ready = w.ever_ready = True
            say("worker %d ready: %s (node %s, pid %d)" % (w.index, w.public_url, w.node_id, pid))
            if not self.all_ready_said and all(x.ready for x in self.workers):
                self.all_ready_said = True
                say("cluster ready: %d workers" % len(self.workers))
        else:
            say("[%s] %s" % (w.node_id, text))

    def reap(self):
        now = time.monotonic()
        for w in self.workers:
            if w.proc is None:
                continue
            code = w.proc.poll()
            if code is None:
                continue
            pid, w.proc, w.ready = w.proc.pid, None, False
            if self.stopping:
                continue
            if code == 2 and not w.ever_ready:
                log("worker %d (node %s, pid %d) refused its options (%s): stopping"
                    % (w.index, w.node_id, pid, describe_exit(code)))
                self.exit_code = 2
                self.stop()
                continue
            if now - w.started_at >= self.STABLE:
                w.failures = 0
            delay = min(self.BACKOFF_MAX, self.BACKOFF * 2 ** w.failures)
            w.failures += 1
            w.restart_at = now + delay
            log("worker %d (node %s, pid %d) died (%s); restarting in %.1f s"
                % (w.index, w.node_id, pid, describe_exit(code), delay))

    def restarts(self):
        now = time.monotonic()
        for w in self.workers:
            if w.proc is None and w.restart_at is not None and w.restart_at <= now:
                log("restarting worker %d (node %s)" % (w.index, w.node_id))
                self.spawn(w)

    def watch_redis(self):
        if self.redis is not None and self.redis.proc is not None \
                and self.redis.proc.poll() is not None:
            log("the Redis it started (pid %d) ended (%s); its log:\n%s"
                % (self.redis.proc.pid, describe_exit(self.redis.proc.returncode),
                   self.redis.log()))
            self.redis.proc = None

    def timeout(self):
        now = time.monotonic()
        times = [now + 0.5]
        times += [w.restart_at for w in self.workers if w.restart_at is not None]
        if self.kill_at is not None:
            times.append(self.kill_at)
        return max(0.0, min(times) - now)

    def kill_all(self):
        self.signal_workers(signal.SIGKILL)
        for w in self.alive():
            w.proc.wait()
            w.proc = None

    def alive(self):
        return [w for w in self.workers if w.proc is not None]

    def run(self):
        self.handle_signals()
        for w in self.workers:
            if not self.stopping:
                self.spawn(w)
        while not (self.stopping and not self.alive()):
            for key, _ in self.selector.select(self.timeout()):
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                else:
                    self.on_output(key)
            self.handle_signals()
            self.reap()
            self.watch_redis()
            if self.stopping:
                if self.kill_at is not None and time.monotonic() >= self.kill_at and self.alive():
                    log("workers still running after %.0f s: killing them" % self.stop_timeout)
                    self.signal_workers(signal.SIGKILL)
                    self.kill_at = None
            else:
                self.restarts()
        self.drain()
        log("all workers stopped")
        return self.exit_code

    def drain(self, limit=1.0):
        """What the workers wrote just before they ended."""
        deadline = time.monotonic() + limit
        while len(self.selector.get_map()) > 1 and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.05):
                if key.data is not None:
                    self.on_output(key)
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                key.fileobj.close()


def parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [--workers N] [--port 8080] [--interface 127.0.0.1] "
              "[--public-host HOST] [--redis URL | --start-redis] [--secret S] "
              "[-- node options...]",
        description="Start N Arbiter nodes on this machine in cluster mode, sharing one "
                    "Redis, and supervise them: worker i listens on PORT+i. Options after "
                    "-- go to every node (see twistd arbiter --help).")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="how many nodes (default: the number of cores, %(default)s here)")
    p.add_argument("--port", type=int, default=8080,
                   help="port of worker 0; worker i gets PORT+i (default %(default)s)")
    p.add_argument("--interface", default="127.0.0.1",
                   help="interface the workers listen on (default %(default)s)")
    p.add_argument("--public-host", default=None,
                   help="host name in the workers' public URLs ws://HOST:PORT+i/ws "
                        "(default: the interface, or this machine's name when it is 0.0.0.0)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                       help="the Redis the nodes share (default %(default)s)")
    where.add_argument("--start-redis", action="store_true",
                       help="start a redis-server of our own on a free port, no persistence, "
                            "and stop it at the end")
    p.add_argument("--secret", default=None,
                   help="token signing secret shared by the nodes (generated and printed "
                        "when absent)")
    p.add_argument("--node-prefix", default=socket.gethostname(),
                   help="node ids are PREFIX-i (default: this machine's name, %(default)s)")
    p.add_argument("--stop-timeout", type=float, default=10.0,
                   help="seconds the workers get to stop before SIGKILL (default %(default)s)")
    return p


def parse(argv):
    if "--" in argv:
        cut = argv.index("--")
        ours, extra = argv[:cut], argv[cut + 1:]
    else:
        ours, extra = argv, []
    p = parser()
    options = p.parse_args(ours)
    if options.workers < 1:
        p.error("--workers must be at least 1")
    if not 0 < options.port or options.port + options.workers - 1 > 65535:
        p.error("--port must be a fixed port (not 0) with room for %d workers above it"
                % options.workers)
    for arg in extra:
        if arg.split("=", 1)[0] in PER_WORKER:
            p.error("%s is set for each worker by %s; give it before --" % (arg, PROG))
    if options.public_host is None:
        wildcard = options.interface in ("", "0.0.0.0", "::")
        options.public_host = socket.gethostname() if wildcard else options.interface
    return options, extra


def host_in_url(host):
    return "[%s]" % host if ":" in host and not host.startswith("[") else host


def workers_for(options, extra, redis_url, secret):
    workers = []
    for i in range(options.workers):
        port = options.port + i
        node_id = "%s-%d" % (options.node_prefix, i)
        public_url = "ws://%s:%d/ws" % (host_in_url(options.public_host), port)
        argv = [sys.executable, "-m", "arbiter", "--port", str(port),
                "--interface", options.interface, "--redis", redis_url,
                "--public-url", public_url, "--node-id", node_id] + extra
        workers.append(Worker(i, port, node_id, public_url, argv))
    return workers


def main(argv=None):
    options, extra = parse(sys.argv[1:] if argv is None else list(argv))
    secret = options.secret
    if not secret:
        secret = secrets.token_hex(16)
        say("secret: %s" % secret)
    supervisor = Supervisor([], stop_timeout=options.stop_timeout, secret=secret)
    supervisor.install_signals()        # a signal while Redis starts stops before any worker
    redis = None
    try:
        if options.start_redis:
            redis = supervisor.redis = LocalRedis()
            try:
                redis.start(interrupted=lambda: bool(supervisor.signals))
            except RedisError as e:
                log(str(e))
                return 1
            redis_url = redis.url
            say("redis ready: %s (pid %d)" % (redis_url, redis.pid))
        else:
            redis_url = options.redis
            parts = urlsplit(redis_url)
            if parts.scheme == "redis" and not redis_answers(parts.hostname or "127.0.0.1",
                                                              parts.port or 6379):
                log("warning: nothing answers at %s yet (start one: redis-server --port %d "
                    "--save \"\", or use --start-redis)" % (redis_url, parts.port or 6379))
        supervisor.workers = workers_for(options, extra, redis_url, secret)
        return supervisor.run()
    finally:
        supervisor.kill_all()           # none left unless run() itself failed
        if redis is not None:
            redis.close()
            log("stopped the Redis it started")


if __name__ == "__main__":
    sys.exit(main())
