// Prints the figures of one run (the load generator's JSON on stdin) for people and for
// bench/run.py: first a summary in the units of docs/BENCHMARKS.md, then one JSON line
// (the load generator's object plus the versions that ran).
//
//   node loadgen.mjs ... | node report.mjs [quiet_wait_s]

import { readFileSync } from "node:fs";

const version = (pkg) => {
  try {
    return JSON.parse(readFileSync(new URL(`./node_modules/${pkg}/package.json`, import.meta.url),
                                   "utf8")).version;
  } catch {
    return null;
  }
};

const lines = readFileSync(0, "utf8").trim().split("\n").filter((l) => l.startsWith("{"));
if (!lines.length) {
  process.stderr.write("report: no result from the load generator\n");
  process.exit(1);
}
const r = JSON.parse(lines.at(-1));
r.version = version("@colyseus/core");
r.versions = {
  core: r.version, ws_transport: version("@colyseus/ws-transport"),
  schema: version("@colyseus/schema"), sdk: version("@colyseus/sdk"), node: process.version,
};
if (process.argv[2] !== undefined) r.quiet_wait_s = Number(process.argv[2]);

const f = (x, digits) => (x == null ? "-" : Number(x).toFixed(digits));
const flags = [];
if (r.loadgen_bound) flags.push("LOADGEN-BOUND: these figures measure the load generator");
if (r.dropped) flags.push(`${r.dropped} clients dropped`);
if (r.failed) flags.push(`${r.failed} joins failed`);
if (r.other_cpu != null && r.other_cpu > 0.15) flags.push(`other processes used ${r.other_cpu} cores`);
console.log(`colyseus ${r.version} (node ${process.version.slice(1)}), N=${r.N} R=${r.R}, `
  + `${r.rooms} rooms, ${f(r.window_s, 1)} s window`
  + (r.decode_every > 1 ? `, decode-every ${r.decode_every} (NOT the scenario)` : ""));
console.log(`  server CPU ${f(r.cpu, 3)} cores | RSS ${f(r.rss_mb, 0)} MB | `
  + `down ${f(r.kb_per_client_s, 1)} kB/client/s | order->ack p50 ${f(r.lat_p50_ms, 1)} / `
  + `p99 ${f(r.lat_p99_ms, 1)} ms | updates/s ${f(r.updates_per_s, 2)} `
  + `(slowest ${f(r.updates_per_s_min, 2)}) | loadgen CPU ${f(r.loadgen_cpu, 2)}`);
if (flags.length) console.log(`  ${flags.join("; ")}`);
console.log(JSON.stringify(r));
