#!/usr/bin/env node
// One official client joins a room, then sends --count messages as fast as it can (one
// synchronous loop of room.send) and reports how the room left it; prints ONE JSON object.
//
//   node flood.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://127.0.0.1:PORT
//                  [--room ticker] [--type spam] [--count 10000] [--timeout 15000]
import { loadClient, parseArgs, withTimeout, describeError, captureConsole, emitAndExit } from "./lib_common.mjs";

let args;
try {
  args = parseArgs(process.argv.slice(2));
  if (!args.client || !args.endpoint) throw new Error("--client and --endpoint are required");
} catch (e) {
  emitAndExit({ error: e.message }, 1);
  await new Promise(() => {});
}
const COUNT = Number(args.count ?? 10000);
const TIMEOUT = Number(args.timeout ?? 15000);
const captured = captureConsole(() => "flood");
const out = { client: args.client, joined: false, sent: 0, leaveCode: null, leaveReason: null,
              warnings: captured.warnings };

try {
  const lib = await loadClient(args.client);
  const client = new lib.Client(args.endpoint);
  const room = await withTimeout(client.joinOrCreate(args.room ?? "ticker", {}), TIMEOUT, "join");
  room.onMessage("*", () => {});
  const left = new Promise((resolve) => room.onLeave((code, reason) => resolve([code, reason])));
  await withTimeout(new Promise((resolve) => room.onStateChange.once(resolve)), TIMEOUT, "first state");
  out.joined = true;
  for (let i = 0; i < COUNT; i++) {
    room.send(args.type ?? "spam", i);
    out.sent++;
  }
  const [code, reason] = await withTimeout(left, TIMEOUT, "leave");
  out.leaveCode = code;
  out.leaveReason = reason ?? null;
  emitAndExit(out, 0);
} catch (e) {
  out.error = describeError(e);
  emitAndExit(out, 0);
}
