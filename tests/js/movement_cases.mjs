// Reads [[x, z, dx, dz, dtMs, speed, size], ...] as JSON on stdin and writes
// the stepAvatar results as JSON on stdout (used by tests/test_movement_parity.py).
import { stepAvatar, round2 } from "../../web/static/js/arbiter/movement.js";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { steps, rounds } = JSON.parse(input);
  const out = {
    steps: steps.map((c) => stepAvatar(...c)),
    rounds: rounds.map((v) => round2(v)),
  };
  process.stdout.write(JSON.stringify(out));
});
