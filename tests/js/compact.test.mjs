// The compact sync's decoder (web/static/js/arbiter/compact.js) and its wiring in
// Connection / RealtimeClient (node --test; run by tests/test_js_client.py).
//
// The byte vectors are the ones docs/PROTOCOL.md 20.5 prints (tests/test_compact.py::
// test_vectors_of_the_protocol_document checks the server writes them);
// tests/test_compact_js.py checks this decoder against the server over random play.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  CompactError,
  CompactMirror,
  Connection,
  isCompactFrame,
  readCompactHeader,
  RealtimeClient,
} from "../../web/static/js/arbiter/index.js";
import { codec, FakeSocket, options, sleep, WORLD } from "./fake_socket.mjs";

const hex = (s) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g), (b) => parseInt(b, 16));

// -- docs/PROTOCOL.md 20.5 -----------------------------------------------------------------

const PLAYERS = { "p1-ab": { name: "ann", connected: true, ping: 0, score: 0 } };
// REST: varuint length 0x32, then msgpack {"players": PLAYERS} as the server packs it
const REST_HEX =
  "32 81a7706c617965727381a570312d616284a46e616d65a3616e6ea9636f6e6e6563746564c3a470696e6700a573636f726500";
const SNAPSHOT_5 = hex(`
  c1 02 05 02
  01 01
  0000 07 07
  04 63756265
  05 70312d6162
  07 23653631393462
  9600 3200 1fff
  2c01 1fff
  07 ${REST_HEX}`);
const DELTA_6 = hex("c1 01 06 03  02 01  0000 c800 1fff");
const DELTA_7 = hex("c1 01 07 03  02 01  0000 2c01 1fff  05 01  0000");

test("PROTOCOL.md 20.5: the snapshot builds the state a state client has", () => {
  const m = new CompactMirror(2, codec.unpack);
  assert.ok(isCompactFrame(SNAPSHOT_5) && isCompactFrame(SNAPSHOT_5.buffer));
  assert.deepEqual(readCompactHeader(SNAPSHOT_5), { kind: "snapshot", tick: 5, ack: 2, offset: 4 });
  assert.deepEqual(m.apply(SNAPSHOT_5), { kind: "snapshot", tick: 5, ack: 2 });
  assert.deepEqual(m.state, {
    entities: { 7: { kind: "cube", owner: "p1-ab", pos: [1.5, 0.5, -2.25], to: [3, -2.25], color: "#e6194b" } },
    players: PLAYERS,
  });
  assert.equal(m.synced, true);
});

test("PROTOCOL.md 20.5: MOVE_XZ keeps y, then the cube arrives (MOVE_XZ and STOP)", () => {
  const m = new CompactMirror(2, codec.unpack);
  m.apply(SNAPSHOT_5.buffer); // an ArrayBuffer, as a WebSocket gives it
  assert.deepEqual(m.apply(DELTA_6), { kind: "delta", tick: 6, ack: 3 });
  assert.deepEqual(m.state.entities[7].pos, [2, 0.5, -2.25]);
  assert.deepEqual(m.state.entities[7].to, [3, -2.25]);
  assert.deepEqual(m.apply(DELTA_7), { kind: "delta", tick: 7, ack: 3 });
  assert.deepEqual(m.state.entities[7].pos, [3, 0.5, -2.25]);
  assert.ok(!("to" in m.state.entities[7]));
  assert.deepEqual(m.state.players, PLAYERS);
});

test("varuints: 127, 128 (80 01), 300 (AC 02); coordinates are exactly X / 100", () => {
  const m = new CompactMirror(2, codec.unpack);
  // snapshot, tick 300, ack 128; APPEAR slot 5 id 127, flags 0, "a", pos [-0.01, 0.07, 327.67]
  const frame = hex("c1 02 ac02 8001  01 01 0500 7f 00 01 61 ffff 0700 ff7f");
  assert.deepEqual(m.apply(frame), { kind: "snapshot", tick: 300, ack: 128 });
  assert.deepEqual(m.state, { entities: { 127: { kind: "a", pos: [-0.01, 0.07, 327.67] } } });
  assert.equal(m.state.entities[127].pos[1], 7 / 100);
});

test("P = 4, MOVE (with y), TO, GONE, and a slot freed then bound again in a later frame", () => {
  const m = new CompactMirror(4, codec.unpack);
  // snapshot: slot 1 = id 9 (owner "o"), pos [10000, 0.5, -10000] (past 327.67: P = 4), no to
  m.apply(hex("c1 02 01 00  01 01 0100 09 02 04 63756265 01 6f  40420f00 32000000 c0bdf0ff"));
  assert.deepEqual(m.state.entities[9], { kind: "cube", owner: "o", pos: [10000, 0.5, -10000] });
  // delta: MOVE slot 1 to [1, 2, 3]; TO slot 1 [-1, 400]
  m.apply(hex("c1 01 02 00  03 01 0100 64000000 c8000000 2c010000  04 01 0100 9cffffff 409c0000"));
  assert.deepEqual(m.state.entities[9], { kind: "cube", owner: "o", pos: [1, 2, 3], to: [-1, 400] });
  // delta: GONE slot 1
  m.apply(hex("c1 01 03 00  06 01 0100"));
  assert.deepEqual(m.state, { entities: {} });
  assert.equal(m.slots.size, 0);
  // delta: slot 1 names id 10 now (a new APPEAR), then moves
  m.apply(hex("c1 01 04 00  01 01 0100 0a 00 01 62 00000000 00000000 00000000  02 01 0100 01000000 02000000"));
  assert.deepEqual(m.state.entities[10], { kind: "b", pos: [0.01, 0, 0.02] });
});

test("an id past 2^53 keeps every digit", () => {
  const m = new CompactMirror(2, codec.unpack);
  // id 2^60 = 1152921504606846976: varuint 80 80 80 80 80 80 80 80 10
  m.apply(hex("c1 02 01 00  01 01 0000 808080808080808010 00 01 78 0000 0000 0000"));
  assert.deepEqual(Object.keys(m.state.entities), ["1152921504606846976"]);
});

test("REST is applied last, as a merge patch of the whole mirror (removals too)", async () => {
  const m = await CompactMirror.create(2); // loads @msgpack/msgpack by itself
  const rest = (obj) => {
    const body = codec.encode(obj);
    return [0x07, body.length, ...body];
  };
  m.apply(Uint8Array.from([0xc1, 0x02, 1, 0, ...rest({ players: PLAYERS, score: 3, entities: { 4: { kind: "flag" } } })]));
  assert.deepEqual(m.state, { entities: { 4: { kind: "flag" } }, players: PLAYERS, score: 3 });
  // APPEAR slot 0 id 5, then REST gives it a field of its own and removes the flag and the score
  const appear = [0x01, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x63, 0, 0, 0, 0, 0, 0];
  m.apply(Uint8Array.from([0xc1, 0x01, 2, 0, ...appear, ...rest({ entities: { 4: null, 5: { hp: 2 } }, score: null })]));
  assert.deepEqual(m.state, { entities: { 5: { kind: "c", pos: [0, 0, 0], hp: 2 } }, players: PLAYERS });
});

test("a broken frame throws CompactError and drops the mirror; deltas wait for a snapshot", () => {
  const broken = [
    ["a slot that names nothing", hex("c1 01 06 03  02 01  0100 c800 1fff")],
    ["a frame cut short", DELTA_6.subarray(0, DELTA_6.length - 1)],
    ["sections out of order", hex("c1 01 06 03  05 01 0000  02 01 0000 c800 1fff")],
    ["an unknown section", hex("c1 01 06 03  09 00")],
    ["an unknown kind", hex("c1 03 06 03")],
    ["a string that is not UTF-8", hex("c1 01 06 03  01 01 0100 08 00 01 ff 0000 0000 0000")],
  ];
  for (const [why, frame] of broken) {
    const m = new CompactMirror(2, codec.unpack);
    m.apply(SNAPSHOT_5);
    assert.throws(() => m.apply(frame), CompactError, why);
    assert.equal(m.synced, false, why);
    assert.deepEqual(m.state, {}, why);
    assert.throws(() => m.apply(DELTA_6), /before the snapshot/, why);
    m.apply(SNAPSHOT_5);
    m.apply(DELTA_6);
    assert.deepEqual(m.state.entities[7].pos, [2, 0.5, -2.25], why);
  }
  assert.throws(() => new CompactMirror(3), RangeError);
  assert.throws(() => readCompactHeader(hex("82 01")), /0xC1/);
  assert.ok(!isCompactFrame("\u00c1") && !isCompactFrame(new Uint8Array([0x82])) && !isCompactFrame(new Uint8Array()));
});

// -- in the client -----------------------------------------------------------------------

const WELCOME = { t: "welcome", you: "p1-ab", name: "ann", room: "r1", token: "tok", tick: 4, rate: 20, ack: 0, world: WORLD, compact: { v: 1, pos: 2 } };

async function compactClient(extra = {}) {
  const client = new RealtimeClient(options({ sync: "compact", ...extra }));
  const done = client.connect();
  await sleep(0); // the msgpack codec loads
  const ws = FakeSocket.last;
  ws.open();
  ws.receive(WELCOME);
  await done;
  return { client, ws };
}

test("sync compact: hello asks for it on the msgpack subprotocol, whatever the encoding option", async () => {
  const { client, ws } = await compactClient({ encoding: "json" });
  assert.equal(client.sync, "compact");
  assert.deepEqual(ws.protocols, ["arbiter.v1.msgpack"]);
  assert.deepEqual(ws.sent[0], { t: "hello", v: 1, room: "r1", name: "ada", sync: "compact" });
  assert.ok(client.connection.compact instanceof CompactMirror);
  assert.equal(client.tick, null, "no state before the first compact frame");
  client.close();
});

test("sync option: 'state' sends a plain v1 hello, 'intent' asks for it, anything else is refused", async () => {
  for (const [sync, want] of [[undefined, undefined], ["state", undefined], ["intent", "intent"]]) {
    const conn = new Connection(options({ sync }));
    conn.connect();
    await sleep(0);
    FakeSocket.last.open();
    assert.equal(FakeSocket.last.sent[0].sync, want, String(sync));
    assert.deepEqual(FakeSocket.last.protocols, ["arbiter.v1.json"]);
    conn.close();
  }
  assert.throws(() => new Connection(options({ sync: "fast" })), /sync is "state", "intent" or "compact"/);
});

test("compact frames become snapshot and delta updates: mirror, tick, ack, events", async () => {
  const { client, ws } = await compactClient();
  const seen = [];
  for (const t of ["snapshot", "delta", "state"]) client.on(t, (m) => seen.push([t, m.t, m.tick, m.ack]));
  ws.receiveBytes(SNAPSHOT_5);
  assert.equal(client.tick, 5);
  assert.equal(client.ack, 2);
  assert.equal(client.connection.ack, 2);
  assert.deepEqual(client.state.entities[7].pos, [1.5, 0.5, -2.25]);
  assert.deepEqual(client.state.players, PLAYERS);
  ws.receiveBytes(DELTA_6);
  ws.receiveBytes(DELTA_7);
  assert.deepEqual(seen, [
    ["snapshot", "snapshot", 5, 2], ["state", "snapshot", 5, 2],
    ["delta", "delta", 6, 3], ["state", "delta", 6, 3],
    ["delta", "delta", 7, 3], ["state", "delta", 7, 3],
  ]);
  assert.equal(client.state, client.connection.compact.state, "the client reads the connection's mirror");
  assert.deepEqual(client.state.entities[7], { kind: "cube", owner: "p1-ab", color: "#e6194b", pos: [3, 0.5, -2.25] });
  // interpolation has the three states: halfway between ticks 5 and 6
  assert.deepEqual(client.buffer.sample(5.5).get("7").pos, [1.75, 0.5, -2.25]);
  client.close();
});

test("a broken compact frame drops the mirror and sends resync once, until the snapshot comes", async () => {
  const { client, ws } = await compactClient();
  const errors = [];
  client.connection.on("compact_error", (err) => errors.push(err));
  const states = [];
  client.on("state", (m) => states.push(m.tick));
  const warn = console.warn;
  console.warn = () => {};
  try {
    ws.receiveBytes(SNAPSHOT_5);
    ws.receiveBytes(hex("c1 01 06 03  02 01  0900 c800 1fff")); // slot 9 names nothing
    ws.receiveBytes(DELTA_7); // the mirror is dropped: no delta until a snapshot
    assert.deepEqual(states, [5]);
    assert.equal(ws.sentOf("resync").length, 1, "one resync for the broken frame");
    assert.equal(errors.length, 2);
    assert.ok(errors.every((e) => e instanceof CompactError));
    assert.equal(client.connection.compactErrors, 2);
    // the snapshot the resync asked for
    ws.receiveBytes(hex("c1 02 08 03 01 01 0000 07 06 04 63756265 05 70312d6162 07 23653631393462 2c01 3200 1fff 07 " + REST_HEX));
    assert.deepEqual(states, [5, 8]);
    assert.deepEqual(client.state.entities[7].pos, [3, 0.5, -2.25]);
    ws.receiveBytes(hex("c1 01 09 03  02 01  0000 c800 1fff"));
    assert.deepEqual(client.state.entities[7].pos, [2, 0.5, -2.25]);
    // broken again after it: a new resync
    ws.receiveBytes(hex("c1 01 0a 03  02 01  0500 c800 1fff"));
    assert.equal(ws.sentOf("resync").length, 2);
  } finally {
    console.warn = warn;
  }
  client.close();
});

test("prediction and reconciliation by ack work the same on compact frames", async () => {
  const { client, ws } = await compactClient();
  // snapshot, tick 5, ack 0: the own avatar (id 1, slot 0) at [0, 0.5, 0]
  const avatar = (tick, ack, x100) =>
    Uint8Array.from([0xc1, 0x02, tick, ack, 0x01, 0x01, 0, 0, 1, 0x02, 6, ...Buffer.from("avatar"), 5, ...Buffer.from("p1-ab"), x100 & 0xff, (x100 >> 8) & 0xff, 50, 0, 0, 0]);
  ws.receiveBytes(avatar(5, 0, 0));
  assert.equal(client.avatarId, "1");
  client.sendInput({ t: "move", dir: [1, 0], dt: 100 });
  client.sendInput({ t: "move", dir: [1, 0], dt: 100 });
  assert.deepEqual(client.predictedPosition(0).map((v) => Math.round(v * 100) / 100), [1.6, 0.5, 0]);
  const corrections = [];
  client.on("correction", (c) => corrections.push(c));
  // the server has applied the first move (ack 1): x 0.8, MOVE_XZ slot 0
  ws.receiveBytes(Uint8Array.from([0xc1, 0x01, 6, 1, 0x02, 0x01, 0, 0, 80, 0, 0, 0]));
  assert.equal(client.ack, 1);
  assert.deepEqual(client.pendingInputs.map((m) => m.seq), [2]);
  assert.deepEqual(corrections, [], "the prediction agreed");
  assert.equal(client.backlog, 1);
  client.close();
});

test("a welcome without compact (a server that ignores it): ordinary msgpack state messages", async () => {
  const client = new RealtimeClient(options({ sync: "compact" }));
  const done = client.connect();
  await sleep(0);
  const ws = FakeSocket.last;
  ws.open();
  ws.receive({ ...WELCOME, compact: undefined });
  await done;
  assert.equal(client.connection.compact, null);
  ws.receive({ t: "snapshot", tick: 5, ack: 0, state: { entities: { 3: { kind: "cube", pos: [1, 0.5, 1] } }, players: {} } });
  assert.deepEqual(client.state.entities[3].pos, [1, 0.5, 1]);
  client.close();
});
