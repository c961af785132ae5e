// Smoke test of roomcast-bench: runs every preset at a tiny size against a
// real roomcast-core + roomcast-edge on port 0 and checks that the harness
// completes and that what it measured is consistent: every subscriber joined,
// every published message reached every subscriber of its room once (0 lost,
// 0 duplicated, 0 out of order). It asserts no speed.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { startCore, startEdge, startProcess, stopProcess } from "../tests/integration/lib.mjs";

const benchBin = process.env.ROOMCAST_BENCH_BIN;
assert.ok(benchBin, "set ROOMCAST_BENCH_BIN to the roomcast-bench binary");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "roomcast-bench-smoke-"));

let core;
let edge;
before(async () => {
  // "quiet": rooms without presence events, for the generic target mode,
  // which counts any frame that is not a message as unparsed.
  core = await startCore(["--namespaces=quiet:presence=false"]);
  edge = await startEdge(core);
});
after(async () => {
  if (edge) await stopProcess(edge);
  if (core) await stopProcess(core);
  fs.rmSync(tmp, { recursive: true, force: true });
});

// Runs roomcast-bench (bounded by `timeoutMs`) and resolves with its exit
// code, output and parsed JSON report.
function bench(args, timeoutMs = 60000) {
  const json = path.join(tmp, `report-${Math.random().toString(36).slice(2)}.json`);
  const full = [`--edge=${edge.address}`, `--core=${core.address}`,
    `--edge-pid=${edge.proc.pid}`, `--core-pid=${core.proc.pid}`, `--json=${json}`, ...args];
  return new Promise((resolve) => {
    const proc = spawn(benchBin, full, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d) => (out += d));
    proc.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      const report = fs.existsSync(json) ? JSON.parse(fs.readFileSync(json, "utf8")) : null;
      resolve({ code, signal, out, err, report });
    });
  });
}

// Every step delivered each published message exactly once to each
// subscriber of its room (the configurations spread subscribers evenly over
// rooms, and the rate is the same in every room).
function assertClean(r, { subscribers }) {
  assert.equal(r.code, 0, `exit ${r.code} ${r.signal ?? ""}\n${r.out}\n${r.err}`);
  const rep = r.report;
  assert.ok(rep, "no JSON report");
  const joined = rep.connects.reduce((n, c) => n + c.joined, 0);
  const failed = rep.connects.reduce((n, c) => n + c.failed, 0);
  assert.equal(joined, subscribers, r.out);
  assert.equal(failed, 0, r.out);
  assert.ok(rep.steps.length > 0, r.out);
  for (const s of rep.steps) {
    assert.ok(s.published > 0, `${s.label}: nothing published\n${r.out}`);
    assert.equal(s.publish_errors, 0, r.out);
    assert.equal(s.expected, (s.published * s.subscribers) / s.rooms, `${s.label}: expected deliveries\n${r.out}`);
    assert.equal(s.received, s.expected, `${s.label}: received\n${r.out}`);
    assert.equal(s.lost, 0, r.out);
    assert.equal(s.duplicated, 0, r.out);
    assert.equal(s.out_of_order, 0, r.out);
    assert.equal(s.disconnected, 0, r.out);
    assert.equal(s.unparsed_frames, 0, r.out);
    assert.ok(s.drained, r.out);
    assert.ok(s.latency.count > 0, `${s.label}: no latency sample\n${r.out}`);
  }
  assert.equal(rep.lost, 0);
  assert.equal(rep.duplicated, 0);
  assert.equal(typeof rep.edge_kib_per_connection, "number");
  assert.equal(typeof rep.core_kib_per_connection, "number");
  assert.ok(rep.generator_cpu_seconds > 0);
}

const tiny = ["--warmup=200ms", "--duration=1s", "--drain=5s"];

test("fanout over WebSocket JSON: 20 subscribers, two rate steps", async () => {
  const r = await bench(["--preset=fanout", "--subscribers=20", "--duration=2s", "--warmup=200ms", "--rates=20,50"]);
  assertClean(r, { subscribers: 20 });
  assert.match(r.out, /rate=20 .*\n.*rate=50 /);
});

test("fanout over binary WebSocket", async () => {
  const r = await bench(["--preset=fanout", "--transport=ws-binary", "--subscribers=10", "--rates=20", ...tiny]);
  assertClean(r, { subscribers: 10 });
});

test("fanout over SSE", async () => {
  const r = await bench(["--preset=fanout", "--transport=sse", "--subscribers=10", "--rates=20", ...tiny]);
  assertClean(r, { subscribers: 10 });
});

test("fanout over direct gRPC Rooms.Subscribe", async () => {
  const r = await bench(["--preset=fanout", "--transport=grpc", "--subscribers=10", "--rates=20", ...tiny]);
  assertClean(r, { subscribers: 10 });
});

test("fanout published with unary Rooms.Publish", async () => {
  const r = await bench(["--preset=fanout", "--publish=unary", "--subscribers=10", "--rates=20", ...tiny]);
  assertClean(r, { subscribers: 10 });
  assert.equal(r.report.publish, "unary");
});

test("generic target mode against the edge's own /ws and POST /publish", async () => {
  const r = await bench(["--preset=rooms", "--rooms=2", "--subscribers=10", "--rate=20", ...tiny,
    "--room-prefix=quiet:bench", `--target=ws://${edge.address}/ws`,
    '--subscribe-frame={"id":1,"join":{"room":"{room}"}}',
    '--message-match={"message":', '--joined-match="reply":{"join"',
    `--publish-url=http://${edge.address}/publish`]);
  assertClean(r, { subscribers: 10 });
  assert.equal(r.report.transport, "generic");
});

test("generic target mode against a server that is not roomcast (targets/ws-broadcast.mjs)", async () => {
  const script = path.join(path.dirname(new URL(import.meta.url).pathname), "targets", "ws-broadcast.mjs");
  const target = await startProcess(process.execPath, [script]);
  try {
    const r = await bench(["--preset=rooms", "--rooms=2", "--subscribers=10", "--rate=20", ...tiny,
      `--target=ws://${target.address}/ws`, '--subscribe-frame={"subscribe":"{room}"}',
      '--message-match="seq":', '--joined-match="subscribed"',
      `--publish-url=http://${target.address}/publish`, `--edge-pid=${target.proc.pid}`]);
    assertClean(r, { subscribers: 10 });
    assert.equal(r.report.transport, "generic");
    assert.equal(r.report.edge_pid, target.proc.pid);
  } finally {
    await stopProcess(target);
  }
});

// nats-server (Debian package nats-server, often in /usr/sbin, off a user's PATH), if installed.
const natsServerBin = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin"]
  .filter(Boolean)
  .map((dir) => path.join(dir, "nats-server"))
  .find((bin) => {
    try {
      fs.accessSync(bin, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
const natsSkip = natsServerBin ? false : "nats-server is not installed (apt-get install nats-server)";

// Starts nats-server on free loopback ports (client port and WebSocket
// listener) and resolves once it logged both addresses.
function startNats() {
  const conf = path.join(tmp, "nats.conf");
  fs.writeFileSync(conf, 'listen: "127.0.0.1:-1"\nwebsocket {\n  listen: "127.0.0.1:-1"\n  no_tls: true\n}\n');
  return new Promise((resolve, reject) => {
    const proc = spawn(natsServerBin, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`nats-server did not start: ${log}`));
    }, 10000);
    const onData = (d) => {
      log += d;
      const ws = /websocket clients on ws:\/\/(\S+)/.exec(log);
      const client = /client connections on (\S+)/.exec(log);
      if (ws && client) {
        clearTimeout(timer);
        resolve({ proc, ws: ws[1], client: client[1] });
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}: ${log}`));
    });
  });
}

test("nats-server target: fanout to 20 WebSocket subscribers, then 2 rooms", { skip: natsSkip }, async () => {
  const nats = await startNats();
  try {
    const target = [`--target=nats+ws://${nats.ws}`, `--nats-publish=${nats.client}`, `--edge-pid=${nats.proc.pid}`];
    let r = await bench(["--preset=fanout", "--subscribers=20", "--rates=20,50", ...tiny, ...target]);
    assertClean(r, { subscribers: 20 });
    assert.equal(r.report.transport, "nats-ws");
    assert.equal(r.report.publish, "nats");
    assert.equal(r.report.edge_pid, nats.proc.pid);
    assert.equal(r.report.steps.length, 2, r.out);
    r = await bench(["--preset=rooms", "--rooms=2", "--subscribers=10", "--rate=20", ...tiny, ...target]);
    assertClean(r, { subscribers: 10 });
  } finally {
    await stopProcess(nats);
  }
});

test("rooms: 4 rooms x 3 subscribers", async () => {
  const r = await bench(["--preset=rooms", "--rooms=4", "--subscribers=12", "--rate=10", ...tiny]);
  assertClean(r, { subscribers: 12 });
  assert.equal(r.report.steps[0].rooms, 4);
});

// A small XML well-formedness check (Node has no XML parser): declaration,
// comments, then elements whose start and end tags nest, with quoted
// attributes and no stray '<' or '&' in text. Returns the root element's name.
function xmlRoot(text) {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, "").replace(/<!--[\s\S]*?-->/g, "");
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/g;
  const stack = [];
  let root = null;
  let last = 0;
  for (let m; (m = tag.exec(body)); last = tag.lastIndex) {
    const between = body.slice(last, m.index);
    assert.ok(!/[<]|&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(between), `bad text before ${m[0]}: ${between}`);
    if (root === null) assert.ok(stack.length === 0 && !m[1], "no root element");
    if (m[1]) {
      assert.equal(stack.pop(), m[2], `mismatched </${m[2]}>`);
    } else {
      if (root === null) root = m[2];
      else assert.ok(stack.length > 0, `second root element <${m[2]}>`);
      if (!m[4]) stack.push(m[2]);
    }
  }
  assert.equal(body.slice(last).trim(), "", "trailing content");
  assert.equal(stack.length, 0, `unclosed <${stack.at(-1)}>`);
  return root;
}

test("ladder: rungs of 100 and 120 subscribers, with an SVG plot", async () => {
  const plot = path.join(tmp, "ladder.svg");
  const r = await bench(["--preset=ladder", "--subscribers=120", "--rate=10", `--plot=${plot}`, ...tiny]);
  assertClean(r, { subscribers: 120 });
  assert.deepEqual(r.report.steps.map((s) => s.subscribers), [100, 120]);
  assert.ok(fs.existsSync(plot), "no plot written");
  const svg = fs.readFileSync(plot, "utf8");
  assert.equal(xmlRoot(svg), "svg");
  assert.match(svg, /<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /roomcast-bench ladder/);
  assert.match(svg, /latency p99/);
});

test("idle: 100 connections, then one message reaches each", async () => {
  const r = await bench(["--preset=idle", "--subscribers=100", "--duration=500ms"]);
  assertClean(r, { subscribers: 100 });
  assert.equal(r.report.steps[0].published, 1);
  assert.equal(r.report.steps[0].received, 100);
});

test("churn: 20 subscribers, 20 replaced per second", async () => {
  const r = await bench(["--preset=churn", "--subscribers=20", "--churn-rate=20", "--rate=20", ...tiny]);
  assert.equal(r.code, 0, `${r.out}\n${r.err}`);
  const [initial, replaced] = r.report.connects;
  assert.equal(initial.joined, 20, r.out);
  assert.ok(replaced.requested > 0, r.out);
  assert.equal(replaced.joined, replaced.requested, r.out);
  const s = r.report.steps[0];
  assert.ok(s.churned > 0 && s.joined_during_step > 0, r.out);
  assert.ok(s.expected > 0 && s.received === s.expected, r.out);
  assert.equal(s.lost, 0, r.out);
  assert.equal(s.duplicated, 0, r.out);
  assert.equal(s.disconnected, 0, r.out);
  assert.ok(s.drained, r.out);
});

test("unknown presets, transports and flags are refused with a clear message", async () => {
  let r = await bench(["--preset=nope"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown preset "nope": choose one of fanout, rooms, ladder, churn, idle/);
  r = await bench(["--transport=udp"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown transport "udp"/);
  r = await bench(["--nats-publish=127.0.0.1:4222"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--nats-publish needs --target nats\+ws:\/\/HOST:PORT/);
  r = await bench(["--bogus=1"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown flag --bogus/);
});
