// Unit tests of the browser client library with a fake WebSocket (node --test).
// Run by tests/test_js_client.py; the browser tests cover it against a real server.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  applyMergePatch,
  Connection,
  glideMove,
  LockstepClient,
  RealtimeClient,
  StateBuffer,
  stepAvatar,
  stepMove,
  TickClock,
} from "../../web/static/js/arbiter/index.js";
import { FakeSocket, sleep } from "./fake_socket.mjs";

const WORLD = { size: 40, speed: 5, avatar_speed: 8, tag_radius: 2, max_cubes: 16, max_players: 16 };

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

function options(extra = {}) {
  return {
    url: "ws://test/ws",
    room: "r1",
    name: "ada",
    storage: new MemoryStorage(),
    WebSocket: FakeSocket,
    pingInterval: 0,
    backoff: { min: 1, max: 4 },
    ...extra,
  };
}

function welcome(extra = {}) {
  return { t: "welcome", you: "p1", name: "ada", room: "r1", token: "tok-1", tick: 10, rate: 20, ack: 0, world: WORLD, ...extra };
}

function snapshot(tick, ack, avatarPos = [0, 0.5, 0], extra = {}) {
  return {
    t: "snapshot",
    tick,
    ack,
    state: {
      entities: { 1: { kind: "avatar", owner: "p1", pos: avatarPos, color: "#ff0000" }, ...extra },
      players: { p1: { name: "ada", connected: true, ping: 0, score: 0 } },
    },
  };
}

async function joined(extra = {}) {
  const client = new RealtimeClient(options(extra));
  const done = client.connect();
  await sleep(0);
  const ws = FakeSocket.last;
  ws.open();
  ws.receive(welcome());
  ws.receive(snapshot(10, 0));
  await done;
  return { client, ws };
}

test("merge patch follows the RFC 7386 examples", () => {
  const cases = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) {
    assert.deepEqual(applyMergePatch(structuredClone(target), patch), want);
  }
});

test("hello carries v, room, name; welcome stores the token; the next connection resumes with it", async () => {
  const storage = new MemoryStorage();
  const conn = new Connection(options({ storage }));
  const first = conn.connect();
  await sleep(0);
  const ws = FakeSocket.last;
  assert.deepEqual(ws.protocols, ["arbiter.v1.json"]);
  ws.open();
  assert.deepEqual(ws.sent[0], { t: "hello", v: 1, room: "r1", name: "ada" });
  ws.receive(welcome({ ack: 7 }));
  assert.equal((await first).you, "p1");
  assert.equal(storage.getItem("arbiter.token.r1"), "tok-1");
  assert.equal(conn.sendInput({ t: "spawn" }), 8, "seq continues above the ack in welcome");

  ws.drop(1006);
  assert.equal(conn.status, "reconnecting");
  await sleep(20);
  const ws2 = FakeSocket.last;
  assert.notEqual(ws2, ws);
  ws2.open();
  assert.equal(ws2.sent[0].token, "tok-1");
  ws2.receive(welcome({ ack: 3 }));
  assert.equal(conn.sendInput({ t: "spawn" }), 9, "seq never goes back, even if ack is lower");
  conn.close();
});

test("a bad token is forgotten and the client joins afresh; a takeover does not reconnect", async () => {
  const storage = new MemoryStorage();
  storage.setItem("arbiter.token.r1", "dead");
  const conn = new Connection(options({ storage }));
  conn.connect();
  await sleep(0);
  let ws = FakeSocket.last;
  ws.open();
  assert.equal(ws.sent[0].token, "dead");
  ws.receive({ t: "error", code: "bad_token", msg: "dead token" });
  ws.drop(4001);
  await sleep(10);
  ws = FakeSocket.last;
  ws.open();
  assert.equal(ws.sent[0].token, undefined);
  ws.receive(welcome());
  ws.drop(4000);
  await sleep(10);
  assert.equal(conn.status, "taken_over");
  assert.equal(FakeSocket.last, ws, "no new socket after a takeover");
});

test("the latency simulator delays sends and keeps their order", async () => {
  const conn = new Connection(options({ latency: { send: 30, recv: 0, jitter: 20 } }));
  conn.connect();
  await sleep(0);
  const ws = FakeSocket.last;
  ws.open();
  await sleep(60);
  ws.receive(welcome()); // jitter applies to receiving too
  await sleep(30);
  assert.equal(conn.status, "open");
  for (let i = 0; i < 5; i++) conn.sendInput({ t: "say", text: `m${i}` });
  assert.equal(ws.sentOf("say").length, 0, "nothing leaves before the delay");
  await sleep(70);
  assert.deepEqual(ws.sentOf("say").map((m) => m.text), ["m0", "m1", "m2", "m3", "m4"]);
  conn.close();
});

test("a key press moves the own avatar at once; an agreeing server causes no correction", async () => {
  const { client, ws } = await joined();
  assert.deepEqual(client.predictedPosition(), [0, 0.5, 0]);
  client.setDirection(1, 0);
  const moves = ws.sentOf("move");
  assert.equal(moves.length, 1, "the first sample goes out on the press");
  assert.deepEqual(moves[0].dir, [1, 0]);
  const [x] = client.predictedPosition();
  assert.ok(x > 0.2, `predicted x ${x} moved at once`);
  await sleep(120);
  client.setDirection(0, 0);
  const all = ws.sentOf("move");
  assert.ok(all.length >= 3, `sampled at ~30 Hz: ${all.length} moves`);
  assert.ok(all.every((m) => m.dt >= 1 && m.dt <= 250));
  // The server applies the same moves with the same function.
  let sx = 0;
  let sz = 0;
  const after = [];
  for (const m of all) {
    [sx, sz] = stepAvatar(sx, sz, m.dir[0], m.dir[1], m.dt, 8, 40);
    after.push([sx, 0.5, sz]);
  }
  const predicted = client.predictedPosition();
  // ack half way: the client replays the rest on top.
  ws.receive({ t: "delta", tick: 11, ack: all[1].seq, patch: { entities: { 1: { pos: after[1] } } } });
  assert.deepEqual(client.predictedPosition(), predicted);
  ws.receive({ t: "delta", tick: 12, ack: all[all.length - 1].seq, patch: { entities: { 1: { pos: [sx, 0.5, sz] } } } });
  assert.deepEqual(client.predictedPosition(), [sx, 0.5, sz]);
  assert.deepEqual(predicted, [sx, 0.5, sz]);
  assert.equal(client.correctionCount, 0);
  assert.equal(client.backlog, 0);
  client.close();
});

test("reconciliation replays unacked moves on the server's position; small errors blend, large ones snap", async () => {
  const { client, ws } = await joined({ blendTime: 50 });
  client.setDirection(0, 1);
  client.setDirection(0, 0);
  const [m] = ws.sentOf("move");
  // The server says we were somewhere else before that move (say, pushed by a rule).
  ws.receive({ t: "delta", tick: 11, ack: 0, patch: { entities: { 1: { pos: [0.5, 0.5, 0] } } } });
  assert.equal(client.correctionCount, 1);
  const [x, , z] = client.predictedPosition();
  assert.ok(x < 0.5 && x > 0, `blending from the old prediction: x=${x}`);
  await sleep(400);
  const expected = stepAvatar(0.5, 0, 0, 1, m.dt, 8, 40);
  assert.deepEqual(client.predictedPosition(), [expected[0], 0.5, expected[1]]);
  ws.receive({ t: "delta", tick: 12, ack: m.seq, patch: { entities: { 1: { pos: [15, 0.5, 15] } } } });
  assert.deepEqual(client.predictedPosition(), [15, 0.5, 15], "a large error snaps");
  assert.equal(client.correctionCount, 2);
  assert.ok(z >= 0);
  client.close();
});

test("reject takes a move out of the prediction; correct resets the base", async () => {
  const { client, ws } = await joined({ blendTime: 20 });
  client.setDirection(1, 0);
  client.setDirection(0, 0);
  const [m] = ws.sentOf("move");
  assert.ok(client.predictedPosition()[0] > 0);
  ws.receive({ t: "reject", seq: m.seq, code: "rate_limited", msg: "slow down" });
  await sleep(400); // the blend is visual only
  assert.deepEqual(client.predictedPosition(), [0, 0.5, 0]);
  ws.receive({ t: "correct", id: 1, pos: [3, 0.5, 4], reason: "speed", seq: m.seq });
  await sleep(400);
  assert.deepEqual(client.predictedPosition(), [3, 0.5, 4]);
  // A state older than the correction does not undo it.
  ws.receive({ t: "delta", tick: 11, ack: 0, patch: {} });
  assert.deepEqual(client.predictedPosition(), [3, 0.5, 4]);
  client.close();
});

test("others are interpolated between timestamped states; deltas merge into the mirror", async () => {
  const { client, ws } = await joined();
  ws.receive({
    t: "delta",
    tick: 11,
    ack: 0,
    patch: { entities: { 2: { kind: "cube", owner: "p2", pos: [0, 0.5, 0], color: "#00ff00", to: [4, 0] } } },
  });
  ws.receive({ t: "delta", tick: 13, ack: 0, patch: { entities: { 2: { pos: [2, 0.5, 0] } } } });
  ws.receive({ t: "delta", tick: 15, ack: 0, patch: { entities: { 2: { pos: [4, 0.5, 0], to: null } } } });
  assert.deepEqual(client.state.entities[2], { kind: "cube", owner: "p2", pos: [4, 0.5, 0], color: "#00ff00" });
  const at12 = client.buffer.sample(12).get("2");
  assert.deepEqual(at12.pos, [1, 0.5, 0]);
  assert.equal(client.buffer.sample(10.5).get("2"), undefined, "not born yet");
  ws.receive({ t: "delta", tick: 16, ack: 0, patch: { entities: { 2: null } } });
  assert.ok(client.buffer.sample(15.5).get("2"), "drawn until the frame that removed it");
  assert.equal(client.buffer.sample(16).get("2"), undefined);
  client.interpolate = false;
  assert.equal(client.view().get("2"), undefined);
  client.close();
});

test("the tick clock takes the least delayed arrival as its base and measures the spread", () => {
  const clock = new TickClock(20);
  clock.observe(100, 5000 + 10); // 10 ms late
  clock.observe(101, 5050);
  clock.observe(102, 5100 + 30);
  assert.equal(clock.base, 5000 - 100 * 50);
  assert.equal(clock.tickAt(5100), 102);
  assert.ok(clock.spread >= 10 && clock.spread <= 30);
  const buf = new StateBuffer();
  buf.push(5, { 1: { pos: [0, 0, 0] } });
  buf.push(5, { 1: { pos: [1, 0, 0] } }); // a resent snapshot replaces the frame
  assert.equal(buf.frames.length, 1);
});

test("order splits more than 16 ids; tag sends the tick being drawn", async () => {
  const { client, ws } = await joined();
  const ids = Array.from({ length: 20 }, (_, i) => String(i + 10));
  client.order(ids, [1, 2]);
  const orders = ws.sentOf("order");
  assert.deepEqual(orders.map((o) => o.ids.length), [16, 4]);
  assert.equal(typeof orders[0].ids[0], "number");
  client.tag("7");
  const [tag] = ws.sentOf("tag");
  assert.equal(tag.id, 7);
  assert.ok(Number.isInteger(tag.view) && tag.view <= 10);
  client.close();
});

test("tag aims where the last frame drew the target: view + view_frac, after the unsent move", async () => {
  const { client, ws } = await joined();
  const other = (x) => ({ 7: { kind: "avatar", owner: "p2", pos: [x, 0.5, 0], color: "#00ff00" } });
  for (let k = 11; k <= 14; k++) ws.receive(snapshot(k, 0, [0, 0.5, 0], other(k)));
  client.setDirection(1, 0); // the first sample goes at once
  const t = performance.now() + 40;
  client.view(t); // a frame, 40 ms on: the avatar glided on, not yet sent
  const rt = client.renderTick(t);
  const sentBefore = ws.sentOf("move").length;
  client.tag("7");
  const [tag] = ws.sentOf("tag");
  assert.equal(tag.view, Math.floor(rt));
  assert.ok(Math.abs(tag.view + (tag.view_frac ?? 0) - rt) < 0.002, JSON.stringify({ tag, rt }));
  assert.ok(tag.view_frac === undefined || (tag.view_frac > 0 && tag.view_frac < 1));
  // the glided part went first: the moves sent cover the 40 ms the frame showed
  const moves = ws.sentOf("move");
  assert.equal(moves.length, sentBefore + 1);
  const dt = moves.reduce((sum, m) => sum + m.dt, 0);
  assert.ok(Math.abs(dt - 40) <= 1, JSON.stringify(moves));
  const order = ws.sent.map((m) => m.t).filter((k) => k === "move" || k === "tag");
  assert.equal(order[order.length - 1], "tag");
  client.close();
});

test("the default prediction step is the cube movement", async () => {
  const { client } = await joined();
  assert.equal(client.step, stepMove);
  assert.equal(client.glide, glideMove);
  assert.deepEqual(stepMove([1, 0.5, 2], { t: "move", dir: [1, 0], dt: 100 }, WORLD), [1.8, 0.5, 2]);
  assert.deepEqual(stepMove([1, 0.5, 2], { t: "spawn" }, WORLD), [1, 0.5, 2]);
  client.close();
});

test("a custom step function predicts your inputs and replays them in reconciliation", async () => {
  // A game of its own: a `move` is one whole unit, whatever its dt; a `dash` jumps dx along x.
  const calls = [];
  const step = (pos, input, world) => {
    assert.deepEqual(world, WORLD);
    calls.push(input.seq);
    if (input.t === "move") return [pos[0] + input.dir[0], pos[1], pos[2] + input.dir[1]];
    if (input.t === "dash") return [pos[0] + input.dx, pos[1], pos[2]];
    return pos;
  };
  const { client, ws } = await joined({ step, blendTime: 20 });
  assert.equal(client.glide, step, "a custom step also draws the held direction between samples");
  client.setDirection(1, 0);
  client.setDirection(0, 0);
  const [move] = ws.sentOf("move");
  assert.deepEqual(client.predictedPosition(), [1, 0.5, 0], "predicted with the custom step, not stepAvatar");
  const dash = client.sendInput({ t: "dash", dx: 3 });
  assert.deepEqual(ws.sentOf("dash"), [{ t: "dash", dx: 3, seq: dash }], "sent numbered, as it was given");
  assert.deepEqual(client.predictedPosition(), [4, 0.5, 0], "predicted at once");
  assert.deepEqual(calls, [move.seq, dash]);

  // The server applied the move (and pushed us elsewhere), not yet the dash: the dash is replayed on top.
  calls.length = 0;
  ws.receive({ t: "delta", tick: 11, ack: move.seq, patch: { entities: { 1: { pos: [2, 0.5, 1] } } } });
  assert.deepEqual(calls, [dash], "the replay runs the custom step on the unacked inputs only");
  assert.equal(client.correctionCount, 1);
  await sleep(200); // the small error is blended away
  assert.deepEqual(client.predictedPosition(), [5, 0.5, 1]);

  // A rejected dash leaves the replay.
  calls.length = 0;
  ws.receive({ t: "reject", seq: dash, code: "unsupported", msg: "no dashing here" });
  assert.deepEqual(calls, []);
  await sleep(200);
  assert.deepEqual(client.predictedPosition(), [2, 0.5, 1]);
  client.close();
});

test("LockstepClient builds your game with makeGame and sends turns ahead with the checksum", async () => {
  assert.throws(() => new LockstepClient(new Connection(options())), /makeGame/);
  const conn = new Connection(options());
  const starts = [];
  const makeGame = (start) => {
    starts.push(start);
    return {
      turn: 0,
      applyMaster(master) {
        this.turn = master.turn;
      },
      checksum() {
        return this.turn * 10;
      },
    };
  };
  const ls = new LockstepClient(conn, { makeGame, fps: () => 50 });
  conn.connect();
  await sleep(0);
  const ws = FakeSocket.last;
  ws.open();
  ws.receive(welcome({ phase: "setup", role: "player" }));
  assert.equal(ls.phase, "setup");
  const start = { t: "start", seed: 7, players: ["p1", "p2"], config: {}, input_delay: 2 };
  ws.receive(start);
  assert.deepEqual(starts, [start]);
  assert.deepEqual(ws.sentOf("turn"), [
    { t: "turn", turn: 1, cmds: [], fps: 50 },
    { t: "turn", turn: 2, cmds: [], fps: 50 },
  ]);
  ls.command(["v", 1, 0]);
  ws.receive({ t: "master", turn: 1, cmds: {}, frames: 1, turn_ms: 100 });
  assert.equal(ls.turn, 1);
  assert.deepEqual(ws.sentOf("turn")[2], { t: "turn", turn: 3, cmds: [["v", 1, 0]], check: [1, 10], fps: 50 });
  conn.close();
});

// -- cluster redirects: error `moved` with the owner's url, then close 4005 -------------

/** What the server says to a hello for a room another node owns. */
function moved(url) {
  return { t: "error", code: "moved", url, msg: `the room lives at ${url}` };
}

/** Record a connection's events of these types: [[type, ...args]]. */
function record(emitter, types) {
  const seen = [];
  for (const t of types) emitter.on(t, (...args) => seen.push([t, ...args]));
  return seen;
}

test("moved: the same hello goes to the url at once, over the same subprotocol, and the error stays hidden", async () => {
  const storage = new MemoryStorage();
  storage.setItem("arbiter.token.r1", "tok-0");
  // A back-off of 10 s: a new socket within a tick can only be the redirect.
  const conn = new Connection(options({ storage, backoff: { min: 10000, max: 10000 }, hello: { role: "spectator", sync: "intent" } }));
  const seen = record(conn, ["error", "message", "redirect", "status"]);
  const joined = conn.connect();
  await sleep(0);
  const ws1 = FakeSocket.last;
  ws1.open();
  const hello = { t: "hello", v: 1, room: "r1", role: "spectator", sync: "intent", name: "ada", token: "tok-0" };
  assert.deepEqual(ws1.sent, [hello]);
  ws1.receive(moved("ws://node-b:8081/ws"));
  ws1.drop(4005);
  await sleep(0);
  const ws2 = FakeSocket.last;
  assert.notEqual(ws2, ws1, "a new socket at once, no back-off");
  assert.equal(ws2.url, "ws://node-b:8081/ws");
  assert.deepEqual(ws2.protocols, ws1.protocols);
  assert.equal(conn.url, "ws://node-b:8081/ws");
  assert.equal(conn.originUrl, "ws://test/ws");
  assert.equal(conn.attempts, 0);
  assert.equal(conn.redirects, 1);
  ws2.open();
  assert.deepEqual(ws2.sent, [hello], "the same hello: room, name, role, sync, token");
  ws2.receive(welcome());
  assert.equal((await joined).you, "p1");
  assert.equal(conn.status, "open");
  assert.equal(conn.redirects, 0, "a welcome resets the hop count");
  assert.deepEqual(seen.filter(([t]) => t === "error"), [], "moved is not an error for the application");
  assert.ok(!seen.some(([t, m]) => t === "message" && m.t === "error"), "nor a message");
  assert.deepEqual(seen.filter(([t]) => t === "redirect"), [
    ["redirect", { url: "ws://node-b:8081/ws", from: "ws://test/ws", hops: 1, msg: "the room lives at ws://node-b:8081/ws" }],
  ]);
  const statuses = seen.filter(([t]) => t === "status").map(([, s]) => s);
  assert.ok(!statuses.includes("reconnecting"), `4005 is no drop: ${statuses}`);
  assert.deepEqual(statuses, ["connecting", "joining", "connecting", "joining", "open"]);
  conn.close();
});

test("moved: three redirects in a row are followed, a fourth is the error 'too many redirects'", async () => {
  const conn = new Connection(options());
  const seen = record(conn, ["error", "redirect"]);
  const joined = conn.connect();
  const urls = ["ws://a/ws", "ws://b/ws", "ws://c/ws", "ws://d/ws"];
  for (const url of urls) {
    await sleep(0);
    const ws = FakeSocket.last;
    ws.open();
    assert.equal(ws.sent[0].t, "hello");
    ws.receive(moved(url));
    ws.drop(4005);
  }
  await assert.rejects(joined, /too many redirects/);
  assert.equal(conn.status, "closed");
  const sockets = FakeSocket.all.length;
  await sleep(30);
  assert.equal(FakeSocket.all.length, sockets, "no further attempt: no loop");
  assert.deepEqual(seen.filter(([t]) => t === "redirect").map(([, r]) => r.url), urls.slice(0, 3));
  const errors = seen.filter(([t]) => t === "error").map(([, e]) => e);
  assert.equal(errors.length, 1);
  assert.match(errors[0].msg, /too many redirects/);
  assert.equal(errors[0].url, "ws://d/ws");

  // A later connect() is a new join attempt, from the url the connection was made with.
  const again = conn.connect();
  await sleep(0);
  assert.equal(FakeSocket.last.url, "ws://test/ws");
  FakeSocket.last.open();
  FakeSocket.last.receive(welcome());
  await again;

  // maxRedirects: 0 follows none; a url that is not ws(s) is an error too.
  for (const [opts, url, why] of [[{ maxRedirects: 0 }, "ws://b/ws", /too many redirects/], [{}, "http://b/", /moved without a ws/]]) {
    const c = new Connection(options(opts));
    const p = c.connect();
    await sleep(0);
    FakeSocket.last.open();
    FakeSocket.last.receive(moved(url));
    await assert.rejects(p, why);
    assert.equal(c.status, "closed");
  }
});

test("moved: a reconnection after a drop goes to the room's node, follows moved again, and back to the first url if that node is gone", async () => {
  const client = new RealtimeClient(options({ backoff: { min: 1, max: 2 } }));
  const redirects = record(client, ["redirect"]);
  const joined = client.connect();
  await sleep(0);
  let ws = FakeSocket.last;
  ws.open();
  ws.receive(moved("ws://owner-1/ws"));
  ws.drop(4005);
  await sleep(0);
  ws = FakeSocket.last;
  ws.open();
  ws.receive(welcome());
  ws.receive(snapshot(10, 0));
  await joined;
  assert.equal(client.url, "ws://owner-1/ws", "RealtimeClient.url: the node it is on");

  ws.drop(1006);
  assert.equal(client.status, "reconnecting");
  await sleep(20);
  ws = FakeSocket.last;
  assert.equal(ws.url, "ws://owner-1/ws", "the reconnection goes where it last joined, not to the first url");
  ws.open();
  assert.equal(ws.sent[0].token, "tok-1");
  ws.receive(moved("ws://owner-2/ws")); // the room moved meanwhile
  ws.drop(4005);
  await sleep(0);
  ws = FakeSocket.last;
  assert.equal(ws.url, "ws://owner-2/ws");
  ws.open();
  assert.equal(ws.sent[0].token, "tok-1");
  ws.receive(welcome());
  assert.equal(client.status, "open");
  assert.equal(client.url, "ws://owner-2/ws");
  assert.deepEqual(redirects.map(([, r]) => [r.url, r.hops]), [["ws://owner-1/ws", 1], ["ws://owner-2/ws", 1]]);

  // That node goes away: one attempt there, then the first url (which knows where the room is now).
  ws.drop(1006);
  await sleep(20);
  ws = FakeSocket.last;
  assert.equal(ws.url, "ws://owner-2/ws");
  ws.drop(1006); // connection refused: never opened
  await sleep(20);
  assert.equal(FakeSocket.last.url, "ws://test/ws");
  client.close();
});
