// `--help` on the two servers lists their own flags (README: "--help lists
// them all"), not "No flags matched.", and names files relative to the source tree.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

for (const [name, bin, flags] of [
  ["roomcast-core", process.env.ROOMCAST_CORE_BIN, ["--listen", "--broker", "--history_size", "--max_rooms"]],
  ["roomcast-edge", process.env.ROOMCAST_EDGE_BIN, ["--listen", "--core", "--max_connections", "--write_delay"]],
]) {
  test(`${name} --help lists its flags`, () => {
    const r = spawnSync(bin, ["--help"], { encoding: "utf8", timeout: 10000 });
    const out = r.stdout + r.stderr;
    assert.doesNotMatch(out, /No flags matched/);
    for (const f of flags) assert.match(out, new RegExp(`\\n\\s+${f} `), `${f} missing from --help`);
    assert.doesNotMatch(out, /Flags from \.\.\//, "file names relative to the source tree");
  });
}
