// Arbiter's browser client: the one import for games built on an Arbiter server.
//
//   import { RealtimeClient } from "/js/arbiter/index.js";
//   const client = new RealtimeClient({ room: "main", name: "ada" });
//   await client.connect();
//   requestAnimationFrame(function frame() { draw(client.view()); requestAnimationFrame(frame); });
//
// Layers: Connection (the wire: hello/welcome, seq, ping/pong clock, reconnection
// with the token, latency simulator), and on top of it RealtimeClient (state
// mirror, prediction with your game's step function, reconciliation,
// interpolation) or LockstepClient (setup, turns, checksums); compact.js reads
// the compact sync's binary frames, intent.js extrapolates the intent sync's
// moving cubes (both used by the layers above). This folder is
// self-contained: it imports nothing from outside it (msgpack is loaded lazily,
// by its bare name, only for the msgpack encoding), nothing from three.js, and
// touches no DOM beyond sessionStorage. See docs/CLIENT.md.

export * from "./codes.js";
export {
  Connection,
  ClockSync,
  RateMeter,
  Status,
  makeCodec,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK,
  CLOSE_TAKEN_OVER,
  CLOSE_BAD_TOKEN,
  CLOSE_ROOM_FULL,
  CLOSE_MOVED,
  MAX_REDIRECTS,
  SYNC_MODES,
} from "./connection.js";
export {
  CompactMirror,
  CompactError,
  COMPACT_MARKER,
  COMPACT_VERSION,
  isCompactFrame,
  readCompactHeader,
} from "./compact.js";
export { extrapolate, isExtrapolated, roundMotion } from "./intent.js";
export { RealtimeClient, MAX_MOVE_DT, MAX_ORDER_IDS, stepMove, glideMove } from "./realtime.js";
export { LockstepClient } from "./lockstep.js";
export { StateBuffer, TickClock } from "./interpolation.js";
export { applyMergePatch } from "./merge-patch.js";
export { Emitter } from "./emitter.js";
export { stepAvatar, stepToward, round2 } from "./movement.js";
