// roomcast-edge against a real roomcast-core, both on loopback port 0,
// driven by real WebSocket and HTTP clients.
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, test } from "node:test";
import { Client, metrics, openSse, publish, roomsClient, startCore, startEdge, stopProcess, httpRequest, waitFor } from "./lib.mjs";

describe("edge with one core", { timeout: 60000 }, () => {
  let core, edge;
  before(async () => {
    core = await startCore(["--namespaces=feed:client_publish=false"]);
    edge = await startEdge(core, ["--max_rooms_per_connection=3", "--max_bad_requests=5", "--rate_limit=1000", "--rate_burst=1000"]);
  });
  after(async () => {
    assert.equal(await stopProcess(edge), 0);
    assert.equal(await stopProcess(core), 0);
  });

  test("healthz is ready while the core link is up", async () => {
    const res = await httpRequest(edge.address, { path: "/healthz" });
    assert.equal(res.status, 200);
  });

  test("join, publish and receive the published JSON value, not base64", async () => {
    const a = await Client.open(edge);
    const b = await Client.open(edge);
    const ja = await a.request({ join: { room: "chat" } });
    assert.ok(ja.reply.join, JSON.stringify(ja));
    await b.request({ join: { room: "chat" } });
    const pub = await a.request({ publish: { room: "chat", data: { text: "hi", n: [1, 2] } } });
    assert.equal(pub.reply.publish.position.offset, "1");
    await waitFor(() => b.messages("chat").length === 1, 5000, "b gets the message");
    const m = b.messages("chat")[0];
    assert.deepEqual(m.data, { text: "hi", n: [1, 2] });
    assert.equal(m.position.offset, "1");
    await a.close();
    await b.close();
  });

  test("a burst shares WebSocket messages (newline-separated frames), in order; newlines inside payload strings survive", async () => {
    const c = await Client.open(edge);
    await c.request({ join: { room: "burst" } });
    const before = c.wsMessages;
    const N = 50;
    // Published at once: the edge's write delay (20 ms by default) coalesces them.
    const results = await Promise.all(Array.from({ length: N }, (_, i) => publish(edge, "burst", { i, text: "a\nb" })));
    assert.ok(results.every((r) => r.status === 200));
    await waitFor(() => c.messages("burst").length === N, 5000, "every message");
    const got = c.messages("burst");
    assert.deepEqual(got.map((m) => Number(m.position.offset)), Array.from({ length: N }, (_, k) => k + 1));
    assert.ok(got.every((m) => m.data.text === "a\nb"));
    assert.ok(c.wsMessages - before < N, `${c.wsMessages - before} WebSocket messages for ${N} frames`);
    await c.close();
  });

  test("two hundred clients in one room all receive every message in order", async () => {
    const clients = await Promise.all(Array.from({ length: 200 }, () => Client.open(edge)));
    await Promise.all(clients.map((c) => c.request({ join: { room: "crowd" } })));
    const N = 30;
    for (let i = 1; i <= N; i++) {
      const r = await publish(edge, "crowd", { i });
      assert.equal(r.status, 200, r.body);
    }
    await waitFor(() => clients.every((c) => c.messages("crowd").length === N), 20000, "all deliveries");
    for (const c of clients) {
      const got = c.messages("crowd");
      assert.deepEqual(got.map((m) => m.data.i), Array.from({ length: N }, (_, k) => k + 1));
      assert.deepEqual(got.map((m) => Number(m.position.offset)), Array.from({ length: N }, (_, k) => k + 1));
    }
    await Promise.all(clients.map((c) => c.close()));
    await waitFor(async () => {
      const m = await metrics(edge);
      return m.websocket_connections === 0 && m.room_memberships === 0 && m.queued_bytes === 0;
    }, 10000, "counts back to zero");
  });

  test("rejoining with since replays exactly the missed messages, then the reply", async () => {
    const c = await Client.open(edge);
    await c.request({ join: { room: "resume" } });
    await publish(edge, "resume", 1);
    await publish(edge, "resume", 2);
    await waitFor(() => c.messages().length === 2);
    const last = c.messages().at(-1).position;
    await c.close();
    await publish(edge, "resume", 3);
    await publish(edge, "resume", 4);
    const d = await Client.open(edge);
    const reply = await d.request({ join: { room: "resume", since: last } });
    assert.equal(reply.reply.join.recovered, true);
    assert.deepEqual(d.messages().map((m) => m.data), [3, 4]);
    // The replayed messages come before the reply.
    const replyIndex = d.frames.indexOf(reply);
    assert.ok(d.frames.slice(0, replyIndex).filter((f) => f.message).length === 2);
    const stale = await d.request({ join: { room: "resume2", since: { epoch: "nope", offset: "5" } } });
    assert.equal(stale.reply.join.recovered, undefined); // false is omitted in canonical JSON
    await d.close();
  });

  test("malformed frames get an error with the request id and the connection stays usable", async () => {
    const c = await Client.open(edge);
    c.send("{not json");
    c.send({ id: 7, join: { rooom: "x" } });
    c.send({ id: 8, join: { room: "bad room" } });
    c.send({ id: 9, dance: {} });
    await waitFor(() => c.frames.filter((f) => f.error).length === 4, 5000, "four errors");
    const errors = c.frames.filter((f) => f.error);
    assert.equal(errors[0].id, undefined);
    assert.equal(errors[1].id, "7");
    assert.equal(errors[1].error.code, 3);
    assert.equal(errors[2].id, "8");
    assert.equal(errors[3].id, "9");
    const pong = await c.request({ ping: {} });
    assert.ok(pong.reply.pong !== undefined);
    await c.close();
  });

  test("repeated abuse closes the connection with 4500", async () => {
    const c = await Client.open(edge);
    for (let i = 0; i < 10; i++) c.send("garbage");
    const { code } = await c.closed;
    assert.equal(code, 4500);
  });

  test("a frame over the size limit closes with 1009", async () => {
    const c = await Client.open(edge);
    c.send(JSON.stringify({ id: 1, publish: { room: "x", data: "y".repeat(70 * 1024) } }));
    const { code } = await c.closed;
    assert.equal(code, 1009);
  });

  test("room limits and namespace permissions are errors, not closes", async () => {
    const c = await Client.open(edge);
    for (const r of ["r1", "r2", "r3"]) assert.ok((await c.request({ join: { room: r } })).reply);
    const over = await c.request({ join: { room: "r4" } });
    assert.equal(over.error.code, 8);
    const dup = await c.request({ join: { room: "r1" } });
    assert.equal(dup.error.code, 6);
    const denied = await c.request({ publish: { room: "feed:news", data: 1 } });
    assert.equal(denied.error.code, 7);
    assert.ok((await c.request({ leave: { room: "r1" } })).reply);
    assert.ok((await c.request({ join: { room: "r4" } })).reply.join);
    await c.close();
  });

  test("replies come in request order", async () => {
    const c = await Client.open(edge);
    for (let i = 1; i <= 20; i++) {
      c.send(i % 2 ? { id: i, join: { room: `order${i}` } } : { id: i, ping: {} });
      if (i % 2) c.send({ id: 100 + i, leave: { room: `order${i}` } });
    }
    await waitFor(() => c.frames.filter((f) => f.id).length === 30);
    const ids = c.frames.filter((f) => f.id).map((f) => Number(f.id));
    const sent = [];
    for (let i = 1; i <= 20; i++) {
      sent.push(i);
      if (i % 2) sent.push(100 + i);
    }
    assert.deepEqual(ids, sent);
    await c.close();
  });

  test("a leave sent right behind its join wins; requests with id 0 get no reply", async () => {
    const c = await Client.open(edge);
    c.send({ id: 1, join: { room: "flip" } });
    c.send({ id: 2, leave: { room: "flip" } });
    c.send({ id: 0, ping: {} });
    c.nextId = 10;
    await waitFor(() => c.frames.some((f) => f.id === "2"));
    await publish(edge, "flip", "after the leave");
    const pong = await c.request({ ping: {} }); // Everything before it was handled.
    assert.ok(pong.reply);
    assert.equal(c.messages("flip").length, 0);
    assert.equal(c.frames.filter((f) => f.reply?.pong !== undefined).length, 1);
    assert.ok((await c.request({ join: { room: "flip" } })).reply.join); // Not "already joined".
    await c.close();
  });

  test("presence: members and join/leave events", async () => {
    const a = await Client.open(edge);
    const b = await Client.open(edge);
    await a.request({ join: { room: "pres" } });
    await b.request({ join: { room: "pres" } });
    const p = await a.request({ presence: { room: "pres" } });
    assert.equal(p.reply.presence.clients.length, 2);
    await b.close();
    await waitFor(() => a.frames.some((f) => f.presence?.kind === "LEAVE"), 5000, "leave event");
  });

  test("history returns JSON payloads", async () => {
    await publish(edge, "hist", { k: 1 });
    await publish(edge, "hist", { k: 2 });
    const c = await Client.open(edge);
    const h = await c.request({ history: { room: "hist", limit: 1, reverse: true } });
    assert.deepEqual(h.reply.history.messages.map((m) => m.data), [{ k: 2 }]);
    await c.close();
  });

  test("SSE: headers, retry hint, join event, live messages with a cursor", async () => {
    const s = await openSse(edge, "room=news&room=sports");
    assert.equal(s.status, 200);
    assert.match(s.headers["content-type"], /^text\/event-stream/);
    assert.equal(s.headers["cache-control"], "no-cache");
    await waitFor(() => s.events.filter((e) => e.frame.reply?.join).length === 2, 5000, "two join events");
    assert.ok(s.retry > 0);
    await publish(edge, "news", "n1");
    await publish(edge, "sports", "s1");
    await waitFor(() => s.messages().length === 2);
    assert.match(s.lastId, /news \w+ 1/);
    assert.match(s.lastId, /sports \w+ 1/);
    s.close();
  });

  test("SSE: Last-Event-ID resumes exactly what was missed in every room", async () => {
    const s = await openSse(edge, "room=r-a&room=r-b");
    await waitFor(() => s.events.filter((e) => e.frame.reply?.join).length === 2);
    await publish(edge, "r-a", "a1");
    await publish(edge, "r-b", "b1");
    await waitFor(() => s.messages().length === 2);
    const lastId = s.lastId;
    s.close();
    await publish(edge, "r-a", "a2");
    await publish(edge, "r-b", "b2");
    await publish(edge, "r-a", "a3");
    const t = await openSse(edge, "room=r-a&room=r-b", { "Last-Event-ID": lastId });
    await waitFor(() => t.messages().length === 3, 5000, "replay");
    assert.deepEqual(t.messages().map((m) => m.data).sort(), ["a2", "a3", "b2"]);
    const joins = t.events.filter((e) => e.frame.reply?.join).map((e) => e.frame.reply.join);
    assert.ok(joins.every((j) => j.recovered === true));
    t.close();
  });

  test("SSE: a cursor from another epoch says not recovered", async () => {
    const s = await openSse(edge, "room=r-c", { "Last-Event-ID": "r-c deadbeef 3" });
    await waitFor(() => s.events.some((e) => e.frame.reply?.join));
    const join = s.events.find((e) => e.frame.reply?.join).frame.reply.join;
    assert.equal(join.recovered, undefined);
    s.close();
  });

  test("CORS: disallowed origins are refused; the preflight answers", async () => {
    const sse = await httpRequest(edge.address, { path: "/sse?room=x", headers: { origin: "http://evil.example" } });
    assert.equal(sse.status, 403);
    const pre = await httpRequest(edge.address, { method: "OPTIONS", path: "/publish", headers: { origin: "http://evil.example" } });
    assert.equal(pre.status, 403);
    await assert.rejects(Client.open(edge, { headers: { origin: "http://evil.example" } }), /403/);
  });

  test("a backend's Rooms.Disconnect closes that browser with its code; others stay", async () => {
    const rooms = await roomsClient(core);
    const target = await Client.open(edge);
    const other = await Client.open(edge);
    await target.request({ join: { room: "kick" } });
    await other.request({ join: { room: "kick" } });
    const members = (await rooms.call("presence", { room: "kick" })).clients;
    assert.equal(members.length, 2);
    // The first presence event a client sees is its own JOIN: that is its id.
    const targetId = target.frames.find((f) => f.presence).presence.client.clientId;
    const res = await rooms.call("disconnect", { clientId: targetId, reason: "kicked" });
    assert.equal(res.numDisconnected, 1);
    const closed = await target.closed;
    assert.equal(closed.code, 4502);
    assert.equal(closed.reason, "kicked");
    assert.equal(target.frames.find((f) => f.disconnect).disconnect.code, "DISCONNECTED");
    assert.ok((await other.request({ ping: {} })).reply);
    await other.close();
    rooms.close();
  });

  test("POST /publish errors are JSON with a matching HTTP status", async () => {
    const bad = await publish(edge, "bad room", 1);
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 3);
    const denied = await publish(edge, "feed:x", 1);
    assert.equal(denied.status, 403);
    const garbage = await httpRequest(edge.address, { method: "POST", path: "/publish", body: "{" });
    assert.equal(garbage.status, 400);
  });
});

describe("edge timeouts, rate limits and binary frames", { timeout: 60000 }, () => {
  let core, edge;
  before(async () => {
    core = await startCore();
    // --write_delay=0: this suite covers writes without coalescing.
    edge = await startEdge(core, ["--idle_timeout=1s", "--sse_heartbeat=200ms", "--rate_limit=5", "--rate_burst=5", "--max_bad_requests=100", "--write_delay=0"]);
  });
  after(async () => {
    await stopProcess(edge);
    await stopProcess(core);
  });

  test("binary subprotocol: protobuf frames both ways", async () => {
    const c = await Client.open(edge, { protocols: ["roomcast.v1.proto"] });
    assert.equal(c.ws.protocol, "roomcast.v1.proto");
    // ClientFrame{id: 1, ping: {}}: field 1 varint, field 7 empty message.
    c.ws.send(Buffer.from([0x08, 0x01, 0x3a, 0x00]));
    // ServerFrame{id: 1, reply: {pong: {}}}: 08 01, field 2 { field 6 {} }.
    await waitFor(() => c.frames.length === 1);
    assert.deepEqual([...c.frames[0]], [0x08, 0x01, 0x12, 0x02, 0x32, 0x00]);
    // ClientFrame{id: 2, join: {room: "b"}}: the reply is ServerFrame{id: 2, reply: ...}.
    c.ws.send(Buffer.from([0x08, 0x02, 0x12, 0x03, 0x0a, 0x01, 0x62]));
    await waitFor(() => c.frames.some((f) => f[0] === 0x08 && f[1] === 0x02 && f[2] === 0x12), 5000, "join reply");
    await publish(edge, "b", "hello");
    // ServerFrame field 4 (message) carrying Value.string_value "hello".
    const hello = Buffer.from([0x1a, 0x05, ...Buffer.from("hello")]);
    await waitFor(() => c.frames.some((f) => f[0] === 0x22 && f.includes(hello)), 5000, "binary message");
    // A text frame on a binary connection is an error reply (field 3), not a close.
    const before = c.frames.length;
    c.ws.send("{}");
    await waitFor(() => c.frames.slice(before).some((f) => f[0] === 0x1a), 5000, "error frame");
    assert.equal(c.ws.readyState, c.ws.OPEN);
    await c.close();
  });

  test("requests over the rate limit get RESOURCE_EXHAUSTED errors", async () => {
    const c = await Client.open(edge);
    for (let i = 1; i <= 20; i++) c.send({ id: i, ping: {} });
    await waitFor(() => c.frames.length === 20, 5000, "20 answers");
    const limited = c.frames.filter((f) => f.error);
    assert.ok(limited.length >= 10, `only ${limited.length} limited`);
    assert.ok(limited.every((f) => f.error.code === 8));
    assert.ok(limited.every((f) => Number(f.id) > 0)); // Each error names its request.
    await c.close();
  });

  test("SSE heartbeats keep the stream alive", async () => {
    const s = await openSse(edge, "room=hb");
    await waitFor(() => (s.raw.match(/: heartbeat/g) || []).length >= 2, 5000, "two heartbeats");
    s.close();
  });

  test("a WebSocket peer that stops answering pings is dropped and forgotten", async () => {
    const c = await Client.open(edge);
    await c.request({ join: { room: "idle" } });
    const before = await metrics(edge);
    c.ws._socket.pause(); // No pongs from here on.
    await waitFor(async () => {
      const m = await metrics(edge);
      return m.websocket_connections === before.websocket_connections - 1 &&
        m.room_memberships === before.room_memberships - 1;
    }, 10000, "idle peer removed");
    c.ws.terminate();
  });
});

describe("edge limits", { timeout: 60000 }, () => {
  let core, edge;
  before(async () => {
    core = await startCore();
    edge = await startEdge(core, ["--max_connections=3", "--allowed_origins=http://app.example", "--max_queued_bytes=200000"]);
  });
  after(async () => {
    await stopProcess(edge);
    await stopProcess(core);
  });

  test("past max_connections new clients get 503 with Retry-After", async () => {
    const open = await Promise.all([Client.open(edge), Client.open(edge), Client.open(edge)]);
    const err = await Client.open(edge).catch((e) => e);
    assert.equal(err.status, 503);
    assert.ok(err.headers["retry-after"]);
    const sse = await httpRequest(edge.address, { path: "/sse?room=x" });
    assert.equal(sse.status, 503);
    // Everyone else keeps working.
    assert.ok((await open[0].request({ ping: {} })).reply);
    await Promise.all(open.map((c) => c.close()));
    await waitFor(async () => (await metrics(edge)).websocket_connections === 0);
  });

  test("allowed origins get CORS headers", async () => {
    const pre = await httpRequest(edge.address, { method: "OPTIONS", path: "/publish", headers: { origin: "http://app.example" } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "http://app.example");
    const s = await openSse(edge, "room=cors", { origin: "http://app.example" });
    assert.equal(s.headers["access-control-allow-origin"], "http://app.example");
    s.close();
  });

  test("a client that stops reading is closed as a slow consumer; others get everything", async () => {
    await waitFor(async () => (await metrics(edge)).sse_connections === 0, 5000, "SSE stream gone");
    const slow = await Client.open(edge);
    const fast = await Client.open(edge);
    await slow.request({ join: { room: "flood" } });
    await fast.request({ join: { room: "flood" } });
    slow.ws._socket.pause(); // Stop reading: the edge's writes to it back up.
    // Enough to fill the kernel's socket buffers (several MB on loopback)
    // and then the edge's 200 kB queue.
    const big = "x".repeat(16 * 1024);
    const N = 1000;
    for (let i = 0; i < N; i++) await publish(edge, "flood", { i, big });
    await waitFor(() => fast.messages().length === N, 20000, "fast gets all");
    await waitFor(async () => (await metrics(edge)).slow_consumer_total >= 1, 10000, "slow consumer counted");
    slow.ws._socket.resume();
    const { code } = await slow.closed;
    assert.equal(code, 4001);
    const got = slow.messages();
    assert.ok(got.length < N);
    got.forEach((m, k) => assert.equal(Number(m.position.offset), k + 1)); // a gap-free prefix
    const disconnect = slow.frames.find((f) => f.disconnect);
    assert.equal(disconnect.disconnect.code, "SLOW_CONSUMER");
    assert.equal(disconnect.disconnect.reconnect, true);
    await fast.close();
  });

  test("a client that keeps requesting history without reading is closed as a slow consumer", async () => {
    const c = await Client.open(edge);
    await c.request({ join: { room: "hoard" } });
    const big = "y".repeat(16 * 1024);
    for (let i = 0; i < 100; i++) await publish(edge, "hoard", { i, big });
    await waitFor(() => c.messages("hoard").length === 100, 10000, "the live messages");
    const before = (await metrics(edge)).slow_consumer_total;
    c.ws._socket.pause(); // Stop reading; every history reply is ~1.7 MB.
    // 16 × max_queued_bytes (200 kB) = 3.2 MB, plus what the kernel buffers.
    for (let i = 0; i < 40; i++) c.send({ id: 1000 + i, history: { room: "hoard", limit: 100 } });
    await waitFor(async () => (await metrics(edge)).slow_consumer_total > before, 20000, "slow consumer counted");
    c.ws._socket.resume();
    const { code } = await c.closed;
    assert.equal(code, 4001);
    const disconnect = c.frames.find((f) => f.disconnect);
    assert.equal(disconnect.disconnect.reason, "slow consumer: replies are not being read");
    await waitFor(async () => (await metrics(edge)).queued_bytes === 0, 5000, "queue released");
  });

  test("a backlog goes out in WebSocket messages of at most 64 KiB of frames", async () => {
    const roomy = await startEdge(core, ["--max_queued_bytes=100000000"]);
    try {
      const c = await Client.open(roomy);
      await c.request({ join: { room: "backlog" } });
      c.ws._socket.pause(); // More than the kernel's buffers hold: the edge's queue grows.
      const big = "b".repeat(16 * 1024);
      const N = 800;
      for (let i = 0; i < N; i++) await publish(roomy, "backlog", { i, big });
      c.ws._socket.resume();
      await waitFor(() => c.messages("backlog").length === N, 20000, "the whole backlog");
      assert.deepEqual(c.messages("backlog").map((m) => m.data.i), Array.from({ length: N }, (_, k) => k));
      assert.ok(c.largestMessage <= 64 * 1024, `largest message ${c.largestMessage} bytes`);
      assert.ok(c.wsMessages > N / 4, `${c.wsMessages} messages`); // Several frames each, not all in one.
      await c.close();
    } finally {
      await stopProcess(roomy);
    }
  });

  test("a single reply larger than the reply cap still reaches a client that reads", async () => {
    const small = await startEdge(core, ["--max_queued_bytes=50000"]); // Reply cap: 16 × 50 kB.
    try {
      const c = await Client.open(small);
      const big = "z".repeat(16 * 1024);
      for (let i = 0; i < 100; i++) await publish(small, "big-history", { i, big });
      const r = await c.request({ history: { room: "big-history", limit: 100 } }); // ~1.7 MB
      assert.deepEqual(r.reply.history.messages.map((m) => m.data.i), Array.from({ length: 100 }, (_, k) => k));
      assert.equal(c.ws.readyState, c.ws.OPEN);
      assert.ok(!c.frames.some((f) => f.disconnect));
      await c.close();
    } finally {
      await stopProcess(small);
    }
  });

  test("an SSE stream that stops reading is ended as a slow consumer; its cursor stays at what it got", async () => {
    const before = (await metrics(edge)).slow_consumer_total;
    const s = await openSse(edge, "room=sse-flood");
    await waitFor(() => s.events.some((e) => e.frame.reply?.join), 5000, "joined");
    const fast = await Client.open(edge);
    await fast.request({ join: { room: "sse-flood" } });
    s.res.pause(); // Stop reading: the edge's writes to it back up.
    const big = "x".repeat(16 * 1024);
    const N = 1000;
    for (let i = 0; i < N; i++) await publish(edge, "sse-flood", { i, big });
    await waitFor(() => fast.messages().length === N, 20000, "the WebSocket member gets all");
    await waitFor(async () => (await metrics(edge)).slow_consumer_total > before, 10000, "slow consumer counted");
    s.res.resume();
    await s.ended;
    const got = s.messages();
    assert.ok(got.length < N);
    got.forEach((m, k) => assert.equal(Number(m.position.offset), k + 1)); // a gap-free prefix
    const last = s.events.at(-1);
    assert.equal(last.frame.disconnect.code, "SLOW_CONSUMER");
    assert.equal(last.id, undefined); // No id: Last-Event-ID stays at the last message received.
    assert.match(s.lastId, new RegExp(`^sse-flood \\w+ ${got.length}$`));
    await fast.close();
  });
});

// SIGSTOP stops a process's threads only as each next runs in the kernel: on
// a loaded machine one of them can still answer a request after kill()
// returned. Waits until every thread of `pid` is stopped (state T).
async function waitStopped(pid) {
  const stopped = () => {
    try {
      return fs.readdirSync(`/proc/${pid}/task`).every((t) =>
        /\) [Tt] /.test(fs.readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8")));
    } catch {
      return false; // A thread ended while we looked: look again.
    }
  };
  await waitFor(stopped, 5000, "the core stopped");
}

describe("edge and a core restart", { timeout: 60000 }, () => {
  test("a request the core does not answer in time fails with DEADLINE_EXCEEDED and the client is told to reconnect", async () => {
    const core = await startCore();
    const edge = await startEdge(core, ["--request_timeout=500ms"]);
    try {
      const c = await Client.open(edge);
      await c.request({ join: { room: "stall" } });
      core.proc.kill("SIGSTOP"); // The link stays up; the core just does not answer.
      try {
        await waitStopped(core.proc.pid);
        c.send({ id: 7, publish: { room: "stall", data: 1 } });
        const { code } = await c.closed;
        assert.equal(code, 4000);
        const error = c.frames.find((f) => f.id === "7");
        assert.equal(error.error.code, 4, JSON.stringify(error)); // DEADLINE_EXCEEDED
        assert.equal(c.frames.find((f) => f.disconnect).disconnect.code, "RECONNECT");
      } finally {
        core.proc.kill("SIGCONT");
      }
      await waitFor(async () => (await metrics(edge)).websocket_connections === 0, 5000, "client gone");
    } finally {
      await stopProcess(edge);
      await stopProcess(core);
    }
  });

  test("clients are told to reconnect, the edge relinks, and resume says not recovered", async () => {
    let core = await startCore();
    const edge = await startEdge(core, ["--idle_timeout=5s"]);
    try {
      const c = await Client.open(edge);
      await c.request({ join: { room: "restart" } });
      await publish(edge, "restart", "before");
      await waitFor(() => c.messages().length === 1);
      const last = c.messages()[0].position;
      const address = core.address;
      assert.equal(await stopProcess(core), 0);
      const { code } = await c.closed;
      assert.ok(code === 4000 || code === 1001, `close code ${code}`);
      await waitFor(async () => (await httpRequest(edge.address, { path: "/healthz" })).status === 503, 5000, "not ready");
      core = await startCore([], address);
      await waitFor(async () => (await httpRequest(edge.address, { path: "/healthz" })).status === 200, 15000, "ready again");
      const d = await Client.open(edge);
      const reply = await d.request({ join: { room: "restart", since: last } });
      assert.equal(reply.reply.join.recovered, undefined); // Not recovered: the epoch changed.
      assert.notEqual(reply.reply.join.position.epoch, last.epoch);
      await d.close();
      const m = await waitFor(async () => {
        const m = await metrics(edge);
        return m.websocket_connections === 0 && m.room_memberships === 0 ? m : null;
      });
      assert.equal(m.core_link_up, 1);
    } finally {
      await stopProcess(edge);
      await stopProcess(core);
    }
  });

  test("SIGTERM closes clients with 1001 going away", async () => {
    const core = await startCore();
    const edge = await startEdge(core);
    const c = await Client.open(edge);
    await c.request({ join: { room: "bye" } });
    const exit = stopProcess(edge);
    const { code } = await c.closed;
    assert.equal(code, 1001);
    assert.equal(await exit, 0);
    await stopProcess(core);
  });
});
