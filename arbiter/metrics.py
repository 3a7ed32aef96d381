"""Prometheus metrics (``/metrics``). Only counter increments on the hot path."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The server's metrics, in a registry of their own (so tests can make many)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.connections = Gauge("arbiter_connections", "Open WebSocket connections", registry=r)
        self.players = Gauge("arbiter_players", "Players in rooms (connected or in grace)",
                             registry=r)
        self.rooms = Gauge("arbiter_rooms", "Rooms", registry=r)
        self.inputs = Counter("arbiter_inputs", "Numbered inputs received", registry=r)
        self.rejects = Counter("arbiter_rejects", "Inputs rejected, by code", ["code"], registry=r)
        self.tick_seconds = Histogram(
            "arbiter_tick_seconds", "Duration of one server tick", registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25))
        self.overruns = Counter("arbiter_tick_overruns", "Tick periods missed", registry=r)
        self.bytes_out = Counter("arbiter_bytes_out", "WebSocket payload bytes sent", registry=r)
        self.slow_skips = Counter("arbiter_slow_consumer_skips",
                                  "State messages skipped for a client that was not reading",
                                  registry=r)
        self.slow_drops = Counter("arbiter_slow_consumer_drops",
                                  "Connections dropped for not reading", registry=r)

    def rejected(self, code):
        self.rejects.labels(code).inc()

    def tick_done(self, seconds, overruns):
        self.tick_seconds.observe(seconds)
        if overruns:
            self.overruns.inc(overruns)

    def refresh(self, service):
        """Gauges that are cheaper to read than to keep (called on scrape)."""
        self.rooms.set(len(service.rooms))
        self.players.set(sum(r.player_count for r in service.rooms))

    def render(self, service):
        self.refresh(service)
        return generate_latest(self.registry)
