"""The one home of Arbiter's settings, with their defaults.

``twistd arbiter`` options (see ``arbiter.app.tap``) override these fields; code
that embeds Arbiter builds a :class:`Config` directly.
"""

from dataclasses import dataclass, field, asdict, replace


@dataclass(frozen=True)
class World:
    """The realtime cube world, as announced in ``welcome.world``."""

    size: float = 40.0
    speed: float = 5.0
    avatar_speed: float = 8.0
    tag_radius: float = 2.0
    max_cubes: int = 16
    max_players: int = 16

    def as_wire(self):
        return asdict(self)


@dataclass(frozen=True)
class Config:
    """Server-wide settings."""

    port: int = 8080
    interface: str = "127.0.0.1"
    tick_rate: int = 20          # simulation ticks per second
    send_rate: int = 20          # state ticks per second (``rate`` on the wire)
    tick_spread: int = 4         # spread the rooms' ticks over this many slots per period
    grace: float = 30.0          # seconds a disconnected player is kept
    max_message_size: int = 65536
    secret: bytes = b""          # token signing key; random per start when empty
    recenter_every: int = 0      # example authority rule; 0 = off
    world: World = field(default_factory=World)
    send_buffer_limit: int = 256 * 1024   # bytes queued in user space for one connection
    socket_send_buffer: int = 128 * 1024  # SO_SNDBUF of accepted sockets; 0 = the kernel's own
    ping_burst: int = 32         # pings (application and WebSocket) answered in a burst ...
    ping_rate: float = 16.0      # ... and per second after it, per connection
    handshake_timeout: float = 5.0      # seconds a new TCP connection has for its first request
    http_timeout: float = 60.0          # idle seconds before an HTTP keep-alive connection closes
    hello_timeout: float = 10.0         # seconds a WebSocket has to send a valid hello (1008)
    max_connections_per_ip: int = 0     # simultaneous connections per client address; 0 = any
    api_key: str = ""            # protects room creation/deletion when set
    lockstep_turn_ms: int = 100
    lockstep_turn_timeout: float = 1.0
    lockstep_drop_after: float = 0.0    # 0 = a dropped player pauses the game
    join_token_ttl: float = 300.0       # seconds an HTTP join token stays valid
    max_api_body: int = 16384           # bytes in one /api request body
    metrics: bool = True
    # cluster mode (docs/SCALING.md): on when ``redis`` is set
    redis: str = ""              # redis://HOST:PORT/DB; empty = one process, all in memory
    public_url: str = ""         # this node's WebSocket URL as clients reach it
    node_id: str = ""            # this node's name in Redis; random per start when empty
    cluster_heartbeat: float = 1.0      # seconds between a node's writes to Redis
    cluster_ttl: float = 10.0           # seconds a dead node's registration and claims live
    redis_timeout: float = 2.0          # seconds a placement waits for Redis before giving up
    ping_timeout: float = 15.0          # seconds without a pong before a connection is dropped
    # the cube game's extras (docs/GAMES.md); 0 = off, so the state stays v1's
    drones: int = 0              # server-owned drones that wander and chase avatars
    pickups: int = 0             # pickups that give a point to the first avatar to reach them
    round_points: int = 0        # a round ends when a player has this many points (0 = no)
    round_seconds: float = 0.0   # a round ends after this many seconds (0 = no)
    round_pause: float = 5.0     # seconds between a round's end and the next round
    round_once: bool = False     # after the first round the room stays ended
    view_radius: float = 0.0     # players see only entities within this of their avatar
    # lobby and trust (docs/LOBBY.md)
    auth: str = ""               # module:callable that checks credentials; empty = guests
    lan_announce: bool = False   # announce this server on the local network (UDP multicast)
    lan_group: str = "239.255.42.99"    # the multicast group announcements go to
    lan_port: int = 34997        # ... and its UDP port
    lan_name: str = ""           # the name announced; the host name when empty
    lan_interval: float = 2.0    # seconds between announcements

    @property
    def clustered(self):
        return bool(self.redis)

    def with_world(self, **changes):
        return replace(self, world=replace(self.world, **changes))

    def __post_init__(self):
        if self.tick_rate < 1 or self.send_rate < 1:
            raise ValueError("tick_rate and send_rate must be at least 1")
        if self.tick_rate % self.send_rate:
            raise ValueError(
                "send_rate must divide tick_rate, got tick_rate=%d send_rate=%d"
                % (self.tick_rate, self.send_rate)
            )
        if not 1 <= self.tick_spread <= 20:
            raise ValueError("tick_spread must be in [1, 20], got %r" % (self.tick_spread,))
        for name in ("handshake_timeout", "http_timeout", "hello_timeout", "ping_rate"):
            if not getattr(self, name) > 0:
                raise ValueError("%s must be positive, got %r" % (name, getattr(self, name)))
        if self.ping_burst < 1:
            raise ValueError("ping_burst must be at least 1, got %r" % (self.ping_burst,))
        if self.max_connections_per_ip < 0:
            raise ValueError("max_connections_per_ip must be 0 (no cap) or more, got %r"
                             % (self.max_connections_per_ip,))
        if self.redis:
            if not self.secret:
                raise ValueError("cluster mode (--redis) needs --secret: every node must sign "
                                 "and check tokens with the same key")
            if not self.public_url:
                raise ValueError("cluster mode (--redis) needs --public-url, the WebSocket "
                                 "URL clients reach this node at (ws://HOST:PORT/ws)")
            if not self.public_url.startswith(("ws://", "wss://")):
                raise ValueError("--public-url must be a ws:// or wss:// URL, got %r"
                                 % (self.public_url,))
            if not self.redis.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("--redis must be a redis://HOST:PORT/DB URL, got %r"
                                 % (self.redis,))
            if not 0 < self.cluster_heartbeat < self.cluster_ttl / 2:
                raise ValueError("cluster_heartbeat must be positive and under half of "
                                 "cluster_ttl (%r, %r)" % (self.cluster_heartbeat,
                                                           self.cluster_ttl))
        for name in ("drones", "pickups", "round_points"):
            if not 0 <= getattr(self, name) <= 1000:
                raise ValueError("%s must be in [0, 1000], got %r" % (name, getattr(self, name)))
        for name in ("round_seconds", "round_pause", "view_radius"):
            if not getattr(self, name) >= 0:
                raise ValueError("%s must be 0 or more, got %r" % (name, getattr(self, name)))
        if not 1 <= self.lan_port <= 65535:
            raise ValueError("lan_port must be a UDP port, got %r" % (self.lan_port,))
        if not 0.5 <= self.lan_interval <= 3600:
            raise ValueError("lan_interval must be in [0.5, 3600] s, got %r" % (self.lan_interval,))
        if self.auth and ":" not in self.auth:
            raise ValueError("auth must be module:callable, got %r" % (self.auth,))
        if self.ping_timeout < 0:
            raise ValueError("ping_timeout must be 0 (off) or more, got %r" % (self.ping_timeout,))
        if not 1 <= self.world.max_cubes <= 64:
            raise ValueError("max_cubes must be in [1, 64], got %r" % (self.world.max_cubes,))
