// The SSE session (/sse): one long response with Content-Type
// text/event-stream, an initial retry: hint, heartbeat comments, and id:
// lines carrying the resume cursor so a native EventSource resumes by
// itself. Lives on one shard; core replies and room events are posted onto
// it, never handled on gRPC threads.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "edge/auth.h"
#include "edge/close_codes.h"
#include "edge/codec.h"
#include "edge/sessions.h"
#include "spdlog/spdlog.h"

namespace roomcast::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class SseSession final : public Client,
                         public DelayedWriter,
                         public std::enable_shared_from_this<SseSession> {
 public:
  SseSession(EdgeContext& ctx, beast::tcp_stream&& stream, size_t shard, std::string id,
             uint64_t generation, std::vector<std::string> rooms, SseCursor since,
             Identity identity)
      : Client(std::move(id), shard),
        DelayedWriter(ctx.options),
        ctx_(ctx),
        stream_(std::move(stream)),
        generation_(generation),
        rooms_(std::move(rooms)),
        since_(std::move(since)),
        identity_(std::move(identity)),
        heartbeat_(stream_.get_executor()) {}

  ~SseSession() override {
    ctx_.hub.counters().queued_bytes.fetch_sub(pending_.size() + writing_bytes_);
  }

  // `headers` carries the CORS headers already decided.
  void Run(http::response<http::empty_body> headers) {
    EdgeCounters& counters = ctx_.hub.counters();
    counters.sse_connections.fetch_add(1);
    counters.connections_total.fetch_add(1);
    state_ = State::kOpen;
    ctx_.hub.Register(shared_from_this());
    spdlog::debug("sse open client={} rooms={} generation={}", id(), rooms_.size(), generation_);
    v1::EdgeToCore connected;
    AnnounceIdentity(identity_, *connected.mutable_client_connected());
    connected.mutable_client_connected()->mutable_client()->set_client_id(id());
    const bool announced = ctx_.link.Send(generation_, std::move(connected));

    headers_ = std::move(headers);
    headers_.result(http::status::ok);
    headers_.set(http::field::content_type, "text/event-stream");
    headers_.set(http::field::cache_control, "no-cache");
    headers_.set("X-Accel-Buffering", "no");
    headers_.keep_alive(false);  // The body ends when the connection does.
    serializer_.emplace(headers_);
    stream_.expires_after(ToSteady(ctx_.options.write_timeout));
    writing_ = true;  // The header.
    http::async_write_header(stream_, *serializer_,
                             beast::bind_front_handler(&SseSession::OnHeader, shared_from_this()));
    Append(absl::StrCat("retry: ", absl::ToInt64Milliseconds(ctx_.options.sse_retry), "\n\n"));
    if (!announced) {
      // The core cannot learn of this client: it must not stay.
      Close(v1::RECONNECT, "the edge's link to the core is congested; reconnect");
    } else {
      for (const std::string& room : rooms_) Join(room);
    }
    WatchForClose();
    ArmHeartbeat();
  }

  void Deliver(const FramePtr& frame) override {
    if (state_ != State::kOpen) return;
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
    if (state_ != State::kOpen) return;
    spdlog::debug("sse closing client={} code={} reason=\"{}\"", id(), static_cast<int>(code),
                  reason);
    // No id line: the browser's Last-Event-ID stays at the last event it
    // really received (after a slow-consumer drop, not at dropped ones).
    Append(SseEvent("", EncodeServerFrame(DisconnectFrame(code, reason), Encoding::kJson)));
    state_ = State::kClosing;  // The stream ends once this last event is written.
    MaybeWrite();
  }

 private:
  // kNew → kOpen → kClosing (the last event is queued) → kDone (the stream
  // ended and left every room and map). Finish() may jump to kDone from
  // kOpen too.
  enum class State { kNew, kOpen, kClosing, kDone };

  // Logs an I/O error once, unless it is an ordinary end of a connection.
  void Fail(beast::error_code ec, const char* where) {
    if (error_logged_) return;
    error_logged_ = ClassifyError(ec) != ErrorSeverity::kQuiet;
    LogSessionError("sse", id(), where, ec);
  }

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
    if (state_ != State::kOpen) return;
    if (reply.has_error()) {
      absl::Status status(static_cast<absl::StatusCode>(reply.error().code()),
                          reply.error().message());
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
    if (state_ != State::kOpen && state_ != State::kClosing) return;
    pending_.append(text.data(), text.size());
    ctx_.hub.counters().queued_bytes.fetch_add(text.size());
    ScheduleWrite();
  }

  // Like the WebSocket session: after the current handler, or after the
  // write delay on a busy stream.
  void ScheduleWrite() {
    if (writing_ || state_ == State::kDone) return;
    DelayedWriter::ScheduleWrite(ctx_.delayed_writes_of(shard()), stream_.get_executor(),
                                 pending_.size(), shared_from_this());
  }

  void Write() override { MaybeWrite(); }

  void OnHeader(beast::error_code ec, size_t) {
    writing_ = false;
    if (ec) {
      Fail(ec, "write header");
      Finish();
      return;
    }
    MaybeWrite();
  }

  // Everything appended while a write was in flight goes out in one write.
  void MaybeWrite() {
    if (writing_ || state_ == State::kDone) return;
    if (pending_.empty()) {
      if (state_ == State::kClosing) Finish();
      return;
    }
    write_buffer_.swap(pending_);
    pending_.clear();
    writing_ = true;
    writing_bytes_ = write_buffer_.size();
    WriteStarted();
    stream_.expires_after(ToSteady(ctx_.options.write_timeout));
    net::async_write(stream_, net::buffer(write_buffer_),
                     beast::bind_front_handler(&SseSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    ctx_.hub.counters().queued_bytes.fetch_sub(writing_bytes_);
    writing_bytes_ = 0;
    writing_ = false;
    wrote_since_heartbeat_ = true;
    if (ec) {
      Fail(ec, "write");
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
                                         self->Fail(ec, "read");
                                         self->Finish();
                                       } else {
                                         self->WatchForClose();
                                       }
                                     });
  }

  void ArmHeartbeat() {
    heartbeat_.expires_after(ToSteady(ctx_.options.sse_heartbeat));
    heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->state_ == State::kDone) return;
      if (absl::Now() >= self->identity_.expires) {
        // Noticed at a heartbeat, so up to sse_heartbeat late.
        self->Close(v1::TOKEN_EXPIRED, "token expired; reconnect with a fresh token");
      }
      if (!self->wrote_since_heartbeat_) self->Append(": heartbeat\n\n");
      self->wrote_since_heartbeat_ = false;
      self->ArmHeartbeat();
    });
  }

  // Ends the stream and leaves every room and map. Idempotent.
  void Finish() {
    if (state_ == State::kDone) return;
    state_ = State::kDone;
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
    spdlog::debug("sse closed client={}", id());
  }

  EdgeContext& ctx_;
  beast::tcp_stream stream_;
  const uint64_t generation_;
  const std::vector<std::string> rooms_;
  const SseCursor since_;
  const Identity identity_;  // Verified before the stream started.
  SseCursor cursor_;
  net::steady_timer heartbeat_;
  http::response<http::empty_body> headers_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  State state_ = State::kNew;
  bool error_logged_ = false;
  bool writing_ = false;  // The header or a batch is being written.
  bool wrote_since_heartbeat_ = false;
  std::string pending_;       // Not yet written.
  std::string write_buffer_;  // The batch in flight.
  size_t writing_bytes_ = 0;  // Its share of counters().queued_bytes.
  std::vector<std::string> joined_;
  char discard_[512];
};

}  // namespace

void StartSseSession(EdgeContext& ctx, beast::tcp_stream stream, size_t shard, uint64_t generation,
                     std::vector<std::string> rooms, SseCursor since, Identity identity,
                     http::response<http::empty_body> headers) {
  auto session =
      std::make_shared<SseSession>(ctx, std::move(stream), shard, ctx.hub.NewClientId(), generation,
                                   std::move(rooms), std::move(since), std::move(identity));
  session->Run(std::move(headers));
}

}  // namespace roomcast::edge
