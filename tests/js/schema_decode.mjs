// Long-running decoding helper for greenroom's schema tests.
//
// One process serves a whole pytest session: it reads JSON lines on stdin and answers one JSON
// line per request on stdout, so the official decoders run once per frame, not once per process.
//
//   {"id": 1, "op": "open", "session": "a", "lib": "schema5", "handshake": "<hex>"}
//   {"id": 2, "op": "decode", "session": "a", "hex": "<hex>"}
//   {"id": 3, "op": "close", "session": "a"}
// answer: {"id": 1, "ok": true, "state": {...}, "warnings": [...]} or {"id": 1, "ok": false, "error": "..."}
//
// Anything a decoder prints through console.* is returned as a warning of the request that caused
// it: the tests treat every warning as a failure.
import * as readline from "node:readline";
import * as schema3 from "schema3";
import * as schema4 from "schema4";
import * as schema5 from "schema5";

const LIBS = { schema3, schema4, schema5 };
const sessions = new Map();
let warnings = [];

for (const level of ["log", "info", "warn", "error", "debug", "trace"]) {
    console[level] = (...args) => {
        warnings.push(`${level}: ` + args.map((a) => {
            if (a instanceof Error) { return a.stack || String(a); }
            if (typeof a === "object") { try { return JSON.stringify(a); } catch { return String(a); } }
            return String(a);
        }).join(" "));
    };
}

function bytes(hex) {
    return Uint8Array.from(Buffer.from(hex, "hex"));
}

function handle(req) {
    if (req.op === "open") {
        const lib = LIBS[req.lib];
        if (!lib) { throw new Error(`unknown lib ${req.lib}`); }
        const decoder = lib.Reflection.decode(bytes(req.handshake));
        sessions.set(req.session, decoder);
        return decoder.state.toJSON();
    }
    const decoder = sessions.get(req.session);
    if (!decoder) { throw new Error(`unknown session ${req.session}`); }
    if (req.op === "decode") {
        decoder.decode(bytes(req.hex));
        return decoder.state.toJSON();
    }
    if (req.op === "close") {
        sessions.delete(req.session);
        return null;
    }
    throw new Error(`unknown op ${req.op}`);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
    if (!line.trim()) { return; }
    let req;
    warnings = [];
    try {
        req = JSON.parse(line);
        const state = handle(req);
        process.stdout.write(JSON.stringify({ id: req.id, ok: true, state, warnings }) + "\n");
    } catch (e) {
        process.stdout.write(JSON.stringify({
            id: req && req.id, ok: false, error: (e && e.stack) || String(e), warnings,
        }) + "\n");
    }
});
rl.on("close", () => process.exit(0));
