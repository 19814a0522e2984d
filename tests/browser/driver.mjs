// A headless Chromium driven line by line from Python (tests/browser_driver.py).
//
// stdin: one JSON command per line {"id", "op", ...}; stdout: one JSON reply per line
// {"id", "ok": value} or {"id", "error": text}. The browser always goes away: on "quit", on
// SIGTERM/SIGINT, when stdin closes (the test process is gone) and after a hard deadline.
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";
import chromium from "@sparticuz/chromium";

const DEADLINE_MS = Number(process.env.BROWSER_DEADLINE_MS || 180000);
// What this machine needs (no sandbox as root, no GPU, no network beyond localhost).
const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
  "--font-render-hinting=none", "--window-size=1280,800",
];

const userDataDir = mkdtempSync(join(tmpdir(), "greenroom-chromium-"));
let browser = null;
const pages = new Map();
let nextPage = 1;

function reply(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

async function quit(code) {
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
  } catch (e) { /* already gone */ }
  try { if (browser && browser.process()) browser.process().kill("SIGKILL"); } catch (e) { /* gone */ }
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(code);
}

setTimeout(() => { process.stderr.write("driver: hard deadline reached\n"); quit(3); }, DEADLINE_MS).unref();
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, () => quit(1));

function page(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry;
}

const ops = {
  async launch({ width = 1280, height = 800 }) {
    const started = Date.now();
    browser = await puppeteer.launch({
      executablePath: await chromium.executablePath(),
      headless: "shell",
      args: FLAGS,
      userDataDir,
      defaultViewport: { width, height },
      handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,  // ours close it
    });
    return { version: await browser.version(), pid: browser.process().pid, ms: Date.now() - started };
  },
  async newPage({ username, password }) {
    const p = await browser.newPage();
    const entry = { page: p, errors: [], dialogs: [] };
    p.on("pageerror", (e) => entry.errors.push(String(e)));
    p.on("console", (m) => { if (m.type() === "error") entry.errors.push(m.text()); });
    p.on("dialog", (d) => { entry.dialogs.push(d.message()); d.accept(); });
    if (username !== undefined) await p.authenticate({ username, password });
    const id = nextPage++;
    pages.set(id, entry);
    return id;
  },
  async goto({ page: id, url }) {
    const response = await page(id).page.goto(url, { waitUntil: "load", timeout: 15000 });
    return { status: response ? response.status() : null };
  },
  async waitFor({ page: id, selector, text, ms: timeout = 10000 }) {
    const p = page(id).page;
    if (text === undefined) {
      await p.waitForSelector(selector, { timeout });
    } else {
      await p.waitForFunction((s, t) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(t)),
        { timeout, polling: "mutation" }, selector, text);
    }
    return true;
  },
  async waitGone({ page: id, selector, ms: timeout = 10000 }) {
    await page(id).page.waitForFunction((s) => !document.querySelector(s), { timeout, polling: "mutation" }, selector);
    return true;
  },
  async click({ page: id, selector }) {
    // Found and clicked in one task of the page: puppeteer's own click finds the element, then
    // moves the mouse to it, and a page that re-renders its table in between (the monitor does,
    // every poll) leaves it clicking a detached node.
    const { page: p } = page(id);
    await p.waitForSelector(selector);
    await p.$eval(selector, (element) => element.click());
    return true;
  },
  async texts({ page: id, selector }) {
    return page(id).page.$$eval(selector, (elements) => elements.map((e) => e.textContent));
  },
  async key({ page: id, key, action }) {
    const keyboard = page(id).page.keyboard;
    await (action === "down" ? keyboard.down(key) : keyboard.up(key));
    return true;
  },
  async screenshot({ page: id, path }) {
    await page(id).page.screenshot({ path, fullPage: true });
    return path;
  },
  async report({ page: id }) {
    const { errors, dialogs } = page(id);
    return { errors, dialogs };
  },
  async closePage({ page: id }) {
    await page(id).page.close();
    pages.delete(id);
    return true;
  },
  async quit() {
    reply({ id: "quit", ok: true });
    await quit(0);
  },
};

const input = createInterface({ input: process.stdin });
input.on("line", async (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch (e) {
    reply({ id: null, error: `not JSON: ${line.slice(0, 100)}` });
    return;
  }
  const op = ops[command.op];
  if (!op) {
    reply({ id: command.id, error: `unknown op ${command.op}` });
    return;
  }
  try {
    reply({ id: command.id, ok: await op(command) });
  } catch (e) {
    reply({ id: command.id, error: String(e && e.message || e) });
  }
});
input.on("close", () => quit(0));
