#!/usr/bin/env node
// colyseus.js 0.16 and @colyseus/sdk 0.17 on the root endpoint (v3) and @colyseus/sdk 0.18 on
// ENDPOINT/v18 (v5) join the same echo room; each must see all three players in its state.
//   node mixed_dialects.mjs --endpoint ws://127.0.0.1:PORT
// Prints one JSON object: {sameRoom, players, states, warnings} or {error}.
import { loadClient, parseArgs, withTimeout, captureConsole, emitAndExit } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), []);
const captured = captureConsole(() => "mixed");
const deadline = setTimeout(() => emitAndExit({ error: "deadline" }, 1), 40000);
try {
  const js16 = await loadClient("colyseusjs");
  const sdk17 = await loadClient("sdk17");
  const sdk18 = await loadClient("sdk18");
  const listen = (room) => { room.onMessage("welcome", () => {}); return room; };
  const first = listen(await withTimeout(new js16.Client(args.endpoint).joinOrCreate("echo", { name: "colyseusjs" }), 5000, "join 0.16"));
  const second = listen(await withTimeout(new sdk17.Client(args.endpoint).joinById(first.roomId, { name: "sdk17" }), 5000, "join 0.17"));
  const third = listen(await withTimeout(new sdk18.Client(args.endpoint + "/v18").joinById(first.roomId, { name: "sdk18" }), 5000, "join 0.18"));
  const rooms = [first, second, third];
  // A join resolves before the first state arrives: no players yet until then.
  const names = (room) => (room.state && room.state.players
    ? [...room.state.players.values()].map((p) => p.name).sort() : []);
  const full = () => rooms.every((room) => names(room).length === 3);
  await withTimeout(new Promise((resolve) => {
    if (full()) return resolve();
    for (const room of rooms) room.onStateChange(() => { if (full()) resolve(); });
  }), 5000, "all three players in every state");
  const states = rooms.map((room) => names(room));
  const out = {
    sameRoom: rooms.every((room) => room.roomId === first.roomId),
    players: states[0],
    states,
    warnings: captured.warnings.map((w) => w.text),
  };
  for (const room of rooms) await room.leave();
  clearTimeout(deadline);
  emitAndExit(out, 0);
} catch (e) {
  emitAndExit({ error: String(e && e.stack || e), warnings: captured.warnings.map((w) => w.text) }, 1);
}
