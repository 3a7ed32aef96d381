"""Integration: the real daemon (``twistd arbiter`` / ``python -m arbiter``) on a real
port, played by an independent WebSocket library (``websockets``), both encodings."""

import json
import os
import re
import signal
import subprocess
import sys

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

TIMEOUT = 10
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")


def start_daemon(*args, twistd=False):
    """Start the server in a subprocess on a free port; returns (process, port)."""
    if twistd:
        exe = os.path.join(os.path.dirname(sys.executable), "twistd")
        proc = subprocess.Popen([exe, "-n", "--pidfile=", "arbiter", "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            m = re.search(r"Site starting on (\d+)", line)
            if m:
                return proc, int(m.group(1))
        raise RuntimeError("twistd arbiter did not start")
    proc = subprocess.Popen([sys.executable, "-m", "arbiter", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    return proc, int(line.strip().split("=")[1])


class Peer:
    """A player on the `websockets` sync client, decoding either encoding."""

    def __init__(self, port, encoding):
        self.encoding = encoding
        sub = "arbiter.v1.%s" % encoding
        self.ws = ws_connect("ws://127.0.0.1:%d/ws" % port, subprotocols=[sub],
                             open_timeout=TIMEOUT)
        assert self.ws.subprotocol == sub
        self.seq = 0
        self.state = None
        self.ack = 0

    def send(self, msg):
        if self.encoding == "json":
            self.ws.send(json.dumps(msg))
        else:
            self.ws.send(msgpack.packb(msg))

    def input(self, t, **fields):
        self.seq += 1
        self.send(dict(fields, t=t, seq=self.seq))
        return self.seq

    def recv(self):
        raw = self.ws.recv(timeout=TIMEOUT)
        if self.encoding == "json":
            assert isinstance(raw, str)
            msg = json.loads(raw)
        else:
            assert isinstance(raw, bytes)
            msg = msgpack.unpackb(raw, strict_map_key=False)
        if msg["t"] == "snapshot":
            self.state, self.ack = msg["state"], msg["ack"]
        elif msg["t"] == "delta":
            merge(self.state, msg["patch"])
            self.ack = msg["ack"]
        return msg

    def until(self, predicate):
        """Read messages until predicate(msg) holds; returns that message."""
        while True:
            msg = self.recv()
            if predicate(msg):
                return msg

    def hello(self, **fields):
        self.send(dict({"t": "hello", "v": 1}, **fields))
        welcome = self.recv()
        assert welcome["t"] == "welcome", welcome
        assert self.recv()["t"] == "snapshot"
        self.you = welcome["you"]
        self.token = welcome["token"]
        return welcome


def merge(target, patch):
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            if not isinstance(target.get(k), dict):
                target[k] = {}
            merge(target[k], v)
        else:
            target[k] = v


@pytest.fixture
def daemon():
    proc, port = start_daemon("--grace", "5")
    yield port
    if proc.poll() is None:
        proc.terminate()
        proc.wait(TIMEOUT)


@pytest.mark.parametrize("enc_a,enc_b", [("json", "msgpack"), ("msgpack", "json")])
def test_scripted_game_with_independent_client(daemon, enc_a, enc_b):
    """Two independent clients play: spawn, order, ownership, chat, leave and rejoin."""
    room = "it-%s" % enc_a
    a, b = Peer(daemon, enc_a), Peer(daemon, enc_b)
    a.hello(name="Ada", room=room)
    b.hello(name="Bob", room=room)
    assert a.until(lambda m: m["t"] == "event")["kind"] == "join"

    s1 = a.input("spawn", at=[1, 1])
    s2 = a.input("spawn", at=[-2, 3])
    a.until(lambda m: m.get("ack", 0) >= s2)
    mine = sorted(int(k) for k, e in a.state["entities"].items()
                  if e["kind"] == "cube" and e["owner"] == a.you)
    assert len(mine) == 2 and s1 < s2

    a.input("order", ids=[mine[0]], to=[4, 1])
    b.until(lambda m: m["t"] == "delta" and b.state["entities"].get(str(mine[0]), {}).get("to") == [4, 1])
    b.until(lambda m: m["t"] == "delta" and b.state["entities"][str(mine[0])]["pos"] == [4, 0.5, 1]
            and "to" not in b.state["entities"][str(mine[0])])

    seq = b.input("delete", id=str(mine[1]))
    rej = b.until(lambda m: m["t"] == "reject")
    assert rej["seq"] == seq and rej["code"] == "not_owner"

    a.input("say", text="gg")
    for p in (a, b):
        ev = p.until(lambda m: m["t"] == "event" and m["kind"] == "say")
        assert ev["player"] == a.you and ev["text"] == "gg"

    a.ws.close()
    assert b.until(lambda m: m["t"] == "event")["kind"] == "leave"
    a2 = Peer(daemon, enc_a)
    w = a2.hello(room=room, token=a.token)
    assert w["you"] == a.you and w["ack"] == a.seq
    assert {int(k) for k, e in a2.state["entities"].items() if e["kind"] == "cube"} == set(mine)
    assert b.until(lambda m: m["t"] == "event")["kind"] == "join"
    a2.ws.close()
    b.ws.close()


def test_oversize_message_closes_1009_on_a_real_socket(daemon):
    """Over a real socket, a message past 65,536 bytes closes with 1009."""
    a = Peer(daemon, "json")
    a.hello()
    a.ws.send('{"t":"ping","ts":1,"pad":"%s"}' % ("x" * 70000))
    with pytest.raises(ConnectionClosed):
        while True:
            a.ws.recv(timeout=TIMEOUT)
    assert a.ws.close_code == 1009


def test_unknown_subprotocol_refused_400(daemon):
    """Offering only unknown subprotocols fails the handshake with HTTP 400."""
    from websockets.exceptions import InvalidStatus
    with pytest.raises(InvalidStatus) as e:
        ws_connect("ws://127.0.0.1:%d/ws" % daemon, subprotocols=["chat"], open_timeout=TIMEOUT)
    assert e.value.response.status_code == 400


def test_twistd_arbiter_serves_and_stops_with_1001():
    """`twistd -n arbiter` serves the page and the socket; SIGTERM closes clients with 1001."""
    import urllib.request
    proc, port = start_daemon(twistd=True)
    try:
        page = urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=TIMEOUT).read()
        assert b"<html" in page.lower()
        a = Peer(port, "json")
        a.hello(name="T")
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                a.ws.recv(timeout=TIMEOUT)
        assert a.ws.close_code == 1001
        # twistd re-raises the signal it stopped on, as a daemon should
        assert proc.wait(TIMEOUT) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
