"""``arbiter-discover``: list the Arbiter servers announcing themselves on the LAN.

Joins the multicast group the servers announce to (``--lan-announce``;
docs/LAN.md), listens for ``--seconds``, and prints one line per server heard
(or ``--json``). It sends nothing. Every datagram is checked as the servers
check them (:func:`arbiter.app.lan.parse_announcement`, through the same
:class:`arbiter.app.lan.LanListener`): what is not a valid announcement is
dropped, and said once on stderr.
"""

import argparse
import json
import sys

from twisted.internet.error import CannotListenError

from arbiter.app.lan import MAX_DATAGRAM, LanListener
from arbiter.config import Config


def parser():
    defaults = Config()
    p = argparse.ArgumentParser(
        prog="arbiter-discover",
        description="List the Arbiter servers that announce themselves on the local "
                    "network (twistd arbiter --lan-announce).")
    p.add_argument("--group", default=defaults.lan_group,
                   help="the multicast group (default %(default)s)")
    p.add_argument("--port", type=int, default=defaults.lan_port,
                   help="the UDP port (default %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="how long to listen (default %%(default)s; servers announce every "
                        "%g s by default)" % defaults.lan_interval)
    p.add_argument("--json", action="store_true",
                   help='print {"servers": [...]} as JSON instead of lines')
    return p


def format_line(server):
    line = "%s  %s  rooms=%d players=%d" % (server["name"], server["ws_url"], server["rooms"],
                                            server["players"])
    if "max_players" in server:
        line += " max_players=%d" % server["max_players"]
    return line + "  (from %s)" % server["address"]


def listen(group, port, seconds, reactor=None):
    """Run the reactor for ``seconds`` with a LanListener on (group, port); returns
    the servers heard (LanListener.servers()). Raises OSError if it cannot listen."""
    if reactor is None:
        from twisted.internet import reactor
    listener = LanListener(reactor, group)
    failed = []

    def join_failed(failure):
        failed.append(failure)
        if reactor.running:
            reactor.stop()

    try:
        udp = reactor.listenMulticast(port, listener, maxPacketSize=MAX_DATAGRAM + 1,
                                      listenMultiple=True)
    except CannotListenError as e:
        raise OSError("could not listen on UDP port %d: %s" % (port, e.socketError))
    listener.joined.addErrback(join_failed)
    reactor.callLater(seconds, lambda: reactor.running and reactor.stop())
    if not failed:
        reactor.run()
    udp.stopListening()
    listener.quiet.flush()
    if failed:
        raise OSError("could not join the multicast group %s: %s"
                      % (group, failed[0].getErrorMessage()))
    servers = listener.servers()
    for s in servers:
        del s["self"]
    return servers


def main(argv=None):
    args = parser().parse_args(argv)
    if not 0 < args.seconds <= 3600:
        print("arbiter-discover: --seconds must be in (0, 3600]", file=sys.stderr)
        return 2
    if not 1 <= args.port <= 65535:
        print("arbiter-discover: --port must be a UDP port", file=sys.stderr)
        return 2
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                globalLogBeginner, textFileLogObserver)
    # what is dropped (a warning, once per kind) goes to stderr; stdout is the list
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr),
                              [LogLevelFilterPredicate(LogLevel.warn)])],
        redirectStandardIO=False)
    try:
        servers = listen(args.group, args.port, args.seconds)
    except OSError as e:
        print("arbiter-discover: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"servers": servers}, indent=2, sort_keys=True))
    elif not servers:
        print("no Arbiter server heard on %s:%d in %g s" % (args.group, args.port,
                                                            args.seconds), file=sys.stderr)
    else:
        for server in servers:
            print(format_line(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
