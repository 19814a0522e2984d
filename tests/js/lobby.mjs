#!/usr/bin/env node
// A lobby client and a game room in another process: what the lobby saw, as ONE JSON object.
//
//   node lobby.mjs --client colyseusjs|sdk17|sdk18 --lobby ws://A --game ws://B [--timeout 8000]
//
// Joins "lobby" on --lobby, creates "game" on --game, sets its metadata, leaves it (disposed);
// records "rooms", "+" and "-" as they come. Records, never asserts.
import { loadClient, parseArgs, withTimeout, describeError, emitAndExit } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), ["pretty"]);
const TIMEOUT = Number(args.timeout ?? 8000);
const lib = await loadClient(args.client);
const out = { client: args.client, rooms: null, events: [], game: null, error: null };
const waiters = [];
function waitFor(pred, what) {
  const seen = out.events.find(pred);
  if (seen) return Promise.resolve(seen);
  return withTimeout(new Promise((resolve) => waiters.push({ pred, resolve })), TIMEOUT, what);
}
try {
  const lobby = await new lib.Client(args.lobby).joinOrCreate("lobby", {});
  const gotRooms = new Promise((resolve) => lobby.onMessage("rooms", (rooms) => { out.rooms = rooms; resolve(); }));
  for (const type of ["+", "-"]) {
    lobby.onMessage(type, (data) => {
      const event = { type, data };
      out.events.push(event);
      for (const w of waiters.splice(0)) (w.pred(event) ? w.resolve(event) : waiters.push(w));
    });
  }
  await withTimeout(gotRooms, TIMEOUT, "rooms");
  const game = await new lib.Client(args.game).create("game", {});
  game.onMessage("welcome", (w) => { out.game = { roomId: game.roomId, processId: w.processId }; });
  await waitFor((e) => e.type === "+" && e.data[0] === game.roomId, "+ created");
  game.send("meta", { mode: "duel" });
  await waitFor((e) => e.type === "+" && e.data[1].metadata?.mode === "duel", "+ metadata");
  await game.leave(true);
  await waitFor((e) => e.type === "-" && e.data === game.roomId, "- disposed");
  out.game = { ...out.game, roomId: game.roomId };
  await lobby.leave(true);
} catch (e) {
  out.error = describeError(e);
}
emitAndExit(out, 0);
