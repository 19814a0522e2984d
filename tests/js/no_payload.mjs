#!/usr/bin/env node
// Each official client sends room.send("echo") without a payload to an echo room and records
// how the echoed message arrives: it must be `undefined`, as from the real Colyseus servers.
//   node no_payload.mjs --endpoint ws://127.0.0.1:PORT [--v3 PREFIX] [--v5 PREFIX]
// (0.16 and 0.17 use ENDPOINT+v3 prefix, default ""; 0.18 uses ENDPOINT+v5 prefix, default "/v18")
// Prints one JSON object: {results: {client: {type, isUndefined}}} or {error}.
import { loadClient, parseArgs, withTimeout, emitAndExit } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), []);
const deadline = setTimeout(() => emitAndExit({ error: "deadline" }, 1), 30000);
try {
  const results = {};
  const v3 = args.v3 ?? "", v5 = args.v5 ?? "/v18";
  for (const [name, suffix] of [["colyseusjs", v3], ["sdk17", v3], ["sdk18", v5]]) {
    const sdk = await loadClient(name);
    const room = await withTimeout(new sdk.Client(args.endpoint + suffix).joinOrCreate("echo", { name }), 5000, `join ${name}`);
    room.onMessage("welcome", () => {});
    const echoed = new Promise((resolve) => room.onMessage("echo", (message) => resolve(message)));
    room.send("echo");
    const message = await withTimeout(echoed, 5000, `echo to ${name}`);
    results[name] = { type: message === null ? "null" : typeof message, isUndefined: message === undefined };
    await room.leave();
  }
  clearTimeout(deadline);
  emitAndExit({ results }, 0);
} catch (e) {
  emitAndExit({ error: String(e && e.stack || e) }, 1);
}
