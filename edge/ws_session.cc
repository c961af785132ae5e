// The WebSocket session (/ws): Beast glue around the request pipeline
// (edge/request_pipeline.h) and the write queue and scheduler
// (edge/write_scheduler.h). Lives on one shard; core replies and room events
// are posted onto it, never handled on gRPC threads.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/websocket.hpp"
#include "edge/auth.h"
#include "edge/close_codes.h"
#include "edge/codec.h"
#include "edge/http_router.h"
#include "edge/request_pipeline.h"
#include "edge/sessions.h"
#include "edge/write_scheduler.h"
#include "spdlog/spdlog.h"

namespace roomcast::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

absl::Status ToStatus(const v1::Error& error) {
  return absl::Status(static_cast<absl::StatusCode>(error.code()), error.message());
}

SteadyTime Now() { return std::chrono::steady_clock::now(); }

class WsSession final : public Client,
                        public DelayedWriter,
                        public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(EdgeContext& ctx, tcp::socket&& socket, size_t shard, std::string id,
            uint64_t generation, bool binary, absl::StatusOr<Identity> identity)
      : Client(std::move(id), shard),
        DelayedWriter(ctx.options),
        ctx_(ctx),
        ws_(std::move(socket)),
        generation_(generation),
        encoding_(binary ? Encoding::kProtobuf : Encoding::kJson),
        queue_(ctx.options.max_batch_bytes),
        limiter_(ctx.options.rate_limit_per_second, ctx.options.rate_limit_burst, Now()),
        bad_requests_(ctx.options.max_bad_requests, ctx.options.bad_request_window, Now()),
        rooms_(ctx.options.max_rooms_per_connection),
        identity_(std::move(identity)),
        expiry_(ws_.get_executor()) {}

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
      if (binary) res.set(http::field::sec_websocket_protocol, kBinarySubprotocol);
    }));
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
  }

  // Live fan-out is what can outrun a client, so the queue limit applies
  // here; replies are paced by the client's own (rate-limited) requests.
  void Deliver(const FramePtr& frame) override {
    if (state_ != State::kOpen) return;
    const std::string& entry =
        encoding_ == Encoding::kJson ? frame->json_entry : frame->protobuf_entry;
    if (queue_.queued_bytes() + entry.size() > ctx_.options.max_queued_bytes) {
      // Slow consumer: drop what waits (keep the write in flight), tell the
      // client why, and close. It reconnects and resumes from its last position.
      ctx_.hub.counters().slow_consumer_total.fetch_add(1);
      queue_.DropPending();
      Close(v1::SLOW_CONSUMER,
            "slow consumer: too much data waiting; resume from the last position");
      return;
    }
    Enqueue(frame, entry);
  }

  void Close(v1::DisconnectCode code, std::string reason) override {
    if (state_ != State::kOpen) return;
    state_ = State::kClosing;
    spdlog::debug("websocket closing client={} code={} reason=\"{}\"", id(), static_cast<int>(code),
                  reason);
    close_code_ = code;
    close_reason_ = std::move(reason);
    EnqueueOwned(EncodeServerFrame(DisconnectFrame(code, close_reason_), encoding_));
  }

 private:
  // kHandshake → kOpen → kClosing (the disconnect frame is queued) →
  // kCloseSent (the close frame went out, or a write failed: nothing more
  // is written) → kDone (left every room and map). Cleanup() may jump to
  // kDone from any state after kHandshake.
  enum class State { kHandshake, kOpen, kClosing, kCloseSent, kDone };

  // Logs an I/O error once, unless it is an ordinary end of a connection.
  void Fail(beast::error_code ec, const char* where) {
    if (error_logged_) return;
    error_logged_ = ClassifyError(ec) != ErrorSeverity::kQuiet;
    LogSessionError("websocket", id(), where, ec);
  }

  void OnAccept(beast::error_code ec) {
    if (ec) {  // Handshake failed or timed out: nothing was registered.
      Fail(ec, "accept");
      return;
    }
    state_ = State::kOpen;
    ws_.binary(encoding_ == Encoding::kProtobuf);
    EdgeCounters& counters = ctx_.hub.counters();
    counters.ws_connections.fetch_add(1);
    counters.connections_total.fetch_add(1);
    if (encoding_ == Encoding::kProtobuf) counters.binary_clients.fetch_add(1);
    ctx_.hub.Register(shared_from_this());
    spdlog::debug("websocket open client={} binary={} generation={}", id(),
                  encoding_ == Encoding::kProtobuf, generation_);
    if (!identity_.ok()) {
      // Refused credentials: the core never hears of this client.
      ctx_.hub.counters().refused_total.fetch_add(1);
      announced_ = false;
      Close(v1::UNAUTHORIZED, std::string(identity_.status().message()));
      DoRead();
      return;
    }
    v1::EdgeToCore connected;
    AnnounceIdentity(*identity_, *connected.mutable_client_connected());
    connected.mutable_client_connected()->mutable_client()->set_client_id(id());
    const bool announced = ctx_.link.Send(generation_, std::move(connected));
    ArmExpiry();
    if (ctx_.link.generation() != generation_) {
      Close(v1::RECONNECT, "the core link went down; reconnect");
    } else if (!announced) {
      // The core cannot learn of this client: it must not stay.
      Close(v1::RECONNECT, "the edge's link to the core is congested; reconnect");
    } else if (ctx_.shutting_down) {
      Close(v1::GOING_AWAY, "server shutting down");
    }
    DoRead();
  }

  // Closes the connection with 4003 when its token expires.
  void ArmExpiry() {
    if (identity_->expires == absl::InfiniteFuture()) return;
    absl::Duration left = std::max(identity_->expires - absl::Now(), absl::ZeroDuration());
    expiry_.expires_after(ToSteady(left));
    expiry_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      if (ec) return;  // Cancelled: the session ended.
      if (auto self = weak.lock()) {
        self->Close(v1::TOKEN_EXPIRED, "token expired; reconnect with a fresh token");
      }
    });
  }

  // PERMISSION_DENIED when the token's grants do not cover `op` on `room`.
  // The core checks the same; asking it first would only cost a round trip.
  absl::Status CheckGrant(RoomOp op, const std::string& room) const {
    if (Allowed(identity_->grants, op, room)) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("not allowed to ",
                     op == RoomOp::kSubscribe  ? "subscribe to"
                     : op == RoomOp::kPublish  ? "publish to"
                     : op == RoomOp::kPresence ? "read the presence of"
                                               : "read the history of",
                     " \"", absl::string_view(room).substr(0, 256), "\""));
  }

  void DoRead() {
    ws_.async_read(read_buffer_, beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec) {
      Fail(ec, "read");
      Cleanup();
      return;
    }
    std::string payload = beast::buffers_to_string(read_buffer_.data());
    read_buffer_.consume(read_buffer_.size());
    if (state_ == State::kOpen) HandleFrame(payload);
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
    if (!limiter_.Allow(Now())) {
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
        if (absl::Status allowed = CheckGrant(RoomOp::kSubscribe, frame->join().room());
            !allowed.ok()) {
          ReplyLocal(ErrorFrame(id, allowed));
          return;
        }
        if (absl::Status admitted = rooms_.BeginJoin(frame->join().room()); !admitted.ok()) {
          ReplyLocal(ErrorFrame(id, admitted));
          return;
        }
        *request.mutable_join() = frame->join();
        break;
      }
      case v1::ClientFrame::kLeave: {
        const std::string& room = frame->leave().room();
        if (rooms_.Leave(room)) ctx_.hub.Leave(*this, room);  // Stop delivering now.
        *request.mutable_leave() = frame->leave();
        break;
      }
      case v1::ClientFrame::kPublish: {
        if (absl::Status allowed = CheckGrant(RoomOp::kPublish, frame->publish().room());
            !allowed.ok()) {
          ReplyLocal(ErrorFrame(id, allowed));
          return;
        }
        v1::PublishRequest* publish = request.mutable_publish();
        publish->set_room(frame->publish().room());
        publish->set_data(ValueToJson(frame->publish().data()));
        break;
      }
      case v1::ClientFrame::kPresence:
        if (absl::Status allowed = CheckGrant(RoomOp::kPresence, frame->presence().room());
            !allowed.ok()) {
          ReplyLocal(ErrorFrame(id, allowed));
          return;
        }
        *request.mutable_presence() = frame->presence();
        break;
      case v1::ClientFrame::kHistory:
        if (absl::Status allowed = CheckGrant(RoomOp::kHistory, frame->history().room());
            !allowed.ok()) {
          ReplyLocal(ErrorFrame(id, allowed));
          return;
        }
        *request.mutable_history() = frame->history();
        break;
      case v1::ClientFrame::OP_NOT_SET:
        BadRequest(id, absl::InvalidArgumentError("frame has no operation"));
        return;
    }
    request.set_client_id(this->id());
    ReplyOrder::Slot slot = replies_.Reserve();  // Pending until the core answers.
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
  void OnCoreReply(ReplyOrder::Slot slot, uint64_t id, const v1::ClientFrame& request,
                   const v1::EdgeReply& reply) {
    std::vector<std::string> frames;
    if (request.has_join()) rooms_.EndJoin(request.join().room());
    if (reply.has_error()) {
      frames.push_back(EncodeServerFrame(ErrorFrame(id, ToStatus(reply.error())), encoding_));
    } else if (state_ == State::kOpen) {  // Closing: nothing more is delivered.
      v1::ServerFrame out;
      out.set_id(id);
      v1::Reply* r = out.mutable_reply();
      switch (reply.result_case()) {
        case v1::EdgeReply::kJoin: {
          const std::string& room = request.join().room();
          rooms_.AddJoined(room);
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
          if (rooms_.Leave(request.leave().room())) ctx_.hub.Leave(*this, request.leave().room());
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
          for (const v1::Message& m : reply.history().messages()) {
            *h->add_messages() = ToServerMessage(m);
          }
          *h->mutable_position() = reply.history().position();
          break;
        }
        default:
          break;
      }
      if (id != 0) frames.push_back(EncodeServerFrame(out, encoding_));  // 0: no reply wanted.
    }
    replies_.Fill(slot, std::move(frames));
    FlushReplies();
    if (!reply.has_error()) return;
    switch (static_cast<grpc::StatusCode>(reply.error().code())) {
      case grpc::StatusCode::UNAVAILABLE:
        Close(v1::RECONNECT, "the core link went down; reconnect");
        break;
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        // The core may still apply the request (a join, a publish): the edge
        // no longer knows this client's state, so it reconnects and resumes.
        Close(v1::RECONNECT, "the core did not answer in time; reconnect");
        break;
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        // A leave the link could not carry: the edge left the room, the
        // core did not; reconnecting makes them agree again.
        if (request.has_leave()) {
          Close(v1::RECONNECT, "the edge's link to the core is congested; reconnect");
        }
        break;
      default:
        break;
    }
  }

  // A reply decided here (ping, local errors) waits behind earlier requests
  // still at the core, so every client sees replies in request order.
  void ReplyLocal(const v1::ServerFrame& frame) {
    replies_.AddReady(EncodeServerFrame(frame, encoding_));
    FlushReplies();
  }

  // Queues the replies that are ready, in request order, within the reply
  // cap (ReplyFits); past it the client is a slow consumer.
  void FlushReplies() {
    for (const std::string& frame : replies_.TakeReady()) {
      if (!ReplyFits(ctx_.options, queue_.queued_bytes(), frame.size())) {
        ctx_.hub.counters().slow_consumer_total.fetch_add(1);
        queue_.DropPending();
        replies_.Clear();
        Close(v1::SLOW_CONSUMER, "slow consumer: replies are not being read");
        return;
      }
      EnqueueOwned(frame);
    }
  }

  void BadRequest(uint64_t id, const absl::Status& status) {
    ctx_.hub.counters().bad_requests_total.fetch_add(1);
    ReplyLocal(ErrorFrame(id, status));
    if (bad_requests_.Count(Now())) {
      Close(v1::BAD_REQUEST, "too many malformed or rate-limited requests");
    }
  }

  // Room events wait by reference to the bytes the hub encoded once,
  // replies in their own buffer. The first entry on an idle connection
  // waits for the handler that queued it to finish, so the deliveries of
  // one hub dispatch share one write.
  void Enqueue(std::shared_ptr<const void> owner, absl::string_view entry) {
    if (state_ != State::kOpen && state_ != State::kClosing) return;
    queue_.Push(std::move(owner), entry);
    ScheduleWrite();
  }

  void EnqueueOwned(absl::string_view frame) {
    if (state_ != State::kOpen && state_ != State::kClosing) return;
    queue_.PushCopy(BatchEntry(frame, encoding_));
    ScheduleWrite();
  }

  void ScheduleWrite() {
    if (queue_.writing()) return;
    DelayedWriter::ScheduleWrite(ctx_.delayed_writes_of(shard()), ws_.get_executor(),
                                 queue_.queued_bytes(), shared_from_this());
  }

  void Write() override { DoWrite(); }

  // Moves this session's share of the edge-wide queued_bytes gauge to the
  // queue's size (once per write, not once per frame).
  void UpdateGauge() {
    const size_t queued = queue_.queued_bytes();
    ctx_.hub.counters().queued_bytes.fetch_add(static_cast<int64_t>(queued) -
                                               static_cast<int64_t>(gauged_bytes_));
    gauged_bytes_ = queued;
  }

  void DoWrite() {
    if (queue_.writing()) return;
    if (queue_.empty()) {
      UpdateGauge();
      if (state_ == State::kClosing) {
        state_ = State::kCloseSent;
        websocket::close_reason reason(static_cast<uint16_t>(close_code_));
        reason.reason = close_reason_.substr(0, ctx_.options.max_close_reason_bytes);
        ws_.async_close(reason, [self = shared_from_this()](beast::error_code ec) {
          // The read loop ends with the close handshake and cleans up.
          if (ec) self->Fail(ec, "close");
        });
      }
      return;
    }
    // JSON batches separate entries with '\n'; the first needs none.
    absl::string_view batch = queue_.TakeBatch(encoding_ == Encoding::kJson);
    WriteStarted();
    UpdateGauge();
    ws_.async_write(net::buffer(batch.data(), batch.size()),
                    beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    queue_.WriteDone();
    if (ec) {
      // The peer is gone: drop everything; the failing read cleans up.
      Fail(ec, "write");
      queue_.DropPending();
      UpdateGauge();
      if (state_ != State::kDone) state_ = State::kCloseSent;
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).close(ignored);
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
    if (state_ == State::kHandshake || state_ == State::kDone) return;
    state_ = State::kDone;  // Nothing more goes out.
    queue_.DropPending();
    UpdateGauge();
    for (const std::string& room : rooms_.TakeJoined()) ctx_.hub.Leave(*this, room);
    replies_.Clear();
    expiry_.cancel();
    ctx_.hub.Unregister(*this);
    if (announced_) {
      v1::EdgeToCore gone;
      gone.mutable_client_disconnected()->set_client_id(id());
      ctx_.link.Send(generation_, std::move(gone));
    }
    EdgeCounters& counters = ctx_.hub.counters();
    counters.ws_connections.fetch_sub(1);
    if (encoding_ == Encoding::kProtobuf) counters.binary_clients.fetch_sub(1);
    spdlog::debug("websocket closed client={}", id());
  }

  EdgeContext& ctx_;
  // A plain socket below: the WebSocket stream's own timeouts (handshake,
  // idle pings) are all a session needs, and beast::tcp_stream's timers would
  // add to every connection and every write.
  websocket::stream<tcp::socket> ws_;
  const uint64_t generation_;
  const Encoding encoding_;
  State state_ = State::kHandshake;
  bool error_logged_ = false;
  WriteQueue queue_;
  size_t gauged_bytes_ = 0;  // This session's share of counters().queued_bytes.
  RateLimiter limiter_;
  BadRequestCounter bad_requests_;
  RoomSet rooms_;
  ReplyOrder replies_;
  beast::flat_buffer read_buffer_;
  v1::DisconnectCode close_code_ = v1::GOING_AWAY;
  std::string close_reason_;
  // Who the token says this is, or why it was refused (then the session
  // only closes with 4501).
  const absl::StatusOr<Identity> identity_;
  // Whether the core was told of this client (not when it was refused).
  bool announced_ = true;
  net::steady_timer expiry_;
};

}  // namespace

void StartWebSocketSession(EdgeContext& ctx, tcp::socket socket, size_t shard, uint64_t generation,
                           bool binary, absl::StatusOr<Identity> identity,
                           http::request<http::string_body> request) {
  auto session = std::make_shared<WsSession>(ctx, std::move(socket), shard, ctx.hub.NewClientId(),
                                             generation, binary, std::move(identity));
  session->Run(std::move(request));
}

}  // namespace roomcast::edge
