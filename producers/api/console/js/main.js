// The console's shell: log in with a token, route by the URL's hash, show errors in one place.

import { ApiError, Unauthorized, clearToken, get, setToken, token } from "./api.js";
import { render as charts } from "./views/charts.js";
import { render as dlq } from "./views/dlq.js";
import { render as eventLog } from "./views/events.js";
import { render as messages, renderOne as message } from "./views/messages.js";
import { renderGroups as groups, renderQueues as queues } from "./views/resources.js";
import { render as schedules } from "./views/schedules.js";

const VIEWS = { messages, message, schedules, queues, groups, dlq, events: eventLog, charts };

const $ = (id) => document.getElementById(id);

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message ?? "";
  $("token").focus();
}

function notify(text, isError = false) {
  const status = $("status");
  status.textContent = text ?? "";
  status.className = isError ? "error" : "";
}

async function guard(work) {
  try {
    return await work();
  } catch (exc) {
    if (exc instanceof Unauthorized) {
      showLogin(`Token rejected: ${exc.message}`);
    } else if (exc instanceof ApiError) {
      notify(`Error ${exc.status}: ${exc.message}`, true);
    } else {
      notify(String(exc), true);
    }
    return undefined;
  }
}

function route() {
  const [name, search] = (window.location.hash.slice(1) || "messages").split("?");
  return { name: VIEWS[name] ? name : "messages", params: new URLSearchParams(search ?? "") };
}

let rendering = 0;

async function show() {
  if (!token()) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  const { name, params } = route();
  for (const a of $("nav").querySelectorAll("a")) {
    a.classList.toggle("current", a.getAttribute("href") === `#${name}`);
  }
  const ticket = ++rendering;
  const ctx = {
    params,
    guard,
    // Run an API action, say what happened, and draw the view again with the new state.
    act: (work, done) =>
      guard(async () => {
        const said = await work();
        notify(typeof said === "string" ? said : done);
        await show();
      }),
  };
  const node = await guard(() => VIEWS[name](ctx));
  if (node && ticket === rendering) {
    $("view").replaceChildren(node, refreshButton());
    document.body.dataset.view = name;
  }
}

function refreshButton() {
  const button = document.createElement("button");
  button.type = "button";
  button.id = "refresh";
  button.textContent = "Refresh";
  button.addEventListener("click", () => {
    notify("");
    show();
  });
  return button;
}

async function login(ev) {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  setToken(value);
  // Any authenticated call says whether the token is good; this one is cheap and read-only.
  const ok = await guard(async () => {
    await get("/v2/events", { count: 1 });
    return true;
  });
  if (ok) {
    $("token").value = "";
    notify("");
    show();
  }
}

function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => {
    clearToken();
    $("view").replaceChildren();
    showLogin();
  });
  window.addEventListener("hashchange", () => {
    notify("");
    show();
  });
  show();
}

start();
