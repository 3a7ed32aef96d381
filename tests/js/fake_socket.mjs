// A WebSocket stand-in for the client's node tests (client, compact and intent tests):
// it speaks either subprotocol (JSON text or MessagePack binary) and takes raw
// binary frames (the compact sync's), all driven by the test.

import { makeCodec } from "../../web/static/js/arbiter/index.js";

export const codec = await makeCodec("msgpack");
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const toBuffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);

export class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.protocol = protocols[0];
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  static get last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }
  send(data) {
    this.sent.push(typeof data === "string" ? JSON.parse(data) : codec.unpack(data));
  }
  close(code = 1000) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  // -- driven by the test --
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  /** A server message, in this socket's encoding. */
  receive(msg) {
    this.onmessage?.({ data: this.protocol.endsWith("json") ? JSON.stringify(msg) : toBuffer(codec.encode(msg)) });
  }
  /** A raw binary frame (a Uint8Array), as an ArrayBuffer like a browser gives it. */
  receiveBytes(bytes) {
    this.onmessage?.({ data: toBuffer(bytes) });
  }
  /** The connection drops without a close handshake. */
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  sentOf(t) {
    return this.sent.filter((m) => m.t === t);
  }
}

/** Connection options for a FakeSocket, no storage, no pings. */
export function options(extra = {}) {
  return { url: "ws://test/ws", room: "r1", name: "ada", storage: null, WebSocket: FakeSocket, pingInterval: 0, ...extra };
}

export const WORLD = { size: 40, speed: 5, avatar_speed: 8, tag_radius: 2, max_cubes: 16, max_players: 16 };
