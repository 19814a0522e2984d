// The load generator of benchmarks/run.py: the same code drives greenroom and Colyseus.
//
// It speaks the v3 wire protocol directly (HTTP matchmake, WebSocket, JOIN_ROOM + ack,
// ROOM_DATA) instead of running the official SDK, because the SDK decodes every state patch and
// would cost more CPU than the server it measures. Node rather than Python+gevent because it
// measured cheaper per message (see README.md in this folder).
//
// Usage: node benchmarks/loadgen.mjs '<json config>'
//   stdout: {"mark": NAME} lines, each answered by one line on stdin once the harness has sampled
//           /proc (so CPU and RSS are measured by one piece of code, for both servers and for
//           this process), then one {"result": {...}} line.
// Every scenario is bounded: config.timeout seconds in all, and the process exits when stdin
// closes (the harness died).
import http from "node:http";
import readline from "node:readline";
import WebSocket from "ws";
import { Packr, unpack } from "@colyseus/msgpackr";

const JOIN_ROOM = 10, ERROR = 11, LEAVE_ROOM = 12, ROOM_DATA = 13, ROOM_STATE = 14, ROOM_STATE_PATCH = 15;

const config = JSON.parse(process.argv[2] || "{}");
const host = config.host || "127.0.0.1";
const port = config.port;
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

setTimeout(() => {
  process.stderr.write(`loadgen: gave up after ${config.timeout} s\n`);
  process.exit(3);
}, (config.timeout || 60) * 1000).unref();

// ---- talking to the harness --------------------------------------------------------------------
const stdin = readline.createInterface({ input: process.stdin });
const acks = [];
stdin.on("line", () => { const resolve = acks.shift(); if (resolve) resolve(); });
stdin.on("close", () => process.exit(4));

function mark(name) {
  return new Promise((resolve) => {
    acks.push(resolve);
    process.stdout.write(JSON.stringify({ mark: name }) + "\n");
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();

// ---- wire helpers ----------------------------------------------------------------------------------
function encodeString(text) {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length >= 32) { throw new Error("message types here are short"); }
  return Buffer.concat([Buffer.from([0xa0 + bytes.length]), bytes]);
}

// What @colyseus/sdk sends: msgpackr with records on (PROTOCOL.md §3.1).
const packr = new Packr();
function roomData(type, payload) {
  return Buffer.concat([Buffer.from([ROOM_DATA]), encodeString(type), packr.pack(payload)]);
}

function messageType(frame) {
  const prefix = frame[1];
  if (prefix >= 0xa0 && prefix <= 0xbf) {
    const n = prefix - 0xa0;
    return [frame.toString("latin1", 2, 2 + n), 2 + n];
  }
  return [prefix, 2];
}

function matchmake(method, room, options) {
  const body = JSON.stringify(options || {});
  return new Promise((resolve, reject) => {
    const request = http.request({
      host, port, agent, method: "POST", path: `/matchmake/${method}/${room}`,
      headers: { "Content-Type": "application/json", Accept: "application/json",
                 "Content-Length": Buffer.byteLength(body) },
    }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        if (response.statusCode !== 200) {
          reject(new Error(`matchmake ${response.statusCode}: ${text.slice(0, 200)}`));
          return;
        }
        resolve(JSON.parse(text));
      });
    });
    request.setTimeout(10000, () => request.destroy(new Error("matchmake timed out")));
    request.on("error", reject);
    request.end(body);
  });
}

// One client in one room. Resolves once "welcome" arrived: the server has processed our ack.
class Client {
  constructor() {
    this.frames = 0;
    this.bytes = 0;
    this.roomId = null;
    this.mode = null;
    this.onData = null; // (type, frame) for ROOM_DATA after the welcome
    this.closed = false;
  }

  join(method, room, options, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => fail(new Error("join timed out")), timeoutMs);
      const fail = (error) => {
        if (settled) { return; }
        settled = true;
        clearTimeout(timer);
        this.terminate();
        reject(error);
      };
      matchmake(method, room, options).then((seat) => {
        if (settled) { return; }
        this.roomId = seat.roomId;
        const url = `ws://${host}:${port}/${seat.processId}/${seat.roomId}?sessionId=${seat.sessionId}`;
        const ws = new WebSocket(url, { perMessageDeflate: false });
        this.ws = ws;
        ws.on("error", (error) => fail(error));
        ws.on("close", (code) => {
          this.closed = true;
          fail(new Error(`socket closed with ${code} before the welcome`));
        });
        ws.on("message", (frame) => {
          const code = frame[0];
          if (code === ROOM_STATE_PATCH || code === ROOM_STATE) {
            this.frames++;
            this.bytes += frame.length;
          } else if (code === ROOM_DATA) {
            const [type, offset] = messageType(frame);
            if (type === "welcome" && !settled) {
              this.mode = unpack(frame.subarray(offset)).mode;
              settled = true;
              clearTimeout(timer);
              resolve(this);
            } else {
              this.frames++;
              this.bytes += frame.length;
              if (this.onData) { this.onData(type, frame); }
            }
          } else if (code === JOIN_ROOM) {
            ws.send(Buffer.from([JOIN_ROOM]));
          } else if (code === ERROR) {
            fail(new Error(`ERROR frame ${frame.toString("hex", 0, 64)}`));
          }
        });
      }, fail);
    });
  }

  send(frame) { this.ws.send(frame); }

  leave() {
    // A consented leave, as room.leave() does: the server closes with 4000.
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(Buffer.from([LEAVE_ROOM])); }
  }

  terminate() { if (this.ws) { this.ws.terminate(); } }
}

function percentile(sorted, p) {
  if (sorted.length === 0) { return null; }
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p + 0.5))];
}

function latencyStats(samples) {
  const sorted = Float64Array.from(samples).sort();
  return { count: sorted.length, p50_ms: percentile(sorted, 0.5), p99_ms: percentile(sorted, 0.99),
           max_ms: sorted.length ? sorted[sorted.length - 1] : null };
}

// Join `count` clients with at most `concurrency` joins in flight.
async function joinMany(count, concurrency, method, room, optionsOf) {
  const clients = [];
  const errors = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      try {
        clients.push(await new Client().join(method, room, optionsOf(i)));
      } catch (error) {
        errors.push(String(error.message || error));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { clients, errors };
}

async function closeAll(clients) {
  for (const client of clients) { client.leave(); }
  const deadline = now() + 3000;
  while (clients.some((c) => !c.closed) && now() < deadline) { await sleep(20); }
  for (const client of clients) { if (!client.closed) { client.terminate(); } }
}

// ---- scenarios --------------------------------------------------------------------------------------
async function joins() {
  // Each worker joins, waits for its welcome, leaves (consented), and starts over.
  const latencies = [];
  const errors = [];
  let measuring = false, stop = false, completed = 0, inFlightCloses = 0;
  async function worker() {
    while (!stop) {
      const started = now();
      const client = new Client();
      try {
        await client.join("joinOrCreate", "echo", {});
      } catch (error) {
        if (measuring) { errors.push(String(error.message || error)); }
        if (errors.length > 100) { stop = true; }
        await sleep(10); // a refusing server must not turn this loop into a busy one
        continue;
      }
      if (measuring) { latencies.push(now() - started); completed++; }
      inFlightCloses++;
      client.ws.once("close", () => { inFlightCloses--; });
      client.leave();
      while (inFlightCloses > 1000 && !stop) { await sleep(5); } // bounded socket count
    }
  }
  const workers = Array.from({ length: config.concurrency }, worker);
  await sleep(config.warmup * 1000);
  await mark("start");
  measuring = true;
  const t0 = now();
  await sleep(config.duration * 1000);
  measuring = false;
  const seconds = (now() - t0) / 1000;
  await mark("end");
  stop = true;
  await Promise.all(workers);
  return { operations: completed, seconds, latency: latencyStats(latencies), errors: errors.slice(0, 5),
           error_count: errors.length };
}

async function echo() {
  const { clients, errors } = await joinMany(config.clients, config.concurrency, "joinOrCreate", "echo",
                                             () => ({}));
  const latencies = [];
  let measuring = false, stop = false, completed = 0;
  const frame = roomData("echo", { x: 12.5, y: 7, name: "player-1" });
  const starters = clients.map((client) => {
    let sent = 0;
    const fire = () => { sent = now(); client.send(frame); };
    client.onData = (type) => {
      if (type !== "echo") { return; }
      if (measuring) { latencies.push(now() - sent); completed++; }
      if (!stop) { fire(); }
    };
    return fire;
  });
  for (const fire of starters) { fire(); }
  await sleep(config.warmup * 1000);
  await mark("start");
  measuring = true;
  const t0 = now();
  await sleep(config.duration * 1000);
  measuring = false;
  const seconds = (now() - t0) / 1000;
  await mark("end");
  stop = true;
  await closeAll(clients);
  return { operations: completed, seconds, clients: clients.length, latency: latencyStats(latencies),
           errors: errors.slice(0, 5), error_count: errors.length };
}

async function broadcast() {
  // Rooms filled in parallel, each one sequentially: exactly `rooms` rooms of `perRoom` clients.
  const groups = Array.from({ length: config.rooms }, (_, g) => g);
  const results = await Promise.all(groups.map(async (group) => {
    const { clients, errors } = await joinMany(config.perRoom, 1, "joinOrCreate", "bcast", () => ({ group }));
    return { clients, errors };
  }));
  const clients = results.flatMap((r) => r.clients);
  const errors = results.flatMap((r) => r.errors);
  const rooms = new Set(clients.map((c) => c.roomId)).size;
  await sleep(config.warmup * 1000);
  await mark("start");
  const t0 = now();
  const atStart = clients.map((c) => [c.frames, c.bytes]);
  await sleep(config.duration * 1000);
  const atEnd = clients.map((c) => [c.frames, c.bytes]);
  const seconds = (now() - t0) / 1000;
  await mark("end");
  let frames = 0, bytes = 0;
  clients.forEach((_, i) => { frames += atEnd[i][0] - atStart[i][0]; bytes += atEnd[i][1] - atStart[i][1]; });
  const mode = clients.length ? clients[0].mode : null;
  await closeAll(clients);
  // One patch tick of a room is one frame to each of its clients.
  const perRoom = clients.length / Math.max(rooms, 1);
  return { operations: frames / perRoom, frames, bytes, seconds, clients: clients.length, rooms, mode,
           errors: errors.slice(0, 5), error_count: errors.length };
}

async function idle() {
  // Warm the server's code paths first, so that the baseline is not lazy imports and JIT.
  const warm = await joinMany(Math.min(50, config.clients), 10, "joinOrCreate", "echo", () => ({}));
  await closeAll(warm.clients);
  await sleep(500);
  await mark("baseline");
  const { clients, errors } = await joinMany(config.clients, config.concurrency, "joinOrCreate", "echo",
                                             () => ({}));
  await sleep(config.settle * 1000);
  await mark("connected");
  const alive = clients.filter((c) => !c.closed).length;
  await closeAll(clients);
  return { operations: alive, clients: alive, errors: errors.slice(0, 5), error_count: errors.length };
}

async function quiet() {
  // Many small rooms, joined and silent: what a server spends per second when nothing happens
  // (patch timers of rooms without changes, pings). Measured between "start" and "end".
  const { clients, errors } = await joinMany(config.clients, config.concurrency, "joinOrCreate", "quiet",
                                             () => ({}));
  await sleep(config.settle * 1000);
  await mark("start");
  await sleep(config.duration * 1000);
  await mark("end");
  const alive = clients.filter((c) => !c.closed).length;
  await closeAll(clients);
  return { operations: alive, clients: alive, rooms: Math.ceil(alive / config.perRoom),
           errors: errors.slice(0, 5), error_count: errors.length };
}

const scenarios = { joins, echo, broadcast, idle, quiet };
const run = scenarios[config.scenario];
if (!run) {
  process.stderr.write(`loadgen: unknown scenario ${config.scenario}\n`);
  process.exit(2);
}
const result = await run();
process.stdout.write(JSON.stringify({ result }) + "\n");
agent.destroy();
process.exit(0);
