// Reads games (seed, players, config, masters) as JSON on stdin; prints each
// game's checksum after every master, as JSON, for tests/test_lockstep_game_parity.py.
import { DemoGame } from "../../web/static/js/demo/lockstep-game.js";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((g) => {
    const game = new DemoGame(g.seed, g.players, g.config);
    const sums = [game.checksum()];
    for (const m of g.masters) {
      game.applyMaster(m);
      sums.push(game.checksum());
    }
    return sums;
  });
  process.stdout.write(JSON.stringify(out));
});
