// Workflow endpoints of the official @upstash/workflow JS SDK (pinned to 1.3.3 in package.json),
// served over node:http for kafstash's Python test-suite (see tests/workflow_sdk.py).
//
// Usage: node server.mjs [port]   (port 0 or none: any free port)
// Env:   QSTASH_URL, QSTASH_TOKEN, QSTASH_CURRENT_SIGNING_KEY, QSTASH_NEXT_SIGNING_KEY (so every
//        request to a workflow route must be signed by kafstash), WF_RECORDS (the records file).
// Prints "READY <port>" on stdout once it listens; everything else goes to stderr.
//
// Every step body appends one JSON line to WF_RECORDS:
//   {"run": <workflowRunId>, "workflow": <route name>, "step": <step name>, "event": "step",
//    "t": <ms since epoch>, ...values}
// Code outside step bodies runs again on every delivery (the SDK replays the route function),
// so it records nothing; a record per (run, step) therefore counts step executions.
// The failure functions record "event": "failure"; the plain routes /echo and /fail500 record
// "event": "echo" / "fail500" with what they received. Every request to a workflow route is
// recorded as "event": "request" (headers, body, and the SDK's answer), to show what kafstash
// delivered when a test fails.
//
// Routes:
//   POST /wf/<name>      the workflows below, one `serve` each
//   POST /many/<id>      serveMany: "parent" invokes "child"
//   ANY  /echo           200, JSON of the request it got, header x-echo-reply: yes
//   ANY  /fail500        500 "third party down"
//   POST /toggle         body {"key": ..., "fail": bool}: whether the "flaky" step fails for key
//   POST /failure-sink   a failureUrl: records "event": "failure-url" with the headers, the body
//                        and whether its Upstash-Signature verified (the qstash Receiver)

import { appendFileSync } from "node:fs";
import { createServer } from "node:http";
import { setTimeout as sleepMs } from "node:timers/promises";
import { Receiver } from "@upstash/qstash";
import { serve, WorkflowNonRetryableError, WorkflowRetryAfterError } from "@upstash/workflow";
import { createWorkflow, serveMany } from "@upstash/workflow/cloudflare";

// The SDK would switch to Upstash's dev server or to multi-region routing; tests pin both off.
delete process.env.QSTASH_DEV;
delete process.env.QSTASH_REGION;
console.log = console.info = console.debug = (...parts) => console.error(...parts);

const RECORDS = process.env.WF_RECORDS;
if (!RECORDS) {
  console.error("server.mjs: WF_RECORDS is not set");
  process.exit(2);
}

const write = (entry) => {
  appendFileSync(RECORDS, `${JSON.stringify({ t: Date.now(), ...entry })}\n`);
};

const recorder = (workflow) => (context, step, values = {}) =>
  write({ run: context.workflowRunId, workflow, step, event: "step", ...values });

// Executions of the "limited" step per run: its first one asks to be retried later.
const limitedAttempts = new Map();

// Whether the "flaky" step of a key fails; a test flips it before dlq.resume / dlq.restart.
const failing = new Map();

const failureRecorder = (workflow) => async ({
  context,
  failStatus,
  failResponse,
  failHeaders,
}) => {
  write({
    run: context.workflowRunId,
    workflow,
    step: "failureFunction",
    event: "failure",
    failStatus,
    failResponse,
    failHeaders,
    requestPayload: context.requestPayload ?? null,
    url: context.url,
  });
  return `handled ${failResponse}`;
};

const ROUTES = {
  sequential: () =>
    serve(async (context) => {
      const rec = recorder("sequential");
      const start = context.requestPayload.start;
      const a = await context.run("s1", () => {
        rec(context, "s1", { input: start });
        return { v: start + 1 };
      });
      const b = await context.run("s2", () => {
        rec(context, "s2", { input: a });
        return a.v * 2;
      });
      const c = await context.run("s3", () => {
        rec(context, "s3", { input: b });
        return `${b}!`;
      });
      return { final: c, payload: context.requestPayload };
    }),

  sleep: () =>
    serve(async (context) => {
      const rec = recorder("sleep");
      await context.run("before", () => rec(context, "before"));
      await context.sleep("pause", 2);
      await context.run("after-sleep", () => rec(context, "after-sleep"));
      // Chosen inside a step: the route replays, and the target must stay the same each time.
      const until = await context.run("pick-until", () => {
        const target = Math.floor(Date.now() / 1000) + 2;
        rec(context, "pick-until", { until: target });
        return target;
      });
      await context.sleepUntil("until", until);
      await context.run("after-until", () => rec(context, "after-until", { until }));
      return "slept";
    }),

  parallel: () =>
    serve(async (context) => {
      const rec = recorder("parallel");
      const [x, y] = await Promise.all([
        context.run("p1", () => {
          rec(context, "p1");
          return 10;
        }),
        context.run("p2", () => {
          rec(context, "p2");
          return 32;
        }),
      ]);
      const sum = await context.run("after", () => {
        rec(context, "after", { x, y });
        return x + y;
      });
      return { sum };
    }),

  call: () =>
    serve(async (context) => {
      const rec = recorder("call");
      const { url, retries, retryDelay } = context.requestPayload;
      const response = await context.call("c1", {
        url,
        method: "POST",
        body: JSON.stringify({ k: 1 }),
        headers: { "x-echo": "hi", "content-type": "application/json" },
        ...(retries === undefined ? {} : { retries }),
        ...(retryDelay === undefined ? {} : { retryDelay }),
      });
      await context.run("after", () =>
        rec(context, "after", {
          status: response.status,
          body: response.body,
          header: response.header,
        }),
      );
      return response.status;
    }),

  wait: () =>
    serve(async (context) => {
      const rec = recorder("wait");
      const { eventId, timeout } = context.requestPayload;
      await context.run("before", () => rec(context, "before"));
      const got = await context.waitForEvent("w", eventId, { timeout: timeout ?? "60s" });
      await context.run("after", () =>
        rec(context, "after", { eventData: got.eventData ?? null, timeout: got.timeout }),
      );
      return got.timeout ? "timed out" : "notified";
    }),

  fail: () =>
    serve(
      async (context) => {
        const rec = recorder("fail");
        await context.run("ok", () => rec(context, "ok"));
        await context.run("boom", () => {
          rec(context, "boom");
          throw new Error(`boom ${context.requestPayload.tag}`);
        });
        await context.run("never", () => rec(context, "never"));
      },
      { failureFunction: failureRecorder("fail") },
    ),

  // As "fail", but its failure function throws after recording: the failure callback fails.
  "fail-throws": () =>
    serve(
      async (context) => {
        const rec = recorder("fail-throws");
        await context.run("boom", () => {
          rec(context, "boom");
          throw new Error(`boom ${context.requestPayload.tag}`);
        });
      },
      {
        failureFunction: async (args) => {
          await failureRecorder("fail-throws")(args);
          throw new Error("the failure function failed too");
        },
      },
    ),

  nonretryable: () =>
    serve(
      async (context) => {
        const rec = recorder("nonretryable");
        await context.run("stop", () => {
          rec(context, "stop");
          throw new WorkflowNonRetryableError(`nope ${context.requestPayload.tag}`);
        });
        await context.run("never", () => rec(context, "never"));
      },
      { failureFunction: failureRecorder("nonretryable") },
    ),

  // Fails at its second step and has no failure function: runs of it name a failureUrl.
  "fail-url": () =>
    serve(async (context) => {
      const rec = recorder("fail-url");
      await context.run("ok", () => rec(context, "ok"));
      await context.run("boom", () => {
        rec(context, "boom");
        throw new Error(`boom ${context.requestPayload.tag}`);
      });
    }),

  // The first execution of "limited" throws WorkflowRetryAfterError (429 + Retry-After:
  // payload.retryAfter seconds); the next one succeeds.
  "retry-after": () =>
    serve(async (context) => {
      const rec = recorder("retry-after");
      const attempt = await context.run("limited", () => {
        const n = (limitedAttempts.get(context.workflowRunId) ?? 0) + 1;
        limitedAttempts.set(context.workflowRunId, n);
        rec(context, "limited", { attempt: n });
        if (n === 1) {
          throw new WorkflowRetryAfterError("rate limited", context.requestPayload.retryAfter);
        }
        return n;
      });
      return { attempt };
    }),

  // createWebhook, record its URL (the test calls it), waitForWebhook, record the request.
  webhook: () =>
    serve(async (context) => {
      const rec = recorder("webhook");
      const hook = await context.createWebhook("hook");
      await context.run("announce", () =>
        rec(context, "announce", { webhookUrl: hook.webhookUrl, eventId: hook.eventId }),
      );
      const got = await context.waitForWebhook("wait-hook", hook, "60s");
      return await context.run("after", async () => {
        const values = got.timeout
          ? { timeout: true }
          : {
              timeout: false,
              method: got.request.method,
              url: got.request.url,
              marker: got.request.headers.get("x-marker"),
              body: await got.request.text(),
            };
        rec(context, "after", values);
        return values;
      });
    }),

  // Fails at "flaky" until a test flips /toggle, for dlq.resume and dlq.restart.
  flaky: () =>
    serve(
      async (context) => {
        const rec = recorder("flaky");
        const { key } = context.requestPayload;
        await context.run("ok", () => rec(context, "ok"));
        await context.run("flaky", () => {
          const fails = failing.get(key) ?? true;
          rec(context, "flaky", { fails });
          if (fails) {
            throw new Error(`flaky ${key}`);
          }
          return "recovered";
        });
        await context.run("after", () => rec(context, "after"));
        return "recovered";
      },
      { failureFunction: failureRecorder("flaky") },
    ),

  "long-sleep": () =>
    serve(async (context) => {
      const rec = recorder("long-sleep");
      await context.run("before", () => rec(context, "before"));
      await context.sleep("long", 10);
      await context.run("after", () => rec(context, "after"));
    }),

  "self-cancel": () =>
    serve(async (context) => {
      const rec = recorder("self-cancel");
      await context.run("before", () => rec(context, "before"));
      await context.cancel();
      await context.run("after", () => rec(context, "after"));
    }),

  // Three steps that each hold for holdMs, so a kill -9 lands mid-run (tests/faults).
  "slow-steps": () =>
    serve(async (context) => {
      const rec = recorder("slow-steps");
      const { start, holdMs } = context.requestPayload;
      let value = start;
      for (const name of ["s1", "s2", "s3"]) {
        const input = value;
        value = await context.run(name, async () => {
          rec(context, name, { input });
          await sleepMs(holdMs);
          return input + 1;
        });
      }
      return value;
    }),

  // Holds its step for a while, so two runs that overlap show it (flow-control parallelism).
  slow: () =>
    serve(async (context) => {
      const rec = recorder("slow");
      await context.run("hold", async () => {
        rec(context, "hold", { phase: "start" });
        await sleepMs(1500);
        rec(context, "hold-end", { phase: "end" });
      });
      return "held";
    }),
};

const child = createWorkflow(async (context) => {
  const rec = recorder("child");
  const value = await context.run("child-step", () => {
    rec(context, "child-step", { input: context.requestPayload });
    return `child got ${context.requestPayload.x}`;
  });
  return { value };
});

const parent = createWorkflow(async (context) => {
  const rec = recorder("parent");
  const result = await context.invoke("call-child", {
    workflow: child,
    body: { x: context.requestPayload.x },
  });
  await context.run("after", () =>
    rec(context, "after", {
      body: result.body ?? null,
      isFailed: result.isFailed ?? null,
      isCanceled: result.isCanceled ?? null,
    }),
  );
  return result.body;
});

const readBody = async (req) => {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
};

// Framing headers describe node's connection, not the Request we rebuild from the whole body.
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "content-length"]);

const toRequest = (req, body, origin) => {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (HOP_BY_HOP.has(name)) continue;
    for (const one of Array.isArray(value) ? value : [value]) {
      headers.append(name, one);
    }
  }
  const method = req.method ?? "GET";
  return new Request(new URL(req.url ?? "/", origin), {
    method,
    headers,
    body: method === "GET" || method === "HEAD" ? undefined : body,
  });
};

const send = async (res, response) => {
  const headers = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  res.writeHead(response.status, headers);
  res.end(Buffer.from(await response.arrayBuffer()));
};

const sendJson = (res, status, value, extra = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...extra });
  res.end(JSON.stringify(value));
};

const plainRoute = (req, body) => ({
  method: req.method,
  path: req.url,
  headers: req.headers,
  body: body.toString("utf8"),
});

const main = async () => {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
  let handlers;
  let many;
  let origin;

  const server = createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      const { pathname } = new URL(req.url ?? "/", "http://x");
      if (pathname === "/echo") {
        write({ event: "echo", ...plainRoute(req, body) });
        sendJson(res, 200, plainRoute(req, body), { "x-echo-reply": "yes" });
        return;
      }
      if (pathname === "/fail500") {
        write({ event: "fail500", ...plainRoute(req, body) });
        sendJson(res, 500, { error: "third party down" });
        return;
      }
      if (pathname === "/failure-sink") {
        const receiver = new Receiver({
          currentSigningKey: process.env.QSTASH_CURRENT_SIGNING_KEY,
          nextSigningKey: process.env.QSTASH_NEXT_SIGNING_KEY,
        });
        let verified;
        try {
          verified = await receiver.verify({
            signature: req.headers["upstash-signature"] ?? "",
            body: body.toString("utf8"),
            url: `${origin}${req.url}`,
          });
        } catch (error) {
          verified = `${error?.name}: ${error?.message}`;
        }
        write({ event: "failure-url", verified, ...plainRoute(req, body) });
        sendJson(res, 200, { received: true });
        return;
      }
      if (pathname === "/toggle") {
        const { key, fail } = JSON.parse(body.toString("utf8"));
        failing.set(key, Boolean(fail));
        sendJson(res, 200, { key, fail: Boolean(fail) });
        return;
      }
      const [, kind, name] = pathname.split("/");
      let response;
      if (kind === "wf" && handlers[name] !== undefined) {
        response = await handlers[name].handler(toRequest(req, body, origin));
      } else if (kind === "many") {
        response = await many.fetch(toRequest(req, body, origin), process.env);
      }
      if (response !== undefined) {
        const answer = await response.clone().text();
        write({
          event: "request",
          ...plainRoute(req, body),
          status: response.status,
          answer: answer.slice(0, 2000),
        });
        await send(res, response);
        return;
      }
      sendJson(res, 404, { error: `no route ${pathname}` });
    } catch (error) {
      console.error("server.mjs:", error?.stack ?? error);
      if (!res.headersSent) {
        sendJson(res, 500, { error: String(error?.message ?? error) });
      } else {
        res.end();
      }
    }
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  const actual = server.address().port;
  origin = `http://127.0.0.1:${actual}`;
  // Read by serve() when each handler is built, so build them only now that the port is known.
  process.env.UPSTASH_WORKFLOW_URL = origin;
  handlers = Object.fromEntries(Object.entries(ROUTES).map(([name, make]) => [name, make()]));
  many = serveMany({ parent, child });
  process.stdout.write(`READY ${actual}\n`);
};

process.on("SIGTERM", () => process.exit(0));
await main();
