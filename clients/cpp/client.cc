#include "roomcast/client.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace roomcast::client {
namespace {

absl::Status ToStatus(const grpc::Status& status) {
  // gRPC and absl share the canonical code numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// Whether the core ended a stream as a slow consumer: the status details
// (a google.rpc.Status, here v1::RpcStatus) carry StreamEnd{SLOW_CONSUMER}.
bool IsSlowConsumer(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return false;
  v1::RpcStatus details;
  if (!details.ParseFromString(status.error_details())) return false;
  for (const google::protobuf::Any& any : details.details()) {
    v1::StreamEnd end;
    if (any.UnpackTo(&end) && end.code() == v1::SLOW_CONSUMER) return true;
  }
  return false;
}

// Stream ends after which a subscription reconnects and resumes. Everything
// else (a bad room, OUT_OF_RANGE, ABORTED by Rooms.Disconnect, ...) would
// fail the same way again, or was meant to stop us.
bool Retryable(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:  // shutdown, unreachable, broken, Disconnect(reconnect)
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:    // transport-level stream resets
    case grpc::StatusCode::CANCELLED:  // not by us: the caller checks that first
      return true;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // A slow consumer resumes; "too many rooms" (max_rooms) would not pass.
      return IsSlowConsumer(status);
    default:
      return false;
  }
}

std::string RandomClientId() {
  absl::BitGen gen;
  return absl::StrFormat("cpp-%016x", absl::Uniform<uint64_t>(gen));
}

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

}  // namespace

const std::string& Event::room() const {
  switch (type) {
    case Type::kMessage:
      return message.room();
    case Type::kPresence:
      return presence.room();
    case Type::kRecovery:
      return recovery.room();
    default:
      return EmptyString();
  }
}

std::string FormatPosition(const v1::Position& position) {
  return absl::StrCat(position.epoch(), ":", position.offset());
}

absl::StatusOr<v1::Position> ParsePosition(std::string_view text) {
  size_t colon = text.rfind(':');
  uint64_t offset = 0;
  if (colon == std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(text.data() + colon + 1, text.size() - colon - 1),
                        &offset)) {
    return absl::InvalidArgumentError(
        absl::StrCat("position \"", absl::string_view(text.data(), text.size()),
                     "\" is not EPOCH:OFFSET (e.g. 9f3c2a1b7d4e6f08:42)"));
  }
  v1::Position position;
  position.set_epoch(std::string(text.substr(0, colon)));
  position.set_offset(offset);
  return position;
}

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

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

namespace {

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  if (options.channel != nullptr) return options.channel;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // Subscriptions pace their reconnects themselves (with jitter); keep
  // gRPC's own connection backoff short so a core that is back is found soon.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (options.keepalive_time != absl::InfiniteDuration() &&
      options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    // An idle subscription sends no data; keep pinging anyway.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  return grpc::CreateCustomChannel(options.core, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

Client::Client(ClientOptions options)
    : options_(std::move(options)),
      channel_(MakeChannel(options_)),
      stub_(v1::Rooms::NewStub(channel_)) {}

Client::~Client() = default;

void Client::SetDeadline(grpc::ClientContext& ctx, const CallOptions& call) const {
  absl::Duration timeout =
      call.timeout == absl::ZeroDuration() ? options_.call_timeout : call.timeout;
  if (timeout == absl::InfiniteDuration()) return;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<v1::Position> Client::Publish(std::string_view room, std::string_view data,
                                             const CallOptions& call) {
  v1::PublishRequest request;
  request.set_room(std::string(room));
  request.set_data(std::string(data));
  return Publish(request, call);
}

absl::StatusOr<v1::Position> Client::Publish(const v1::PublishRequest& request,
                                             const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::PublishResponse response;
  grpc::Status status = stub_->Publish(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return std::move(*response.mutable_position());
}

std::unique_ptr<PublishStream> Client::OpenPublishStream(PublishStream::AckCallback on_ack,
                                                         size_t max_unacked) {
  return std::unique_ptr<PublishStream>(new PublishStream(
      std::make_unique<PublishStream::Impl>(stub_.get(), std::move(on_ack), max_unacked)));
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

absl::StatusOr<v1::HistoryResponse> Client::History(const v1::HistoryRequest& request,
                                                    const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::HistoryResponse response;
  grpc::Status status = stub_->History(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return response;
}

absl::StatusOr<std::vector<v1::ClientInfo>> Client::Presence(std::string_view room,
                                                             const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::PresenceRequest request;
  request.set_room(std::string(room));
  v1::PresenceResponse response;
  grpc::Status status = stub_->Presence(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return std::vector<v1::ClientInfo>(std::make_move_iterator(response.mutable_clients()->begin()),
                                     std::make_move_iterator(response.mutable_clients()->end()));
}

absl::StatusOr<v1::PresenceStatsResponse> Client::PresenceStats(std::string_view room,
                                                                const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::PresenceStatsRequest request;
  request.set_room(std::string(room));
  v1::PresenceStatsResponse response;
  grpc::Status status = stub_->PresenceStats(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return response;
}

absl::StatusOr<std::vector<v1::ListRoomsResponse::RoomInfo>> Client::ListRooms(
    std::string_view prefix, const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::ListRoomsRequest request;
  request.set_prefix(std::string(prefix));
  v1::ListRoomsResponse response;
  grpc::Status status = stub_->ListRooms(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return std::vector<v1::ListRoomsResponse::RoomInfo>(
      std::make_move_iterator(response.mutable_rooms()->begin()),
      std::make_move_iterator(response.mutable_rooms()->end()));
}

absl::StatusOr<uint32_t> Client::Disconnect(const v1::DisconnectRequest& request,
                                            const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::DisconnectResponse response;
  grpc::Status status = stub_->Disconnect(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return response.num_disconnected();
}

absl::StatusOr<v1::StatsResponse> Client::Stats(const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::StatsResponse response;
  grpc::Status status = stub_->Stats(&ctx, v1::StatsRequest(), &response);
  if (!status.ok()) return ToStatus(status);
  return response;
}

}  // namespace roomcast::client
