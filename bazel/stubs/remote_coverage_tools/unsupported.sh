#!/bin/sh
echo "bazel coverage is not supported by roomcast's offline Bazel setup (bazel/stubs/README.md)" >&2
exit 1
