// Schedules with pause / resume / delete and their next run.

import { del, enc, get, post } from "../api.js";
import { actionButton, confirmButton, el, empty, table, text, time } from "../dom.js";

export async function render(ctx) {
  const schedules = (await get("/v2/schedules")) ?? [];
  const rows = schedules.map((s) => ({
    props: { dataset: { scheduleId: s.scheduleId, paused: String(Boolean(s.isPaused)) } },
    cells: [
      el("span", { class: "id" }, s.scheduleId),
      text(s.destination, "url"),
      el("code", null, s.cron),
      text(s.label),
      el("span", { class: s.isPaused ? "state paused" : "state active" }, s.isPaused ? "paused" : "active"),
      time(s.nextScheduleTime),
      time(s.lastScheduleTime),
      s.isPaused
        ? actionButton("Resume", () => toggle(ctx, s.scheduleId, "resume"))
        : actionButton("Pause", () => toggle(ctx, s.scheduleId, "pause")),
      confirmButton("Delete", () =>
        ctx.act(() => del(`/v2/schedules/${enc(s.scheduleId)}`), `Deleted ${s.scheduleId}.`),
      ),
    ],
  }));
  return el(
    "section",
    { id: "schedules" },
    el("h2", null, "Schedules"),
    rows.length
      ? table(["Schedule", "Destination", "Cron", "Label", "State", "Next run", "Last run", "", ""], rows)
      : empty("No schedules."),
  );
}

function toggle(ctx, id, action) {
  return ctx.act(() => post(`/v2/schedules/${enc(id)}/${action}`), `${action === "pause" ? "Paused" : "Resumed"} ${id}.`);
}
