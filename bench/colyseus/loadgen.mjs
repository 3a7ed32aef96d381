// The load generator of the "cubes" benchmark for the Colyseus server (server.mjs), written for
// this repository. It plays the workload of docs/BENCHMARKS.md with the Colyseus client SDK and
// reports the same figures as `arbiter-loadtest` (docs/LOADTEST.md), under the same names.
//
//   node loadgen.mjs --port P -n N -r R [--warmup 5] [--duration 20] [--grace 0.5]
//                    [--server-pid PID] [--clk-tck 100] [--join-timeout 60] [--concurrency 10]
//                    [--decode-every 1] [--seed S] [-q]
//
// The run: joining -> spawning -> warm-up -> window -> grace -> close.
// - Joining: client i goes to room i // R. The first client of each room creates it
//   (`create("cubes", {size: R})`), the others join it by id; at most --concurrency joins are
//   in flight.
// - Spawning: once every client has joined, each sends "spawn" and waits until its 4 cubes show up
//   in its decoded state.
// - Then every 100 ms, from a random phase, each client orders one of its cubes (round-robin) to a
//   random point of the plane, with a seq that increases by one each time.
// - Every client decodes every state patch (the SDK does) unless --decode-every K > 1, a probe
//   that is NOT the scenario: then only every K-th client decodes once it has found its cubes.
// - Measured over the window only: WebSocket payload bytes received (before the SDK sees them),
//   decoded state updates, and the latency from sending an order to the first decoded state in
//   which the client's own ack covers its seq (orders sent in the window; acks may arrive in the
//   grace time after it). Server CPU (user+sys from /proc/PID/stat) at the window's edges, its
//   RSS before the first client and at the end of the window; this process's CPU and the
//   lateness of a 50 ms timer; how busy CPU 0 and CPU 1 were.
// One JSON object on stdout at the end. Exit 0; 1 if no client could join; 3 on the hard stop.

import fs from "node:fs";
import { parseArgs } from "node:util";
import { Client } from "@colyseus/sdk";

const { values: opt } = parseArgs({
  options: {
    port: { type: "string" },
    clients: { type: "string", short: "n", default: "50" },
    "room-size": { type: "string", short: "r", default: "8" },
    warmup: { type: "string", default: "5" },
    duration: { type: "string", default: "20" },
    grace: { type: "string", default: "0.5" },
    "server-pid": { type: "string", default: "" },
    "clk-tck": { type: "string", default: "100" },
    "join-timeout": { type: "string", default: "60" },
    concurrency: { type: "string", default: "10" },
    "decode-every": { type: "string", default: "1" },
    seed: { type: "string", default: "" },
    quiet: { type: "boolean", short: "q", default: false },
  },
});

const N = Number(opt.clients);
const R = Number(opt["room-size"]);
const WARMUP = Number(opt.warmup);
const DURATION = Number(opt.duration);
const GRACE = Number(opt.grace);
const JOIN_TIMEOUT = Number(opt["join-timeout"]);
const CONCURRENCY = Math.max(1, Number(opt.concurrency));
const DECODE_EVERY = Math.max(1, Number(opt["decode-every"]));
const SERVER_PID = opt["server-pid"] ? Number(opt["server-pid"]) : null;
const CLK_TCK = Number(opt["clk-tck"]);
const ENDPOINT = `http://127.0.0.1:${Number(opt.port)}`;
const HALF = 50;
const CUBES = 4;
const ORDER_MS = 100;
const LAG_MS = 50;

const say = (text) => { if (!opt.quiet) process.stderr.write(`[loadgen] ${text}\n`); };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const clock = () => performance.now();

// xorshift128+ when --seed is given (reproducible targets), else Math.random
const random = (() => {
  if (!opt.seed) return Math.random;
  let a = BigInt(opt.seed) | 1n, b = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  return () => {
    let s1 = a;
    const s0 = b;
    a = s0;
    s1 = (s1 ^ (s1 << 23n)) & mask;
    b = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    return Number(((b + s0) & mask) >> 11n) / 2 ** 53;
  };
})();

// -- /proc ----------------------------------------------------------------------------------------
function cpuSecondsOf(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;     // utime + stime
  } catch {
    return null;
  }
}

function rssMbOf(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function cpuJiffies() {            // {cpu0: [busy, total], cpu1: ...}; busy excludes idle and iowait
  const out = {};
  try {
    for (const line of fs.readFileSync("/proc/stat", "utf8").split("\n")) {
      if (!/^cpu\d/.test(line)) continue;
      const [name, ...rest] = line.trim().split(/\s+/);
      const v = rest.slice(0, 8).map(Number);
      const total = v.reduce((s, x) => s + x, 0);
      out[name] = [total - v[3] - v[4], total];
    }
  } catch { /* not Linux: no busy figures */ }
  return out;
}

function percentile(sorted, q) {   // nearest rank, as arbiter.loadtest.percentile
  if (!sorted.length) return null;
  const k = Math.max(0, Math.min(sorted.length - 1, Math.ceil((q / 100) * sorted.length) - 1));
  return sorted[k];
}

const round = (x, digits = 2) => (x == null || Number.isNaN(x) ? null
  : Math.round(x * 10 ** digits) / 10 ** digits);

// -- one simulated player ------------------------------------------------------------------------
let measuring = false;
const latencies = [];
let ordersSent = 0;
let failedJoins = 0;

class Bot {
  constructor(index) {
    this.index = index;
    this.room = null;
    this.cubes = [];
    this.seq = 0;
    this.next = 0;
    this.pending = [];          // [seq, sent at, in the window], oldest first
    this.bytes = 0;
    this.updates = 0;
    this.closed = null;         // the close code, once the server closed it
    this.decodes = true;
    this.timer = null;
    this.found = null;          // resolves once its cubes are in its state
  }

  attach(room) {
    this.room = room;
    room.reconnection.enabled = false;          // a dropped client is counted, not revived
    const events = room.connection.events;
    const decode = events.onmessage;
    events.onmessage = (event) => {
      if (measuring) this.bytes += event.data.byteLength;
      if (this.decodes) decode(event);
    };
    let cubesFound;
    this.found = new Promise((resolve) => { cubesFound = resolve; });
    room.onStateChange((state) => this.onState(state, cubesFound));
    room.onLeave((code) => {
      if (this.closed === null) this.closed = code;
      this.stop();
    });
    room.onError((code, message) => say(`client ${this.index}: error ${code} ${message}`));
  }

  onState(state, cubesFound) {
    if (measuring) this.updates++;
    if (this.cubes.length < CUBES) {
      const mine = [];
      state.cubes.forEach((cube, id) => { if (cube.owner === this.room.sessionId) mine.push(id); });
      if (mine.length >= CUBES) {
        this.cubes = mine.slice(0, CUBES);
        cubesFound();
      }
      return;
    }
    if (!this.pending.length) return;
    const me = state.players.get(this.room.sessionId);
    if (!me) return;
    const now = clock();
    let k = 0;
    while (k < this.pending.length && this.pending[k][0] <= me.ack) {
      if (this.pending[k][2]) latencies.push(now - this.pending[k][1]);
      k++;
    }
    if (k) this.pending.splice(0, k);
  }

  start() {
    this.timer = setTimeout(() => {
      this.order();
      this.timer = setInterval(() => this.order(), ORDER_MS);
    }, random() * ORDER_MS);
  }

  stop() {
    clearTimeout(this.timer);
    clearInterval(this.timer);
    this.timer = null;
  }

  order() {
    if (this.closed !== null) return;
    const seq = ++this.seq;
    const id = this.cubes[this.next++ % this.cubes.length];
    const x = (random() * 2 - 1) * HALF, z = (random() * 2 - 1) * HALF;
    if (this.decodes) this.pending.push([seq, clock(), measuring]);
    if (measuring) ordersSent++;
    this.room.send("order", { id, x, z, seq });
  }
}

// -- the run -------------------------------------------------------------------------------------
function hardStop(seconds, phase) {
  return setTimeout(() => {
    process.stderr.write(`[loadgen] hard stop after ${seconds} s (${phase})\n`);
    process.exit(3);
  }, seconds * 1000).unref();
}

async function joinAll(sdk, bots) {
  const rooms = new Map();                      // room number -> Promise of its roomId
  let slots = CONCURRENCY;
  const waiting = [];
  const acquire = () => (slots > 0 ? (slots--, Promise.resolve())
    : new Promise((resolve) => waiting.push(resolve)));
  const release = () => { const next = waiting.shift(); if (next) next(); else slots++; };
  const deadline = clock() + JOIN_TIMEOUT * 1000;

  const joinOne = async (bot) => {
    await acquire();
    const group = Math.floor(bot.index / R);
    try {
      if (clock() > deadline) throw new Error("join timeout");
      let room;
      if (bot.index % R === 0) {
        const made = sdk.create("cubes", { size: R });
        rooms.set(group, made.then((r) => r.roomId));
        room = await made;
      } else {
        room = await sdk.joinById(await rooms.get(group));
      }
      bot.attach(room);
    } catch (e) {
      failedJoins++;
      if (failedJoins <= 5) say(`client ${bot.index} could not join: ${e?.message ?? e}`);
    } finally {
      release();
    }
  };
  // in index order, so the first client of each room has its slot before the others need it
  await Promise.all(bots.map(joinOne));
}

async function main() {
  const result = { N, R, server: "colyseus", encoding: "schema", decode_every: DECODE_EVERY };
  if (SERVER_PID) result.rss_idle_mb = round(rssMbOf(SERVER_PID), 1);
  let stop = hardStop(2 * JOIN_TIMEOUT + 15, "joining");
  const lags = [];
  let expected = clock() + LAG_MS;
  const lagTimer = setInterval(() => {
    const now = clock();
    if (measuring) lags.push(Math.max(0, now - expected));
    expected = now + LAG_MS;
  }, LAG_MS);

  const sdk = new Client(ENDPOINT);
  const bots = Array.from({ length: N }, (_, i) => new Bot(i));
  const t0 = clock();
  await joinAll(sdk, bots);
  const live = bots.filter((b) => b.room !== null);
  result.join_s = round((clock() - t0) / 1000);
  if (!live.length) {
    process.stderr.write(`[loadgen] no client joined (failed: ${failedJoins})\n`);
    process.exit(1);
  }
  say(`${live.length}/${N} joined in ${result.join_s} s; spawning`);

  for (const bot of live) bot.room.send("spawn");
  const spawned = await Promise.race([
    Promise.all(live.map((b) => b.found)).then(() => true),
    sleep(JOIN_TIMEOUT * 1000).then(() => false),
  ]);
  if (!spawned) say("not every client saw its cubes in time; going on");
  for (const bot of live) {
    if (bot.cubes.length) {
      bot.decodes = bot.index % DECODE_EVERY === 0;
      bot.start();
    }
  }
  clearTimeout(stop);
  stop = hardStop(WARMUP + DURATION + GRACE + 15, "measuring");
  say(`warm-up ${WARMUP} s`);
  await sleep(WARMUP * 1000);

  const before = {
    t: clock(), server: SERVER_PID ? cpuSecondsOf(SERVER_PID) : null,
    me: process.cpuUsage(), cpus: cpuJiffies(),
  };
  measuring = true;
  say(`window ${DURATION} s`);
  await sleep(DURATION * 1000);
  measuring = false;
  const wall = (clock() - before.t) / 1000;
  const serverCpu = SERVER_PID ? cpuSecondsOf(SERVER_PID) : null;
  const me = process.cpuUsage(before.me);
  const cpus = cpuJiffies();
  if (SERVER_PID) result.rss_mb = round(rssMbOf(SERVER_PID), 1);

  for (const bot of live) bot.stop();
  await sleep(GRACE * 1000);                    // acks of the window's last orders
  clearInterval(lagTimer);

  const decoders = live.filter((b) => b.decodes);
  const ups = decoders.map((b) => b.updates / wall);
  const bytes = live.reduce((s, b) => s + b.bytes, 0);
  latencies.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  Object.assign(result, {
    connected: live.filter((b) => b.closed === null).length,
    failed: failedJoins,
    dropped: live.filter((b) => b.closed !== null).length,
    rooms: new Set(live.map((b) => b.room.roomId)).size,
    window_s: round(wall, 3),
    cpu: serverCpu === null || before.server === null ? null
      : round((serverCpu - before.server) / wall, 4),
    bytes_per_client_s: round(bytes / live.length / wall, 1),
    kb_per_client_s: round(bytes / live.length / wall / 1000),
    lat_p50_ms: round(percentile(latencies, 50)),
    lat_p99_ms: round(percentile(latencies, 99)),
    lat_max_ms: round(latencies.at(-1)),
    acks: latencies.length,
    updates_per_s: round(ups.reduce((s, x) => s + x, 0) / Math.max(1, ups.length)),
    updates_per_s_min: round(ups.length ? Math.min(...ups) : null),
    orders_per_s: round(ordersSent / wall, 1),
    orders_target_per_s: round(live.length * 1000 / ORDER_MS, 1),
    loadgen_cpu: round((me.user + me.system) / 1e6 / wall, 4),
    loadgen_lag_p99_ms: round(percentile(lags, 99)),
  });
  for (const name of Object.keys(cpus).sort()) {
    if (before.cpus[name]) {
      result[`${name}_busy`] = round((cpus[name][0] - before.cpus[name][0]) / CLK_TCK / wall, 3);
    }
  }
  if (result.cpu0_busy != null && result.cpu1_busy != null && result.cpu != null) {
    result.other_cpu = round(result.cpu0_busy + result.cpu1_busy - result.cpu - result.loadgen_cpu, 3);
  }
  result.loadgen_bound = result.loadgen_cpu >= 0.9 || (result.loadgen_lag_p99_ms ?? 0) > 50
    || result.orders_per_s < 0.95 * result.orders_target_per_s;

  process.stdout.write(JSON.stringify(result) + "\n");
  clearTimeout(stop);
  for (const bot of live) bot.room.connection.close();
  setTimeout(() => process.exit(0), 200).unref();
}

main().catch((e) => {
  process.stderr.write(`[loadgen] failed: ${e?.stack ?? e}\n`);
  process.exit(2);
});
