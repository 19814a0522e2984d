// Shared helpers for the client-driver scripts (scenario.mjs, concurrent.mjs).
// Nothing here talks to a server by itself.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// --client name -> npm package (installed in tests/js/node_modules) + label.
export const CLIENTS = {
  colyseusjs: { pkg: "colyseus.js", npmName: "colyseus.js" },
  sdk17: { pkg: "sdk17", npmName: "@colyseus/sdk" },
  sdk18: { pkg: "sdk18", npmName: "@colyseus/sdk" },
};

export async function loadClient(name) {
  const entry = CLIENTS[name];
  if (!entry) {
    throw new Error(`unknown --client ${JSON.stringify(name)} (expected one of ${Object.keys(CLIENTS).join(", ")})`);
  }
  const mod = await import(entry.pkg);
  const version = require(`${entry.pkg}/package.json`).version;
  return { mod, Client: mod.Client, version, npmName: entry.npmName, name };
}

// Minimal "--key value" / "--flag" parser. Returns {key: value|true}.
export function parseArgs(argv, booleanFlags = []) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) {
      throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    }
    let key = a.slice(2);
    let value;
    const eq = key.indexOf("=");
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else if (booleanFlags.includes(key)) {
      value = true;
    } else {
      if (i + 1 >= argv.length) {
        throw new Error(`missing value for --${key}`);
      }
      value = argv[++i];
    }
    out[key] = value;
  }
  return out;
}

export class TimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "TimeoutError";
  }
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Plain description of anything thrown (MatchMakeError, ServerError, Error, strings...).
export function describeError(e) {
  if (e === null || e === undefined) {
    return { name: null, code: null, message: String(e) };
  }
  if (typeof e !== "object") {
    return { name: typeof e, code: null, message: String(e) };
  }
  return {
    name: e.name ?? null,
    class: e.errorClass ?? e.constructor?.name ?? null,
    code: e.code ?? null,
    message: e.message ?? String(e),
  };
}

// JSON-safe deep copy: typed arrays -> plain arrays, undefined -> null, Map -> object.
export function toPlain(v, seen = new WeakSet()) {
  if (v === undefined) return null;
  if (v === null || typeof v !== "object") {
    if (typeof v === "number" && !Number.isFinite(v)) return String(v);
    if (typeof v === "bigint") return v.toString();
    return v;
  }
  if (ArrayBuffer.isView(v)) return Array.from(v);
  if (v instanceof ArrayBuffer) return Array.from(new Uint8Array(v));
  if (seen.has(v)) return "[circular]";
  seen.add(v);
  if (typeof v.toJSON === "function") return toPlain(v.toJSON(), seen);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), toPlain(x, seen)]));
  if (Array.isArray(v)) return v.map((x) => toPlain(x, seen));
  const out = {};
  for (const k of Object.keys(v)) out[k] = toPlain(v[k], seen);
  return out;
}

export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

const URL_SAFE = /^[A-Za-z0-9_-]+$/;

// Shape of a random id: its value varies per run, its length/charset should not.
export function idShape(s) {
  if (typeof s !== "string") return { type: s === null ? "null" : typeof s };
  return { length: s.length, charset: URL_SAFE.test(s) ? "[A-Za-z0-9_-]" : "other" };
}

// Capture everything the client libraries print, tagged with the current step.
export function captureConsole(getTag) {
  const captured = { warnings: [], info: [] };
  const fmt = (args) =>
    args
      .map((a) => {
        if (typeof a === "string") return a;
        if (a instanceof Error) return `${a.name}: ${a.message}`;
        try {
          return JSON.stringify(toPlain(a));
        } catch {
          return String(a);
        }
      })
      .join(" ");
  for (const level of ["warn", "error"]) {
    console[level] = (...args) => captured.warnings.push({ step: getTag(), level, text: fmt(args) });
  }
  for (const level of ["log", "info", "debug"]) {
    console[level] = (...args) => captured.info.push({ step: getTag(), level, text: fmt(args) });
  }
  return captured;
}

// Stdout writer that bypasses the captured console; exits after the write is flushed. ONE line of JSON (the
// pytest fixture run_js parses the last stdout line starting with "{"); --pretty anywhere on the command line
// indents it for humans.
export function emitAndExit(obj, code) {
  const pretty = process.argv.includes("--pretty");
  const text = JSON.stringify(obj, null, pretty ? 2 : undefined) + "\n";
  process.exitCode = code;
  process.stdout.write(text, () => process.exit(code));
}
