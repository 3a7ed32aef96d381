"""The one home of Arbiter's settings, with their defaults.

``twistd arbiter`` options (see ``arbiter.tap``) override these fields; code
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
    tick_spread: int = 1         # spread the rooms' ticks over this many slots per period
    grace: float = 30.0          # seconds a disconnected player is kept
    max_message_size: int = 65536
    secret: bytes = b""          # token signing key; random per start when empty
    recenter_every: int = 0      # example authority rule; 0 = off
    world: World = field(default_factory=World)
    send_buffer_limit: int = 256 * 1024   # bytes queued for one slow client
    api_key: str = ""            # protects room creation/deletion when set
    lockstep_turn_ms: int = 100
    lockstep_turn_timeout: float = 1.0
    lockstep_drop_after: float = 0.0    # 0 = a dropped player pauses the game
    join_token_ttl: float = 300.0       # seconds an HTTP join token stays valid
    max_api_body: int = 16384           # bytes in one /api request body
    metrics: bool = True

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
        if not 1 <= self.world.max_cubes <= 64:
            raise ValueError("max_cubes must be in [1, 64], got %r" % (self.world.max_cubes,))
