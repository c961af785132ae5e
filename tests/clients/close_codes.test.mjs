// The reconnect rule has one table: the (reconnect) option of each
// DisconnectCode value in proto/roomcast/v1/roomcast.proto. The edge reads it
// from the descriptor; this test holds the JS client (clients/js/roomcast.js)
// and docs/protocol.md to the same table.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { DisconnectCode, shouldReconnect } = await import(join(root, "clients/js/roomcast.js"));

function protoTable() {
  const proto = new protobuf.Root();
  proto.resolvePath = (origin, target) =>
    target.startsWith("google/") ? join("/usr/include", target) : join(root, "proto", target);
  proto.loadSync("roomcast/v1/roomcast.proto", { keepCase: true });
  const e = proto.lookupEnum("roomcast.v1.DisconnectCode");
  const table = new Map();
  for (const [name, code] of Object.entries(e.values)) {
    if (code === 0) continue;
    const reconnect = e.valuesOptions?.[name]?.["(reconnect)"];
    assert.equal(typeof reconnect, "boolean", `${name} has no (reconnect) option`);
    table.set(name, { code, reconnect });
  }
  return table;
}

test("every DisconnectCode value says whether it reconnects", () => {
  assert.ok(protoTable().size >= 10);
});

test("the JS client knows every code by its proto name and number", () => {
  const fromProto = Object.fromEntries([...protoTable()].map(([n, v]) => [n, v.code]));
  assert.deepEqual({ ...DisconnectCode }, fromProto);
});

test("the JS client reconnects exactly when the proto says so", () => {
  for (const [name, { code, reconnect }] of protoTable()) {
    assert.equal(shouldReconnect(code), reconnect, `${name} (${code})`);
  }
});

test("docs/protocol.md lists every code with the proto's reconnect rule", () => {
  const doc = readFileSync(join(root, "docs/protocol.md"), "utf8");
  const section = doc.split("### Disconnect codes")[1].split("\n\n").find((p) => p.startsWith("| code"));
  const rows = new Map();
  for (const line of section.split("\n").slice(2)) {
    const cells = line.split("|").map((c) => c.trim());
    const name = cells[2].replaceAll("`", "");
    rows.set(name, { code: Number(cells[1]), reconnect: /^yes\b/.test(cells[4]) ? true : /^no\b/.test(cells[4]) ? false : null });
  }
  assert.deepEqual(rows, protoTable());
});
