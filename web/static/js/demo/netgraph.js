// The cube demo's net graph (the net_graph of classic shooters): one small 2D canvas
// plotting the last WINDOW_MS of the connection as the page lives it:
//
//   ping      the latest round trip (ping/pong, the page's latency simulator included), ms
//   delay     the view delay others are drawn behind the newest state (client.renderDelay), ms
//   bytes in  bytes received per second (the overlay's "bytes/s in": connection.bytesIn)
//   corrections  a mark per `correction` event of the client (own avatar's prediction was
//             wrong): a short tick when blended, a full-height line when snapped
//   stalls    gaps in the state stream, shaded: a state message that came more than
//             STALL_PERIODS state periods after the one before it, and later than its tick
//             says (a server with nothing to say sends nothing: docs/PROTOCOL.md 2.2, so a
//             quiet gap whose ticks were skipped is no stall)
//
// Cheap by construction: the samples live in typed-array rings allocated once; sample()
// pushes at most one sample per SAMPLE_MS; draw() repaints at most every DRAW_MS and only
// while the graph is shown. Page code (it knows the demo's markup), not library.

export const WINDOW_MS = 10000; // what the graph shows
export const SAMPLE_MS = 1000 / 30; // at most one series sample per this (about one per pixel)
export const DRAW_MS = 100; // at most one repaint per this
export const STALL_PERIODS = 2.5; // a gap between state messages longer than this many periods
const GAP_MS = 250; // samples further apart than this are not joined by a line (a background tab)
const CORRECTION_WINDOW_MS = 60000; // corrections/min counts the last minute

export const COLORS = Object.freeze({
  ping: "#4fc3f7",
  delay: "#aed581",
  bytes: "#ffb74d",
  correction: "#ffd60a",
  snapped: "#ff2d55",
  stall: "rgba(186, 104, 200, 0.38)",
  grid: "rgba(255, 255, 255, 0.10)",
  text: "#9fb3c8",
});

const MS_STEPS = [50, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000];
const NICE = [1, 2, 5, 10];

/** The smallest "nice" number (1, 2, 5 × 10^k) at or above v. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of NICE) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A ring of (time, values...) rows in typed arrays: push overwrites the oldest when full. */
class Ring {
  constructor(capacity, columns) {
    this.capacity = capacity;
    this.t = new Float64Array(capacity);
    this.cols = Array.from({ length: columns }, () => new Float64Array(capacity));
    this.head = 0; // where the next row goes
    this.size = 0;
  }

  push(t, a = 0, b = 0, c = 0) {
    const i = this.head;
    this.t[i] = t;
    const cols = this.cols;
    if (cols.length > 0) cols[0][i] = a;
    if (cols.length > 1) cols[1][i] = b;
    if (cols.length > 2) cols[2][i] = c;
    this.head = (i + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  /** The array index of the k-th row, oldest first (0 <= k < size). */
  index(k) {
    return (this.head - this.size + k + this.capacity) % this.capacity;
  }

  /** The array index of the newest row, or -1 when empty. */
  newest() {
    return this.size ? (this.head - 1 + this.capacity) % this.capacity : -1;
  }

  /** Rows from time `since` on. */
  countSince(since) {
    let n = 0;
    for (let k = this.size - 1; k >= 0 && this.t[this.index(k)] >= since; k--) n++;
    return n;
  }

  clear() {
    this.head = this.size = 0;
  }
}

export class NetGraph {
  /**
   * `canvas`: the graph's <canvas> (drawn at its CSS size × devicePixelRatio);
   * `labels` (optional): elements {ping, delay, bytes, corrections, stalls} whose text
   * shows the current values; `box` (optional): the element shown and hidden (else the
   * canvas).
   */
  constructor(canvas, { labels = {}, box = null, visible = false } = {}) {
    this.canvas = canvas;
    this.box = box ?? canvas;
    this.labels = labels;
    this.ctx = canvas.getContext("2d");
    // series: ping, delay, bytes/s in; at most one row per SAMPLE_MS, WINDOW_MS and more kept
    this.series = new Ring(512, 3);
    this.arrivals = 0; // state messages seen
    this.corrections = new Ring(512, 1); // [snapped 0/1]
    this.stalls = new Ring(64, 1); // t = the end, [the start]
    this.correctionsSeen = 0;
    this.snappedSeen = 0;
    this.stallsSeen = 0;
    this.longestStall = 0; // ms
    this.last = { ping: null, delay: null, bytesIn: 0 };
    this.scale = { ms: 0, bytes: 0 }; // the tops of the two scales at the last repaint (0: none yet)
    this._prevArrival = null; // local time of the previous state message
    this._prevTick = null; // ... and its tick
    this._drawnAt = -Infinity;
    this._sampledAt = -Infinity;
    this._width = 0; // the backing store's size, in device pixels
    this._height = 0;
    this._labelText = { ping: "", delay: "", bytes: "", corrections: "", stalls: "" };
    this.visible = false;
    this.setVisible(visible);
  }

  // -- the samples ------------------------------------------------------------------

  /** A new session (a welcome): the state stream starts again, its first gap is none. */
  restart() {
    this._prevArrival = null;
    this._prevTick = null;
  }

  /**
   * A state message arrived at local time t: its tick, and the state period (ms).
   * Returns the stall it ended ({start, end}) or null.
   */
  stateArrived(t, tick, periodMs) {
    this.arrivals++;
    const prevAt = this._prevArrival;
    const prevTick = this._prevTick;
    this._prevArrival = t;
    this._prevTick = tick;
    if (prevAt === null || !(periodMs > 0) || typeof tick !== "number" || typeof prevTick !== "number") return null;
    const gap = t - prevAt;
    const skipped = Math.max(0, tick - prevTick - 1) * periodMs; // ticks the server had nothing to say
    if (gap <= STALL_PERIODS * periodMs || gap - skipped <= STALL_PERIODS * periodMs) return null;
    const start = prevAt + skipped;
    this.stalls.push(t, start);
    this.stallsSeen++;
    this.longestStall = Math.max(this.longestStall, t - start);
    return { start, end: t };
  }

  /** The client's `correction` event at local time t. */
  correction(t, snapped) {
    this.corrections.push(t, snapped ? 1 : 0);
    this.correctionsSeen++;
    if (snapped) this.snappedSeen++;
  }

  /**
   * Once per frame: the current ping (ms or null), view delay (ms) and bytes/s in.
   * Keeps at most one row per SAMPLE_MS, then repaints if shown and due.
   */
  sample(t, ping, delay, bytesIn) {
    this.last.ping = ping ?? null;
    this.last.delay = delay ?? null;
    this.last.bytesIn = bytesIn ?? 0;
    if (t - this._sampledAt >= SAMPLE_MS) {
      this._sampledAt = t;
      this.series.push(t, ping ?? NaN, delay ?? NaN, bytesIn ?? NaN);
    }
    if (this.visible && t - this._drawnAt >= DRAW_MS) this.draw(t);
  }

  /** Corrections in the last minute (scaled up if the ring does not reach that far back). */
  correctionsPerMinute(t) {
    const ring = this.corrections;
    const since = t - CORRECTION_WINDOW_MS;
    const n = ring.countSince(since);
    if (n < ring.capacity) return n;
    const oldest = ring.t[ring.index(0)];
    return Math.round((n * CORRECTION_WINDOW_MS) / Math.max(1, t - oldest));
  }

  /** Stalls that ended within the window. */
  stallsInWindow(t) {
    return this.stalls.countSince(t - WINDOW_MS);
  }

  // -- showing ----------------------------------------------------------------------

  setVisible(on) {
    this.visible = !!on;
    if (this.box.hidden === this.visible) this.box.hidden = !this.visible;
    this._drawnAt = -Infinity; // repaint at the next sample
  }

  toggle() {
    this.setVisible(!this.visible);
    return this.visible;
  }

  /** What the test hook shows. */
  describe(t) {
    return {
      visible: this.visible,
      samples: this.series.size,
      arrivals: this.arrivals,
      last: {
        ping: this.last.ping,
        delay: this.last.delay,
        bytesIn: this.last.bytesIn,
        corrections: this.correctionsPerMinute(t),
        stalls: this.stallsInWindow(t),
      },
      marks: this.corrections.countSince(t - WINDOW_MS),
      snappedMarks: this._countSnapped(t - WINDOW_MS),
      correctionsSeen: this.correctionsSeen,
      snappedSeen: this.snappedSeen,
      stallsSeen: this.stallsSeen,
      longestStall: Math.round(this.longestStall),
      scale: { ms: this.scale.ms, bytes: this.scale.bytes },
    };
  }

  _countSnapped(since) {
    const ring = this.corrections;
    let n = 0;
    for (let k = ring.size - 1; k >= 0; k--) {
      const i = ring.index(k);
      if (ring.t[i] < since) break;
      if (ring.cols[0][i]) n++;
    }
    return n;
  }

  /** Repaint: the stalls, the grid, bytes in, delay, ping, the corrections; then the labels. */
  draw(t) {
    this._drawnAt = t;
    const ctx = this.ctx;
    const dpr = globalThis.devicePixelRatio || 1;
    const cssW = this.canvas.clientWidth || 300;
    const cssH = this.canvas.clientHeight || 120;
    const w = Math.round(cssW * dpr);
    const h = Math.round(cssH * dpr);
    if (w !== this._width || h !== this._height) {
      this.canvas.width = this._width = w;
      this.canvas.height = this._height = h;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const from = t - WINDOW_MS;
    const x = (time) => ((time - from) / WINDOW_MS) * cssW;
    const top = 12; // room for the scale labels
    const plotH = cssH - top - 1;

    // stalls: shaded across the plot
    ctx.fillStyle = COLORS.stall;
    const st = this.stalls;
    for (let k = 0; k < st.size; k++) {
      const i = st.index(k);
      const end = st.t[i];
      const start = st.cols[0][i];
      if (end < from) continue;
      const x0 = Math.max(0, x(start));
      ctx.fillRect(x0, top, Math.max(1.5, x(end) - x0), plotH);
    }

    // the scales: ms (ping, delay) on the left, bytes/s on the right
    const s = this.series;
    let maxMs = 0;
    let maxBytes = 0;
    for (let k = 0; k < s.size; k++) {
      const i = s.index(k);
      if (s.t[i] < from) continue;
      const p = s.cols[0][i];
      const d = s.cols[1][i];
      const b = s.cols[2][i];
      if (p > maxMs) maxMs = p;
      if (d > maxMs) maxMs = d;
      if (b > maxBytes) maxBytes = b;
    }
    let msTop = MS_STEPS[MS_STEPS.length - 1];
    for (const step of MS_STEPS) {
      if (step >= maxMs * 1.1) {
        msTop = step;
        break;
      }
    }
    const bytesTop = niceCeil(Math.max(500, maxBytes * 1.1));
    this.scale.ms = msTop;
    this.scale.bytes = bytesTop;
    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let g = 0; g <= 2; g++) {
      const y = Math.round(top + (plotH * g) / 2) + 0.5;
      ctx.moveTo(0, y);
      ctx.lineTo(cssW, y);
    }
    for (let sec = Math.ceil(from / 1000) * 1000; sec <= t; sec += 1000) {
      const gx = Math.round(x(sec)) + 0.5;
      ctx.moveTo(gx, top + plotH - 3);
      ctx.lineTo(gx, top + plotH);
    }
    ctx.stroke();
    ctx.font = "9px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = "left";
    ctx.fillText(`${msTop} ms`, 2, 1);
    ctx.textAlign = "right";
    ctx.fillText(`${bytesTop / 1000} kB/s`, cssW - 2, 1);

    // the series: bytes in (a filled area), then delay and ping (lines)
    const yMs = (v) => top + plotH - (Math.min(v, msTop) / msTop) * plotH;
    const yBytes = (v) => top + plotH - (Math.min(v, bytesTop) / bytesTop) * plotH;
    this._line(2, yBytes, from, x, COLORS.bytes, 1, top + plotH);
    this._line(1, yMs, from, x, COLORS.delay, 1.5, null);
    this._line(0, yMs, from, x, COLORS.ping, 1.5, null);

    // corrections: a tick at the top when blended, a line through the plot when snapped
    const cr = this.corrections;
    for (let k = 0; k < cr.size; k++) {
      const i = cr.index(k);
      if (cr.t[i] < from) continue;
      const cx = Math.round(x(cr.t[i])) + 0.5;
      const snapped = cr.cols[0][i];
      ctx.strokeStyle = snapped ? COLORS.snapped : COLORS.correction;
      ctx.lineWidth = snapped ? 1.5 : 1;
      ctx.beginPath();
      ctx.moveTo(cx, top);
      ctx.lineTo(cx, snapped ? top + plotH : top + 10);
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.beginPath(); // a little triangle on top
      ctx.moveTo(cx - 3, top);
      ctx.lineTo(cx + 3, top);
      ctx.lineTo(cx, top + 4);
      ctx.fill();
    }
    this._showLabels(t);
  }

  /** One series (column col) as a line, or an area down to `base`; gaps break it. */
  _line(col, y, from, x, color, width, base) {
    const s = this.series;
    const ctx = this.ctx;
    const values = s.cols[col];
    ctx.beginPath();
    let open = false; // a path segment is open
    let firstX = 0;
    let lastX = 0;
    let prevT = -Infinity;
    const close = () => {
      if (open && base !== null) {
        ctx.lineTo(lastX, base);
        ctx.lineTo(firstX, base);
        ctx.closePath();
      }
      open = false;
    };
    for (let k = 0; k < s.size; k++) {
      const i = s.index(k);
      const time = s.t[i];
      const v = values[i];
      if (time < from || Number.isNaN(v)) {
        close();
        continue;
      }
      if (open && time - prevT > GAP_MS) close();
      const px = x(time);
      const py = y(v);
      if (!open) {
        ctx.moveTo(px, py);
        firstX = px;
        open = true;
      } else {
        ctx.lineTo(px, py);
      }
      lastX = px;
      prevT = time;
    }
    close();
    if (base !== null) {
      ctx.fillStyle = color;
      ctx.globalAlpha = 0.35;
      ctx.fill();
      ctx.globalAlpha = 1;
    } else {
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.lineJoin = "round";
      ctx.stroke();
    }
  }

  _showLabels(t) {
    const { ping, delay, bytesIn } = this.last;
    this._label("ping", ping === null || Number.isNaN(ping) ? "–" : `${Math.round(ping)} ms`);
    this._label("delay", delay === null || Number.isNaN(delay) ? "–" : delay ? `${Math.round(delay)} ms` : "off");
    this._label("bytes", `${(bytesIn / 1000).toFixed(1)} kB/s`);
    this._label("corrections", `${this.correctionsPerMinute(t)}/min`);
    this._label("stalls", String(this.stallsInWindow(t)));
  }

  _label(name, text) {
    const el = this.labels[name];
    if (!el || this._labelText[name] === text) return;
    this._labelText[name] = text;
    el.textContent = text;
  }
}
