// The lobby page (/lobby.html): the open rooms (GET /api/rooms, every second) with
// "join" and "watch", creating a room (public or private, self-service), quick match
// (POST /api/match) and the servers heard on the LAN (GET /api/lan, every few seconds).
// Every way in ends the same: a join token (POST /api/rooms/{id}/join, or the match's),
// then the game page of the room's mode with ?room=&token= (and ws= when the room's
// socket is not this host's; join-link.js). docs/HTTP.md, "Lobby page".
//
// URL parameters: invite=<room id> (a private room's invite link: get a join token for
// it and open its game page at once).

import { gamePageUrl, storeAuth, storedAuth } from "./join-link.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const NAME_KEY = "arbiter.name"; // the cube page's remembered name (localStorage)
const ROOMS_EVERY_MS = 1000;
const LAN_EVERY_MS = 3000;

// A person-readable line for each refusal the API (or the socket) gives; the code and the
// server's message are shown after it.
const EXPLAIN = {
  room_full: "That room is full.",
  api_key_required: "This server wants its API key for that: enter it under “API key”.",
  bad_api_key: "That API key is not this server's.",
  private_room: "That room is private: it is joined with an invite link only.",
  unknown_room: "There is no such room (it may have ended).",
  room_ended: "That room has ended.",
  room_exists: "A room with that id exists already.",
  unauthorized: "The login token was refused.",
  unavailable: "The server cannot do that just now; try again in a moment.",
  bad_request: "The server did not accept that.",
  bad_json: "The server did not accept that.",
  body_too_large: "The server did not accept that.",
  not_found: "The server has no such API (an older Arbiter?).",
  network: "The server cannot be reached.",
  internal: "The server failed; its log says why.",
};

// -- test hook: what the page shows and does; tests drive it with real clicks ------------
const hook = {
  polls: 0, // room lists received
  rooms: [], // the latest list
  lanPolls: 0,
  lan: null, // the latest GET /api/lan answer
  error: null, // {code, message} shown, or null
  created: null, // the latest room created here
  invite: null, // the invite link shown, or null
  navigating: null, // the game page being opened
};
window.arbiterLobby = hook;

class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
    this.status = status;
  }
}

// -- the API ------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key && method !== "GET") headers.Authorization = `Bearer ${key}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (err) {
    throw new ApiError("network", String(err.message ?? err));
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: a proxy's error page, say
  }
  if (!resp.ok) {
    throw new ApiError(data?.error ?? `http_${resp.status}`, data?.message ?? `HTTP ${resp.status} ${resp.statusText}`, resp.status);
  }
  return data;
}

function showError(err) {
  const box = $("error");
  if (!err) {
    box.hidden = true;
    box.replaceChildren();
    box.removeAttribute("data-code");
    hook.error = null;
    return;
  }
  const code = err.code ?? "error";
  const message = err.detail ?? err.message ?? String(err);
  hook.error = { code, message };
  const what = document.createElement("strong");
  what.textContent = EXPLAIN[code] ?? "That did not work.";
  const c = document.createElement("code");
  c.textContent = code;
  box.replaceChildren(what, " ", c, document.createTextNode(`: ${message}`));
  box.dataset.code = code;
  box.hidden = false;
}

/** Run an action of a button: errors shown, the button disabled meanwhile. */
async function action(button, fn) {
  showError(null);
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (err) {
    showError(err);
  } finally {
    if (button) button.disabled = false;
  }
}

// -- who you are --------------------------------------------------------------------------
function cleanName(s) {
  // 1-32 code points, no control characters (docs/PROTOCOL.md); empty: the server names a guest
  return [...(s ?? "").replace(/[\u0000-\u001f\u007f-\u009f]/g, "").trim()].slice(0, 32).join("");
}

/** The fields every join and match request carries: name and login token, when given. */
function whoFields() {
  const out = {};
  const name = cleanName($("name").value);
  if (name) out.name = name;
  const auth = $("auth").value.trim();
  if (auth) out.auth = auth;
  return out;
}

function setupYou() {
  try {
    $("name").value = cleanName(localStorage.getItem(NAME_KEY));
  } catch {}
  $("name").addEventListener("change", () => {
    try {
      const name = cleanName($("name").value);
      if (name) localStorage.setItem(NAME_KEY, name);
    } catch {}
  });
  // the login token goes with the tab to the game pages (sessionStorage), for their hello
  $("auth").value = storedAuth() ?? "";
  $("auth").addEventListener("input", () => storeAuth($("auth").value.trim()));
}

// -- into a game ----------------------------------------------------------------------------
/** Open the game page of a room of `mode` with a join answer ({room, token, ws_url}). */
function openGame(mode, ticket) {
  const url = gamePageUrl(mode, ticket);
  hook.navigating = url;
  location.assign(url);
}

async function joinRoom(roomId, mode, role) {
  const ticket = await api("POST", `/api/rooms/${encodeURIComponent(roomId)}/join`, { ...whoFields(), role });
  openGame(mode, ticket);
}

// -- the room list ----------------------------------------------------------------------------
let shownRooms = "";

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function button(text, act, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.dataset.action = act;
  b.title = title;
  return b;
}

function renderRooms(rooms) {
  const key = JSON.stringify(rooms);
  if (key === shownRooms) return;
  shownRooms = key;
  const body = $("rooms");
  if (!rooms.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell("no open rooms yet: create one, or use quick match");
    td.colSpan = 7;
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...rooms.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.room = r.id;
      tr.dataset.mode = r.mode;
      const held = r.reserved ?? 0; // seats held by join tokens not used yet
      if (r.players + held >= r.max_players) tr.className = "full";
      const mode = r.mode === "lockstep" && r.game ? `lockstep (${r.game})` : r.mode;
      const tag = r.match ? `quick match${r.tag ? `: ${r.tag}` : ""}` : (r.tag ?? "");
      const actions = cell("", "actions");
      actions.append(
        button("join", "join", r.mode === "lockstep" && r.phase !== "setup" ? "the game has started: you will watch" : "play in this room"),
        button("watch", "watch", "join as a spectator"),
      );
      tr.append(
        cell(r.id, "id"),
        cell(mode, "mode"),
        cell(r.phase, "phase"),
        cell(`${r.players}/${r.max_players}${held ? ` · ${held} held` : ""}`, "players"),
        cell(String(r.spectators ?? 0), "spectators"),
        cell(tag, "tag"),
        actions,
      );
      return tr;
    }),
  );
}

async function pollRooms() {
  try {
    const answer = await api("GET", "/api/rooms");
    hook.rooms = answer.rooms;
    hook.polls++;
    renderRooms(answer.rooms);
    const partial = answer.complete === false ? " · this node's rooms only (the cluster's list is away)" : "";
    $("rooms-status").textContent = `${answer.rooms.length} open · updated ${new Date().toLocaleTimeString()}${partial}`;
  } catch (err) {
    $("rooms-status").textContent = `cannot list the rooms (${err.message})`;
  } finally {
    setTimeout(pollRooms, ROOMS_EVERY_MS);
  }
}

function setupRoomButtons() {
  $("rooms").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    const tr = b?.closest("tr[data-room]");
    if (!tr) return;
    const role = b.dataset.action === "watch" ? "spectator" : "player";
    action(b, () => joinRoom(tr.dataset.room, tr.dataset.mode, role));
  });
}

// -- create ------------------------------------------------------------------------------------
function inviteLink(roomId) {
  return new URL(`/lobby.html?invite=${encodeURIComponent(roomId)}`, location.href).href;
}

function numberOf(input) {
  const v = Number(input.value);
  return input.value.trim() === "" || !Number.isFinite(v) ? undefined : v;
}

async function createRoom() {
  $("created").hidden = true; // the previous result, until this one is made
  const mode = $("c-mode").value;
  const body = { mode };
  const id = $("c-id").value.trim();
  if (id) body.id = id;
  const max = numberOf($("c-max"));
  if (max !== undefined) body.max_players = max;
  if (mode === "lockstep") {
    const min = numberOf($("c-min"));
    if (min !== undefined) body.min_players = max !== undefined ? Math.min(min, max) : min;
  }
  if ($("c-private").checked) body.private = true;
  if ($("c-self").checked) body.self_service = true;
  const room = await api("POST", "/api/rooms", body);
  hook.created = room;
  const isPrivate = !!room.private;
  $("created-text").textContent =
    `Created ${isPrivate ? "private" : "public"} ${room.mode} room ${room.id} (${room.max_players} players` +
    `${body.self_service ? ", self-service" : ""}).` + (isPrivate ? " It is not listed: send the invite link." : "");
  $("created").hidden = false;
  $("invite-box").hidden = !isPrivate;
  hook.invite = isPrivate ? inviteLink(room.id) : null;
  if (isPrivate) {
    $("invite-link").href = hook.invite;
    $("invite-link").textContent = hook.invite;
  }
  // with an API key, a room that is not self-service gives join tokens only with the key
  const hint = isPrivate && !body.self_service && $("api-key").value.trim();
  $("invite-hint").hidden = !hint;
  $("invite-hint").textContent = hint ? "This room is not self-service: on a server with an API key, the invite works only with the key." : "";
  $("join-created").onclick = (ev) => action(ev.currentTarget, () => joinRoom(room.id, room.mode, "player"));
}

function setupCreate() {
  const modeChanged = () => {
    for (const el of document.querySelectorAll(".lockstep-only")) el.hidden = $("c-mode").value !== "lockstep";
  };
  $("c-mode").addEventListener("change", modeChanged);
  modeChanged();
  $("create").addEventListener("click", (ev) => action(ev.currentTarget, createRoom));
  $("copy-invite").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(hook.invite ?? "");
      $("copy-invite").textContent = "copied";
    } catch {
      // no clipboard (an insecure origin): the link is there to select
      getSelection()?.selectAllChildren($("invite-link"));
    }
  });
}

// -- quick match ----------------------------------------------------------------------------------
async function quickMatch() {
  const mode = $("m-mode").value;
  const body = { mode, ...whoFields() };
  const max = numberOf($("m-max"));
  if (max !== undefined) body.max_players = max;
  const tag = $("m-tag").value.trim();
  if (tag) body.tag = tag;
  const ticket = await api("POST", "/api/match", body);
  openGame(mode, ticket);
}

// -- the LAN -----------------------------------------------------------------------------------------
function lobbyUrlOf(server) {
  try {
    const u = new URL("/lobby.html", server.url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

function renderLan(answer) {
  const status = $("lan-status");
  const list = $("lan");
  if (!answer.listening) {
    status.textContent = "LAN discovery is off on this server (it is started with --lan-announce).";
    list.replaceChildren();
    return;
  }
  const servers = answer.servers ?? [];
  status.textContent = servers.length
    ? `${servers.length} server${servers.length === 1 ? "" : "s"} heard on the local network:`
    : "Listening: no server heard on the local network yet.";
  list.replaceChildren(
    ...servers.map((s) => {
      const li = document.createElement("li");
      li.dataset.name = s.name;
      const name = document.createElement("strong");
      name.className = "name";
      name.textContent = s.name;
      li.append(name);
      if (s.self) {
        const self = document.createElement("span");
        self.className = "self";
        self.textContent = " (this server)";
        li.append(self);
      }
      li.append(` · ${s.rooms} room${s.rooms === 1 ? "" : "s"}, ${s.players} player${s.players === 1 ? "" : "s"}`);
      const url = lobbyUrlOf(s);
      if (url) {
        const a = document.createElement("a");
        a.className = "url";
        a.href = url;
        a.textContent = url; // the address that will be opened, in full
        li.append(document.createElement("br"), a);
      }
      const heard = document.createElement("div");
      heard.className = "muted";
      heard.textContent = `from ${s.address}, heard ${s.age} s ago`;
      li.append(heard);
      return li;
    }),
  );
}

async function pollLan() {
  try {
    const answer = await api("GET", "/api/lan");
    hook.lan = answer;
    hook.lanPolls++;
    renderLan(answer);
  } catch (err) {
    $("lan-status").textContent =
      err.code === "not_found" ? "This server does not list LAN servers." : `Cannot ask the server (${err.message}).`;
  } finally {
    setTimeout(pollLan, LAN_EVERY_MS);
  }
}

// -- an invite link: lobby.html?invite=<id> ------------------------------------------------------------
async function followInvite(roomId) {
  const box = $("invite");
  box.hidden = false;
  box.textContent = `Joining room ${roomId}…`;
  try {
    const room = await api("GET", `/api/rooms/${encodeURIComponent(roomId)}`);
    await joinRoom(roomId, room.mode, "player");
    box.textContent = `Joining room ${roomId}: opening the game…`;
  } catch (err) {
    box.textContent = `The invite to room ${roomId} did not work.`;
    showError(err);
  }
}

// -- start ----------------------------------------------------------------------------------------------
setupYou();
setupRoomButtons();
setupCreate();
$("match").addEventListener("click", (ev) => action(ev.currentTarget, quickMatch));
pollRooms();
pollLan();
const invite = params.get("invite");
if (invite !== null) {
  if (ROOM_RE.test(invite)) followInvite(invite);
  else showError(new ApiError("bad_request", `the invite names no room: ${JSON.stringify(invite)}`));
}
