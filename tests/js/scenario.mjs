#!/usr/bin/env node
// Drive an "echo" room with one of the official Colyseus clients and print what was observed, as ONE JSON object.
//
//   node scenario.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://127.0.0.1:PORT
//                     [--steps a,b,c] [--step-timeout 5000] [--deadline 50000] [--raw] [--pretty]
//
// Prints one line of JSON (--pretty: indented). Records values, never asserts: the Python tests compare.
// Exit 0 = the script ran to the end (whatever the server did); exit 1 = {"error": ...} (bad arguments, client
// failed to load, hard deadline hit).
// See README.md in this folder for the output schema.
import {
  loadClient, parseArgs, withTimeout, describeError, toPlain, deepEqual, idShape,
  captureConsole, emitAndExit, TimeoutError, sleep,
} from "./lib_common.mjs";

// Canonical order: steps always run in this order (whatever the order given to --steps), so that one run's
// observations (e.g. the players in the state) do not depend on how the steps were listed.
const ALL_STEPS = [
  "unknown_room", "join", "echo", "numeric", "bytes", "wildcard", "ping", "latency", "state", "request",
  "deny", "join_by_id", "kick", "leave", "reconnect", "drop_reconnect", "full",
];

// Steps that need an API the client does not have.
const UNSUPPORTED = {
  colyseusjs: { ping: "no room.ping() in colyseus.js 0.16", latency: "no client.getLatency() in colyseus.js 0.16",
    request: "no room.request() before @colyseus/sdk 0.18" },
  sdk17: { request: "no room.request() before @colyseus/sdk 0.18" },
  sdk18: {},
};

// Pause between a client-side close and a manual client.reconnect(): the reference processes the close (onLeave ->
// allowReconnection) asynchronously, and an instant reconnect can (rarely) beat it and be refused.
const RECONNECT_PAUSE = 250;

const ECHO_PAYLOAD = { x: 1, y: "two", z: [1, 2, 3], nested: { a: true } };
const MESSAGE_TYPES = ["welcome", "echo", 7, "bytes", "unknown"];

let args;
try {
  args = parseArgs(process.argv.slice(2), ["raw", "pretty"]);
  if (!args.client) throw new Error("--client is required (colyseusjs|sdk17|sdk18)");
  if (!args.endpoint) throw new Error("--endpoint is required (e.g. ws://127.0.0.1:2567)");
} catch (e) {
  emitAndExit({ error: e.message }, 1);
  await new Promise(() => {});
}

const STEP_TIMEOUT = Number(args["step-timeout"] ?? 5000);
const DEADLINE = Number(args.deadline ?? 50000);
const RAW = Boolean(args.raw);

let requested = ALL_STEPS;
if (args.steps) {
  requested = String(args.steps).split(",").map((s) => s.trim()).filter(Boolean);
  const bad = requested.filter((s) => !ALL_STEPS.includes(s));
  if (bad.length) {
    emitAndExit({ error: `unknown step(s): ${bad.join(", ")}; known: ${ALL_STEPS.join(", ")}` }, 1);
    await new Promise(() => {});
  }
}
const stepsToRun = ALL_STEPS.filter((s) => requested.includes(s));

let currentStep = "(setup)";
const captured = captureConsole(() => currentStep);
const startedAt = Date.now();

const output = {
  client: args.client,
  clientPackage: null,
  clientVersion: null,
  endpoint: args.endpoint,
  stepsRequested: stepsToRun,
  steps: {},
  warnings: captured.warnings,
  info: captured.info,
};

// ---------------------------------------------------------------------------------------------------------------
// id normalisation: every random id the run learns gets a stable label; the final JSON has labels, not values.
const idLabels = new Map(); // real id -> label
function label(id, name) {
  if (typeof id === "string" && id.length > 0 && !idLabels.has(id)) idLabels.set(id, `<${name}>`);
}
function normalise(v) {
  if (RAW || idLabels.size === 0) return v;
  const entries = [...idLabels].sort((a, b) => b[0].length - a[0].length);
  const fixString = (s) => {
    if (idLabels.has(s)) return idLabels.get(s);
    for (const [id, lab] of entries) {
      if (id.length >= 6 && s.includes(id)) s = s.split(id).join(lab);
    }
    return s;
  };
  const walk = (x) => {
    if (typeof x === "string") return fixString(x);
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object") {
      const o = {};
      for (const k of Object.keys(x)) o[fixString(k)] = walk(x[k]);
      return o;
    }
    return x;
  };
  return walk(v);
}

function tokenShape(token, roomId) {
  if (typeof token !== "string") return { type: token === null ? "null" : typeof token };
  const i = token.indexOf(":");
  if (i < 0) return { format: "no-colon", ...idShape(token) };
  const prefix = token.slice(0, i);
  const rest = token.slice(i + 1);
  return { format: "<roomId>:<token>", prefixIsRoomId: prefix === roomId, token: idShape(rest) };
}

// ---------------------------------------------------------------------------------------------------------------
// Client + room instrumentation. Every Room the client creates (join, reconnect...) is instrumented before it
// connects, so no message/event can be missed between the join resolving and a handler being registered.
let lib;
const openRooms = new Set();

function newClient() {
  const client = new lib.Client(args.endpoint);
  const origCreateRoom = client.createRoom;
  client.__rooms = [];
  client.createRoom = function (...a) {
    const room = origCreateRoom.apply(this, a);
    instrument(room);
    client.__rooms.push(room);
    return room;
  };
  return client;
}

function instrument(room) {
  const rec = { events: [], queue: [], waiters: new Set(), stateChanges: 0, leaves: [], errors: [], drops: [], reconnects: 0, closes: [] };
  room.__rec = rec;
  const notify = () => { for (const w of [...rec.waiters]) w(); };
  // see the socket's close code before the client library interprets it
  const origConnect = room.connect;
  room.connect = function (...a) {
    const r = origConnect.apply(this, a);
    const wrap = (target, key) => {
      const orig = target[key];
      target[key] = function (e) {
        rec.closes.push({ code: e?.code ?? null, reason: e?.reason ?? null });
        rec.events.push(`close:${e?.code}`);
        try { return orig?.apply(this, arguments); } finally { notify(); }
      };
    };
    // colyseus.js 0.16 copies events.onclose onto ws.onclose at connect time; the SDKs call events.onclose
    // through an arrow function (which also survives their automatic reconnection's new socket).
    if (lib.name === "colyseusjs") {
      const ws = this.connection?.transport?.ws;
      if (ws) wrap(ws, "onclose");
    } else if (this.connection?.events) {
      wrap(this.connection.events, "onclose");
    }
    return r;
  };
  for (const type of MESSAGE_TYPES) {
    room.onMessage(type, (payload) => {
      rec.queue.push({ type, payload });
      rec.events.push(`message:${type}`);
      notify();
    });
  }
  room.onStateChange(() => { rec.stateChanges++; rec.events.push("state"); notify(); });
  room.onLeave((code, reason) => { rec.leaves.push({ code, reason: reason ?? null }); rec.events.push(`leave:${code}`); openRooms.delete(room); notify(); });
  room.onError((code, message) => { rec.errors.push({ code, message: message ?? null }); rec.events.push(`error:${code}`); notify(); });
  if (typeof room.onDrop === "function") room.onDrop((code, reason) => { rec.drops.push({ code, reason: reason ?? null }); rec.events.push(`drop:${code}`); notify(); });
  if (typeof room.onReconnect === "function") room.onReconnect(() => { rec.reconnects++; rec.events.push("reconnect"); notify(); });
  if (typeof room.onJoin === "function") room.onJoin(() => { rec.events.push("join"); openRooms.add(room); notify(); });
}

// Resolve when pred(rec) returns something truthy (checked now and after every event of that room).
function waitFor(room, pred, what, ms = STEP_TIMEOUT) {
  const rec = room.__rec;
  let check;
  const found = new Promise((resolve) => {
    check = () => {
      const v = pred(rec);
      if (v) { rec.waiters.delete(check); resolve(v); }
    };
    rec.waiters.add(check);
    check();
  });
  return withTimeout(found, ms, what).finally(() => rec.waiters.delete(check));
}

// Take (consume) the first queued message of `type` matching `match`.
function takeMessage(room, type, match = () => true, ms = STEP_TIMEOUT) {
  return waitFor(room, (rec) => {
    const i = rec.queue.findIndex((m) => m.type === type && match(m.payload));
    return i >= 0 ? rec.queue.splice(i, 1)[0] : null;
  }, `message ${JSON.stringify(type)}`, ms);
}

function stateJSON(room) {
  let st;
  try { st = room.state; } catch { st = undefined; }
  return (st === undefined || st === null) ? null : toPlain(st);
}

async function leaveConsented(room) {
  if (!room || room.__rec.leaves.length) return room?.__rec.leaves[0]?.code ?? null;
  try {
    return await withTimeout(room.leave(true), STEP_TIMEOUT, "room.leave()");
  } catch (e) {
    return { error: describeError(e) };
  }
}

// Join or record the rejection. When the rejection came from the room socket (the seat reservation worked), wait
// for that socket to close and report what it saw: e.g. ["error:526", "close:4002", "error:4002"].
async function attempt(client, start, what) {
  const roomsBefore = client.__rooms.length;
  try {
    const room = await withTimeout(start(), STEP_TIMEOUT, what);
    return { room };
  } catch (e) {
    if (e instanceof TimeoutError) throw e;
    const error = describeError(e);
    const room = client.__rooms.length > roomsBefore ? client.__rooms[client.__rooms.length - 1] : null;
    if (room) {
      try { await waitFor(room, (rec) => rec.closes.length > 0, "socket close after rejected join", 2000); } catch { /* still open */ }
      error.socketEvents = [...room.__rec.events];
    } else {
      error.socketEvents = null; // rejected by the matchmaking HTTP request: no socket opened
    }
    return { rejected: true, error };
  }
}

// A non-consented close makes the reference rooms hold the seat for reconnection (20 s), which would leave a
// stale player in a joinable room for the next run. Reclaim the seat with the token and leave consented; the result
// also tells whether the server held the seat.
async function reclaimSeat(token) {
  await sleep(RECONNECT_PAUSE);
  const back = await attemptNew((c) => c.reconnect(token), "reconnect to reclaim a held seat");
  if (back.room) return { seatHeld: true, leaveCode: await leaveConsented(back.room) };
  return { seatHeld: false, error: back.error };
}

// Join with a fresh client; a rejection is thrown (after the socket closed), carrying what the socket saw.
async function joinOrThrow(method, arg, options) {
  const client = newClient();
  const r = await attempt(client, () => client[method](arg, options), `${method}(${arg})`);
  if (!r.room) {
    throw Object.assign(new Error(r.error.message), { name: r.error.name, errorClass: r.error.class, code: r.error.code, socketEvents: r.error.socketEvents });
  }
  r.room.__client = client;
  return r.room;
}

function attemptNew(start, what) {
  const client = newClient();
  return attempt(client, () => start(client), what);
}

// ---------------------------------------------------------------------------------------------------------------
// The main room: joinOrCreate("echo", {name: "alice"}), created by the "join" step or lazily by the first step
// that needs it.
const ctx = { main: null, mainClient: null };

async function getMain() {
  if (ctx.main) return ctx.main;
  if (ctx.mainError) throw ctx.mainError; // tried once already: do not pile up failed joins
  ctx.mainClient = newClient();
  let r;
  try {
    r = await attempt(ctx.mainClient, () => ctx.mainClient.joinOrCreate("echo", { name: "alice" }), "joinOrCreate(echo)");
  } catch (e) {
    ctx.mainError = e; // timed out
    throw e;
  }
  if (!r.room) {
    ctx.mainError = Object.assign(new Error(`main room join failed: ${r.error.message}`), { name: "MainRoomUnavailable", code: r.error.code ?? null });
    ctx.mainErrorDetail = r.error;
    throw ctx.mainError;
  }
  ctx.main = r.room;
  label(ctx.main.roomId, "roomId:main");
  label(ctx.main.sessionId, "sessionId:main");
  return ctx.main;
}

const steps = {
  async unknown_room() {
    const r = await attemptNew((c) => c.joinOrCreate("nosuchroom", {}), "joinOrCreate(nosuchroom)");
    if (r.room) { const code = await leaveConsented(r.room); return { rejected: false, leaveCode: code }; }
    return { rejected: true, ...r.error };
  },

  async join() {
    let room;
    try {
      room = await getMain();
    } catch (e) {
      if (!ctx.mainErrorDetail) throw e;
      return { joined: false, ...ctx.mainErrorDetail };
    }
    const welcome = await takeMessage(room, "welcome");
    let stateReceived = room.__rec.stateChanges > 0;
    if (!stateReceived && room.serializerId === "schema") {
      try { await waitFor(room, (rec) => rec.stateChanges > 0, "first state"); stateReceived = true; } catch { /* recorded below */ }
    }
    return {
      joined: true,
      roomName: room.name ?? null,
      roomId: idShape(room.roomId),
      sessionId: idShape(room.sessionId),
      welcome: toPlain(welcome.payload),
      welcomeSessionIdMatches: welcome.payload?.sessionId === room.sessionId,
      reconnectionToken: tokenShape(room.reconnectionToken, room.roomId),
      serializerId: room.serializerId ?? null,
      stateReceived,
      state: stateJSON(room),
      // first events on the room, in arrival order ("join" = JOIN_ROOM handled, "state" = onStateChange)
      eventOrder: room.__rec.events.slice(0, 4),
    };
  },

  async echo() {
    const room = await getMain();
    room.send("echo", ECHO_PAYLOAD);
    const m = await takeMessage(room, "echo");
    return { received: toPlain(m.payload), equal: deepEqual(toPlain(m.payload), ECHO_PAYLOAD) };
  },

  async numeric() {
    const room = await getMain();
    room.send(7, "numeric type");
    const m = await takeMessage(room, 7);
    return { received: toPlain(m.payload), equal: m.payload === "numeric type" };
  },

  async bytes() {
    const room = await getMain();
    room.send("bytes");
    const m = await takeMessage(room, "bytes");
    const out = {
      received: toPlain(m.payload),
      isUint8Array: m.payload instanceof Uint8Array,
      equal: deepEqual(toPlain(m.payload), [1, 2, 3]),
    };
    // client -> server ROOM_DATA_BYTES. Colyseus 0.16-0.18 keep byte handlers apart from onMessage handlers (no
    // onMessageBytes("echo") in the reference room), so the reference answers through its "*" handler:
    // "unknown" {type: "echo", msg: <bin>}. Record whichever of the two answers comes back.
    room.sendBytes("echo", new Uint8Array([4, 5, 6]));
    try {
      const e = await waitFor(room, (rec) => {
        const i = rec.queue.findIndex((m) => m.type === "echo" || (m.type === "unknown" && m.payload?.type === "echo"));
        return i >= 0 ? rec.queue.splice(i, 1)[0] : null;
      }, "answer to sendBytes(echo)");
      const bytes = e.type === "echo" ? e.payload : e.payload.msg;
      out.sendBytesEcho = { answeredWith: e.type, received: toPlain(e.payload), isUint8Array: bytes instanceof Uint8Array,
        bytesEqual: deepEqual(toPlain(bytes), [4, 5, 6]) };
    } catch (e) {
      out.sendBytesEcho = { error: describeError(e) };
    }
    return out;
  },

  async wildcard() {
    const room = await getMain();
    room.send("whatever", { k: 1 });
    const m = await takeMessage(room, "unknown", (p) => p && p.type === "whatever");
    return { received: toPlain(m.payload), equal: deepEqual(toPlain(m.payload), { type: "whatever", msg: { k: 1 } }) };
  },

  async ping() {
    const room = await getMain();
    const ms = await withTimeout(new Promise((resolve) => room.ping((v) => resolve(v))), STEP_TIMEOUT, "room.ping()");
    return { answered: true, rttIsNumber: typeof ms === "number" && Number.isFinite(ms) };
  },

  async latency() {
    // client.getLatency(): a WebSocket on the bare endpoint path (no room), PING -> PING.
    const client = newClient();
    try {
      const ms = await withTimeout(client.getLatency({ timeout: STEP_TIMEOUT - 500 }), STEP_TIMEOUT, "getLatency()");
      return { answered: true, isNumber: typeof ms === "number" && Number.isFinite(ms) };
    } catch (e) {
      if (e instanceof TimeoutError) throw e;
      return { answered: false, error: describeError(e) };
    }
  },

  async state() {
    const room = await getMain();
    if (room.serializerId !== "schema" || stateJSON(room) === null) {
      return { skipped: "no schema state on this server", serializerId: room.serializerId ?? null, state: stateJSON(room) };
    }
    if (room.__rec.stateChanges === 0) await waitFor(room, (rec) => rec.stateChanges > 0, "first state");
    room.send("move", { x: 10, y: 20.5 });
    room.send("log", "first");
    const me = room.sessionId;
    await waitFor(room, () => {
      const s = stateJSON(room);
      const p = s?.players?.[me];
      return p && p.x === 10 && p.y === 20.5 && Array.isArray(s.log) && s.log.includes("first");
    }, "state reflecting move + log");
    return { state: stateJSON(room) };
  },

  async request() {
    const room = await getMain();
    const out = {};
    try {
      out.add = { response: toPlain(await withTimeout(room.request("add", { a: 2, b: 3 }), STEP_TIMEOUT, "request(add)")) };
    } catch (e) {
      if (e instanceof TimeoutError) throw e;
      out.add = { rejected: true, error: describeError(e) };
    }
    out.add.equal = out.add.response === 5;
    // send(type, payload, callback) is the callback form of request()
    out.sendWithCallback = await withTimeout(new Promise((resolve) => {
      room.send("add", { a: 40, b: 2 }, (response, error) => resolve({ response: toPlain(response), error: error ? describeError(error) : null }));
    }), STEP_TIMEOUT, "send(add, cb)");
    // a request for a type the server only handles with its "*" handler
    try {
      out.unhandledType = { response: toPlain(await withTimeout(room.request("nosuchrequest", { k: 1 }), STEP_TIMEOUT, "request(nosuchrequest)")) };
    } catch (e) {
      if (e instanceof TimeoutError) throw e;
      out.unhandledType = { rejected: true, error: describeError(e) };
    }
    // the "*" handler of the reference also sends an "unknown" message for it: consume it if it came
    try {
      const m = await takeMessage(room, "unknown", (p) => p && p.type === "nosuchrequest", 500);
      out.unhandledType.alsoSentUnknownMessage = toPlain(m.payload);
    } catch { out.unhandledType.alsoSentUnknownMessage = null; }
    return out;
  },

  async deny() {
    const r = await attemptNew((c) => c.joinOrCreate("echo", { deny: true }), "joinOrCreate(echo, {deny})");
    if (r.room) { const code = await leaveConsented(r.room); return { rejected: false, leaveCode: code }; }
    return { rejected: true, ...r.error };
  },

  async join_by_id() {
    const main = await getMain();
    const out = {};
    const client = newClient();
    const r = await attempt(client, () => client.joinById(main.roomId, { name: "bob" }), "joinById(main)");
    if (r.room) {
      const room = r.room;
      label(room.sessionId, "sessionId:join_by_id");
      const welcome = await takeMessage(room, "welcome");
      if (room.serializerId === "schema" && room.__rec.stateChanges === 0) {
        try { await waitFor(room, (rec) => rec.stateChanges > 0, "first state"); } catch { /* state stays null */ }
      }
      out.byId = {
        joined: true,
        sameRoom: room.roomId === main.roomId,
        differentSession: room.sessionId !== main.sessionId,
        welcome: toPlain(welcome.payload),
        state: stateJSON(room),
      };
      out.byId.leaveCode = await leaveConsented(room);
    } else {
      out.byId = { joined: false, ...r.error };
    }
    const bad = await attemptNew((c) => c.joinById("nosuchid", {}), "joinById(nosuchid)");
    if (bad.room) { out.unknownId = { rejected: false, leaveCode: await leaveConsented(bad.room) }; } else { out.unknownId = { rejected: true, ...bad.error }; }
    return out;
  },

  async kick() {
    // its own room (create) so the main room is untouched
    const room = await joinOrThrow("create", "echo", { name: "kicked" });
    label(room.roomId, "roomId:kick");
    label(room.sessionId, "sessionId:kick");
    room.send("kick");
    const token = room.reconnectionToken;
    const l = await waitFor(room, (rec) => rec.leaves[0] ?? rec.drops[0], "onLeave after kick");
    const out = { leaveCode: l.code, reason: l.reason, drops: room.__rec.drops, leaves: room.__rec.leaves,
      closes: room.__rec.closes };
    // for the server a kick is a non-consented leave: see whether it held the seat (and free it)
    out.afterKick = await reclaimSeat(token);
    return out;
  },

  async leave() {
    const room = await joinOrThrow("create", "echo", { name: "leaver" });
    label(room.roomId, "roomId:leave");
    label(room.sessionId, "sessionId:leave");
    const resolvedWith = await withTimeout(room.leave(), STEP_TIMEOUT, "room.leave()");
    return { leavePromiseResolvedWith: resolvedWith, onLeave: room.__rec.leaves[0] ?? null };
  },

  async reconnect() {
    const room = await joinOrThrow("create", "echo", { name: "rejoiner" });
    const client = room.__client;
    label(room.roomId, "roomId:reconnect");
    label(room.sessionId, "sessionId:reconnect");
    await takeMessage(room, "welcome");
    const out = { autoReconnectDisabled: false };
    // manual reconnection only: stop the 0.17/0.18 SDK from reconnecting by itself when the socket closes
    if (room.reconnection) { room.reconnection.enabled = false; out.autoReconnectDisabled = true; }
    const token = room.reconnectionToken;
    const closeCode = await withTimeout(room.leave(false), STEP_TIMEOUT, "room.leave(false)");
    out.leaveFalse = { leavePromiseResolvedWith: closeCode, drops: room.__rec.drops, leaves: room.__rec.leaves };
    await sleep(RECONNECT_PAUSE);
    const r = await attempt(client, () => client.reconnect(token), "client.reconnect(token)");
    if (!r.room) {
      out.reconnected = false;
      out.error = r.error;
      return out;
    }
    const room2 = r.room;
    out.reconnected = true;
    out.sameSessionId = room2.sessionId === room.sessionId;
    out.sameRoomId = room2.roomId === room.roomId;
    out.newToken = room2.reconnectionToken !== token;
    out.tokenShape = tokenShape(room2.reconnectionToken, room2.roomId);
    out.serializerId = room2.serializerId ?? null;
    if (room2.serializerId === "schema") {
      try { await waitFor(room2, (rec) => rec.stateChanges > 0, "state after reconnect"); } catch { /* null */ }
    }
    out.state = stateJSON(room2);
    out.welcomeAgain = room2.__rec.queue.some((m) => m.type === "welcome");
    room2.send("echo", { after: "reconnect" });
    try {
      const m = await takeMessage(room2, "echo");
      out.echoAfterReconnect = deepEqual(toPlain(m.payload), { after: "reconnect" });
    } catch (e) { out.echoAfterReconnect = false; }
    // the token used above is consumed: a second use must fail
    const again = await attemptNew((c) => c.reconnect(token), "reconnect(used token)");
    out.reuseUsedToken = again.room ? { rejected: false, leaveCode: await leaveConsented(again.room) } : { rejected: true, ...again.error };
    const bogus = await attemptNew((c) => c.reconnect(`${room.roomId}:bogustoken`), "reconnect(bogus token)");
    out.bogusToken = bogus.room ? { rejected: false, leaveCode: await leaveConsented(bogus.room) } : { rejected: true, ...bogus.error };
    out.finalLeaveCode = await leaveConsented(room2);
    return out;
  },

  async drop_reconnect() {
    // server terminates the socket ("drop" message) -> 1006 on the client.
    const room = await joinOrThrow("create", "echo", { name: "dropper" });
    label(room.roomId, "roomId:drop");
    label(room.sessionId, "sessionId:drop");
    await takeMessage(room, "welcome");
    const out = { hasAutoReconnect: Boolean(room.reconnection) };
    // the SDKs only auto-reconnect rooms joined >= reconnection.minUptime (5 s) ago: lift that to keep the run short
    if (room.reconnection) room.reconnection.minUptime = 0;
    const token = room.reconnectionToken;
    room.send("drop");
    const first = await waitFor(room, (rec) => rec.drops[0] ?? rec.leaves[0], "onDrop/onLeave after drop");
    out.firstEvent = room.__rec.drops.length ? { onDrop: first } : { onLeave: first };
    out.closes = room.__rec.closes;
    if (!room.__rec.drops.length) {
      // no automatic reconnection (colyseus.js): reclaim the held seat manually
      out.manualReclaim = await reclaimSeat(token);
      return out;
    }
    // sent while disconnected: the SDK buffers it and flushes it after the new JOIN_ROOM ack
    room.send("echo", { buffered: true });
    try {
      await waitFor(room, (rec) => rec.reconnects > 0 || rec.leaves.length > 0, "onReconnect", STEP_TIMEOUT * 2);
    } catch (e) { out.reconnectError = describeError(e); }
    out.reconnected = room.__rec.reconnects > 0;
    out.leaves = room.__rec.leaves;
    out.closes = room.__rec.closes;
    if (!out.reconnected) {
      out.manualReclaim = await reclaimSeat(token);
      return out;
    }
    try {
      const m = await takeMessage(room, "echo", (p) => p && p.buffered === true);
      out.bufferedMessageDelivered = deepEqual(toPlain(m.payload), { buffered: true });
    } catch { out.bufferedMessageDelivered = false; }
    room.send("echo", { after: "drop" });
    try {
      const m = await takeMessage(room, "echo", (p) => p && p.after === "drop");
      out.echoAfterReconnect = deepEqual(toPlain(m.payload), { after: "drop" });
    } catch { out.echoAfterReconnect = false; }
    out.tokenShape = tokenShape(room.reconnectionToken, room.roomId);
    out.state = stateJSON(room);
    out.events = room.__rec.events.filter((e) => !e.startsWith("state"));
    out.finalLeaveCode = await leaveConsented(room);
    return out;
  },

  async full() {
    const first = await joinOrThrow("create", "echo", { name: "full1" });
    label(first.roomId, "roomId:full");
    label(first.sessionId, "sessionId:full1");
    const rooms = [first];
    const attempts = [{ client: 1, method: "create", joined: true }];
    for (let i = 2; i <= 5; i++) {
      const r = await attemptNew((c) => c.joinById(first.roomId, { name: `full${i}` }), `joinById #${i}`);
      if (r.room) {
        label(r.room.sessionId, `sessionId:full${i}`);
        rooms.push(r.room);
        attempts.push({ client: i, method: "joinById", joined: true });
      } else {
        attempts.push({ client: i, method: "joinById", joined: false, ...r.error });
      }
    }
    const leaveCodes = [];
    for (const room of rooms) leaveCodes.push(await leaveConsented(room));
    return { attempts, joinedCount: rooms.length, leaveCodes };
  },
};

// ---------------------------------------------------------------------------------------------------------------
function finish(extra, code) {
  output.elapsedMs = Date.now() - startedAt;
  Object.assign(output, extra);
  emitAndExit(normalise(output), code);
}

const deadline = setTimeout(() => {
  finish({ error: `hard deadline of ${DEADLINE} ms exceeded (in step ${currentStep})` }, 1);
}, DEADLINE);

process.on("unhandledRejection", (e) => {
  captured.warnings.push({ step: currentStep, level: "unhandledRejection", text: describeError(e).message });
});

try {
  lib = await loadClient(args.client);
} catch (e) {
  finish({ error: `cannot load client: ${e.message}` }, 1);
  await new Promise(() => {});
}
output.clientPackage = lib.npmName;
output.clientVersion = lib.version;

for (const name of stepsToRun) {
  currentStep = name;
  const why = UNSUPPORTED[args.client]?.[name];
  if (why) {
    output.steps[name] = { status: "skipped", reason: why };
    continue;
  }
  try {
    // every wait inside a step has its own STEP_TIMEOUT; this caps the step as a whole
    const r = await withTimeout(steps[name](), STEP_TIMEOUT * 4, `step ${name}`);
    output.steps[name] = { status: "done", ...r };
  } catch (e) {
    output.steps[name] = { status: "error", error: { ...describeError(e), ...(e?.socketEvents !== undefined ? { socketEvents: e.socketEvents } : {}) } };
  }
}

currentStep = "(cleanup)";
for (const room of [...openRooms]) await leaveConsented(room);
await sleep(50);
clearTimeout(deadline);
finish({}, 0);
