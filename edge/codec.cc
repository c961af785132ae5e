#include "edge/codec.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "edge/strict_json.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/wire_format_lite.h"

namespace roomcast::edge {
namespace {

namespace pb = google::protobuf;

constexpr absl::string_view kOpList = "join, leave, publish, presence, history or ping";

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

using strict_json::Printable;
using strict_json::TopLevel;
using strict_json::TopLevelName;

// ---------------------------------------------------------------------------
// Checks protobuf cannot express, shared by both encodings.
// ---------------------------------------------------------------------------

// `depth` is the number of arrays/objects enclosing `value`.
absl::Status CheckData(const pb::Value& value, int depth) {
  switch (value.kind_case()) {
    case pb::Value::kNullValue:
      if (value.null_value() != pb::NULL_VALUE) {
        return Invalid("publish.data holds an invalid null");
      }
      return absl::OkStatus();
    case pb::Value::kNumberValue:
      if (!std::isfinite(value.number_value())) {
        return Invalid("publish.data holds a number that is not finite");
      }
      return absl::OkStatus();
    case pb::Value::kStringValue:
    case pb::Value::kBoolValue:
      return absl::OkStatus();
    case pb::Value::kStructValue:
    case pb::Value::kListValue:
      break;
    case pb::Value::KIND_NOT_SET:
      return Invalid("publish.data holds a value with no kind");
  }
  if (depth + 1 > kMaxDataDepth) {
    return Invalid(absl::StrCat("publish.data nests deeper than ", kMaxDataDepth, " levels"));
  }
  if (value.kind_case() == pb::Value::kStructValue) {
    for (const auto& [key, field] : value.struct_value().fields()) {
      if (absl::Status s = CheckData(field, depth + 1); !s.ok()) return s;
    }
  } else {
    for (const pb::Value& element : value.list_value().values()) {
      if (absl::Status s = CheckData(element, depth + 1); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRoom(absl::string_view op, const std::string& room) {
  if (room.empty()) return Invalid(absl::StrCat(op, ".room is missing or empty"));
  return absl::OkStatus();
}

// What a decoded frame must also satisfy: one op, the fields it needs.
absl::Status CheckFrame(const v1::ClientFrame& frame) {
  switch (frame.op_case()) {
    case v1::ClientFrame::kJoin:
      return CheckRoom("join", frame.join().room());
    case v1::ClientFrame::kLeave:
      return CheckRoom("leave", frame.leave().room());
    case v1::ClientFrame::kPresence:
      return CheckRoom("presence", frame.presence().room());
    case v1::ClientFrame::kHistory:
      return CheckRoom("history", frame.history().room());
    case v1::ClientFrame::kPing:
      return absl::OkStatus();
    case v1::ClientFrame::kPublish: {
      if (absl::Status s = CheckRoom("publish", frame.publish().room()); !s.ok()) return s;
      if (!frame.publish().has_data() ||
          frame.publish().data().kind_case() == pb::Value::KIND_NOT_SET) {
        return Invalid("publish.data is missing");
      }
      return CheckData(frame.publish().data(), 0);
    }
    case v1::ClientFrame::OP_NOT_SET:
      break;
  }
  return Invalid(absl::StrCat("frame has no op: expected one of ", kOpList));
}

// ---------------------------------------------------------------------------
// JSON frames
// ---------------------------------------------------------------------------

absl::StatusOr<v1::ClientFrame> DecodeJson(absl::string_view payload, uint64_t* id) {
  strict_json::FrameScan scan;
  const absl::Status syntax = strict_json::ScanFrame(payload, kMaxFrameDepth, &scan);
  if (scan.id_readable) *id = scan.id;

  if (!syntax.ok()) {
    if (payload.find_first_not_of(" \t\r\n") == absl::string_view::npos) {
      return Invalid("empty frame: expected a JSON object");
    }
    if (absl::StartsWith(syntax.message(), "nested deeper")) {
      return Invalid(absl::StrCat("frame ", syntax.message(), " (publish.data may nest at most ",
                                  kMaxDataDepth, " levels)"));
    }
    return syntax;
  }
  if (scan.top != TopLevel::kObject) {
    return Invalid(absl::StrCat("a frame must be a JSON object, got ", TopLevelName(scan.top)));
  }
  if (scan.has_unknown_field) {
    return Invalid(absl::StrCat("unknown field \"", Printable(scan.unknown_field, 64),
                                "\": a frame has an \"id\" and one op: ", kOpList));
  }
  if (scan.ops.size() > 1) {
    return Invalid(
        absl::StrCat("a frame has exactly one op, got ", absl::StrJoin(scan.ops, " and ")));
  }

  v1::ClientFrame frame;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  options.case_insensitive_enum_parsing = false;
  const pb::util::Status parsed = pb::util::JsonStringToMessage(
      pb::StringPiece(payload.data(), payload.size()), &frame, options);
  if (!parsed.ok()) {
    // Protobuf's messages add lines with the input and a caret: keep the first.
    absl::string_view message(parsed.message().data(), parsed.message().size());
    message = message.substr(0, message.find('\n'));
    return Invalid(absl::StrCat("invalid frame: ", Printable(message)));
  }
  *id = frame.id();
  if (absl::Status s = CheckFrame(frame); !s.ok()) return s;
  return frame;
}

// ---------------------------------------------------------------------------
// Binary frames
// ---------------------------------------------------------------------------

// Field 1 (id, varint) of a ClientFrame that failed to parse, when it can be
// read before the damage. The last occurrence wins, as in protobuf.
uint64_t ScanBinaryId(absl::string_view payload) {
  pb::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(payload.data()),
                              static_cast<int>(payload.size()));
  uint64_t id = 0;
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) break;
    if (pb::internal::WireFormatLite::GetTagFieldNumber(tag) == 1 &&
        pb::internal::WireFormatLite::GetTagWireType(tag) ==
            pb::internal::WireFormatLite::WIRETYPE_VARINT) {
      uint64_t value;
      if (!in.ReadVarint64(&value)) break;
      id = value;
    } else if (!pb::internal::WireFormatLite::SkipField(&in, tag)) {
      break;
    }
  }
  return id;
}

// How deep CheckWire follows nested messages: protobuf's own default limit.
constexpr int kMaxWireNesting = 100;

// Walks the wire format of one `descriptor` message up to the current limit
// of `in`, the way the parser will, before it does. Protobuf logs an ERROR
// line for every string field holding invalid UTF-8, which a hostile client
// must not be able to trigger at will, so those are rejected here first. The
// walk also rejects what the parser would silently keep as unknown fields:
// unknown field numbers and known fields sent with the wrong wire type.
// `payload` is the whole buffer `in` reads from.
absl::Status CheckWire(absl::string_view payload, pb::io::CodedInputStream& in,
                       const pb::Descriptor* descriptor, int nesting) {
  using Wire = pb::internal::WireFormatLite;
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      if (in.ConsumedEntireMessage()) return absl::OkStatus();
      return Invalid("invalid protobuf frame: malformed field tag");
    }
    const int number = Wire::GetTagFieldNumber(tag);
    const Wire::WireType wire_type = Wire::GetTagWireType(tag);
    const pb::FieldDescriptor* field = descriptor->FindFieldByNumber(number);
    if (field == nullptr) {
      return Invalid(absl::StrCat("invalid protobuf frame: unknown field ", number, " in ",
                                  descriptor->full_name()));
    }
    const Wire::WireType expected =
        Wire::WireTypeForFieldType(static_cast<Wire::FieldType>(field->type()));
    const bool packed = field->is_packable() && wire_type == Wire::WIRETYPE_LENGTH_DELIMITED;
    if (wire_type != expected && !packed) {
      return Invalid(
          absl::StrCat("invalid protobuf frame: wrong wire type for ", field->full_name()));
    }
    if (field->type() == pb::FieldDescriptor::TYPE_STRING) {
      uint32_t length;
      if (!in.ReadVarint32(&length)) return Invalid("invalid protobuf frame: truncated string");
      const size_t position = static_cast<size_t>(in.CurrentPosition());
      if (length > payload.size() - position) {
        return Invalid("invalid protobuf frame: truncated string");
      }
      const absl::string_view bytes = payload.substr(position, length);
      if (!pb::internal::IsStructurallyValidUTF8(bytes.data(), static_cast<int>(bytes.size()))) {
        return Invalid(
            absl::StrCat("invalid protobuf frame: invalid UTF-8 in ", field->full_name()));
      }
      if (!in.Skip(static_cast<int>(length))) {
        return Invalid("invalid protobuf frame: truncated string");
      }
    } else if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      if (nesting >= kMaxWireNesting) return Invalid("invalid protobuf frame: nested too deep");
      uint32_t length;
      if (!in.ReadVarint32(&length) ||
          static_cast<size_t>(length) >
              payload.size() - static_cast<size_t>(in.CurrentPosition())) {
        return Invalid("invalid protobuf frame: truncated message");
      }
      const pb::io::CodedInputStream::Limit limit = in.PushLimit(static_cast<int>(length));
      if (absl::Status s = CheckWire(payload, in, field->message_type(), nesting + 1); !s.ok()) {
        return s;
      }
      in.PopLimit(limit);
    } else if (!Wire::SkipField(&in, tag)) {
      return Invalid(absl::StrCat("invalid protobuf frame: truncated ", field->full_name()));
    }
  }
}

absl::StatusOr<v1::ClientFrame> DecodeBinary(absl::string_view payload, uint64_t* id) {
  if (payload.size() > static_cast<size_t>(INT_MAX)) return Invalid("protobuf frame too large");
  {
    pb::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(payload.data()),
                                static_cast<int>(payload.size()));
    if (absl::Status s = CheckWire(payload, in, v1::ClientFrame::descriptor(), 1); !s.ok()) {
      *id = ScanBinaryId(payload);
      return s;
    }
  }
  v1::ClientFrame frame;
  if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    *id = ScanBinaryId(payload);
    return Invalid("invalid protobuf frame: not a serialized roomcast.v1.ClientFrame");
  }
  *id = frame.id();
  if (absl::Status s = CheckFrame(frame); !s.ok()) return s;
  return frame;
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

pb::util::JsonPrintOptions PrintOptions() {
  pb::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = false;
  options.always_print_enums_as_ints = false;
  options.preserve_proto_field_names = false;  // Canonical lowerCamelCase.
  return options;
}

bool PrintJson(const pb::Message& message, std::string* out) {
  out->clear();
  return pb::util::MessageToJsonString(message, out, PrintOptions()).ok();
}

std::string InternalErrorJson(uint64_t id, absl::string_view what) {
  std::string out;
  if (!PrintJson(ErrorFrame(id, absl::InternalError(what)), &out)) {
    out = R"({"error":{"code":13,"message":"internal error"}})";
  }
  return out;
}

// The ServerMessage without its payload.
v1::ServerMessage HeaderOf(const v1::Message& message) {
  v1::ServerMessage out;
  out.set_room(message.room());
  if (message.has_position()) *out.mutable_position() = message.position();
  if (message.has_publisher()) *out.mutable_publisher() = message.publisher();
  if (message.has_time()) *out.mutable_time() = message.time();
  return out;
}

}  // namespace

absl::StatusOr<v1::ClientFrame> DecodeClientFrame(absl::string_view payload, Encoding encoding,
                                                  uint64_t* id_if_readable) {
  uint64_t id = 0;
  absl::StatusOr<v1::ClientFrame> result =
      encoding == Encoding::kJson ? DecodeJson(payload, &id) : DecodeBinary(payload, &id);
  if (id_if_readable != nullptr) *id_if_readable = id;
  return result;
}

bool IsBrowserJson(absl::string_view payload) {
  return strict_json::ScanValue(payload, kMaxDataDepth).ok();
}

std::string EncodeServerFrame(const v1::ServerFrame& frame, Encoding encoding) {
  if (encoding == Encoding::kProtobuf) return frame.SerializeAsString();
  std::string out;
  if (!PrintJson(frame, &out)) return InternalErrorJson(frame.id(), "could not encode frame");
  return out;
}

v1::ServerMessage ToServerMessage(const v1::Message& message) {
  v1::ServerMessage out = HeaderOf(message);
  // One pass decides and builds: the builder accepts exactly what
  // IsBrowserJson accepts.
  const std::string& data = message.data();
  if (!strict_json::BuildValue(data, kMaxDataDepth, out.mutable_data())) {
    out.clear_data();
    out.set_binary(data);
  }
  return out;
}

std::string EncodeMessageFrame(const v1::Message& message, Encoding encoding) {
  if (encoding == Encoding::kProtobuf) {
    v1::ServerFrame frame;
    *frame.mutable_message() = ToServerMessage(message);
    return frame.SerializeAsString();
  }

  const bool is_json = IsBrowserJson(message.data());
  v1::ServerFrame frame;
  v1::ServerMessage* header = frame.mutable_message();
  *header = HeaderOf(message);
  if (!is_json) header->set_binary(message.data());
  std::string out;
  if (!PrintJson(frame, &out)) {
    return InternalErrorJson(
        0, absl::StrCat("could not encode a message of room ", Printable(message.room(), 64)));
  }
  if (!is_json) return out;

  // Splice the payload in as the last field of the inner object:
  // {"message":{...}} -> {"message":{...,"data":<payload>}}.
  constexpr absl::string_view kPrefix = R"({"message":{)";
  constexpr absl::string_view kSuffix = "}}";
  if (!absl::StartsWith(out, kPrefix) || !absl::EndsWith(out, kSuffix)) {
    return InternalErrorJson(0, "unexpected message frame layout");
  }
  const bool empty_inner = out.size() == kPrefix.size() + kSuffix.size();
  std::string spliced;
  spliced.reserve(out.size() + message.data().size() + 8);
  spliced.append(out, 0, out.size() - kSuffix.size());
  spliced.append(empty_inner ? R"("data":)" : R"(,"data":)");
  const size_t data_at = spliced.size();
  spliced.append(message.data());
  // Valid JSON has raw line breaks only between tokens (never inside a
  // string), so they can become spaces: a JSON batch separates frames by '\n'.
  std::replace_if(
      spliced.begin() + static_cast<std::ptrdiff_t>(data_at), spliced.end(),
      [](char c) { return c == '\n' || c == '\r'; }, ' ');
  spliced.append(kSuffix.data(), kSuffix.size());
  return spliced;
}

std::string ValueToJson(const google::protobuf::Value& value) {
  std::string out;
  if (!PrintJson(value, &out) || !IsBrowserJson(out)) return "null";
  return out;
}

v1::ServerFrame ErrorFrame(uint64_t id, const absl::Status& status) {
  v1::ServerFrame frame;
  frame.set_id(id);
  v1::Error* error = frame.mutable_error();
  error->set_code(static_cast<uint32_t>(status.code()));
  error->set_message(std::string(status.message()));
  return frame;
}

v1::ServerFrame ErrorFrame(const DecodeError& error) { return ErrorFrame(error.id, error.status); }

std::string BatchEntry(absl::string_view frame, Encoding encoding) {
  std::string entry;
  if (encoding == Encoding::kJson) {
    entry.reserve(frame.size() + 1);
    entry.push_back('\n');
  } else {
    uint8_t prefix[5];  // A varint32 takes at most 5 bytes.
    const uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
        static_cast<uint32_t>(frame.size()), prefix);
    entry.reserve(frame.size() + (end - prefix));
    entry.append(reinterpret_cast<const char*>(prefix), end - prefix);
  }
  entry.append(frame.data(), frame.size());
  return entry;
}

absl::StatusOr<std::vector<absl::string_view>> SplitBatch(absl::string_view message,
                                                          Encoding encoding) {
  std::vector<absl::string_view> frames;
  if (encoding == Encoding::kJson) {
    for (absl::string_view frame : absl::StrSplit(message, '\n')) {
      if (frame.empty()) return absl::InvalidArgumentError("empty frame in a JSON batch");
      frames.push_back(frame);
    }
    return frames;
  }
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(message.data()),
                                            static_cast<int>(message.size()));
  while (in.CurrentPosition() < static_cast<int>(message.size())) {
    uint32_t size = 0;
    if (!in.ReadVarint32(&size)) {
      return absl::InvalidArgumentError("truncated frame length in a binary batch");
    }
    const auto at = static_cast<size_t>(in.CurrentPosition());
    if (size > message.size() - at || !in.Skip(static_cast<int>(size))) {
      return absl::InvalidArgumentError("truncated frame in a binary batch");
    }
    frames.push_back(message.substr(at, size));
  }
  return frames;
}

SseCursor ParseSseCursor(absl::string_view text) {
  SseCursor cursor;
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> parts = absl::StrSplit(entry, ' ', absl::SkipEmpty());
    uint64_t offset = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[2], &offset)) continue;
    v1::Position& p = cursor[parts[0]];
    p.set_epoch(std::string(parts[1]));
    p.set_offset(offset);
  }
  return cursor;
}

std::string SseCursorEntry(absl::string_view room, const v1::Position& position) {
  return absl::StrCat(room, " ", position.epoch(), " ", position.offset());
}

std::string FormatSseCursor(const std::vector<std::string>& rooms, const SseCursor& cursor) {
  std::string out;
  for (const std::string& room : rooms) {
    auto it = cursor.find(room);
    if (it == cursor.end()) continue;
    if (!out.empty()) out.push_back(',');
    absl::StrAppend(&out, SseCursorEntry(room, it->second));
  }
  return out;
}

std::string SseEvent(absl::string_view id, absl::string_view data) {
  if (id.empty()) return absl::StrCat("data: ", data, "\n\n");
  return absl::StrCat("id: ", id, "\ndata: ", data, "\n\n");
}

}  // namespace roomcast::edge
