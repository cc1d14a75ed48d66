// Messages that are not finished yet (pending, delayed, in flight), with cancel. The v2 API has
// no message list: the recent event log is folded into each message's latest state.

import { del, enc, events, get } from "../api.js";
import { confirmButton, el, empty, table, text, time } from "../dom.js";
import { currentMessages } from "../stats.js";

const PHASES = ["all", "pending", "delayed", "in flight", "finished"];
const RECENT = 2000; // events read back, newest first

export async function render(ctx) {
  const phase = ctx.params.get("phase") ?? "all";
  const { events: recent, truncated } = await events({}, RECENT);
  const messages = currentMessages(recent, Date.now());
  const counts = Object.fromEntries(PHASES.map((p) => [p, 0]));
  for (const m of messages) counts[m.phase] += 1;
  counts.all = messages.length;
  const shown = messages.filter((m) => phase === "all" || m.phase === phase);

  const filters = el(
    "p",
    { class: "tabs" },
    PHASES.map((p) =>
      el("a", { href: `#messages?phase=${enc(p)}`, class: p === phase ? "current" : null },
        `${p} (${counts[p]})`),
    ),
  );
  const rows = shown.map((m) => ({
    props: { dataset: { messageId: m.messageId, phase: m.phase } },
    cells: [
      el("a", { href: `#message?id=${enc(m.messageId)}`, class: "id" }, m.messageId),
      el("span", { class: `state ${m.state}` }, m.state),
      el("span", { class: "nowrap" }, m.phase),
      text(m.url, "url"),
      text(m.label),
      m.phase === "finished" ? "" : time(m.nextDeliveryTime),
      time(m.time),
      m.phase === "finished" ? "" : confirmButton("Cancel", () => cancel(ctx, m.messageId)),
    ],
  }));
  return el(
    "section",
    { id: "messages" },
    el("h2", null, "Messages"),
    filters,
    truncated ? el("p", { class: "hint" }, `From the latest ${RECENT} events.`) : null,
    rows.length
      ? table(["Message", "State", "Phase", "URL", "Label", "Next delivery", "Updated", ""], rows)
      : empty("No messages."),
  );
}

async function cancel(ctx, messageId) {
  await ctx.act(() => del(`/v2/messages/${enc(messageId)}`), `Cancelled ${messageId}.`);
}

/** One message: GET /v2/messages/{id} while it is pending, and its events. */
export async function renderOne(ctx) {
  const id = ctx.params.get("id") ?? "";
  let message = null;
  try {
    message = await get(`/v2/messages/${enc(id)}`);
  } catch (exc) {
    if (exc.status !== 404) throw exc; // finished messages are only in the event log
  }
  const { events: history } = await events({ messageId: id }, 1000);
  const fields = message
    ? Object.entries(message).map(([k, v]) => ({
        cells: [k, text(typeof v === "object" ? JSON.stringify(v) : String(v))],
      }))
    : [];
  return el(
    "section",
    { id: "message" },
    el("h2", null, "Message ", el("span", { class: "id" }, id)),
    message
      ? [
          table(["Field", "Value"], fields, { class: "fields" }),
          confirmButton("Cancel", () => cancel(ctx, id)),
        ]
      : el("p", { class: "hint" }, "Not pending: only its events remain."),
    el("h3", null, "Events"),
    history.length
      ? table(
          ["Time", "State", "URL", "Status", "Error"],
          history.map((e) => ({
            props: { dataset: { state: e.state } },
            cells: [time(e.time), el("span", { class: `state ${e.state}` }, e.state), text(e.url, "url"),
              e.responseStatus ?? "", text(e.error)],
          })),
        )
      : empty("No events."),
  );
}
