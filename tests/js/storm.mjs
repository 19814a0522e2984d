#!/usr/bin/env node
// A join storm with an official client, for the storms under faults (tests/test_storms_js.py):
// N clients joinOrCreate at once; each that joined sends "echo" with its sessionId and waits for
// it to come back. Prints ONE JSON line with what happened, then keeps the seats and reads
// commands from stdin, one a line:
//   check   -> every room not closed echoes once more; one JSON line {closed: [{index, roomId,
//              code}], echoed, notEchoed}: closed are the rooms whose socket the server closed
//              since they joined (e.g. their worker was killed)
//   leave   -> leaves (consented) every room not closed, prints {"left": n, "leaveErrors": [...]}
//              and exits.
//
//   node storm.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://127.0.0.1:PORT
//                  [--n 300] [--room table] [--timeout 60000] [--deadline 150000]
//
// First line: {ok, errors: [{index, name, class, code, message}], rooms: {roomId: seats},
// echoed, notEchoed: [{index, roomId, message}], warnings, info}. A client that joined but whose
// echo did not come back within --timeout, or whose room closed first, is counted in ok and
// listed in notEchoed.
import { createInterface } from "node:readline";
import {
  loadClient, parseArgs, withTimeout, describeError, captureConsole, emitAndExit,
} from "./lib_common.mjs";

let args;
try {
  args = parseArgs(process.argv.slice(2), []);
  if (!args.client) throw new Error("--client is required (colyseusjs|sdk17|sdk18)");
  if (!args.endpoint) throw new Error("--endpoint is required (e.g. ws://127.0.0.1:2567)");
} catch (e) {
  emitAndExit({ error: e.message }, 1);
  await new Promise(() => {});
}

const N = Number(args.n ?? 300);
const ROOM = args.room ?? "table";
const TIMEOUT = Number(args.timeout ?? 60000);
const DEADLINE = Number(args.deadline ?? 150000);

let phase = "join";
const captured = captureConsole(() => phase);
const deadline = setTimeout(() => emitAndExit({ error: `hard deadline of ${DEADLINE} ms exceeded (phase ${phase})` }, 1), DEADLINE);
process.on("unhandledRejection", (e) => captured.warnings.push({ step: phase, level: "unhandledRejection", text: describeError(e).message }));

let lib;
try {
  lib = await loadClient(args.client);
} catch (e) {
  emitAndExit({ error: `cannot load client: ${e.message}` }, 1);
  await new Promise(() => {});
}

const closed = [];
let leaving = false;

async function joinAndEcho(i) {
  const client = new lib.Client(args.endpoint);
  let room;
  try {
    room = await withTimeout(client.joinOrCreate(ROOM, { name: `js${i}` }), TIMEOUT, `joinOrCreate #${i}`);
  } catch (e) {
    return { i, error: describeError(e) };
  }
  room.onMessage("*", () => {});
  room.onMessage("echo", (message) => room.echoWaiter?.(message));
  room.onLeave((code) => {
    if (!leaving) closed.push({ index: i, roomId: room.roomId, code });
    room.echoWaiter?.({ closed: code }); // an echo it waits for will not come
  });
  return echo(i, room);
}

async function echo(i, room) {
  const echoed = new Promise((resolve) => { room.echoWaiter = resolve; });
  try {
    room.send("echo", room.sessionId);
    const back = await withTimeout(echoed, TIMEOUT, `echo #${i}`);
    return { i, room, echoed: back === room.sessionId, message: JSON.stringify(back) };
  } catch (e) {
    return { i, room, echoed: false, message: describeError(e).message };
  }
}

const results = await Promise.all(Array.from({ length: N }, (_, i) => joinAndEcho(i)));
const joined = results.filter((r) => r.room);
const out = {
  client: args.client, clientVersion: lib.version, n: N, ok: joined.length,
  errors: results.filter((r) => r.error).map((r) => ({ index: r.i, ...r.error })),
  rooms: {}, echoed: joined.filter((r) => r.echoed).length,
  notEchoed: joined.filter((r) => !r.echoed).map((r) => ({ index: r.i, roomId: r.room.roomId, message: String(r.message) })),
  warnings: captured.warnings, info: captured.info,
};
for (const r of joined) out.rooms[r.room.roomId] = (out.rooms[r.room.roomId] ?? 0) + 1;
process.stdout.write(JSON.stringify(out) + "\n");

phase = "hold";
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === "check") {
    const gone = new Set(closed.map((c) => c.index));
    const checks = await Promise.all(joined.filter((r) => !gone.has(r.i)).map((r) => echo(r.i, r.room)));
    process.stdout.write(JSON.stringify({
      closed, echoed: checks.filter((c) => c.echoed).length,
      notEchoed: checks.filter((c) => !c.echoed).map((c) => ({ index: c.i, roomId: c.room.roomId, message: String(c.message) })),
    }) + "\n");
  } else if (line.trim() === "leave") {
    break;
  }
}
phase = "leave";
leaving = true;
const gone = new Set(closed.map((c) => c.index));
const staying = joined.filter((r) => !gone.has(r.i));
const leaveErrors = [];
await Promise.all(staying.map(async (r) => {
  try {
    await withTimeout(r.room.leave(true), TIMEOUT, "leave()");
  } catch (e) {
    leaveErrors.push(describeError(e).message);
  }
}));
clearTimeout(deadline);
emitAndExit({ left: staying.length - leaveErrors.length, leaveErrors }, 0);
