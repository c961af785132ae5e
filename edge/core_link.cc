#include "edge/core_link.h"

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "spdlog/spdlog.h"

namespace roomcast::edge {

// One attempt at the EdgeLink stream. Writes go out one at a time from a
// bounded queue (the outbox). Owned by CoreLink; destroyed by its thread
// after OnDone.
class CoreLink::Stream final : public grpc::ClientBidiReactor<v1::EdgeToCore, v1::CoreToEdge> {
 public:
  enum class Sent { kQueued, kFull, kDone };

  Stream(CoreLink* link, uint64_t generation) : link_(link), generation_(generation) {
    link_->stub_->async()->Link(&ctx_, this);
    v1::EdgeToCore hello;
    hello.mutable_hello()->set_edge_name(link_->options_.edge_name);
    Send(std::move(hello), /*bounded=*/false);
    StartRead(&in_);
    StartCall();
  }

  // Queues `message`; a `bounded` one only while the outbox has room (an
  // empty outbox takes one message of any size).
  Sent Send(v1::EdgeToCore message, bool bounded) {
    const size_t bytes = message.ByteSizeLong();
    absl::MutexLock lock(&mu_);
    if (done_) return Sent::kDone;
    if (bounded && !out_.empty() &&
        (out_.size() >= link_->options_.core_outbox_max_messages ||
         out_bytes_ + bytes > link_->options_.core_outbox_max_bytes)) {
      return Sent::kFull;
    }
    out_.push_back(std::move(message));
    out_bytes_ += bytes;
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
    return Sent::kQueued;
  }

  // Ends the stream on purpose (CoreLink::Stop).
  void Cancel() { ctx_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    out_bytes_ -= out_.front().ByteSizeLong();
    out_.pop_front();
    writing_ = false;
    if (ok && !out_.empty()) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    switch (in_.kind_case()) {
      case v1::CoreToEdge::kWelcome:
        link_->OnWelcome(generation_);
        break;
      case v1::CoreToEdge::kReply:
        link_->OnReply(generation_, std::move(*in_.mutable_reply()));
        break;
      case v1::CoreToEdge::kEvents:
        if (link_->handler_.on_events) link_->handler_.on_events(in_.events());
        break;
      case v1::CoreToEdge::kDisconnect:
        if (link_->handler_.on_disconnect) link_->handler_.on_disconnect(in_.disconnect());
        break;
      case v1::CoreToEdge::KIND_NOT_SET:
        break;
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    link_->OnStreamDone(generation_, status);
  }

 private:
  CoreLink* const link_;
  const uint64_t generation_;
  grpc::ClientContext ctx_;
  v1::CoreToEdge in_;
  absl::Mutex mu_;
  std::deque<v1::EdgeToCore> out_ ABSL_GUARDED_BY(mu_);
  size_t out_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // ByteSizeLong() of out_.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

CoreLink::CoreLink(const EdgeOptions& options, Handler handler)
    : options_(options), handler_(std::move(handler)) {
  grpc::ChannelArguments args;
  // Notice a dead core even when no traffic flows.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.core_keepalive_time)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.core_keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Reconnect pacing is ours (with jitter); keep gRPC's own within ours.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.reconnect_min)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.reconnect_max)));
  args.SetMaxReceiveMessageSize(static_cast<int>(options_.core_max_receive_bytes));
  stub_ = v1::EdgeLink::NewStub(
      grpc::CreateCustomChannel(options_.core, grpc::InsecureChannelCredentials(), args));
}

CoreLink::~CoreLink() { Stop(); }

void CoreLink::Start() {
  thread_ = std::thread([this] { Run(); });
}

void CoreLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CoreLink::Run() {
  absl::BitGen gen;
  absl::Duration backoff_cap = options_.reconnect_min;
  uint64_t generation = 0;
  int failed_attempts = 0;  // Attempts in a row that never came up.
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      stream_done_ = false;
      stream_generation_ = ++generation;
      stream_ = std::make_unique<Stream>(this, generation);
    }
    // Wait for the stream to end (or for Stop), expiring requests meanwhile.
    bool was_up = false;
    {
      absl::MutexLock lock(&mu_);
      while (!stream_done_) {
        auto wake = [this]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_done_ || stopping_; };
        mu_.AwaitWithTimeout(absl::Condition(&wake), options_.request_timeout_check);
        if (stopping_ && !stream_done_) {
          stream_->Cancel();
          mu_.Await(absl::Condition(&stream_done_));
        }
        if (!stream_done_) {
          mu_.Unlock();
          ExpirePending();
          mu_.Lock();
        }
      }
      stream_.reset();
    }
    was_up = generation_.exchange(0) == generation;
    FailPending();
    bool stopping;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
      status = stream_status_;
    }
    if (stopping) {
      if (was_up) spdlog::info("core link stopped generation={}", generation);
    } else if (was_up) {
      spdlog::warn("core link down generation={} core={} code={} message=\"{}\"", generation,
                   options_.core, static_cast<int>(status.error_code()), status.error_message());
      failed_attempts = 0;
    } else {
      // Only the first of a run of failed attempts is a warning: a core that
      // stays away would otherwise log one line per backoff step.
      if (failed_attempts++ == 0) {
        spdlog::warn("core link cannot connect, retrying core={} code={} message=\"{}\"",
                     options_.core, static_cast<int>(status.error_code()), status.error_message());
      } else {
        spdlog::debug("core link attempt failed core={} attempt={} code={}", options_.core,
                      failed_attempts, static_cast<int>(status.error_code()));
      }
    }
    if (was_up) {
      if (handler_.on_state) handler_.on_state(false);
      backoff_cap = options_.reconnect_min;
    }
    // Full jitter: sleep a uniform time in [0, cap], then double the cap.
    absl::Duration sleep = absl::Microseconds(
        absl::Uniform<int64_t>(gen, 0, absl::ToInt64Microseconds(backoff_cap) + 1));
    backoff_cap = std::min(backoff_cap * 2, options_.reconnect_max);
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), sleep);
  }
}

void CoreLink::OnWelcome(uint64_t generation) {
  generation_.store(generation, std::memory_order_release);
  spdlog::info("core link up generation={} core={}", generation, options_.core);
  if (handler_.on_state) handler_.on_state(true);
}

void CoreLink::OnStreamDone(uint64_t generation, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (stream_generation_ != generation) return;
  stream_done_ = true;
  stream_status_ = status;
}

bool CoreLink::Send(uint64_t generation, v1::EdgeToCore message) {
  const bool bounded = !message.has_client_disconnected();
  Stream::Sent sent = Stream::Sent::kDone;
  {
    absl::MutexLock lock(&mu_);
    if (stream_ == nullptr || stream_generation_ != generation || stream_done_) return false;
    sent = stream_->Send(std::move(message), bounded);
  }
  if (sent == Stream::Sent::kFull) {
    CountOverflow(generation);
  } else if (sent == Stream::Sent::kQueued) {
    overflow_logged_.store(false, std::memory_order_relaxed);
  }
  return sent == Stream::Sent::kQueued;
}

void CoreLink::Request(uint64_t generation, v1::EdgeRequest request, ReplyCallback on_reply) {
  uint64_t id = next_request_id_.fetch_add(1);
  request.set_request_id(id);
  Stream::Sent sent = Stream::Sent::kDone;
  {
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr && stream_generation_ == generation && !stream_done_ &&
        generation_.load() == generation) {
      v1::EdgeToCore message;
      *message.mutable_request() = std::move(request);
      // Registered before the request can reach the core.
      auto it =
          pending_.emplace(id, Pending{std::move(on_reply), absl::Now() + options_.request_timeout})
              .first;
      sent = stream_->Send(std::move(message), /*bounded=*/true);
      if (sent == Stream::Sent::kQueued) {
        overflow_logged_.store(false, std::memory_order_relaxed);
        return;
      }
      on_reply = std::move(it->second.callback);
      pending_.erase(it);
    }
  }
  v1::EdgeReply reply;
  reply.set_request_id(id);
  if (sent == Stream::Sent::kFull) {
    CountOverflow(generation);
    reply.mutable_error()->set_code(grpc::StatusCode::RESOURCE_EXHAUSTED);
    reply.mutable_error()->set_message("the edge's link to the core is congested; retry later");
  } else {
    reply.mutable_error()->set_code(grpc::StatusCode::UNAVAILABLE);
    reply.mutable_error()->set_message("the core link is down; reconnect");
  }
  on_reply(std::move(reply));
}

void CoreLink::CountOverflow(uint64_t generation) {
  const uint64_t total = overflow_total_.fetch_add(1, std::memory_order_relaxed) + 1;
  // Once per episode: the outbox stays full for many messages in a row.
  if (!overflow_logged_.exchange(true, std::memory_order_relaxed)) {
    spdlog::warn("core link outbox full, refusing messages generation={} overflow_total={}",
                 generation, total);
  }
}

void CoreLink::OnReply(uint64_t generation, v1::EdgeReply reply) {
  ReplyCallback callback;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(reply.request_id());
    if (it == pending_.end()) return;  // Expired already.
    callback = std::move(it->second.callback);
    pending_.erase(it);
  }
  callback(std::move(reply));
}

void CoreLink::FailPending() {
  std::vector<std::pair<uint64_t, Pending>> failed;
  {
    absl::MutexLock lock(&mu_);
    failed.assign(std::make_move_iterator(pending_.begin()),
                  std::make_move_iterator(pending_.end()));
    pending_.clear();
  }
  // In request order (ids increase), so each client sees its errors in order.
  std::sort(failed.begin(), failed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, pending] : failed) {
    v1::EdgeReply reply;
    reply.set_request_id(id);
    reply.mutable_error()->set_code(grpc::StatusCode::UNAVAILABLE);
    reply.mutable_error()->set_message("the core link went down; reconnect");
    pending.callback(std::move(reply));
  }
}

void CoreLink::ExpirePending() {
  std::vector<std::pair<uint64_t, ReplyCallback>> expired;
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.deadline <= now) {
        expired.emplace_back(it->first, std::move(it->second.callback));
        pending_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  std::sort(expired.begin(), expired.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, callback] : expired) {
    v1::EdgeReply reply;
    reply.set_request_id(id);
    reply.mutable_error()->set_code(grpc::StatusCode::DEADLINE_EXCEEDED);
    reply.mutable_error()->set_message("the core did not answer in time");
    callback(std::move(reply));
  }
}

}  // namespace roomcast::edge
