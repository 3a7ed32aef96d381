// The Colyseus side of the "cubes" benchmark (docs/BENCHMARKS.md), written for this repository.
//
//   node server.mjs [port] [--lifetime SECONDS]
//
// Listens on 127.0.0.1 (port 0, the default, picks a free one) and prints one line once it does:
//
//   LISTENING <port> pid=<pid> colyseus=<@colyseus/core version> node=<version>
//
// One room type, "cubes". Its state is two maps:
//   cubes:   cube id -> {owner: sessionId, x, z, tx, tz}   (float32 on the wire)
//   players: sessionId -> {ack: the highest order seq this server has applied for that client}
// - "spawn" (no body): 4 cubes for the sender at random points of the plane, at rest;
// - "order" {id, x, z, seq}: if cube `id` is the sender's, its target becomes (x, z), clamped to
//   the plane, and the sender's ack becomes seq; the ack travels in the same patch as the target;
// - every 50 ms the simulation moves each cube toward its target at 5 units/s (by the measured
//   time since the last step) and stops it there; the state is patched to every client every 50 ms.
// A room admits as many clients as the `size` option of the client that created it (R).
//
// ES module on purpose: core and the SDK load @colyseus/schema as a module, and a CommonJS
// require of it would load a second copy whose settings (Encoder.BUFFER_SIZE) core never sees.

import { readFileSync } from "node:fs";
import { Server, Room } from "@colyseus/core";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { Encoder, schema, t } from "@colyseus/schema";

const HALF = 50;            // the plane: x and z in [-50, 50]
const SPEED = 5;            // cube speed, units per second
const STEP_MS = 50;         // simulation: 20 Hz
const PATCH_MS = 50;        // state patches: 20 Hz
const CUBES_EACH = 4;
const MAX_STEP_MS = 200;    // a late timer never moves a cube further than 200 ms would

// A room of 400 (1,600 cubes) encodes to ~60 kB; Colyseus's default 16 kB buffer would be grown
// on the fly with a warning on every such encode.
Encoder.BUFFER_SIZE = 256 * 1024;

const Cube = schema({
  owner: t.string(),
  x: t.float32(),
  z: t.float32(),
  tx: t.float32(),
  tz: t.float32(),
}, "Cube");

const Player = schema({ ack: t.uint32() }, "Player");

const World = schema({ cubes: t.map(Cube), players: t.map(Player) }, "World");

function onPlane(v) {
  return Math.max(-HALF, Math.min(HALF, v));
}

function randomCoordinate() {
  return (Math.random() * 2 - 1) * HALF;
}

class CubesRoom extends Room {
  onCreate(options) {
    const size = Number(options?.size);
    if (Number.isInteger(size) && size > 0) this.maxClients = size;
    this.state = new World();
    this.cubeCount = 0;
    this.onMessage("spawn", (client) => this.spawn(client));
    this.onMessage("order", (client, body) => this.order(client, body));
    this.setSimulationInterval((elapsedMs) => this.step(elapsedMs), STEP_MS);
    this.patchRate = PATCH_MS;
  }

  onJoin(client) {
    const player = new Player();
    player.ack = 0;
    this.state.players.set(client.sessionId, player);
  }

  onLeave(client) {
    const owner = client.sessionId;
    this.state.players.delete(owner);
    const theirs = [];
    this.state.cubes.forEach((cube, id) => {
      if (cube.owner === owner) theirs.push(id);
    });
    for (const id of theirs) this.state.cubes.delete(id);
  }

  spawn(client) {
    for (let k = 0; k < CUBES_EACH; k++) {
      const cube = new Cube();
      cube.owner = client.sessionId;
      cube.x = cube.tx = randomCoordinate();
      cube.z = cube.tz = randomCoordinate();
      this.state.cubes.set(String(++this.cubeCount), cube);
    }
  }

  order(client, body) {
    if (body === null || typeof body !== "object") return;
    const cube = this.state.cubes.get(String(body.id));
    const x = Number(body.x), z = Number(body.z), seq = Number(body.seq);
    if (!cube || cube.owner !== client.sessionId) return;
    if (!Number.isFinite(x) || !Number.isFinite(z) || !Number.isInteger(seq) || seq < 0) return;
    cube.tx = onPlane(x);
    cube.tz = onPlane(z);
    const player = this.state.players.get(client.sessionId);
    if (player && seq > player.ack) player.ack = seq;
  }

  step(elapsedMs) {
    const reach = SPEED * Math.min(elapsedMs, MAX_STEP_MS) / 1000;
    this.state.cubes.forEach((cube) => {
      const dx = cube.tx - cube.x;
      const dz = cube.tz - cube.z;
      if (dx === 0 && dz === 0) return;               // at rest: nothing changes, nothing sent
      const left = Math.sqrt(dx * dx + dz * dz);
      if (left <= reach) {
        cube.x = cube.tx;
        cube.z = cube.tz;
      } else {
        cube.x += dx * reach / left;
        cube.z += dz * reach / left;
      }
    });
  }
}

function parseArgs(argv) {
  const out = { port: 0, lifetime: 0 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--lifetime") out.lifetime = Number(argv[++i]);
    else out.port = Number(argv[i]);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
if (args.lifetime > 0) {
  // a backstop: whatever happens to the script that started it, this server does not outlive it
  setTimeout(() => {
    process.stderr.write(`server: lifetime of ${args.lifetime} s over, exiting\n`);
    process.exit(2);
  }, args.lifetime * 1000).unref();
}

const server = new Server({ transport: new WebSocketTransport(), greet: false });
server.define("cubes", CubesRoom);
await server.listen(args.port, "127.0.0.1");
const core = JSON.parse(readFileSync(new URL("./node_modules/@colyseus/core/package.json",
                                             import.meta.url), "utf8")).version;
const port = server.transport.server.address().port;
process.stdout.write(`LISTENING ${port} pid=${process.pid} colyseus=${core} node=${process.version}\n`);
