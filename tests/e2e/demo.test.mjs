// Browser end-to-end test of the demo page the edge serves at "/": two
// headless Chromium tabs chat over WebSocket in room "lobby" and watch the
// dashboard fed over SSE from room "stats", both through the client module
// (/roomcast.js); then the edge restarts on the same port and both tabs must
// resume by themselves, without showing old messages twice, and come back
// after a period of 503s (no core link).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { edgeBin, httpRequest, publish, startCore, startEdge, startProcess, stopProcess, waitFor } from "../integration/lib.mjs";

const chromiumPath = "/usr/bin/chromium";
const buildDir = process.env.ROOMCAST_BUILD_DIR || path.dirname(path.dirname(edgeBin));
const WAIT = 15000; // every wait on the page is bounded by this
// waitForFunction polls on requestAnimationFrame by default, which a background
// tab barely runs: poll on a timer instead.
const POLL = { timeout: WAIT, polling: 50 };
const TEST = { timeout: 90000 }; // and every test step by this

let core, edge, context, userDataDir;
const tabs = {}; // name -> { page, errors, sse: [{ url, lastEventId }], failed: [{ status, path }] }

before(async () => {
  // Fail (not skip) when the browser is missing: scripts/install-deps.sh installs it.
  assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} is missing; run scripts/install-deps.sh`);
  core = await startCore(["--stats_room=stats"]);
  edge = await startEdge(core);
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "roomcast-e2e-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    timeout: 30000,
    viewport: { width: 1100, height: 700 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
  context.setDefaultTimeout(WAIT);
}, TEST);

after(async () => {
  if (context) {
    await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 15000).unref())]);
  }
  if (edge) await stopProcess(edge);
  if (core) await stopProcess(core);
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
}, TEST);

async function openTab(name) {
  const page = context.pages().length && !Object.keys(tabs).length ? context.pages()[0] : await context.newPage();
  const tab = { page, errors: [], sse: [], failed: [], module: 0 };
  page.on("pageerror", (e) => tab.errors.push(String(e)));
  // Failed loads are checked through "response" below, with their URLs.
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource|WebSocket connection to/.test(m.text())) {
      tab.errors.push(`console: ${m.text()}`);
    }
  });
  page.on("response", (r) => {
    if (r.status() >= 400) tab.failed.push({ status: r.status(), path: new URL(r.url()).pathname });
    if (r.status() === 200 && new URL(r.url()).pathname === "/roomcast.js") tab.module++;
  });
  // EventSource (re)connections, with the headers the browser sent.
  page.on("request", (r) => {
    if (new URL(r.url()).pathname !== "/sse") return;
    const entry = { url: r.url(), lastEventId: null };
    entry.done = r.allHeaders().catch(() => r.headers()).then((h) => {
      entry.lastEventId = h["last-event-id"] ?? new URL(r.url()).searchParams.get("lastEventId");
    });
    tab.sse.push(entry);
  });
  await page.goto(`http://${edge.address}/`, { timeout: WAIT });
  await page.fill("#name", name);
  tabs[name] = tab;
  return tab;
}

const text = (page, sel) => page.locator(sel).textContent({ timeout: WAIT });
// Chat lines in #log, without the page's own notices (class "sys").
const logLines = (page) => page.locator("#log p:not(.sys)").allTextContents();
const sysLines = (page) => page.locator("#log p.sys").allTextContents();

// data-joins on #chat-state counts the successful joins of "lobby" (the
// module's "join" events): one more than before means the page is connected
// and subscribed again, so a message published now reaches it.
const joins = async (page) => Number((await page.locator("#chat-state").getAttribute("data-joins")) || 0);

async function waitJoined(page, atLeast) {
  await page.waitForFunction(
    (n) => {
      const s = document.getElementById("chat-state");
      return s.textContent === "connected" && Number(s.dataset.joins || 0) >= n;
    },
    atLeast,
    POLL,
  );
}

async function say(tab, message) {
  // Like a user: switch to the tab, type, press Send.
  await tab.page.bringToFront();
  await tab.page.fill("#text", message);
  await tab.page.click("#send button");
  // The form clears the input once it handed the message to the client.
  await tab.page.waitForFunction(() => document.getElementById("text").value === "", null, POLL);
}

async function waitLine(page, expected) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#log p")].some((p) => p.textContent === t),
    expected,
    POLL,
  );
}

async function dashTotal(page) {
  const t = await text(page, "#d-total");
  return /^\d+$/.test(t) ? Number(t) : NaN;
}

// Waits until the dashboard shows a number, then until it grows past it.
async function dashboardAdvances(page) {
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById("d-total").textContent), null, POLL);
  const first = await dashTotal(page);
  await page.waitForFunction(
    (n) => Number(document.getElementById("d-total").textContent) > n,
    first,
    POLL,
  );
  assert.equal(await text(page, "#dash-state"), "connected");
  return first;
}

const count = (lines, l) => lines.filter((x) => x === l).length;

test("two tabs chat over WebSocket", TEST, async () => {
  const a = await openTab("alice");
  const b = await openTab("bob");
  await waitJoined(a.page, 1);
  await waitJoined(b.page, 1);
  for (const t of [a, b]) assert.ok(t.module >= 1, "the page loaded the client module /roomcast.js");
  assert.equal(await text(a.page, "#chat-state"), "connected");
  assert.equal(await text(b.page, "#chat-state"), "connected");

  await say(a, "hello from A");
  await waitLine(b.page, "alice: hello from A");
  await waitLine(a.page, "alice: hello from A");
  await say(b, "hi from B");
  await waitLine(a.page, "bob: hi from B");
  await waitLine(b.page, "bob: hi from B");

  for (const t of [a, b]) {
    const lines = await logLines(t.page);
    assert.deepEqual(lines, ["alice: hello from A", "bob: hi from B"], "each message shown once, in order");
  }
  // Presence: both tabs are in the lobby.
  await a.page.waitForFunction(() => document.getElementById("members").textContent === "2", null, POLL);
});

test("the dashboard updates over SSE", TEST, async () => {
  for (const t of Object.values(tabs)) {
    await dashboardAdvances(t.page);
    assert.match(await text(t.page, "#d-rooms"), /^\d+$/);
    assert.match(await text(t.page, "#d-clients"), /^\d+$/);
  }
});

test("both tabs resume after the edge restarts on the same port", TEST, async () => {
  const { alice: a, bob: b } = tabs;
  const address = edge.address;
  const sseBefore = { a: a.sse.length, b: b.sse.length };
  const joined = { a: await joins(a.page), b: await joins(b.page) };

  await stopProcess(edge);
  edge = null;
  for (const t of [a, b]) {
    await t.page.waitForFunction(() => document.getElementById("chat-state").textContent !== "connected", null, POLL);
  }
  // A message published (through another edge) while the tabs are away: the
  // page resumes with `since`, so it must get it exactly once.
  const other = await startEdge(core);
  try {
    const res = await publish(other, "lobby", { name: "carol", text: "while you were away" });
    assert.equal(res.status, 200, res.body);
  } finally {
    await stopProcess(other);
  }
  edge = await startProcess(edgeBin, [`--listen=${address}`, `--core=${core.address}`, "--shutdown_grace=1s"]);
  assert.equal(edge.address, address);
  await waitFor(async () => (await httpRequest(edge.address, { path: "/healthz" })).status === 200, 10000, "edge ready");

  await waitJoined(a.page, joined.a + 1);
  await waitJoined(b.page, joined.b + 1);
  await say(a, "back after restart");
  await waitLine(b.page, "alice: back after restart");
  await waitLine(a.page, "alice: back after restart");
  await say(b, "me too");
  await waitLine(a.page, "bob: me too");

  for (const t of [a, b]) {
    const lines = await logLines(t.page);
    for (const l of ["alice: hello from A", "bob: hi from B", "carol: while you were away", "alice: back after restart"]) {
      assert.equal(count(lines, l), 1, `"${l}" shown once in ${JSON.stringify(lines)}`);
    }
    // The missed message was replayed before the live ones.
    assert.ok(lines.indexOf("carol: while you were away") < lines.indexOf("alice: back after restart"), JSON.stringify(lines));
    // The core kept the history, so the resume recovered everything.
    const notices = await sysLines(t.page);
    assert.ok(!notices.some((l) => l.includes("missed")), `no gap reported: ${JSON.stringify(notices)}`);
  }

  // The dashboard resumes too, and the browser asked to resume from the last
  // event it saw.
  for (const [k, t] of Object.entries({ a, b })) {
    await dashboardAdvances(t.page);
    const resumed = t.sse.slice(sseBefore[k]);
    assert.ok(resumed.length >= 1, "EventSource reconnected");
    await Promise.all(resumed.map((r) => r.done));
    assert.ok(resumed.some((r) => r.lastEventId), `resumed with Last-Event-ID: ${JSON.stringify(resumed)}`);
  }
});

// While an edge has no core link it answers /ws and /sse with 503. EventSource
// never retries after an HTTP error, so the client module must open a new
// stream itself, resuming with ?lastEventId.
test("both tabs recover after the edge answered 503 (no core link)", TEST, async () => {
  const { alice: a, bob: b } = tabs;
  const address = edge.address;
  const mark = { a: [a.failed.length, a.sse.length], b: [b.failed.length, b.sse.length] };
  const joined = { a: await joins(a.page), b: await joins(b.page) };

  await stopProcess(edge);
  edge = null;
  // Nothing listens on port 1: this edge stays without a core link.
  edge = await startProcess(edgeBin, [`--listen=${address}`, "--core=127.0.0.1:1", "--shutdown_grace=1s"]);
  assert.equal(edge.address, address);
  const [ma, mb] = [mark.a[0], mark.b[0]];
  await waitFor(
    () => [[a, ma], [b, mb]].every(([t, m]) => t.failed.slice(m).some((f) => f.status === 503 && f.path === "/sse")),
    WAIT,
    "both dashboards refused with 503",
  );
  await stopProcess(edge);
  edge = null;
  edge = await startProcess(edgeBin, [`--listen=${address}`, `--core=${core.address}`, "--shutdown_grace=1s"]);
  await waitFor(async () => (await httpRequest(edge.address, { path: "/healthz" })).status === 200, 10000, "edge ready");

  await waitJoined(a.page, joined.a + 1);
  await waitJoined(b.page, joined.b + 1);
  await say(b, "after the 503s");
  await waitLine(a.page, "bob: after the 503s");
  for (const [k, t] of Object.entries({ a, b })) {
    await dashboardAdvances(t.page);
    const reopened = t.sse.slice(mark[k][1]).filter((r) => new URL(r.url).searchParams.get("lastEventId"));
    assert.ok(reopened.length >= 1, `page reopened the stream with ?lastEventId: ${JSON.stringify(t.sse)}`);
    const lines = await logLines(t.page);
    assert.equal(new Set(lines).size, lines.length, `no duplicates: ${JSON.stringify(lines)}`);
    const notices = await sysLines(t.page);
    assert.ok(!notices.some((l) => l.includes("missed")), `no gap reported: ${JSON.stringify(notices)}`);
  }
});

// A core restart loses every room's history and gives the rooms new epochs:
// the tabs resume, the join says recovered: false, and the page says so.
test("both tabs say messages were missed after the core restarts", TEST, async () => {
  const { alice: a, bob: b } = tabs;
  const joined = { a: await joins(a.page), b: await joins(b.page) };
  // The old core's message count: the new core counts from 0 again.
  const totals = { a: await dashTotal(a.page), b: await dashTotal(b.page) };
  const address = core.address;
  await stopProcess(core);
  core = null;
  core = await startCore(["--stats_room=stats"], address);
  assert.equal(core.address, address);

  await waitJoined(a.page, joined.a + 1);
  await waitJoined(b.page, joined.b + 1);
  for (const t of [a, b]) {
    await t.page.waitForFunction(
      () => [...document.querySelectorAll("#log p.sys")].some((p) => p.textContent === "(some messages were missed)"),
      null,
      POLL,
    );
  }
  await say(a, "after the core restart");
  await waitLine(b.page, "alice: after the core restart");
  await waitLine(a.page, "alice: after the core restart");
  for (const t of [a, b]) {
    const lines = await logLines(t.page);
    assert.equal(new Set(lines).size, lines.length, `no duplicates: ${JSON.stringify(lines)}`);
  }
  // The dashboards follow the new core: its count is below the old one's
  // (which ran longer), then it grows.
  for (const [k, t] of Object.entries({ a, b })) {
    await t.page.waitForFunction((n) => Number(document.getElementById("d-total").textContent) < n, totals[k], POLL);
    await dashboardAdvances(t.page);
  }
});

test("screenshot and no page errors", TEST, async () => {
  const file = path.join(buildDir, "browser_e2e.png");
  await tabs.alice.page.screenshot({ path: file, fullPage: true, timeout: WAIT });
  console.log(`screenshot: ${file}`);
  for (const [name, t] of Object.entries(tabs)) {
    assert.deepEqual(t.errors, [], `page errors in ${name}`);
    // Only the 503s provoked above; the browser's own /favicon.ico probe may 404.
    const failed = t.failed.filter((f) => !(f.status === 503 || (f.status === 404 && f.path === "/favicon.ico")));
    assert.deepEqual(failed, [], `failed requests in ${name}`);
  }
});
