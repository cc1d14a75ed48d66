// The dead-letter queue, paged with its cursor, with retry and delete per entry.

import { del, enc, get, post } from "../api.js";
import { actionButton, confirmButton, el, empty, table, text, time } from "../dom.js";

export async function render(ctx) {
  const cursor = ctx.params.get("cursor") ?? undefined;
  const page = await get("/v2/dlq", { count: 50, order: "latestFirst", cursor });
  const entries = page?.messages ?? [];
  const rows = entries.map((d) => ({
    props: { dataset: { dlqId: d.dlqId, messageId: d.messageId } },
    cells: [
      el("span", { class: "id" }, d.dlqId),
      el("a", { href: `#message?id=${enc(d.messageId)}`, class: "id" }, d.messageId),
      text(d.url, "url"),
      text(d.label),
      d.responseStatus || "",
      text(d.error),
      time(d.createdAt),
      actionButton("Retry", () =>
        ctx.act(async () => {
          const { messageId } = await post(`/v2/dlq/retry/${enc(d.dlqId)}`);
          return `Retried ${d.dlqId} as ${messageId}.`;
        }),
      ),
      confirmButton("Delete", () => ctx.act(() => del(`/v2/dlq/${enc(d.dlqId)}`), `Deleted ${d.dlqId}.`)),
    ],
  }));
  return el(
    "section",
    { id: "dlq" },
    el("h2", null, "Dead-letter queue"),
    rows.length
      ? table(["DLQ id", "Message", "URL", "Label", "Status", "Error", "Created", "", ""], rows)
      : empty("The DLQ is empty."),
    page?.cursor ? el("a", { href: `#dlq?cursor=${enc(page.cursor)}`, class: "more" }, "Next page") : null,
  );
}
