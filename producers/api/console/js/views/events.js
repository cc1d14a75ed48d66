// The event log with GET /v2/events' filters; "Older" follows the cursor, which continues into
// the Iceberg history once the in-memory window is passed.

import { enc, get } from "../api.js";
import { el, text, time } from "../dom.js";

const STATES = ["", "CREATED", "ACTIVE", "RETRY", "ERROR", "DELIVERED", "FAILED", "CANCELED", "IN_PROGRESS"];
const FIELDS = [
  ["messageId", "Message id"],
  ["url", "URL"],
  ["label", "Label"],
];

function toMs(local) {
  return local ? String(new Date(local).getTime()) : "";
}

function fromMs(ms) {
  if (!ms) return "";
  const d = new Date(Number(ms));
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

const PAGE_SIZES = [25, 100, 1000];

/** The page size asked for in the hash (1..1000, what the API allows), else 100. */
function pageSize(params) {
  const n = Number(params.get("count"));
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : 100;
}

function form(params) {
  const inputs = FIELDS.map(([name, label]) =>
    el("label", null, label, el("input", { name, value: params.get(name) ?? "", autocomplete: "off" })),
  );
  const state = el(
    "select",
    { name: "state" },
    STATES.map((s) => el("option", { value: s, selected: s === (params.get("state") ?? "") }, s || "any state")),
  );
  const from = el("input", { name: "fromDate", type: "datetime-local", value: fromMs(params.get("fromDate")) });
  const to = el("input", { name: "toDate", type: "datetime-local", value: fromMs(params.get("toDate")) });
  const size = pageSize(params);
  const sizes = PAGE_SIZES.includes(size) ? PAGE_SIZES : [size, ...PAGE_SIZES];
  const count = el(
    "select",
    { name: "count" },
    sizes.map((n) => el("option", { value: n, selected: n === size }, String(n))),
  );
  const f = el(
    "form",
    { class: "filters", id: "event-filters" },
    el("label", null, "State", state),
    inputs,
    el("label", null, "From", from),
    el("label", null, "To", to),
    el("label", null, "Per page", count),
    el("button", { type: "submit" }, "Search"),
  );
  f.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(f);
    const q = new URLSearchParams();
    for (const [k, v] of data.entries()) {
      const value = k === "fromDate" || k === "toDate" ? toMs(v) : String(v).trim();
      if (value) q.set(k, value);
    }
    window.location.hash = `#events?${q}`;
  });
  return f;
}

function rowsOf(entries) {
  return entries.map((e) => ({
    props: { dataset: { messageId: e.messageId, state: e.state } },
    cells: [
      time(e.time),
      el("a", { href: `#message?id=${enc(e.messageId)}`, class: "id" }, e.messageId),
      el("span", { class: `state ${e.state}` }, e.state),
      text(e.url, "url"),
      text(e.label),
      e.responseStatus ?? "",
      text(e.error),
    ],
  }));
}

export async function render(ctx) {
  const params = ctx.params;
  const filters = {};
  for (const key of ["state", "messageId", "url", "label", "fromDate", "toDate"]) {
    if (params.get(key)) filters[key] = params.get(key);
  }
  const body = el("tbody");
  const result = el(
    "table",
    { id: "event-table" },
    el("thead", null, el("tr", null, ["Time", "Message", "State", "URL", "Label", "Status", "Error"].map((h) => el("th", null, h)))),
    body,
  );
  const more = el("button", { type: "button", id: "older", hidden: true }, "Older");
  const note = el("p", { class: "hint" });
  let cursor;
  const load = async () => {
    // One page at a time: a second click with the same cursor would append that page twice.
    more.disabled = true;
    try {
      await loadPage();
    } finally {
      more.disabled = false;
    }
  };
  const loadPage = async () => {
    const page = await get("/v2/events", { ...filters, count: pageSize(params), cursor });
    const entries = page?.events ?? [];
    for (const row of rowsOf(entries)) {
      body.append(el("tr", row.props, row.cells.map((c) => el("td", null, c))));
    }
    cursor = page?.cursor;
    more.hidden = !cursor;
    if (cursor?.startsWith("h")) note.textContent = "Older pages come from the archived history.";
    if (!body.children.length) note.textContent = "No events match.";
  };
  more.addEventListener("click", () => ctx.guard(load));
  await load();
  return el("section", { id: "events" }, el("h2", null, "Event log"), form(params), result, more, note);
}
