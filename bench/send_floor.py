#!/usr/bin/env python3
"""The floor under the state path: one small send per client per state tick, nothing else.

    python bench/send_floor.py                 # 400 clients, 20 sends/s each, 10 s, 3 runs
    python bench/send_floor.py -n 400 --size 170 --runs 5

A server of the cubes benchmark sends every client one WebSocket frame per state tick
(400 clients x 20 Hz = 8,000 frames a second at N = 400). This measures what those sends
cost in CPython alone: ``n`` TCP connections on 127.0.0.1 (socketpairs would skip TCP),
one ``socket.send`` of ``size`` bytes per connection per tick, the sender's CPU time per
second (its process time; the kernel's loopback delivery is charged to it, as it is to a
real server). The receiving side drains in a second process, so its reads are not
counted. No Twisted, no Autobahn, no encoding: a lower bound on any CPython server that
writes one frame per client per tick.

``--twisted``: the same sends from a Twisted reactor (a LoopingCall writing each frame
with ``protocols.framing.write_now``, as the server does), while the other process sends
every connection ``--inputs`` small frames a second, which the reactor reads and drops:
the floor of the server's stack (reactor, TCP transports) with no WebSocket parsing, no
game and no encoding.
"""

import argparse
import os
import socket
import statistics
import sys
import time


def _feed(port, n, inputs, seconds, ready_w):
    """Child of --twisted: ``n`` connections that each send ``inputs`` 24-byte frames a
    second and drain what they get."""
    import selectors
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for c in conns:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
    os.write(ready_w, b"x")
    msg = b"\x82\x96" + os.urandom(4) + os.urandom(22)[:18]
    period = 1.0 / max(inputs, 1) / n
    end = time.monotonic() + seconds
    next_at = time.monotonic()
    i = 0
    while time.monotonic() < end:
        if inputs:
            try:
                conns[i % n].send(msg)
            except OSError:          # the server is done and closed: so are we
                break
            i += 1
            next_at += period
        timeout = max(0.0, next_at - time.monotonic()) if inputs else 0.05
        for key, _ in sel.select(timeout):
            try:
                key.fileobj.recv(65536)
            except BlockingIOError:
                pass
    for c in conns:
        c.close()
    os._exit(0)


def run_twisted(n, size, rate, inputs, seconds):
    from twisted.internet import reactor, protocol, task
    from protocols.framing import write_now
    frame = b"\x82\x7e" + (size - 4).to_bytes(2, "big") + os.urandom(size - 4) \
        if size >= 128 else b"\x82" + bytes((size - 2,)) + os.urandom(size - 2)
    conns = []

    class Sink(protocol.Protocol):
        def connectionMade(self):
            self.transport.setTcpNoDelay(True)
            conns.append(self.transport)

        def dataReceived(self, data):
            pass

    f = protocol.Factory.forProtocol(Sink)
    port = reactor.listenTCP(0, f, interface="127.0.0.1", backlog=n + 16)
    child = {}

    def fork():
        # from inside the running reactor, so that it accepts while the child connects
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _feed(port.getHost().port, n, inputs, seconds + 3, w)
            finally:
                os._exit(0)          # (never back into the parent's reactor)
        child["pid"] = pid
        wait_connected()

    result = {}

    def tick():
        for t in conns:
            write_now(t, frame)

    loop = task.LoopingCall(tick)

    def start():
        result["cpu0"] = time.process_time()
        loop.start(1.0 / rate)
        reactor.callLater(seconds, stop)

    def stop():
        result["cpu"] = (time.process_time() - result["cpu0"]) / seconds
        loop.stop()
        reactor.stop()

    def wait_connected():
        if len(conns) < n:
            reactor.callLater(0.05, wait_connected)
        else:
            start()

    reactor.callWhenRunning(fork)
    reactor.run()
    os.waitpid(child["pid"], 0)
    return result["cpu"]


def _drain(port, n, ready_w):
    """Child: accept ``n`` connections and read until they close."""
    import selectors
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(n)
    os.write(ready_w, b"x")
    sel = selectors.DefaultSelector()
    open_ = 0
    for _ in range(n):
        c, _ = ls.accept()
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        open_ += 1
    while open_:
        for key, _ in sel.select():
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_ -= 1
    os._exit(0)


def run(n, size, rate, seconds):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _drain(port, n, w)
    os.read(r, 1)
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns.append(s)
    frame = b"\x82" + bytes((size - 2,)) + os.urandom(size - 2) if size < 128 else \
        b"\x82\x7e" + (size - 4).to_bytes(2, "big") + os.urandom(size - 4)
    period = 1.0 / rate
    ticks = int(seconds * rate)
    cpu0 = time.process_time()
    next_at = time.monotonic()
    for _ in range(ticks):
        for s in conns:
            s.send(frame)
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    cpu = time.process_time() - cpu0
    for s in conns:
        s.close()
    os.waitpid(pid, 0)
    return cpu / seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=400, help="connections")
    p.add_argument("--size", type=int, default=170,
                   help="bytes per frame (the compact sync at 400:8 sends ~170)")
    p.add_argument("--rate", type=int, default=20, help="sends per connection per second")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--twisted", action="store_true",
                   help="send from a Twisted reactor that also reads --inputs frames/s per "
                        "connection (one run per process: the reactor cannot restart)")
    p.add_argument("--inputs", type=int, default=10,
                   help="--twisted: frames a second each connection sends (the benchmark's "
                        "bots order every 100 ms)")
    a = p.parse_args(argv)
    if a.twisted:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cpu = run_twisted(a.n, a.size, a.rate, a.inputs, a.seconds)
        print("twisted n=%d size=%d rate=%d inputs=%d/s: server CPU %.3f cores"
              % (a.n, a.size, a.rate, a.inputs, cpu))
        return
    cores = [run(a.n, a.size, a.rate, a.seconds) for _ in range(a.runs)]
    print("n=%d size=%d rate=%d: sender CPU %.3f cores (median of %d: %s)"
          % (a.n, a.size, a.rate, statistics.median(cores), a.runs,
             ", ".join("%.3f" % c for c in cores)))


if __name__ == "__main__":
    sys.exit(main())
