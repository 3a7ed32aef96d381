"""arbiter-loadtest against a real server in a subprocess: the JSON result is sane."""

import json
import os
import subprocess
import sys
import time

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


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_loadtest_reports_a_sane_run(server_process, encoding):
    """8 bots in rooms of 4: all connect, about 20 updates/s each, acks measured, CPU read."""
    proc, port = server_process
    out = subprocess.run(
        [sys.executable, "-m", "arbiter.tools.loadtest", "--url", "ws://127.0.0.1:%d/ws" % port,
         "-n", "8", "-r", "4", "--encoding", encoding, "--warmup", "1", "--duration", "3",
         "--server-pid", str(proc.pid)],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["connected"] == 8 and r["failed"] == 0 and r["dropped"] == 0
    assert r["rooms"] == 2
    assert 17 <= r["updates_per_s"] <= 21 and r["updates_per_s_min"] >= 15
    assert r["acks"] >= 8 * 3 * 10 * 0.8          # 10 orders/s per bot over 3 s, acked
    assert 0 < r["lat_p50_ms"] <= r["lat_p99_ms"] < 1000
    assert r["orders_per_s"] > 60
    assert r["bytes_per_client_s"] > 1000
    assert r["cpu"] is not None and 0 < r["cpu"] < 2
    assert r["rss_mb"] > 10 and r["rss_idle_mb"] > 10
    assert r["rejects"] == {} and r["errors"] == {}
    assert "conn 8/8" in out.stderr              # the progress line


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
