"""The wire vocabulary in one place: message types, error, reject and close codes.

Protocol v1's names (docs/PROTOCOL.md) and the extensions' (API rooms, phases,
spectators, lockstep). The JS client's ``web/static/js/arbiter/codes.js``
carries the same values; ``tests/test_codes_parity.py`` keeps the two equal.
"""

# -- subprotocols -------------------------------------------------------------------
JSON = "arbiter.v1.json"
MSGPACK = "arbiter.v1.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)

# -- message types ------------------------------------------------------------------
# client -> server, protocol v1
HELLO, MOVE, SPAWN, DELETE, ORDER, TAG, SAY, PING, RESYNC = (
    "hello", "move", "spawn", "delete", "order", "tag", "say", "ping", "resync")
# client -> server, extensions: the setup phase and lockstep turns
CONFIGURE, READY, TURN = "configure", "ready", "turn"
# server -> client, protocol v1
WELCOME, SNAPSHOT, DELTA, REJECT, CORRECT, EVENT, PONG, ERROR = (
    "welcome", "snapshot", "delta", "reject", "correct", "event", "pong", "error")
# server -> client, extensions
PHASE, SETUP_MSG, START, MASTER, CATCHUP, DESYNC_MSG = (
    "phase", "setup", "start", "master", "catchup", "desync")

CLIENT_MESSAGES = (HELLO, MOVE, SPAWN, DELETE, ORDER, TAG, SAY, PING, RESYNC,
                   CONFIGURE, READY, TURN)
SERVER_MESSAGES = (WELCOME, SNAPSHOT, DELTA, REJECT, CORRECT, EVENT, PONG, ERROR,
                   PHASE, SETUP_MSG, START, MASTER, CATCHUP, DESYNC_MSG)
# numbered inputs of protocol v1 (queued for the tick, acked, rate-limited)
V1_INPUTS = (MOVE, SPAWN, DELETE, ORDER, TAG, SAY)

# -- error codes (``error`` messages) --------------------------------------------------
BAD_MESSAGE = "bad_message"
NOT_JOINED = "not_joined"
ALREADY_JOINED = "already_joined"
BAD_TOKEN = "bad_token"
ROOM_FULL = "room_full"
INTERNAL_ERROR = "internal_error"      # also a reject code: the server failed on an input
ROOM_ENDED = "room_ended"              # a hello to a lockstep room that has ended (close 4004)
# cluster mode (docs/SCALING.md): the room lives on another node, whose public WebSocket
# URL the error's ``url`` gives (close 4005); or placing a new room needs Redis, which
# cannot be reached now (close 1013, "try again later")
MOVED = "moved"
UNAVAILABLE = "unavailable"
# lobby and trust (docs/LOBBY.md): the authenticator refused the credentials (close 4006);
# a hello by name to a private room, which takes only join tokens (close 4007)
UNAUTHORIZED = "unauthorized"
PRIVATE_ROOM = "private_room"
ERROR_CODES = (BAD_MESSAGE, NOT_JOINED, ALREADY_JOINED, BAD_TOKEN, ROOM_FULL, INTERNAL_ERROR,
               "rate_limited", ROOM_ENDED, MOVED, UNAVAILABLE, UNAUTHORIZED, PRIVATE_ROOM)

# -- reject codes, v1 first, in PROTOCOL.md's order of precedence ----------------------
BAD_SEQ = "bad_seq"
RATE_LIMITED = "rate_limited"
NOT_OWNER = "not_owner"
OUT_OF_BOUNDS = "out_of_bounds"
LIMIT = "limit"
MISS = "miss"
# extensions
SPECTATOR = "spectator"
NOT_SETUP = "not_setup"
NOT_RUNNING = "not_running"
UNSUPPORTED = "unsupported"
LATE = "late"
DUPLICATE = "duplicate"
BAD_TURN = "bad_turn"
TOO_BIG = "too_big"
NOT_IN_GAME = "not_in_game"
REJECT_CODES = (BAD_SEQ, RATE_LIMITED, NOT_OWNER, OUT_OF_BOUNDS, LIMIT, MISS,
                SPECTATOR, NOT_SETUP, NOT_RUNNING, UNSUPPORTED, INTERNAL_ERROR,
                LATE, DUPLICATE, BAD_TURN, TOO_BIG, NOT_IN_GAME)

# -- ``correct`` reasons ----------------------------------------------------------------
SPEED = "speed"
RECENTER = "recenter"
CORRECT_REASONS = (SPEED, RECENTER)

# -- close codes ----------------------------------------------------------------------
CLOSE_ENDED = 1000           # the room was ended (deleted, or its last player dropped)
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008          # 20 bad messages within 10 s; no hello within 10 s
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013       # after error unavailable (cluster mode: Redis unreachable)
CLOSE_TAKEN_OVER = 4000
CLOSE_BAD_TOKEN = 4001
CLOSE_ROOM_FULL = 4003
CLOSE_ROOM_ENDED = 4004      # after error room_ended
CLOSE_MOVED = 4005           # after error moved: join again at its url
CLOSE_UNAUTHORIZED = 4006    # after error unauthorized
CLOSE_PRIVATE_ROOM = 4007    # after error private_room
CLOSE_PING_TIMEOUT = 4008    # no pong for ping_timeout seconds (the player keeps its grace)
CLOSE_CODES = {"ENDED": CLOSE_ENDED, "GOING_AWAY": CLOSE_GOING_AWAY, "POLICY": CLOSE_POLICY,
               "TOO_BIG": CLOSE_TOO_BIG, "TAKEN_OVER": CLOSE_TAKEN_OVER,
               "BAD_TOKEN": CLOSE_BAD_TOKEN, "ROOM_FULL": CLOSE_ROOM_FULL,
               "ROOM_ENDED": CLOSE_ROOM_ENDED, "TRY_AGAIN": CLOSE_TRY_AGAIN,
               "MOVED": CLOSE_MOVED, "UNAUTHORIZED": CLOSE_UNAUTHORIZED,
               "PRIVATE_ROOM": CLOSE_PRIVATE_ROOM, "PING_TIMEOUT": CLOSE_PING_TIMEOUT}

# -- limits of client messages (docs/PROTOCOL.md, Transport) ------------------------------
MAX_INT = 2 ** 53 - 1        # the largest integer a JavaScript client holds exactly
MAX_DEPTH = 32               # maps and arrays nested in one client message
MAX_MESSAGE_SIZE = 65536     # default; Config.max_message_size
