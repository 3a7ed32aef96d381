// What the two demo pages (/ and /lockstep.html) share: DOM shortcuts, the
// event log, direction keys, player colours and the latency simulator controls.
// Page code, not library: it touches the DOM and knows the pages' markup.

export const $ = (id) => document.getElementById(id);
export const params = new URLSearchParams(location.search);

/** Set an element's text (by id or element), touching the DOM only when it changes. */
export function setText(el, text) {
  if (typeof el === "string") el = $(el);
  if (el.textContent !== text) el.textContent = text;
}

/** A round trip as the pages show it: "42 ms", or "–" before the first pong. */
export function msText(ms) {
  return ms === null || ms === undefined ? "–" : `${Math.round(ms)} ms`;
}

/**
 * A log in `box`, newest first, keeping the last `keep` lines: log(text, bad)
 * adds one (`bad` marks it with the class "bad"). Lines are `<tag>` elements,
 * prefixed with the local time when `time` is set.
 */
export function makeLog(box, { keep = 8, tag = "p", time = false } = {}) {
  return function log(text, bad = false) {
    const line = document.createElement(tag);
    line.textContent = time ? `${new Date().toLocaleTimeString()} ${text}` : text;
    if (bad) line.className = "bad";
    box.prepend(line);
    while (box.children.length > keep) box.lastChild.remove();
  };
}

// -- keys -------------------------------------------------------------------------

/** Direction keys by KeyboardEvent.code (where they are, whatever the layout): [dx, dz]. */
export const DIRECTION_KEYS = Object.freeze({
  ArrowUp: [0, -1], KeyW: [0, -1],
  ArrowDown: [0, 1], KeyS: [0, 1],
  ArrowLeft: [-1, 0], KeyA: [-1, 0],
  ArrowRight: [1, 0], KeyD: [1, 0],
});

const TEXT_INPUTS = new Set(["text", "number", "search", "email", "password", "url", "tel", "range"]);

/** True when a key event goes to a field that takes keys itself (the game leaves it alone). */
export function isTyping(ev) {
  const t = ev.target;
  return (
    (t instanceof HTMLInputElement && TEXT_INPUTS.has(t.type)) ||
    t instanceof HTMLTextAreaElement ||
    t instanceof HTMLSelectElement ||
    !!t?.isContentEditable
  );
}

/**
 * Listen for the keys in `keys` (code -> value) outside text fields:
 * down(code, value, ev) on every keydown of one (repeats included; its default
 * is prevented unless down returns false), up(code) on its keyup, other(ev)
 * for any other keydown.
 */
export function listenKeys({ keys = DIRECTION_KEYS, down, up, other }) {
  addEventListener("keydown", (ev) => {
    if (isTyping(ev)) return;
    const value = keys[ev.code];
    if (!value) other?.(ev);
    else if (down(ev.code, value, ev) !== false) ev.preventDefault();
  });
  if (up) addEventListener("keyup", (ev) => keys[ev.code] && up(ev.code));
}

// -- players ------------------------------------------------------------------------

/** Colours for players by their place in the game, where the server gives none. */
export const PLAYER_COLORS = Object.freeze(["#4fc3f7", "#ff8a65", "#aed581", "#ba68c8", "#ffd54f", "#4db6ac", "#f06292", "#90a4ae"]);
/** A player whose colour is not known (yet). */
export const NO_COLOR = "#888";

export function playerColor(index) {
  return index >= 0 ? PLAYER_COLORS[index % PLAYER_COLORS.length] : NO_COLOR;
}

/**
 * Fill a player list: one `<li>` per {color, text, away, score?}: a colour
 * swatch, the text, and the score at the right; an away player is dimmed.
 */
export function renderPlayers(list, rows) {
  list.replaceChildren(
    ...rows.map(({ color, text, away, score }) => {
      const li = document.createElement("li");
      if (away) li.className = "away";
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = color ?? NO_COLOR;
      const name = document.createElement("span");
      name.textContent = text;
      li.append(sw, name);
      if (score !== undefined) {
        const s = document.createElement("span");
        s.className = "score";
        s.textContent = score;
        li.append(s);
      }
      return li;
    }),
  );
}

// -- the latency simulator ------------------------------------------------------------

function nonNegative(input) {
  const v = Number(input?.value);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/**
 * Wire the latency simulator's inputs to the connection connection() returns
 * (it may change, or be null): `delay` (ms; each way, or the round trip split
 * in two when `roundTrip`), optional `jitter` (ms) and `label` (shows the
 * delay). URL parameters `lag` and `jitter` preset them. Returns apply(),
 * which sets the current values on the connection (call it on a new one).
 */
export function latencyControls({ delay, jitter = null, label = null, roundTrip = false }, connection) {
  if (params.has("lag")) delay.value = params.get("lag");
  if (jitter && params.has("jitter")) jitter.value = params.get("jitter");
  const apply = () => {
    const ms = nonNegative(delay);
    const each = roundTrip ? ms / 2 : ms;
    if (label) label.textContent = `${ms} ms`;
    connection()?.setLatency({ send: each, recv: each, jitter: nonNegative(jitter) });
  };
  for (const input of [delay, jitter]) input?.addEventListener("input", apply);
  apply();
  return apply;
}
