// The compact sync (docs/PROTOCOL.md section 20), the reading side.
//
// A client that says hello with `sync: "compact"` (on the msgpack subprotocol)
// gets every `snapshot` and `delta` as a binary frame that starts with 0xC1:
// a varuint header (kind, tick, ack) and sections of records (APPEAR,
// MOVE_XZ, MOVE, TO, STOP, GONE, STEP_XZ) keyed by *slots*, plus REST, a MessagePack
// merge patch of everything the records do not carry. CompactMirror applies
// them and keeps `state`: exactly the plain-object mirror a `sync: "state"`
// client builds from its merge patches, float for float. A line-by-line
// sibling of the Python reference decoder, arbiter.compact.CompactMirror.
//
// Connection uses it by itself when asked for `sync: "compact"`; use it
// directly only to read compact frames some other way.

import { applyMergePatch } from "./merge-patch.js";

/** The first byte of every compact frame (never the first byte of a MessagePack value). */
export const COMPACT_MARKER = 0xc1;
/** The version of PROTOCOL.md section 20 this decoder reads (`welcome.compact.v`). */
export const COMPACT_VERSION = 1;

const DELTA = 0x01;
const SNAPSHOT = 0x02;
const APPEAR = 0x01;
const MOVE_XZ = 0x02;
const MOVE = 0x03;
const TO = 0x04;
const STOP = 0x05;
const GONE = 0x06;
const REST = 0x07;
const STEP_XZ = 0x08;
const HAS_TO = 0x01;
const HAS_OWNER = 0x02;
const HAS_COLOR = 0x04;

/** A compact frame that does not follow PROTOCOL.md section 20 (drop the mirror, send `resync`). */
export class CompactError extends Error {
  constructor(message) {
    super(message);
    this.name = "CompactError";
  }
}

/** The bytes of a frame as a Uint8Array (from an ArrayBuffer, a typed array or a DataView). */
function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("a compact frame is binary (ArrayBuffer or Uint8Array)");
}

/** True when a WebSocket message is a compact frame (binary, first byte 0xC1). */
export function isCompactFrame(data) {
  if (typeof data === "string" || data === null || data === undefined) return false;
  try {
    const bytes = bytesOf(data);
    return bytes.length > 0 && bytes[0] === COMPACT_MARKER;
  } catch {
    return false;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  get done() {
    return this.at >= this.bytes.length;
  }

  byte() {
    if (this.at >= this.bytes.length) throw new CompactError(`the frame ends early (at byte ${this.at})`);
    return this.bytes[this.at++];
  }

  /** Unsigned LEB128; a Number, or a BigInt past 2^53 (an id may be that large). */
  varuint() {
    let n = 0;
    let scale = 1;
    for (let shift = 0; ; shift += 7) {
      if (shift > 63) throw new CompactError("a varuint longer than 9 bytes");
      const b = this.byte();
      n += (b & 0x7f) * scale;
      if (!(b & 0x80)) return Number.isSafeInteger(n) ? n : this._big(shift);
      scale *= 128;
    }
  }

  _big(lastShift) {
    // Read the same bytes again, exactly, as a BigInt.
    let at = this.at - 1 - lastShift / 7;
    let n = 0n;
    for (let shift = 0n; shift <= BigInt(lastShift); shift += 7n) n |= BigInt(this.bytes[at++] & 0x7f) << shift;
    return n;
  }

  /** A varuint that must be a Number (tick, ack, counts, lengths). */
  count(what) {
    const n = this.varuint();
    if (typeof n !== "number") throw new CompactError(`${what} is too large`);
    return n;
  }

  need(n) {
    if (this.at + n > this.bytes.length) {
      throw new CompactError(`the frame ends early (${n} bytes wanted at ${this.at})`);
    }
  }

  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  text() {
    const raw = this.take(this.count("a string's length"));
    try {
      return utf8.decode(raw);
    } catch {
      throw new CompactError("a string that is not UTF-8");
    }
  }

  int8() {
    const b = this.byte();
    return b > 127 ? b - 256 : b;
  }

  slot() {
    this.need(2);
    const v = this.view.getUint16(this.at, true);
    this.at += 2;
    return v;
  }

  /** One coordinate: a signed little-endian integer of `width` bytes, in 0.01 units. */
  coord(width) {
    this.need(width);
    const v = width === 2 ? this.view.getInt16(this.at, true) : this.view.getInt32(this.at, true);
    this.at += width;
    return v / 100;
  }
}

/**
 * The header of a compact frame: {kind: "snapshot" | "delta", tick, ack, offset}
 * (offset: where the sections start). Throws CompactError.
 */
export function readCompactHeader(data) {
  const r = new Reader(bytesOf(data));
  if (r.byte() !== COMPACT_MARKER) throw new CompactError("not a compact frame (it does not start with 0xC1)");
  const kind = r.byte();
  if (kind !== DELTA && kind !== SNAPSHOT) {
    throw new CompactError(`unknown frame kind 0x${kind.toString(16).padStart(2, "0")}`);
  }
  const tick = r.count("the tick");
  const ack = r.count("the ack");
  return { kind: kind === SNAPSHOT ? "snapshot" : "delta", tick, ack, offset: r.at };
}

function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * A client's view built from compact frames.
 *
 *   const mirror = new CompactMirror(welcome.compact.pos, decode); // decode: @msgpack/msgpack's
 *   const { kind, tick, ack } = mirror.apply(frameBytes);
 *   mirror.state  // {entities: {...}, players: {...}, ...}: what merge patches would have built
 *
 * `pos` is P, the bytes of one coordinate (2 or 4, from `welcome.compact.pos`);
 * `decode` reads the REST section's MessagePack (CompactMirror.create(pos)
 * loads @msgpack/msgpack's by itself). A broken frame throws CompactError and
 * leaves the mirror dropped (`synced` false: `state` empty, no slots); deltas
 * are refused (CompactError) until the next snapshot. The connection then
 * sends `resync` (PROTOCOL.md 20.3).
 */
export class CompactMirror {
  constructor(pos = 2, decode = null) {
    if (pos !== 2 && pos !== 4) throw new RangeError(`CompactMirror: pos is 2 or 4 bytes, got ${pos}`);
    this.pos = pos;
    this.decode = decode;
    this.state = {};
    this.slots = new Map(); // slot -> entity key
    this.synced = false; // a snapshot was applied and nothing broke since
  }

  /** A mirror whose REST sections are read with @msgpack/msgpack (loaded lazily, by its bare name). */
  static async create(pos = 2) {
    const { decode } = await import("@msgpack/msgpack");
    return new CompactMirror(pos, decode);
  }

  /** Forget everything (the state of a mirror that waits for its next snapshot). */
  drop() {
    this.state = {};
    this.slots = new Map();
    this.synced = false;
  }

  /** Apply one frame (bytes); returns {kind, tick, ack}. Throws CompactError on a broken frame. */
  apply(data) {
    const bytes = bytesOf(data);
    try {
      return this._apply(bytes);
    } catch (err) {
      this.drop();
      if (err instanceof CompactError) throw err;
      throw new CompactError(`a broken frame: ${err?.message ?? err}`);
    }
  }

  _apply(bytes) {
    const { kind, tick, ack, offset } = readCompactHeader(bytes);
    if (kind === "snapshot") {
      this.state = { entities: {} };
      this.slots = new Map();
    } else if (!this.synced) {
      throw new CompactError("a delta before the snapshot it builds on");
    }
    const state = this.state;
    if (!Object.prototype.hasOwnProperty.call(state, "entities")) state.entities = {};
    const ents = state.entities;
    if (!isMap(ents)) throw new CompactError("the mirror's entities are not a map");
    const slots = this.slots;
    const w = this.pos;
    const r = new Reader(bytes);
    r.at = offset;
    let last = 0;
    while (!r.done) {
      const tag = r.byte();
      if (tag <= last || tag > STEP_XZ) {
        throw new CompactError(`section 0x${tag.toString(16).padStart(2, "0")} out of order or unknown`);
      }
      last = tag;
      if (tag === REST) {
        if (!this.decode) throw new CompactError("a REST section and no MessagePack decoder");
        const patch = this.decode(r.take(r.count("REST's length")));
        if (!isMap(patch)) throw new CompactError("REST is not a map");
        applyMergePatch(state, patch);
        continue;
      }
      const n = r.count("a record count");
      for (let i = 0; i < n; i++) {
        if (tag === APPEAR) {
          const slot = r.slot();
          const key = String(r.varuint());
          const flags = r.byte();
          const e = { kind: r.text() };
          if (flags & HAS_OWNER) e.owner = r.text();
          if (flags & HAS_COLOR) e.color = r.text();
          e.pos = [r.coord(w), r.coord(w), r.coord(w)];
          if (flags & HAS_TO) e.to = [r.coord(w), r.coord(w)];
          ents[key] = e;
          slots.set(slot, key);
          continue;
        }
        const slot = r.slot();
        const key = slots.get(slot);
        const e = key === undefined ? undefined : ents[key];
        if (!isMap(e)) throw new CompactError(`slot ${slot} names no entity`);
        if (tag === MOVE_XZ) {
          if (!Array.isArray(e.pos)) throw new CompactError(`MOVE_XZ for entity ${key}, which has no pos`);
          const x = r.coord(w);
          const z = r.coord(w);
          e.pos = [x, e.pos[1], z];
        } else if (tag === MOVE) {
          e.pos = [r.coord(w), r.coord(w), r.coord(w)];
        } else if (tag === TO) {
          e.to = [r.coord(w), r.coord(w)];
        } else if (tag === STOP) {
          delete e.to;
        } else if (tag === GONE) {
          delete ents[key];
          slots.delete(slot);
        } else if (tag === STEP_XZ) {
          // the position moves by (dx, dz) hundredths: signed bytes
          if (!Array.isArray(e.pos)) throw new CompactError(`STEP_XZ for entity ${key}, which has no pos`);
          const dx = r.int8();
          const dz = r.int8();
          e.pos = [(Math.round(e.pos[0] * 100) + dx) / 100, e.pos[1], (Math.round(e.pos[2] * 100) + dz) / 100];
        }
      }
    }
    this.synced = true;
    return { kind, tick, ack };
  }
}
