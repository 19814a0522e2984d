#!/usr/bin/env node
// Three players of one official client library in a RelayRoom: what each saw, as ONE JSON object.
//
//   node relay.mjs --client colyseusjs|sdk17|sdk18 --endpoint ws://HOST:PORT
//                  [--room relay] [--room-id ID] [--plain-room relay_plain] [--pause] [--timeout 8000]
//
// 1. relay: alice creates --room (or joins --room-id), bob and carol join it by id; alice sends
//    "move" {x:1,y:"two"}, bob answers "ack", alice sends "ping" without payload and 7 (a numeric type).
// With --pause: prints the line "paused <roomId>" and waits for a line on stdin before 2.
// 2. manual reconnection: bob (automatic reconnection off) leaves without consent, waits until alice's
//    state shows him disconnected, then client.reconnect(token); messages both ways afterwards.
// 3. automatic reconnection (0.17/0.18 SDKs only): carol's socket is terminated (1006), the SDK
//    reconnects by itself; messages both ways afterwards.
// 4. hold expiry, Colyseus' camelCase options: dora creates --plain-room with {maxClients: 2,
//    allowReconnectionTime: 1}, eve joins, a third join is tried, eve leaves without consent, dora
//    waits until eve is gone from her state, then eve's reconnect(token) is tried.
// Records, never asserts. Messages are recorded as {type, isArray, sender, payload, payloadUndefined}.
import { loadClient, parseArgs, withTimeout, describeError, emitAndExit, toPlain, captureConsole } from "./lib_common.mjs";

const args = parseArgs(process.argv.slice(2), ["pretty", "pause"]);
const TIMEOUT = Number(args.timeout ?? 8000);
let phase = "load";
const captured = captureConsole(() => phase);
const out = { client: args.client, roomId: null, sessionIds: {}, players: null, messages: {}, connected: {},
              manual: null, auto: null, plain: null, error: null };
const deadline = setTimeout(() => emitAndExit({ ...out, ...captured, error: "hard deadline of 60 s" }, 1), 60000);

// A joined room, with what it received: messages and the latest state (as plain JSON).
function watch(label, room) {
  const seen = { label, room, messages: [], state: null, waiters: [] };
  out.messages[label] = seen.messages;
  const check = () => { for (const w of seen.waiters.splice(0)) (w.pred() ? w.resolve() : seen.waiters.push(w)); };
  room.onMessage("*", (type, data) => {
    seen.messages.push({ type, isArray: Array.isArray(data), sender: Array.isArray(data) ? data[0] : null,
                         payload: toPlain(Array.isArray(data) ? data[1] : data),
                         payloadUndefined: Array.isArray(data) && data.length === 2 && data[1] === undefined });
    check();
  });
  room.onStateChange((state) => {
    seen.state = toPlain(state);
    for (const [sid, player] of Object.entries(seen.state.players ?? {})) {
      const key = `${label}:${sid}`;
      const history = (out.connected[key] ??= []);
      if (history[history.length - 1] !== player.connected) history.push(player.connected);
    }
    check();
  });
  return seen;
}
function waitFor(seen, pred, what) {
  if (pred()) return Promise.resolve();
  return withTimeout(new Promise((resolve) => seen.waiters.push({ pred, resolve })), TIMEOUT, `${seen.label}: ${what}`);
}
const got = (seen, type, sender) => () => seen.messages.some((m) => m.type === type && m.sender === sender);
const player = (seen, sid) => seen.state?.players?.[sid];
const count = (seen) => Object.keys(seen.state?.players ?? {}).length;

try {
  const lib = await loadClient(args.client);
  const endpoint = args.endpoint;
  const client = () => new lib.Client(endpoint);

  phase = "relay";
  const alice = watch("alice", args["room-id"]
    ? await client().joinById(args["room-id"], { name: "alice" })
    : await client().create(args.room ?? "relay", { name: "alice" }));
  out.roomId = alice.room.roomId;
  const bob = watch("bob", await client().joinById(out.roomId, { name: "bob" }));
  const carol = watch("carol", await client().joinById(out.roomId, { name: "carol" }));
  const sid = { alice: alice.room.sessionId, bob: bob.room.sessionId, carol: carol.room.sessionId };
  out.sessionIds = sid;
  const everyone = [alice, bob, carol];
  await Promise.all(everyone.map((s) => waitFor(s, () => [sid.alice, sid.bob, sid.carol].every((id) => player(s, id)), "3 players")));
  out.players = alice.state.players;
  alice.room.send("move", { x: 1, y: "two" });
  await waitFor(bob, got(bob, "move", sid.alice), "move");
  await waitFor(carol, got(carol, "move", sid.alice), "move");
  bob.room.send("ack", "from bob");
  // the room relayed alice's move before bob's ack: a copy to alice would have come first
  await waitFor(alice, got(alice, "ack", sid.bob), "ack");
  alice.room.send("ping");
  alice.room.send(7, "numeric");
  await waitFor(bob, got(bob, 7, sid.alice), "7");
  await waitFor(carol, got(carol, 7, sid.alice), "7");

  if (args.pause) {
    process.stdout.write(`paused ${out.roomId}\n`);
    await new Promise((resolve) => process.stdin.once("data", resolve));
  }

  phase = "manual";
  if (bob.room.reconnection) bob.room.reconnection.enabled = false;
  const token = bob.room.reconnectionToken;
  const leaveCode = await withTimeout(bob.room.leave(false), TIMEOUT, "bob leave(false)");
  await waitFor(alice, () => player(alice, sid.bob)?.connected === false, "bob disconnected");
  const whileAway = player(alice, sid.bob);
  const bob2 = watch("bob2", await withTimeout(client().reconnect(token), TIMEOUT, "bob reconnect"));
  await waitFor(alice, () => player(alice, sid.bob)?.connected === true, "bob connected again");
  await waitFor(bob2, () => count(bob2) === count(alice), "bob2 state");
  alice.room.send("after", 1);
  await waitFor(bob2, got(bob2, "after", sid.alice), "after");
  bob2.room.send("back", 2);
  await waitFor(alice, got(alice, "back", sid.bob), "back");
  out.manual = { leaveCode, whileAway, sessionId: bob2.room.sessionId, roomId: bob2.room.roomId,
                 newToken: bob2.room.reconnectionToken !== token, players: bob2.state.players };

  phase = "auto";
  if (carol.room.reconnection) {
    carol.room.reconnection.minUptime = 0; // the SDKs skip rooms joined less than 5 s ago
    const drops = [];
    carol.room.onDrop?.((code) => drops.push(code));
    const reconnected = new Promise((resolve) => carol.room.onReconnect(resolve));
    carol.room.connection.transport.ws.terminate();
    await withTimeout(reconnected, TIMEOUT, "carol automatic reconnection");
    await waitFor(alice, () => player(alice, sid.carol)?.connected === true, "carol connected");
    alice.room.send("again", 3);
    await waitFor(carol, got(carol, "again", sid.alice), "again");
    carol.room.send("here", 4);
    await waitFor(alice, got(alice, "here", sid.carol), "here");
    out.auto = { drops, sessionId: carol.room.sessionId, players: alice.state.players };
  } else {
    out.auto = { skipped: "no automatic reconnection in this client" };
  }
  await Promise.all([alice.room.leave(true), bob2.room.leave(true), carol.room.leave(true)]);

  phase = "plain";
  const dora = watch("dora", await client().create(args["plain-room"] ?? "relay_plain",
                                                   { name: "dora", maxClients: 2, allowReconnectionTime: 1 }));
  const eve = watch("eve", await client().joinById(dora.room.roomId, { name: "eve" }));
  const plain = { third: null, reconnect: null };
  try {
    const third = await withTimeout(client().joinById(dora.room.roomId, { name: "third" }), TIMEOUT, "third join");
    plain.third = { joined: true };
    await third.leave(true);
  } catch (e) {
    plain.third = { joined: false, ...describeError(e) };
  }
  await waitFor(dora, () => player(dora, eve.room.sessionId)?.connected === true, "eve joined");
  if (eve.room.reconnection) eve.room.reconnection.enabled = false;
  const eveToken = eve.room.reconnectionToken;
  plain.eve = eve.room.sessionId;
  await withTimeout(eve.room.leave(false), TIMEOUT, "eve leave(false)");
  await waitFor(dora, () => player(dora, plain.eve)?.connected === false, "eve disconnected");
  await waitFor(dora, () => player(dora, plain.eve) === undefined, "eve removed");
  try {
    const back = await withTimeout(client().reconnect(eveToken), TIMEOUT, "eve reconnect");
    plain.reconnect = { joined: true };
    await back.leave(true);
  } catch (e) {
    plain.reconnect = { joined: false, ...describeError(e) };
  }
  plain.players = dora.state.players;
  out.plain = plain;
  await dora.room.leave(true);
} catch (e) {
  out.error = { phase, ...describeError(e) };
}
clearTimeout(deadline);
emitAndExit({ ...out, ...captured }, 0);
