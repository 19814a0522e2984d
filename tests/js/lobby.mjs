#!/usr/bin/env node
// Two lobby clients of one official client library, and game rooms in other processes: what the
// lobbies saw, as ONE JSON object.
//
//   node lobby.mjs --client colyseusjs|sdk17|sdk18 --lobby ws://A --games ws://B[,ws://C...]
//                  [--before ws://B] [--room game] [--timeout 8000]
//
// 0. With --before: a game room is created there before any lobby client joins (kept to the end).
// 1. "all" joins "lobby" without filter, "duel" with {filter: {name: ROOM, metadata: {mode: "duel"}}};
//    each records its first "rooms".
// 2. For each endpoint of --games, one room: its creator creates it, a 2nd player joins it by id,
//    the creator sends "meta" {mode: "duel"}, "lock", "private" true, "private" false, then "meta"
//    {mode: "ffa"}; each step waits until "all" saw it (and "duel" saw the room appear, then go).
// 3. "all" sends the filter message {name: ROOM}, "duel" {metadata: {mode: "ffa"}}: their new "rooms".
// 4. Each room: the 2nd player leaves, then the creator (the room is disposed); then the --before room.
// Records "rooms", "+" and "-" as they come, per lobby client. Records, never asserts.
import { loadClient, parseArgs, withTimeout, describeError, emitAndExit, toPlain, captureConsole } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), ["pretty"]);
const TIMEOUT = Number(args.timeout ?? 8000);
const ROOM = args.room ?? "game";
let phase = "load";
const captured = captureConsole(() => phase);
const out = { client: args.client, rooms: {}, filtered: {}, events: {}, games: [], before: null, error: null };
const deadline = setTimeout(() => emitAndExit({ ...out, ...captured, error: "hard deadline of 60 s" }, 1), 60000);

// A lobby client: everything it received, in order; waits on what it received.
function lobbyWatch(label, room) {
  const seen = { label, room, events: (out.events[label] = []), roomsLists: [], waiters: [] };
  const check = () => { for (const w of seen.waiters.splice(0)) (w.pred() ? w.resolve() : seen.waiters.push(w)); };
  room.onMessage("rooms", (rooms) => { seen.roomsLists.push(toPlain(rooms)); check(); });
  room.onMessage("+", (data) => {
    // what a front end does with createdAt: new Date(createdAt)
    seen.events.push({ type: "+", roomId: data[0], listing: toPlain(data[1]),
                       createdAtMs: new Date(data[1].createdAt).getTime() });
    check();
  });
  room.onMessage("-", (roomId) => { seen.events.push({ type: "-", roomId }); check(); });
  return seen;
}
function waitFor(seen, pred, what) {
  if (pred()) return Promise.resolve();
  return withTimeout(new Promise((resolve) => seen.waiters.push({ pred, resolve })), TIMEOUT, `${seen.label}: ${what}`);
}
const saw = (seen, type, roomId, test = () => true) => () =>
  seen.events.some((e) => e.type === type && e.roomId === roomId && (type === "-" || test(e.listing)));
const roomsList = (seen, n) => () => seen.roomsLists.length >= n;

// A game room's player: records the welcome (processId) of the room.
async function player(endpoint, join) {
  const room = await withTimeout(join(new (await lib).Client(endpoint)), TIMEOUT, `join ${ROOM}`);
  const info = { room, welcome: null };
  room.onMessage("welcome", (w) => { info.welcome = w; });
  return info;
}

const lib = loadClient(args.client);
try {
  await lib;
  if (args.before) {
    phase = "before";
    const p0 = await player(args.before, (c) => c.create(ROOM, {}));
    out.before = { roomId: p0.room.roomId, endpoint: args.before, p0 };
  }
  phase = "join";
  const lobbyClient = new (await lib).Client(args.lobby);
  const all = lobbyWatch("all", await withTimeout(lobbyClient.joinOrCreate("lobby", {}), TIMEOUT, "join lobby"));
  const duel = lobbyWatch("duel", await withTimeout(
    lobbyClient.joinOrCreate("lobby", { filter: { name: ROOM, metadata: { mode: "duel" } } }), TIMEOUT, "join lobby"));
  await waitFor(all, roomsList(all, 1), "rooms");
  await waitFor(duel, roomsList(duel, 1), "rooms");
  out.rooms = { all: all.roomsLists[0], duel: duel.roomsLists[0] };
  out.lobbyRoomIds = { all: all.room.roomId, duel: duel.room.roomId };

  const games = [];
  for (const endpoint of String(args.games).split(",")) {
    phase = `game ${games.length}`;
    const a = await player(endpoint, (c) => c.create(ROOM, {}));
    const id = a.room.roomId;
    await waitFor(all, saw(all, "+", id), "+ created");
    const b = await player(endpoint, (c) => c.joinById(id, {}));
    await waitFor(all, saw(all, "+", id, (l) => l.clients === 2), "+ clients 2");
    a.room.send("meta", { mode: "duel" });
    await waitFor(all, saw(all, "+", id, (l) => l.metadata?.mode === "duel"), "+ duel");
    await waitFor(duel, saw(duel, "+", id), "+ duel (filtered)");
    a.room.send("lock");
    await waitFor(all, saw(all, "+", id, (l) => l.locked === true), "+ locked");
    a.room.send("private", true);
    await waitFor(all, saw(all, "-", id), "- private");
    a.room.send("private", false);
    await waitFor(all, () => all.events.filter((e) => e.roomId === id).at(-1).type === "+", "+ public");
    a.room.send("meta", { mode: "ffa" });
    await waitFor(all, saw(all, "+", id, (l) => l.metadata?.mode === "ffa"), "+ ffa");
    await waitFor(duel, saw(duel, "-", id), "- (filtered out)");
    games.push({ a, b, id, endpoint });
  }

  phase = "filter";
  all.room.send("filter", { name: ROOM });
  duel.room.send("filter", { metadata: { mode: "ffa" } });
  await waitFor(all, roomsList(all, 2), "rooms after filter");
  await waitFor(duel, roomsList(duel, 2), "rooms after filter");
  out.filtered = { all: all.roomsLists[1], duel: duel.roomsLists[1] };

  phase = "dispose";
  for (const g of games) {
    await g.b.room.leave(true);
    await waitFor(all, saw(all, "+", g.id, (l) => l.clients === 1 && l.metadata?.mode === "ffa"), "+ clients 1");
    await g.a.room.leave(true);
    await waitFor(all, saw(all, "-", g.id), "- disposed");
    await waitFor(duel, () => duel.events.filter((e) => e.type === "-" && e.roomId === g.id).length === 3, "- disposed");
    out.games.push({ roomId: g.id, endpoint: g.endpoint, processId: g.a.welcome?.processId ?? null });
  }
  if (out.before) {
    const p0 = out.before.p0;
    await p0.room.leave(true);
    await waitFor(all, saw(all, "-", out.before.roomId), "- disposed (before)");
    out.before = { roomId: out.before.roomId, endpoint: out.before.endpoint, processId: p0.welcome?.processId ?? null };
  }
  await all.room.leave(true);
  await duel.room.leave(true);
} catch (e) {
  out.error = { phase, ...describeError(e) };
  if (out.before?.p0) out.before = { roomId: out.before.roomId };
}
clearTimeout(deadline);
emitAndExit({ ...out, ...captured }, 0);
