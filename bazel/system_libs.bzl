"""@system_libs: Debian's system libraries and code generators as Bazel targets.

The same packages the CMake build uses (scripts/install-deps.sh installs them).
Each library is a cc_library without sources: headers come from /usr/include,
which the auto-configured GCC toolchain already searches (and Bazel treats as
a built-in include directory, so nothing is globbed or copied), and the
libraries are linked with the flags `pkg-config` reports for the same names the
CMake targets use (gRPC::grpc++ -> grpc++, absl::status -> absl_status, ...).
`-D` flags from `pkg-config --cflags` become `defines`.

The repository is generated on this machine and touches no network; rerun
`bazel sync --configure` (or `bazel clean --expunge`) after installing
different library versions.
"""

# name: (pkg-config modules, extra linkopts, deps inside this repository)
_LIBRARIES = {
    "grpc++": (["grpc++"], [], ["protobuf"]),
    "grpc++_reflection": ([], ["-lgrpc++_reflection"], ["grpc++"]),
    "protobuf": (["protobuf"], [], []),
    "openssl": (["openssl"], [], []),
    "openssl_crypto": (["libcrypto"], [], []),
    "spdlog": (["spdlog"], [], []),
    "gtest": (["gtest"], [], []),
    "gtest_main": (["gtest_main"], [], ["gtest"]),
    "gmock": (["gmock"], [], ["gtest"]),
    "benchmark": (["benchmark"], ["-pthread"], []),
    "benchmark_main": ([], ["-lbenchmark_main"], ["benchmark"]),
    # Boost 1.81 (libboost1.81-dev): header-only except for these two.
    "boost_headers": ([], [], []),
    "boost_json": ([], ["-lboost_json"], ["boost_headers"]),
    "boost_url": ([], ["-lboost_url"], ["boost_headers"]),
    "threads": ([], ["-pthread"], []),
    # Wave 2: the NATS JetStream broker (libnats-dev) and JWT auth (libjwt-dev).
    "nats": (["libnats"], [], []),
    "jwt": (["libjwt"], [], []),
}

# Abseil (libabsl-dev 20220623): the components roomcast uses, as absl_<name>
# (CMake: absl::<name>).
_ABSL = [
    "any_invocable",
    "btree",
    "flags",
    "flags_config",
    "flags_parse",
    "flags_reflection",
    "flags_usage",
    "flat_hash_map",
    "flat_hash_set",
    "random_random",
    "status",
    "statusor",
    "str_format",
    "strings",
    "synchronization",
    "time",
]

_TOOLS = ["protoc", "grpc_cpp_plugin"]

def _run(rctx, args):
    result = rctx.execute(args)
    if result.return_code != 0:
        fail("`{}` failed ({}): {}\nscripts/install-deps.sh installs roomcast's build dependencies.".format(
            " ".join(args),
            result.return_code,
            result.stderr,
        ))
    return result.stdout.strip()

def _words(text):
    return [w for w in text.replace("\n", " ").replace("\t", " ").split(" ") if w]

def _keep_last(flags):
    # Keep the last occurrence of each flag: the order static archives need.
    seen = {}
    out = []
    for flag in reversed(flags):
        if flag not in seen:
            seen[flag] = True
            out.append(flag)
    return reversed(out)

def _missing(name, modules):
    # A library pkg-config does not know fails the targets that use it, with a
    # clear message, instead of failing the whole repository.
    return """
genrule(
    name = "{name}_missing",
    outs = ["{name}_missing.cc"],
    cmd = "echo 'pkg-config does not know {modules}: run scripts/install-deps.sh' >&2; exit 1",
)

cc_library(
    name = "{name}",
    srcs = [":{name}_missing"],
)
""".format(name = name, modules = " ".join(modules))

def _library(rctx, pkg_config, name, modules, linkopts, deps):
    for module in modules:
        if rctx.execute([pkg_config, "--exists", module]).return_code != 0:
            return _missing(name, modules)
    defines = []
    flags = []
    for module in modules:
        cflags = _words(_run(rctx, [pkg_config, "--cflags", module]))
        for flag in cflags:
            if flag.startswith("-D"):
                if flag[2:] not in defines:
                    defines.append(flag[2:])
            elif flag.startswith("-I"):
                # Only /usr/include is expected (already searched); anything
                # else would need an `includes` entry, which cannot point
                # outside the repository.
                if flag[2:].rstrip("/") != "/usr/include":
                    fail("{}: unexpected include flag {} from pkg-config".format(module, flag))
            elif flag == "-pthread":
                flags.append(flag)
        flags.extend(_words(_run(rctx, [pkg_config, "--libs", module])))
    flags.extend(linkopts)
    return """
cc_library(
    name = "{name}",
    defines = {defines},
    linkopts = {linkopts},
    deps = {deps},
)
""".format(
        name = name,
        defines = repr(defines),
        linkopts = repr(_keep_last(flags)),
        deps = repr([":" + d for d in deps]),
    )

def _system_libs_impl(rctx):
    pkg_config = rctx.which("pkg-config")
    if not pkg_config:
        fail("pkg-config not found; scripts/install-deps.sh installs it")
    pkg_config = str(pkg_config)

    version = rctx.path("/usr/include/boost/version.hpp")
    if not version.exists or "1_81" not in rctx.read(version):
        fail("Boost 1.81 headers not found in /usr/include (libboost1.81-dev)")

    build = [
        "# Generated by //bazel:system_libs.bzl from pkg-config on this machine.",
        'package(default_visibility = ["//visibility:public"])',
    ]
    for name, (modules, linkopts, deps) in _LIBRARIES.items():
        build.append(_library(rctx, pkg_config, name, modules, linkopts, deps))
    for name in _ABSL:
        build.append(_library(rctx, pkg_config, "absl_" + name, ["absl_" + name], [], []))

    for tool in _TOOLS:
        path = rctx.which(tool)
        if not path:
            fail("{} not found on PATH; scripts/install-deps.sh installs it".format(tool))
        rctx.symlink(path, "bin/" + tool)
    build.append("exports_files({})".format(repr(["bin/" + t for t in _TOOLS])))

    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD.bazel", "\n".join(build) + "\n")

system_libs = repository_rule(
    implementation = _system_libs_impl,
    local = True,
    environ = ["PATH", "PKG_CONFIG_PATH"],
    doc = "Debian's system libraries (pkg-config) and protoc/grpc_cpp_plugin.",
)
