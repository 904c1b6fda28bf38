// Browser smoke test of the chat example: two tabs of Debian's chromium
// (driven by playwright-core) chat with each other.
//
//   cargo run -p chat &                       # serves http://127.0.0.1:3001/
//   (cd .ci/browser && npm ci && node chat-smoke.mjs)
//
// Env: CHAT_URL (default http://127.0.0.1:3001/), SCREENSHOT_DIR (default
// /tmp/liweb-screenshots), CHROMIUM (default /usr/bin/chromium), CHAT_SECRET
// (the server's LIWEB_SECRET: each page first gets a wrong secret, must show
// the refusal and ask again, then gets the right one).
// Exits non-zero on any failure; screenshots are saved either way.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

const CHAT_URL = process.env.CHAT_URL || "http://127.0.0.1:3001/";
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || "/tmp/liweb-screenshots";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 10_000;
const CHAT_SECRET = process.env.CHAT_SECRET || "";
const SHOTS = CHAT_SECRET ? "chat-secret" : "chat";

const problems = []; // console errors, page errors, failed requests

function watch(page, name) {
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${name} console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`${name} pageerror: ${err.message}`));
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`${name} HTTP ${res.status()}: ${res.url()}`);
  });
  page.on("requestfailed", (req) =>
    problems.push(`${name} request failed: ${req.url()} ${req.failure()?.errorText ?? ""}`),
  );
}

/** Waits until `#state` reads "open" and the welcome has set `#me`. */
async function waitOpen(page, name) {
  await page.waitForFunction(
    () =>
      document.querySelector("#state")?.textContent === "open" &&
      document.querySelector("#state")?.dataset.state === "open" &&
      !["", "…"].includes(document.querySelector("#me")?.textContent ?? ""),
    null,
    { timeout: WAIT_MS },
  ).catch((err) => {
    throw new Error(`${name}: #state never showed "open" with a welcome id: ${err.message}`);
  });
}

/** Answers the secret prompt: a wrong secret first, which must be refused, then the right one. */
async function login(page, name) {
  await page.waitForSelector("#login:not([hidden])", { timeout: WAIT_MS }).catch((err) => {
    throw new Error(`${name}: the page never asked for the secret: ${err.message}`);
  });
  await page.fill("#secret", `not-${CHAT_SECRET}`);
  await page.click("#login-button");
  await page.waitForFunction(
    () => document.querySelector("#login-error")?.textContent === "invalid secret" &&
      !document.querySelector("#login")?.hidden,
    null,
    { timeout: WAIT_MS },
  ).catch((err) => {
    throw new Error(`${name}: a wrong secret was not refused with "invalid secret": ${err.message}`);
  });
  await page.fill("#secret", CHAT_SECRET);
  await page.click("#login-button");
}

/** Waits until `#online` shows `n`. */
async function waitOnline(page, name, n) {
  await page.waitForFunction(
    (n) => document.querySelector("#online")?.textContent === String(n),
    n,
    { timeout: WAIT_MS },
  ).catch(async () => {
    const shown = await page.textContent("#online");
    throw new Error(`${name}: #online shows ${JSON.stringify(shown)}, expected ${n}`);
  });
}

/** Waits for a chat message with `text` in `#messages`; returns its author label and classes. */
async function waitMessage(page, name, text) {
  const handle = await page.waitForFunction(
    (text) => {
      for (const li of document.querySelectorAll("#messages li.msg")) {
        if (li.querySelector(".text")?.textContent === text) {
          return { author: li.querySelector(".author")?.textContent, own: li.classList.contains("own") };
        }
      }
      return null;
    },
    text,
    { timeout: WAIT_MS },
  ).catch(async () => {
    const shown = await page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent));
    throw new Error(`${name}: message ${JSON.stringify(text)} not in #messages; shown: ${JSON.stringify(shown)}`);
  });
  return handle.jsonValue();
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForFunction(() => document.querySelector("#text")?.value === "", null, {
    timeout: WAIT_MS,
  });
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function main() {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
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

    await a.goto(CHAT_URL, { timeout: WAIT_MS });
    if (CHAT_SECRET) await login(a, "page A");
    await waitOpen(a, "page A");
    await b.goto(CHAT_URL, { timeout: WAIT_MS });
    if (CHAT_SECRET) await login(b, "page B");
    await waitOpen(b, "page B");

    await waitOnline(a, "page A", 2);
    await waitOnline(b, "page B", 2);
    const meA = await a.textContent("#me");
    const meB = await b.textContent("#me");
    check(meA !== meB, `both pages show the same id ${meA}`);
    check(/^guest-[0-9a-f]{8}$/.test(meA), `page A should show a server-issued name, not ${meA}`);

    const fromA = `hello from A ${Date.now()}`;
    await send(a, fromA);
    const aSeesA = await waitMessage(a, "page A", fromA);
    const bSeesA = await waitMessage(b, "page B", fromA);
    check(aSeesA.own && aSeesA.author === `${meA} (you)`, `page A should mark its own message: ${JSON.stringify(aSeesA)}`);
    check(!bSeesA.own && bSeesA.author === meA, `page B should credit ${meA}: ${JSON.stringify(bSeesA)}`);

    const fromB = `and hello back from B ${Date.now()}`;
    await send(b, fromB);
    const bSeesB = await waitMessage(b, "page B", fromB);
    const aSeesB = await waitMessage(a, "page A", fromB);
    check(bSeesB.own && bSeesB.author === `${meB} (you)`, `page B should mark its own message: ${JSON.stringify(bSeesB)}`);
    check(!aSeesB.own && aSeesB.author === meB, `page A should credit ${meB}: ${JSON.stringify(aSeesB)}`);

    check(problems.length === 0, `browser reported problems:\n  ${problems.join("\n  ")}`);
  } catch (err) {
    failure = err;
  } finally {
    for (const [name, page] of pages) {
      const file = path.join(SCREENSHOT_DIR, `${SHOTS}-${name}.png`);
      try {
        await page.screenshot({ path: file, timeout: WAIT_MS });
        console.log(`screenshot: ${file}`);
      } catch (err) {
        console.error(`screenshot of page ${name} failed: ${err.message}`);
      }
    }
    await browser.close();
  }
  if (failure) throw failure;
  const mode = CHAT_SECRET ? " after a refused and an accepted secret" : "";
  console.log(`chat smoke OK: two tabs on ${CHAT_URL} exchanged messages${mode}, online count 2`);
}

// A hard cap in case something hangs outside the bounded waits.
const watchdog = setTimeout(() => {
  console.error("chat smoke FAILED: watchdog timeout (120 s)");
  process.exit(1);
}, 120_000);

main().then(
  () => {
    clearTimeout(watchdog);
  },
  (err) => {
    clearTimeout(watchdog);
    console.error(`chat smoke FAILED: ${err.stack || err.message}`);
    process.exitCode = 1;
  },
);
