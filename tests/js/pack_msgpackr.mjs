// Packs JSON values as the official SDK packs room.send payloads: one Packr, reused, from the
// SDK's own @colyseus/msgpackr (records and all). Reads a JSON array from the file given as
// the first argument; prints {"packed": [hex, ...]} on one line.
import { readFileSync } from "node:fs";
import { Packr } from "@colyseus/msgpackr";

const values = JSON.parse(readFileSync(process.argv[2], "utf8"));
const packr = new Packr();
packr.encode(undefined); // as the SDK's Room constructor does
const packed = values.map((value) => Buffer.from(packr.pack(value)).toString("hex"));
console.log(JSON.stringify({ packed }));
