// Node side of benchmarks/schema_encode.py: the same state and mutations on @colyseus/schema 5.
// Usage: node benchmarks/schema_encode.mjs PLAYERS MOVING TICKS WARMUP  → one JSON line on stdout.
import { schema, t, Encoder } from "../tests/js/node_modules/schema5/build/index.mjs";

const [players, moving, ticks, warmup] = process.argv.slice(2).map(Number);

const Player = schema({ name: t.string().default(""), x: t.number().default(0), y: t.number().default(0) }, "Player");
const State = schema({ tick: t.uint16().default(0), players: t.map(Player) }, "State");

Encoder.BUFFER_SIZE = 256 * 1024; // the full state of 1,000 players is ~32 KB

const state = new State();
for (let i = 0; i < players; i++) {
    const p = new Player();
    p.name = "player" + i;
    p.x = i % 500;
    p.y = (i * 7) % 300;
    state.players.set("p" + i, p);
}
const encoder = new Encoder(state);
const keys = Array.from({ length: players }, (_, i) => "p" + i);

// full state
const fullReps = 200;
let fullBytes = 0;
const fullHex = Buffer.from(encoder.encodeAll()).toString("hex");
for (let i = 0; i < 20; i++) { encoder.encodeAll(); }
let start = process.hrtime.bigint();
for (let i = 0; i < fullReps; i++) { fullBytes = encoder.encodeAll().length; }
const fullUs = Number(process.hrtime.bigint() - start) / 1000 / fullReps;
encoder.discardChanges();

function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
}

function mutate(tick) {
    state.tick = tick % 65536;
    for (let k = 0; k < moving; k++) {
        const p = state.players.get(keys[(tick * 37 + k * 10) % players]);
        p.x = ((tick * 3 + k) % 500) + 0.5;
        p.y = ((tick + k) % 300) * 2;
    }
}

const encodeUs = [], mutateUs = [];
let bytes = 0, sample = "";
for (let tick = 1; tick <= warmup + ticks; tick++) {
    const m0 = process.hrtime.bigint();
    mutate(tick);
    const e0 = process.hrtime.bigint();
    const patch = encoder.encode();
    const n = patch.length;
    if (tick === warmup + 1) { sample = Buffer.from(patch).toString("hex"); }
    encoder.discardChanges();
    const e1 = process.hrtime.bigint();
    if (tick > warmup) {
        mutateUs.push(Number(e0 - m0) / 1000);
        encodeUs.push(Number(e1 - e0) / 1000);
        bytes += n;
    }
}

// full state right after a tick (what a client joining a running room costs)
const fullTickUs = [];
for (let tick = warmup + ticks + 1; tick <= warmup + ticks + 100; tick++) {
    mutate(tick);
    encoder.encode();
    encoder.discardChanges();
    const f0 = process.hrtime.bigint();
    encoder.encodeAll();
    fullTickUs.push(Number(process.hrtime.bigint() - f0) / 1000);
}

process.stdout.write(JSON.stringify({
    version: "5.0.34",
    patch_us: median(encodeUs),
    patch_mean_us: encodeUs.reduce((a, b) => a + b, 0) / ticks,
    mutate_us: median(mutateUs),
    patch_bytes: bytes / ticks,
    full_us: fullUs,
    full_tick_us: median(fullTickUs),
    full_bytes: fullBytes,
    sample_patch: sample,
    full_hex: fullHex,
}) + "\n");
