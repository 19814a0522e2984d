// The Quick start's client: joins the echo room of examples/echo.py, sends one message, prints
// the echo and leaves. Needs Node.js 20 and the official SDK pinned in package.json:
//
//     cd examples/client && npm ci && node client.mjs [ws://127.0.0.1:2567]
import { Client } from "@colyseus/sdk";

const endpoint = process.argv[2] ?? "ws://127.0.0.1:2567";
const client = new Client(endpoint);
const room = await client.joinOrCreate("echo", { name: "alice" });
console.log(`joined ${room.name} ${room.roomId} as ${room.sessionId}`);

room.onMessage("welcome", (message) => console.log("welcome", message));
room.onMessage("echo", async (message) => {
  console.log("echo", JSON.stringify(message));
  await room.leave();
  process.exit(0);
});
room.send("echo", { hello: "world" });
