from twisted.application.service import ServiceMaker

arbiter = ServiceMaker(
    "arbiter",
    "arbiter.tap",
    "Arbiter: an authoritative multiplayer game server (pages at /, socket at /ws)",
    "arbiter",
)
