#!/usr/bin/env node
// Official clients in rooms that move to new code (greenroom serve --migrate, tests/test_migration.py).
//
//   node migrate_probe.mjs --client sdk17|sdk18 --endpoint ws://HOST:PORT --room board
//                          (--create N | --room-ids a,b,c) [--per-room 2] [--min-uptime MS]
//
// With --create, the first client of each of N rooms creates it; with --room-ids, --per-room clients
// join each room by id. Prints one JSON line {"ready": [{i, sessionId, roomId}]}, then obeys JSON
// commands on stdin, one per line, answering each with one JSON line:
//   {"cmd": "move", "until": N}    every client sends "move" and waits until its player's x is N
//   {"cmd": "log", "i": I, "text": T}  client I sends "log" T and waits until it sees T in state.log
//   {"cmd": "version"}             every client asks "version" and waits for the answer
//   {"cmd": "reconnected", "timeout": MS}  waits until every client reconnected at least once
//   {"cmd": "report"}              the clients: sessionId, roomId, state, reconnects, leaves, drops
//   {"cmd": "quit"}                every client leaves; exit 0
import readline from "node:readline";
import { loadClient, parseArgs, withTimeout, describeError, sleep, toPlain } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2));
const perRoom = Number(args["per-room"] ?? 2);
setTimeout(() => { console.log(JSON.stringify({ error: "hard deadline of 170 s exceeded" })); process.exit(1); }, 170000);

const lib = await loadClient(args.client);
const client = new lib.Client(args.endpoint);
const probes = [];

function watch(room, i) {
  const probe = { i, room, reconnects: 0, leaves: [], drops: [], versions: [] };
  room.onMessage("version", (v) => probe.versions.push(v));
  room.onMessage("*", () => {});
  room.onLeave((code) => probe.leaves.push(code));
  if (typeof room.onDrop === "function") room.onDrop((code) => probe.drops.push(code));
  room.onReconnect(() => { probe.reconnects++; });
  if (args["min-uptime"] !== undefined) room.reconnection.minUptime = Number(args["min-uptime"]);
  probes.push(probe);
  return probe;
}

async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

const state = (p) => toPlain(p.room.state?.toJSON ? p.room.state.toJSON() : p.room.state);
const me = (p) => state(p)?.players?.[p.room.sessionId];

try {
  const ids = args["room-ids"] ? String(args["room-ids"]).split(",") : [];
  let i = 0;
  if (args.create) {
    for (let r = 0; r < Number(args.create); r++) {
      const first = await withTimeout(client.create(args.room, { name: `c${i}` }), 15000, "create");
      watch(first, i++);
      for (let k = 1; k < perRoom; k++) watch(await withTimeout(client.joinById(first.roomId, { name: `c${i}` }), 15000, "joinById"), i++);
    }
  }
  for (const id of ids) {
    for (let k = 0; k < perRoom; k++) watch(await withTimeout(client.joinById(id, { name: `c${i}` }), 15000, "joinById"), i++);
  }
  console.log(JSON.stringify({ ready: probes.map((p) => ({ i: p.i, sessionId: p.room.sessionId, roomId: p.room.roomId })) }));
} catch (e) {
  console.log(JSON.stringify({ error: describeError(e) }));
  process.exit(1);
}

const report = () => probes.map((p) => ({ i: p.i, sessionId: p.room.sessionId, roomId: p.room.roomId, state: state(p),
  reconnects: p.reconnects, leaves: p.leaves, drops: p.drops, versions: p.versions }));

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  try {
    if (cmd.cmd === "move") {
      for (const p of probes) p.room.send("move");
      await until(() => probes.every((p) => me(p)?.x === cmd.until), 15000, `x == ${cmd.until}`);
    } else if (cmd.cmd === "log") {
      probes[cmd.i].room.send("log", cmd.text);
      await until(() => probes.every((p) => p.room.roomId !== probes[cmd.i].room.roomId || (state(p).log || []).includes(cmd.text)), 15000, "the log line");
    } else if (cmd.cmd === "version") {
      const before = probes.map((p) => p.versions.length);
      for (const p of probes) p.room.send("version");
      await until(() => probes.every((p, k) => p.versions.length > before[k]), 15000, "version answers");
    } else if (cmd.cmd === "reconnected") {
      await until(() => probes.every((p) => p.reconnects > 0 || p.leaves.length), cmd.timeout ?? 60000, "reconnections");
    } else if (cmd.cmd === "quit") {
      for (const p of probes) await p.room.leave().catch(() => {});
      console.log(JSON.stringify({ ok: true }));
      process.exit(0);
    }
    console.log(JSON.stringify({ ok: true, clients: report() }));
  } catch (e) {
    console.log(JSON.stringify({ error: describeError(e), clients: report() }));
  }
}
