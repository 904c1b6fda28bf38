// Browser smoke test of the poll example: two tabs of Debian's chromium
// (driven by playwright-core) vote and see the same live tallies and each
// other in the presence list; a third tab comes, reloads (its old connection
// stays in the presence snapshot as offline, and must not be listed) and goes.
//
//   cargo run -p poll &                       # serves http://127.0.0.1:3002/
//   (cd .ci/browser && npm ci && node poll-smoke.mjs)
//
// Env: POLL_URL (default http://127.0.0.1:3002/), SCREENSHOT_DIR (default
// /tmp/liweb-screenshots), CHROMIUM (default /usr/bin/chromium).
// It resets the poll first, so run it against a server nobody else votes on.
// Exits non-zero on any failure; screenshots are saved either way.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

const POLL_URL = process.env.POLL_URL || "http://127.0.0.1:3002/";
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || "/tmp/liweb-screenshots";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 10_000;
const OPTIONS = ["red", "green", "blue", "yellow"];

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

/** Waits until `#state` reads "open", the welcome set `#me` and the option buttons are there. */
async function waitOpen(page, name) {
  await page.waitForFunction(
    (options) =>
      document.querySelector("#state")?.textContent === "open" &&
      document.querySelector("#state")?.dataset.state === "open" &&
      !["", "…"].includes(document.querySelector("#me")?.textContent ?? "") &&
      options.every((o) => document.querySelector(`#options button[data-option="${o}"]:not(:disabled)`)),
    OPTIONS,
    { timeout: WAIT_MS },
  ).catch((err) => {
    throw new Error(`${name}: never open with a welcome id and enabled option buttons: ${err.message}`);
  });
}

/** What a page shows: the counts per option, its own vote, the people listed. */
async function shown(page) {
  return page.evaluate(() => ({
    counts: Object.fromEntries(
      [...document.querySelectorAll("#options .count[data-option]")].map((el) => [el.dataset.option, el.textContent]),
    ),
    mine: [...document.querySelectorAll("#options button.mine")].map((b) => b.dataset.option),
    people: [...document.querySelectorAll("#people li")].map((li) => li.textContent),
    online: document.querySelector("#online")?.textContent,
  }));
}

/**
 * Waits until the page shows `counts` (every option; missing ones 0), its
 * own vote `mine` (an option or null) and, when given, `people` names
 * (exactly those, in any order).
 */
async function waitShows(page, name, { counts, mine, people }) {
  const want = {
    counts: Object.fromEntries(OPTIONS.map((o) => [o, String(counts[o] ?? 0)])),
    mine: mine === null ? [] : [mine],
    people: people ? [...people].sort() : null,
  };
  await page.waitForFunction(
    (want) => {
      const counts = Object.fromEntries(
        [...document.querySelectorAll("#options .count[data-option]")].map((el) => [el.dataset.option, el.textContent]),
      );
      const mine = [...document.querySelectorAll("#options button.mine")].map((b) => b.dataset.option);
      const people = [...document.querySelectorAll("#people li .name")].map((el) => el.textContent).sort();
      return (
        JSON.stringify(counts) === JSON.stringify(want.counts) &&
        JSON.stringify(mine) === JSON.stringify(want.mine) &&
        (want.people === null ||
          (JSON.stringify(people) === JSON.stringify(want.people) &&
            document.querySelector("#online")?.textContent === String(want.people.length)))
      );
    },
    want,
    { timeout: WAIT_MS },
  ).catch(async () => {
    throw new Error(`${name}: expected ${JSON.stringify(want)}, page shows ${JSON.stringify(await shown(page))}`);
  });
}

async function setName(page, name) {
  await page.fill("#name", name);
  await page.click("#name-save");
}

async function vote(page, option) {
  await page.click(`#options button[data-option="${option}"]`);
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
    // Reduced motion: the page then draws its bars without a transition, so
    // the screenshots show the final widths.
    const context = await browser.newContext({ viewport: { width: 900, height: 560 }, reducedMotion: "reduce" });
    context.setDefaultTimeout(WAIT_MS);
    const a = await context.newPage();
    const b = await context.newPage();
    pages.push(["a", a], ["b", b]);
    watch(a, "page A");
    watch(b, "page B");

    await a.goto(POLL_URL, { timeout: WAIT_MS });
    await waitOpen(a, "page A");
    await b.goto(POLL_URL, { timeout: WAIT_MS });
    await waitOpen(b, "page B");

    // Start from zero whatever the server saw before.
    await a.click("#reset");
    const zero = { counts: {}, mine: null };
    await waitShows(a, "page A", zero);
    await waitShows(b, "page B", zero);

    // Names reach the other tab through presence:update.
    await setName(a, "Alice");
    await setName(b, "Bob");
    const both = ["Alice", "Bob"];
    await waitShows(a, "page A", { ...zero, people: both });
    await waitShows(b, "page B", { ...zero, people: both });

    // Votes: both tabs show the same tallies, each its own vote.
    await vote(a, "red");
    await vote(b, "blue");
    await waitShows(a, "page A", { counts: { red: 1, blue: 1 }, mine: "red", people: both });
    await waitShows(b, "page B", { counts: { red: 1, blue: 1 }, mine: "blue", people: both });

    // B moves its vote twice.
    await vote(b, "red");
    await waitShows(a, "page A", { counts: { red: 2 }, mine: "red" });
    await waitShows(b, "page B", { counts: { red: 2 }, mine: "red" });
    await vote(b, "green");
    await waitShows(a, "page A", { counts: { red: 1, green: 1 }, mine: "red" });
    await waitShows(b, "page B", { counts: { red: 1, green: 1 }, mine: "green" });

    // A third tab (a fresh session, so no stored name) joins, votes and
    // leaves: its presence and its vote come and go in A and B.
    const other = await browser.newContext({ viewport: { width: 900, height: 560 } });
    const c = await other.newPage();
    watch(c, "page C");
    await c.goto(POLL_URL, { timeout: WAIT_MS });
    await waitOpen(c, "page C");
    const guest = `guest ${await c.textContent("#me")}`;
    await waitShows(c, "page C", { counts: { red: 1, green: 1 }, mine: null, people: [...both, guest] });
    await vote(c, "yellow");
    const withC = { counts: { red: 1, green: 1, yellow: 1 }, people: [...both, guest] };
    await waitShows(a, "page A", { ...withC, mine: "red" });
    await waitShows(b, "page B", { ...withC, mine: "green" });

    // C reloads: a new connection (a new guest), its old vote taken back.
    // Its presence:snapshot lists the old connection offline: not shown.
    await c.reload({ timeout: WAIT_MS });
    await waitOpen(c, "page C");
    const guest2 = `guest ${await c.textContent("#me")}`;
    if (guest2 === guest) throw new Error(`page C: same id after a reload: ${guest2}`);
    const withC2 = { counts: { red: 1, green: 1 }, people: [...both, guest2] };
    await waitShows(c, "page C", { ...withC2, mine: null });
    await waitShows(a, "page A", { ...withC2, mine: "red" });
    await waitShows(b, "page B", { ...withC2, mine: "green" });
    await other.close();
    await waitShows(a, "page A", { counts: { red: 1, green: 1 }, mine: "red", people: both });
    await waitShows(b, "page B", { counts: { red: 1, green: 1 }, mine: "green", people: both });

    const [shownA, shownB] = [await shown(a), await shown(b)];
    if (JSON.stringify(shownA.counts) !== JSON.stringify(shownB.counts)) {
      throw new Error(`the tabs disagree: A ${JSON.stringify(shownA)}, B ${JSON.stringify(shownB)}`);
    }
    for (const [name, page] of pages) {
      const bars = await page.$$eval("#options button[data-option] .bar", (els) =>
        els.map((el) => `${el.closest("button").dataset.option}=${el.style.width}`),
      );
      const want = ["red=50%", "green=50%", "blue=0%", "yellow=0%"];
      if (JSON.stringify(bars) !== JSON.stringify(want)) {
        throw new Error(`page ${name}: bars ${JSON.stringify(bars)}, expected ${JSON.stringify(want)}`);
      }
    }
    if (problems.length) throw new Error(`browser reported problems:\n  ${problems.join("\n  ")}`);
  } catch (err) {
    failure = err;
  } finally {
    for (const [name, page] of pages) {
      const file = path.join(SCREENSHOT_DIR, `poll-${name}.png`);
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
  console.log(`poll smoke OK: two tabs on ${POLL_URL} voted, moved votes, showed the same tallies and 2 people`);
}

// A hard cap in case something hangs outside the bounded waits.
const watchdog = setTimeout(() => {
  console.error("poll smoke FAILED: watchdog timeout (120 s)");
  process.exit(1);
}, 120_000);

main().then(
  () => {
    clearTimeout(watchdog);
  },
  (err) => {
    clearTimeout(watchdog);
    console.error(`poll smoke FAILED: ${err.stack || err.message}`);
    process.exitCode = 1;
  },
);
