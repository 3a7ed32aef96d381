"""LAN discovery: announce this server on the local network, and hear the others.

With ``--lan-announce`` a :class:`LanService` joins the multicast group
``lan_group`` on UDP ``lan_port`` and, every ``lan_interval`` seconds, sends one
small JSON datagram there saying who this server is and where to reach it. It
listens on the same group: every Arbiter server it hears (itself included, the
group's loopback is on) is kept by id, and ``GET /api/lan`` lists them.
``arbiter-discover`` (arbiter/tools/discover.py) listens with the same
:class:`LanListener` and lists what it hears.

Nothing here is authenticated: a datagram is a hint from anyone on the network.
So every one is checked strictly (:func:`parse_announcement`), a source that
sends too many is cut off by a token bucket before any parsing, the lists are
bounded, and what is dropped is logged once per kind then counted
(:class:`arbiter.quietlog.QuietLog`). docs/LAN.md is the reference.
"""

import json
import secrets
import socket
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from arbiter.quietlog import QuietLog
from arbiter.rules import TokenBucket

_log = Logger()

VERSION = 1
APP = "arbiter"
MAX_DATAGRAM = 512          # bytes; the socket reads one more, so a longer one shows
MAX_NAME = 64               # characters
MAX_URL = 128               # characters
MAX_ID = 64
MAX_COUNT = 10 ** 7         # rooms, players, max_players
TTL = 1                     # multicast hops: this network only

# the fields of an announcement: name -> (required, check)
_INT_FIELDS = {"port": (1, 65535), "rooms": (0, MAX_COUNT), "players": (0, MAX_COUNT),
               "max_players": (1, MAX_COUNT)}
_REQUIRED = {"v", "app", "id", "name", "port", "rooms", "players"}
_OPTIONAL = {"url", "ws_url", "max_players"}
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
_URL_SCHEMES = {"url": ("http", "https"), "ws_url": ("ws", "wss")}

# rate limits per source address (datagrams), and over all sources together
SOURCE_BURST, SOURCE_RATE = 20, 10.0
TOTAL_BURST, TOTAL_RATE = 200, 100.0
MAX_SOURCES = 1024          # token buckets kept; past it, unknown sources wait
MAX_SERVERS = 256           # servers kept
MAX_SERVERS_PER_SOURCE = 16


class BadAnnouncement(ValueError):
    """A datagram that is not a valid announcement: ``kind`` says why (one log line
    per kind), the message says exactly what."""

    def __init__(self, kind, detail):
        super().__init__(detail)
        self.kind = kind


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key %r" % key)
        out[key] = value
    return out


def _host_in_url(host):
    return "[%s]" % host if ":" in host else host


def _check_url(field, value):
    if not isinstance(value, str):
        raise BadAnnouncement("bad_field", "%s is not a string" % field)
    if not 0 < len(value) <= MAX_URL or not value.isascii() or not value.isprintable() \
            or any(c.isspace() for c in value):
        raise BadAnnouncement("bad_url", "%s is not a short printable ASCII URL" % field)
    try:
        parts = urlsplit(value)
        port = parts.port                       # raises on a bad port
    except ValueError:
        raise BadAnnouncement("bad_url", "%s does not parse" % field)
    if parts.scheme not in _URL_SCHEMES[field]:
        raise BadAnnouncement("bad_url", "%s must be a %s URL"
                              % (field, " or ".join(_URL_SCHEMES[field])))
    if not parts.hostname or "@" in parts.netloc or port == 0:
        raise BadAnnouncement("bad_url", "%s has no host (or has credentials)" % field)
    return value


def parse_announcement(data, source=None):
    """The announcement in ``data`` (bytes), checked field by field, as a dict with
    ``url`` and ``ws_url`` always set: a datagram without them names no host, and
    the host is ``source``, the address it came from. Raises
    :class:`BadAnnouncement` for anything else."""
    if len(data) > MAX_DATAGRAM:
        raise BadAnnouncement("oversized", "%d bytes, more than %d" % (len(data), MAX_DATAGRAM))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadAnnouncement("not_utf8", "not UTF-8")
    try:
        msg = json.loads(text, parse_constant=_reject_constant,
                         object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise BadAnnouncement("not_json", "not JSON")
    if not isinstance(msg, dict):
        raise BadAnnouncement("not_object", "not a JSON object")
    if type(msg.get("v")) is not int or msg["v"] != VERSION:
        raise BadAnnouncement("bad_version", "v is %r, not %d" % (msg.get("v"), VERSION))
    if msg.get("app") != APP:
        raise BadAnnouncement("not_arbiter", "app is not %r" % APP)
    unknown = set(msg) - _REQUIRED - _OPTIONAL
    if unknown:
        raise BadAnnouncement("unknown_field", "unknown fields %s" % sorted(unknown)[:4])
    missing = _REQUIRED - set(msg)
    if missing:
        raise BadAnnouncement("missing_field", "missing fields %s" % sorted(missing))
    out = {"v": VERSION, "app": APP}
    ident = msg["id"]
    if not isinstance(ident, str) or not 0 < len(ident) <= MAX_ID \
            or not set(ident) <= _ID_CHARS:
        raise BadAnnouncement("bad_field", "id must be 1-%d of [A-Za-z0-9._:-]" % MAX_ID)
    out["id"] = ident
    name = msg["name"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable() \
            or name != name.strip():
        raise BadAnnouncement("bad_field", "name must be 1-%d printable characters" % MAX_NAME)
    out["name"] = name
    for field, (low, high) in _INT_FIELDS.items():
        if field not in msg:
            continue
        value = msg[field]
        if type(value) is not int or not low <= value <= high:
            raise BadAnnouncement("bad_field", "%s must be an integer in [%d, %d]"
                                  % (field, low, high))
        out[field] = value
    for field in ("url", "ws_url"):
        if field in msg:
            out[field] = _check_url(field, msg[field])
    if "url" not in out or "ws_url" not in out:
        if not source or source in ("0.0.0.0", "::"):
            raise BadAnnouncement("no_address", "no URL and no source address to reach")
        base = "%s:%d" % (_host_in_url(source), out["port"])
        out.setdefault("url", "http://%s/" % base)
        out.setdefault("ws_url", "ws://%s/ws" % base)
    return out


def encode_announcement(fields):
    """Compact JSON of ``fields`` (an announcement's), in at most MAX_DATAGRAM bytes:
    a name too long for it is shortened. Raises ValueError if it cannot fit."""
    fields = dict(fields)
    name = fields["name"][:MAX_NAME].strip() or "arbiter"
    while True:
        fields["name"] = name
        data = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(data) <= MAX_DATAGRAM:
            return data
        if len(name) <= 1:
            raise ValueError("an announcement does not fit in %d bytes" % MAX_DATAGRAM)
        name = name[:-1].rstrip() or name[:1]


def announced_urls(config, port):
    """(url, ws_url) this server announces, or (None, None) to let receivers put in
    the address the datagram came from: ``public_url`` when set, else the interface
    it listens on, unless that is every interface (0.0.0.0, ::)."""
    if config.public_url:
        parts = urlsplit(config.public_url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return "%s://%s/" % (scheme, parts.netloc), config.public_url
    host = config.interface
    if host in ("", "0.0.0.0", "::", "::0"):
        return None, None
    base = "%s:%d" % (_host_in_url(host), port)
    return "http://%s/" % base, "ws://%s/ws" % base


class LanListener(DatagramProtocol):
    """Hears announcements on a multicast group: rate-limits each source address,
    checks each datagram with :func:`parse_announcement`, keeps the servers heard by
    id with when and where from. ``forget_after`` (seconds) drops a server not heard
    from for that long (None: keep all, as ``arbiter-discover`` does)."""

    def __init__(self, clock, group, forget_after=None, own_id=None, log=None):
        self.clock = clock
        self.group = group
        self.forget_after = forget_after
        self.own_id = own_id
        self.quiet = QuietLog(clock.seconds, log or _log, subject="LAN discovery")
        self.heard = {}                  # id -> {"at", "address", "info"}
        self.dropped = {}                # kind -> datagrams dropped
        self.received = 0
        self._buckets = {}               # source address -> TokenBucket
        self._swept_at = float("-inf")
        self._total = TokenBucket(TOTAL_BURST, TOTAL_RATE, clock.seconds())
        self.joined = None               # the Deferred of joinGroup

    def startProtocol(self):
        self.transport.setLoopbackMode(True)
        self.transport.setTTL(TTL)
        self.joined = self.transport.joinGroup(self.group)
        return self.joined

    def _drop(self, kind, detail, source):
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        self.quiet.warn(kind, "LAN discovery: dropped a datagram from {source}: {kind}: "
                        "{detail}", source=source, kind=kind, detail=detail)

    def _allowed(self, source, now):
        """Spend a token of the source's bucket (and of the total one)."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= MAX_SOURCES:
                if now - self._swept_at < 1.0:          # a sweep at most once a second
                    return False
                self._swept_at = now
                for key, b in list(self._buckets.items()):
                    if b.can_take(now, b.capacity):      # idle long enough to be full
                        del self._buckets[key]
                if len(self._buckets) >= MAX_SOURCES:
                    return False
            bucket = self._buckets[source] = TokenBucket(SOURCE_BURST, SOURCE_RATE, now)
        if not bucket.can_take(now) or not self._total.can_take(now):
            return False
        bucket.take()
        self._total.take()
        return True

    def datagramReceived(self, data, addr):
        source = addr[0] if addr else None
        now = self.clock.seconds()
        self.received += 1
        if not self._allowed(source, now):
            self._drop("rate_limited", "over %d datagrams a second" % SOURCE_RATE, source)
            return
        try:
            info = parse_announcement(data, source)
        except BadAnnouncement as e:
            self._drop(e.kind, str(e), source)
            return
        self._prune(now)
        ident = info["id"]
        if ident not in self.heard:
            if len(self.heard) >= MAX_SERVERS:
                self._drop("too_many_servers", "%d servers kept already" % MAX_SERVERS, source)
                return
            if sum(1 for h in self.heard.values() if h["address"] == source) \
                    >= MAX_SERVERS_PER_SOURCE:
                self._drop("too_many_servers", "%d servers from this address already"
                           % MAX_SERVERS_PER_SOURCE, source)
                return
        self.heard[ident] = {"at": now, "address": source, "info": info}

    def _prune(self, now):
        if self.forget_after is None:
            return
        for ident, h in list(self.heard.items()):
            if now - h["at"] > self.forget_after:
                del self.heard[ident]

    def servers(self):
        """The servers heard (and not forgotten), sorted by name: name, id, url,
        ws_url, rooms, players, max_players (when announced), address, age (s), self."""
        now = self.clock.seconds()
        self._prune(now)
        out = []
        for ident, h in self.heard.items():
            info = h["info"]
            entry = {"name": info["name"], "id": ident, "url": info["url"],
                     "ws_url": info["ws_url"], "rooms": info["rooms"],
                     "players": info["players"], "address": h["address"],
                     "age": round(max(0.0, now - h["at"]), 1), "self": ident == self.own_id}
            if "max_players" in info:
                entry["max_players"] = info["max_players"]
            out.append(entry)
        out.sort(key=lambda e: (e["name"], e["id"]))
        return out


class LanService(Service):
    """``--lan-announce``: announce ``service`` every ``lan_interval`` seconds and
    list the servers heard (``service.lan = self``; ``GET /api/lan``).

    ``reactor`` provides IReactorMulticast and IReactorTime (the global reactor by
    default; a test's fake on a ``task.Clock``). ``port_getter`` returns the TCP port
    the server really listens on (``--port 0`` is only known once listening), or
    None while it is not listening yet.
    """

    name = "lan"

    def __init__(self, service, reactor=None, port_getter=None, log=None):
        if reactor is None:
            from twisted.internet import reactor
        self.service = service
        self.config = service.config
        self.reactor = reactor
        self.port_getter = port_getter
        self.log = log or _log
        self.id = secrets.token_hex(8)
        name = self.config.lan_name or socket.gethostname()
        name = "".join(c if c.isprintable() else "?" for c in name).strip()
        self.display_name = name[:MAX_NAME].strip() or "arbiter"
        self.listener = None
        self._port = None
        self._loop = None
        self.sent = 0
        self.quiet = QuietLog(reactor.seconds, self.log, subject="LAN discovery")
        if self.config.public_url and len(self.config.public_url) > MAX_URL:
            raise ValueError("--public-url is too long to announce on the LAN (more than %d "
                             "characters)" % MAX_URL)

    # -- what is announced -------------------------------------------------------------
    def listening_port(self):
        port = self.port_getter() if self.port_getter is not None else None
        return port or self.config.port or None

    def announcement(self):
        """This server's announcement datagram (bytes), or None while its port is
        not known."""
        port = self.listening_port()
        if port is None:
            return None
        rooms = list(self.service.rooms)
        fields = {"v": VERSION, "app": APP, "id": self.id, "name": self.display_name,
                  "port": port}
        url, ws_url = announced_urls(self.config, port)
        if url is not None:
            fields["url"], fields["ws_url"] = url, ws_url
        fields["rooms"] = min(len(rooms), MAX_COUNT)
        fields["players"] = min(sum(r.player_count for r in rooms), MAX_COUNT)
        fields["max_players"] = min(self.config.world.max_players, MAX_COUNT)
        return encode_announcement(fields)

    def announce(self):
        data = self.announcement()
        if data is None or self._port is None:
            return
        try:
            self._port.write(data, (self.config.lan_group, self.config.lan_port))
            self.sent += 1
        except Exception as e:
            self.quiet.warn("send_failed", "LAN discovery: could not send an announcement to "
                            "{group}:{port}: {error}", group=self.config.lan_group,
                            port=self.config.lan_port, error=e)

    # -- what is heard -----------------------------------------------------------------
    def servers(self):
        return self.listener.servers() if self.listener is not None else []

    # -- lifecycle ---------------------------------------------------------------------
    def startService(self):
        super().startService()
        config = self.config
        self.listener = LanListener(self.reactor, config.lan_group,
                                    forget_after=3 * config.lan_interval, own_id=self.id,
                                    log=self.log)
        self._port = self.reactor.listenMulticast(config.lan_port, self.listener,
                                                  maxPacketSize=MAX_DATAGRAM + 1,
                                                  listenMultiple=True)
        self.listener.joined.addErrback(self._join_failed)
        self.service.lan = self
        if config.interface in ("127.0.0.1", "localhost", "::1") and not config.public_url:
            self.log.info("LAN discovery: this server listens on {interface} only, so only this "
                     "host can reach the URL it announces (--interface 0.0.0.0 for the LAN)",
                     interface=config.interface)
        self.log.info("LAN discovery: announcing {name!r} as {id} to {group}:{port} every "
                 "{interval} s", name=self.display_name, id=self.id, group=config.lan_group,
                 port=config.lan_port, interval=config.lan_interval)
        self._loop = LoopingCall(self.announce)
        self._loop.clock = self.reactor
        self._loop.start(config.lan_interval, now=True).addErrback(
            lambda f: self.log.failure("LAN discovery: the announcement loop failed", f))

    def _join_failed(self, failure):
        self.log.error("LAN discovery: could not join the multicast group {group} ({error}); "
                  "is there a multicast route (a default route, or 224.0.0.0/4)?",
                  group=self.config.lan_group, error=failure.getErrorMessage())

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.service.lan is self:
            self.service.lan = None
        port, self._port = self._port, None
        if port is None:
            return None
        self.quiet.flush()
        if self.listener is not None:
            self.listener.quiet.flush()
        d = port.leaveGroup(self.config.lan_group)
        d.addErrback(lambda f: None)         # never joined, or the socket is gone
        d.addCallback(lambda _: port.stopListening())
        return d
