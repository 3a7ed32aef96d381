"""LAN discovery (docs/LAN.md): the announcement datagram, the listener's checks and
limits on a task.Clock with a fake multicast transport, GET /api/lan, the wiring in
makeService; and, in a network namespace this test creates (never on a real
network), two real servers and ``arbiter-discover`` hearing each other."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.logger import Logger

from arbiter.app import lan
from arbiter.app.lan import (MAX_DATAGRAM, SOURCE_BURST, SOURCE_RATE, BadAnnouncement,
                             LanListener, LanService, parse_announcement)
from arbiter.app.testing import InMemoryServer
from arbiter.config import Config
from netns_support import loopback_namespace, run

GROUP = "239.255.42.99"


# -- fakes -------------------------------------------------------------------------------

class FakeMulticastPort:
    """What LanService and LanListener use of a MulticastPort, recorded."""

    def __init__(self, port, protocol, join_error=None):
        self.port = port
        self.protocol = protocol
        self.written = []                # (datagram, (host, port))
        self.groups = set()
        self.loopback = None
        self.ttl = None
        self.listening = True
        self.join_error = join_error

    def write(self, data, addr):
        self.written.append((data, addr))

    def setLoopbackMode(self, mode):
        self.loopback = mode

    def setTTL(self, ttl):
        self.ttl = ttl

    def joinGroup(self, addr, interface=""):
        if self.join_error is not None:
            return defer.fail(self.join_error)
        self.groups.add(addr)
        return defer.succeed(None)

    def leaveGroup(self, addr, interface=""):
        self.groups.discard(addr)
        return defer.succeed(None)

    def stopListening(self):
        self.listening = False
        self.protocol.doStop()
        return defer.succeed(None)


class FakeReactor(task.Clock):
    """A task.Clock that also 'listens' for multicast with a FakeMulticastPort."""

    def __init__(self, join_error=None):
        super().__init__()
        self.ports = []
        self.join_error = join_error

    def listenMulticast(self, port, protocol, interface="", maxPacketSize=8192,
                        listenMultiple=False):
        p = FakeMulticastPort(port, protocol, self.join_error)
        p.max_packet_size = maxPacketSize
        p.listen_multiple = listenMultiple
        self.ports.append(p)
        protocol.makeConnection(p)
        return p


def events_log():
    events = []
    return events, Logger(observer=events.append)


def warnings_about(events, kind):
    return [e for e in events if e.get("kind") == kind]


def announcement(**changes):
    fields = {"v": 1, "app": "arbiter", "id": "a1b2c3", "name": "alpha", "port": 8080,
              "url": "http://10.0.0.5:8080/", "ws_url": "ws://10.0.0.5:8080/ws",
              "rooms": 2, "players": 5, "max_players": 16}
    for key, value in changes.items():
        if value is DROP:
            fields.pop(key, None)
        else:
            fields[key] = value
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


DROP = object()


def listener(forget_after=6.0, own_id=None):
    clock = task.Clock()
    clock.advance(1000)
    events, log = events_log()
    heard = LanListener(clock, GROUP, forget_after=forget_after, own_id=own_id, log=log)
    return clock, heard, events


# -- the datagram and its checks --------------------------------------------------------

def test_a_valid_announcement_is_listed_with_its_fields_and_source_address():
    clock, heard, events = listener()
    heard.datagramReceived(announcement(), ("10.0.0.5", 34997))
    clock.advance(1.25)
    assert heard.servers() == [{
        "name": "alpha", "id": "a1b2c3", "url": "http://10.0.0.5:8080/",
        "ws_url": "ws://10.0.0.5:8080/ws", "rooms": 2, "players": 5, "max_players": 16,
        "address": "10.0.0.5", "age": 1.2, "self": False}]
    assert events == []


def test_without_urls_the_host_is_the_address_the_datagram_came_from():
    clock, heard, _ = listener()
    heard.datagramReceived(announcement(url=DROP, ws_url=DROP, port=9000, max_players=DROP),
                           ("192.168.1.20", 34997))
    [server] = heard.servers()
    assert server["url"] == "http://192.168.1.20:9000/"
    assert server["ws_url"] == "ws://192.168.1.20:9000/ws"
    assert "max_players" not in server


def test_servers_are_sorted_by_name_and_the_latest_announcement_wins():
    clock, heard, _ = listener(own_id="b")
    heard.datagramReceived(announcement(id="b", name="zulu"), ("10.0.0.1", 1))
    heard.datagramReceived(announcement(id="a", name="alpha", rooms=1), ("10.0.0.2", 1))
    heard.datagramReceived(announcement(id="a", name="alpha", rooms=7), ("10.0.0.3", 1))
    servers = heard.servers()
    assert [(s["name"], s["rooms"], s["address"], s["self"]) for s in servers] == [
        ("alpha", 7, "10.0.0.3", False), ("zulu", 2, "10.0.0.1", True)]


def test_a_server_is_forgotten_after_three_intervals():
    clock, heard, _ = listener(forget_after=3 * 2.0)
    heard.datagramReceived(announcement(), ("10.0.0.5", 34997))
    clock.advance(5.9)
    assert [s["name"] for s in heard.servers()] == ["alpha"]
    heard.datagramReceived(announcement(), ("10.0.0.5", 34997))     # heard again: kept
    clock.advance(5.9)
    assert [s["name"] for s in heard.servers()] == ["alpha"]
    clock.advance(0.2)
    assert heard.servers() == []


def oversized():
    data = announcement()
    return data[:-1] + b" " * (MAX_DATAGRAM + 1 - len(data)) + b"}"


MALFORMED = [
    ("not_json", b"{not json"),
    ("not_json", b'{"v":NaN}'),
    ("not_json", announcement()[:-1] + b',"v":1}'),              # a duplicate key
    ("not_object", b"[1,2,3]"),
    ("not_object", b'"arbiter"'),
    ("bad_version", announcement(v=2)),
    ("bad_version", announcement(v=True)),
    ("bad_version", announcement(v=DROP)),
    ("not_arbiter", announcement(app="colyseus")),
    ("unknown_field", announcement(extra=1)),
    ("missing_field", announcement(rooms=DROP)),
    ("bad_field", announcement(rooms="3")),
    ("bad_field", announcement(players=-1)),
    ("bad_field", announcement(players=True)),
    ("bad_field", announcement(players=1.5)),
    ("bad_field", announcement(port=70000)),
    ("bad_field", announcement(name="")),
    ("bad_field", announcement(name="x" * 65)),
    ("bad_field", announcement(name="evil\nline")),
    ("bad_field", announcement(id="has space")),
    ("bad_field", announcement(url=5)),
    ("bad_url", announcement(url="ftp://10.0.0.5/")),
    ("bad_url", announcement(ws_url="javascript:alert(1)")),
    ("bad_url", announcement(ws_url="http://10.0.0.5:8080/ws")),
    ("bad_url", announcement(url="http://user:pw@10.0.0.5/")),
    ("bad_url", announcement(url="http://10.0.0.5:99999/")),
    ("bad_url", announcement(url="http://" + "a" * 130 + "/")),
    ("bad_url", announcement(url="http:///nohost")),
    ("oversized", oversized()),
    ("not_utf8", b'{"v":1,"name":"\xff\xfe"}'),
]


@pytest.mark.parametrize("kind,data", MALFORMED,
                         ids=["%s-%d" % (k, i) for i, (k, _) in enumerate(MALFORMED)])
def test_parse_rejects_each_kind_of_malformed_datagram(kind, data):
    with pytest.raises(BadAnnouncement) as raised:
        parse_announcement(data, "10.0.0.5")
    assert raised.value.kind == kind


def test_no_urls_and_no_source_address_is_rejected():
    with pytest.raises(BadAnnouncement) as raised:
        parse_announcement(announcement(url=DROP, ws_url=DROP), "0.0.0.0")
    assert raised.value.kind == "no_address"


def test_malformed_datagrams_are_ignored_and_each_kind_logged_once():
    clock, heard, events = listener()
    kinds = sorted({k for k, _ in MALFORMED})
    for round_ in range(3):
        for i, (kind, data) in enumerate(MALFORMED):
            heard.datagramReceived(data, ("10.0.%d.%d" % (round_, i), 34997))   # no bucket hit
    assert heard.servers() == []
    for kind in kinds:
        lines = warnings_about(events, kind)
        assert len(lines) == 1, (kind, lines)
        assert "10.0.0." in lines[0]["source"]
    assert len(events) == len(kinds)
    assert heard.dropped == {k: 3 * sum(1 for m, _ in MALFORMED if m == k) for k in kinds}
    # a valid one after all that is still heard
    heard.datagramReceived(announcement(), ("10.0.9.9", 34997))
    assert [s["name"] for s in heard.servers()] == ["alpha"]


def test_a_flood_from_one_address_is_dropped_before_parsing(monkeypatch):
    clock, heard, events = listener()
    parsed = []
    real = lan.parse_announcement
    monkeypatch.setattr(lan, "parse_announcement", lambda *a: parsed.append(1) or real(*a))
    for _ in range(5000):
        heard.datagramReceived(announcement(), ("10.6.6.6", 34997))
    assert len(parsed) == SOURCE_BURST
    assert heard.dropped == {"rate_limited": 5000 - SOURCE_BURST}
    assert len(warnings_about(events, "rate_limited")) == 1 and len(events) == 1
    # another address is not held back by the flood
    heard.datagramReceived(announcement(id="other", name="beta"), ("10.0.0.7", 34997))
    assert [s["name"] for s in heard.servers()] == ["alpha", "beta"]
    # the flooding address gets its rate back as time passes
    clock.advance(1.0)
    for _ in range(100):
        heard.datagramReceived(announcement(), ("10.6.6.6", 34997))
    assert len(parsed) == SOURCE_BURST + 1 + int(SOURCE_RATE)


def test_one_address_cannot_fill_the_list_with_made_up_ids():
    clock, heard, events = listener(forget_after=1000.0)
    for i in range(100):
        clock.advance(1.0)                   # under the rate limit
        heard.datagramReceived(announcement(id="fake%d" % i), ("10.6.6.6", 34997))
    assert len(heard.servers()) == lan.MAX_SERVERS_PER_SOURCE
    assert len(warnings_about(events, "too_many_servers")) == 1


# -- LanService: what it announces, on a fake reactor ------------------------------------

@pytest.fixture
def memory_server(txaio_clock):
    servers = []

    def make(config=None):
        s = InMemoryServer(config or Config(port=0))
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def start_lan(service, port=4321, **kwargs):
    reactor = FakeReactor(kwargs.pop("join_error", None))
    events, log = events_log()
    lan_service = LanService(service, reactor=reactor, port_getter=lambda: port, log=log,
                             **kwargs)
    lan_service.startService()
    return lan_service, reactor, reactor.ports[0], events


def sent(udp):
    return [parse_announcement(data, "10.0.0.1") for data, _ in udp.written]


def test_the_service_joins_the_group_and_announces_every_interval(memory_server):
    server = memory_server(Config(port=0, lan_interval=2.0, lan_name="alpha"))
    lan_service, reactor, udp, events = start_lan(server.service)
    assert server.service.lan is lan_service
    assert udp.port == 34997 and udp.listen_multiple and udp.max_packet_size == MAX_DATAGRAM + 1
    assert udp.groups == {GROUP} and udp.loopback and udp.ttl == 1
    assert len(udp.written) == 1                                 # one at once
    reactor.advance(2.0)
    reactor.advance(2.0)
    assert len(udp.written) == 3
    assert {addr for _, addr in udp.written} == {(GROUP, 34997)}
    first = sent(udp)[0]
    assert first["name"] == "alpha" and first["id"] == lan_service.id
    assert first["url"] == "http://127.0.0.1:4321/"
    assert first["ws_url"] == "ws://127.0.0.1:4321/ws"


def test_announcements_are_small_and_carry_the_rooms_and_players(memory_server):
    server = memory_server(Config(port=0, lan_interval=1.0))
    server.join("A", room="one")
    server.join("B", room="one")
    server.join("C", room="two")
    lan_service, reactor, udp, _ = start_lan(server.service)
    data, _ = udp.written[-1]
    assert len(data) <= MAX_DATAGRAM
    assert b": " not in data and b", " not in data                # compact JSON
    info = parse_announcement(data, "10.0.0.1")
    assert (info["rooms"], info["players"], info["max_players"]) == (2, 3, 16)
    server.join("D", room="three")
    reactor.advance(1.0)
    info = parse_announcement(udp.written[-1][0], "10.0.0.1")
    assert (info["rooms"], info["players"]) == (3, 4)


def test_a_long_name_is_shortened_to_fit(memory_server):
    server = memory_server(Config(
        port=0, lan_name="ünïcødé 🎮 " * 40,
        public_url="wss://" + "g" * 100 + ".example/ws"))
    lan_service, reactor, udp, _ = start_lan(server.service)
    data, _ = udp.written[0]
    assert len(data) <= MAX_DATAGRAM
    info = parse_announcement(data, "10.0.0.1")
    assert info["name"].startswith("ünïcødé 🎮")
    assert info["ws_url"] == "wss://" + "g" * 100 + ".example/ws"
    assert info["url"] == "https://" + "g" * 100 + ".example/"


def test_on_every_interface_the_receiver_fills_in_the_host(memory_server):
    server = memory_server(Config(port=0, interface="0.0.0.0", lan_name="beta"))
    lan_service, reactor, udp, _ = start_lan(server.service, port=5555)
    data, _ = udp.written[0]
    assert b"url" not in data
    info = parse_announcement(data, "192.168.7.3")
    assert info["ws_url"] == "ws://192.168.7.3:5555/ws" and info["port"] == 5555


def test_the_real_port_is_announced_once_known(memory_server):
    server = memory_server(Config(port=0))
    listening = []
    reactor = FakeReactor()
    lan_service = LanService(server.service, reactor=reactor,
                             port_getter=lambda: listening[0] if listening else None)
    lan_service.startService()
    udp = reactor.ports[0]
    assert udp.written == []                    # --port 0, not listening yet: nothing
    listening.append(40123)
    reactor.advance(2.0)
    assert [i["port"] for i in sent(udp)] == [40123]


def test_the_service_hears_itself_and_others_and_forgets_them(memory_server):
    server = memory_server(Config(port=0, lan_interval=2.0, lan_name="alpha"))
    lan_service, reactor, udp, _ = start_lan(server.service)
    udp.protocol.datagramReceived(udp.written[0][0], ("127.0.0.1", 34997))     # loopback
    udp.protocol.datagramReceived(announcement(id="other", name="beta"), ("10.0.0.5", 34997))
    servers = lan_service.servers()
    assert [(s["name"], s["self"], s["address"]) for s in servers] == [
        ("alpha", True, "127.0.0.1"), ("beta", False, "10.0.0.5")]
    reactor.advance(5.9)
    udp.protocol.datagramReceived(udp.written[-1][0], ("127.0.0.1", 34997))
    assert [s["name"] for s in lan_service.servers()] == ["alpha", "beta"]
    reactor.advance(0.2)                        # beta: 6.1 s > 3 intervals
    assert [s["name"] for s in lan_service.servers()] == ["alpha"]


def test_malformed_datagrams_are_logged_once_by_the_service(memory_server):
    server = memory_server()
    lan_service, reactor, udp, events = start_lan(server.service)
    for _ in range(10):
        udp.protocol.datagramReceived(b"\x00garbage", ("10.0.0.8", 34997))
    assert len(warnings_about(events, "not_json")) == 1
    assert lan_service.servers() == []


def test_stop_leaves_the_group_and_stops_listening_and_announcing(memory_server):
    server = memory_server()
    lan_service, reactor, udp, _ = start_lan(server.service)
    done = []
    defer.maybeDeferred(lan_service.stopService).addBoth(done.append)
    assert done == [None]
    assert udp.groups == set() and not udp.listening
    assert server.service.lan is None
    n = len(udp.written)
    reactor.advance(60)
    assert len(udp.written) == n


def test_a_failed_join_is_logged_not_raised(memory_server):
    server = memory_server()
    lan_service, reactor, udp, events = start_lan(
        server.service, join_error=OSError(19, "No such device"))
    assert any("could not join" in e.get("log_format", "") for e in events)
    assert lan_service.running


# -- GET /api/lan ------------------------------------------------------------------------

def get_lan(server):
    stub = StubTreq(server.site.resource)
    out = []
    d = stub.get("http://arbiter.test:8080/api/lan")
    d.addCallback(lambda resp: resp.json())
    d.addBoth(out.append)
    stub.flush()
    return out[0]


def test_api_lan_lists_what_the_server_hears(memory_server):
    server = memory_server()
    assert get_lan(server) == {"listening": False, "servers": []}
    lan_service, reactor, udp, _ = start_lan(server.service)
    udp.protocol.datagramReceived(announcement(id="other", name="beta"), ("10.0.0.5", 34997))
    answer = get_lan(server)
    assert answer["listening"] is True
    assert [(s["name"], s["ws_url"], s["address"]) for s in answer["servers"]] == [
        ("beta", "ws://10.0.0.5:8080/ws", "10.0.0.5")]


# -- makeService -------------------------------------------------------------------------

def test_make_service_adds_the_lan_service_with_the_listening_port():
    from twisted.application import internet
    from arbiter.app.tap import Options, makeService

    options = Options()
    options.parseOptions(["--port", "0", "--lan-announce", "--lan-interval", "0.5"])
    top = makeService(options)
    lan_service = top.getServiceNamed("lan")
    assert isinstance(lan_service, LanService)
    assert lan_service.config.lan_interval == 0.5
    assert lan_service.listening_port() is None          # --port 0, not listening yet

    class Listening:
        def getHost(self):
            return type("Host", (), {"port": 40999})()

    [tcp] = [s for s in top if isinstance(s, internet.TCPServer)]
    tcp._port = Listening()
    assert lan_service.listening_port() == 40999

    options = Options()
    options.parseOptions(["--port", "0"])
    assert "lan" not in {s.name for s in makeService(options)}


# -- the real thing, in a network namespace ----------------------------------------------

BIN = os.path.dirname(sys.executable)
DEADLINE = 20.0


@pytest.fixture
def netns():
    """A fresh network namespace with only loopback, multicast on it (the test's own
    network: nothing reaches a real one); deleted afterwards."""
    with loopback_namespace('arbiter-lan', 'tests/test_lan.py') as name:
        yield name


class Proc:
    """A process in the namespace whose output lines are read on a thread, so a test
    can wait for a line with a deadline."""

    def __init__(self, ns, *cmd):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern, deadline=DEADLINE):
        """The first match of ``pattern`` in the output (waiting for it)."""
        end = time.monotonic() + deadline
        for line in self.lines:
            m = re.search(pattern, line)
            if m:
                return m
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no %r within %g s; output:\n%s"
                                     % (pattern, deadline, "".join(self.lines)))
            if line is None:
                raise AssertionError("the process exited (%s) before %r; output:\n%s"
                                     % (self.proc.wait(), pattern, "".join(self.lines)))
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def output(self):
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return "".join(self.lines)
            if line is not None:
                self.lines.append(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def in_ns(ns, code):
    """Run Python ``code`` in the namespace; its stdout."""
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def api_lan(ns, port):
    return json.loads(in_ns(ns, "import urllib.request; print(urllib.request.urlopen("
                                "'http://127.0.0.1:%d/api/lan', timeout=5).read().decode())"
                                % port))


def wait_until(what, check, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("%s: not within %g s" % (what, deadline))
        time.sleep(0.1)


def test_two_servers_and_arbiter_discover_in_a_network_namespace(netns):
    procs = []
    try:
        # alpha: python -m arbiter on 127.0.0.1, announcing its URL
        alpha = Proc(netns, sys.executable, "-m", "arbiter", "--port", "0", "--lan-announce",
                     "--lan-name", "alpha", "--lan-interval", "0.5")
        procs.append(alpha)
        # beta: twistd (makeService) on every interface: receivers fill in the host
        beta = Proc(netns, os.path.join(BIN, "twistd"), "-n", "--pidfile=", "arbiter",
                    "--port", "0", "--interface", "0.0.0.0", "--lan-announce",
                    "--lan-name", "beta", "--lan-interval", "0.5")
        procs.append(beta)
        alpha_port = int(alpha.wait_for(r"ARBITER_PORT=(\d+)").group(1))
        beta_port = int(beta.wait_for(r"Site starting on (\d+)").group(1))
        beta.wait_for(r"LAN discovery: announcing 'beta'")

        found = subprocess.run(["ip", "netns", "exec", netns,
                                os.path.join(BIN, "arbiter-discover"), "--seconds", "3",
                                "--json"], capture_output=True, text=True, timeout=30)
        assert found.returncode == 0, found.stderr
        servers = {s["name"]: s for s in json.loads(found.stdout)["servers"]}
        assert sorted(servers) == ["alpha", "beta"], found.stdout
        assert servers["alpha"]["ws_url"] == "ws://127.0.0.1:%d/ws" % alpha_port
        assert servers["alpha"]["url"] == "http://127.0.0.1:%d/" % alpha_port
        assert servers["beta"]["ws_url"] == "ws://127.0.0.1:%d/ws" % beta_port
        assert servers["alpha"]["address"] == servers["beta"]["address"] == "127.0.0.1"
        assert servers["alpha"]["rooms"] == 0 and servers["beta"]["players"] == 0

        # the text form: one line per server
        lines = run("ip", "netns", "exec", netns, os.path.join(BIN, "arbiter-discover"),
                    "--seconds", "1.5").stdout.splitlines()
        assert [line.split()[:2] for line in lines] == [
            ["alpha", "ws://127.0.0.1:%d/ws" % alpha_port],
            ["beta", "ws://127.0.0.1:%d/ws" % beta_port]]

        # GET /api/lan on alpha lists beta (and alpha itself)
        answer = wait_until("alpha hears beta", lambda: (
            lambda a: a if {s["name"] for s in a["servers"]} == {"alpha", "beta"} else None)(
                api_lan(netns, alpha_port)))
        assert answer["listening"] is True
        by_name = {s["name"]: s for s in answer["servers"]}
        assert by_name["beta"]["ws_url"] == "ws://127.0.0.1:%d/ws" % beta_port
        assert by_name["beta"]["self"] is False and by_name["alpha"]["self"] is True

        # garbage on the group: dropped, logged once; a valid datagram sent after it
        # shows that all of it was read
        in_ns(netns, "import socket\n"
                     "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                     "for _ in range(5): s.sendto(b'garbage', ('%s', 34997))\n"
                     "s.sendto(%r, ('%s', 34997))\n"
              % (GROUP, announcement(id="marker", name="marker", url=DROP, ws_url=DROP),
                 GROUP))
        wait_until("alpha hears the marker", lambda: "marker" in {
            s["name"] for s in api_lan(netns, alpha_port)["servers"]})
        dropped = [line for line in alpha.output().splitlines() if "not_json" in line]
        assert len(dropped) == 1, alpha.output()

        # stopping: the servers leave the group and close the UDP port
        alpha.stop()
        assert alpha.proc.returncode == 0
        assert "UDP Port 34997 Closed" in alpha.output()
        wait_until("beta forgets alpha (3 intervals after its last announcement)",
                   lambda: [x["name"] for x in api_lan(netns, beta_port)["servers"]]
                   == ["beta"], deadline=10)
    finally:
        for p in procs:
            p.stop()


def test_the_example_in_docs_lan_md_is_a_valid_announcement():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "LAN.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    [example] = re.findall(r'```json\n(\{"v":1,.*?)\n```', text)
    data = example.encode("utf-8")
    assert len(data) <= MAX_DATAGRAM
    info = parse_announcement(data, "192.168.1.20")
    assert info == json.loads(example)


def test_many_source_addresses_are_bounded():
    """A flood from made-up source addresses: the buckets kept stay bounded, the total
    rate bounds what is parsed, and once it is over a real server is heard again."""
    clock, heard, events = listener()
    for i in range(5000):
        heard.datagramReceived(b"x", ("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 1))
        assert len(heard._buckets) <= lan.MAX_SOURCES
    assert heard.dropped == {"not_json": lan.TOTAL_BURST,
                             "rate_limited": 5000 - lan.TOTAL_BURST}
    assert len(events) == 2
    clock.advance(2.0)
    heard.datagramReceived(announcement(), ("10.200.0.1", 1))
    assert [s["name"] for s in heard.servers()] == ["alpha"]
