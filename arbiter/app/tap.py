"""``twistd arbiter``: options and the service maker."""

import importlib
import os
import sys

from twisted.application import internet, service
from twisted.python import usage

from arbiter.config import Config, World


def _load(spec):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


# option -> (short, the Config field it sets, help); the default and the type are the
# field's own (arbiter/config.py is the one home of every default)
CONFIG_OPTIONS = [
    ("port", "p", "port", "TCP port (0 picks a free one)"),
    ("interface", "i", "interface", "interface to listen on"),
    ("tick-rate", None, "tick_rate", "simulation ticks per second"),
    ("send-rate", None, "send_rate", "state ticks per second (divides tick-rate)"),
    ("tick-spread", None, "tick_spread",
     "spread the rooms' ticks over this many slots per tick period (1 = all at once)"),
    ("max-players", None, "world.max_players", "players per room"),
    ("max-cubes", None, "world.max_cubes", "live cubes per player (at most 64)"),
    ("grace", None, "grace", "seconds a disconnected player keeps its place"),
    ("max-message-size", None, "max_message_size", "largest client message in bytes"),
    ("recenter-every", None, "recenter_every",
     "example authority rule: every N ticks put each player's second cube back "
     "at the centre (0 = off)"),
    ("world-size", None, "world.size", "side of the square plane"),
    ("cube-speed", None, "world.speed", "cube speed, units/s"),
    ("avatar-speed", None, "world.avatar_speed", "avatar speed, units/s"),
    ("tag-radius", None, "world.tag_radius", "tag reach, units"),
    ("join-token-ttl", None, "join_token_ttl", "seconds an HTTP join token stays valid"),
    ("lockstep-turn-ms", None, "lockstep_turn_ms", "lockstep: starting turn length in ms"),
    ("lockstep-turn-timeout", None, "lockstep_turn_timeout",
     "lockstep: seconds a turn waits for a late packet before it goes on empty"),
    ("lockstep-drop-after", None, "lockstep_drop_after",
     "lockstep: drop a disconnected player after this many seconds (0 = pause the game "
     "until it is back)"),
    ("max-connections-per-ip", None, "max_connections_per_ip",
     "simultaneous connections one client address may hold; more are closed at once "
     "(0 = no cap)"),
    ("handshake-timeout", None, "handshake_timeout",
     "seconds a new connection has to send its first HTTP request (the WebSocket "
     "upgrade, say) before it is closed"),
    ("ping-timeout", None, "ping_timeout",
     "seconds a connection may go without answering WebSocket pings before it is "
     "dropped (close 4008; the player keeps its grace period; 0 = never)"),
    ("drones", None, "drones", "cube game: server-owned drones per room (0 = none)"),
    ("pickups", None, "pickups", "cube game: pickups on the plane per room (0 = none)"),
    ("round-points", None, "round_points",
     "cube game: a round ends when a player reaches this many points (0 = no limit)"),
    ("round-seconds", None, "round_seconds",
     "cube game: a round ends after this many seconds (0 = no limit)"),
    ("round-pause", None, "round_pause",
     "seconds between the end of a round and the start of the next"),
    ("view-radius", None, "view_radius",
     "cube game: a player sees only entities within this distance of its avatar (0 = all)"),
    ("auth", None, "auth",
     "the authenticator: module:callable that turns a client's credentials into a user "
     "(docs/LOBBY.md); without it every player is a guest"),
    ("lan-group", None, "lan_group", "LAN discovery: the multicast group to announce to"),
    ("lan-port", None, "lan_port", "LAN discovery: the UDP port of the announcements"),
    ("lan-name", None, "lan_name", "LAN discovery: the name to announce (default: host name)"),
    ("lan-interval", None, "lan_interval",
     "LAN discovery: seconds between announcements (a server not heard for 3 of them is "
     "forgotten)"),
    ("redis", None, "redis",
     "cluster mode: redis://HOST:PORT/DB of the Redis every node shares (needs --secret "
     "and --public-url; docs/SCALING.md)"),
    ("public-url", None, "public_url",
     "cluster mode: this node's WebSocket URL as clients reach it, ws://HOST:PORT/ws"),
    ("node-id", None, "node_id", "cluster mode: this node's name (random when absent)"),
    ("cluster-heartbeat", None, "cluster_heartbeat",
     "cluster mode: seconds between this node's writes of its load and claims to Redis"),
    ("cluster-ttl", None, "cluster_ttl",
     "cluster mode: seconds a silent node's registration and room claims live"),
]


def _default(field):
    """The field's default; an empty string (a setting that is off) shows as no default."""
    where, _, name = field.rpartition(".")
    value = getattr(World() if where == "world" else Config(), name)
    return None if value == "" else value


def _kind(field):
    where, _, name = field.rpartition(".")
    kind = type(getattr(World() if where == "world" else Config(), name))
    return None if kind is str else kind


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run the Arbiter game server: pages at /, the WebSocket at /ws, "
                "the JSON API at /api and metrics at /metrics, all on one port.")
    optParameters = [
        [option, short, _default(field), help, _kind(field)]
        for option, short, field, help in CONFIG_OPTIONS
    ] + [
        ["secret", None, None, "token signing secret (else the ARBITER_SECRET environment "
         "variable, which keeps it out of the process list; random per start when neither)"],
        ["api-key", None, None, "key that protects POST/DELETE /api/rooms and minting join "
         "tokens (except for self-service rooms)"],
        ["game", None, None, "your own game class, as module:Class"],
        ["static-dir", None, None, "serve pages from this folder instead of the demo"],
    ]
    optFlags = [["no-metrics", None, "do not serve /metrics"],
                ["round-once", None, "after the first round the room stays ended"],
                ["lan-announce", None, "announce this server on the local network "
                 "(UDP multicast; arbiter-discover and GET /api/lan list it)"]]

    def postOptions(self):
        config = self.config()   # a bad combination is a usage error, before anything starts
        if config.auth:
            from arbiter.auth import load
            try:
                load(config.auth)
            except ValueError as e:
                raise usage.UsageError(str(e))

    def config(self):
        world = {}
        top = {}
        for option, _, field, _ in CONFIG_OPTIONS:
            where, _, name = field.rpartition(".")
            value = self[option]
            if value is not None:
                (world if where == "world" else top)[name] = value
        try:
            secret = self["secret"] or os.environ.get("ARBITER_SECRET", "")
            return Config(world=World(**world), secret=secret.encode("utf-8"),
                          api_key=self["api-key"] or "", metrics=not self["no-metrics"],
                          round_once=bool(self["round-once"]),
                          lan_announce=bool(self["lan-announce"]), **top)
        except ValueError as e:
            raise usage.UsageError(str(e))

    def build(self, clock=None):
        from arbiter.app.server import build
        game = _load(self["game"]) if self["game"] else None
        return build(self.config(), clock=clock, game_factory=game,
                     static_dir=self["static-dir"])


def makeService(options):
    arbiter, factory, site = options.build()
    top = service.MultiService()
    arbiter.setServiceParent(top)
    if arbiter.directory is not None:
        arbiter.directory.setServiceParent(top)
    config = arbiter.config
    tcp = internet.TCPServer(config.port, site, interface=config.interface)
    tcp.setServiceParent(top)
    if config.lan_announce:
        from arbiter.app.lan import LanService

        def listening_port():             # --port 0: the real one, once listening
            port = getattr(tcp, "_port", None)
            return port.getHost().port if port is not None else None
        LanService(arbiter, port_getter=listening_port).setServiceParent(top)
    return top


def main(argv=None):
    """``python -m arbiter``: the same server without twistd; prints ARBITER_PORT=<n>."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print("%s\n%s" % (options, e), file=sys.stderr)
        return 2
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    arbiter, factory, site = options.build()
    config = arbiter.config
    port = reactor.listenTCP(config.port, site, interface=config.interface)
    arbiter.startService()
    reactor.addSystemEventTrigger("before", "shutdown", arbiter.stopService)
    if arbiter.directory is not None:
        arbiter.directory.startService()
        reactor.addSystemEventTrigger("before", "shutdown", arbiter.directory.stopService)
    if config.lan_announce:
        from arbiter.app.lan import LanService
        lan = LanService(arbiter, reactor, port_getter=lambda: port.getHost().port)
        lan.startService()
        reactor.addSystemEventTrigger("before", "shutdown", lan.stopService)
    print("ARBITER_PORT=%d" % port.getHost().port, flush=True)
    reactor.run()
    return 0
