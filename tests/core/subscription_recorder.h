// SubscriptionRecorder: a client-side Rooms.Subscribe call (callback API)
// that records every event it receives, so tests can run many at once.
#ifndef ROOMCAST_TESTS_CORE_SUBSCRIPTION_RECORDER_H_
#define ROOMCAST_TESTS_CORE_SUBSCRIPTION_RECORDER_H_

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::core {

class SubscriptionRecorder : public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  // Starts the call; reads at once unless `read` is false (a consumer that
  // does not read until StartReading).
  SubscriptionRecorder(v1::Rooms::Stub& stub, const v1::SubscribeRequest& request, bool read = true)
      : request_(request) {
    stub.async()->Subscribe(&ctx_, &request_, this);
    if (read) StartRead(&response_);
    StartCall();
  }
  ~SubscriptionRecorder() override {
    ctx_.TryCancel();
    done_.WaitForNotification();
  }

  void StartReading() { StartRead(&response_); }
  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      absl::MutexLock lock(&mu_);
      events_.push_back(response_);
      if (response_.has_message()) ++messages_;
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }

  // True once `n` messages (not counting recovery/presence) have arrived.
  bool WaitForMessages(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return messages_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  bool WaitForEvents(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // Waits for the call to end and returns its status.
  grpc::Status Finish(absl::Duration timeout = absl::Seconds(10)) {
    if (!done_.WaitForNotificationWithTimeout(timeout)) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "test: the call did not end");
    }
    return status_;
  }
  bool done() const { return done_.HasBeenNotified(); }

  std::vector<v1::SubscribeResponse> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<v1::Message> messages() {
    absl::MutexLock lock(&mu_);
    std::vector<v1::Message> out;
    for (const auto& e : events_) {
      if (e.has_message()) out.push_back(e.message());
    }
    return out;
  }

 private:
  grpc::ClientContext ctx_;
  v1::SubscribeRequest request_;
  v1::SubscribeResponse response_;
  absl::Mutex mu_;
  std::vector<v1::SubscribeResponse> events_ ABSL_GUARDED_BY(mu_);
  size_t messages_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status status_;
  absl::Notification done_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_TESTS_CORE_SUBSCRIPTION_RECORDER_H_
