"""``twistd arbiter``: options and the service maker."""

import importlib
import sys

from twisted.application import internet, service
from twisted.python import usage

from arbiter.config import Config, World


def _load(spec):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run the Arbiter game server: pages at /, the WebSocket at /ws, "
                "the JSON API at /api and metrics at /metrics, all on one port.")
    optParameters = [
        ["port", "p", 8080, "TCP port (0 picks a free one)", int],
        ["interface", "i", "127.0.0.1", "interface to listen on"],
        ["tick-rate", None, 20, "simulation ticks per second", int],
        ["send-rate", None, 20, "state ticks per second (divides tick-rate)", int],
        ["tick-spread", None, 4,
         "spread the rooms' ticks over this many slots per tick period (1 = all at once)", int],
        ["max-players", None, 16, "players per room", int],
        ["max-cubes", None, 16, "live cubes per player (at most 64)", int],
        ["grace", None, 30.0, "seconds a disconnected player keeps its place", float],
        ["max-message-size", None, 65536, "largest client message in bytes", int],
        ["secret", None, None, "token signing secret (random per start when absent)"],
        ["recenter-every", None, 0,
         "example authority rule: every N ticks put each player's second cube back "
         "at the centre (0 = off)", int],
        ["world-size", None, 40.0, "side of the square plane", float],
        ["cube-speed", None, 5.0, "cube speed, units/s", float],
        ["avatar-speed", None, 8.0, "avatar speed, units/s", float],
        ["tag-radius", None, 2.0, "tag reach, units", float],
        ["api-key", None, None, "key that protects POST/DELETE /api/rooms"],
        ["join-token-ttl", None, 300.0, "seconds an HTTP join token stays valid", float],
        ["lockstep-turn-ms", None, 100, "lockstep: starting turn length in ms", int],
        ["lockstep-turn-timeout", None, 1.0,
         "lockstep: seconds a turn waits for a late packet before it goes on empty", float],
        ["lockstep-drop-after", None, 0.0,
         "lockstep: drop a disconnected player after this many seconds (0 = pause the game "
         "until it is back)", float],
        ["max-connections-per-ip", None, Config.max_connections_per_ip,
         "simultaneous connections one client address may hold; more are closed at once "
         "(0 = no cap)", int],
        ["handshake-timeout", None, Config.handshake_timeout,
         "seconds a new connection has to send its first HTTP request (the WebSocket "
         "upgrade, say) before it is closed", float],
        ["game", None, None, "your own game class, as module:Class"],
        ["static-dir", None, None, "serve pages from this folder instead of the demo"],
    ]
    optFlags = [["no-metrics", None, "do not serve /metrics"]]

    def config(self):
        world = World(size=self["world-size"], speed=self["cube-speed"],
                      avatar_speed=self["avatar-speed"], tag_radius=self["tag-radius"],
                      max_cubes=self["max-cubes"], max_players=self["max-players"])
        try:
            return Config(
                port=self["port"], interface=self["interface"],
                tick_rate=self["tick-rate"], send_rate=self["send-rate"],
                tick_spread=self["tick-spread"],
                grace=self["grace"], max_message_size=self["max-message-size"],
                secret=(self["secret"] or "").encode("utf-8"),
                recenter_every=self["recenter-every"], world=world,
                api_key=self["api-key"] or "", metrics=not self["no-metrics"],
                join_token_ttl=self["join-token-ttl"],
                lockstep_turn_ms=self["lockstep-turn-ms"],
                lockstep_turn_timeout=self["lockstep-turn-timeout"],
                lockstep_drop_after=self["lockstep-drop-after"],
                max_connections_per_ip=self["max-connections-per-ip"],
                handshake_timeout=self["handshake-timeout"],
            )
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
    config = arbiter.config
    internet.TCPServer(config.port, site, interface=config.interface).setServiceParent(top)
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
    print("ARBITER_PORT=%d" % port.getHost().port, flush=True)
    reactor.run()
    return 0
