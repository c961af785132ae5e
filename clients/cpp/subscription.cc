// Subscription: Rooms.Subscribe that survives the connection (reconnect with
// full jitter, exact resume, catch-up with History after a slow-consumer end).
#include <algorithm>
#include <chrono>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/cpp/internal.h"
#include "grpcpp/grpcpp.h"
#include "roomcast/client.h"

namespace roomcast::client {

using internal::IsSlowConsumer;
using internal::RandomClientId;
using internal::Retryable;
using internal::ToStatus;

// ---------------------------------------------------------------------------
// Subscription
// ---------------------------------------------------------------------------

namespace {

// What one Subscribe call shares with the subscription's thread. Owned
// jointly: the call frees itself in OnDone, whenever that happens.
struct AttemptState {
  absl::Mutex mu;
  std::deque<v1::SubscribeResponse> inbox ABSL_GUARDED_BY(mu);
  // No read is outstanding because the inbox was full.
  bool paused ABSL_GUARDED_BY(mu) = false;
  // The last read failed: nothing more will arrive.
  bool ended ABSL_GUARDED_BY(mu) = false;
  // The subscription is being cancelled.
  bool stop ABSL_GUARDED_BY(mu) = false;
  bool done ABSL_GUARDED_BY(mu) = false;
  grpc::Status status ABSL_GUARDED_BY(mu);
};

// One Rooms.Subscribe call. Reads into the attempt's inbox until it holds
// `max_buffered` events, then waits for the owner to ResumeReading.
//
// The owner (the subscription's thread) holds a hold on the call from
// construction until ReleaseOwner(), so OnDone (which deletes the call) cannot
// run while the owner may still call ResumeReading or Cancel.
class SubscribeCall final : public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  SubscribeCall(v1::Rooms::Stub* stub, v1::SubscribeRequest request,
                std::shared_ptr<AttemptState> state, size_t max_buffered)
      : request_(std::move(request)), state_(std::move(state)), max_buffered_(max_buffered) {
    stub->async()->Subscribe(&ctx_, &request_, this);
    AddHold();
    StartRead(&response_);
    StartCall();
  }

  // Owner only, before ReleaseOwner.
  void ResumeReading() { StartRead(&response_); }
  void Cancel() { ctx_.TryCancel(); }
  // After this the owner must not touch the call again.
  void ReleaseOwner() { RemoveHold(); }

  void OnReadDone(bool ok) override {
    bool more = false;
    {
      absl::MutexLock lock(&state_->mu);
      if (!ok) {
        state_->ended = true;
        return;
      }
      state_->inbox.push_back(std::move(response_));
      response_.Clear();  // Before the owner may ResumeReading into it.
      more = state_->inbox.size() < max_buffered_;
      if (!more) state_->paused = true;
    }
    if (more) StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->done = true;
      state_->status = status;
    }
    delete this;
  }

 private:
  grpc::ClientContext ctx_;
  const v1::SubscribeRequest request_;
  v1::SubscribeResponse response_;
  const std::shared_ptr<AttemptState> state_;
  const size_t max_buffered_;
};

}  // namespace

class Subscription::Impl {
 public:
  Impl(std::shared_ptr<v1::Rooms::Stub> stub, const ClientOptions& client_options,
       SubscribeOptions options, Callback callback)
      : stub_(std::move(stub)),
        call_timeout_(client_options.call_timeout),
        reconnect_min_(std::max(client_options.reconnect_min, absl::Milliseconds(1))),
        reconnect_max_(std::max(client_options.reconnect_max, reconnect_min_)),
        options_(std::move(options)),
        max_buffered_(std::max<size_t>(options_.max_buffered_events, 1)),
        callback_(std::move(callback)),
        generated_id_(options_.client.client_id().empty() ? RandomClientId() : "") {
    for (const SubscribeOptions::Room& room : options_.rooms) {
      Cursor& cursor = cursors_[room.room];
      if (room.since.has_value()) {
        cursor.known = true;
        cursor.last = *room.since;
      }
    }
  }
  ~Impl() { Close(); }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  void Cancel() {
    std::shared_ptr<AttemptState> attempt;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      attempt = current_;
    }
    if (attempt != nullptr) {
      absl::MutexLock lock(&attempt->mu);
      attempt->stop = true;
    }
  }

  void Close() {
    Cancel();
    // From the callback (documented as not allowed) this would deadlock.
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

  std::optional<Event> Next(absl::Duration timeout) {
    if (callback_) return std::nullopt;
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || finished_ || stopping_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (stopping_ || queue_.empty()) return std::nullopt;
    Event event = std::move(queue_.front());
    queue_.pop_front();
    return event;
  }

  bool done() {
    absl::MutexLock lock(&mu_);
    return stopping_ || (finished_ && queue_.empty());
  }

  std::map<std::string, v1::Position> Positions() {
    absl::MutexLock lock(&mu_);
    std::map<std::string, v1::Position> out;
    for (const auto& [room, cursor] : cursors_) {
      if (cursor.known) out[room] = cursor.last;
    }
    return out;
  }

  std::string client_id() {
    absl::MutexLock lock(&mu_);
    return client_id_;
  }

 private:
  struct Cursor {
    // `last` is meaningful: the last position delivered (or the `since`
    // the room was subscribed with).
    bool known = false;
    v1::Position last;
    // A recovery marker was delivered for this room before.
    bool marked = false;
  };

  bool Stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  // The reconnect loop; the subscription's thread.
  void Run() {
    absl::BitGen gen;
    absl::Duration cap = reconnect_min_;
    int failures = 0;
    bool catch_up = false;
    for (;;) {
      bool received = catch_up && CatchUp();
      grpc::Status status = RunAttempt(&received);
      if (Stopping()) break;
      catch_up = IsSlowConsumer(status);
      if (received) {
        failures = 0;
        cap = reconnect_min_;
      } else {
        ++failures;
      }
      if (!options_.reconnect || !Retryable(status) ||
          (options_.max_failed_attempts > 0 && failures >= options_.max_failed_attempts)) {
        Event done;
        done.type = Event::Type::kDone;
        done.status = ToStatus(status);
        Deliver(std::move(done));
        break;
      }
      // Full jitter: uniform in [0, cap], then double the cap.
      absl::Duration delay = absl::Microseconds(
          absl::Uniform<int64_t>(absl::IntervalClosed, gen, 0, absl::ToInt64Microseconds(cap)));
      cap = std::min(cap * 2, reconnect_max_);
      Event reconnecting;
      reconnecting.type = Event::Type::kReconnecting;
      reconnecting.status = ToStatus(status);
      reconnecting.retry_in = delay;
      if (!Deliver(std::move(reconnecting))) break;
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
      if (stopping_) break;
    }
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }

  // After a slow-consumer end, reads what was missed with History, a page
  // at a time, before subscribing again. The core queues a resume's whole
  // replay at once, so a subscriber that fell further behind than its queue
  // holds would otherwise overflow again on every reconnect, forever. What
  // History no longer has shows up as a gap (recovered = false). Returns
  // whether anything was delivered.
  bool CatchUp() {
    bool delivered = false;
    for (const SubscribeOptions::Room& room : options_.rooms) {
      for (;;) {
        if (Stopping()) return delivered;
        v1::HistoryRequest request;
        {
          absl::MutexLock lock(&mu_);
          const Cursor& cursor = cursors_[room.room];
          if (!cursor.known) break;
          *request.mutable_since() = cursor.last;
        }
        request.set_room(room.room);
        request.set_limit(kCatchUpPage);
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + call_timeout_));
        v1::HistoryResponse response;
        // Not OK (another epoch, the core away): Subscribe will say.
        if (!stub_->History(&ctx, request, &response).ok()) break;
        for (v1::Message& message : *response.mutable_messages()) {
          v1::SubscribeResponse event;
          *event.mutable_message() = std::move(message);
          Dispatch(event);
          delivered = true;
        }
        if (response.messages_size() < static_cast<int>(kCatchUpPage)) break;
      }
    }
    return delivered;
  }

  v1::SubscribeRequest BuildRequest() {
    v1::SubscribeRequest request;
    *request.mutable_client() = options_.client;
    request.set_presence(options_.presence);
    absl::MutexLock lock(&mu_);
    ++connections_;
    if (!generated_id_.empty()) {
      // One client_id per connection, as the proto asks: the core keys
      // presence by client_id, and a dropped connection's stream may linger
      // on the core after its replacement joined.
      request.mutable_client()->set_client_id(absl::StrCat(generated_id_, "-", connections_));
    }
    client_id_ = request.client().client_id();
    for (const SubscribeOptions::Room& room : options_.rooms) {
      v1::SubscribeRequest::RoomRequest* r = request.add_rooms();
      r->set_room(room.room);
      const Cursor& cursor = cursors_[room.room];
      if (cursor.known) *r->mutable_since() = cursor.last;
    }
    return request;
  }

  // One Subscribe call, from start to end: delivers its events and returns
  // how it ended. `received` is set once anything arrived.
  grpc::Status RunAttempt(bool* received) {
    auto attempt = std::make_shared<AttemptState>();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return grpc::Status::CANCELLED;
      current_ = attempt;
    }
    auto* call = new SubscribeCall(stub_.get(), BuildRequest(), attempt, max_buffered_);
    const size_t low_water = max_buffered_ / 2;
    bool stopped = false;
    for (;;) {
      v1::SubscribeResponse response;
      bool resume = false;
      {
        absl::MutexLock lock(&attempt->mu);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(attempt->mu) {
          return !attempt->inbox.empty() || attempt->ended || attempt->stop;
        };
        attempt->mu.Await(absl::Condition(&ready));
        if (attempt->stop) {
          stopped = true;
          break;
        }
        if (attempt->inbox.empty()) break;  // Ended, and everything was delivered.
        response = std::move(attempt->inbox.front());
        attempt->inbox.pop_front();
        if (attempt->paused && attempt->inbox.size() <= low_water) {
          attempt->paused = false;
          resume = true;
        }
      }
      if (resume) call->ResumeReading();
      *received = true;
      Dispatch(response);
    }
    if (stopped) call->Cancel();
    call->ReleaseOwner();  // From here on the call may be gone.
    absl::MutexLock lock(&attempt->mu);
    attempt->mu.Await(absl::Condition(&attempt->done));
    return stopped ? grpc::Status::CANCELLED : attempt->status;
  }

  // Turns a response into events: drops messages already delivered (a
  // resume replays from the last position we know of, which may be behind
  // what was in flight), reports gaps, and moves the room's cursor.
  void Dispatch(v1::SubscribeResponse& response) {
    Event event;
    switch (response.event_case()) {
      case v1::SubscribeResponse::kMessage: {
        v1::Message& message = *response.mutable_message();
        const v1::Position& at = message.position();
        std::optional<Event> gap;
        {
          absl::MutexLock lock(&mu_);
          Cursor& cursor = cursors_[message.room()];
          if (cursor.known) {
            bool same_epoch = cursor.last.epoch() == at.epoch();
            if (same_epoch && at.offset() <= cursor.last.offset()) return;  // Seen it.
            if (!same_epoch || at.offset() != cursor.last.offset() + 1) {
              // Never expected from the core (a resume is gap-free or says
              // recovered = false), but loss must not be silent.
              gap.emplace();
              gap->type = Event::Type::kRecovery;
              gap->resumed = cursor.marked;
              gap->recovery.set_room(message.room());
              gap->recovery.set_recovered(false);
              gap->recovery.mutable_position()->set_epoch(at.epoch());
              gap->recovery.mutable_position()->set_offset(at.offset() - 1);
            }
          }
          cursor.known = true;
          cursor.last = at;
        }
        if (gap.has_value()) Deliver(*std::move(gap));
        event.type = Event::Type::kMessage;
        event.message = std::move(message);
        break;
      }
      case v1::SubscribeResponse::kRecovery: {
        v1::Recovery& recovery = *response.mutable_recovery();
        {
          absl::MutexLock lock(&mu_);
          Cursor& cursor = cursors_[recovery.room()];
          event.resumed = cursor.marked;
          cursor.marked = true;
          cursor.known = true;
          cursor.last = recovery.position();
        }
        event.type = Event::Type::kRecovery;
        event.recovery = std::move(recovery);
        break;
      }
      case v1::SubscribeResponse::kPresence:
        event.type = Event::Type::kPresence;
        event.presence = std::move(*response.mutable_presence());
        break;
      default:
        return;  // A kind of event this client does not know yet.
    }
    Deliver(std::move(event));
  }

  // Hands `event` to the callback or the iterator's queue (waiting while it
  // is full). False when the subscription is stopping.
  bool Deliver(Event event) {
    if (callback_) {
      if (Stopping()) return false;
      callback_(event);
      return true;
    }
    absl::MutexLock lock(&mu_);
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() < max_buffered_ || stopping_;
    };
    mu_.Await(absl::Condition(&room));
    if (stopping_) return false;
    queue_.push_back(std::move(event));
    return true;
  }

  // History page size while catching up: 100 messages of at most 64 KiB
  // stay well under the client's receive limit.
  static constexpr uint32_t kCatchUpPage = 100;

  const std::shared_ptr<v1::Rooms::Stub> stub_;
  const absl::Duration call_timeout_;
  const absl::Duration reconnect_min_;
  const absl::Duration reconnect_max_;
  const SubscribeOptions options_;
  const size_t max_buffered_;
  const Callback callback_;  // Empty in iterator mode.

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Run returned.
  std::shared_ptr<AttemptState> current_ ABSL_GUARDED_BY(mu_);
  std::deque<Event> queue_ ABSL_GUARDED_BY(mu_);  // Iterator mode.
  std::map<std::string, Cursor> cursors_ ABSL_GUARDED_BY(mu_);
  // "cpp-<random>" when the caller set no client_id; connection n uses
  // "<generated_id_>-<n>".
  const std::string generated_id_;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  std::string client_id_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

Subscription::Subscription(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Subscription::~Subscription() { impl_->Close(); }
void Subscription::Cancel() { impl_->Cancel(); }
void Subscription::Close() { impl_->Close(); }
std::optional<Event> Subscription::Next(absl::Duration timeout) { return impl_->Next(timeout); }
bool Subscription::done() { return impl_->done(); }
std::map<std::string, v1::Position> Subscription::Positions() { return impl_->Positions(); }
std::string Subscription::client_id() { return impl_->client_id(); }

Subscription::Iterator::Iterator(Subscription* owner) : owner_(owner), event_(owner->Next()) {}

Subscription::Iterator& Subscription::Iterator::operator++() {
  event_ = owner_->Next();
  return *this;
}

std::unique_ptr<Subscription> Client::Subscribe(SubscribeOptions options,
                                                Subscription::Callback callback) {
  auto impl = std::make_unique<Subscription::Impl>(stub_, options_, std::move(options),
                                                   std::move(callback));
  impl->Start();
  return std::unique_ptr<Subscription>(new Subscription(std::move(impl)));
}

std::unique_ptr<Subscription> Client::Subscribe(SubscribeOptions options) {
  return Subscribe(std::move(options), nullptr);
}

}  // namespace roomcast::client
