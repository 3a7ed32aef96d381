// The lockstep demo page (/lockstep.html): lobby over the HTTP API, setup
// (config + ready), then the demo game drawn on a 2D canvas.
//
// URL parameters: room, name, key (API key), auto=1 (create the room if it is
// missing, join it and mark ready: used by the browser test), min (min players
// for auto-created rooms), turn_ms, lag (added round trip, ms); and from the lobby
// (/lobby.html, join-link.js): token (a join token for `room`: joined at once, as the
// player or spectator it was made for), ws (the room's WebSocket URL when it is not
// this host's).

import { Connection, LockstepClient } from "../arbiter/index.js";
import { $, DIRECTION_KEYS, latencyControls, listenKeys, makeLog, msText, params, playerColor, renderPlayers } from "./common.js";
import { joinTokenSpent, markJoinTokenSpent, readJoinLink, storedAuth } from "./join-link.js";
import { DemoGame } from "./lockstep-game.js";

let conn = null;
let client = null;
let joinToken = null; // the join token the connection was made with (null: resumed)
let fps = 60;

const log = makeLog($("log"), { keep: 40, tag: "li", time: true });

/** The demo game, with a deliberate local bug on demand (to show desync detection). */
class BreakableGame extends DemoGame {
  constructor(start, you) {
    super(start.seed, start.players, start.config);
    this.you = you;
    this.breakNext = false; // the "break my game" button: move own unit after the next turn
  }

  applyMaster(master) {
    super.applyMaster(master);
    if (!this.breakNext) return;
    this.breakNext = false;
    const unit = this.units.get(this.you);
    if (unit) unit[0] = (unit[0] + 1) % this.size;
  }
}

function showError(text) {
  $("error").textContent = text || "";
}

function apiHeaders() {
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value;
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: apiHeaders(),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json();
  if (!resp.ok) throw Object.assign(new Error(`${data.error}: ${data.message}`), { status: resp.status, data });
  return data;
}

// -- lobby ----------------------------------------------------------------------
async function refreshRooms() {
  try {
    const { rooms } = await api("GET", "/api/rooms");
    const ul = $("rooms");
    ul.replaceChildren();
    for (const r of rooms) {
      const li = document.createElement("li");
      li.textContent = `${r.id} · ${r.mode} · ${r.phase} · ${r.players}/${r.max_players}` +
        (r.spectators ? ` +${r.spectators} watching` : "");
      li.addEventListener("click", () => ($("room").value = r.id));
      ul.append(li);
    }
    if (!rooms.length) ul.textContent = "no rooms yet";
  } catch (err) {
    showError(err.message);
  }
}

async function createRoom(id, minPlayers, turnMs) {
  const body = { mode: "lockstep", min_players: minPlayers, turn_ms: turnMs };
  if (id) body.id = id;
  const room = await api("POST", "/api/rooms", body);
  log(`created room ${room.id}`);
  $("room").value = room.id;
  await refreshRooms();
  return room;
}

async function join(roomId, name) {
  showError("");
  const body = name ? { name } : {};
  const auth = storedAuth(); // the lobby's login token, for a server with --auth
  if (auth) body.auth = auth;
  const ticket = await api("POST", `/api/rooms/${encodeURIComponent(roomId)}/join`, body);
  return enter(roomId, ticket);
}

/** Join `roomId` with a join token: `ticket` {token, name?, ws_url?}; a null token
 * resumes with the tab's stored reconnect token. */
async function enter(roomId, ticket) {
  if (conn) conn.close();
  const options = { room: roomId, name: ticket.name ?? undefined, pingInterval: 1000 };
  if (ticket.ws_url) options.url = ticket.ws_url; // the room's node (a cluster)
  const auth = storedAuth();
  if (auth) options.auth = auth; // should the token die: a join without one needs the login
  conn = new Connection(options);
  if (ticket.token) conn.token = ticket.token; // the join token; welcome replaces it with the reconnect token
  joinToken = ticket.token;
  client = new LockstepClient(conn, { makeGame: (start) => new BreakableGame(start, conn.you), fps: () => fps });
  applyLatency();
  window.arbiterLockstep = client; // for the browser test and the curious
  wire(client, conn);
  $("s-room").textContent = roomId;
  await conn.connect();
  return client;
}

// -- page <-> client --------------------------------------------------------------
function wire(client, conn) {
  conn.on("status", (status) => ($("s-status").textContent = status));
  conn.on("welcome", (msg) => {
    if (joinToken) markJoinTokenSpent(msg.room, joinToken); // a reload resumes instead
    $("s-you").textContent = `${msg.name} (${msg.you}, ${msg.role})`;
    log(`welcome as ${msg.role} in phase ${msg.phase}`);
  });
  conn.on("error", (msg) => showError(`${msg.code}: ${msg.msg}`));
  client.on("phase", (phase, msg) => {
    const el = $("s-phase");
    el.textContent = phase;
    el.className = "phase-" + phase.split(".").pop();
    const who = msg && msg.waiting ? ` (waiting for ${msg.waiting.join(", ")})` : "";
    log(`phase ${phase}${who}`);
    const setup = phase === "setup";
    $("configure").disabled = !setup;
    $("ready").disabled = !setup;
    $("corrupt").disabled = !phase.startsWith("running");
  });
  client.on("setup", (msg) => {
    // Colours as the game will give them: players in order, those connected at the start.
    const inGame = Object.keys(msg.players).filter((pid) => msg.players[pid].connected);
    renderPlayers(
      $("players"),
      Object.entries(msg.players).map(([pid, p]) => ({
        color: playerColor(inGame.indexOf(pid)),
        text: `${p.ready ? "✔" : "·"} ${p.name} (${pid})${p.connected ? "" : " – away"}`,
        away: !p.connected,
      })),
    );
    if (msg.config.size !== undefined) $("cfg-size").value = msg.config.size;
    if (msg.config.coins !== undefined) $("cfg-coins").value = msg.config.coins;
    const me = msg.players[conn.you];
    $("ready").checked = !!(me && me.ready);
  });
  client.on("start", (game) => {
    log(`game on: seed ${client.start.seed}, players ${client.start.players.join(", ")}`);
    draw(game);
  });
  client.on("turn", (game, master) => {
    $("s-turn").textContent = game.turn;
    $("s-timing").textContent = `${master.turn_ms} / ${master.frames}`;
    $("s-sum").textContent = client.checksums.get(game.turn)?.toString(16) ?? "–";
  });
  client.on("late", (turn) => {
    $("s-late").textContent = client.lateTurns;
    log(`turn ${turn}: your packet was late, your turn was empty`);
  });
  client.on("desync", (msg) => {
    log(`DESYNC at turn ${msg.turn}: ${msg.diverged.join(", ")} diverged`);
    showError(`desync at turn ${msg.turn}: ${msg.diverged.join(", ")} diverged`);
  });
  client.on("reject", (msg) => log(`reject ${msg.code}: ${msg.msg}`));
  client.on("event", (msg) => {
    if (msg.kind === "dropped") log(`${msg.player} was dropped at turn ${msg.turn}`);
  });
}

// -- drawing ----------------------------------------------------------------------
function draw(game) {
  const canvas = $("board");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#0b0f14";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!game) return;
  const cell = canvas.width / game.size;
  ctx.fillStyle = "#ffd54f";
  for (const [x, y] of game.coins) {
    ctx.beginPath();
    ctx.arc((x + 0.5) * cell, (y + 0.5) * cell, Math.max(2, cell * 0.35), 0, Math.PI * 2);
    ctx.fill();
  }
  game.players.forEach((pid, i) => {
    const unit = game.units.get(pid);
    if (!unit) return;
    ctx.fillStyle = playerColor(i);
    ctx.fillRect(unit[0] * cell, unit[1] * cell, Math.max(3, cell), Math.max(3, cell));
    if (pid === client?.you) {
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(unit[0] * cell - 1, unit[1] * cell - 1, Math.max(3, cell) + 2, Math.max(3, cell) + 2);
    }
    ctx.fillText(`${pid} ${unit[4]}`, 4, 12 + i * 12);
  });
}

let frames = 0;
let lastFpsAt = performance.now();
function frame(t) {
  frames++;
  if (t - lastFpsAt >= 1000) {
    fps = (frames * 1000) / (t - lastFpsAt);
    frames = 0;
    lastFpsAt = t;
    $("s-fps").textContent = fps.toFixed(0);
    $("s-ping").textContent = msText(conn?.clock.medianRtt());
  }
  if (client?.game) draw(client.game);
  requestAnimationFrame(frame);
}

// -- controls ---------------------------------------------------------------------
// Each press sets the unit's velocity (it keeps going); space stops it.
listenKeys({
  keys: { ...DIRECTION_KEYS, Space: [0, 0] },
  down(code, dir) {
    if (!client || !client.isPlayer) return false;
    client.command(["v", dir[0], dir[1]]);
  },
});

$("refresh").addEventListener("click", refreshRooms);
$("create").addEventListener("click", async () => {
  try {
    await createRoom($("new-id").value.trim(), Number($("new-min").value), Number($("new-turn").value));
  } catch (err) {
    showError(err.message);
  }
});
$("join").addEventListener("click", async () => {
  try {
    await join($("room").value.trim(), $("name").value.trim());
  } catch (err) {
    showError(err.message);
  }
});
$("configure").addEventListener("click", () => {
  client?.configure({ size: Number($("cfg-size").value), coins: Number($("cfg-coins").value) });
});
$("ready").addEventListener("change", (ev) => client?.ready(ev.target.checked));
const applyLatency = latencyControls({ delay: $("latency"), label: $("latency-ms"), roundTrip: true }, () => conn);
$("corrupt").addEventListener("click", () => {
  if (client?.game) client.game.breakNext = true;
});

// -- start ----------------------------------------------------------------------
async function auto() {
  const roomId = params.get("room");
  if (params.get("key")) $("api-key").value = params.get("key");
  if (roomId) $("room").value = roomId;
  if (params.get("name")) $("name").value = params.get("name");
  const link = readJoinLink(params);
  if (link.token && link.room) {
    // from the lobby: a join token for the room (its name is the token's)
    $("room").value = link.room;
    const token = joinTokenSpent(link.room, link.token) ? null : link.token; // a reload: resume
    const joining = enter(link.room, { token, name: link.tokenName, ws_url: link.ws });
    await refreshRooms();
    await joining;
    return;
  }
  await refreshRooms();
  if (params.get("auto") !== "1" || !roomId) return;
  const { rooms } = await api("GET", "/api/rooms");
  if (!rooms.some((r) => r.id === roomId)) {
    try {
      await createRoom(roomId, Number(params.get("min") ?? 1), Number(params.get("turn_ms") ?? 100));
    } catch (err) {
      if (err.status !== 409) throw err; // another page made it meanwhile: fine
    }
  }
  await join(roomId, params.get("name") ?? "");
  client.ready(true);
}

requestAnimationFrame(frame);
auto().catch((err) => showError(err.message));
