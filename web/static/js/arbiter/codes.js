// The wire vocabulary: subprotocols, message types, error, reject and close
// codes, and the limits of client messages (docs/PROTOCOL.md and its
// extensions). The server's arbiter/codes.py holds the same values;
// tests/test_codes_parity.py keeps the two equal.

/** The WebSocket subprotocols: JSON text frames, MessagePack binary frames. */
export const SUBPROTOCOLS = Object.freeze(["arbiter.v1.json", "arbiter.v1.msgpack"]);

/** Message types a client sends: protocol v1, then the setup phase and lockstep turns. */
export const CLIENT_MESSAGES = Object.freeze([
  "hello", "move", "spawn", "delete", "order", "tag", "say", "ping", "resync",
  "configure", "ready", "turn",
]);

/** Message types the server sends: protocol v1, then the extensions. */
export const SERVER_MESSAGES = Object.freeze([
  "welcome", "snapshot", "delta", "reject", "correct", "event", "pong", "error",
  "phase", "setup", "start", "master", "catchup", "desync",
]);

/** The numbered inputs of protocol v1 (queued for the tick, acked, rate-limited). */
export const V1_INPUTS = Object.freeze(["move", "spawn", "delete", "order", "tag", "say"]);

/** Codes of `error` messages. */
export const ERROR_CODES = Object.freeze([
  "bad_message", "not_joined", "already_joined", "bad_token", "room_full", "internal_error",
  "rate_limited", "room_ended", "moved", "unavailable", "unauthorized", "private_room",
]);

/** Codes of `reject` messages: v1 first, in order of precedence, then the extensions'. */
export const REJECT_CODES = Object.freeze([
  "bad_seq", "rate_limited", "not_owner", "out_of_bounds", "limit", "miss",
  "spectator", "not_setup", "not_running", "unsupported", "internal_error",
  "late", "duplicate", "bad_turn", "too_big", "not_in_game",
]);

/** Reasons a `correct` message gives. */
export const CORRECT_REASONS = Object.freeze(["speed", "recenter"]);

/** WebSocket close codes the server uses, by name. */
export const CLOSE_CODES = Object.freeze({
  ENDED: 1000, // the room was ended (deleted, or its last player dropped)
  GOING_AWAY: 1001,
  POLICY: 1008, // 20 bad messages within 10 s; no hello within 10 s
  TOO_BIG: 1009,
  TRY_AGAIN: 1013, // after error unavailable (cluster mode: Redis unreachable)
  TAKEN_OVER: 4000, // another connection resumed this player
  BAD_TOKEN: 4001,
  ROOM_FULL: 4003,
  ROOM_ENDED: 4004, // after error room_ended
  MOVED: 4005, // after error moved: join again at its url
  UNAUTHORIZED: 4006, // after error unauthorized (the authenticator refused)
  PRIVATE_ROOM: 4007, // after error private_room (a private room takes join tokens only)
  PING_TIMEOUT: 4008, // no pong for ping_timeout seconds (the player keeps its grace)
});

/** The largest integer a client message may carry (and JavaScript holds exactly): 2^53 - 1. */
export const MAX_INT = Number.MAX_SAFE_INTEGER;
/** Maps and arrays nested in one client message, at most. */
export const MAX_DEPTH = 32;
/** The server's default limit on one client message, in bytes (larger closes with 1009). */
export const MAX_MESSAGE_SIZE = 65536;
