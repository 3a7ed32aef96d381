// The intent sync in the client (node --test; run by tests/test_js_client.py):
// extrapolate() against values computed by the Python reference,
// arbiter.games.cubes.extrapolate (tests/test_compact_js.py also compares the two
// on random cases), and RealtimeClient drawing moving cubes where the server has them.

import { test } from "node:test";
import assert from "node:assert/strict";

import { extrapolate, RealtimeClient, StateBuffer } from "../../web/static/js/arbiter/index.js";
import { FakeSocket, options, sleep, WORLD } from "./fake_socket.mjs";

// [entity, tick, rate, speed, [x, z] from arbiter.games.cubes.extrapolate]
const PYTHON = [
  [{ pos: [0, 0.5, 0], to: [3, 0], since: 10 }, 12, 20, 5, [0.5, 0.0]],
  [{ pos: [0, 0.5, 0], to: [3, 0], since: 10 }, 10, 20, 5, [0.0, 0.0]],
  [{ pos: [0, 0.5, 0], to: [3, 0], since: 10 }, 7, 20, 5, [0.0, 0.0]], // before `since`: at pos
  [{ pos: [0, 0.5, 0], to: [3, 0], since: 10 }, 30, 20, 5, [3.0, 0.0]], // stops at `to`
  [{ pos: [1.37, 0.5, -2.29], to: [-4.11, 7.03], since: 100 }, 113, 20, 5, [-0.28, 0.51]],
  [{ pos: [1.37, 0.5, -2.29], to: [-4.11, 7.03], since: 100 }, 113.5, 20, 5, [-0.34, 0.62]],
  [{ pos: [-19.99, 0.5, 19.99], to: [19.99, -19.99], since: 3 }, 57, 30, 7.5, [-10.44, 10.44]],
  [{ pos: [0.01, 0.5, 0.01], to: [0.02, 0.02], since: 0 }, 1, 20, 5, [0.02, 0.02]],
  [{ pos: [5, 0.5, 5], to: [5, 5], since: 0 }, 10, 20, 5, [5.0, 5.0]],
  [{ pos: [2.5, 0.5, -1.25] }, 99, 20, 5, [2.5, -1.25]], // at rest
  [{ pos: [2.5, 0.5, -1.25], to: [1, 1] }, 99, 20, 5, [2.5, -1.25]], // no `since`: a state client's cube
  [{ pos: [-3.33, 0.5, 4.44], to: [10.05, -0.15], since: 41 }, 44.25, 20, 5, [-2.56, 4.18]],
];

test("extrapolate gives what the Python reference gives", () => {
  for (const [entity, tick, rate, speed, want] of PYTHON) {
    assert.deepEqual(extrapolate(entity, tick, rate, speed), want, JSON.stringify([entity, tick]));
  }
});

// -- RealtimeClient with sync "intent" ------------------------------------------------------

const CUBE = { kind: "cube", owner: "p2", color: "#00ff00" };
const AVATAR = { kind: "avatar", owner: "p1", color: "#ff0000" };

async function joined(sync) {
  const client = new RealtimeClient(options({ sync }));
  const done = client.connect();
  await sleep(0);
  const ws = FakeSocket.last;
  ws.open();
  ws.receive({ t: "welcome", you: "p1", name: "ada", room: "r1", token: "t", tick: 9, rate: 20, ack: 0, world: WORLD });
  await done;
  // tick 10: cube 3 leaves [0, 0.5, 0] for [3, 0] (5 units/s, 20 ticks/s: 0.25 a tick)
  const moving = sync === "intent" ? { pos: [0, 0.5, 0], to: [3, 0], since: 10 } : { pos: [0, 0.5, 0], to: [3, 0] };
  ws.receive({ t: "snapshot", tick: 10, ack: 0, state: { entities: { 1: { ...AVATAR, pos: [5, 0.5, 5] }, 3: { ...CUBE, ...moving } }, players: {} } });
  // tick 12: only the avatar moved (an intent client gets no position of the cube in between)
  ws.receive({ t: "delta", tick: 12, ack: 0, patch: { entities: { 1: { pos: [5.5, 0.5, 5] } } } });
  client.interpolationDelay = 100;
  setClock(client);
  return { client, ws };
}

/** A tick clock on local time: tick T arrived at 500 + 50·T ms, no jitter (again after each state). */
function setClock(client) {
  client.tickClock.reset();
  client.tickClock.observe(10, 1000);
}

/** Local time at which the client draws others at tick `tick` (100 ms behind). */
const at = (tick) => 500 + 100 + tick * 50;

test("intent: hello asks for it; moving cubes are drawn where the server has them at the tick drawn", async () => {
  const { client, ws } = await joined("intent");
  assert.equal(ws.sent[0].sync, "intent");
  assert.equal(client.sync, "intent");
  assert.equal(client.renderTick(at(11)), 11);
  assert.deepEqual(client.view(at(11)).get("3").pos, [0.25, 0.5, 0], "between two states: extrapolated, not interpolated");
  assert.deepEqual(client.view(at(11)).get("1").pos, [5.5, 0.5, 5], "the own avatar: predicted as always");
  // past the latest state (tick 12) the cube keeps moving: nothing is sent for it
  assert.equal(client.renderTick(at(20)), 20);
  assert.deepEqual(client.view(at(20)).get("3").pos, [2.5, 0.5, 0]);
  assert.deepEqual(client.view(at(21.5)).get("3").pos, [2.88, 0.5, 0]); // 2.875, rounded half up
  assert.deepEqual(client.view(at(60)).get("3").pos, [3, 0.5, 0], "it stops at `to`");
  assert.deepEqual(client.positionAt("3", 14), [1, 0.5, 0]);
  assert.deepEqual(client.positionAt(client.state.entities[3], 9), [0, 0.5, 0]);
  // the mirror keeps the motion as sent
  assert.deepEqual(client.state.entities[3], { ...CUBE, pos: [0, 0.5, 0], to: [3, 0], since: 10 });
  // without interpolation: at the newest tick the clock says has arrived
  client.interpolate = false;
  assert.equal(client.renderTick(at(20) - 100), 20);
  assert.deepEqual(client.view(at(20) - 100).get("3").pos, [2.5, 0.5, 0]);
  client.close();
});

test("intent: arrival and a new order come as states; the drawing follows them", async () => {
  const { client, ws } = await joined("intent");
  // tick 16: a new order from where it is, toward [1.5, 5]
  ws.receive({ t: "delta", tick: 16, ack: 0, patch: { entities: { 3: { pos: [1.5, 0.5, 0], to: [1.5, 5], since: 16 } } } });
  setClock(client);
  assert.deepEqual(client.view(at(15)).get("3").pos, [1.25, 0.5, 0], "before the order: the first motion");
  assert.deepEqual(client.view(at(18)).get("3").pos, [1.5, 0.5, 0.5], "after it: the new one");
  // tick 36: it arrived (pos final, to and since removed)
  ws.receive({ t: "delta", tick: 36, ack: 0, patch: { entities: { 3: { pos: [1.5, 0.5, 5], to: null, since: null } } } });
  setClock(client);
  assert.deepEqual(client.state.entities[3], { ...CUBE, pos: [1.5, 0.5, 5] });
  assert.deepEqual(client.view(at(35)).get("3").pos, [1.5, 0.5, 4.75]);
  assert.deepEqual(client.view(at(50)).get("3").pos, [1.5, 0.5, 5]);
  client.close();
});

test("intent: float32 positions (MessagePack bodies) are read back on the 0.01 grid", async () => {
  const { client, ws } = await joined("intent");
  const f = Math.fround;
  ws.receive({ t: "delta", tick: 13, ack: 0, patch: { entities: { 3: { pos: [f(0.75), f(0.5), f(-2.29)], to: [f(1.37), f(-4.11)], since: 13 }, 1: { pos: [f(5.53), f(0.5), f(4.99)] } } } });
  assert.notEqual(f(-2.29), -2.29);
  assert.deepEqual(client.state.entities[3].pos, [0.75, 0.5, -2.29]);
  assert.deepEqual(client.state.entities[3].to, [1.37, -4.11]);
  assert.deepEqual(client.state.entities[1].pos, [5.53, 0.5, 4.99]);
  client.close();
});

test("state sync: the same cube is interpolated and held at the latest state (no extrapolation)", async () => {
  const { client, ws } = await joined("state");
  client.smoothClock = false; // the render tick as the tick clock gives it, no extrapolation
  assert.equal(ws.sent[0].sync, undefined);
  assert.equal(client.renderTick(at(20)), 12, "capped at the latest state");
  assert.deepEqual(client.view(at(20)).get("3").pos, [0, 0.5, 0]);
  client.close();
});

test("state sync: no extrapolation by default (a silent server is not a late one)", async () => {
  const { client } = await joined("state");
  assert.equal(client.maxExtrapolation, 0);
  assert.equal(client.renderTick(at(20)), 12, "capped at the latest state");
  assert.deepEqual(client.view(at(20)).get("1").pos, [5.5, 0.5, 5], "the mover held where it was last");
  client.close();
});

test("state sync, a late state: others go on along their last motion for maxExtrapolation, then stop", async () => {
  const { client, ws } = await joined("state");
  // the avatar (entity 1) moved 0.5 from tick 10 to 12: 0.25 a tick
  client.maxExtrapolation = 150; // 3 ticks at 20 a second
  assert.equal(client.renderTick(at(12)), 12);
  assert.ok(Math.abs(client.renderTick(at(14)) - 14) < 1e-9, "past the newest state, up to 3 ticks");
  assert.ok(Math.abs(client.renderTick(at(20)) - 15) < 1e-9, "then it waits");
  const others = (t) => client.buffer.sample(client.renderTick(t), null, 3).get("1").pos;
  assert.deepEqual(others(at(14)).map((v) => Math.round(v * 100) / 100), [6, 0.5, 5]);
  assert.deepEqual(others(at(30)).map((v) => Math.round(v * 100) / 100), [6.25, 0.5, 5]);
  client.close();
});

test("the smoothed render clock eases toward the tick clock instead of jumping", async () => {
  const { client, ws } = await joined("state");
  for (let k = 13; k <= 40; k++) ws.receive({ t: "delta", tick: k, ack: 0, patch: {} });
  setClock(client);
  const t0 = at(30);
  assert.equal(client.renderTick(t0), 30);
  // the tick clock's base moves 100 ms later (a slower path): its target drops by 2 ticks
  client.tickClock.reset();
  client.tickClock.observe(10, 1100);
  const steps = [];
  for (let k = 1; k <= 10; k++) steps.push(client.renderTick(t0 + k * 50));
  // each 50 ms frame advances by 0.9 to 1.1 ticks: never backwards, never a leap
  let prev = 30;
  for (const rt of steps) {
    assert.ok(rt - prev >= 0.9 - 1e-9 && rt - prev <= 1.1 + 1e-9, JSON.stringify(steps));
    prev = rt;
  }
  assert.ok(Math.abs(steps[9] - (40 - 1)) < 1e-9, "1 of the 2 ticks made up in 10 ticks");
  client.smoothClock = false;
  assert.equal(client.renderTick(t0 + 500), 38, "as it is: the jump back");
  client.close();
});

test("StateBuffer.sample places what motion() places, from the frame at or before t", () => {
  const buf = new StateBuffer();
  buf.push(10, { 1: { pos: [0, 0, 0], v: 1 }, 2: { pos: [0, 0, 0] } });
  buf.push(20, { 1: { pos: [5, 0, 5], v: 2 }, 2: { pos: [10, 0, 0] } });
  const motion = (e, t) => (e.v ? [e.v * t, 0, 0] : null);
  const s = buf.sample(15, motion);
  assert.deepEqual(s.get("1").pos, [15, 0, 0]); // frame 10's motion at 15
  assert.deepEqual(s.get("2").pos, [5, 0, 0]); // interpolated
  assert.deepEqual(buf.sample(25, motion).get("1").pos, [50, 0, 0]); // the latest frame's motion
  assert.deepEqual(buf.sample(5, motion).get("1").pos, [5, 0, 0]);
  assert.equal(buf.sample(25), buf.latest.entities, "without motion: the frame itself");
});
