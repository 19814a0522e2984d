// The benchmark's rooms, Colyseus side (@colyseus/core 0.17, schema 4): the same room logic as
// greenroom_app.py, so that the two servers do the same work. Change one, change the other.
// Usage: node benchmarks/colyseus_server.mjs PORT   (binds 127.0.0.1 only)
import { Server, Room } from "@colyseus/core";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { Schema, MapSchema, defineTypes } from "@colyseus/schema";

const port = Number(process.argv[2] || 2588);

class Player extends Schema {
  constructor() { super(); this.x = 0; this.y = 0; }
}
defineTypes(Player, { x: "number", y: "number" });

class BroadcastState extends Schema {
  constructor() { super(); this.players = new MapSchema(); }
}
defineTypes(BroadcastState, { players: { map: Player } });

class EchoRoom extends Room {
  maxClients = 50;
  onCreate() {
    this.onMessage("echo", (client, message) => client.send("echo", message));
  }
  onJoin(client) {
    client.send("welcome", { mode: "echo" });
  }
}

class QuietRoom extends Room {
  maxClients = 4;
  onJoin(client) {
    client.send("welcome", { mode: "quiet" });
  }
}

class BroadcastRoom extends Room {
  maxClients = 20;
  patchRate = 50;
  onCreate() {
    this.ticks = 0;
    this.setState(new BroadcastState());
  }
  onJoin(client) {
    this.state.players.set(client.sessionId, new Player());
    client.send("welcome", { mode: "schema" });
  }
  onLeave(client) {
    this.state.players.delete(client.sessionId);
  }
  onBeforePatch() {
    // Same arithmetic as greenroom_app.py: x always float32 on the wire, y a one-byte integer,
    // so that every patch has the same size whatever the tick count.
    this.ticks++;
    const t = this.ticks;
    let i = 0;
    for (const player of this.state.players.values()) {
      player.x = ((t + i) % 500) + 0.5;
      player.y = (t + 2 * i) % 100;
      i++;
    }
  }
}

// Both servers ping every connection every 3 s (each one's default, written out here so that a
// change of default on either side does not silently change what the quiet scenario compares).
const transport = new WebSocketTransport({ pingInterval: 3000 });
const gameServer = new Server({ transport, greet: false, gracefullyShutdown: false });
gameServer.define("echo", EchoRoom);
gameServer.define("quiet", QuietRoom);
gameServer.define("bcast", BroadcastRoom).filterBy(["group"]);
await gameServer.listen(port, "127.0.0.1");
console.log(`colyseus listening on 127.0.0.1:${port} pid=${process.pid}`);
