#!/usr/bin/env node
// Bot for the official load tester, @colyseus/loadtest 0.17.8 (docs/protocol.md): every bot joins the
// room ("echo" by default, or --roomId) and sends "echo" {bot, seq} every 200 ms.
//
//   node loadtest_bot.mjs --endpoint ws://127.0.0.1:PORT --room echo --numClients 20 \
//        [--roomId ID] [--delay ms] [--retryFailed ms] [--output loadtest.log] [--stats stats.json] [--joinTimeout ms]
//
// All options except --stats and --joinTimeout (default 10000; a join that has not settled by then counts as a
// failed connection) are the load tester's own. It draws a blessed UI on stdout and never ends by itself:
// stop it with SIGTERM (or SIGINT); it then writes its summary to --output and exits 0. See README.md for the
// headless recipe.
//
// --stats FILE (this bot's own option): JSON counters written every second and on exit, so tests need not parse the
// UI or the log: {joined, joinFailed, joinErrors, echoSent, echoReceived, echoMismatched, otherMessages,
// stateChanges, roomErrors, leaves: {code: n}, rooms: {roomId: n}, serializerIds: {id: n}, sdkVersion, updatedAt}.
import fs from "node:fs";
import { createRequire } from "node:module";
import { cli } from "@colyseus/loadtest";
// Must be the SAME @colyseus/sdk module instance the load tester patches (its dependency, hoisted to
// node_modules/@colyseus/sdk = 0.17.43); importing "sdk17"/"sdk18" here would work but the UI would count 0 clients.
import { Client } from "@colyseus/sdk";

const require = createRequire(import.meta.url);
const sdkVersion = require("@colyseus/sdk/package.json").version;

function argValue(name) {
  const argv = process.argv;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return undefined;
}

const statsFile = argValue("stats");
const JOIN_TIMEOUT = Number(argValue("joinTimeout") ?? 10000);
const stats = {
  sdkVersion, joined: 0, joinFailed: 0, joinErrors: [], echoSent: 0, echoReceived: 0, echoMismatched: 0,
  otherMessages: 0, stateChanges: 0, roomErrors: [], leaves: {}, rooms: {}, serializerIds: {}, updatedAt: null,
};
function writeStats() {
  if (!statsFile) return;
  stats.updatedAt = new Date().toISOString();
  try { fs.writeFileSync(statsFile, JSON.stringify(stats, null, 2) + "\n"); } catch { /* best effort */ }
}
if (statsFile) {
  setInterval(writeStats, 1000).unref();
  // the load tester calls process.exit() after writing its summary; 'exit' handlers may only do sync work
  process.on("exit", writeStats);
}

// On SIGTERM/SIGINT the load tester writes its summary and calls process.exit(): without this, every bot's socket
// just dies, and a server that holds seats for reconnection (the reference rooms do, 20 s) keeps stale players in
// joinable rooms. Send a consented LEAVE_ROOM for every open room first (the frame is written synchronously, before
// the load tester's asynchronous summary write lets the process exit).
const openRooms = new Set();
const leaveAll = () => {
  stats.leaveRequestedOnExit = 0;
  for (const room of openRooms) {
    try { room.leave(true); stats.leaveRequestedOnExit++; } catch { /* socket already gone */ }
  }
  writeStats();
};

cli(async (options) => {
  const client = new Client(options.endpoint);
  const name = `bot${options.clientId}`;
  let room;
  let joinTimer;
  try {
    const joining = options.roomId
      ? client.joinById(options.roomId, { name })
      : client.joinOrCreate(options.roomName, { name });
    // A join can hang forever (e.g. this 0.17 SDK against a 0.18 server throws inside its socket handler and never
    // settles the promise); the load tester joins bots one after another, so one hang would stall all the others.
    room = await Promise.race([joining, new Promise((_, reject) => {
      joinTimer = setTimeout(() => reject(new Error(`join timed out after ${JOIN_TIMEOUT} ms`)), JOIN_TIMEOUT);
    })]);
  } catch (e) {
    stats.joinFailed++;
    if (stats.joinErrors.length < 20) stats.joinErrors.push({ bot: options.clientId, code: e?.code ?? null, message: e?.message ?? String(e) });
    throw e; // the load tester counts it as a failed connection
  } finally {
    clearTimeout(joinTimer);
  }
  stats.joined++;
  openRooms.add(room);
  stats.rooms[room.roomId] = (stats.rooms[room.roomId] ?? 0) + 1;
  stats.serializerIds[room.serializerId] = (stats.serializerIds[room.serializerId] ?? 0) + 1;

  let seq = 0;
  const expected = new Set();
  room.onMessage("echo", (msg) => {
    if (msg && msg.bot === options.clientId && expected.delete(msg.seq)) stats.echoReceived++;
    else stats.echoMismatched++;
  });
  room.onMessage("*", () => { stats.otherMessages++; });
  room.onStateChange(() => { stats.stateChanges++; });
  room.onError((code, message) => {
    if (stats.roomErrors.length < 20) stats.roomErrors.push({ bot: options.clientId, code, message: message ?? null });
  });
  const timer = setInterval(() => {
    if (!room.connection?.isOpen) return;
    expected.add(seq);
    room.send("echo", { bot: options.clientId, seq });
    seq++;
    stats.echoSent++;
  }, 200);
  room.onLeave((code) => {
    openRooms.delete(room);
    clearInterval(timer);
    stats.leaves[code] = (stats.leaves[code] ?? 0) + 1;
  });
});

// registered after cli() installed its own SIGINT/SIGTERM handlers, so this runs right after them (synchronously)
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, leaveAll);
