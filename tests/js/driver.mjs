// Drives the official @upstash/qstash JS SDK (pinned to 2.12.0 in package.json) for
// kafstash's Python test-suite (see tests/jssdk.py).
//
// Protocol: read ONE JSON command from stdin, run it, write ONE JSON line to stdout.
//
//   command  = {"op": <op>, "baseUrl": <kafstash URL>, "token": <bearer token>,
//               "args": {...}, "client"?: {<extra JSON-safe ClientConfig, e.g.
//               "headers", "retry": false, "enableTelemetry": true>}}
//   success  = {"ok": true, "result": <SDK return value, null for undefined>}
//   failure  = {"ok": false, "error": <message>, "name": <error class>, "status"?: <HTTP status>,
//               "cause"?: <message of error.cause, e.g. why fetch failed>}
//
// The exit code is 0 for both; it is non-zero only when the command itself is malformed
// (unknown op, bad JSON) or the driver crashes, and then the reason goes to stderr.
//
// Ops:
//   publish, publishJSON         client.publish(args) / client.publishJSON(args)
//   batch, batchJSON             client.batch(args.messages) / client.batchJSON(args.messages)
//   messages.get                 client.messages.get(args.messageId)
//   messages.cancel              client.messages.cancel(args.messageId | args.messageIds | args)
//   keys.get                     GET /v2/keys through the SDK's own HTTP client; 2.12.0 has no
//                                public signing-keys API on Client (only its dev-server probe
//                                reads /v2/keys, with a raw fetch)
//   keys.rotate                  POST /v2/keys/rotate, the same way
//   logs, events                 client.logs(args) / client.events(args) (GET /v2/events)
//   verify                       new Receiver({currentSigningKey, nextSigningKey}).verify(...)
//                                for each of args.items; result: [{valid, error?}]
//   seq                          runs args.steps (commands, baseUrl/token inherited) in order;
//                                result: one {ok, result} / {ok: false, ...} envelope per step
//   <a>.<b>[.<c>]                any other dotted path on the Client, e.g. "schedules.create",
//                                "dlq.listMessages", "queue.enqueue": intermediate methods (such
//                                as client.queue) are called with args.self; the final method
//                                is called with ...args.argv when given, else with args (or
//                                with nothing when args is empty).
//
// Everything is passed to the SDK as parsed from JSON, so no Date or function values.

import { Client, Receiver } from "@upstash/qstash";

// Never let the SDK switch to its dev server (it would ignore baseUrl/token and the keys).
delete process.env.QSTASH_DEV;

// The SDK logs through console.log in a few paths (dev server, workflow logger); keep stdout
// for our single JSON line.
console.log = console.info = console.debug = (...parts) => console.error(...parts);

class DriverError extends Error {}

const makeClient = (command) => {
  const { baseUrl, token } = command;
  if (typeof baseUrl !== "string" || typeof token !== "string") {
    throw new DriverError(`op ${command.op} needs string "baseUrl" and "token"`);
  }
  return new Client({
    enableTelemetry: false,
    devMode: false,
    ...command.client,
    baseUrl,
    token,
  });
};

const verifyItems = async (args) => {
  const receiver = new Receiver({
    currentSigningKey: args.currentSigningKey,
    nextSigningKey: args.nextSigningKey,
    devMode: false,
  });
  const results = [];
  for (const item of args.items ?? []) {
    // Real receivers read the request body as text, so verify the UTF-8 decoded string.
    const body = Buffer.from(item.bodyBase64 ?? "", "base64").toString("utf8");
    try {
      const valid = await receiver.verify({
        signature: item.signature,
        body,
        url: item.url ?? undefined,
        clockTolerance: item.clockTolerance ?? undefined,
        upstashRegion: item.upstashRegion ?? undefined,
      });
      results.push({ valid });
    } catch (error) {
      results.push({ valid: false, error: `${error?.name ?? "Error"}: ${error?.message ?? error}` });
    }
  }
  return results;
};

const callDotted = async (command) => {
  const args = command.args ?? {};
  const segments = command.op.split(".");
  let target = makeClient(command);
  for (const [index, segment] of segments.entries()) {
    if (segment.startsWith("_") || !(segment in Object(target))) {
      throw new DriverError(`unknown op: ${command.op}`);
    }
    const parent = target;
    const member = parent[segment];
    if (index === segments.length - 1) {
      if (typeof member !== "function") {
        throw new DriverError(`op ${command.op} is not a method`);
      }
      let argv = [];
      if (Array.isArray(args.argv)) {
        argv = args.argv;
      } else if (Object.keys(args).length > 0) {
        argv = [args];
      }
      return await member.apply(parent, argv);
    }
    target = typeof member === "function" ? member.call(parent, args.self) : member;
  }
  throw new DriverError(`unknown op: ${command.op}`);
};

const OPS = {
  publish: (client, args) => client.publish(args),
  publishJSON: (client, args) => client.publishJSON(args),
  batch: (client, args) => client.batch(args.messages),
  batchJSON: (client, args) => client.batchJSON(args.messages),
  "messages.get": (client, args) => client.messages.get(args.messageId),
  "messages.cancel": (client, args) =>
    client.messages.cancel(args.messageId ?? args.messageIds ?? args),
  "keys.get": (client) => client.http.request({ method: "GET", path: ["v2", "keys"] }),
  "keys.rotate": (client) =>
    client.http.request({ method: "POST", path: ["v2", "keys", "rotate"] }),
  logs: (client, args) => client.logs(args),
  events: (client, args) => client.events(args),
};

const run = async (command) => {
  if (command === null || typeof command !== "object" || typeof command.op !== "string") {
    throw new DriverError('a command is an object with a string "op"');
  }
  const args = command.args ?? {};
  if (command.op === "verify") {
    return await verifyItems(args);
  }
  if (command.op === "seq") {
    if (!Array.isArray(args.steps)) {
      throw new DriverError('op seq needs a list "args.steps"');
    }
    const results = [];
    for (const step of args.steps) {
      results.push(
        await envelope({
          baseUrl: command.baseUrl,
          token: command.token,
          client: command.client,
          ...step,
        }),
      );
    }
    return results;
  }
  const op = OPS[command.op];
  if (op !== undefined) {
    return await op(makeClient(command), args);
  }
  if (command.op.includes(".")) {
    return await callDotted(command);
  }
  throw new DriverError(`unknown op: ${command.op}`);
};

const envelope = async (command) => {
  try {
    const result = await run(command);
    return { ok: true, result: result === undefined ? null : result };
  } catch (error) {
    if (error instanceof DriverError) {
      throw error;
    }
    const failure = {
      ok: false,
      error: String(error?.message ?? error),
      name: error?.name ?? typeof error,
    };
    if (typeof error?.status === "number") {
      failure.status = error.status;
    }
    if (error?.cause !== undefined) {
      failure.cause = String(error.cause?.message ?? error.cause);
    }
    return failure;
  }
};

const readStdin = async () => {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
};

try {
  const command = JSON.parse(await readStdin());
  const line = `${JSON.stringify(await envelope(command))}\n`;
  process.stdout.write(line, () => process.exit(0));
} catch (error) {
  process.stderr.write(`driver.mjs: ${error?.stack ?? error}\n`);
  process.exit(2);
}
