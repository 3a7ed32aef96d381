"""Assembling a server: the service, the factory and the site, from a Config."""

from arbiter.config import Config
from arbiter.metrics import Metrics
from arbiter.service import ArbiterService
from protocols.factory import ArbiterFactory
from web.site import build_site


def build(config=None, clock=None, game_factory=None, static_dir=None, monotonic=None,
          authenticator=None):
    """Returns (service, factory, site). The caller listens and starts the service.
    ``authenticator``: see arbiter/auth.py (else ``config.auth``'s, else guests)."""
    config = config or Config()
    if authenticator is None and config.auth:
        from arbiter.auth import load
        authenticator = load(config.auth)
    if clock is None:
        from twisted.internet import reactor as clock
    kwargs = {}
    if game_factory is not None:
        kwargs["game_factory"] = game_factory
    if monotonic is not None:
        kwargs["monotonic"] = monotonic
    if authenticator is not None:
        kwargs["authenticator"] = authenticator
    service = ArbiterService(config, clock=clock, metrics=Metrics() if config.metrics else None,
                             **kwargs)
    if config.clustered:
        from arbiter.app.cluster import RedisDirectory
        RedisDirectory(service, reactor=clock)      # sets service.directory
    factory = ArbiterFactory(service)
    site = build_site(service, factory, **({"static_dir": static_dir} if static_dir else {}))
    return service, factory, site
