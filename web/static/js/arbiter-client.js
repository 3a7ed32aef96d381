// Arbiter's browser client: one import for games built on an Arbiter server.
//
//   import { RealtimeClient } from "/js/arbiter-client.js";
//   const client = new RealtimeClient({ room: "main", name: "ada" });
//   await client.connect();
//   requestAnimationFrame(function frame() { draw(client.view()); requestAnimationFrame(frame); });
//
// Two layers: Connection (the wire: hello/welcome, seq, ping/pong clock, reconnection
// with the token, latency simulator) and RealtimeClient (state mirror, prediction,
// reconciliation, interpolation). A lockstep or turn-based client builds on Connection.
// Nothing here imports three.js or touches the DOM beyond sessionStorage. See docs/CLIENT.md.

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
} from "./arbiter/connection.js";
export { RealtimeClient, MAX_MOVE_DT, MAX_ORDER_IDS } from "./arbiter/realtime.js";
export { StateBuffer, TickClock } from "./arbiter/interpolation.js";
export { applyMergePatch } from "./arbiter/merge-patch.js";
export { Emitter } from "./arbiter/emitter.js";
export { stepAvatar, stepToward, round2 } from "./movement.js";
