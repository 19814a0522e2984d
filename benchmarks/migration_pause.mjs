// The pause a migrated client sees: N official clients (@colyseus/sdk 0.17) in "lobby" rooms of
// 20 (benchmarks/migration_app.py); each records the time from its socket's drop (the 4010 of a
// migration) to its first state after the automatic reconnection (the full state of its rejoin).
//
//   node migration_pause.mjs ENDPOINT N
//
// Prints "ready" once every client joined (the driver then waits for minUptime and sends SIGHUP),
// and at the end one JSON line: {pauses: [ms...], lost: n, leaves: n}. Bounded: 120 s in all.
import { Client } from "@colyseus/sdk";

const [endpoint, n] = [process.argv[2], Number(process.argv[3] ?? 100)];
const client = new Client(endpoint);
const probes = [];
const finish = () => {
  const pauses = probes.filter((p) => p.pause !== null).map((p) => p.pause);
  console.log(JSON.stringify({ pauses, lost: probes.length - pauses.length, leaves: probes.filter((p) => p.left).length }));
  process.exit(0);
};
setTimeout(finish, 120000);

for (let i = 0; i < n; i += 50) {
  const batch = [];
  for (let k = i; k < Math.min(n, i + 50); k++) batch.push(client.joinOrCreate("lobby", { group: `g${Math.floor(k / 20)}` }));
  for (const room of await Promise.all(batch)) {
    const probe = { dropAt: null, pause: null, left: false, reconnected: false };
    room.onMessage("welcome", () => {});
    room.onDrop(() => { probe.dropAt = performance.now(); });
    room.onReconnect(() => { probe.reconnected = true; });
    room.onStateChange(() => {
      if (probe.reconnected && probe.pause === null) {
        probe.pause = performance.now() - probe.dropAt;
        if (probes.every((p) => p.pause !== null)) finish();
      }
    });
    room.onLeave(() => { probe.left = true; });
    probes.push(probe);
  }
}
console.log("ready");
