// Building the DOM from API data. Text goes in as text nodes (never parsed as HTML), so a
// label or URL holding markup shows as the characters it is.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setProps(node, props) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

/** An HTML element: el("td", {class: "id"}, "text", otherNode). */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  return append(node, children);
}

/** An SVG element, same shape as el(). */
export function svg(tag, props, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setProps(node, props);
  return append(node, children);
}

/** A table with a header row; each row is a list of cells (text or nodes). */
export function table(headers, rows, props) {
  return el(
    "table",
    props,
    el("thead", null, el("tr", null, headers.map((h) => el("th", null, h)))),
    el("tbody", null, rows.map((r) => el("tr", r.props ?? null, r.cells.map((c) => el("td", null, c))))),
  );
}

/** A button that asks once more before acting: the first click arms it, the second acts. */
export function confirmButton(label, action) {
  const button = el("button", { type: "button", class: "danger" }, label);
  let armed = false;
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = `Confirm ${label.toLowerCase()}`;
      return;
    }
    button.disabled = true;
    await action();
  });
  return button;
}

/** A button that disables itself while its action runs. */
export function actionButton(label, action, props) {
  const button = el("button", { type: "button", ...props }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** A time in ms as UTC text, e.g. 2026-12-02 07:16:04Z. */
export function isoTime(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A time cell that does not wrap. */
export function time(ms) {
  return ms ? el("span", { class: "time" }, isoTime(ms)) : "";
}

/** Free text from the API (a URL, a label, an error) that may wrap anywhere. */
export function text(value, cls = "text") {
  return value === null || value === undefined || value === "" ? "" : el("span", { class: cls }, String(value));
}

export function empty(text) {
  return el("p", { class: "empty" }, text);
}
