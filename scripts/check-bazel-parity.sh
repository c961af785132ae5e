#!/usr/bin/env bash
# Checks that the Bazel build mirrors the CMake build (the build of record), so
# the two cannot drift apart:
#   - every CMake library/executable has a Bazel twin of the same name in the
#     same folder (package): a library a cc_library, a test executable (under
#     tests/) a cc_test, any other executable a cc_binary;
#   - both compile the same C/C++ sources (generated ones compared by name);
#   - every Bazel cc_* rule has a CMake twin;
#   - every header beside those sources is listed by some Bazel rule (a header
#     Bazel does not know fails only inside Bazel's sandbox).
# CMake's side comes from its file API (codemodel-v2) on a fresh configure;
# Bazel's from `bazel query`. Exit 0 when in sync, 1 with a list otherwise.
#
# Usage: scripts/check-bazel-parity.sh [CMAKE_MODEL_DIR]
#   CMAKE_MODEL_DIR  where to configure CMake (default: build-bazelcheck)
# Environment: BAZEL (default: bazel), BAZEL_STARTUP_OPTIONS (e.g. an
# --output_base; bazel/ci.sh passes its own).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
model_dir=${1:-build-bazelcheck}
mkdir -p "$model_dir/.cmake/api/v1/query/client-roomcast-bazel"
touch "$model_dir/.cmake/api/v1/query/client-roomcast-bazel/codemodel-v2"
cmake -S "$root" -B "$model_dir" -G Ninja >/dev/null

query_xml=$(mktemp)
trap 'rm -f "$query_xml"' EXIT
# shellcheck disable=SC2086
${BAZEL:-bazel} ${BAZEL_STARTUP_OPTIONS:-} query --noshow_progress \
  'kind("(cc_library|cc_binary|cc_test|genrule) rule", //...)' --output=xml >"$query_xml"

exec /usr/bin/python3 - "$root" "$model_dir" "$query_xml" <<'EOF'
import glob, json, os, sys
import xml.etree.ElementTree as ET

root, model_dir, query_xml = sys.argv[1:4]
CXX = (".cc", ".cpp", ".cxx", ".c")
HDR = (".h", ".hh", ".hpp", ".inc")
problems = []

# --- CMake: targets, their folder, kind and sources -------------------------
reply = os.path.join(model_dir, ".cmake/api/v1/reply")
index = sorted(glob.glob(os.path.join(reply, "codemodel-v2-*.json")), key=os.path.getmtime)[-1]
config = json.load(open(index))["configurations"][0]
cmake = {}
for ref in config["targets"]:
    t = json.load(open(os.path.join(reply, ref["jsonFile"])))
    if t["type"] == "EXECUTABLE":
        folder = t["paths"]["source"]
        kind = "cc_test" if folder == "tests" or folder.startswith("tests/") else "cc_binary"
    elif t["type"].endswith("_LIBRARY"):
        kind = "cc_library"
    else:
        continue  # custom targets (code generation, Python stubs)
    srcs, generated = set(), set()
    for s in t.get("sources", []):
        path = s["path"]
        if path.endswith(".proto"):
            stem = os.path.basename(path)[: -len(".proto")]
            generated |= {stem + ".pb.cc", stem + ".grpc.pb.cc"}
        elif path.endswith(CXX):
            if s.get("isGenerated") or not os.path.exists(os.path.join(root, path)) \
                    or os.path.commonpath([os.path.abspath(path), os.path.abspath(model_dir)]) == os.path.abspath(model_dir):
                generated.add(os.path.basename(path))
            else:
                srcs.add(path)
    generated -= {os.path.basename(p) for p in srcs}
    cmake[(t["paths"]["source"], t["name"])] = (kind, srcs, generated)

# --- Bazel: cc rules, their package and sources ---------------------------
rules = list(ET.parse(query_xml).getroot().iter("rule"))
outputs = {}  # genrule label -> its output files (package-relative paths)
for rule in rules:
    if rule.get("class") == "genrule":
        outputs[rule.get("name")] = [o.get("name") for o in rule.iter("rule-output")]

bazel = {}
listed_files = set()
for rule in rules:
    if rule.get("class") == "genrule":
        continue
    pkg, name = rule.get("name")[2:].split(":", 1)
    labels = []
    for lst in rule.iter("list"):
        if lst.get("name") in ("srcs", "hdrs", "textual_hdrs"):
            labels += [l.get("value") for l in lst.iter("label")]
    paths = set()
    for label in labels:
        if not label.startswith("//"):
            continue
        for out in outputs.get(label, [label]):
            lpkg, lname = out[2:].split(":", 1)
            paths.add(os.path.join(lpkg, lname))
    listed_files |= paths
    cxx = {p for p in paths if p.endswith(CXX)}
    srcs = {p for p in cxx if os.path.exists(os.path.join(root, p))}
    generated = {os.path.basename(p) for p in cxx - srcs}
    bazel[(pkg, name)] = (rule.get("class"), srcs, generated)

for key, (kind, srcs, generated) in sorted(cmake.items()):
    folder, name = key
    where = f"{folder}/CMakeLists.txt: {name}"
    if key not in bazel:
        others = [f"//{p}:{n}" for (p, n) in bazel if n == name]
        hint = f" (found {', '.join(others)}: wrong package)" if others else ""
        problems.append(f"{where}: no Bazel twin //{folder}:{name}{hint}")
        continue
    bkind, bsrcs, bgenerated = bazel[key]
    if bkind != kind:
        problems.append(f"{where}: is a {kind} in CMake terms but //{folder}:{name} is a {bkind}")
    for s in sorted(srcs - bsrcs):
        problems.append(f"{where}: {s} is compiled by CMake, not by //{folder}:{name}")
    for s in sorted(bsrcs - srcs):
        problems.append(f"//{folder}:{name}: {s} is compiled by Bazel, not by CMake's {name}")
    for g in sorted(generated - bgenerated):
        problems.append(f"{where}: generated {g} has no generated counterpart in //{folder}:{name}")

for key in sorted(set(bazel) - set(cmake)):
    problems.append(f"//{key[0]}:{key[1]}: a Bazel {bazel[key][0]} with no CMake target of that name in {key[0]}/CMakeLists.txt")

# Headers beside the sources of every CMake target must be known to Bazel.
folders = {f for (f, _) in cmake}
for folder in sorted(folders):
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
        rel = os.path.relpath(dirpath, root)
        if rel != folder and os.path.exists(os.path.join(dirpath, "CMakeLists.txt")):
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if d != "node_modules"]
        for f in filenames:
            path = os.path.normpath(os.path.join(rel, f))
            if f.endswith(HDR) and path not in listed_files:
                problems.append(f"{path}: a header no Bazel rule lists (add it to a BUILD.bazel srcs/hdrs)")

if problems:
    print("CMake and Bazel builds differ:")
    for p in problems:
        print("  " + p)
    print(f"{len(problems)} difference(s); CMake is the build of record: update the BUILD.bazel files.")
    sys.exit(1)
print(f"CMake and Bazel agree: {len(cmake)} targets with the same names, kinds and sources.")
EOF
