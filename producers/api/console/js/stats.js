// Pure figures from event-log entries (GET /v2/events): no DOM, no clock of its own.

const TERMINAL = new Set(["DELIVERED", "FAILED", "CANCELED"]);

/**
 * The outcome an event counts as in the deliveries chart, or null when it is not one. Every
 * failed attempt emits ERROR and then RETRY or FAILED: ERROR alone would count it twice.
 */
export function outcome(state) {
  if (state === "DELIVERED") return "delivered";
  if (state === "RETRY") return "retry";
  if (state === "FAILED") return "failed";
  return null;
}

export const OUTCOMES = ["delivered", "retry", "failed"];

/**
 * Each message's latest event, newest first, with what the console calls its phase:
 * pending (created, due), delayed (created, due later), in flight (being attempted or waiting
 * for its next attempt) or finished (delivered, failed, cancelled).
 */
export function currentMessages(events, nowMs) {
  const latest = new Map();
  const created = new Map();
  for (const e of events) {
    const seen = latest.get(e.messageId);
    if (!seen || e.time > seen.time) latest.set(e.messageId, e);
    if (e.state === "CREATED") created.set(e.messageId, e);
  }
  const out = [];
  for (const e of latest.values()) {
    let phase = "finished";
    if (e.state === "CREATED") phase = (e.nextDeliveryTime ?? 0) > nowMs ? "delayed" : "pending";
    else if (!TERMINAL.has(e.state)) phase = "in flight"; // ACTIVE, RETRY, ERROR
    const first = created.get(e.messageId);
    out.push({ ...first, ...e, label: e.label ?? first?.label, phase });
  }
  return out.sort((a, b) => b.time - a.time);
}

/** The q-quantile (0..1) of sorted numbers, nearest rank; null for none. */
export function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

/**
 * Buckets of `stepMs` from `fromMs` to `toMs`: per bucket, the deliveries by outcome and the
 * end-to-end latency percentiles of the messages delivered in it. A message's latency runs from
 * when it was due (its CREATED event, or its not-before time when later) to its DELIVERED event;
 * a message whose CREATED event is not among `events` has no latency figure.
 */
export function buckets(events, fromMs, toMs, stepMs) {
  const n = Math.max(1, Math.ceil((toMs - fromMs) / stepMs));
  const out = Array.from({ length: n }, (_, i) => ({
    start: fromMs + i * stepMs,
    delivered: 0,
    retry: 0,
    failed: 0,
    latencies: [],
  }));
  const due = new Map();
  for (const e of events) {
    if (e.state === "CREATED") due.set(e.messageId, Math.max(e.time, e.nextDeliveryTime ?? 0));
  }
  for (const e of events) {
    const kind = outcome(e.state);
    if (kind === null || e.time < fromMs || e.time >= toMs) continue;
    const bucket = out[Math.floor((e.time - fromMs) / stepMs)];
    bucket[kind] += 1;
    if (kind === "delivered" && due.has(e.messageId)) {
      bucket.latencies.push(Math.max(0, e.time - due.get(e.messageId)));
    }
  }
  return out.map((b) => {
    const sorted = b.latencies.sort((x, y) => x - y);
    return {
      start: b.start,
      delivered: b.delivered,
      retry: b.retry,
      failed: b.failed,
      p50: quantile(sorted, 0.5),
      p90: quantile(sorted, 0.9),
      p99: quantile(sorted, 0.99),
    };
  });
}

/** Totals over buckets, for the summary line under the charts. */
export function totals(rows) {
  const out = { delivered: 0, retry: 0, failed: 0 };
  for (const r of rows) for (const k of OUTCOMES) out[k] += r[k];
  return out;
}
