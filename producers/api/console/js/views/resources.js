// Queues (with pause / resume), flow-control keys and URL groups.

import { enc, get, post } from "../api.js";
import { actionButton, el, empty, table, text, time } from "../dom.js";

export async function renderQueues(ctx) {
  const [queues, keys] = await Promise.all([get("/v2/queues"), get("/v2/flowControl")]);
  const queueRows = (queues ?? []).map((q) => ({
    props: { dataset: { queue: q.name } },
    cells: [
      q.name,
      q.parallelism,
      q.lag,
      q.paused ? "paused" : "active",
      time(q.updatedAt),
      actionButton(q.paused ? "Resume" : "Pause", () =>
        ctx.act(
          () => post(`/v2/queues/${enc(q.name)}/${q.paused ? "resume" : "pause"}`),
          `${q.paused ? "Resumed" : "Paused"} queue ${q.name}.`,
        ),
      ),
    ],
  }));
  const keyRows = (keys ?? []).map((k) => ({
    props: { dataset: { flowControlKey: k.flowControlKey } },
    cells: [
      k.flowControlKey,
      k.waitListSize,
      `${k.parallelismCount} / ${k.parallelismMax ?? "∞"}`,
      `${k.rateCount} / ${k.rateMax ?? "∞"} per ${k.ratePeriod ?? "-"}s`,
      k.isPaused ? "paused" : "active",
    ],
  }));
  return el(
    "section",
    { id: "queues" },
    el("h2", null, "Queues"),
    queueRows.length
      ? table(["Queue", "Parallelism", "Lag", "State", "Updated", ""], queueRows)
      : empty("No queues."),
    el("h2", null, "Flow-control keys"),
    keyRows.length
      ? table(["Key", "Waiting", "Parallelism", "Rate", "State"], keyRows)
      : empty("No flow-control keys."),
  );
}

export async function renderGroups() {
  const groups = (await get("/v2/topics")) ?? [];
  const rows = groups.map((g) => ({
    props: { dataset: { group: g.name } },
    cells: [
      g.name,
      el("ul", null, (g.endpoints ?? []).map((e) => el("li", null, text(e.name ? `${e.name}: ${e.url}` : e.url, "url")))),
      time(g.updatedAt),
    ],
  }));
  return el(
    "section",
    { id: "groups" },
    el("h2", null, "URL groups"),
    rows.length ? table(["Group", "Endpoints", "Updated"], rows) : empty("No URL groups."),
  );
}
