#!/usr/bin/env node
// One official client joins a given room, waits for the go-ahead, then loses its socket (the server
// terminates it on "drop") and lets the SDK reconnect by itself to the same URL.
//
//   node reconnect_probe.mjs --client sdk17|sdk18 --endpoint ws://127.0.0.1:PORT --room-id ID
//
// Prints the line "joined <sessionId>" once in the room, then waits for a line on stdin, then prints
// ONE JSON object: {reconnected, sessionId, sessionIdAfter, echo, closes, leaves}.
import { loadClient, parseArgs, withTimeout, describeError, emitAndExit, sleep } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2));
const out = { client: args.client, reconnected: false, echo: null, closes: [], leaves: [] };
const deadline = setTimeout(() => emitAndExit({ ...out, error: "hard deadline of 40 s exceeded" }, 1), 40000);

try {
  const lib = await loadClient(args.client);
  const client = new lib.Client(args.endpoint);
  const room = await withTimeout(client.joinById(args["room-id"], { name: "probe" }), 15000, "joinById");
  let reconnects = 0;
  const echoes = [];
  room.onMessage("welcome", () => {});
  room.onMessage("echo", (m) => echoes.push(m));
  room.onMessage("*", () => {});
  room.onLeave((code) => out.leaves.push(code));
  if (typeof room.onDrop === "function") room.onDrop((code) => out.closes.push(code));
  room.onReconnect(() => { reconnects++; });
  // the SDKs only reconnect rooms joined >= minUptime (5 s) ago: lift it to keep the run short
  room.reconnection.minUptime = 0;
  out.sessionId = room.sessionId;
  process.stdout.write(`joined ${room.sessionId}\n`);
  await new Promise((resolve) => process.stdin.once("data", resolve));
  room.send("drop");
  const until = Date.now() + 15000;
  while (!reconnects && !out.leaves.length && Date.now() < until) await sleep(20);
  out.reconnected = reconnects > 0;
  out.sessionIdAfter = room.sessionId;
  if (out.reconnected) {
    room.send("echo", { after: "reconnect" });
    const echoUntil = Date.now() + 5000;
    while (!echoes.length && Date.now() < echoUntil) await sleep(20);
    out.echo = echoes[0] ?? null;
    await room.leave(true);
  }
} catch (e) {
  out.error = describeError(e);
}
clearTimeout(deadline);
emitAndExit(out, 0);
