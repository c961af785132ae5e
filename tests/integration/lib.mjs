// Helpers for tests that start the real roomcast-core and roomcast-edge
// binaries on loopback port 0 and talk to them as browsers would.
import { spawn } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const here = path.dirname(fileURLToPath(import.meta.url));
const buildDir = process.env.ROOMCAST_BUILD_DIR || path.join(here, "..", "..", "build");
export const coreBin = process.env.ROOMCAST_CORE_BIN || path.join(buildDir, "core", "roomcast-core");
export const edgeBin = process.env.ROOMCAST_EDGE_BIN || path.join(buildDir, "edge", "roomcast-edge");

// Starts a binary and resolves once it printed "listening on HOST:PORT".
export function startProcess(bin, args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${bin} did not start: ${out}${err}`));
    }, 20000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, address: m[1], stderr: () => err });
      }
    });
    proc.stderr.on("data", (d) => (err += d));
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited with ${code}: ${err}`));
    });
  });
}

// SIGTERM, then SIGKILL after 5 s; resolves with the exit code.
export function stopProcess(p) {
  return new Promise((resolve) => {
    if (p.proc.exitCode !== null) return resolve(p.proc.exitCode);
    const timer = setTimeout(() => p.proc.kill("SIGKILL"), 5000);
    p.proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    p.proc.kill("SIGTERM");
  });
}

export const startCore = (args = [], listen = "127.0.0.1:0") =>
  startProcess(coreBin, [`--listen=${listen}`, "--shutdown_grace=1s", ...args]);
// Starts an edge and waits until its core link is up (/healthz 200).
export async function startEdge(core, args = []) {
  const edge = await startProcess(edgeBin, ["--listen=127.0.0.1:0", `--core=${core.address}`, "--shutdown_grace=1s", ...args]);
  await waitFor(async () => (await httpRequest(edge.address, { path: "/healthz" })).status === 200, 10000, "edge ready");
  return edge;
}

export async function waitFor(pred, timeoutMs = 10000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function httpRequest(address, { method = "GET", path: p = "/", headers = {}, body } = {}) {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: p, headers }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (data += d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on("error", reject);
    req.setTimeout(10000, () => req.destroy(new Error("http timeout")));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export async function metrics(edge) {
  const res = await httpRequest(edge.address, { path: "/metrics" });
  const out = {};
  for (const line of res.body.split("\n")) {
    const m = /^(roomcast_edge_\w+) (-?\d+)$/.exec(line);
    if (m) out[m[1].replace("roomcast_edge_", "")] = Number(m[2]);
  }
  return out;
}

export function publish(edge, room, data) {
  return httpRequest(edge.address, {
    method: "POST",
    path: "/publish",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ room, data }),
  }).then((r) => ({ ...r, json: JSON.parse(r.body) }));
}

// The frames of one edge WebSocket message (docs/protocol.md §7, batches):
// JSON texts separated by "\n", or varint-length-prefixed protobuf frames.
export function splitBatch(data, isBinary) {
  if (!isBinary) return data.toString().split("\n");
  const frames = [];
  for (let i = 0; i < data.length; ) {
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      if (i >= data.length) throw new Error("truncated frame length in a binary batch");
      const byte = data[i++];
      size += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
    }
    if (i + size > data.length) throw new Error("truncated frame in a binary batch");
    frames.push(data.subarray(i, i + size));
    i += size;
  }
  return frames;
}

// A browser-like WebSocket client that records every frame it receives.
export class Client {
  static async open(edge, { protocols, headers, query } = {}) {
    const c = new Client();
    c.ws = new WebSocket(`ws://${edge.address}/ws${query ? `?${query}` : ""}`, protocols, { headers });
    c.frames = [];
    c.closed = new Promise((resolve) => c.ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    c.wsMessages = 0; // WebSocket messages; each carries one or more frames.
    c.largestMessage = 0; // Bytes.
    c.ws.on("message", (data, isBinary) => {
      c.wsMessages++;
      c.largestMessage = Math.max(c.largestMessage, data.length);
      for (const frame of splitBatch(data, isBinary)) c.frames.push(isBinary ? frame : JSON.parse(frame));
    });
    c.ws.on("error", () => {});
    await new Promise((resolve, reject) => {
      c.ws.once("open", resolve);
      c.ws.once("unexpected-response", (req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, headers: res.headers })));
      c.ws.once("error", reject);
    });
    c.nextId = 1;
    return c;
  }
  send(frame) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }
  // Sends a request with a fresh id and resolves with the frame answering it.
  async request(body, timeoutMs = 10000) {
    const id = this.nextId++;
    this.send({ id, ...body });
    return waitFor(() => this.frames.find((f) => f.id === String(id)), timeoutMs, `reply ${id}`);
  }
  messages(room) {
    return this.frames.filter((f) => f.message && (!room || f.message.room === room)).map((f) => f.message);
  }
  close() {
    this.ws.close();
    return this.closed;
  }
}

// An SSE stream over plain HTTP that records events as the browser parses them.
export function openSse(edge, query, headers = {}) {
  const [host, port] = edge.address.split(":");
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: `/sse?${query}`, headers }, (res) => {
      const s = { res, req, status: res.statusCode, headers: res.headers, events: [], lastId: null, raw: "" };
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        s.raw += d;
        buf += d;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { data: [] };
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) s.lastId = ev.id = line.slice(4);
            else if (line.startsWith("data: ")) ev.data.push(line.slice(6));
            else if (line.startsWith("retry: ")) s.retry = Number(line.slice(7));
          }
          if (ev.data.length) s.events.push({ id: ev.id, frame: JSON.parse(ev.data.join("\n")) });
        }
      });
      s.ended = new Promise((r) => res.on("close", r));
      s.close = () => req.destroy();
      s.messages = () => s.events.filter((e) => e.frame.message).map((e) => e.frame.message);
      resolve(s);
    });
    req.on("error", reject);
  });
}

// A Rooms client from an independent gRPC implementation (@grpc/grpc-js).
export async function roomsClient(core) {
  const grpc = await import("@grpc/grpc-js");
  const loader = await import("@grpc/proto-loader");
  const def = loader.loadSync(path.join(here, "..", "..", "proto", "roomcast", "v1", "roomcast.proto"), {
    includeDirs: ["/usr/include", path.join(here, "..", "..", "proto")],
    longs: String,
    defaults: false,
  });
  const v1 = grpc.loadPackageDefinition(def).roomcast.v1;
  const client = new v1.Rooms(core.address, grpc.credentials.createInsecure());
  const call = (method, request) =>
    new Promise((resolve, reject) =>
      client[method](request, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res))));
  return { client, call, close: () => client.close() };
}
