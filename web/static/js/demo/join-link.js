// Links into the game pages with a join token (docs/HTTP.md, "Lobby page"): what the lobby
// (lobby.html) writes and the game pages (/ and /lockstep.html) read.
//
//   /?room=<id>&token=<join token>[&ws=<ws_url>]               a realtime room
//   /lockstep.html?room=<id>&token=<join token>[&ws=<ws_url>]  a lockstep room
//
// `token` is a join token from POST /api/rooms/{id}/join or POST /api/match: the page
// says hello with it, as the player (or spectator) and with the name the token was made
// for. `ws` is the room's WebSocket URL when it is not this host's (another node of a
// cluster); without it the page's own host is used. A join token is single-use: once
// welcomed with it, the tab remembers it as spent, and a reload resumes with the
// welcome's token (kept in sessionStorage) instead.
// Page code, not library.

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const AUTH_KEY = "arbiter.auth"; // sessionStorage: the lobby's optional login token

/** This page's own WebSocket URL: ws(s)://this-host/ws. */
export function defaultWsUrl(loc = location) {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
}

/** `url` if it is a ws:// or wss:// URL, else null. */
export function wsUrlOrNull(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const u = new URL(url);
    return u.protocol === "ws:" || u.protocol === "wss:" ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * The body of a token ({room, player, name, role, exp, ...}), read without checking
 * its signature (only the server can), or null when it does not read as one. A hint
 * for the page (the name, whether it is a spectator's); the server decides.
 */
export function peekToken(token) {
  if (typeof token !== "string") return null;
  try {
    const b64 = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const body = JSON.parse(new TextDecoder().decode(bytes));
    return body && typeof body === "object" ? body : null;
  } catch {
    return null;
  }
}

/**
 * What the page's address asks for: {room, token, ws, role} (each null when not given).
 * `room` is `?room=` when valid, else the join token's room; `role` is "spectator" for
 * `?role=spectator` or a spectator's join token.
 */
export function readJoinLink(params) {
  const token = params.get("token") || null;
  const body = token ? peekToken(token) : null;
  const asked = params.get("room");
  let room = ROOM_RE.test(asked ?? "") ? asked : null;
  if (!room && body && ROOM_RE.test(body.room ?? "")) room = body.room;
  const spectator = params.get("role") === "spectator" || body?.role === "spectator";
  return { room, token, ws: wsUrlOrNull(params.get("ws")), role: spectator ? "spectator" : null, tokenName: body?.name ?? null };
}

const spentKey = (room) => `arbiter.spent.${room}`;

/**
 * True when this tab has been welcomed with this join token already (it is single-use):
 * a reload of the page resumes with the welcome's token (kept in sessionStorage by the
 * Connection) instead of presenting the spent join token again.
 */
export function joinTokenSpent(room, token) {
  try {
    return !!token && sessionStorage.getItem(spentKey(room)) === token;
  } catch {
    return false;
  }
}

/** Remember that the join token for `room` was used (see joinTokenSpent). */
export function markJoinTokenSpent(room, token) {
  try {
    if (token) sessionStorage.setItem(spentKey(room), token);
  } catch {
    // storage disabled: a reload presents the join token again, and is refused
  }
}

/** The game page for a join answer ({room, token, ws_url}) of a room of `mode`. */
export function gamePageUrl(mode, { room, token, ws_url: wsUrl }, loc = location) {
  const q = new URLSearchParams({ room, token });
  const ws = wsUrlOrNull(wsUrl);
  if (ws && ws !== wsUrlOrNull(defaultWsUrl(loc))) q.set("ws", ws);
  return `${mode === "lockstep" ? "/lockstep.html" : "/"}?${q}`;
}

/** The login token the lobby was given (sent as `auth`), or null. */
export function storedAuth() {
  try {
    return sessionStorage.getItem(AUTH_KEY) || null;
  } catch {
    return null;
  }
}

export function storeAuth(value) {
  try {
    if (value) sessionStorage.setItem(AUTH_KEY, value);
    else sessionStorage.removeItem(AUTH_KEY);
  } catch {
    // storage disabled: the login token is used on this page only
  }
}
