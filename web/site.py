"""The site: static pages at /, the WebSocket at /ws, the JSON API at /api,
Prometheus metrics at /metrics, and the npm-installed front-end libraries at
/vendor/."""

import os

from autobahn.twisted.resource import WebSocketResource
from twisted.web import resource, server, static

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")

# URL folder under /vendor/ -> path inside an npm install's node_modules
VENDOR = {
    b"three": "three/build",
    b"msgpack": "@msgpack/msgpack/dist.esm",
}


def node_modules_dirs():
    """Where ``npm ci --prefix web`` put the front-end libraries."""
    env = os.environ.get("ARBITER_NODE_MODULES")
    if env:
        yield env
    yield os.path.join(HERE, "node_modules")
    yield os.path.join(os.getcwd(), "web", "node_modules")


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
    for name, sub in VENDOR.items():
        for base in node_modules_dirs():
            path = os.path.join(base, sub)
            if os.path.isdir(path):
                vendor.putChild(name, static.File(path))
                break
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


def build_site(service, factory, static_dir=STATIC):
    site = server.Site(build_root(service, factory, static_dir))
    site.displayTracebacks = False
    return site
