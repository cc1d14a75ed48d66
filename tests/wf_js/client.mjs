// Drives the workflow Client of the official @upstash/workflow JS SDK (pinned to 1.3.3 in
// package.json) for kafstash's Python test-suite (see tests/workflow_sdk.py).
//
// The protocol is tests/js/driver.mjs's: read ONE JSON command from stdin, write ONE JSON line.
//
//   command  = {"op": <op>, "baseUrl": <kafstash URL>, "token": <bearer token>, "args": {...}}
//   success  = {"ok": true, "result": <SDK return value, null for undefined>}
//   failure  = {"ok": false, "error": <message>, "name": <error class>, "status"?: <HTTP status>,
//               "cause"?: <message of error.cause>}
//
// Ops, each called with ...args.argv when given, else with args (nothing when args is empty):
//   trigger, cancel, notify, getWaiters, logs,
//   dlq.list, dlq.restart, dlq.resume, dlq.delete, dlq.retryFailureFunction
//   seq    runs args.steps (commands, baseUrl/token inherited) in order; one envelope per step

import { Client } from "@upstash/workflow";

delete process.env.QSTASH_DEV;
delete process.env.QSTASH_REGION;
console.log = console.info = console.debug = (...parts) => console.error(...parts);

class DriverError extends Error {}

const OPS = new Set([
  "trigger",
  "cancel",
  "notify",
  "getWaiters",
  "logs",
  "dlq.list",
  "dlq.restart",
  "dlq.resume",
  "dlq.delete",
  "dlq.retryFailureFunction",
]);

const makeClient = ({ op, baseUrl, token }) => {
  if (typeof baseUrl !== "string" || typeof token !== "string") {
    throw new DriverError(`op ${op} needs string "baseUrl" and "token"`);
  }
  // retry off: a failed call should fail the test, not be hidden behind the SDK's backoff.
  return new Client({ baseUrl, token, retry: false });
};

const call = async (command) => {
  const args = command.args ?? {};
  if (!OPS.has(command.op)) {
    throw new DriverError(`unknown op: ${command.op}`);
  }
  const client = makeClient(command);
  const [first, second] = command.op.split(".");
  const parent = second === undefined ? client : client[first];
  const method = parent[second ?? first];
  let argv = [];
  if (Array.isArray(args.argv)) {
    argv = args.argv;
  } else if (Object.keys(args).length > 0) {
    argv = [args];
  }
  return await method.apply(parent, argv);
};

const run = async (command) => {
  if (command === null || typeof command !== "object" || typeof command.op !== "string") {
    throw new DriverError('a command is an object with a string "op"');
  }
  if (command.op !== "seq") {
    return await call(command);
  }
  const steps = command.args?.steps;
  if (!Array.isArray(steps)) {
    throw new DriverError('op seq needs a list "args.steps"');
  }
  const results = [];
  for (const step of steps) {
    results.push(await envelope({ baseUrl: command.baseUrl, token: command.token, ...step }));
  }
  return results;
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
  process.stderr.write(`client.mjs: ${error?.stack ?? error}\n`);
  process.exit(2);
}
