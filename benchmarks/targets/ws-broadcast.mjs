// A minimal, straightforward WebSocket broadcast server: the "not roomcast"
// target for roomcast-bench's generic target mode. No history, no presence,
// no slow-consumer policy (ws buffers without bound), one Node process.
//
//   node benchmarks/targets/ws-broadcast.mjs [--listen HOST:PORT]   (default 127.0.0.1:0)
//
// Prints "listening on HOST:PORT" once ready.
//   WebSocket, any path: a text frame {"subscribe":"ROOM"} adds the socket to
//     ROOM and is answered {"subscribed":"ROOM"}.
//   POST /publish/ROOM: broadcasts the body to ROOM's sockets.
//   POST /publish with {"room":"ROOM","data":...}: broadcasts `data` (this is
//     roomcast-bench's default --publish-body; its --publish-url is fixed).
// Each broadcast is the text frame {"room":"ROOM","seq":N,"data":BODY}, N a
// per-room sequence number from 1 (BODY embedded as JSON when it parses,
// else as a string); the answer is 200 {"seq":N,"recipients":K}.
// roomcast-bench counts loss by the bench_seq inside its own payload.
import http from "node:http";
import { WebSocketServer } from "../../tests/node_modules/ws/wrapper.mjs";

let listen = "127.0.0.1:0";
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === "--listen") listen = process.argv[++i];
  else if (a.startsWith("--listen=")) listen = a.slice("--listen=".length);
  else {
    console.error(`ws-broadcast: unknown argument ${a}`);
    process.exit(2);
  }
}
const colon = listen.lastIndexOf(":");
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));

const rooms = new Map(); // room -> Set<WebSocket>
const seqs = new Map(); // room -> last sequence number

function broadcast(room, data) {
  const seq = (seqs.get(room) ?? 0) + 1;
  seqs.set(room, seq);
  const frame = `{"room":${JSON.stringify(room)},"seq":${seq},"data":${data}}`;
  let recipients = 0;
  for (const ws of rooms.get(room) ?? []) {
    if (ws.readyState === ws.OPEN) {
      ws.send(frame);
      recipients++;
    }
  }
  return { seq, recipients };
}

// The body as a JSON value's text: itself when it parses, else a JSON string.
function asJson(body) {
  try {
    JSON.parse(body);
    return body;
  } catch {
    return JSON.stringify(body);
  }
}

const server = http.createServer((req, res) => {
  const reply = (status, obj) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(obj));
  };
  if (req.method !== "POST" || !req.url.startsWith("/publish")) return reply(404, { error: "not found" });
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    if (req.url.startsWith("/publish/")) {
      const room = decodeURIComponent(req.url.slice("/publish/".length));
      if (!room) return reply(400, { error: "no room" });
      return reply(200, broadcast(room, asJson(body)));
    }
    if (req.url !== "/publish") return reply(404, { error: "not found" });
    let msg;
    try {
      msg = JSON.parse(body);
    } catch {
      return reply(400, { error: "body is not JSON" });
    }
    if (typeof msg.room !== "string" || !("data" in msg)) return reply(400, { error: "need room and data" });
    reply(200, broadcast(msg.room, JSON.stringify(msg.data)));
  });
});

const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws) => {
  const joined = new Set();
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (typeof msg.subscribe !== "string") return;
    const room = msg.subscribe;
    if (!rooms.has(room)) rooms.set(room, new Set());
    rooms.get(room).add(ws);
    joined.add(room);
    ws.send(JSON.stringify({ subscribed: room }));
  });
  ws.on("close", () => {
    for (const room of joined) {
      const set = rooms.get(room);
      set?.delete(ws);
      if (set?.size === 0) rooms.delete(room);
    }
  });
  ws.on("error", () => {});
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
