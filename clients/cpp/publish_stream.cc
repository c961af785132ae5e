// PublishStream: Rooms.PublishStream with one ack per message, in order, and a
// bound on messages in flight.
#include <algorithm>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/cpp/internal.h"
#include "grpcpp/grpcpp.h"
#include "roomcast/client.h"

namespace roomcast::client {

using internal::ToStatus;

// ---------------------------------------------------------------------------
// PublishStream
// ---------------------------------------------------------------------------

namespace {

struct PublishState {
  explicit PublishState(size_t max_unacked) : max_unacked(max_unacked) {}
  const size_t max_unacked;
  absl::Mutex mu;
  // Requests not yet handed to gRPC.
  std::deque<v1::PublishRequest> outbox ABSL_GUARDED_BY(mu);
  // Ids queued or written but not acked, in order.
  std::deque<uint64_t> unacked ABSL_GUARDED_BY(mu);
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
  bool writing ABSL_GUARDED_BY(mu) = false;
  // A write failed: the stream is broken.
  bool broken ABSL_GUARDED_BY(mu) = false;
  // The last read failed: the core ended the stream.
  bool read_ended ABSL_GUARDED_BY(mu) = false;
  // Finish or the destructor started: Publish refuses.
  bool closing ABSL_GUARDED_BY(mu) = false;
  bool done ABSL_GUARDED_BY(mu) = false;
  grpc::Status status ABSL_GUARDED_BY(mu);
};

// One Rooms.PublishStream call; frees itself in OnDone. As with
// SubscribeCall, the owner holds a hold until ReleaseOwner() so that its
// StartWrite/WritesDone/TryCancel calls never race OnDone.
class PublishStreamCall final : public grpc::ClientBidiReactor<v1::PublishRequest, v1::PublishAck> {
 public:
  PublishStreamCall(v1::Rooms::Stub* stub, std::shared_ptr<PublishState> state,
                    PublishStream::AckCallback on_ack)
      : state_(std::move(state)), on_ack_(std::move(on_ack)) {
    stub->async()->PublishStream(&ctx_, this);
    AddHold();
    StartRead(&ack_);
    StartCall();
  }

  // Moves the next queued request into the write buffer if no write is in
  // flight; the caller then calls StartWriteInFlight() without the lock.
  // `s` is this call's state (passed so that the thread-safety analysis sees
  // the lock the caller holds).
  bool TakeNextLocked(PublishState& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (s.writing || s.outbox.empty() || s.broken || s.read_ended) return false;
    in_flight_ = std::move(s.outbox.front());
    s.outbox.pop_front();
    s.writing = true;
    return true;
  }
  void StartWriteInFlight() { StartWrite(&in_flight_); }

  // Owner only, before ReleaseOwner.
  void HalfClose() { StartWritesDone(); }
  void Cancel() { ctx_.TryCancel(); }
  void ReleaseOwner() { RemoveHold(); }

  void OnWriteDone(bool ok) override {
    bool next = false;
    {
      absl::MutexLock lock(&state_->mu);
      state_->writing = false;
      if (!ok) {
        state_->broken = true;
      } else {
        next = TakeNextLocked(*state_);
      }
    }
    if (next) StartWriteInFlight();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&state_->mu);
      state_->read_ended = true;
      return;
    }
    PublishStream::Ack ack;
    ack.id = ack_.id();
    if (ack_.has_error()) {
      ack.position =
          absl::Status(static_cast<absl::StatusCode>(ack_.error().code()), ack_.error().message());
    } else {
      ack.position = ack_.position();
    }
    {
      absl::MutexLock lock(&state_->mu);
      if (!state_->unacked.empty()) state_->unacked.pop_front();
    }
    if (on_ack_) on_ack_(ack);
    StartRead(&ack_);
  }

  void OnDone(const grpc::Status& status) override {
    std::deque<uint64_t> lost;
    {
      absl::MutexLock lock(&state_->mu);
      lost.swap(state_->unacked);
      state_->outbox.clear();
    }
    // No ack: the message may or may not have been published.
    absl::Status error = status.ok()
                             ? absl::UnavailableError("the stream ended before this message's ack")
                             : ToStatus(status);
    for (uint64_t id : lost) {
      if (on_ack_) on_ack_(PublishStream::Ack{id, error});
    }
    {
      absl::MutexLock lock(&state_->mu);
      state_->done = true;
      state_->status = status;
    }
    delete this;
  }

 private:
  grpc::ClientContext ctx_;
  const std::shared_ptr<PublishState> state_;
  const PublishStream::AckCallback on_ack_;
  v1::PublishAck ack_;
  v1::PublishRequest in_flight_;
};

}  // namespace

class PublishStream::Impl {
 public:
  Impl(v1::Rooms::Stub* stub, AckCallback on_ack, size_t max_unacked)
      : state_(std::make_shared<PublishState>(std::max<size_t>(max_unacked, 1))),
        call_(new PublishStreamCall(stub, state_, std::move(on_ack))) {}

  ~Impl() {
    if (call_ != nullptr) {
      {
        absl::MutexLock lock(&state_->mu);
        state_->closing = true;
      }
      call_->Cancel();
      Release();
    }
    absl::MutexLock lock(&state_->mu);
    state_->mu.Await(absl::Condition(&state_->done));
  }

  absl::StatusOr<uint64_t> Publish(v1::PublishRequest request) {
    uint64_t id = 0;
    bool write = false;
    {
      PublishState& s = *state_;
      absl::MutexLock lock(&s.mu);
      auto ready = [&s]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
        return s.unacked.size() < s.max_unacked || s.read_ended || s.broken || s.closing;
      };
      s.mu.Await(absl::Condition(&ready));
      if (s.closing) return absl::FailedPreconditionError("the publish stream is finishing");
      if (s.read_ended || s.broken) {
        return absl::UnavailableError("the publish stream has ended; Finish() says why");
      }
      id = s.next_id++;
      request.set_id(id);
      s.outbox.push_back(std::move(request));
      s.unacked.push_back(id);
      write = call_->TakeNextLocked(s);
    }
    if (write) call_->StartWriteInFlight();
    return id;
  }

  absl::Status Finish(absl::Duration timeout) {
    if (call_ == nullptr) return absl::FailedPreconditionError("Finish was called already");
    absl::Time deadline = absl::Now() + timeout;
    bool drained = false;
    bool ended = false;
    {
      PublishState& s = *state_;
      absl::MutexLock lock(&s.mu);
      s.closing = true;
      auto written = [&s]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
        return (s.outbox.empty() && !s.writing) || s.read_ended || s.broken;
      };
      drained =
          s.mu.AwaitWithDeadline(absl::Condition(&written), deadline) && !s.read_ended && !s.broken;
    }
    if (drained) {
      call_->HalfClose();  // The core finishes after the last ack.
      PublishState& s = *state_;
      absl::MutexLock lock(&s.mu);
      auto over = [&s]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) { return s.read_ended || s.broken; };
      ended = s.mu.AwaitWithDeadline(absl::Condition(&over), deadline);
    }
    if (!ended) call_->Cancel();
    Release();
    absl::MutexLock lock(&state_->mu);
    state_->mu.Await(absl::Condition(&state_->done));
    return ToStatus(state_->status);
  }

 private:
  void Release() {
    call_->ReleaseOwner();
    call_ = nullptr;
  }

  const std::shared_ptr<PublishState> state_;
  PublishStreamCall* call_;  // Until Release(); the call frees itself.
};

PublishStream::PublishStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PublishStream::~PublishStream() = default;

absl::StatusOr<uint64_t> PublishStream::Publish(v1::PublishRequest request) {
  return impl_->Publish(std::move(request));
}

absl::StatusOr<uint64_t> PublishStream::Publish(std::string_view room, std::string_view data) {
  v1::PublishRequest request;
  request.set_room(std::string(room));
  request.set_data(std::string(data));
  return impl_->Publish(std::move(request));
}

absl::Status PublishStream::Finish(absl::Duration timeout) { return impl_->Finish(timeout); }

std::unique_ptr<PublishStream> Client::OpenPublishStream(PublishStream::AckCallback on_ack,
                                                         size_t max_unacked) {
  return std::unique_ptr<PublishStream>(new PublishStream(
      std::make_unique<PublishStream::Impl>(stub_.get(), std::move(on_ack), max_unacked)));
}

}  // namespace roomcast::client
