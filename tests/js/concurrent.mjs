#!/usr/bin/env node
// N clients join at once (Promise.all), then all leave consented; prints ONE JSON object.
//
//   node concurrent.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://127.0.0.1:PORT
//                       [--n 100] [--room echo] [--method joinOrCreate|create|join|joinById]
//                       [--options '{"name":"c"}'] [--timeout 15000] [--deadline 50000] [--pretty]
//                       [--hold]
//
// --room is the room name (or the roomId for --method joinById). Each client gets the options plus
// {name: "c<index>"} unless --options sets a name. Exit 0 = ran to the end; exit 1 = {"error": ...}.
// --hold: once joined, print the line "held" and keep the seats until a line arrives on stdin.
import {
  loadClient, parseArgs, withTimeout, describeError, captureConsole, emitAndExit, sleep,
} from "./lib_common.mjs";

const METHODS = ["joinOrCreate", "create", "join", "joinById"];

let args;
let baseOptions = {};
try {
  args = parseArgs(process.argv.slice(2), ["pretty", "hold"]);
  if (!args.client) throw new Error("--client is required (colyseusjs|sdk17|sdk18)");
  if (!args.endpoint) throw new Error("--endpoint is required (e.g. ws://127.0.0.1:2567)");
  if (args.method && !METHODS.includes(args.method)) throw new Error(`--method must be one of ${METHODS.join(", ")}`);
  if (args.options) baseOptions = JSON.parse(args.options);
} catch (e) {
  emitAndExit({ error: e.message }, 1);
  await new Promise(() => {});
}

const N = Number(args.n ?? 100);
const ROOM = args.room ?? "echo";
const METHOD = args.method ?? "joinOrCreate";
const TIMEOUT = Number(args.timeout ?? 15000);
const DEADLINE = Number(args.deadline ?? 50000);

let phase = "join";
const captured = captureConsole(() => phase);
const startedAt = Date.now();
const out = {
  client: args.client, clientVersion: null, endpoint: args.endpoint, n: N, room: ROOM, method: METHOD,
  ok: 0, errors: [], rooms: {}, roomCount: 0, roomSizes: [], sessionIdsUnique: null, welcomes: 0,
  leaveCodes: {}, warnings: captured.warnings, info: captured.info,
};

function finish(extra, code) {
  out.elapsedMs = Date.now() - startedAt;
  Object.assign(out, extra);
  emitAndExit(out, code);
}

const deadline = setTimeout(() => finish({ error: `hard deadline of ${DEADLINE} ms exceeded (phase ${phase})` }, 1), DEADLINE);
process.on("unhandledRejection", (e) => captured.warnings.push({ step: phase, level: "unhandledRejection", text: describeError(e).message }));

let lib;
try {
  lib = await loadClient(args.client);
} catch (e) {
  finish({ error: `cannot load client: ${e.message}` }, 1);
  await new Promise(() => {});
}
out.clientVersion = lib.version;

function newClient(welcomes) {
  const client = new lib.Client(args.endpoint);
  const orig = client.createRoom;
  client.createRoom = function (...a) {
    const room = orig.apply(this, a);
    // handlers before the socket opens: nothing is missed and no "onMessage() not registered" warning
    room.onMessage("welcome", () => welcomes.push(room));
    room.onMessage("*", () => {});
    return room;
  };
  return client;
}

const welcomes = [];
const results = await Promise.all(Array.from({ length: N }, async (_, i) => {
  const options = { name: `c${i}`, ...baseOptions };
  try {
    const room = await withTimeout(newClient(welcomes)[METHOD](ROOM, options), TIMEOUT, `${METHOD}(${ROOM}) #${i}`);
    return { i, room, roomId: room.roomId, sessionId: room.sessionId };
  } catch (e) {
    return { i, error: describeError(e) };
  }
}));

const joined = results.filter((r) => r.room);
out.ok = joined.length;
out.errors = results.filter((r) => r.error).map((r) => ({ index: r.i, ...r.error }));
for (const r of joined) out.rooms[r.roomId] = (out.rooms[r.roomId] ?? 0) + 1;
out.roomCount = Object.keys(out.rooms).length;
out.roomSizes = Object.values(out.rooms).sort((a, b) => b - a);
out.sessionIdsUnique = new Set(joined.map((r) => r.sessionId)).size === joined.length;

// the welcome each joined client should get right after the join
phase = "welcome";
const waitUntil = Date.now() + 3000;
while (new Set(welcomes).size < joined.length && Date.now() < waitUntil) await sleep(20);
out.welcomes = new Set(welcomes).size;

if (args.hold) {
  phase = "hold";
  process.stdout.write("held\n");
  await new Promise((resolve) => process.stdin.once("data", resolve));
}

phase = "leave";
const codes = await Promise.all(joined.map(async (r) => {
  try {
    return await withTimeout(r.room.leave(true), TIMEOUT, "leave()");
  } catch (e) {
    return `error: ${describeError(e).message}`;
  }
}));
for (const c of codes) out.leaveCodes[c] = (out.leaveCodes[c] ?? 0) + 1;

clearTimeout(deadline);
finish({}, 0);
