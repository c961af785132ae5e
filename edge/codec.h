// The browser frame codec: bytes of one WebSocket frame <-> v1::ClientFrame /
// v1::ServerFrame (proto/roomcast/v1/roomcast.proto, "Browser frames").
//
// Pure functions: no sockets, no Beast, no shared state. Every function is
// safe to call from any thread at the same time. Nothing here keeps a
// reference to its arguments past the call.
//
// Two encodings, chosen per connection at the upgrade:
//   * kJson     — text frames holding canonical proto3 JSON (lowerCamelCase
//                 names, uint64 as decimal strings on output; numbers or
//                 strings accepted on input, fields at their default omitted).
//   * kProtobuf — binary frames (subprotocol "roomcast.v1.proto") holding the
//                 serialized message.
//
// Decoding treats every byte as hostile: any malformed frame yields
// INVALID_ARGUMENT with a message naming the problem, never an exception, a
// crash or a log line. Decoding is strict, stricter than protobuf's
// own JSON parser, which accepts single quotes, trailing commas and duplicate
// keys: a JSON frame must be one RFC 8259 object in valid UTF-8 with no
// duplicate key, no unknown field anywhere, and exactly one op; a binary frame
// must hold no unknown field and only valid UTF-8 strings.
//
// Encoding a room message is done once per edge and the bytes are shared by
// every recipient (EncodeMessageFrame); JSON conversion per recipient would
// dominate fan-out.
#ifndef ROOMCAST_EDGE_CODEC_H_
#define ROOMCAST_EDGE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {

enum class Encoding {
  kJson,      // Text frames: canonical proto JSON.
  kProtobuf,  // Binary frames (subprotocol "roomcast.v1.proto"): serialized protobuf.
};

// The deepest nesting of arrays/objects accepted in publish data: `1` is 0,
// `{"a":[1]}` is 2. It bounds the work a frame can cause, and it keeps every
// accepted value printable and parseable by protobuf 3.21 with its default
// limits, which give up between 30 and 32 levels of JSON objects (a Value
// costs three message levels per object: Value, Struct, map entry), e.g. when
// a history reply wraps the value in four more messages. 24 leaves headroom
// for such wrappers while being far deeper than real application data (64
// would exceed what protobuf itself can print back).
//
// The same limit decides whether a published payload is shown to browsers as
// JSON (EncodeMessageFrame): backend payloads nested deeper go in `binary`.
inline constexpr int kMaxDataDepth = 24;

// The deepest nesting of a whole JSON ClientFrame: publish data sits two
// levels down ({"publish":{"data":...}}). Deeper frames are rejected by the
// streaming validation pass (boost::json SAX, no DOM) before protobuf sees them.
inline constexpr int kMaxFrameDepth = kMaxDataDepth + 2;

// A frame that could not be decoded. `id` is the request id when it could be
// read from the malformed frame (so the error reply can carry it), else 0.
struct DecodeError {
  uint64_t id = 0;
  absl::Status status;
};

// Decodes one browser frame. Returns INVALID_ARGUMENT for: invalid JSON
// (syntax, truncation, trailing data, non-UTF-8 bytes, lone surrogates),
// a top level that is not an object, duplicate keys in any object, unknown
// fields at any depth, wrong value types (room as number; id negative,
// fractional or not a decimal string), no op or two ops, an empty `room` for
// join/leave/publish/presence/history, publish without `data`, data nested
// deeper than kMaxDataDepth, undecodable protobuf (truncated, wrong wire
// types, invalid UTF-8, unknown fields), and (binary only) data holding a
// non-finite number, a Value with no kind or an unknown null_value.
//
// `id_if_readable` may be null. Otherwise it is always written: the frame's id
// on success; on failure the id when it could be read before the problem (an
// unsigned integer, an integral number, or a decimal string — as canonical JSON
// allows), else 0.
absl::StatusOr<v1::ClientFrame> DecodeClientFrame(absl::string_view payload, Encoding encoding,
                                                  uint64_t* id_if_readable);

// Encodes a reply, error, presence event or disconnect. Never fails: should
// protobuf refuse to print the frame as JSON (only possible for values the
// decoder never produces, e.g. a Timestamp out of range), the result is an
// INTERNAL error frame with the same id.
std::string EncodeServerFrame(const v1::ServerFrame& frame, Encoding encoding);

// A room message as browsers receive it:
//   ServerFrame{message: ServerMessage{room, position, data|binary, publisher, time}}.
// Encode it ONCE per edge and share the bytes among all recipients.
//
// The payload counts as JSON when it is one valid UTF-8 JSON value (strict
// RFC 8259, surrounding whitespace allowed) with only finite numbers, no
// duplicate key in an object (protobuf's Struct cannot hold one), nested at
// most kMaxDataDepth deep; both encodings make the same decision. Then:
//   * kJson: `data` is the payload spliced in verbatim (validated with
//     boost::json, never re-serialized);
//   * kProtobuf: `data` is the google.protobuf.Value parsed from it.
// Otherwise (only backends can publish such payloads) the bytes go in `binary`
// (base64 in JSON). An empty payload yields neither field. Should protobuf
// refuse to print the other fields (a Timestamp out of range), the result is
// an INTERNAL error frame with id 0.
std::string EncodeMessageFrame(const v1::Message& message, Encoding encoding);

// The ServerMessage for `message` with the payload as a Value or in `binary`,
// by the rule of EncodeMessageFrame. For building BrowserHistory replies.
v1::ServerMessage ToServerMessage(const v1::Message& message);

// Whether EncodeMessageFrame shows this payload to browsers as JSON.
bool IsBrowserJson(absl::string_view payload);

// The compact JSON text of a ClientPublishRequest.data Value, to send to the
// core as PublishRequest.data bytes. For any Value DecodeClientFrame accepted
// the result is valid JSON that IsBrowserJson accepts. A Value protobuf cannot
// print (no kind set, nested too deep) yields "null".
std::string ValueToJson(const google::protobuf::Value& value);

// The error reply for a failed request: ServerFrame{id, error{code, message}}
// with the numeric canonical (gRPC/absl) code, e.g. 3 for INVALID_ARGUMENT.
// `status` should not be OK; an OK status gives code 0.
v1::ServerFrame ErrorFrame(uint64_t id, const absl::Status& status);
v1::ServerFrame ErrorFrame(const DecodeError& error);

// Batches: one WebSocket message from the edge carries one or more encoded
// ServerFrames, so that whatever queued up for a connection while its last
// write was in flight goes out in one write.
//   * kJson: the frames' JSON texts separated by '\n' (encoded frames never
//     contain a raw newline: EncodeMessageFrame turns the insignificant
//     whitespace of spliced payloads into spaces); a message holding one
//     frame is exactly that frame's text;
//   * kProtobuf: each serialized frame preceded by its length as a protobuf
//     varint (the framing of protobuf's writeDelimitedTo).
// The edge keeps each frame as a batch entry, built once and shared by every
// recipient: '\n' + JSON text, or varint length + bytes. A message is its
// entries written back to back, the first JSON entry without its '\n'.
std::string BatchEntry(absl::string_view frame, Encoding encoding);

// The encoded ServerFrames of one batch message, in order (views into
// `message`). INVALID_ARGUMENT for a truncated length prefix or frame, or an
// empty JSON entry.
absl::StatusOr<std::vector<absl::string_view>> SplitBatch(absl::string_view message,
                                                          Encoding encoding);

// SSE (docs/protocol.md §8). Every event's id: line is the stream's resume
// cursor: "room epoch offset" per room, joined by ','. Room names contain
// neither ' ' nor ','.
using SseCursor = absl::flat_hash_map<std::string, v1::Position>;

// The cursor of a Last-Event-ID (or lastEventId parameter). Entries that are
// not "room epoch offset" are skipped: a bad cursor resumes nothing, it is
// not an error.
SseCursor ParseSseCursor(absl::string_view text);

// The id: text for `rooms`, in that order; rooms with no position in
// `cursor` are left out.
std::string FormatSseCursor(const std::vector<std::string>& rooms, const SseCursor& cursor);

// The cursor entry of one room: "room epoch offset".
std::string SseCursorEntry(absl::string_view room, const v1::Position& position);

// One SSE event: "id: <id>\ndata: <data>\n\n", without the id: line when `id`
// is empty. `data` holds no line break (encoded frames never do).
std::string SseEvent(absl::string_view id, absl::string_view data);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_CODEC_H_
