// Two roomcast-core nodes (--broker=nats) over one real `nats-server -js`,
// each with its own roomcast-edge, all on loopback with free ports: what a
// backend publishes to core B reaches a browser on edge A in order; History
// agrees on both cores; a plain NATS client publishing on
// roomcast.publish.<room> reaches a browser; a restarted core keeps epochs.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, roomsClient, startCore, startEdge, stopProcess, waitFor } from "./lib.mjs";

const natsBin = process.env.ROOMCAST_NATS_SERVER || "/usr/sbin/nats-server";

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function startNats() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "roomcast-nats-"));
  const proc = spawn(natsBin, ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
  const accepts = () =>
    new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
  await waitFor(accepts, 10000, "nats-server");
  return { proc, port, dir, url: `nats://127.0.0.1:${port}` };
}

// Publishes one message with the NATS text protocol over a raw socket (no
// client library): INFO from the server, CONNECT, PUB, then PING/PONG so
// the PUB has been processed when this resolves.
function natsPublish(port, subject, payload) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let buf = "";
    let sent = false;
    const timer = setTimeout(() => (s.destroy(), reject(new Error("NATS publish timed out"))), 5000);
    s.on("data", (d) => {
      buf += d;
      if (!sent && buf.includes("INFO ")) {
        sent = true;
        const body = Buffer.from(payload);
        s.write(`CONNECT {"verbose":false,"pedantic":false}\r\nPUB ${subject} ${body.length}\r\n`);
        s.write(body);
        s.write("\r\nPING\r\n");
      } else if (sent && buf.includes("PONG")) {
        clearTimeout(timer);
        s.end();
        resolve();
      } else if (buf.includes("-ERR")) {
        clearTimeout(timer);
        s.destroy();
        reject(new Error(buf));
      }
    });
    s.on("error", reject);
  });
}

describe("two cores over one NATS JetStream", { timeout: 120000 }, () => {
  let nats, coreA, coreB, edgeA, edgeB;
  const coreArgs = (name) => ["--broker=nats", `--nats_url=${nats.url}`, `--node_name=${name}`];
  before(async () => {
    nats = await startNats();
    coreA = await startCore(coreArgs("a"));
    coreB = await startCore(coreArgs("b"));
    edgeA = await startEdge(coreA);
    edgeB = await startEdge(coreB);
  });
  after(async () => {
    for (const p of [edgeA, edgeB, coreA, coreB]) if (p) await stopProcess(p);
    if (nats) {
      nats.proc.kill("SIGKILL");
      fs.rmSync(nats.dir, { recursive: true, force: true });
    }
  });

  test("a browser on edge A receives in order what a backend publishes to core B", async () => {
    const browser = await Client.open(edgeA);
    const join = await browser.request({ join: { room: "cluster" } });
    assert.ok(join.reply, JSON.stringify(join));
    const rooms = await roomsClient(coreB);
    const N = 20;
    for (let i = 1; i <= N; i++) {
      const res = await rooms.call("publish", { room: "cluster", data: Buffer.from(JSON.stringify({ i })) });
      assert.equal(res.position.offset, String(i));
    }
    await waitFor(() => browser.messages("cluster").length === N, 10000, "every message on edge A");
    const got = browser.messages("cluster");
    assert.deepEqual(got.map((m) => Number(m.position.offset)), Array.from({ length: N }, (_, k) => k + 1));
    assert.deepEqual(got.map((m) => m.data.i), Array.from({ length: N }, (_, k) => k + 1));
    assert.equal(new Set(got.map((m) => m.position.epoch)).size, 1);
    rooms.close();
    await browser.close();
  });

  test("History from either core returns the same positions", async () => {
    const a = await roomsClient(coreA);
    const b = await roomsClient(coreB);
    await b.call("publish", { room: "hist", data: Buffer.from("1") });
    await a.call("publish", { room: "hist", data: Buffer.from("2") });
    const ha = await a.call("history", { room: "hist", limit: 10 });
    const hb = await b.call("history", { room: "hist", limit: 10 });
    const positions = (h) => h.messages.map((m) => `${m.position.epoch}/${m.position.offset}`);
    assert.deepEqual(positions(ha), positions(hb));
    assert.equal(ha.messages.length, 2);
    assert.deepEqual(ha.position, hb.position);
    a.close();
    b.close();
  });

  test("Presence from core B lists a browser joined through edge A", async () => {
    const browser = await Client.open(edgeA);
    await browser.request({ join: { room: "who" } });
    const rooms = await roomsClient(coreB);
    const members = (await rooms.call("presence", { room: "who" })).clients;
    assert.equal(members.length, 1);
    await browser.close();
    await waitFor(async () => ((await rooms.call("presence", { room: "who" })).clients || []).length === 0, 10000, "the member to leave");
    rooms.close();
  });

  test("a plain NATS publish on roomcast.publish.<room> reaches a browser on edge B", async () => {
    const browser = await Client.open(edgeB);
    await browser.request({ join: { room: "chat.bus" } });
    // '.' inside a room name may be sent as is (the tokens are joined again).
    await natsPublish(nats.port, "roomcast.publish.chat.bus", JSON.stringify({ from: "nats" }));
    await waitFor(() => browser.messages("chat.bus").length === 1, 10000, "the bus message");
    const m = browser.messages("chat.bus")[0];
    assert.deepEqual(m.data, { from: "nats" });
    assert.equal(m.position.offset, "1");
    await browser.close();
  });

  test("kill -9 of a core under load: its browsers get 4000 and resume on the other edge with no loss and no duplicate", async () => {
    const browser = await Client.open(edgeA);
    await browser.request({ join: { room: "load" } });
    const rooms = await roomsClient(coreB);
    let stop = false;
    let published = 0;
    const publisher = (async () => {
      while (!stop && published < 2000) {
        await rooms.call("publish", { room: "load", data: Buffer.from(JSON.stringify({ n: published + 1 })) });
        published++;
      }
    })();
    await waitFor(() => browser.messages("load").length >= 20, 10000, "messages before the kill");
    coreA.proc.kill("SIGKILL");
    const closed = await browser.closed;
    assert.equal(closed.code, 4000);
    const seen = browser.messages("load");
    const last = seen[seen.length - 1].position;
    const resumed = await Client.open(edgeB);
    const join = await resumed.request({ join: { room: "load", since: last } });
    assert.equal(join.reply.join.recovered, true, JSON.stringify(join));
    await waitFor(() => resumed.messages("load").length >= 20, 10000, "messages after the resume");
    stop = true;
    await publisher;
    await waitFor(() => seen.length + resumed.messages("load").length === published, 10000, "every published message");
    const all = [...seen, ...resumed.messages("load")];
    assert.deepEqual(all.map((m) => Number(m.position.offset)), Array.from({ length: published }, (_, k) => k + 1));
    assert.equal(new Set(all.map((m) => m.position.epoch)).size, 1);
    rooms.close();
    await resumed.close();
    await stopProcess(edgeA);
    coreA = await startCore(coreArgs("a1"));
    edgeA = await startEdge(coreA);
  });

  test("a browser resumes on the other edge after its core restarts, with no loss", async () => {
    const rooms = await roomsClient(coreB);
    const first = await rooms.call("publish", { room: "resume", data: Buffer.from("1") });
    await rooms.call("publish", { room: "resume", data: Buffer.from("2") });
    await stopProcess(edgeA);
    await stopProcess(coreA);
    coreA = await startCore(coreArgs("a2"));
    edgeA = await startEdge(coreA);
    const browser = await Client.open(edgeA);
    const join = await browser.request({ join: { room: "resume", since: first.position } });
    assert.equal(join.reply.join.recovered, true, JSON.stringify(join));
    await waitFor(() => browser.messages("resume").length === 1, 10000, "the replayed message");
    const [m] = browser.messages("resume");
    assert.equal(m.position.offset, "2");
    assert.equal(m.position.epoch, first.position.epoch);
    rooms.close();
    await browser.close();
  });
});
