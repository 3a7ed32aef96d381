from twisted.application.service import ServiceMaker

arbiter = ServiceMaker(
    "arbiter",
    "arbiter.app.tap",
    "Arbiter: an authoritative multiplayer game server (pages at /, socket at /ws)",
    "arbiter",
)
