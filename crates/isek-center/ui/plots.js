// The dashboard's plots, drawn on canvas by hand: live nodes over the last hour, and
// changes (join, update, deregister, expire) per 10-second bucket. The history is
// what this page has seen since it opened, bounded to one hour of buckets.

export const BUCKET_MS = 10_000;
export const WINDOW_MS = 60 * 60 * 1000;
/** The plots span the time since the page opened, at least this and at most an hour. */
const MIN_SPAN_MS = 5 * 60 * 1000;
const BUCKETS = WINDOW_MS / BUCKET_MS;

export const COLORS = {
  line: "#38bdf8",
  fill: "rgba(56, 189, 248, 0.16)",
  join: "#34d399",
  update: "#60a5fa",
  dereg: "#a78bfa",
  expire: "#f59e0b",
  grid: "rgba(148, 163, 184, 0.16)",
  axis: "rgba(148, 163, 184, 0.45)",
  text: "#8b9bb4",
};

/** One hour of 10-second buckets of changes, plus samples of the live count. */
export class History {
  constructor(now = Date.now()) {
    this.opened = now;
    this.buckets = []; // {t, join, update, dereg, expire, live}, oldest first
    this.live = 0;
    this.bucket(now);
  }

  bucket(now) {
    const t = Math.floor(now / BUCKET_MS) * BUCKET_MS;
    let last = this.buckets[this.buckets.length - 1];
    if (!last || last.t !== t) {
      last = { t, join: 0, update: 0, dereg: 0, expire: 0, live: this.live };
      this.buckets.push(last);
      while (this.buckets.length > BUCKETS + 1) this.buckets.shift();
    }
    return last;
  }

  /** Counts one change of `kind` (join, update, dereg, expire) at `now`. */
  count(kind, now = Date.now()) {
    this.bucket(now)[kind]++;
  }

  /** Records the live count at `now`. */
  sample(live, now = Date.now()) {
    this.live = live;
    this.bucket(now).live = live;
  }

  /** Sums of each kind over the last `ms`. */
  totals(ms, now = Date.now()) {
    const from = now - ms;
    const sum = { join: 0, update: 0, dereg: 0, expire: 0 };
    for (let i = this.buckets.length - 1; i >= 0; i--) {
      const b = this.buckets[i];
      if (b.t + BUCKET_MS <= from) break;
      sum.join += b.join;
      sum.update += b.update;
      sum.dereg += b.dereg;
      sum.expire += b.expire;
    }
    return sum;
  }
}

/** A canvas sized to its element in device pixels; returns the 2D context and size. */
function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, canvas.clientWidth);
  const height = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

/** A round number at or above `n` (1, 2, 5 × 10^k). */
export function niceCeil(n) {
  if (n <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= n) return step * power;
  }
  return 10 * power;
}

function compact(n) {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${+(n / 1e3).toFixed(0)}k`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return String(n);
}

const PAD = { left: 38, right: 8, top: 8, bottom: 18 };

/** The time the plots span at `now`: since the page opened, within [5 min, 1 h]. */
export function span(history, now) {
  return Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - history.opened));
}

function timeAxis(ctx, width, height, now, spanMs) {
  const plotW = width - PAD.left - PAD.right;
  const x = (t) => PAD.left + plotW * (1 - (now - t) / spanMs);
  const minutes = spanMs / 60000;
  const step = [1, 2, 5, 10, 15].find((m) => minutes / m <= 5) || 15;
  ctx.fillStyle = COLORS.text;
  ctx.textBaseline = "alphabetic";
  for (let m = 0; m <= minutes + 1e-9; m += step) {
    const px = x(now - m * 60000);
    if (m > 0 && px - PAD.left < 50) continue; // would crowd the left edge
    ctx.textAlign = m === 0 ? "right" : px - PAD.left < 24 ? "left" : "center";
    ctx.fillText(m === 0 ? "now" : `−${m} min`, m === 0 ? px : Math.max(PAD.left, px), height - 4);
  }
  return x;
}

function valueAxis(ctx, width, y0, y1, max, ticks, label = compact) {
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= ticks; i++) {
    const v = (max * i) / ticks;
    const y = Math.round(y0 + (y1 - y0) * (i / ticks)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(PAD.left, y);
    ctx.lineTo(width - PAD.right, y);
    ctx.stroke();
    ctx.fillText(label(v), PAD.left - 6, y);
  }
}

/** Live nodes over the last hour: a stepped line with a filled area. */
export function drawLive(canvas, history, now = Date.now()) {
  const { ctx, width, height } = prepare(canvas);
  const spanMs = span(history, now);
  const x = timeAxis(ctx, width, height, now, spanMs);
  const bottom = height - PAD.bottom;
  const top = PAD.top;
  let max = 0;
  for (const b of history.buckets) max = Math.max(max, b.live);
  max = niceCeil(Math.max(max, history.live, 4));
  valueAxis(ctx, width, bottom, top, max, 2);
  const y = (v) => bottom - ((bottom - top) * v) / max;
  const points = [[x(Math.max(history.opened, now - spanMs)), y(history.buckets[0].live)]];
  for (const b of history.buckets) {
    if (b.t + BUCKET_MS < now - spanMs) continue;
    const t = Math.max(b.t, history.opened, now - spanMs);
    points.push([x(t), y(b.live)]);
  }
  points.push([x(now), y(history.live)]);
  ctx.beginPath();
  ctx.moveTo(points[0][0], bottom);
  for (let i = 0; i < points.length; i++) {
    const [px, py] = points[i];
    if (i > 0) ctx.lineTo(px, points[i - 1][1]);
    ctx.lineTo(px, py);
  }
  ctx.lineTo(points[points.length - 1][0], bottom);
  ctx.closePath();
  ctx.fillStyle = COLORS.fill;
  ctx.fill();
  ctx.beginPath();
  for (let i = 0; i < points.length; i++) {
    const [px, py] = points[i];
    if (i === 0) ctx.moveTo(px, py);
    else {
      ctx.lineTo(px, points[i - 1][1]);
      ctx.lineTo(px, py);
    }
  }
  ctx.strokeStyle = COLORS.line;
  ctx.lineWidth = 1.6;
  ctx.stroke();
  const [lx, ly] = points[points.length - 1];
  ctx.fillStyle = COLORS.line;
  ctx.beginPath();
  ctx.arc(lx, ly, 2.6, 0, Math.PI * 2);
  ctx.fill();
}

/** Changes per bucket: joins and updates above the axis, leaves below. */
export function drawRates(canvas, history, now = Date.now()) {
  const { ctx, width, height } = prepare(canvas);
  const spanMs = span(history, now);
  const x = timeAxis(ctx, width, height, now, spanMs);
  const top = PAD.top;
  const bottom = height - PAD.bottom;
  const mid = Math.round((top + bottom) / 2) + 0.5;
  let max = 0;
  for (const b of history.buckets) {
    max = Math.max(max, b.join + b.update, b.dereg + b.expire);
  }
  max = niceCeil(Math.max(max, 2));
  const half = (bottom - top) / 2;
  // Grid: +max, 0, -max.
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const [v, yy] of [[max, top], [0, mid], [max, bottom]]) {
    const yl = Math.round(yy) + 0.5;
    ctx.beginPath();
    ctx.moveTo(PAD.left, yl);
    ctx.lineTo(width - PAD.right, yl);
    ctx.stroke();
    ctx.fillText(compact(v), PAD.left - 6, yl);
  }
  ctx.strokeStyle = COLORS.axis;
  ctx.beginPath();
  ctx.moveTo(PAD.left, mid);
  ctx.lineTo(width - PAD.right, mid);
  ctx.stroke();
  const barW = Math.max(1, ((width - PAD.left - PAD.right) * BUCKET_MS) / spanMs - 1);
  const scale = (v) => (half * v) / max;
  for (const b of history.buckets) {
    if (b.t + BUCKET_MS < now - spanMs) continue;
    const bx = x(b.t);
    if (bx < PAD.left) continue;
    let up = mid;
    for (const [kind, color] of [["join", COLORS.join], ["update", COLORS.update]]) {
      const h = scale(b[kind]);
      if (h <= 0) continue;
      ctx.fillStyle = color;
      ctx.fillRect(bx, up - h, barW, h);
      up -= h;
    }
    let down = mid;
    for (const [kind, color] of [["dereg", COLORS.dereg], ["expire", COLORS.expire]]) {
      const h = scale(b[kind]);
      if (h <= 0) continue;
      ctx.fillStyle = color;
      ctx.fillRect(bx, down, barW, h);
      down += h;
    }
  }
}
