"""arbiter-loadtest against a real server in a subprocess: the JSON result is sane."""

import json
import os
import subprocess
import sys
import time
import types
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server_process():
    """``python -m arbiter`` on a free port with the cubes workload's world."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "arbiter", "--port", "0", "--world-size", "100",
         "--cube-speed", "5", "--max-players", "4", "--max-cubes", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    port = None
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ARBITER_PORT="):
            port = int(line.split("=")[1])
            break
    assert port, "server did not start"
    yield proc, port
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("encoding,sync", [("json", "state"), ("msgpack", "state"),
                                           ("msgpack", "compact")])
def test_loadtest_reports_a_sane_run(server_process, encoding, sync):
    """8 bots in rooms of 4: all connect, about 20 updates/s each, acks measured, CPU read."""
    proc, port = server_process
    out = subprocess.run(
        [sys.executable, "-m", "arbiter.tools.loadtest", "--url", "ws://127.0.0.1:%d/ws" % port,
         "-n", "8", "-r", "4", "--encoding", encoding, "--sync", sync, "--warmup", "1",
         "--duration", "3", "--server-pid", str(proc.pid)],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert (r["encoding"], r["sync"], r["procs"]) == (encoding, sync, 1)
    assert "%s, sync %s, 1 process" % (encoding, sync) in out.stderr
    assert r["loadgen_bound"] is (r["loadgen_bottleneck"] is not None)
    assert r["connected"] == 8 and r["failed"] == 0 and r["dropped"] == 0
    assert r["rooms"] == 2
    assert 17 <= r["updates_per_s"] <= 21 and r["updates_per_s_min"] >= 15
    assert r["acks"] >= 8 * 3 * 10 * 0.8          # 10 orders/s per bot over 3 s, acked
    assert 0 < r["lat_p50_ms"] <= r["lat_p99_ms"] < 1000
    assert r["orders_per_s"] > 60
    assert r["bytes_per_client_s"] > 1000
    assert r["cpu"] is not None and 0 < r["cpu"] < 2
    assert r["rss_mb"] > 10 and r["rss_idle_mb"] > 10
    assert r["rejects"] == {} and r["errors"] == {} and r["broken_frames"] == 0
    assert "conn 8/8" in out.stderr              # the progress line
    if sync == "compact":
        assert r["bytes_per_client_s"] < 10000    # 16 moving cubes a room, 20 times a second


def test_loadtest_in_two_processes_merges_their_figures(server_process):
    """--procs 2: 8 bots (4 a process, rooms of 4), every one welcomed by the server; the
    result sums and merges both processes' figures and lists each process."""
    proc, port = server_process
    out = subprocess.run(
        [sys.executable, "-m", "arbiter.tools.loadtest", "--url", "ws://127.0.0.1:%d/ws" % port,
         "-n", "8", "-r", "4", "--sync", "compact", "--warmup", "1", "--duration", "2",
         "--procs", "2", "--cpus", "0-1", "--server-pid", str(proc.pid)],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert (r["N"], r["procs"], r["loadgen_cpus"], r["encoding"]) == (8, 2, [0, 1], "msgpack")
    assert r["connected"] == 8 and r["failed"] == 0 and r["dropped"] == 0 and r["rooms"] == 2
    per = r["loadgen_procs"]
    assert [(p["proc"], p["cpu"], p["N"], p["connected"]) for p in per] == [
        (0, 0, 4, 4), (1, 1, 4, 4)]
    assert len({p["pid"] for p in per}) == 2 and proc.pid not in {p["pid"] for p in per}
    assert r["acks"] == sum(p["acks"] for p in per) >= 8 * 2 * 10 * 0.8
    assert 0 < r["lat_p50_ms"] <= r["lat_p99_ms"] <= r["lat_max_ms"] < 1000
    assert 17 <= r["updates_per_s"] <= 21 and r["updates_per_s_min"] >= 15
    assert r["orders_target_per_s"] == 80 and r["orders_per_s"] > 60
    assert r["loadgen_cpu"] == pytest.approx(sum(p["loadgen_cpu"] for p in per), abs=1e-3)
    assert r["cpu"] is not None and r["bytes_per_client_s"] > 1000
    assert r["loadgen_bound"] is any(p["loadgen_bound"] for p in per)
    assert r["rejects"] == {} and r["errors"] == {} and r["broken_frames"] == 0
    assert "raw" not in r and "2 processes on CPUs 0,1" in out.stderr
    assert "w0 [" in out.stderr and "w1 [" in out.stderr     # each worker's progress
    # the server welcomed every bot: 4 players in each room (they stay out their grace)
    with urllib.request.urlopen("http://127.0.0.1:%d/api/rooms" % port, timeout=10) as f:
        rooms = {x["id"]: x["players"] for x in json.load(f)["rooms"]}
    assert rooms == {"cubes-0": 4, "cubes-1": 4}


def _worker(k, cpu, latencies, ups, **fig):
    """A finished worker of --procs as merge() sees it."""
    figures = {"connected": len(ups), "failed": 0, "dropped": 0, "redirects": 0,
               "window_s": 10.0, "acks": len(latencies), "loadgen_cpu": 0.5,
               "loadgen_lag_p99_ms": 5.0, "orders_per_s": 10.0 * len(ups),
               "orders_target_per_s": 10.0 * len(ups), "updates_per_s": 20.0,
               "updates_per_s_min": 20.0, "lat_p99_ms": max(latencies), "nodes": {"u": len(ups)},
               "rejects": {}, "errors": {"x": 1}}
    figures.update(fig)
    from arbiter.tools.loadtest.run import loadgen_why
    why = loadgen_why(figures)
    figures.update(loadgen_bound=bool(why), loadgen_why=why)
    figures["raw"] = {"wall": 10.0, "bytes": 1000 * len(ups), "ups": ups,
                      "latencies": latencies, "rooms": ["cubes-%d" % k],
                      "msgs": 200 * len(ups), "orders": 100 * len(ups)}
    return types.SimpleNamespace(k=k, cpu=cpu, n=len(ups), pid=100 + k, ready={"ready": k},
                                 result=figures, proc=types.SimpleNamespace(returncode=0))


def test_merge_takes_percentiles_of_all_samples_and_names_the_bound_process():
    """Latency percentiles of the pooled samples (not of each process's), per-bot
    updates pooled for mean and min, and the bound process named."""
    from arbiter.tools.loadtest.procs import merge

    fast = _worker(0, 2, [1.0] * 90, [20.0, 20.0, 20.0])
    slow = _worker(1, 3, [100.0] * 10, [20.0, 14.0], loadgen_cpu=0.95,
                   loadgen_lag_p99_ms=80.0)
    cpus = {"cpu0": (0, 0), "cpu1": (0, 0)}
    a = {"t": 0.0, "server_cpu": 1.0, "cpus": cpus}
    b = {"t": 10.0, "server_cpu": 6.0, "cpus": {"cpu0": (1000, 0), "cpu1": (500, 0)}}
    r = merge({"N": 5}, [fast, slow], a, b, types.SimpleNamespace())
    assert r["lat_p50_ms"] == 1.0 and r["lat_p99_ms"] == 100.0 and r["acks"] == 100
    assert r["updates_per_s"] == pytest.approx(94 / 5) and r["updates_per_s_min"] == 14.0
    assert r["connected"] == 5 and r["rooms"] == 2 and r["nodes"] == {"u": 5}
    assert r["errors"] == {"x": 2} and r["cpu"] == 0.5 and r["loadgen_cpu"] == 1.45
    assert r["bytes_per_client_s"] == 100.0 and r["orders_per_s"] == 50.0
    assert r["loadgen_lag_p99_ms"] == 80.0
    assert r["loadgen_bound"] is True
    assert r["loadgen_why"] == ["process 1 (CPU 3): CPU 0.95 >= 0.9 cores",
                                "process 1 (CPU 3): event loop lateness p99 80 ms > 50 ms"]
    assert "not the server, is the bottleneck: process 1 (CPU 3)" in r["loadgen_bottleneck"]
    assert [p["loadgen_bound"] for p in r["loadgen_procs"]] == [False, True]
    # a process that never reported: its bots count as failed
    gone = types.SimpleNamespace(k=2, cpu=None, n=4, pid=9, ready=None, result=None,
                                 proc=types.SimpleNamespace(returncode=1))
    r = merge({"N": 9}, [fast, slow, gone], a, b, types.SimpleNamespace())
    assert r["failed"] == 4 and "never ready" in r["loadgen_procs"][2]["error"]


def test_loadtest_fails_cleanly_without_server():
    """No server at the URL: exit status 1 and a message, within the bound."""
    out = subprocess.run(
        [sys.executable, "-m", "arbiter.tools.loadtest", "--url", "ws://127.0.0.1:9/ws", "-n", "2",
         "--join-timeout", "3", "--warmup", "0", "--duration", "1", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 1
    assert "no bot joined" in out.stderr
    assert out.stdout == ""


def test_bot_protocol_reads_frames_in_line(monkeypatch):
    """Text and binary frames reach onMessage (cut anywhere), pings get a masked pong,
    and from the first frame of another kind (a close) on the stream is Autobahn's."""
    from twisted.internet.testing import StringTransport
    from arbiter.tools.loadtest import BotProtocol
    from protocols.client import ArbiterClientProtocol
    from protocols.framing import FrameReader, frame

    handed = []
    monkeypatch.setattr(ArbiterClientProtocol, "dataReceived", lambda self, d: handed.append(d))
    monkeypatch.setattr(ArbiterClientProtocol, "onOpen", lambda self: None)
    data = (frame(b'{"a":1}', 1) + frame(b"\x81\xa1b\x02", 2) + frame(b"hb", 9)
            + frame(b"z" * 300, 1) + frame(b"\x03\xe8", 8) + frame(b"x", 1))
    for step in (1, 5, len(data)):
        p = BotProtocol()
        p.state, p._perMessageCompress = p.STATE_OPEN, None
        p.transport = StringTransport()
        p.onOpen()
        got = []
        p.onMessage = lambda payload, binary: got.append((payload, binary))
        del handed[:]
        for i in range(0, len(data), step):
            p.dataReceived(data[i:i + step])
        assert got == [(b'{"a":1}', False), (b"\x81\xa1b\x02", True), (b"z" * 300, False)]
        assert [f for f in FrameReader().read(p.transport.value())] == [(True, 10, b"hb")]
        assert p.transport.value()[1] & 0x80                    # masked
        assert b"".join(handed) == frame(b"\x03\xe8", 8) + frame(b"x", 1) and not p.fast
