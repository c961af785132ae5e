// The browser client module (clients/js/roomcast.js, served by the edge at
// /roomcast.js) in headless Chromium against real roomcast-core and
// roomcast-edge binaries on loopback port 0: WebSocket requests and events,
// reconnect and resume after an edge restart (no gap, no duplicate), a core
// restart (recovered: false), the SSE transport, a 4500 close that must not
// reconnect, and the "auto" fallback to SSE.
//
// Each test opens its own browser context on a page of the edge's origin
// (/healthz) and imports the module from there, so it is the module the edge
// embeds that is tested.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { edgeBin, httpRequest, publish, startCore, startEdge, startProcess, stopProcess, waitFor } from "../integration/lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const chromiumPath = "/usr/bin/chromium";
const WAIT = 15000; // every wait on the page is bounded by this
// Poll on a timer: requestAnimationFrame barely runs in a background page.
const POLL = { timeout: WAIT, polling: 50 };
const TEST = { timeout: 90000 };
// Fast reconnects so the tests do not wait for production backoff.
const FAST = { reconnect: { initialDelay: 100, maxDelay: 400 } };

let browser;

before(async () => {
  // Fail (not skip) when the browser is missing: scripts/install-deps.sh installs it.
  assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} is missing; run scripts/install-deps.sh`);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 30000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}, TEST);

after(async () => {
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 15000).unref())]);
}, TEST);

// A fresh page on the edge's origin with the module imported and a small
// recorder installed as window.H.
async function openPage(edge) {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const sse = []; // URLs and Last-Event-ID headers of /sse requests
  page.on("request", (r) => {
    if (new URL(r.url()).pathname !== "/sse") return;
    const entry = { url: r.url(), lastEventId: null };
    entry.done = r.allHeaders().then(
      (h) => (entry.lastEventId = h["last-event-id"] ?? null),
      () => {},
    );
    sse.push(entry);
  });
  const res = await page.goto(`http://${edge.address}/healthz`, { timeout: WAIT });
  assert.equal(res.status(), 200);
  await page.evaluate(async () => {
    const mod = await import("/roomcast.js");
    const H = {
      mod,
      clients: [],
      events: [],
      msgs: {},
      sockets: [],
      // extra.spy: record every WebSocket the client opens in H.sockets;
      // extra.blockWs: every WebSocket goes to a closed port.
      make(opts, rooms = [], extra = {}) {
        if (extra.spy) {
          opts.WebSocket = class extends WebSocket {
            constructor(...args) {
              super(...args);
              H.sockets.push(this);
            }
          };
        }
        // extra.duplicate: every room message frame reaches the client twice.
        if (extra.duplicate) {
          opts.WebSocket = class extends WebSocket {
            set onmessage(fn) {
              super.onmessage = (ev) => {
                fn(ev);
                if (ev.data.split("\n").some((f) => JSON.parse(f).message)) fn(ev);
              };
            }
          };
        }
        if (extra.blockWs) {
          opts.WebSocket = class extends WebSocket {
            constructor() {
              super("ws://127.0.0.1:9/ws");
              H.sockets.push(this);
            }
          };
        }
        const c = new mod.Roomcast("", opts);
        const idx = H.clients.push(c) - 1;
        c.on("state", (e) =>
          H.events.push({ c: idx, type: "state", state: e.state, code: e.code, reason: e.reason, reconnect: e.reconnect, transport: e.transport }),
        );
        c.on("error", (e) => H.events.push({ c: idx, type: "error", code: e.code, message: e.message, room: e.room }));
        for (const r of rooms) H.join(idx, r);
        return idx;
      },
      join(idx, name, options) {
        const room = H.clients[idx].join(name, options);
        const key = `${idx}/${name}`;
        H.msgs[key] ||= [];
        room.on("message", (m) => H.msgs[key].push({ epoch: m.position.epoch, offset: m.position.offset, data: m.data }));
        room.on("join", (j) =>
          H.events.push({ c: idx, type: "join", room: name, recovered: j.recovered, resumed: j.resumed, epoch: j.position.epoch, offset: j.position.offset }),
        );
        return room;
      },
      of(idx, type) {
        return H.events.filter((e) => e.c === idx && e.type === type);
      },
    };
    window.H = H;
  });
  return {
    page,
    context,
    errors,
    sse,
    // Waits (bounded) until fn(arg) is truthy in the page; returns its value.
    until: async (fn, arg) => (await page.waitForFunction(fn, arg, POLL)).jsonValue(),
    eval: (fn, arg) => page.evaluate(fn, arg),
    close: () => Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 10000).unref())]),
  };
}

// Offsets "1".."n" in order, each once, in one epoch.
function assertContiguous(msgs, n, what) {
  assert.deepEqual(
    msgs.map((m) => m.offset),
    Array.from({ length: n }, (_, i) => String(i + 1)),
    `${what}: offsets ${msgs.map((m) => m.offset).join(",")}`,
  );
  assert.equal(new Set(msgs.map((m) => m.epoch)).size, 1, `${what}: one epoch`);
}

async function restartEdgeOnSameAddress(address, core) {
  const edge = await startProcess(edgeBin, [`--listen=${address}`, `--core=${core.address}`, "--shutdown_grace=1s"]);
  await waitFor(async () => (await httpRequest(edge.address, { path: "/healthz" })).status === 200, WAIT, "restarted edge ready");
  return edge;
}

describe("the module as the edge serves it", TEST, () => {
  test("GET /roomcast.js is the module, as JavaScript", async () => {
    const core = await startCore();
    const edge = await startEdge(core);
    try {
      const res = await httpRequest(edge.address, { path: "/roomcast.js" });
      assert.equal(res.status, 200);
      assert.match(res.headers["content-type"], /^text\/javascript/);
      assert.equal(res.body, fs.readFileSync(path.join(here, "..", "..", "clients", "js", "roomcast.js"), "utf8"));
    } finally {
      await stopProcess(edge);
      await stopProcess(core);
    }
  });
});

describe("docs/js-client.md", TEST, () => {
  // The intro example, copied from the doc as it stands, on the setup
  // scripts/run.sh starts (a "chat" namespace): it must run as written.
  test("the intro example runs verbatim", TEST, async () => {
    const doc = fs.readFileSync(path.join(here, "..", "..", "docs", "js-client.md"), "utf8");
    const example = doc.match(/<script type="module">\n([\s\S]*?)<\/script>/)[1];
    const importLine = 'import { Roomcast } from "/roomcast.js";';
    assert.ok(example.includes(importLine), "the example imports the module from /roomcast.js");
    const body = example.replace(importLine, 'const { Roomcast } = await import("/roomcast.js");');
    const core = await startCore(["--namespaces=chat"]);
    const edge = await startEdge(core);
    const p = await openPage(edge);
    try {
      const result = await p.eval(async (code) => {
        const shown = [];
        window.show = (data) => shown.push(data);
        window.reloadFromHistory = () => shown.push("reload");
        const run = new Function(`return (async () => { ${code}; return { position, members, messages }; })()`);
        const { position, members, messages } = await run();
        return { position, members: members.length, messages: messages.map((m) => m.data), shown };
      }, body);
      assert.equal(result.position.offset, "1");
      assert.equal(result.members, 1);
      assert.deepEqual(result.messages, [{ text: "hello" }]);
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
      await stopProcess(edge);
      await stopProcess(core);
    }
  });
});

describe("WebSocket transport", TEST, () => {
  let core, edge;
  before(async () => {
    core = await startCore();
    edge = await startEdge(core);
  }, TEST);
  after(async () => {
    if (edge) await stopProcess(edge);
    if (core) await stopProcess(core);
  }, TEST);

  test("join, publish, receive JSON; presence, history, errors, leave", TEST, async () => {
    const p = await openPage(edge);
    try {
      await p.eval(() => {
        H.make({}, ["chat"]);
        H.make({}, ["chat"]);
      });
      await p.until(() => H.of(0, "join").length === 1 && H.of(1, "join").length === 1);
      const states = await p.eval(() => H.of(0, "state").map((e) => [e.state, e.transport]));
      assert.deepEqual(states, [["connecting", null], ["connected", "websocket"]]);
      const join = await p.eval(() => H.of(0, "join")[0]);
      assert.equal(join.recovered, true);
      assert.equal(join.resumed, false);
      const ready = await p.eval(() => H.clients[0].room("chat").ready(1000));
      assert.equal(ready.recovered, true);
      assert.equal(ready.position.epoch, join.epoch);

      const position = await p.eval(() => H.clients[0].room("chat").publish({ text: "hi", n: [1, 2] }));
      assert.equal(position.offset, "1");
      assert.ok(position.epoch.length > 0);
      await p.until(() => H.msgs["1/chat"].length === 1 && H.msgs["0/chat"].length === 1);
      const got = await p.eval(() => H.msgs["1/chat"][0]);
      assert.deepEqual(got.data, { text: "hi", n: [1, 2] });
      assert.equal(got.offset, "1");

      // A publish from outside (POST /publish) reaches both, in order.
      assert.equal((await publish(edge, "chat", "two")).status, 200);
      await p.until(() => H.msgs["0/chat"].length === 2 && H.msgs["1/chat"].length === 2);
      assert.deepEqual(await p.eval(() => H.msgs["0/chat"].map((m) => m.data)), [{ text: "hi", n: [1, 2] }, "two"]);

      const members = await p.eval(() => H.clients[0].room("chat").presence());
      assert.equal(members.length, 2);
      const history = await p.eval(() => H.clients[0].room("chat").history({ limit: 1, reverse: true }));
      assert.deepEqual(history.messages.map((m) => [m.position.offset, m.data]), [["2", "two"]]);
      assert.equal(history.position.offset, "2");

      // A server error rejects with the numeric gRPC code.
      const err = await p.eval(() =>
        H.clients[0].publish("bad room!", 1).then(
          () => null,
          (e) => ({ name: e.name, code: e.code, message: e.message }),
        ),
      );
      assert.equal(err.name, "RoomcastError");
      assert.equal(err.code, 3);

      // Leave right after join (before the edge answered), then join again:
      // the module must not leave the edge thinking the room is still joined.
      await p.eval(() => {
        const r = H.clients[0].join("brief");
        r.leave();
      });
      const rejoined = await p.eval(() => H.clients[0].room("brief") ?? null);
      assert.equal(rejoined, null);
      await p.eval(() => H.join(0, "brief"));
      await p.until(() => H.of(0, "join").some((e) => e.room === "brief"));
      assert.deepEqual(await p.eval(() => H.of(0, "error")), []);

      // Leaving stops delivery at once.
      await p.eval(() => H.clients[1].room("chat").leave());
      await publish(edge, "chat", "three");
      await p.until(() => H.msgs["0/chat"].length === 3);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await p.eval(() => H.msgs["1/chat"].length), 2);

      await p.eval(() => H.clients.forEach((c) => c.close()));
      const last = await p.eval(() => H.of(0, "state").at(-1));
      assert.equal(last.state, "disconnected");
      assert.equal(last.reconnect, false);
      const rejected = await p.eval(() => H.clients[0].publish("chat", 1).then(() => null, (e) => e.code));
      assert.equal(rejected, "closed");
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
    }
  });

  test("a 4500 close (too many bad frames) is final: no reconnect", TEST, async () => {
    const p = await openPage(edge);
    try {
      await p.eval(() => H.make({ reconnect: { initialDelay: 50, maxDelay: 100 } }, ["strict"], { spy: true }));
      await p.until(() => H.of(0, "join").length === 1);
      await p.eval(() => {
        for (let i = 0; i < 25; i++) H.sockets[0].send("not a frame");
      });
      const final = await p.until(() => H.of(0, "state").find((e) => e.state === "disconnected"));
      assert.equal(final.code, 4500);
      assert.equal(final.reconnect, false);
      assert.ok(final.reason.length > 0, "the reason is reported");
      assert.ok((await p.eval(() => H.of(0, "error").length)) > 0, "the error replies were reported");
      // Well past several backoff delays: still one socket, still disconnected.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await p.eval(() => H.sockets.length), 1);
      assert.equal(await p.eval(() => H.clients[0].state), "disconnected");
      const rejected = await p.eval(() => H.clients[0].publish("strict", 1).then(() => null, (e) => e.code));
      assert.equal(rejected, "disconnected");
      await p.eval(() => H.clients[0].close());
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
    }
  });
});

describe("reconnect and resume", TEST, () => {
  test("after an edge restart on the same port: by itself, no gap, no duplicate", TEST, async () => {
    const core = await startCore();
    let edge = await startEdge(core);
    const helper = await startEdge(core); // publishes while the first edge is down
    const address = edge.address;
    const p = await openPage(edge);
    try {
      // Every message frame is delivered to the module twice, so its own
      // de-duplication is exercised too, not only the edge's exact resume.
      await p.eval((opts) => H.make(opts, ["resume"], { duplicate: true }), FAST);
      await p.until(() => H.of(0, "join").length === 1);
      for (let i = 1; i <= 5; i++) assert.equal((await publish(edge, "resume", { i })).status, 200);
      await p.until(() => H.msgs["0/resume"].length === 5);

      assert.equal(await stopProcess(edge), 0);
      const down = await p.until(() => H.of(0, "state").find((e) => e.state === "connecting" && e.code));
      assert.equal(down.code, 1001);
      assert.equal(down.reconnect, true);
      for (let i = 6; i <= 15; i++) assert.equal((await publish(helper, "resume", { i })).status, 200);

      edge = await restartEdgeOnSameAddress(address, core);
      // More while the client is (re)connecting to the new edge.
      for (let i = 16; i <= 25; i++) assert.equal((await publish(edge, "resume", { i })).status, 200);

      await p.until(() => H.msgs["0/resume"].length >= 25);
      await new Promise((r) => setTimeout(r, 300)); // anything extra would show up now
      const msgs = await p.eval(() => H.msgs["0/resume"]);
      assertContiguous(msgs, 25, "resume");
      assert.deepEqual(msgs.map((m) => m.data.i), Array.from({ length: 25 }, (_, i) => i + 1));

      const joins = await p.eval(() => H.of(0, "join"));
      assert.ok(joins.length >= 2, `${joins.length} joins`);
      for (const j of joins.slice(1)) {
        assert.equal(j.resumed, true);
        assert.equal(j.recovered, true);
      }
      const states = await p.eval(() => H.of(0, "state").map((e) => e.state));
      assert.deepEqual(states.slice(0, 3), ["connecting", "connected", "connecting"]);
      assert.equal(states.at(-1), "connected");
      assert.ok(!states.includes("disconnected"), states.join(","));

      // Live traffic after the resume still flows.
      await p.eval(() => H.clients[0].room("resume").publish({ i: 26 }));
      await p.until(() => H.msgs["0/resume"].length === 26);
      await p.eval(() => H.clients[0].close());
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
      await stopProcess(edge);
      await stopProcess(helper);
      await stopProcess(core);
    }
  });

  test("after a core restart the re-join says recovered: false", TEST, async () => {
    let core = await startCore();
    const edge = await startEdge(core);
    const address = core.address;
    const p = await openPage(edge);
    try {
      await p.eval((opts) => H.make(opts, ["epoch"]), FAST);
      await p.until(() => H.of(0, "join").length === 1);
      for (let i = 1; i <= 3; i++) await publish(edge, "epoch", i);
      await p.until(() => H.msgs["0/epoch"].length === 3);
      const before = await p.eval(() => H.msgs["0/epoch"][2]);

      assert.equal(await stopProcess(core), 0);
      const down = await p.until(() => H.of(0, "state").find((e) => e.state === "connecting" && e.code));
      assert.ok(down.code === 4000 || down.code === 1001, `close code ${down.code}`);
      assert.equal(down.reconnect, true);
      core = await startCore([], address);

      const rejoin = await p.until(() => H.of(0, "join")[1]);
      assert.equal(rejoin.resumed, true);
      assert.equal(rejoin.recovered, false);
      assert.notEqual(rejoin.epoch, before.epoch);
      assert.equal(await p.eval(() => H.clients[0].room("epoch").recovered), false);

      // The new epoch starts at offset 1 again, and it is delivered.
      await publish(edge, "epoch", "new");
      await p.until(() => H.msgs["0/epoch"].length === 4);
      const m = await p.eval(() => H.msgs["0/epoch"][3]);
      assert.equal(m.offset, "1");
      assert.equal(m.data, "new");
      assert.equal(m.epoch, rejoin.epoch);
      await p.eval(() => H.clients[0].close());
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
      await stopProcess(edge);
      await stopProcess(core);
    }
  });
});

describe("SSE transport", TEST, () => {
  test("receives, publishes with POST, re-opens with its cursor when rooms change", TEST, async () => {
    const core = await startCore();
    const edge = await startEdge(core);
    const p = await openPage(edge);
    try {
      await p.eval((opts) => H.make({ ...opts, transport: "sse" }, ["feed"]), FAST);
      await p.until(() => H.of(0, "join").length === 1);
      assert.equal(await p.eval(() => H.clients[0].transport), "sse");
      assert.equal(p.sse.length, 1, "one stream at start");
      const position = await p.eval(() => H.clients[0].room("feed").publish({ n: 1 }));
      assert.equal(position.offset, "1");
      await publish(edge, "feed", { n: 2 });
      await publish(edge, "feed", { n: 3 });
      await p.until(() => H.msgs["0/feed"].length === 3);
      assert.deepEqual(await p.eval(() => H.msgs["0/feed"].map((m) => m.data.n)), [1, 2, 3]);

      // Presence and history are WebSocket-only: a clear rejection.
      const err = await p.eval(() => H.clients[0].room("feed").presence().then(() => null, (e) => ({ code: e.code, message: e.message })));
      assert.equal(err.code, "unsupported");
      assert.match(err.message, /SSE/);

      // A second room re-opens the stream with the first room's cursor.
      await p.eval(() => H.join(0, "feed2"));
      await p.until(() => H.of(0, "join").some((e) => e.room === "feed2"));
      await publish(edge, "feed", { n: 4 });
      await p.eval(() => H.clients[0].room("feed2").publish("x"));
      await p.until(() => H.msgs["0/feed"].length === 4 && H.msgs["0/feed2"].length === 1);
      await new Promise((r) => setTimeout(r, 200));
      assertContiguous(await p.eval(() => H.msgs["0/feed"]), 4, "feed");
      const epoch = await p.eval(() => H.msgs["0/feed"][0].epoch);
      const reopen = p.sse.at(-1);
      const url = new URL(reopen.url);
      assert.deepEqual(url.searchParams.getAll("room"), ["feed", "feed2"]);
      assert.equal(url.searchParams.get("lastEventId"), `feed ${epoch} 3`);
      const joins = await p.eval(() => H.of(0, "join").filter((e) => e.room === "feed"));
      assert.equal(joins.at(-1).recovered, true);
      await p.eval(() => H.clients[0].close());
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
      await stopProcess(edge);
      await stopProcess(core);
    }
  });

  test("after an edge restart EventSource resumes: no gap, no duplicate", TEST, async () => {
    const core = await startCore();
    let edge = await startEdge(core);
    const helper = await startEdge(core);
    const address = edge.address;
    const p = await openPage(edge);
    try {
      await p.eval((opts) => H.make({ ...opts, transport: "sse" }, ["ticker"]), FAST);
      await p.until(() => H.of(0, "join").length === 1);
      for (let i = 1; i <= 3; i++) await publish(edge, "ticker", i);
      await p.until(() => H.msgs["0/ticker"].length === 3);
      assert.equal(await stopProcess(edge), 0);
      await p.until(() => H.of(0, "state").some((e) => e.state === "connecting" && e.code));
      for (let i = 4; i <= 8; i++) await publish(helper, "ticker", i);
      edge = await restartEdgeOnSameAddress(address, core);
      for (let i = 9; i <= 10; i++) await publish(edge, "ticker", i);
      await p.until(() => H.msgs["0/ticker"].length >= 10);
      await new Promise((r) => setTimeout(r, 300));
      const msgs = await p.eval(() => H.msgs["0/ticker"]);
      assertContiguous(msgs, 10, "ticker");
      assert.deepEqual(msgs.map((m) => m.data), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      const joins = await p.eval(() => H.of(0, "join"));
      assert.equal(joins.at(-1).recovered, true);
      await p.eval(() => H.clients[0].close());
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
      await stopProcess(edge);
      await stopProcess(helper);
      await stopProcess(core);
    }
  });

  test('"auto" falls back to SSE when WebSocket cannot connect', TEST, async () => {
    const core = await startCore();
    const edge = await startEdge(core);
    const p = await openPage(edge);
    try {
      await p.eval((opts) => H.make({ ...opts, transport: "auto", fallbackAfter: 2 }, ["fallback"], { blockWs: true }), FAST);
      await p.until(() => H.of(0, "join").length === 1);
      assert.equal(await p.eval(() => H.clients[0].transport), "sse");
      assert.equal(await p.eval(() => H.sockets.length), 2);
      await p.eval(() => H.clients[0].room("fallback").publish("via POST"));
      await p.until(() => H.msgs["0/fallback"].length === 1);
      assert.equal(await p.eval(() => H.msgs["0/fallback"][0].data), "via POST");
      await p.eval(() => H.clients[0].close());
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
      await stopProcess(edge);
      await stopProcess(core);
    }
  });
});
