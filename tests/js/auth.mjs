#!/usr/bin/env node
// One join with an auth token set the way applications set it, as ONE JSON object.
//
//   node auth.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://HOST:PORT --room NAME
//                 [--token T] [--method joinOrCreate|create|join] [--timeout 8000]
//
// Sets client.auth.token (the clients then send "Authorization: Bearer" on matchmaking and
// "_authToken" on the room socket), joins, waits for the room's "welcome" message and leaves.
// Records, never asserts: {joined, welcome, error: {name, class, code, message} | null}.
import { loadClient, parseArgs, withTimeout, describeError, emitAndExit, toPlain } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), ["pretty"]);
const TIMEOUT = Number(args.timeout ?? 8000);
const lib = await loadClient(args.client);
const out = { client: args.client, clientVersion: lib.version, joined: false, welcome: null, error: null };
try {
  const client = new lib.Client(args.endpoint);
  if (args.token) client.auth.token = args.token;
  const room = await withTimeout(client[args.method ?? "joinOrCreate"](args.room, {}), TIMEOUT, "join");
  out.joined = true;
  const welcome = new Promise((resolve) => room.onMessage("welcome", resolve));
  out.welcome = toPlain(await withTimeout(welcome, TIMEOUT, "welcome"));
  await withTimeout(room.leave(true), TIMEOUT, "leave");
} catch (e) {
  out.error = describeError(e);
}
emitAndExit(out, 0);
