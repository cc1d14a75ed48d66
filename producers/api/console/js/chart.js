// Two small charts drawn as inline SVG (no library): deliveries per bucket stacked by outcome,
// and latency percentiles as lines. Colours come from console.css classes.

import { svg } from "./dom.js";
import { OUTCOMES } from "./stats.js";

const W = 720;
const H = 200;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

function frame(title, maxY, rows, unit) {
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-label": title,
  });
  root.append(svg("title", null, title));
  const plotH = H - PAD.top - PAD.bottom;
  for (const frac of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - frac);
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
    root.append(
      svg("text", { x: PAD.left - 6, y: y + 4, class: "axis", "text-anchor": "end" },
        `${Math.round(maxY * frac)}${unit}`),
    );
  }
  const ticks = Math.min(6, rows.length);
  for (let i = 0; i < ticks; i++) {
    const idx = Math.floor((i * (rows.length - 1)) / Math.max(1, ticks - 1));
    const x = xOf(idx, rows.length) + barWidth(rows.length) / 2;
    const label = new Date(rows[idx].start).toISOString().slice(11, 16);
    root.append(svg("text", { x, y: H - 8, class: "axis", "text-anchor": "middle" }, label));
  }
  return root;
}

/** A round axis top at or above `value` (1, 2 or 5 times a power of ten; at least `floor`). */
export function niceMax(value, floor) {
  const v = Math.max(floor, value);
  const power = 10 ** Math.floor(Math.log10(v));
  const step = [1, 2, 5, 10].find((m) => m * power >= v);
  return step * power;
}

function barWidth(n) {
  return (W - PAD.left - PAD.right) / n;
}

function xOf(i, n) {
  return PAD.left + i * barWidth(n);
}

function yOf(value, maxY) {
  const plotH = H - PAD.top - PAD.bottom;
  return PAD.top + plotH * (1 - value / maxY);
}

/** Deliveries per bucket, one stacked bar per bucket: delivered, retry, failed. */
export function deliveriesChart(rows) {
  const maxY = niceMax(Math.max(...rows.map((r) => r.delivered + r.retry + r.failed)), 2);
  const root = frame("Deliveries by outcome", maxY, rows, "");
  const w = barWidth(rows.length);
  rows.forEach((r, i) => {
    let base = 0;
    for (const kind of OUTCOMES) {
      if (r[kind] === 0) continue;
      const top = yOf(base + r[kind], maxY);
      const height = yOf(base, maxY) - top;
      const bar = svg("rect", {
        x: xOf(i, rows.length) + 1,
        y: top,
        width: Math.max(1, w - 2),
        height,
        class: `bar ${kind}`,
        dataset: { outcome: kind, count: r[kind] },
      });
      bar.append(svg("title", null, `${kind}: ${r[kind]}`));
      root.append(bar);
      base += r[kind];
    }
  });
  return root;
}

/** End-to-end latency percentiles per bucket (milliseconds), one line per percentile. */
export function latencyChart(rows) {
  const keys = ["p50", "p90", "p99"];
  const values = rows.flatMap((r) => keys.map((k) => r[k]).filter((v) => v !== null));
  const maxY = niceMax(Math.max(0, ...values), 10);
  const root = frame("End-to-end latency percentiles (ms)", maxY, rows, "");
  const w = barWidth(rows.length);
  for (const key of keys) {
    const points = rows
      .map((r, i) => (r[key] === null ? null : `${xOf(i, rows.length) + w / 2},${yOf(r[key], maxY)}`))
      .filter((p) => p !== null);
    if (points.length === 0) continue;
    root.append(svg("polyline", { points: points.join(" "), class: `line ${key}` }));
    for (const p of points) {
      const [cx, cy] = p.split(",");
      root.append(svg("circle", { cx, cy, r: 2.5, class: `dot ${key}` }));
    }
  }
  return root;
}
