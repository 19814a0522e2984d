#!/usr/bin/env node
// N players queue at once on a QueueRoom (tests/apps/queueing.py), each as a front end written for
// Colyseus' QueueRoom does: joinOrCreate("queue", {band, rank}), wait for "seat", join the match
// room with client.consumeSeatReservation(seat), then send "confirm" (the queue closes with 1000).
// Prints ONE JSON object: what each player saw. Records, never asserts.
//
//   node queue.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://127.0.0.1:PORT[/v18]
//                  [--n 100] [--queue queue] [--timeout 60000] [--pretty]
//
// Player i has band "b<i/4>": a match room whose members differ in band is a group split or mixed.
import { loadClient, parseArgs, withTimeout, describeError, emitAndExit } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), ["pretty"]);
const N = Number(args.n ?? 100);
const QUEUE = args.queue ?? "queue";
const TIMEOUT = Number(args.timeout ?? 60000);
const out = { client: args.client, clientVersion: null, players: [], error: null };

function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

// Handlers go on before the socket opens (as concurrent.mjs does): nothing sent at join is missed.
function newClient(lib, player, events) {
  const client = new lib.Client(args.endpoint);
  const createRoom = client.createRoom;
  client.createRoom = function (...a) {
    const room = createRoom.apply(this, a);
    if (a[0] === QUEUE) {
      room.onMessage("clients", (count) => player.clients.push(count));
      room.onMessage("seat", (seat) => { player.seats += 1; events.seat.resolve(seat); });
      room.onLeave((code) => events.left.resolve(code));
    } else {
      room.onMessage("welcome", (welcome) => events.welcome.resolve(welcome));
      room.onMessage("*", () => {});
    }
    return room;
  };
  return client;
}

async function play(lib, index) {
  const player = { index, band: `b${Math.floor(index / 4)}`, seats: 0, clients: [], error: null };
  const events = { seat: deferred(), welcome: deferred(), left: deferred() };
  let match = null;
  try {
    const client = newClient(lib, player, events);
    const queue = await withTimeout(client.joinOrCreate(QUEUE, { band: player.band, rank: index }),
      TIMEOUT, `join ${QUEUE} #${index}`);
    const seat = await withTimeout(events.seat.promise, TIMEOUT, `seat #${index}`);
    player.seatRoomId = seat.roomId ?? seat.room?.roomId;
    player.sessionId = seat.sessionId;
    match = await withTimeout(client.consumeSeatReservation(seat), TIMEOUT, `consume #${index}`);
    player.joinedRoomId = match.roomId;
    player.welcome = await withTimeout(events.welcome.promise, TIMEOUT, `welcome #${index}`);
    queue.send("confirm");
    player.queueLeaveCode = await withTimeout(events.left.promise, TIMEOUT, `queue close #${index}`);
  } catch (e) {
    player.error = describeError(e);
  }
  return { player, match };
}

try {
  const lib = await loadClient(args.client);
  out.clientVersion = lib.version;
  const results = await Promise.all(Array.from({ length: N }, (_, i) => play(lib, i)));
  out.players = results.map((r) => r.player);
  await Promise.all(results.filter((r) => r.match).map((r) => r.match.leave(true).catch(() => null)));
} catch (e) {
  out.error = describeError(e);
}
emitAndExit(out, 0);
