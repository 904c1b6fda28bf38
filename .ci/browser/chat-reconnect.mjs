// Browser test of the chat example across a server restart: two tabs of
// Debian's chromium (driven by playwright-core) join a room, see each other
// type and chat; the server is killed and started again on the same port;
// both tabs show "open" again, are back in their rooms (the client replays
// its sticky `join`s) and a new message goes through. Then one tab leaves.
//
//   cargo build -p chat
//   (cd .ci/browser && npm ci && CHAT_BIN=../../target/debug/chat node chat-reconnect.mjs)
//
// Env: CHAT_BIN (the chat binary; this script starts and kills it),
// CHAT_ADDR (default 127.0.0.1:3931), SCREENSHOT_DIR (default
// /tmp/liweb-screenshots), CHROMIUM (default /usr/bin/chromium).
// Exits non-zero on any failure; screenshots are saved either way.

import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const CHAT_BIN = process.env.CHAT_BIN || "target/debug/chat";
const CHAT_ADDR = process.env.CHAT_ADDR || "127.0.0.1:3931";
const CHAT_URL = `http://${CHAT_ADDR}/`;
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || "/tmp/liweb-screenshots";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 10_000;
const ROOM = "rust";

const problems = []; // page errors and HTTP errors (console errors of the outage are expected)
let server = null;

function watch(page, name) {
  page.on("pageerror", (err) => problems.push(`${name} pageerror: ${err.message}`));
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`${name} HTTP ${res.status()}: ${res.url()}`);
  });
}

function portOpen() {
  const [host, port] = CHAT_ADDR.split(":");
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port) }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

async function startServer() {
  server = spawn(CHAT_BIN, [], {
    env: { ...process.env, LIWEB_ADDR: CHAT_ADDR, LIWEB_SECRET: "" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`the chat server exited with ${server.exitCode}`);
    if (await portOpen()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the chat server did not listen on ${CHAT_ADDR}`);
}

async function killServer() {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

async function waitFor(page, name, what, fn, arg) {
  await page.waitForFunction(fn, arg, { timeout: WAIT_MS }).catch(async () => {
    const shown = await page.evaluate(() => ({
      state: document.querySelector("#state")?.textContent,
      rooms: [...document.querySelectorAll("#rooms li")].map((li) => li.textContent),
      messages: [...document.querySelectorAll("#messages li")].map((li) => li.textContent),
      typing: document.querySelector("#typing")?.textContent,
    }));
    throw new Error(`${name}: ${what}; page shows ${JSON.stringify(shown)}`);
  });
}

const waitState = (page, name, state) =>
  waitFor(page, name, `#state never showed "${state}"`, (state) =>
    document.querySelector("#state")?.dataset.state === state, state);

/** Waits until the room list shows `room` with `n` members. */
const waitRoomOnline = (page, name, room, n) =>
  waitFor(page, name, `room ${room} never showed ${n} members`, ([room, n]) =>
    document.querySelector(`#rooms li[data-room="${room}"] .room-online`)?.textContent === String(n), [room, n]);

const waitMessage = (page, name, text) =>
  waitFor(page, name, `message ${JSON.stringify(text)} never shown`, (text) =>
    [...document.querySelectorAll("#messages li.msg .text")].some((el) => el.textContent === text), text);

async function join(page, room) {
  await page.fill("#room-input", room);
  await page.click("#join");
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

async function main() {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await startServer();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const pages = [];
  let failure = null;
  try {
    const context = await browser.newContext({ viewport: { width: 900, height: 560 } });
    context.setDefaultTimeout(WAIT_MS);
    const a = await context.newPage();
    const b = await context.newPage();
    pages.push(["a", a], ["b", b]);
    watch(a, "page A");
    watch(b, "page B");
    for (const [name, page] of [["page A", a], ["page B", b]]) {
      await page.goto(CHAT_URL, { timeout: WAIT_MS });
      await waitState(page, name, "open");
    }
    const meB = await b.textContent("#me");

    // Both join a room; each sees the other there, and B typing.
    await join(a, ROOM);
    await join(b, ROOM);
    await waitRoomOnline(a, "page A", ROOM, 2);
    await waitRoomOnline(b, "page B", ROOM, 2);
    await b.fill("#text", "typing…");
    await b.dispatchEvent("#text", "input");
    await waitFor(a, "page A", `no "${meB} is typing…"`, (me) =>
      document.querySelector("#typing")?.textContent === `${me} is typing…`, meB);
    const before = `before the restart ${Date.now()}`;
    await send(a, before);
    await waitMessage(b, "page B", before);
    await waitFor(a, "page A", "the typing indicator did not clear", () =>
      document.querySelector("#typing")?.textContent === "", null);

    // The server goes away: both tabs try to reconnect.
    await killServer();
    await waitState(a, "page A", "reconnecting");
    await waitState(b, "page B", "reconnecting");

    // It comes back on the same port: both are open again, back in their
    // rooms (the new server knows the room only from the replayed joins).
    await startServer();
    await waitState(a, "page A", "open");
    await waitState(b, "page B", "open");
    await waitRoomOnline(a, "page A", ROOM, 2);
    await waitRoomOnline(b, "page B", ROOM, 2);
    await waitRoomOnline(a, "page A", "general", 2);
    const after = `after the restart ${Date.now()}`;
    await send(a, after);
    await waitMessage(a, "page A", after);
    await waitMessage(b, "page B", after);
    await waitMessage(b, "page B", before); // what was shown stays

    // B leaves the room; A sees one member left.
    await b.click(`#rooms li[data-room="${ROOM}"] .room-leave`);
    await waitRoomOnline(a, "page A", ROOM, 1);
    await waitFor(b, "page B", `room ${ROOM} still listed`, (room) =>
      !document.querySelector(`#rooms li[data-room="${room}"]`), ROOM);

    if (problems.length) throw new Error(`browser reported problems:\n  ${problems.join("\n  ")}`);
  } catch (err) {
    failure = err;
  } finally {
    for (const [name, page] of pages) {
      const file = path.join(SCREENSHOT_DIR, `chat-reconnect-${name}.png`);
      try {
        await page.screenshot({ path: file, timeout: WAIT_MS });
        console.log(`screenshot: ${file}`);
      } catch (err) {
        console.error(`screenshot of page ${name} failed: ${err.message}`);
      }
    }
    await browser.close();
    await killServer();
  }
  if (failure) throw failure;
  console.log(`chat reconnect OK: two tabs on ${CHAT_URL} rejoined room ${ROOM} after a server restart and chatted`);
}

// A hard cap in case something hangs outside the bounded waits.
const watchdog = setTimeout(() => {
  console.error("chat reconnect FAILED: watchdog timeout (120 s)");
  server?.kill("SIGKILL");
  process.exit(1);
}, 120_000);

main().then(
  () => clearTimeout(watchdog),
  async (err) => {
    clearTimeout(watchdog);
    await killServer().catch(() => {});
    console.error(`chat reconnect FAILED: ${err.stack || err.message}`);
    process.exitCode = 1;
  },
);
