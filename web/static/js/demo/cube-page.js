// The cube demo page (/): wires RealtimeClient (the netcode) to WorldView
// (three.js) and to the page's controls. Everything network-related lives in
// the client library (../arbiter/); this file is UI.
//
// URL parameters: room (default "main"), name, sync, enc, lag, jitter; and from the
// lobby (/lobby.html, join-link.js): token (a join token: the page says hello with it,
// as the player or spectator it was made for), ws (the room's WebSocket URL when it is
// not this host's), role=spectator (watch: hello.role); netgraph=1 shows the net graph
// from the start (the G key toggles it).

import { RealtimeClient, SYNC_MODES } from "../arbiter/index.js";
import { $, DIRECTION_KEYS, latencyControls, listenKeys, makeLog, msText, NO_COLOR, params, renderPlayers, setText } from "./common.js";
import { joinTokenSpent, markJoinTokenSpent, readJoinLink, storedAuth } from "./join-link.js";
import { NetGraph } from "./netgraph.js";
import { WorldView } from "./scene.js";

const link = readJoinLink(params); // {room, token, ws, role} from ?room=&token=&ws=&role=
const room = link.room ?? "main";
// The sync mode (docs/PROTOCOL.md 11, 20): compact unless ?sync=state or ?sync=intent.
const sync = SYNC_MODES.includes(params.get("sync")) ? params.get("sync") : "compact";
// compact frames are binary: always msgpack; the others take ?enc=msgpack (default JSON)
const encoding = sync === "compact" || params.get("enc") === "msgpack" ? "msgpack" : "json";
const NAME_KEY = "arbiter.name";
const DRAG_PX = 5;
const TOAST_MS = 1800;

// -- test hook: read-only views of what is drawn; tests drive the UI with real input --
const hook = {
  ready: false,
  client: null,
  view: null,
  frame: 0,
  frames: [], // [{n, t, own: [x, z] drawn, auth: [x, z] the server's}], the last 600 frames
  keys: [], // [{code, frame}]: the number of frames rendered before the keydown
  selected: () => [...selected],
  screenPos: (id) => view?.drawn(id) ?? null,
  drawnIds: (kind) => [...(view?.entities.values() ?? [])].filter((r) => !kind || r.kind === kind).map((r) => r.id),
  ownCubes: () => ownCubeIds(),
  marker: () => (view?.marker.visible ? view.markerTarget : null),
  cameraSettled: () => !!view?.settled,
  // the game's extras (--drones, --pickups, --round-*, --view-radius)
  drawnEntities: (kind) => view?.describe(kind) ?? [], // [{id, kind, shape, color, pos, inScene, pickable}]
  scoreboard: () => scoreboardState(),
  roundBanner: () => roundBannerState(),
  viewRing: () =>
    view ? { visible: view.viewRing.visible, radius: view.viewRadius, center: [view.viewRing.position.x, view.viewRing.position.z] } : null,
  toasts: [], // [{text, kind, frame}], the last 50 shown
  rounds: [], // the round_end events received, in order
  phases: [], // the phase messages received, in order
  // joining (the lobby's links): the room welcomed into, the role, the errors received
  room: null, // welcome.room
  role: () => currentRole(), // "player" | "spectator" | null before the welcome
  joinedWithToken: !!link.token,
  errors: [], // [{code, msg}] of the error messages received
  refused: null, // why the join failed for good (a private room, a refused login), or null
  // the net graph (G): {visible, samples, arrivals, last: {ping, delay, bytesIn, corrections
  // (per minute), stalls (in the window)}, marks, snappedMarks, correctionsSeen, snappedSeen,
  // stallsSeen, longestStall, scale: {ms, bytes} (the tops of its scales)}
  netGraph: () => netGraph.describe(performance.now()),
};
window.arbiterDemo = hook;

let client = null;
let view = null;
const selected = new Set();
let hovered = null;
let pointer = null; // last pointer position {x, y}
let drag = null; // {x0, y0, x1, y1, shift, active}
const held = new Set();
let cameraPlaced = false;

// The net graph: off unless ?netgraph=1; G shows and hides it. It samples all the time
// (a few numbers into typed-array rings), so it shows the last 10 s as soon as it is shown.
const netGraph = new NetGraph($("netgraph-canvas"), {
  box: $("netgraph"),
  visible: params.get("netgraph") === "1",
  labels: { ping: $("ng-ping"), delay: $("ng-delay"), bytes: $("ng-bytes"), corrections: $("ng-corr"), stalls: $("ng-stalls") },
});
const NET_GRAPH_KEY = "KeyG";

function cleanName(s) {
  // 1-32 code points, no control characters (docs/PROTOCOL.md).
  const chars = [...(s ?? "").replace(/[\u0000-\u001f\u007f-\u009f]/g, "").trim()].slice(0, 32);
  return chars.join("");
}

async function askName() {
  const fromUrl = cleanName(params.get("name"));
  if (fromUrl) return fromUrl;
  let stored = null;
  try {
    stored = cleanName(localStorage.getItem(NAME_KEY));
  } catch {}
  if (stored) return stored;
  const dialog = $("name-dialog");
  dialog.showModal();
  $("name-input").focus();
  const name = await new Promise((resolve) => {
    $("name-form").addEventListener("submit", () => resolve(cleanName($("name-input").value)));
  });
  try {
    if (name) localStorage.setItem(NAME_KEY, name);
  } catch {}
  return name || undefined;
}

const log = makeLog($("log"), { keep: 8 });

function playerName(pid) {
  return client?.state.players[pid]?.name ?? pid;
}

function ownCubeIds() {
  if (!client) return [];
  return Object.entries(client.state.entities)
    .filter(([, e]) => e && e.kind === "cube" && e.owner === client.you)
    .map(([id]) => id);
}

function isOwnCube(id) {
  const e = client?.state.entities[id];
  return !!e && e.kind === "cube" && e.owner === client.you;
}

/** The `round` of the state, or null when the room runs no rounds. */
function currentRound() {
  return client?.round ?? null;
}

let lastPhase = null; // the latest `phase` message since the welcome

/**
 * True between rounds: the server refuses inputs, so the avatar is not driven.
 * The `phase` message comes a tick before the state that says so: the newer wins.
 */
function roundOver() {
  const r = currentRound();
  if (!r) return false;
  const p = lastPhase;
  if (p && typeof p.round === "number" && p.round > r.n) return p.phase === "ended";
  if (p && p.round === r.n && p.phase === "ended") return true;
  return r.phase === "ended";
}

/** "player" or "spectator" once welcomed: a spectator has no entry in `players`. */
function currentRole() {
  const c = client?.connection;
  if (!c?.welcome) return null;
  if (c.welcome.role) return c.welcome.role;
  if (client.tick === null) return link.role ?? "player"; // until the first state says
  return client.state.players?.[c.you] ? "player" : "spectator";
}

const spectating = () => currentRole() === "spectator" || (!client?.connection.welcome && link.role === "spectator");

function isOtherAvatar(id) {
  const e = client?.state.entities[id];
  return !!e && e.kind === "avatar" && e.owner !== client.you;
}

// -- keyboard ---------------------------------------------------------------

function updateDirection() {
  let dx = 0;
  let dz = 0;
  for (const code of held) {
    dx += DIRECTION_KEYS[code][0];
    dz += DIRECTION_KEYS[code][1];
  }
  if (roundOver()) dx = dz = 0; // held keys drive the avatar again when the next round starts
  if (spectating()) return; // no avatar to drive
  client?.setDirection(Math.sign(dx), Math.sign(dz));
}

listenKeys({
  down(code) {
    if (held.has(code)) return;
    hook.keys.push({ code, frame: hook.frame });
    held.add(code);
    updateDirection();
  },
  up(code) {
    if (held.delete(code)) updateDirection();
  },
  other(ev) {
    if (ev.code === "Delete" || ev.code === "Backspace") deleteSelected();
    else if (ev.code === NET_GRAPH_KEY && !ev.repeat && !ev.ctrlKey && !ev.metaKey && !ev.altKey) netGraph.toggle();
  },
});
addEventListener("blur", () => {
  held.clear();
  updateDirection();
});

// -- mouse ------------------------------------------------------------------

function setupPointer(canvas) {
  canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
  canvas.addEventListener("pointermove", (ev) => {
    pointer = { x: ev.clientX, y: ev.clientY };
    if (drag) {
      drag.x1 = ev.clientX;
      drag.y1 = ev.clientY;
      if (!drag.active && Math.hypot(drag.x1 - drag.x0, drag.y1 - drag.y0) > DRAG_PX) drag.active = true;
      showDragBox();
    }
  });
  canvas.addEventListener("pointerleave", () => (pointer = null));
  canvas.addEventListener(
    "wheel",
    (ev) => {
      ev.preventDefault();
      view.zoomBy(Math.exp(ev.deltaY * 0.001));
    },
    { passive: false },
  );
  canvas.addEventListener("pointerdown", (ev) => {
    document.activeElement?.blur?.(); // back to the game: the keys drive the avatar again
    if (ev.button === 0) {
      canvas.setPointerCapture(ev.pointerId);
      drag = { x0: ev.clientX, y0: ev.clientY, x1: ev.clientX, y1: ev.clientY, shift: ev.shiftKey, active: false };
    } else if (ev.button === 2) {
      sendSelectedTo(ev.clientX, ev.clientY);
    }
  });
  canvas.addEventListener("pointerup", (ev) => {
    if (ev.button !== 0 || !drag) return;
    const d = drag;
    drag = null;
    showDragBox();
    if (d.active) boxSelect(d);
    else clickAt(ev.clientX, ev.clientY, ev.shiftKey);
  });
}

function showDragBox() {
  const box = $("dragbox");
  if (!drag || !drag.active) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  Object.assign(box.style, {
    left: `${Math.min(drag.x0, drag.x1)}px`,
    top: `${Math.min(drag.y0, drag.y1)}px`,
    width: `${Math.abs(drag.x1 - drag.x0)}px`,
    height: `${Math.abs(drag.y1 - drag.y0)}px`,
  });
}

function boxSelect(d) {
  if (!d.shift) selected.clear();
  const [x0, x1] = [Math.min(d.x0, d.x1), Math.max(d.x0, d.x1)];
  const [y0, y1] = [Math.min(d.y0, d.y1), Math.max(d.y0, d.y1)];
  for (const id of ownCubeIds()) {
    const p = view.drawn(id);
    if (p && p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1) selected.add(id);
  }
  updateButtons();
}

function clickAt(x, y, shift) {
  // What you can act on wins over what is in front of it (your own avatar, others' cubes).
  const id = view.pick(x, y, (e) => isOwnCube(e) || isOtherAvatar(e));
  if (id !== null && isOwnCube(id)) {
    if (shift) {
      if (selected.has(id)) selected.delete(id);
      else selected.add(id);
    } else {
      selected.clear();
      selected.add(id);
    }
  } else if (id !== null && isOtherAvatar(id) && !spectating()) {
    const target = client.state.entities[id].owner;
    client.tag(id);
    log(`you try to tag ${playerName(target)}`);
  } else if (!shift) {
    selected.clear();
  }
  updateButtons();
}

function sendSelectedTo(x, y) {
  const ids = [...selected].filter(isOwnCube);
  if (!ids.length) {
    log("select your cubes first, then right-click the ground");
    return;
  }
  const to = view.groundPoint(x, y);
  if (!to) return;
  client.order(ids, to);
  view.showMarker(to[0], to[1], client.state.entities[client.avatarId]?.color);
}

// -- buttons and the latency simulator --------------------------------------

function spawn() {
  // Near your avatar when it is on the plane, so you see it appear.
  const me = client.predictedPosition();
  const half = client.world.size / 2 - 0.5;
  if (!me) return client.spawn();
  const a = Math.random() * Math.PI * 2;
  const r = 2.5 + Math.random() * 2;
  const c = (v) => Math.round(Math.max(-half, Math.min(half, v)) * 100) / 100;
  client.spawn([c(me[0] + Math.cos(a) * r), c(me[2] + Math.sin(a) * r)]);
}

function deleteSelected() {
  for (const id of [...selected]) {
    if (isOwnCube(id)) client.remove(id);
    selected.delete(id);
  }
  updateButtons();
}

function updateButtons() {
  $("delete").disabled = ![...selected].some(isOwnCube);
  $("spawn").disabled = !client?.connection.isOpen || spectating();
}

function setupControls() {
  $("spawn").addEventListener("click", spawn);
  $("delete").addEventListener("click", deleteSelected);
  latencyControls({ delay: $("lag"), jitter: $("jitter") }, () => client.connection);
  $("predict").addEventListener("change", () => (client.predict = $("predict").checked));
  $("interpolate").addEventListener("change", () => (client.interpolate = $("interpolate").checked));
}

// -- overlay ----------------------------------------------------------------

let lastPlayers = "";
function updateOverlay(t) {
  const c = client.connection;
  setText("o-status", c.status);
  setText("o-you", c.you ? `${c.name ?? ""} (${c.you})${spectating() ? " · spectator" : ""}` : "–");
  setText("o-ping", msText(c.clock.medianRtt()));
  setText("o-tick", client.tick === null ? "–" : String(client.tick));
  setText("o-backlog", String(client.backlog));
  setText("o-corr", String(client.correctionsPerSecond(t)));
  const bytesIn = c.bytesIn.perSecond(t);
  setText("o-bytes", String(Math.round(bytesIn)));
  setText("o-delay", client.interpolate ? `${Math.round(client.renderDelay)} ms` : "off");
  netGraph.sample(t, c.clock.rtt, client.renderDelay, bytesIn);
  setText("o-sync", syncText(c));
  showNode(c);
  renderScoreboard(t);
  renderRoundBanner(t);

  const players = Object.entries(client.state.players ?? {});
  const avatarColor = avatarColors();
  const key = JSON.stringify([players, avatarColor, c.you]);
  if (key === lastPlayers) return;
  lastPlayers = key;
  renderPlayers(
    $("players"),
    players.map(([pid, p]) => ({
      color: avatarColor[pid] ?? NO_COLOR,
      text: `${p.name}${pid === c.you ? " (you)" : ""}${p.connected ? "" : " · away"}`,
      away: !p.connected,
      score: `${p.score} · ${p.ping} ms`,
    })),
  );
}

// -- rounds: the scoreboard and the result between rounds ---------------------------

/** The server's state tick now, estimated (frames may pause while nothing changes). */
function serverTick(t = performance.now()) {
  const est = client.tickClock?.tickAt(t);
  return Math.max(client.tick ?? 0, est ?? 0);
}

/** Whole seconds from now to state tick `tick` (0 once it is past). */
function secondsTo(tick, t) {
  const rate = client.connection.rate || 20;
  return Math.max(0, Math.ceil((tick - serverTick(t)) / rate));
}

function clockText(s) {
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// player id -> its avatar's colour, kept when the avatar leaves your view (--view-radius)
const seenColors = {};

function avatarColors() {
  for (const e of Object.values(client.state.entities)) if (e?.kind === "avatar") seenColors[e.owner] = e.color;
  return seenColors;
}

/** The players by score, highest first (then by name): [{pid, name, score, you}]. */
function ranking(scores = null) {
  const players = client.state.players ?? {};
  const src = scores ?? Object.fromEntries(Object.entries(players).map(([pid, p]) => [pid, p.score ?? 0]));
  return Object.entries(src)
    .map(([pid, score]) => ({ pid, name: players[pid]?.name ?? pid, score, you: pid === client.you }))
    .sort((a, b) => b.score - a.score || a.name.localeCompare(b.name));
}

function scoreboardState(t = performance.now()) {
  const r = currentRound();
  if (!client || !r) return { visible: false, round: null, title: "", goal: "", rows: [], text: "" };
  const title = `Round ${r.n}`;
  const goal = [];
  if (r.phase === "ended") goal.push("over");
  else {
    if (r.points) goal.push(`first to ${r.points}`);
    if (typeof r.ends_at === "number") goal.push(`${clockText(secondsTo(r.ends_at, t))} left`);
  }
  const rows = ranking();
  const lines = rows.map((p, i) => `${i + 1}. ${p.name}${p.you ? " (you)" : ""} ${p.score}`);
  const text = [`${title} · ${goal.join(" · ")}`, ...lines].join("\n");
  return { visible: true, round: r.n, phase: r.phase, title, goal: goal.join(" · "), rows, text };
}

let lastScoreboard = "";
function renderScoreboard(t) {
  const sb = scoreboardState(t);
  const box = $("scoreboard");
  if (box.hidden === sb.visible) box.hidden = !sb.visible;
  if (!sb.visible) return;
  setText("sb-round", sb.title);
  setText("sb-goal", sb.goal);
  const colors = avatarColors();
  const key = JSON.stringify([sb.rows, colors]);
  if (key === lastScoreboard) return;
  lastScoreboard = key;
  $("sb-rows").replaceChildren(
    ...sb.rows.map((p) => {
      const li = document.createElement("li");
      if (p.you) li.className = "you";
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colors[p.pid] ?? NO_COLOR;
      const name = document.createElement("span");
      name.textContent = p.you ? `${p.name} (you)` : p.name;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = String(p.score);
      li.append(sw, name, score);
      return li;
    }),
  );
}

let lastRoundEnd = null; // the latest round_end event (the state's result, should it lag)

function roundBannerState(t = performance.now()) {
  const r = currentRound();
  if (!client || !r || r.phase !== "ended") return { visible: false, round: r?.n ?? null, text: "" };
  const ev = lastRoundEnd && lastRoundEnd.round === r.n ? lastRoundEnd : null;
  const result = r.result ?? ev ?? { round: r.n, scores: {} };
  const winner = result.winner ?? null;
  const winnerName = winner === null ? null : (client.state.players[winner]?.name ?? winner);
  const head = winner === null ? `Round ${r.n} is a tie` : `${winnerName}${winner === client.you ? " (you)" : ""} wins round ${r.n}!`;
  const reason =
    result.reason === "points"
      ? `first to ${r.points ?? "the points"}`
      : result.reason === "time"
        ? "time's up"
        : (result.reason ?? "");
  const scores = ranking(result.scores ?? {});
  const nextAt = r.next_at ?? ev?.next_at ?? null;
  const next = nextAt === null ? "round over" : `next round in ${secondsTo(nextAt, t)} s`;
  const lines = [head, reason, ...scores.map((p) => `${p.name}${p.you ? " (you)" : ""} ${p.score}`), next].filter(Boolean);
  return { visible: true, round: r.n, winner, winnerName, reason, head, scores, next, text: lines.join("\n") };
}

let lastBanner = "";
function renderRoundBanner(t) {
  const rb = roundBannerState(t);
  const box = $("round-banner");
  if (box.hidden === rb.visible) box.hidden = !rb.visible;
  if (!rb.visible) {
    lastBanner = "";
    return;
  }
  setText("rb-head", rb.head);
  setText("rb-reason", rb.reason);
  setText("rb-next", rb.next);
  const key = JSON.stringify([rb.scores, rb.winner]);
  if (key === lastBanner) return;
  lastBanner = key;
  $("rb-scores").replaceChildren(
    ...rb.scores.map((p) => {
      const li = document.createElement("li");
      if (p.pid === rb.winner) li.className = "winner";
      li.textContent = `${p.name}${p.you ? " (you)" : ""}: ${p.score}`;
      return li;
    }),
  );
}

/** A short message in the middle of the screen for a moment (a hit, a pickup). */
function toast(text, kind = "") {
  const el = document.createElement("div");
  el.className = `toast ${kind}`.trim();
  el.textContent = text;
  $("toasts").append(el);
  while ($("toasts").children.length > 4) $("toasts").firstChild.remove();
  setTimeout(() => el.classList.add("fade"), TOAST_MS);
  setTimeout(() => el.remove(), TOAST_MS + 450);
  hook.toasts.push({ text, kind, frame: hook.frame });
  if (hook.toasts.length > 50) hook.toasts.shift();
}

function flashAvatarOf(pid) {
  for (const [id, e] of Object.entries(client.state.entities)) if (e?.kind === "avatar" && e.owner === pid) view.flash(id);
}

// The sync mode in use: what was asked for, unless a server without the compact sync
// answered with plain state messages.
function syncText(c) {
  if (c.sync === "compact" && c.welcome && !c.compact) return "state (no compact)";
  return c.sync;
}

// In a cluster the room may live on another node than the one that served the page:
// the connection follows the redirect, and the overlay says where it went.
function showNode(c) {
  const elsewhere = c.url !== c.originUrl;
  if ($("o-node").hidden === elsewhere) {
    $("o-node").hidden = $("o-node-label").hidden = !elsewhere;
  }
  if (elsewhere) setText("o-node", c.url);
}

function showBanner(text) {
  const b = $("banner");
  b.hidden = !text;
  b.textContent = text ?? "";
}

// -- the frame ----------------------------------------------------------------

function frame() {
  const t = performance.now();
  for (const id of [...selected]) if (!isOwnCube(id)) selected.delete(id);
  if (client.world) view.setWorldSize(client.world.size);
  const entities = client.view(t);
  const me = client.avatarId !== null ? entities.get(client.avatarId) : null;
  if (me) {
    view.follow(me.pos[0], me.pos[2], cameraPlaced ? 0.12 : 1);
    cameraPlaced = true;
  }
  hovered = pointer ? view.pick(pointer.x, pointer.y) : null;
  view.canvas.style.cursor = hovered && (isOwnCube(hovered) || isOtherAvatar(hovered)) ? "pointer" : "crosshair";
  const names = {};
  for (const [pid, p] of Object.entries(client.state.players ?? {})) names[pid] = p.name;
  view.sync(entities, { avatarId: client.avatarId, names, selected, hovered });
  if (view.markerTarget && performance.now() - view.markerSince > 1500) {
    const [mx, mz] = view.markerTarget;
    const heading = ownCubeIds().some((id) => {
      const to = client.state.entities[id].to;
      return to && Math.abs(to[0] - mx) < 0.05 && Math.abs(to[1] - mz) < 0.05;
    });
    if (!heading) view.hideMarker();
  }
  view.render();
  updateOverlay(t);
  hook.frame++;
  const own = client.avatarId !== null ? view.drawn(client.avatarId)?.pos : null;
  const auth = client.avatarId !== null ? client.state.entities[client.avatarId].pos : null;
  hook.frames.push({ n: hook.frame, t, own: own ? [own[0], own[2]] : null, auth: auth ? [auth[0], auth[2]] : null });
  if (hook.frames.length > 600) hook.frames.shift();
  requestAnimationFrame(frame);
}

async function main() {
  setupPointer($("view"));
  view = new WorldView($("view"));
  hook.view = view;
  $("room-name").textContent = `· ${room}`;
  updateButtons();
  // a join token carries the name (and the role) it was made for, a spectator needs none:
  // nothing to ask
  const name = link.token ? undefined : link.role === "spectator" ? cleanName(params.get("name")) || undefined : await askName();
  const options = { room, name, encoding, sync };
  if (link.ws) options.url = link.ws; // the room's node, when the lobby said it is elsewhere
  if (link.role === "spectator") options.hello = { role: "spectator" };
  const auth = storedAuth(); // the lobby's login token, for a join without a token
  if (auth) options.auth = auth;
  client = new RealtimeClient(options);
  // the join token, unless this tab used it already (a reload: the stored reconnect token
  // resumes); welcome replaces it with the reconnect token
  if (link.token && !joinTokenSpent(room, link.token)) client.connection.token = link.token;
  hook.client = client;
  setupControls();
  client.on("status", (status, detail) => {
    updateButtons();
    if (status === "reconnecting") showBanner(`connection lost, reconnecting in ${Math.round((detail?.wait ?? 0) / 100) / 10} s…`);
    else if (status === "taken_over") showBanner("this player was opened in another tab");
    else if (status === "room_full") showBanner(`room ${room} is full`);
    else if (status === "refused") showBanner((hook.refused = refusedText()));
    else showBanner(null);
  });
  client.on("welcome", (msg) => {
    hook.room = msg.room;
    if (link.token) markJoinTokenSpent(room, link.token);
    cameraPlaced = false;
    view.setViewRadius(client.viewRadius);
    lastPhase = null;
    log(`joined room ${msg.room} as ${msg.name} (${msg.you})`);
    updateButtons();
  });
  client.on("welcome", () => netGraph.restart()); // a new session: its first state is no stall
  client.on("state", (msg) => netGraph.stateArrived(performance.now(), msg.tick, 1000 / (client.connection.rate || 20)));
  client.on("correction", (ev) => netGraph.correction(performance.now(), ev.snapped));
  client.on("redirect", (ev) => log(`room ${room} lives on another node: ${ev.url}`));
  client.on("join", (ev) => log(`${ev.name} joined`));
  client.on("leave", (ev) => log(`${playerName(ev.player)} left`));
  client.on("say", (ev) => log(`${playerName(ev.player)}: ${ev.text}`));
  client.on("tag", (ev) => {
    log(`${playerName(ev.player)} tagged ${playerName(ev.target)}!`);
    for (const [id, e] of Object.entries(client.state.entities)) if (e?.kind === "avatar" && e.owner === ev.target) view.flash(id);
  });
  client.on("reject", (msg) => {
    if (msg.code === "not_running" && roundOver()) return; // the banner says so
    log(msg.code === "miss" ? "missed: too far away" : `refused: ${msg.code} (${msg.msg})`, true);
  });
  // the cube game's extras: drones, pickups, rounds (docs/GAMES.md)
  client.on("hit", (ev) => {
    flashAvatarOf(ev.player);
    if (ev.player === client.you) toast("hit by a drone: −1", "bad");
  });
  client.on("pickup", (ev) => {
    if (ev.player === client.you) toast("pickup: +1", "good");
  });
  client.on("round_end", (ev) => {
    lastRoundEnd = ev;
    hook.rounds.push(ev);
    const who = ev.winner === null || ev.winner === undefined ? "a tie" : `${playerName(ev.winner)} wins`;
    log(`round ${ev.round} over: ${who}`);
    updateDirection();
  });
  client.on("round_start", (ev) => log(`round ${ev.round} starts`));
  client.on("phase", (msg) => {
    lastPhase = msg;
    hook.phases.push(msg);
    updateDirection();
  });
  client.on("error", (msg) => {
    hook.errors.push({ code: msg.code, msg: msg.msg });
    log(`error: ${msg.code} (${msg.msg})`, true);
  });
  requestAnimationFrame(frame);
  try {
    await client.connect();
  } catch (err) {
    hook.refused = refusedText(err.message);
    showBanner(hook.refused);
    return;
  }
  hook.ready = true;
}

/** Why the server will not let this page in (error private_room or unauthorized). */
function refusedText(fallback = "the server refused to let this page join") {
  const err = hook.errors[hook.errors.length - 1];
  if (err?.code === "private_room") return `room ${room} is private: join it with an invite link from the lobby`;
  if (err?.code === "unauthorized") return `login refused: ${err.msg}`;
  if (err?.code === "room_full") return `room ${room} is full`;
  return err ? `${err.code}: ${err.msg}` : fallback;
}

main();
