// Deliveries per bucket by outcome and end-to-end latency percentiles, from GET /v2/events
// (older ranges come from the Iceberg history through the same cursor).

import { events } from "../api.js";
import { el } from "../dom.js";
import { deliveriesChart, latencyChart } from "../chart.js";
import { buckets, totals } from "../stats.js";

const RANGES = { "15m": 15, "1h": 60, "6h": 360, "24h": 1440 };
const LIMIT = 20000; // events read at most for one chart

export async function render(ctx) {
  const range = RANGES[ctx.params.get("range")] ? ctx.params.get("range") : "1h";
  const minutes = RANGES[range];
  const stepMs = Math.max(1, Math.round(minutes / 60)) * 60000;
  const now = Date.now();
  const to = Math.ceil(now / stepMs) * stepMs;
  const from = to - minutes * 60000;
  const { events: recent, truncated } = await events({ fromDate: from, toDate: now }, LIMIT);
  const rows = buckets(recent, from, to, stepMs);
  const sum = totals(rows);
  const picker = el(
    "p",
    { class: "tabs" },
    Object.keys(RANGES).map((r) =>
      el("a", { href: `#charts?range=${r}`, class: r === range ? "current" : null }, `last ${r}`),
    ),
  );
  return el(
    "section",
    { id: "charts" },
    el("h2", null, "Deliveries"),
    picker,
    el(
      "p",
      { id: "totals", class: "legend" },
      el("span", { class: "key delivered" }, `delivered ${sum.delivered}`),
      el("span", { class: "key retry" }, `retry ${sum.retry}`),
      el("span", { class: "key failed" }, `failed ${sum.failed}`),
      ` per ${stepMs / 60000} min`,
    ),
    deliveriesChart(rows),
    el("h2", null, "End-to-end latency"),
    el(
      "p",
      { class: "legend" },
      el("span", { class: "key p50" }, "p50"),
      el("span", { class: "key p90" }, "p90"),
      el("span", { class: "key p99" }, "p99"),
      " ms from due to delivered",
    ),
    latencyChart(rows),
    truncated ? el("p", { class: "hint" }, `Only the latest ${LIMIT} events of the range are counted.`) : null,
  );
}
