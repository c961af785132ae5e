// The edge's HTTP side (Boost.Beast): listener, HTTP routing, WebSocket and
// SSE sessions. Kept in one translation unit because Beast is expensive to
// compile. Sessions live on one shard (io_context, one thread each); core
// replies and room events are posted onto that shard, never handled on gRPC
// threads.
#include "edge/edge_server.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/url/parse.hpp"
#include "edge/codec.h"
#include "edge/core_link.h"
#include "edge/demo_page.h"
#include "edge/hub.h"
#include "google/protobuf/util/json_util.h"

namespace roomcast::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr absl::string_view kBinarySubprotocol = "roomcast.v1.proto";

std::chrono::steady_clock::duration ToSteady(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

bool Reconnects(v1::DisconnectCode code) {
  return code == v1::GOING_AWAY || code == v1::INTERNAL_ERROR || code == v1::TRY_AGAIN_LATER ||
         (code >= 4000 && code < 4500);
}

v1::EdgeReply ErrorReply(grpc::StatusCode code, const std::string& message) {
  v1::EdgeReply reply;
  reply.mutable_error()->set_code(code);
  reply.mutable_error()->set_message(message);
  return reply;
}

absl::Status ToStatus(const v1::Error& error) {
  return absl::Status(static_cast<absl::StatusCode>(error.code()), error.message());
}

// A write takes queued frames up to this size (at least one), so no
// WebSocket message is much larger than this unless one frame is; a session
// with this much waiting writes without waiting for the write delay.
constexpr size_t kMaxBatchBytes = 64 * 1024;

class DelayedWrites;
struct EdgeContext;

// Write scheduling shared by the WebSocket and SSE sessions: one write in
// flight, and the next one started after the current handler finished or,
// on a busy connection, after the write delay (EdgeOptions::write_delay).
class DelayedWriter {
 public:
  // Starts the write that was scheduled (on the session's shard thread).
  void WriteNow() {
    write_posted_ = false;
    Write();
  }

 protected:
  ~DelayedWriter() = default;

  // Writes what is queued, if no write is in flight.
  virtual void Write() = 0;

  // Call when something was queued and no write is in flight. Schedules
  // WriteNow() once: after the current handler, or, when the connection
  // started a write less than the write delay ago and has less than a full
  // batch (`queued` bytes) waiting, when the shard's write-delay timer fires.
  // A full batch that finds a write scheduled is written at once. `self` is
  // this session.
  void ScheduleWrite(EdgeContext& ctx, size_t shard, const net::any_io_executor& executor,
                     size_t queued, std::shared_ptr<DelayedWriter> self);

  // A write started now.
  void WriteStarted() { last_write_ = std::chrono::steady_clock::now(); }

  bool write_posted_ = false;  // WriteNow() is scheduled.

 private:
  std::chrono::steady_clock::time_point last_write_;
};

// The write delay (EdgeOptions::write_delay) of one shard: sessions with
// something to write wait here until the shard's one timer fires, then
// write together, each everything it gathered meanwhile.
class DelayedWrites {
 public:
  DelayedWrites(net::io_context& context, absl::Duration delay)
      : timer_(context), delay_(ToSteady(delay)) {}

  void Add(std::shared_ptr<DelayedWriter> session);

 private:
  net::steady_timer timer_;
  const std::chrono::steady_clock::duration delay_;
  std::vector<std::shared_ptr<DelayedWriter>> waiting_;
};

// Replies to a connection's own requests may queue up to this many times
// EdgeOptions::max_queued_bytes (room for a large resume) before the
// connection counts as a slow consumer.
constexpr size_t kReplyQueueFactor = 16;

// Everything the sessions share. Outlives them all (the server waits for
// connections to drain before it is destroyed).
struct EdgeContext {
  const EdgeOptions& options;
  Hub& hub;
  CoreLink& link;
  // One per shard when options.write_delay > 0.
  std::vector<std::unique_ptr<DelayedWrites>> delayed_writes;
  std::atomic<bool> shutting_down{false};
};

void DelayedWriter::ScheduleWrite(EdgeContext& ctx, size_t shard,
                                  const net::any_io_executor& executor, size_t queued,
                                  std::shared_ptr<DelayedWriter> self) {
  if (write_posted_) {
    if (queued >= kMaxBatchBytes) Write();  // A full batch does not wait for the delay.
    return;
  }
  write_posted_ = true;
  if (!ctx.delayed_writes.empty() && queued < kMaxBatchBytes &&
      std::chrono::steady_clock::now() - last_write_ < ToSteady(ctx.options.write_delay)) {
    ctx.delayed_writes[shard]->Add(std::move(self));
  } else {
    net::post(executor, [self = std::move(self)] { self->WriteNow(); });
  }
}

// ---------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------

enum class OriginVerdict { kAllowed, kForbidden };

// Decides whether `req` may be served, and adds the CORS response headers.
// Requests without Origin (non-browser, or same-origin GET) and same-origin
// requests are allowed; cross-origin ones only from the allow-list.
template <class Fields>
OriginVerdict CheckOrigin(const http::request<http::string_body>& req, const EdgeOptions& options,
                          Fields& response_fields) {
  auto origin_it = req.find(http::field::origin);
  if (origin_it == req.end()) return OriginVerdict::kAllowed;
  std::string origin(origin_it->value());
  std::string host(req[http::field::host]);
  if (origin == "http://" + host || origin == "https://" + host) return OriginVerdict::kAllowed;
  const auto& allowed = options.allowed_origins;
  if (std::find(allowed.begin(), allowed.end(), origin) != allowed.end()) {
    response_fields.set(http::field::access_control_allow_origin, origin);
    response_fields.set(http::field::access_control_allow_credentials, "true");
    response_fields.set(http::field::vary, "Origin");
    return OriginVerdict::kAllowed;
  }
  if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) {
    response_fields.set(http::field::access_control_allow_origin, "*");
    return OriginVerdict::kAllowed;
  }
  return OriginVerdict::kForbidden;
}

unsigned HttpStatusOf(uint32_t grpc_code) {
  switch (static_cast<grpc::StatusCode>(grpc_code)) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 400;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

// ---------------------------------------------------------------------------
// Requests shared by WebSocket sessions: order, rate limit, abuse count.
// ---------------------------------------------------------------------------

// A token bucket: `rate` tokens per second, at most `burst`.
class RateLimiter {
 public:
  RateLimiter(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}
  bool Allow() {
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  const double rate_;
  const double burst_;
  double tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// ---------------------------------------------------------------------------
// WebSocket session
// ---------------------------------------------------------------------------

class WsSession final : public Client,
                        public DelayedWriter,
                        public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(EdgeContext& ctx, tcp::socket&& socket, size_t shard, std::string id,
            uint64_t generation, bool binary)
      : Client(std::move(id), shard),
        ctx_(ctx),
        ws_(std::move(socket)),
        generation_(generation),
        encoding_(binary ? Encoding::kProtobuf : Encoding::kJson),
        limiter_(ctx.options.rate_limit_per_second, ctx.options.rate_limit_burst) {}

  ~WsSession() override { ctx_.hub.counters().queued_bytes.fetch_sub(gauged_bytes_); }

  void Run(http::request<http::string_body> req) {
    websocket::stream_base::timeout timeout;
    timeout.handshake_timeout = ToSteady(ctx_.options.handshake_timeout);
    timeout.idle_timeout = ToSteady(ctx_.options.idle_timeout);
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.read_message_max(ctx_.options.max_frame_bytes);
    ws_.auto_fragment(false);  // One batch, one message, one write.
    bool binary = encoding_ == Encoding::kProtobuf;
    ws_.set_option(websocket::stream_base::decorator([binary](websocket::response_type& res) {
      res.set(http::field::server, "roomcast-edge");
      if (binary) res.set(http::field::sec_websocket_protocol, std::string(kBinarySubprotocol));
    }));
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
  }

  // Live fan-out is what can outrun a client, so the queue limit applies
  // here; replies are paced by the client's own (rate-limited) requests.
  void Deliver(const FramePtr& frame) override {
    if (closing_ || close_sent_ || !open_) return;
    const std::string& entry =
        encoding_ == Encoding::kJson ? frame->json_entry : frame->protobuf_entry;
    if (queued_bytes_ + entry.size() > ctx_.options.max_queued_bytes) {
      // Slow consumer: drop what waits (keep the write in flight), tell the
      // client why, and close. It reconnects and resumes from its last position.
      ctx_.hub.counters().slow_consumer_total.fetch_add(1);
      DropPending();
      Close(v1::SLOW_CONSUMER,
            "slow consumer: too much data waiting; resume from the last position");
      return;
    }
    Enqueue(frame, entry);
  }

  void Close(v1::DisconnectCode code, std::string reason) override {
    if (closing_ || !open_) return;
    closing_ = true;
    close_code_ = code;
    close_reason_ = reason;
    v1::ServerFrame frame;
    v1::Disconnect* d = frame.mutable_disconnect();
    d->set_code(code);
    d->set_reason(reason);
    d->set_reconnect(Reconnects(code));
    EnqueueOwned(EncodeServerFrame(frame, encoding_));
  }

 private:
  void OnAccept(beast::error_code ec) {
    if (ec) return;  // Handshake failed or timed out: nothing was registered.
    open_ = true;
    ws_.binary(encoding_ == Encoding::kProtobuf);
    EdgeCounters& counters = ctx_.hub.counters();
    counters.ws_connections.fetch_add(1);
    counters.connections_total.fetch_add(1);
    if (encoding_ == Encoding::kProtobuf) counters.binary_clients.fetch_add(1);
    ctx_.hub.Register(shared_from_this());
    v1::EdgeToCore connected;
    connected.mutable_client_connected()->mutable_client()->set_client_id(id());
    ctx_.link.Send(generation_, std::move(connected));
    if (ctx_.link.generation() != generation_) {
      Close(v1::RECONNECT, "the core link went down; reconnect");
    } else if (ctx_.shutting_down) {
      Close(v1::GOING_AWAY, "server shutting down");
    }
    DoRead();
  }

  void DoRead() {
    ws_.async_read(read_buffer_, beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec) {
      Cleanup();
      return;
    }
    std::string payload = beast::buffers_to_string(read_buffer_.data());
    read_buffer_.consume(read_buffer_.size());
    if (!closing_) HandleFrame(payload);
    DoRead();
  }

  void HandleFrame(absl::string_view payload) {
    // Decode first, in the frame's own encoding, so that every error below
    // can carry the request id.
    Encoding received = ws_.got_text() ? Encoding::kJson : Encoding::kProtobuf;
    uint64_t id = 0;
    absl::StatusOr<v1::ClientFrame> frame = DecodeClientFrame(payload, received, &id);
    if (received != encoding_) {
      BadRequest(id,
                 absl::InvalidArgumentError(
                     encoding_ == Encoding::kJson
                         ? "binary frame on a JSON connection (use subprotocol roomcast.v1.proto)"
                         : "text frame on a protobuf connection"));
      return;
    }
    if (!frame.ok()) {
      BadRequest(id, frame.status());
      return;
    }
    if (!limiter_.Allow()) {
      BadRequest(id, absl::ResourceExhaustedError("rate limit exceeded; slow down"));
      return;
    }
    v1::EdgeRequest request;
    switch (frame->op_case()) {
      case v1::ClientFrame::kPing: {
        if (id == 0) return;  // No reply wanted.
        v1::ServerFrame reply;
        reply.set_id(id);
        reply.mutable_reply()->mutable_pong();
        ReplyLocal(reply);
        return;
      }
      case v1::ClientFrame::kJoin: {
        const std::string& room = frame->join().room();
        if (joined_.contains(room) || joining_.contains(room)) {
          ReplyLocal(ErrorFrame(
              id, absl::AlreadyExistsError(absl::StrCat("already joined \"", room, "\""))));
          return;
        }
        if (joined_.size() + joining_.size() >= ctx_.options.max_rooms_per_connection) {
          ReplyLocal(ErrorFrame(id, absl::ResourceExhaustedError(
                                        absl::StrCat("too many rooms on one connection (limit ",
                                                     ctx_.options.max_rooms_per_connection, ")"))));
          return;
        }
        joining_.insert(room);
        *request.mutable_join() = frame->join();
        break;
      }
      case v1::ClientFrame::kLeave: {
        const std::string& room = frame->leave().room();
        if (joined_.erase(room) > 0) ctx_.hub.Leave(*this, room);  // Stop delivering now.
        *request.mutable_leave() = frame->leave();
        break;
      }
      case v1::ClientFrame::kPublish: {
        v1::PublishRequest* publish = request.mutable_publish();
        publish->set_room(frame->publish().room());
        publish->set_data(ValueToJson(frame->publish().data()));
        break;
      }
      case v1::ClientFrame::kPresence:
        *request.mutable_presence() = frame->presence();
        break;
      case v1::ClientFrame::kHistory:
        *request.mutable_history() = frame->history();
        break;
      case v1::ClientFrame::OP_NOT_SET:
        BadRequest(id, absl::InvalidArgumentError("frame has no operation"));
        return;
    }
    request.set_client_id(this->id());
    uint64_t slot = next_slot_++;
    slots_.push_back({slot, std::nullopt});  // Pending until the core answers.
    ctx_.link.Request(
        generation_, std::move(request),
        [self = shared_from_this(), slot, id, frame = *std::move(frame)](v1::EdgeReply reply) {
          net::post(self->ws_.get_executor(),
                    [self, slot, id, frame = std::move(frame), reply = std::move(reply)] {
                      self->OnCoreReply(slot, id, frame, reply);
                    });
        });
  }

  // Fills the request's slot; replies go out in request order.
  void OnCoreReply(uint64_t slot, uint64_t id, const v1::ClientFrame& request,
                   const v1::EdgeReply& reply) {
    std::vector<std::string> frames;
    if (request.has_join()) joining_.erase(request.join().room());
    if (reply.has_error()) {
      frames.push_back(EncodeServerFrame(ErrorFrame(id, ToStatus(reply.error())), encoding_));
    } else if (!open_ || closing_) {
      // Closing: nothing more is delivered.
    } else {
      v1::ServerFrame out;
      out.set_id(id);
      v1::Reply* r = out.mutable_reply();
      switch (reply.result_case()) {
        case v1::EdgeReply::kJoin: {
          const std::string& room = request.join().room();
          joined_.insert(room);
          ctx_.hub.Join(*this, room);
          for (const v1::Message& m : reply.join().replayed()) {
            frames.push_back(EncodeMessageFrame(m, encoding_));
          }
          v1::JoinResult* join = r->mutable_join();
          join->set_recovered(reply.join().recovered());
          *join->mutable_position() = reply.join().position();
          join->set_room(room);
          break;
        }
        case v1::EdgeReply::kLeave:
          // Also undoes a join that was still pending when the leave was sent.
          if (joined_.erase(request.leave().room()) > 0)
            ctx_.hub.Leave(*this, request.leave().room());
          r->mutable_leave();
          break;
        case v1::EdgeReply::kPublish:
          *r->mutable_publish() = reply.publish();
          break;
        case v1::EdgeReply::kPresence:
          *r->mutable_presence() = reply.presence();
          break;
        case v1::EdgeReply::kHistory: {
          v1::BrowserHistory* h = r->mutable_history();
          for (const v1::Message& m : reply.history().messages())
            *h->add_messages() = ToServerMessage(m);
          *h->mutable_position() = reply.history().position();
          break;
        }
        default:
          break;
      }
      if (id != 0) frames.push_back(EncodeServerFrame(out, encoding_));  // 0: no reply wanted.
    }
    for (Slot& s : slots_) {
      if (s.seq == slot) {
        s.frames = std::move(frames);
        break;
      }
    }
    FlushSlots();
    if (reply.has_error() && reply.error().code() == grpc::StatusCode::UNAVAILABLE) {
      Close(v1::RECONNECT, "the core link went down; reconnect");
    } else if (reply.has_error() && reply.error().code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      // The core may still apply the request (a join, a publish): the edge
      // no longer knows this client's state, so it reconnects and resumes.
      Close(v1::RECONNECT, "the core did not answer in time; reconnect");
    }
  }

  // A reply decided here (ping, local errors) waits behind earlier requests
  // still at the core, so every client sees replies in request order.
  void ReplyLocal(const v1::ServerFrame& frame) {
    slots_.push_back({next_slot_++, std::vector<std::string>{EncodeServerFrame(frame, encoding_)}});
    FlushSlots();
  }

  // Queues the replies that are ready, in request order. Replies are paced
  // by the client's own requests, not by max_queued_bytes; but a client that
  // keeps asking without reading would grow its queue without end, so past
  // kReplyQueueFactor × max_queued_bytes it is closed as a slow consumer
  // (a reply larger than that alone still goes out when nothing waits).
  void FlushSlots() {
    auto ready = slots_.begin();
    for (; ready != slots_.end() && ready->frames.has_value(); ++ready) {
      for (const std::string& f : *ready->frames) {
        if (queued_bytes_ > 0 &&
            queued_bytes_ + f.size() > kReplyQueueFactor * ctx_.options.max_queued_bytes) {
          ctx_.hub.counters().slow_consumer_total.fetch_add(1);
          DropPending();
          slots_.clear();
          Close(v1::SLOW_CONSUMER, "slow consumer: replies are not being read");
          return;
        }
        EnqueueOwned(f);
      }
    }
    slots_.erase(slots_.begin(), ready);
  }

  // Counts bad requests per minute: an occasional mistake never adds up to
  // a close, a client stuck in a loop of them does.
  void BadRequest(uint64_t id, const absl::Status& status) {
    ctx_.hub.counters().bad_requests_total.fetch_add(1);
    ReplyLocal(ErrorFrame(id, status));
    auto now = std::chrono::steady_clock::now();
    if (now - bad_window_start_ > std::chrono::minutes(1)) {
      bad_window_start_ = now;
      bad_requests_ = 0;
    }
    if (++bad_requests_ > ctx_.options.max_bad_requests) {
      Close(v1::BAD_REQUEST, "too many malformed or rate-limited requests");
    }
  }

  // Outbound frames wait in queue_ as batch entries (edge/codec.h,
  // "Batches"): room events by reference to the bytes the hub encoded once,
  // replies in their own buffer. One write is in flight at a time, and it
  // takes every entry queued meanwhile (up to kMaxBatchBytes), copied into
  // one buffer, as one WebSocket message (one contiguous buffer costs less
  // than a gather of hundreds of small ones, in Beast and in the kernel). The
  // first entry on an idle connection waits for the handler that queued it
  // to finish, so the deliveries of one hub dispatch share one write too.
  void Enqueue(std::shared_ptr<const void> owner, absl::string_view entry) {
    if (close_sent_ || !open_) return;
    queue_.push_back({std::move(owner), entry});
    queued_bytes_ += entry.size();
    ScheduleWrite();
  }

  // Starts a write once the current handler finished; on a connection that
  // started a write less than the write delay ago, after the write delay,
  // unless a full batch is waiting already.
  void ScheduleWrite() {
    if (writing_) return;
    DelayedWriter::ScheduleWrite(ctx_, shard(), ws_.get_executor(), queued_bytes_,
                                 shared_from_this());
  }

  void Write() override { DoWrite(); }

  void EnqueueOwned(absl::string_view frame) {
    auto entry = std::make_shared<const std::string>(BatchEntry(frame, encoding_));
    absl::string_view view = *entry;
    Enqueue(std::move(entry), view);
  }

  // Drops every entry not yet in flight.
  void DropPending() {
    queue_.clear();
    queued_bytes_ = write_buffer_.size();
  }

  // Moves this session's share of the edge-wide queued_bytes gauge to
  // queued_bytes_ (once per write, not once per frame).
  void UpdateGauge() {
    ctx_.hub.counters().queued_bytes.fetch_add(static_cast<int64_t>(queued_bytes_) -
                                               static_cast<int64_t>(gauged_bytes_));
    gauged_bytes_ = queued_bytes_;
  }

  void DoWrite() {
    if (writing_) return;
    if (queue_.empty()) {
      UpdateGauge();
      if (closing_ && !close_sent_) {
        close_sent_ = true;
        websocket::close_reason reason(static_cast<uint16_t>(close_code_));
        reason.reason = close_reason_.substr(0, 120);  // Control frames carry at most 125 bytes.
        ws_.async_close(reason, [self = shared_from_this()](beast::error_code) {
          // The read loop ends with the close handshake and cleans up.
        });
      }
      return;
    }
    size_t count = 0;
    size_t bytes = 0;
    for (; count < queue_.size(); ++count) {
      const size_t size = queue_[count].entry.size();
      if (count > 0 && bytes + size > kMaxBatchBytes) break;
      bytes += size;
    }
    write_buffer_.reserve(bytes);
    for (size_t i = 0; i < count; ++i) {
      absl::string_view entry = queue_[i].entry;
      if (i == 0 && encoding_ == Encoding::kJson) entry.remove_prefix(1);  // No leading '\n'.
      write_buffer_.append(entry.data(), entry.size());
    }
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(count));
    if (queue_.empty()) std::vector<Outbound>().swap(queue_);  // Idle: no capacity kept.
    queued_bytes_ -= bytes - write_buffer_.size();
    writing_ = true;
    WriteStarted();
    UpdateGauge();
    ws_.async_write(net::buffer(write_buffer_),
                    beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    writing_ = false;
    queued_bytes_ -= write_buffer_.size();
    std::string().swap(write_buffer_);  // Idle connections hold no buffer.
    if (ec) {
      // The peer is gone: drop everything; the failing read cleans up.
      DropPending();
      UpdateGauge();
      close_sent_ = true;
      beast::get_lowest_layer(ws_).close();
      return;
    }
    if (queue_.empty()) {
      DoWrite();  // Sends the close frame if closing.
    } else {
      ScheduleWrite();
    }
  }

  // Leaves every room and map. Runs once, when the read loop ends.
  void Cleanup() {
    if (!open_ || cleaned_) return;
    cleaned_ = true;
    closing_ = true;
    close_sent_ = true;  // Nothing more goes out.
    DropPending();
    UpdateGauge();
    for (const std::string& room : joined_) ctx_.hub.Leave(*this, room);
    joined_.clear();
    ctx_.hub.Unregister(*this);
    v1::EdgeToCore gone;
    gone.mutable_client_disconnected()->set_client_id(id());
    ctx_.link.Send(generation_, std::move(gone));
    EdgeCounters& counters = ctx_.hub.counters();
    counters.ws_connections.fetch_sub(1);
    if (encoding_ == Encoding::kProtobuf) counters.binary_clients.fetch_sub(1);
  }

  struct Outbound {
    std::shared_ptr<const void> owner;
    absl::string_view entry;  // Owned by `owner`.
  };

  EdgeContext& ctx_;
  // A plain socket below: the WebSocket stream's own timeouts (handshake,
  // idle pings) are all a session needs, and beast::tcp_stream's timers would
  // add to every connection and every write.
  websocket::stream<tcp::socket> ws_;
  const uint64_t generation_;
  const Encoding encoding_;
  RateLimiter limiter_;
  beast::flat_buffer read_buffer_;
  bool open_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool cleaned_ = false;
  bool writing_ = false;
  int bad_requests_ = 0;
  std::chrono::steady_clock::time_point bad_window_start_ = std::chrono::steady_clock::now();
  v1::DisconnectCode close_code_ = v1::GOING_AWAY;
  std::string close_reason_;
  // Vectors, not deques: an empty std::deque still holds ~600 bytes, and
  // both are short (queue_ is emptied by every write).
  std::vector<Outbound> queue_;  // Not yet written.
  std::string write_buffer_;     // The message in flight.
  size_t queued_bytes_ = 0;      // queue_ + write_buffer_.
  size_t gauged_bytes_ = 0;      // This session's share of counters().queued_bytes.
  absl::flat_hash_set<std::string> joined_;
  absl::flat_hash_set<std::string> joining_;
  // Replies in request order.
  struct Slot {
    uint64_t seq;
    std::optional<std::vector<std::string>> frames;  // nullopt while at the core.
  };
  std::vector<Slot> slots_;
  uint64_t next_slot_ = 0;
};

void DelayedWrites::Add(std::shared_ptr<DelayedWriter> session) {
  waiting_.push_back(std::move(session));
  if (waiting_.size() > 1) return;  // The timer is armed.
  timer_.expires_after(delay_);
  timer_.async_wait([this](beast::error_code ec) {
    if (ec) return;
    std::vector<std::shared_ptr<DelayedWriter>> due;
    due.swap(waiting_);
    for (const auto& session : due) session->WriteNow();
  });
}

// ---------------------------------------------------------------------------
// SSE session
// ---------------------------------------------------------------------------

class SseSession final : public Client,
                         public DelayedWriter,
                         public std::enable_shared_from_this<SseSession> {
 public:
  SseSession(EdgeContext& ctx, beast::tcp_stream&& stream, size_t shard, std::string id,
             uint64_t generation, std::vector<std::string> rooms, SseCursor since)
      : Client(std::move(id), shard),
        ctx_(ctx),
        stream_(std::move(stream)),
        generation_(generation),
        rooms_(std::move(rooms)),
        since_(std::move(since)),
        heartbeat_(stream_.get_executor()) {}

  ~SseSession() override {
    ctx_.hub.counters().queued_bytes.fetch_sub(pending_.size() + writing_bytes_);
  }

  // `headers` carries the CORS headers already decided.
  void Run(http::response<http::empty_body> headers) {
    EdgeCounters& counters = ctx_.hub.counters();
    counters.sse_connections.fetch_add(1);
    counters.connections_total.fetch_add(1);
    open_ = true;
    ctx_.hub.Register(shared_from_this());
    v1::EdgeToCore connected;
    connected.mutable_client_connected()->mutable_client()->set_client_id(id());
    ctx_.link.Send(generation_, std::move(connected));

    headers_ = std::move(headers);
    headers_.result(http::status::ok);
    headers_.set(http::field::content_type, "text/event-stream");
    headers_.set(http::field::cache_control, "no-cache");
    headers_.set("X-Accel-Buffering", "no");
    headers_.keep_alive(false);  // The body ends when the connection does.
    serializer_.emplace(headers_);
    stream_.expires_after(ToSteady(ctx_.options.write_timeout));
    http::async_write_header(stream_, *serializer_,
                             beast::bind_front_handler(&SseSession::OnHeader, shared_from_this()));
    Append(absl::StrCat("retry: ", absl::ToInt64Milliseconds(ctx_.options.sse_retry), "\n\n"));
    for (const std::string& room : rooms_) Join(room);
    WatchForClose();
    ArmHeartbeat();
  }

  void Deliver(const FramePtr& frame) override {
    if (closing_) return;
    if (pending_.size() + frame->json().size() > ctx_.options.max_queued_bytes) {
      ctx_.hub.counters().slow_consumer_total.fetch_add(1);
      ctx_.hub.counters().queued_bytes.fetch_sub(pending_.size());
      pending_.clear();
      Close(v1::SLOW_CONSUMER, "slow consumer: too much data waiting; resume with Last-Event-ID");
      return;
    }
    if (frame->is_message) cursor_[frame->room] = frame->position;
    if (frame->is_message && rooms_.size() == 1 && !frame->sse_event.empty()) {
      Append(frame->sse_event);  // Its cursor is this message's position.
    } else {
      AppendEvent(frame->json());
    }
  }

  void Close(v1::DisconnectCode code, std::string reason) override {
    if (closing_) return;
    v1::ServerFrame frame;
    v1::Disconnect* d = frame.mutable_disconnect();
    d->set_code(code);
    d->set_reason(reason);
    d->set_reconnect(Reconnects(code));
    // No id line: the browser's Last-Event-ID stays at the last event it
    // really received (after a slow-consumer drop, not at dropped ones).
    Append(SseEvent("", EncodeServerFrame(frame, Encoding::kJson)));
    closing_ = true;  // The stream ends once this last event is written.
    MaybeWrite();
  }

 private:
  void Join(const std::string& room) {
    v1::EdgeRequest request;
    request.set_client_id(id());
    request.mutable_join()->set_room(room);
    if (auto it = since_.find(room); it != since_.end()) {
      *request.mutable_join()->mutable_since() = it->second;
    }
    ctx_.link.Request(
        generation_, std::move(request), [self = shared_from_this(), room](v1::EdgeReply reply) {
          net::post(self->stream_.get_executor(),
                    [self, room, reply = std::move(reply)] { self->OnJoined(room, reply); });
        });
  }

  void OnJoined(const std::string& room, const v1::EdgeReply& reply) {
    if (closing_) return;
    if (reply.has_error()) {
      absl::Status status = ToStatus(reply.error());
      AppendEvent(EncodeServerFrame(
          ErrorFrame(0, absl::Status(status.code(),
                                     absl::StrCat("room \"", room, "\": ", status.message()))),
          Encoding::kJson));
      if (reply.error().code() == grpc::StatusCode::UNAVAILABLE ||
          reply.error().code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        // Link lost, or the core may still apply the join later: reconnect.
        Close(v1::RECONNECT, "the core link went down or did not answer; reconnect");
      }
      return;
    }
    joined_.push_back(room);
    ctx_.hub.Join(*this, room);
    for (const v1::Message& m : reply.join().replayed()) {
      cursor_[room] = m.position();
      AppendEvent(EncodeMessageFrame(m, Encoding::kJson));
    }
    cursor_[room] = reply.join().position();
    v1::ServerFrame frame;
    v1::JoinResult* join = frame.mutable_reply()->mutable_join();
    join->set_room(room);
    join->set_recovered(reply.join().recovered());
    *join->mutable_position() = reply.join().position();
    AppendEvent(EncodeServerFrame(frame, Encoding::kJson));
  }

  void AppendEvent(absl::string_view json) {
    Append(SseEvent(FormatSseCursor(rooms_, cursor_), json));
  }

  void Append(absl::string_view text) {
    if (!open_ || done_) return;
    pending_.append(text.data(), text.size());
    ctx_.hub.counters().queued_bytes.fetch_add(text.size());
    ScheduleWrite();
  }

  // Like WsSession::ScheduleWrite: after the current handler, or after the
  // write delay on a busy stream.
  void ScheduleWrite() {
    if (!header_written_ || writing_bytes_ > 0 || done_) return;
    DelayedWriter::ScheduleWrite(ctx_, shard(), stream_.get_executor(), pending_.size(),
                                 shared_from_this());
  }

  void Write() override { MaybeWrite(); }

  void OnHeader(beast::error_code ec, size_t) {
    if (ec) {
      Finish();
      return;
    }
    header_written_ = true;
    MaybeWrite();
  }

  // Everything appended while a write was in flight goes out in one write.
  void MaybeWrite() {
    if (!header_written_ || writing_bytes_ > 0 || done_) return;
    if (pending_.empty()) {
      if (closing_) Finish();
      return;
    }
    writing_.swap(pending_);
    pending_.clear();
    writing_bytes_ = writing_.size();
    WriteStarted();
    stream_.expires_after(ToSteady(ctx_.options.write_timeout));
    net::async_write(stream_, net::buffer(writing_),
                     beast::bind_front_handler(&SseSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    ctx_.hub.counters().queued_bytes.fetch_sub(writing_bytes_);
    writing_bytes_ = 0;
    wrote_since_heartbeat_ = true;
    if (ec) {
      Finish();
      return;
    }
    if (pending_.empty()) {
      MaybeWrite();  // Ends the stream if closing.
    } else {
      ScheduleWrite();
    }
  }

  // The client sends nothing after its request; a read completing (with
  // data or an error) means it went away.
  void WatchForClose() {
    stream_.socket().async_read_some(net::buffer(discard_),
                                     [self = shared_from_this()](beast::error_code ec, size_t) {
                                       if (ec) {
                                         self->Finish();
                                       } else {
                                         self->WatchForClose();
                                       }
                                     });
  }

  void ArmHeartbeat() {
    heartbeat_.expires_after(ToSteady(ctx_.options.sse_heartbeat));
    heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->done_) return;
      if (!self->wrote_since_heartbeat_) self->Append(": heartbeat\n\n");
      self->wrote_since_heartbeat_ = false;
      self->ArmHeartbeat();
    });
  }

  // Ends the stream and leaves every room and map. Idempotent.
  void Finish() {
    if (done_) return;
    done_ = true;
    closing_ = true;
    heartbeat_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    for (const std::string& room : joined_) ctx_.hub.Leave(*this, room);
    joined_.clear();
    ctx_.hub.Unregister(*this);
    v1::EdgeToCore gone;
    gone.mutable_client_disconnected()->set_client_id(id());
    ctx_.link.Send(generation_, std::move(gone));
    ctx_.hub.counters().sse_connections.fetch_sub(1);
  }

  EdgeContext& ctx_;
  beast::tcp_stream stream_;
  const uint64_t generation_;
  const std::vector<std::string> rooms_;
  const SseCursor since_;
  SseCursor cursor_;
  net::steady_timer heartbeat_;
  http::response<http::empty_body> headers_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  bool open_ = false;
  bool header_written_ = false;
  bool closing_ = false;
  bool done_ = false;
  bool wrote_since_heartbeat_ = false;
  std::string pending_;
  std::string writing_;
  size_t writing_bytes_ = 0;
  std::vector<std::string> joined_;
  char discard_[512];
};

// ---------------------------------------------------------------------------
// Plain HTTP: routing, /publish, /healthz, /metrics, the demo page.
// ---------------------------------------------------------------------------

class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(EdgeContext& ctx, tcp::socket&& socket, size_t shard)
      : ctx_(ctx), stream_(std::move(socket)), shard_(shard) {}

  void Run() { DoRead(); }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(ctx_.options.max_frame_bytes + 1024);
    stream_.expires_after(ToSteady(ctx_.options.handshake_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec == http::error::end_of_stream) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec == http::error::body_limit) {
      Respond(Text(http::status::payload_too_large, "request body too large\n", parser_->get()));
      return;
    }
    if (ec) return;  // Timed out or garbage: drop the connection.
    Route(parser_->release());
  }

  http::response<http::string_body> Text(
      http::status status, std::string body, const http::request<http::string_body>& req,
      absl::string_view content_type = "text/plain; charset=utf-8") {
    http::response<http::string_body> res(status, req.version());
    res.set(http::field::server, "roomcast-edge");
    res.set(http::field::content_type, std::string(content_type));
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  void Route(http::request<http::string_body> req) {
    auto url = boost::urls::parse_origin_form(req.target());
    if (!url) {
      Respond(Text(http::status::bad_request, "bad request target\n", req));
      return;
    }
    std::string path = url->path();
    bool is_get = req.method() == http::verb::get || req.method() == http::verb::head;

    if (path == "/ws" && websocket::is_upgrade(req)) {
      UpgradeWebSocket(std::move(req));
    } else if (path == "/sse" && is_get) {
      StartSse(std::move(req), *url);
    } else if (path == "/publish" && req.method() == http::verb::post) {
      Publish(std::move(req));
    } else if (path == "/publish" && req.method() == http::verb::options) {
      Preflight(std::move(req));
    } else if (path == "/healthz" && is_get) {
      const char* state = ctx_.shutting_down            ? "not ready: shutting down\n"
                          : ctx_.link.generation() == 0 ? "not ready: no core link\n"
                                                        : nullptr;
      Respond(Text(state == nullptr ? http::status::ok : http::status::service_unavailable,
                   state == nullptr ? "ok\n" : state, req));
    } else if (path == "/metrics" && is_get) {
      Respond(Text(http::status::ok, Metrics(), req, "text/plain; version=0.0.4"));
    } else if (path == "/" && is_get) {
      Respond(Text(http::status::ok, std::string(DemoPage()), req, "text/html; charset=utf-8"));
    } else if (path == "/roomcast.js" && is_get) {
      Respond(Text(http::status::ok, std::string(ClientModule()), req,
                   "text/javascript; charset=utf-8"));
    } else {
      Respond(Text(http::status::not_found, "not found\n", req));
    }
  }

  // Refuses a new long-lived connection when full, shutting down, or without
  // a core link; returns the link generation to use otherwise.
  std::optional<uint64_t> Admit(const http::request<http::string_body>& req) {
    uint64_t generation = ctx_.link.generation();
    const char* why = nullptr;
    if (ctx_.shutting_down) {
      why = "shutting down\n";
    } else if (generation == 0) {
      why = "not ready: no core link\n";
    } else if (static_cast<size_t>(ctx_.hub.counters().connections()) >=
               ctx_.options.max_connections) {
      why = "server full\n";
    }
    if (why == nullptr) return generation;
    ctx_.hub.counters().refused_total.fetch_add(1);
    auto res = Text(http::status::service_unavailable, why, req);
    res.set(http::field::retry_after, "5");
    res.keep_alive(false);
    Respond(std::move(res));
    return std::nullopt;
  }

  bool OriginAllowed(const http::request<http::string_body>& req) {
    http::fields unused;
    if (CheckOrigin(req, ctx_.options, unused) == OriginVerdict::kAllowed) return true;
    auto res = Text(http::status::forbidden, "origin not allowed\n", req);
    res.keep_alive(false);
    Respond(std::move(res));
    return false;
  }

  void UpgradeWebSocket(http::request<http::string_body> req) {
    if (!OriginAllowed(req)) return;
    std::optional<uint64_t> generation = Admit(req);
    if (!generation) return;
    bool binary = false;
    for (absl::string_view p :
         absl::StrSplit(std::string(req[http::field::sec_websocket_protocol]), ',')) {
      if (absl::StripAsciiWhitespace(p) == kBinarySubprotocol) binary = true;
    }
    stream_.expires_never();
    auto session = std::make_shared<WsSession>(ctx_, stream_.release_socket(), shard_,
                                               ctx_.hub.NewClientId(), *generation, binary);
    session->Run(std::move(req));
  }

  void StartSse(http::request<http::string_body> req, const boost::urls::url_view& url) {
    http::response<http::empty_body> headers(http::status::ok, req.version());
    headers.set(http::field::server, "roomcast-edge");
    if (CheckOrigin(req, ctx_.options, headers) != OriginVerdict::kAllowed) {
      OriginAllowed(req);  // Sends the 403.
      return;
    }
    std::vector<std::string> rooms;
    std::string last_event_id(req["Last-Event-ID"]);
    for (auto param : url.params()) {
      if (param.key == "room") {
        for (absl::string_view r :
             absl::StrSplit(std::string(param.value), ',', absl::SkipEmpty())) {
          if (std::find(rooms.begin(), rooms.end(), r) == rooms.end()) rooms.emplace_back(r);
        }
      } else if (param.key == "lastEventId" && last_event_id.empty()) {
        last_event_id = param.value;
      }
    }
    if (rooms.empty() || rooms.size() > ctx_.options.max_rooms_per_connection) {
      Respond(Text(http::status::bad_request,
                   absl::StrCat("name 1 to ", ctx_.options.max_rooms_per_connection,
                                " rooms: /sse?room=a&room=b\n"),
                   req));
      return;
    }
    std::optional<uint64_t> generation = Admit(req);
    if (!generation) return;
    stream_.expires_never();
    auto session =
        std::make_shared<SseSession>(ctx_, std::move(stream_), shard_, ctx_.hub.NewClientId(),
                                     *generation, std::move(rooms), ParseSseCursor(last_event_id));
    session->Run(std::move(headers));
  }

  void Preflight(http::request<http::string_body> req) {
    http::response<http::string_body> res(http::status::no_content, req.version());
    if (CheckOrigin(req, ctx_.options, res) != OriginVerdict::kAllowed) {
      OriginAllowed(req);
      return;
    }
    res.set(http::field::access_control_allow_methods, "POST, OPTIONS");
    res.set(http::field::access_control_allow_headers, "Content-Type");
    res.set(http::field::access_control_max_age, "600");
    res.keep_alive(req.keep_alive());
    Respond(std::move(res));
  }

  // POST /publish {"room": "...", "data": <any JSON>} → {"position": {...}}
  void Publish(http::request<http::string_body> req) {
    http::response<http::string_body> res(http::status::ok, req.version());
    if (CheckOrigin(req, ctx_.options, res) != OriginVerdict::kAllowed) {
      OriginAllowed(req);
      return;
    }
    // The body is a ClientPublishRequest; decoding it as the publish op of a
    // frame applies the same strict rules (and depth limit) as a WebSocket
    // publish.
    uint64_t unused_id = 0;
    absl::StatusOr<v1::ClientFrame> frame = DecodeClientFrame(
        absl::StrCat("{\"publish\":", req.body(), "}"), Encoding::kJson, &unused_id);
    if (!frame.ok() || !frame->has_publish()) {
      std::string why = frame.ok() ? "body must be {\"room\": \"...\", \"data\": <JSON value>}"
                                   : std::string(frame.status().message());
      PublishDone(std::move(req), std::move(res),
                  ErrorReply(grpc::StatusCode::INVALID_ARGUMENT, why));
      return;
    }
    const v1::ClientPublishRequest& body = frame->publish();
    uint64_t generation = ctx_.link.generation();
    if (generation == 0) {
      PublishDone(std::move(req), std::move(res),
                  ErrorReply(grpc::StatusCode::UNAVAILABLE, "not ready: no core link"));
      return;
    }
    // A short-lived client of its own, so the core applies the same rules
    // as to a WebSocket publish.
    std::string client_id = ctx_.hub.NewClientId();
    v1::EdgeToCore connected;
    connected.mutable_client_connected()->mutable_client()->set_client_id(client_id);
    ctx_.link.Send(generation, std::move(connected));
    v1::EdgeRequest request;
    request.set_client_id(client_id);
    request.mutable_publish()->set_room(body.room());
    request.mutable_publish()->set_data(ValueToJson(body.data()));
    auto state = std::make_shared<
        std::pair<http::request<http::string_body>, http::response<http::string_body>>>(
        std::move(req), std::move(res));
    ctx_.link.Request(
        generation, std::move(request),
        [self = shared_from_this(), state, client_id, generation](v1::EdgeReply reply) {
          v1::EdgeToCore gone;
          gone.mutable_client_disconnected()->set_client_id(client_id);
          self->ctx_.link.Send(generation, std::move(gone));
          net::post(self->stream_.get_executor(), [self, state, reply = std::move(reply)] {
            self->PublishDone(std::move(state->first), std::move(state->second), reply);
          });
        });
  }

  void PublishDone(http::request<http::string_body> req, http::response<http::string_body> res,
                   const v1::EdgeReply& reply) {
    res.set(http::field::server, "roomcast-edge");
    res.set(http::field::content_type, "application/json");
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    if (reply.has_error()) {
      res.result(HttpStatusOf(reply.error().code()));
      v1::ServerFrame frame;
      *frame.mutable_error() = reply.error();
      json = EncodeServerFrame(frame, Encoding::kJson);
    } else {
      (void)google::protobuf::util::MessageToJsonString(reply.publish(), &json, print);
    }
    res.body() = std::move(json);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    Respond(std::move(res));
  }

  std::string Metrics() {
    const EdgeCounters& c = ctx_.hub.counters();
    std::string out;
    auto gauge = [&out](const char* name, const char* help, const char* type, int64_t value) {
      absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name,
                      " ", value, "\n");
    };
    gauge("roomcast_edge_core_link_up", "1 while the link to the core is up.", "gauge",
          ctx_.link.generation() != 0 ? 1 : 0);
    gauge("roomcast_edge_websocket_connections", "Open WebSocket connections.", "gauge",
          c.ws_connections.load());
    gauge("roomcast_edge_sse_connections", "Open SSE streams.", "gauge", c.sse_connections.load());
    gauge("roomcast_edge_room_memberships", "Local (client, room) memberships.", "gauge",
          c.memberships.load());
    gauge("roomcast_edge_queued_bytes", "Bytes waiting to be written to clients.", "gauge",
          c.queued_bytes.load());
    gauge("roomcast_edge_connections_total", "Connections accepted.", "counter",
          static_cast<int64_t>(c.connections_total.load()));
    gauge("roomcast_edge_refused_total", "Connections refused (full, no core, shutdown).",
          "counter", static_cast<int64_t>(c.refused_total.load()));
    gauge("roomcast_edge_frames_delivered_total", "Room events handed to clients.", "counter",
          static_cast<int64_t>(c.frames_delivered_total.load()));
    gauge("roomcast_edge_slow_consumer_total", "Clients closed as slow consumers.", "counter",
          static_cast<int64_t>(c.slow_consumer_total.load()));
    gauge("roomcast_edge_bad_requests_total", "Malformed or rate-limited requests.", "counter",
          static_cast<int64_t>(c.bad_requests_total.load()));
    return out;
  }

  template <class Body>
  void Respond(http::response<Body> res) {
    auto sp = std::make_shared<http::response<Body>>(std::move(res));
    stream_.expires_after(ToSteady(ctx_.options.write_timeout));
    http::async_write(stream_, *sp, [self = shared_from_this(), sp](beast::error_code ec, size_t) {
      if (ec || !sp->keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->DoRead();
    });
  }

  EdgeContext& ctx_;
  beast::tcp_stream stream_;
  const size_t shard_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

}  // namespace

// ---------------------------------------------------------------------------
// EdgeServer
// ---------------------------------------------------------------------------

class EdgeServer::Impl {
 public:
  explicit Impl(EdgeOptions options)
      : options_(std::move(options)),
        contexts_(MakeContexts(options_.threads)),
        hub_(Pointers(contexts_)),
        link_(options_,
              CoreLink::Handler{
                  .on_events = [this](const v1::EdgeEvents& e) { hub_.OnEvents(e); },
                  .on_disconnect = [this](const v1::DisconnectClient& d) { hub_.OnDisconnect(d); },
                  .on_state =
                      [this](bool up) {
                        if (!up) hub_.CloseAll(v1::RECONNECT, "the core link went down; reconnect");
                      }}),
        ctx_{options_, hub_, link_, {}},
        acceptor_(std::in_place, *contexts_[0]) {
    if (options_.write_delay > absl::ZeroDuration()) {
      for (auto& context : contexts_) {
        ctx_.delayed_writes.push_back(
            std::make_unique<DelayedWrites>(*context, options_.write_delay));
      }
    }
  }

  ~Impl() {
    Shutdown();
    // Sessions still holding handlers (a peer that never finished its close)
    // are destroyed with their io_context; they use hub_ and ctx_, so the
    // contexts go first (the acceptor, bound to one of them, before that).
    acceptor_.reset();
    ctx_.delayed_writes.clear();
    guards_.clear();
    contexts_.clear();
  }

  absl::StatusOr<std::string> Start() {
    auto colon = options_.listen.rfind(':');
    uint32_t port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("--listen: not host:port: ", options_.listen));
    }
    beast::error_code ec;
    auto address = net::ip::make_address(options_.listen.substr(0, colon), ec);
    if (ec)
      return absl::InvalidArgumentError(absl::StrCat("--listen: bad address: ", ec.message()));
    tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen, ": ", ec.message()));
    }
    tcp::endpoint bound = acceptor_->local_endpoint();
    link_.Start();
    DoAccept();
    for (auto& context : contexts_) {
      guards_.push_back(net::make_work_guard(*context));
      threads_.emplace_back([c = context.get()] { c->run(); });
    }
    return absl::StrCat(bound.address().to_string(), ":", bound.port());
  }

  void Shutdown() {
    if (stopped_ || threads_.empty()) return;
    stopped_ = true;
    ctx_.shutting_down = true;
    net::post(acceptor_->get_executor(), [this] {
      beast::error_code ignored;
      acceptor_->close(ignored);
    });
    hub_.CloseAll(v1::GOING_AWAY, "server shutting down");
    absl::Time deadline = absl::Now() + options_.shutdown_grace;
    while (hub_.counters().connections() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    link_.Stop();
    for (auto& context : contexts_) context->stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    guards_.clear();
  }

 private:
  static std::vector<std::unique_ptr<net::io_context>> MakeContexts(int n) {
    std::vector<std::unique_ptr<net::io_context>> out;
    for (int i = 0; i < std::max(1, n); ++i) out.push_back(std::make_unique<net::io_context>(1));
    return out;
  }
  static std::vector<net::io_context*> Pointers(
      const std::vector<std::unique_ptr<net::io_context>>& v) {
    std::vector<net::io_context*> out;
    for (const auto& c : v) out.push_back(c.get());
    return out;
  }

  void DoAccept() {
    size_t shard = hub_.PickShard();
    acceptor_->async_accept(
        *contexts_[shard], [this, shard](beast::error_code ec, tcp::socket socket) {
          if (ec == net::error::operation_aborted || !acceptor_->is_open()) return;
          if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);
            std::make_shared<HttpSession>(ctx_, std::move(socket), shard)->Run();
          }
          DoAccept();
        });
  }

  const EdgeOptions options_;
  std::vector<std::unique_ptr<net::io_context>> contexts_;
  Hub hub_;
  CoreLink link_;
  EdgeContext ctx_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

EdgeServer::EdgeServer(EdgeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EdgeServer::~EdgeServer() = default;
absl::StatusOr<std::string> EdgeServer::Start() { return impl_->Start(); }
void EdgeServer::Shutdown() { impl_->Shutdown(); }

}  // namespace roomcast::edge
