// Reads a recorded session (JSON file, path in argv[2]) and replays its compact frames
// through compact.js, comparing the mirror with the state client's after every tick
// (used by tests/test_compact_js.py). The file:
//   {"sessions": [{"pos": 2, "ticks": [{"frames": ["c102...", ...], "state": {...}}, ...]}, ...],
//    "intent": [[entity, tick, rate, speed], ...]}
// Writes {"ticks", "frames", "entities", "intent": [[x, z], ...]} as JSON on stdout, or the
// first difference on stderr with exit code 1.
import { readFileSync } from "node:fs";

import { CompactMirror, extrapolate } from "../../web/static/js/arbiter/index.js";

const hexBytes = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));

/** The first difference between a and b as a path and the two values, or null. Numbers
 * compare with === (0 and -0 are equal, as in Python). */
function difference(a, b, path = "") {
  if (typeof a === "number" && typeof b === "number") return a === b ? null : [path, a, b];
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") {
    return a === b ? null : [path, a, b];
  }
  if (Array.isArray(a) !== Array.isArray(b)) return [path, a, b];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    if (!(k in a) || !(k in b)) return [`${path}/${k}`, a[k], b[k]];
    const d = difference(a[k], b[k], `${path}/${k}`);
    if (d) return d;
  }
  return null;
}

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const mirror0 = await CompactMirror.create(2);
const out = { ticks: 0, frames: 0, entities: 0, intent: [] };
input.sessions.forEach((session, s) => {
  const mirror = new CompactMirror(session.pos, mirror0.decode);
  session.ticks.forEach((tick, i) => {
    for (const frame of tick.frames) {
      mirror.apply(hexBytes(frame));
      out.frames++;
    }
    const d = difference(mirror.state, tick.state);
    if (d) {
      process.stderr.write(`session ${s}, tick ${i}: ${d[0]}: compact.js has ${JSON.stringify(d[1])}, the state client ${JSON.stringify(d[2])}\n`);
      process.exit(1);
    }
    out.ticks++;
    out.entities = Math.max(out.entities, Object.keys(mirror.state.entities ?? {}).length);
  });
});
out.intent = (input.intent ?? []).map(([entity, tick, rate, speed]) => extrapolate(entity, tick, rate, speed));
process.stdout.write(JSON.stringify(out));
