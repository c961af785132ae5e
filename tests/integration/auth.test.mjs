// Connection tokens at the edge and grants at the core, with the real
// binaries: HS256 tokens minted here (node:crypto), a secret file written at
// test time. Every refusal is checked to leave a bystander's stream alone.
// Also: the core serves gRPC reflection only with --reflection.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, httpRequest, openSse, roomsClient, startCore, startEdge, stopProcess, waitFor } from "./lib.mjs";

const SECRET = "integration-secret-of-at-least-32-bytes";
const b64 = (x) => Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

function mint(claims, { secret = SECRET, alg = "HS256" } = {}) {
  const head = `${b64({ alg, typ: "JWT" })}.${b64(claims)}`;
  if (alg === "none") return `${head}.`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

const everything = { subscribe: ["*"], publish: ["*"], presence: ["*"], history: ["*"] };

describe("edge with connection tokens", { timeout: 90000 }, () => {
  let core, edge, dir, bystander, bystanderReceived;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "roomcast-auth-"));
    const secretFile = path.join(dir, "secret");
    fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
    core = await startCore();
    edge = await startEdge(core, [`--auth_hmac_secret_file=${secretFile}`]);
    // A bystander in room "watch": every test publishes there after its
    // refusal and checks the bystander still receives.
    bystander = await Client.open(edge, { query: `token=${mint({ sub: "watcher", exp: now() + 600, rooms: everything })}` });
    assert.ok((await bystander.request({ join: { room: "watch" } })).reply?.join);
    bystanderReceived = 0;
  });
  after(async () => {
    await bystander?.close();
    assert.equal(await stopProcess(edge), 0);
    assert.equal(await stopProcess(core), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // The bystander still receives live messages.
  async function bystanderStillReceives() {
    const publisher = await Client.open(edge, { query: `token=${mint({ sub: "pub", exp: now() + 60, rooms: everything })}` });
    const r = await publisher.request({ publish: { room: "watch", data: { n: ++bystanderReceived } } });
    assert.ok(r.reply?.publish, JSON.stringify(r));
    await waitFor(() => bystander.messages("watch").length === bystanderReceived, 5000, "bystander receives");
    await publisher.close();
  }

  async function refusedWith4501(options) {
    const c = await Client.open(edge, options);
    const closed = await c.closed;
    assert.equal(closed.code, 4501);
    assert.match(closed.reason, /token/);
    assert.equal(c.frames.at(-1)?.disconnect?.code, "UNAUTHORIZED");
    await bystanderStillReceives();
  }

  test("no token: the upgrade completes, then close 4501 with a reason", async () => {
    await refusedWith4501({});
  });

  test("bad signature: 4501", async () => {
    await refusedWith4501({ query: `token=${mint({ sub: "x", exp: now() + 60, rooms: everything }, { secret: "wrong-secret-wrong-secret-wrong-secret" })}` });
  });

  test("alg none: 4501", async () => {
    await refusedWith4501({ query: `token=${mint({ sub: "x", exp: now() + 60, rooms: everything }, { alg: "none" })}` });
  });

  test("expired: 4501; not yet valid: 4501", async () => {
    await refusedWith4501({ query: `token=${mint({ sub: "x", exp: now() - 5, rooms: everything })}` });
    await refusedWith4501({ query: `token=${mint({ sub: "x", exp: now() + 60, nbf: now() + 60, rooms: everything })}` });
  });

  test("a token in the Authorization header is accepted", async () => {
    const token = mint({ sub: "hdr", exp: now() + 60, rooms: { subscribe: ["h"] } });
    const c = await Client.open(edge, { headers: { authorization: `Bearer ${token}` } });
    assert.ok((await c.request({ join: { room: "h" } })).reply?.join);
    await c.close();
  });

  test("a room outside the claims: error 7 and the connection stays (then its own room works)", async () => {
    const c = await Client.open(edge, { query: `token=${mint({ sub: "alice", exp: now() + 60, rooms: { subscribe: ["a", "chat:*"] } })}` });
    const denied = await c.request({ join: { room: "b" } });
    assert.equal(denied.error?.code, 7, JSON.stringify(denied));
    assert.ok((await c.request({ join: { room: "a" } })).reply?.join);
    const pub = await c.request({ publish: { room: "a", data: 1 } });
    assert.equal(pub.error?.code, 7, "subscribe-only cannot publish");
    assert.equal((await c.request({ history: { room: "a" } })).error?.code, 7);
    assert.ok((await c.request({ ping: {} })).reply?.pong);
    await bystanderStillReceives();
    await c.close();
  });

  test("publish-only: may publish, may not join", async () => {
    const c = await Client.open(edge, { query: `token=${mint({ sub: "bot", exp: now() + 60, rooms: { publish: ["watch"] } })}` });
    assert.equal((await c.request({ join: { room: "watch" } })).error?.code, 7);
    assert.ok((await c.request({ publish: { room: "watch", data: { n: ++bystanderReceived } } })).reply?.publish);
    await waitFor(() => bystander.messages("watch").length === bystanderReceived, 5000, "bystander receives");
    await c.close();
  });

  test("presence shows sub as user id and info", async () => {
    const c = await Client.open(edge, {
      query: `token=${mint({ sub: "carol", exp: now() + 60, info: { name: "Carol" }, rooms: { subscribe: ["p"], presence: ["p"] } })}`,
    });
    assert.ok((await c.request({ join: { room: "p" } })).reply?.join);
    const p = await c.request({ presence: { room: "p" } });
    const clients = p.reply?.presence?.clients ?? [];
    assert.equal(clients.length, 1, JSON.stringify(p));
    assert.equal(clients[0].userId, "carol");
    assert.deepEqual(clients[0].info, { name: "Carol" });
    await c.close();
  });

  test("Rooms.Disconnect by user id closes every connection of that user, and only those", async () => {
    const token = mint({ sub: "dave", exp: now() + 60, rooms: everything });
    const d1 = await Client.open(edge, { query: `token=${token}` });
    const d2 = await Client.open(edge, { query: `token=${token}` });
    assert.ok((await d1.request({ join: { room: "kick" } })).reply?.join);
    assert.ok((await d2.request({ ping: {} })).reply?.pong);
    const rooms = await roomsClient(core);
    try {
      const res = await rooms.call("disconnect", { userId: "dave", reason: "banned" });
      assert.equal(res.numDisconnected, 2);
    } finally {
      rooms.close();
    }
    for (const c of [d1, d2]) {
      const closed = await c.closed;
      assert.equal(closed.code, 4502);
      assert.equal(closed.reason, "banned");
    }
    await bystanderStillReceives();
  });

  test("a live connection whose token expires is closed with 4003", async () => {
    const c = await Client.open(edge, { query: `token=${mint({ sub: "short", exp: now() + 2, rooms: everything })}` });
    assert.ok((await c.request({ join: { room: "short" } })).reply?.join);
    const closed = await c.closed;
    assert.equal(closed.code, 4003);
    await bystanderStillReceives();
  });

  test("SSE without a token: 401 with a JSON error; with one: the stream opens", async () => {
    const refused = await openSse(edge, "room=watch");
    assert.equal(refused.status, 401);
    await refused.ended;
    assert.deepEqual(JSON.parse(refused.raw).error.code, 16);
    const bad = await openSse(edge, `room=watch&token=${mint({ exp: now() - 1 })}`);
    assert.equal(bad.status, 401);
    bad.close();
    const ok = await openSse(edge, `room=watch&token=${mint({ sub: "s", exp: now() + 60, rooms: { subscribe: ["watch"] } })}`);
    assert.equal(ok.status, 200);
    await waitFor(() => ok.events.some((e) => e.frame.reply?.join), 5000, "sse join");
    ok.close();
    await bystanderStillReceives();
  });

  test("POST /publish without a token: 401; with a publish grant: published", async () => {
    const body = JSON.stringify({ room: "watch", data: { n: bystanderReceived + 1 } });
    const headers = { "content-type": "application/json" };
    const refused = await httpRequest(edge.address, { method: "POST", path: "/publish", headers, body });
    assert.equal(refused.status, 401);
    assert.equal(JSON.parse(refused.body).error.code, 16);
    const denied = await httpRequest(edge.address, {
      method: "POST", path: "/publish", body,
      headers: { ...headers, authorization: `Bearer ${mint({ sub: "p", exp: now() + 60, rooms: { publish: ["other"] } })}` },
    });
    assert.equal(denied.status, 403, denied.body);
    assert.equal(JSON.parse(denied.body).error.code, 7);
    const ok = await httpRequest(edge.address, {
      method: "POST", path: "/publish", body,
      headers: { ...headers, authorization: `Bearer ${mint({ sub: "p", exp: now() + 60, rooms: { publish: ["watch"] } })}` },
    });
    assert.equal(ok.status, 200, ok.body);
    bystanderReceived++;
    await waitFor(() => bystander.messages("watch").length === bystanderReceived, 5000, "bystander receives");
  });
});

describe("edge with tokens and --allow_anonymous", { timeout: 60000 }, () => {
  let core, edge, dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "roomcast-auth-"));
    fs.writeFileSync(path.join(dir, "secret"), SECRET);
    core = await startCore();
    edge = await startEdge(core, [`--auth_hmac_secret_file=${path.join(dir, "secret")}`, "--allow_anonymous"]);
  });
  after(async () => {
    assert.equal(await stopProcess(edge), 0);
    assert.equal(await stopProcess(core), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("no token is anonymous; a bad token is still refused", async () => {
    const anon = await Client.open(edge);
    assert.ok((await anon.request({ join: { room: "any" } })).reply?.join);
    await anon.close();
    const bad = await Client.open(edge, { query: "token=not.a.token" });
    assert.equal((await bad.closed).code, 4501);
  });
});

// Server reflection advertises every service (EdgeLink included): off unless
// --reflection. Called with a raw request (list_services = "", field 7).
async function reflectionAnswers(core) {
  const grpc = await import("@grpc/grpc-js");
  const client = new grpc.Client(core.address, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve) => {
      const call = client.makeBidiStreamRequest(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        (b) => b, (b) => b, new grpc.Metadata(), { deadline: Date.now() + 5000 });
      call.on("data", (d) => { resolve({ ok: true, bytes: d.length }); call.cancel(); });
      call.on("error", (e) => resolve({ ok: false, code: e.code }));
      call.write(Buffer.from([0x3a, 0x00]));
      call.end();
    });
  } finally {
    client.close();
  }
}

describe("core server reflection", { timeout: 60000 }, () => {
  test("off by default (UNIMPLEMENTED); on with --reflection", async () => {
    const plain = await startCore();
    try {
      const r = await reflectionAnswers(plain);
      assert.equal(r.ok, false);
      assert.equal(r.code, 12);
    } finally {
      assert.equal(await stopProcess(plain), 0);
    }
    const reflective = await startCore(["--reflection"]);
    try {
      const r = await reflectionAnswers(reflective);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.ok(r.bytes > 0);
    } finally {
      assert.equal(await stopProcess(reflective), 0);
    }
  });
});
