"""The site: static pages at /, the WebSocket at /ws, the JSON API at /api,
Prometheus metrics at /metrics, and the npm-installed front-end libraries at
/vendor/."""

import os
import socket

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web import http, resource, server, static

from arbiter.quietlog import QuietLog

log = Logger()

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")
# The checkout's web/ when this file is a link into one (strict editable install): its
# node_modules is current even when the install's links to it are not.
SOURCE_WEB = os.path.dirname(os.path.realpath(__file__))

# URL folder under /vendor/ -> path inside an npm install's node_modules
VENDOR = {
    b"three": "three/build",
    b"msgpack": "@msgpack/msgpack/dist.esm",
}


def node_modules_dirs():
    """Where ``npm ci --prefix web`` put the front-end libraries: $ARBITER_NODE_MODULES
    alone when it is set; else the checkout's web/node_modules, the copy a wheel
    carries, then ./web/node_modules."""
    env = os.environ.get("ARBITER_NODE_MODULES")
    if env:
        yield env
        return
    yield os.path.join(SOURCE_WEB, "node_modules")
    if HERE != SOURCE_WEB:
        yield os.path.join(HERE, "node_modules")
    yield os.path.join(os.getcwd(), "web", "node_modules")


def missing_front_end_message(packages):
    """What to do when npm's packages are missing: the log, the /vendor/ 404s and the
    demo pages (their inline check) all say it."""
    what = ("The front-end packages are missing (%s from npm: the demo pages need them)"
            % " and ".join(packages))
    env = os.environ.get("ARBITER_NODE_MODULES")
    if env:
        return ("%s: ARBITER_NODE_MODULES=%s holds no %s. Point it at the web/node_modules "
                "that `npm ci --prefix web` makes in an Arbiter checkout, or unset it."
                % (what, env, " or ".join(VENDOR.values())))
    if os.path.isfile(os.path.join(SOURCE_WEB, "package-lock.json")):
        prefix = SOURCE_WEB
        if os.path.join(os.getcwd(), "web") == SOURCE_WEB:
            prefix = "web"
        return ("%s: run `npm ci --prefix %s` (`make setup` does it), then restart the server."
                % (what, prefix))
    return ("%s: this Arbiter was built without npm. Reinstall it from its source with Node.js "
            "and npm on the PATH (`pip install .` runs `npm ci --prefix web` and bundles them), "
            "or run `npm ci --prefix web` in an Arbiter checkout and start the server with "
            "ARBITER_NODE_MODULES=<checkout>/web/node_modules." % what)


class MissingFrontEnd(resource.Resource):
    """/vendor/<package>/... when that npm package is missing: 404, saying what to run."""

    isLeaf = True

    def __init__(self, message):
        super().__init__()
        self.message = message

    def render(self, request):
        request.setResponseCode(http.NOT_FOUND)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.message.encode("utf-8") + b"\n"


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, service):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        metrics = self.service.metrics
        request.setHeader(b"content-type", metrics.content_type.encode())
        return metrics.render(self.service)


def build_root(service, factory, static_dir=STATIC):
    root = static.File(static_dir)
    root.putChild(b"ws", WebSocketResource(factory))
    vendor = resource.Resource()
    missing = {}
    for name, sub in VENDOR.items():
        for base in node_modules_dirs():
            path = os.path.join(base, sub)
            if os.path.isdir(path):
                vendor.putChild(name, static.File(path))
                break
        else:
            missing[name] = sub.rsplit("/", 1)[0]          # the npm package
    if missing:
        message = missing_front_end_message(list(missing.values()))
        log.warn("{message}", message=message)
        for name in missing:
            vendor.putChild(name, MissingFrontEnd(message))
    root.putChild(b"vendor", vendor)
    if service.metrics is not None:
        root.putChild(b"metrics", MetricsResource(service))
    try:
        from web.api import ApiResource
    except ImportError:
        pass
    else:
        root.putChild(b"api", ApiResource(service))
    return root


class ArbiterChannel(http.HTTPChannel):
    """One TCP connection to the site, with a deadline for its first request.

    twisted.web's own timer is an *idle* timeout, reset by every byte, so a
    client that sends nothing (Twisted's default is 12 hours) or a byte now and
    then holds its connection for ever. This channel closes a connection whose
    first request has not arrived in full within ``Config.handshake_timeout``
    seconds, whatever it sends meanwhile. After that, HTTP's idle timeout
    (``Config.http_timeout``) applies between requests. A WebSocket upgrade hands
    the socket to Autobahn in the middle of its request: twisted.web has stopped
    its idle timer for the request and never restarts it, and this deadline is
    gone with the first request, so no HTTP timer can close a WebSocket.
    """

    _deadline = None

    def connectionMade(self):
        site = self.site
        if site.socket_send_buffer:
            try:
                self.transport.getHandle().setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, site.socket_send_buffer)
            except (AttributeError, OSError):
                pass                         # not a socket of ours to size
        super().connectionMade()
        if site.max_connections_per_ip:
            site.track(self.transport)
        if site.handshake_timeout:
            self._deadline = self.callLater(site.handshake_timeout, self._handshake_expired)

    def allContentReceived(self):
        self._stop_deadline()
        super().allContentReceived()

    def connectionLost(self, reason):
        self._stop_deadline()
        super().connectionLost(reason)

    def _stop_deadline(self):
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()

    def _handshake_expired(self):
        self._deadline = None
        if self.transport is not None:
            self.transport.abortConnection()


class ArbiterSite(server.Site):
    """The site, with the connection limits of ``Config`` (docs/EXTENSIONS.md):
    ``handshake_timeout`` and ``http_timeout`` (see :class:`ArbiterChannel`),
    ``socket_send_buffer`` (SO_SNDBUF of each accepted socket) and
    ``max_connections_per_ip``.

    With a per-address cap, a connection over it is closed as it is accepted,
    before any HTTP. The count must survive the WebSocket takeover (after it the
    HTTP channel never hears of the connection again), so the site keeps each
    address's transports and counts those still connected, pruning the rest when
    it counts them (and all addresses once their number has doubled).
    """

    protocol = ArbiterChannel
    displayTracebacks = False

    def __init__(self, root, config, reactor=None):
        super().__init__(root, timeout=config.http_timeout, reactor=reactor)
        self.handshake_timeout = config.handshake_timeout
        self.socket_send_buffer = config.socket_send_buffer
        self.max_connections_per_ip = config.max_connections_per_ip
        self._by_address = {}        # host -> its transports (some may be closed by now)
        self._sweep_at = 64
        self._refusals = QuietLog(self.reactor.seconds, log)

    def buildProtocol(self, addr):
        cap = self.max_connections_per_ip
        if cap:
            host = getattr(addr, "host", None)
            if self.open_connections(host) >= cap:
                self._refusals.warn("max_connections_per_ip",
                                    "closed a connection from {host}: {cap} already open "
                                    "(max_connections_per_ip)", host=host, cap=cap)
                return None          # the listening port closes the socket at once
        return super().buildProtocol(addr)

    def open_connections(self, host):
        """How many connections from ``host`` are open (WebSockets included)."""
        transports = self._by_address.get(host)
        if not transports:
            return 0
        live = [t for t in transports if t.connected]
        if live:
            self._by_address[host] = live
        else:
            del self._by_address[host]
        return len(live)

    def track(self, transport):
        host = getattr(transport.getPeer(), "host", None)
        self._by_address.setdefault(host, []).append(transport)
        if len(self._by_address) >= self._sweep_at:
            for h in list(self._by_address):
                self.open_connections(h)
            self._sweep_at = max(64, 2 * len(self._by_address))


def build_site(service, factory, static_dir=STATIC):
    return ArbiterSite(build_root(service, factory, static_dir), service.config,
                       reactor=service.clock)
