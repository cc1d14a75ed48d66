// The console's pure figures (producers/api/console/js/stats.js), run by `node --test`.
import assert from "node:assert/strict";
import test from "node:test";

import { niceMax } from "../../producers/api/console/js/chart.js";
import { buckets, currentMessages, quantile, totals } from "../../producers/api/console/js/stats.js";

const ev = (messageId, state, time, extra = {}) => ({ messageId, state, time, ...extra });

test("each message shows its latest state and phase", () => {
  const now = 10_000;
  const events = [
    ev("a", "CREATED", 1000), ev("a", "ACTIVE", 1100), ev("a", "DELIVERED", 1200),
    ev("b", "CREATED", 2000, { nextDeliveryTime: 50_000, label: "later" }),
    ev("c", "CREATED", 3000, { nextDeliveryTime: 3000 }),
    ev("d", "CREATED", 4000), ev("d", "RETRY", 4500, { nextDeliveryTime: 9000 }),
  ];
  const got = Object.fromEntries(currentMessages(events, now).map((m) => [m.messageId, m]));
  assert.equal(got.a.state, "DELIVERED");
  assert.equal(got.a.phase, "finished");
  assert.equal(got.b.phase, "delayed");
  assert.equal(got.b.label, "later");
  assert.equal(got.c.phase, "pending");
  assert.equal(got.d.phase, "in flight");
  assert.deepEqual(currentMessages(events, now).map((m) => m.messageId), ["d", "c", "b", "a"]);
});

test("quantiles by nearest rank", () => {
  const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.equal(quantile(xs, 0.5), 5);
  assert.equal(quantile(xs, 0.9), 9);
  assert.equal(quantile(xs, 0.99), 10);
  assert.equal(quantile([], 0.5), null);
});

test("deliveries per minute by outcome, latency from due to delivered", () => {
  const from = 60_000;
  const events = [
    ev("a", "CREATED", 60_000), ev("a", "DELIVERED", 60_250),
    ev("b", "CREATED", 61_000, { nextDeliveryTime: 125_000 }), ev("b", "DELIVERED", 125_400),
    // Each failed attempt is ERROR then RETRY (or FAILED, the last): one outcome, not two.
    ev("c", "CREATED", 62_000), ev("c", "ERROR", 62_100), ev("c", "RETRY", 62_100),
    ev("c", "ERROR", 130_000), ev("c", "FAILED", 130_000),
    ev("old", "DELIVERED", 10_000), // before the range: not counted
    ev("x", "DELIVERED", 121_000), // its CREATED is not known: counted, no latency
  ];
  const rows = buckets(events, from, from + 3 * 60_000, 60_000);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows.map((r) => [r.delivered, r.retry, r.failed]), [[1, 1, 0], [2, 0, 1], [0, 0, 0]]);
  assert.equal(rows[0].p50, 250);
  assert.equal(rows[1].p50, 400); // b waited for its not-before time; x has no figure
  assert.equal(rows[2].p99, null);
  assert.deepEqual(totals(rows), { delivered: 3, retry: 1, failed: 1 });
});

test("axis tops are round", () => {
  assert.equal(niceMax(1, 2), 2);
  assert.equal(niceMax(3, 2), 5);
  assert.equal(niceMax(102, 10), 200);
  assert.equal(niceMax(1000, 10), 1000);
  assert.equal(niceMax(0, 10), 10);
});
