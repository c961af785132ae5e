// Strict JSON for the browser frame codec (edge/codec.cc only): one
// streaming pass with boost::json's SAX parser, no DOM. Boost checks the
// syntax (RFC 8259: no comments, single quotes or trailing commas), UTF-8 and
// UTF-16 surrogates, and the nesting depth; these passes add what protobuf
// needs to agree: no duplicate keys in an object, finite numbers.
//
// Pure functions: no state, safe from any thread; nothing is kept past the
// call. Errors are INVALID_ARGUMENT with the problem as message (no prefix).
#ifndef ROOMCAST_EDGE_STRICT_JSON_H_
#define ROOMCAST_EDGE_STRICT_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace roomcast::edge::strict_json {

enum class TopLevel { kNone, kObject, kArray, kString, kNumber, kBool, kNull };

// "an array", "a string", ...: for error messages.
absl::string_view TopLevelName(TopLevel top);

// What a scan learned about a frame's top level, even when it failed.
struct FrameScan {
  TopLevel top = TopLevel::kNone;
  // The id, when it could be read before any problem (an unsigned integer,
  // an integral number, or a decimal string).
  bool id_readable = false;
  uint64_t id = 0;
  // The first top-level key that is neither "id" nor an op.
  bool has_unknown_field = false;
  std::string unknown_field;
  // The ops present (join, leave, publish, presence, history, ping).
  std::vector<std::string> ops;
};

// Checks that `text` is exactly one JSON value (whitespace around it
// allowed) nested at most `max_depth` deep, and reads its top level into
// `out`.
absl::Status ScanFrame(absl::string_view text, int max_depth, FrameScan* out);
// The same checks without reading anything.
absl::Status ScanValue(absl::string_view text, int max_depth);
// Builds `out` (empty on entry) from `text` in the same single pass and with
// the same checks; false when ScanValue would fail. Numbers are converted
// from their text with absl::SimpleAtod (correctly rounded, like protobuf's
// strtod), so the result equals protobuf's own JSON parser's.
bool BuildValue(absl::string_view text, int max_depth, google::protobuf::Value* out);

// Text from the input or from protobuf, made safe to show: at most
// `max_bytes`, control and non-ASCII bytes as \xNN so that an error frame is
// always valid UTF-8 JSON.
std::string Printable(absl::string_view text, size_t max_bytes = 200);

}  // namespace roomcast::edge::strict_json

#endif  // ROOMCAST_EDGE_STRICT_JSON_H_
