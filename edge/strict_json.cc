#include "edge/strict_json.h"

#include <boost/json/basic_parser_impl.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace roomcast::edge::strict_json {

namespace json = boost::json;
namespace pb = google::protobuf;

std::string Printable(absl::string_view text, size_t max_bytes) {
  std::string out;
  const bool truncated = text.size() > max_bytes;
  if (truncated) text = text.substr(0, max_bytes);
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  if (truncated) out += "...";
  return out;
}

absl::string_view TopLevelName(TopLevel top) {
  switch (top) {
    case TopLevel::kArray:
      return "an array";
    case TopLevel::kString:
      return "a string";
    case TopLevel::kNumber:
      return "a number";
    case TopLevel::kBool:
      return "a boolean";
    case TopLevel::kNull:
      return "null";
    case TopLevel::kNone:
    case TopLevel::kObject:
      break;
  }
  return "nothing";
}

namespace {

// The ops of ClientFrame, in field order (the top-level keys besides "id").
constexpr absl::string_view kOps[] = {"join", "leave", "publish", "presence", "history", "ping"};

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

// Parses a uint64 as protobuf's JSON parser accepts it inside a string: an
// optional '+' and decimal digits, nothing else.
bool ParseDecimalUint64(absl::string_view text, uint64_t* out) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

// ---------------------------------------------------------------------------
// Strict JSON validation: one streaming pass with boost::json's SAX parser,
// no DOM. Boost checks the syntax (RFC 8259: no comments, single quotes or
// trailing commas), UTF-8 and UTF-16 surrogates, and the nesting depth
// (parse_options.max_depth). The handler adds what protobuf needs to agree:
// no duplicate keys in an object, finite numbers. In frame mode it also reads
// the top level: the id (for error replies even when the frame is malformed),
// unknown top-level fields and the ops present.
// ---------------------------------------------------------------------------

class JsonScanner {
 public:
  // Limits are the caller's: max_depth in parse_options, frame size upstream.
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  explicit JsonScanner(bool frame_mode) : frame_mode_(frame_mode) {}

  // Why the handler stopped the parse (boost then reports error::syntax).
  const std::string& handler_error() const { return handler_error_; }
  TopLevel top() const { return top_; }
  bool id_readable() const { return id_readable_; }
  uint64_t id() const { return id_; }
  const std::string& unknown_field() const { return unknown_field_; }
  bool has_unknown_field() const { return has_unknown_field_; }
  const std::vector<std::string>& ops() const { return ops_; }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }

  bool on_object_begin(json::error_code&) {
    OnValue(TopLevel::kObject);
    ++depth_;
    if (open_objects_ == key_sets_.size()) key_sets_.emplace_back();
    key_sets_[open_objects_++].clear();
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    --depth_;
    --open_objects_;
    return true;
  }
  bool on_array_begin(json::error_code&) {
    OnValue(TopLevel::kArray);
    ++depth_;
    return true;
  }
  bool on_array_end(std::size_t, json::error_code&) {
    --depth_;
    return true;
  }

  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    key_.append(s.data(), s.size());
    const bool fresh = key_sets_[open_objects_ - 1].insert(key_).second;
    if (!fresh) {
      handler_error_ = absl::StrCat("duplicate key \"", Printable(key_, 64), "\"");
      ec = json::error::syntax;
      return false;
    }
    if (frame_mode_ && depth_ == 1) OnTopLevelKey();
    key_.clear();
    return true;
  }

  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    if (!in_string_) StartString();
    in_string_ = true;
    if (string_is_id_) id_text_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    if (!in_string_) StartString();
    in_string_ = false;
    if (string_is_id_) {
      id_text_.append(s.data(), s.size());
      string_is_id_ = false;
      if (ParseDecimalUint64(id_text_, &id_)) id_readable_ = true;
    }
    return true;
  }

  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(int64_t i, json::string_view, json::error_code&) {
    const bool id = TakeIdSlot();
    OnValue(TopLevel::kNumber);
    if (id && i >= 0) SetId(static_cast<uint64_t>(i));
    return true;
  }
  bool on_uint64(uint64_t u, json::string_view, json::error_code&) {
    const bool id = TakeIdSlot();
    OnValue(TopLevel::kNumber);
    if (id) SetId(u);
    return true;
  }
  bool on_double(double d, json::string_view, json::error_code& ec) {
    const bool id = TakeIdSlot();
    OnValue(TopLevel::kNumber);
    if (!std::isfinite(d)) {
      handler_error_ = "number out of the range of a double";
      ec = json::error::syntax;
      return false;
    }
    // Protobuf accepts integral doubles (7.0, 1e2) for uint64 fields.
    if (id && d >= 0 && d < 18446744073709551616.0 && std::floor(d) == d) {
      SetId(static_cast<uint64_t>(d));
    }
    return true;
  }
  bool on_bool(bool, json::error_code&) {
    OnValue(TopLevel::kBool);
    return true;
  }
  bool on_null(json::error_code&) {
    OnValue(TopLevel::kNull);
    return true;
  }
  // Comments are off in parse_options; these are never called.
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  // Called at the start of every value.
  void OnValue(TopLevel kind) {
    if (top_ == TopLevel::kNone) top_ = kind;
    if (depth_ == 1) value_is_id_ = false;
  }
  void StartString() {
    string_is_id_ = TakeIdSlot();
    if (string_is_id_) id_text_.clear();
    OnValue(TopLevel::kString);
  }
  bool TakeIdSlot() {
    const bool id = value_is_id_ && depth_ == 1;
    if (id) value_is_id_ = false;
    return id;
  }
  void SetId(uint64_t id) {
    id_ = id;
    id_readable_ = true;
  }
  void OnTopLevelKey() {
    if (key_ == "id") {
      value_is_id_ = true;
      return;
    }
    for (absl::string_view op : kOps) {
      if (key_ == op) {
        ops_.push_back(key_);
        return;
      }
    }
    if (!has_unknown_field_) {
      has_unknown_field_ = true;
      unknown_field_ = key_;
    }
  }

  const bool frame_mode_;
  int depth_ = 0;
  TopLevel top_ = TopLevel::kNone;
  std::string handler_error_;

  // Keys of each open object, innermost last; reused across objects.
  std::vector<absl::flat_hash_set<std::string>> key_sets_;
  size_t open_objects_ = 0;
  std::string key_;
  bool in_string_ = false;  // Between the first and the last piece of a string value.

  // Frame mode: the top level.
  bool value_is_id_ = false;   // The next value at depth 1 is the id.
  bool string_is_id_ = false;  // The string being read is the id.
  std::string id_text_;
  bool id_readable_ = false;
  uint64_t id_ = 0;
  bool has_unknown_field_ = false;
  std::string unknown_field_;
  std::vector<std::string> ops_;
};

// Runs the scanner over `text`. OK when `text` is exactly one JSON value
// (whitespace around it allowed) passing every check; otherwise the problem,
// without any prefix.
absl::Status Scan(absl::string_view text, int max_depth, json::basic_parser<JsonScanner>& parser) {
  json::error_code ec;
  const size_t consumed = parser.write_some(/*more=*/false, text.data(), text.size(), ec);
  if (ec) {
    const std::string& handler_error = parser.handler().handler_error();
    if (!handler_error.empty()) return Invalid(handler_error);
    if (ec == json::error::too_deep) {
      return Invalid(absl::StrCat("nested deeper than ", max_depth, " levels"));
    }
    return Invalid(absl::StrCat("invalid JSON at byte ", consumed, ": ", ec.message()));
  }
  if (consumed != text.size()) {
    return Invalid(absl::StrCat("invalid JSON at byte ", consumed, ": data after the value"));
  }
  return absl::OkStatus();
}

// Builds a google.protobuf.Value from JSON in the same single pass, with the
// same checks as JsonScanner (duplicate keys, finite numbers; depth and syntax
// by boost). Far cheaper than protobuf's JSON parser, and equal to its result:
// numbers are converted from their text with absl::SimpleAtod (correctly
// rounded, like protobuf's strtod), so -0 stays -0.
class ValueBuilder {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  // `root` must outlive the builder and start empty.
  explicit ValueBuilder(pb::Value* root) : root_(root) {}

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }

  bool on_object_begin(json::error_code& ec) {
    pb::Value* value = NextSlot(ec);
    if (value == nullptr) return false;
    value->mutable_struct_value();
    open_.push_back(value);
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    open_.pop_back();
    return true;
  }
  bool on_array_begin(json::error_code& ec) {
    pb::Value* value = NextSlot(ec);
    if (value == nullptr) return false;
    value->mutable_list_value();
    open_.push_back(value);
    return true;
  }
  bool on_array_end(std::size_t, json::error_code&) {
    open_.pop_back();
    return true;
  }

  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }

  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code& ec) {
    text_.append(s.data(), s.size());
    pb::Value* value = NextSlot(ec);
    if (value == nullptr) return false;
    value->set_string_value(std::move(text_));
    text_.clear();
    return true;
  }

  bool on_number_part(json::string_view s, json::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(int64_t, json::string_view s, json::error_code& ec) { return OnNumber(s, ec); }
  bool on_uint64(uint64_t, json::string_view s, json::error_code& ec) { return OnNumber(s, ec); }
  bool on_double(double, json::string_view s, json::error_code& ec) { return OnNumber(s, ec); }

  bool on_bool(bool b, json::error_code& ec) {
    pb::Value* value = NextSlot(ec);
    if (value == nullptr) return false;
    value->set_bool_value(b);
    return true;
  }
  bool on_null(json::error_code& ec) {
    pb::Value* value = NextSlot(ec);
    if (value == nullptr) return false;
    value->set_null_value(pb::NULL_VALUE);
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  bool OnNumber(json::string_view s, json::error_code& ec) {
    text_.append(s.data(), s.size());
    double number = 0;
    const bool parsed = absl::SimpleAtod(text_, &number);
    text_.clear();
    if (!parsed || !std::isfinite(number)) {
      ec = json::error::syntax;
      return false;
    }
    pb::Value* value = NextSlot(ec);
    if (value == nullptr) return false;
    value->set_number_value(number);
    return true;
  }

  // Where the value that starts now goes; null (and `ec` set) on a duplicate key.
  pb::Value* NextSlot(json::error_code& ec) {
    if (open_.empty()) return root_;
    pb::Value* container = open_.back();
    if (container->has_list_value()) return container->mutable_list_value()->add_values();
    auto [it, fresh] = container->mutable_struct_value()->mutable_fields()->try_emplace(key_);
    key_.clear();
    if (!fresh) {
      ec = json::error::syntax;
      return nullptr;
    }
    return &it->second;
  }

  pb::Value* const root_;
  std::vector<pb::Value*> open_;  // Open arrays and objects, innermost last.
  std::string key_;
  std::string text_;  // The pieces of the current string or number.
};

json::parse_options StrictOptions(int max_depth) {
  json::parse_options options;
  options.max_depth = static_cast<std::size_t>(max_depth);
  options.allow_comments = false;
  options.allow_trailing_commas = false;
  options.allow_invalid_utf8 = false;
  return options;
}

}  // namespace

absl::Status ScanFrame(absl::string_view text, int max_depth, FrameScan* out) {
  json::basic_parser<JsonScanner> parser(StrictOptions(max_depth), /*frame_mode=*/true);
  absl::Status status = Scan(text, max_depth, parser);
  const JsonScanner& scan = parser.handler();
  out->top = scan.top();
  out->id_readable = scan.id_readable();
  out->id = scan.id();
  out->has_unknown_field = scan.has_unknown_field();
  out->unknown_field = scan.unknown_field();
  out->ops = scan.ops();
  return status;
}

absl::Status ScanValue(absl::string_view text, int max_depth) {
  json::basic_parser<JsonScanner> parser(StrictOptions(max_depth), /*frame_mode=*/false);
  return Scan(text, max_depth, parser);
}

bool BuildValue(absl::string_view text, int max_depth, pb::Value* out) {
  json::basic_parser<ValueBuilder> parser(StrictOptions(max_depth), out);
  json::error_code ec;
  const size_t consumed = parser.write_some(/*more=*/false, text.data(), text.size(), ec);
  return !ec && consumed == text.size();
}

}  // namespace roomcast::edge::strict_json
