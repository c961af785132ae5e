// CoreLink against a real in-process core (roomcast::core::CoreServer on
// 127.0.0.1:0) and, where the core must misbehave (never answer, never
// read), against a fake EdgeLink service.
#include "edge/core_link.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/options.h"
#include "core/server.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

constexpr absl::Duration kWait = absl::Seconds(10);

// An EdgeLink service that welcomes the edge and then either reads and
// never answers (kSilent) or stops reading after the hello (kNotReading).
class FakeCore final : public v1::EdgeLink::CallbackService {
 public:
  enum class Mode { kSilent, kNotReading };

  explicit FakeCore(Mode mode) : mode_(mode) {}
  ~FakeCore() override { Stop(); }

  std::string Start() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    return absl::StrCat("127.0.0.1:", port);
  }
  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    server_.reset();
  }
  int requests_seen() {
    absl::MutexLock lock(&mu_);
    return requests_seen_;
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge> {
   public:
    explicit Reactor(FakeCore* core) : core_(core) {
      welcome_.mutable_welcome()->set_core_name("fake");
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        End();
        return;
      }
      if (in_.has_hello()) {
        StartWrite(&welcome_);
        if (core_->mode_ == Mode::kNotReading) return;
      } else if (in_.has_request()) {
        absl::MutexLock lock(&core_->mu_);
        ++core_->requests_seen_;
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {}
    void OnCancel() override { End(); }
    void OnDone() override { delete this; }

   private:
    void End() {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      Finish(grpc::Status::OK);
    }
    FakeCore* const core_;
    v1::EdgeToCore in_;
    v1::CoreToEdge welcome_;
    absl::Mutex mu_;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
  };

  grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge>* Link(
      grpc::CallbackServerContext*) override {
    return new Reactor(this);
  }

  const Mode mode_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  int requests_seen_ ABSL_GUARDED_BY(mu_) = 0;
};

class CoreLinkTest : public ::testing::Test {
 protected:
  CoreLinkTest() {
    options_.reconnect_min = absl::Milliseconds(10);
    options_.reconnect_max = absl::Milliseconds(100);
    options_.request_timeout_check = absl::Milliseconds(20);
  }
  ~CoreLinkTest() override {
    if (link_ != nullptr) link_->Stop();
  }

  // Starts a real core on `listen` and returns its address.
  std::string StartCore(std::string listen = "127.0.0.1:0") {
    core::CoreOptions options;
    options.listen = std::move(listen);
    options.shutdown_grace = absl::Milliseconds(200);
    core_ = std::make_unique<core::CoreServer>(options);
    absl::StatusOr<std::string> address = core_->Start();
    EXPECT_TRUE(address.ok()) << address.status();
    return address.ok() ? *address : "";
  }

  void StartLink(const std::string& core_address) {
    options_.core = core_address;
    link_ = std::make_unique<CoreLink>(
        options_,
        CoreLink::Handler{.on_events = {}, .on_disconnect = {}, .on_state = [this](bool up) {
                            absl::MutexLock lock(&mu_);
                            states_.push_back(up);
                          }});
    link_->Start();
  }

  // Waits for the link to be up on a generation other than `not_this`.
  uint64_t WaitUp(uint64_t not_this = 0) {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      uint64_t generation = link_->generation();
      if (generation != 0 && generation != not_this) return generation;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ADD_FAILURE() << "the link did not come up";
    return 0;
  }
  bool WaitDown() {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      if (link_->generation() == 0) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  // Sends `request` and returns a handle to its reply.
  struct PendingReply {
    absl::Notification done;
    v1::EdgeReply reply;
  };
  std::shared_ptr<PendingReply> Ask(uint64_t generation, v1::EdgeRequest request) {
    auto pending = std::make_shared<PendingReply>();
    link_->Request(generation, std::move(request), [pending](v1::EdgeReply reply) {
      pending->reply = std::move(reply);
      pending->done.Notify();
    });
    return pending;
  }
  v1::EdgeReply Await(const std::shared_ptr<PendingReply>& pending,
                      absl::Duration timeout = kWait) {
    EXPECT_TRUE(pending->done.WaitForNotificationWithTimeout(timeout)) << "no reply";
    return pending->reply;
  }

  static v1::EdgeRequest Join(const std::string& client, const std::string& room) {
    v1::EdgeRequest request;
    request.set_client_id(client);
    request.mutable_join()->set_room(room);
    return request;
  }
  static v1::EdgeRequest Publish(const std::string& client, const std::string& room,
                                 std::string data) {
    v1::EdgeRequest request;
    request.set_client_id(client);
    request.mutable_publish()->set_room(room);
    request.mutable_publish()->set_data(std::move(data));
    return request;
  }
  static v1::EdgeToCore Connected(const std::string& client) {
    v1::EdgeToCore message;
    message.mutable_client_connected()->mutable_client()->set_client_id(client);
    return message;
  }
  static v1::EdgeToCore Disconnected(const std::string& client) {
    v1::EdgeToCore message;
    message.mutable_client_disconnected()->set_client_id(client);
    return message;
  }

  // The link's on_state calls, once there are `count` of them (they come
  // just after generation() changes).
  // Publishes 256 KiB requests to a core that does not read until the
  // outbox has refused kStreak of them in a row, 10 ms apart (gRPC's
  // transport window is full by then, so nothing drains any more). Every
  // request must be either refused at once (RESOURCE_EXHAUSTED) or queued.
  // Returns how many were refused.
  int FillOutbox(uint64_t generation) {
    constexpr int kStreak = 10;
    const std::string payload(256 * 1024, 'x');
    int refused = 0;
    int streak = 0;
    absl::Time deadline = absl::Now() + kWait;
    while (streak < kStreak && absl::Now() < deadline) {
      auto pending = Ask(generation, Publish("c1", "r", payload));
      if (!pending->done.HasBeenNotified()) {
        streak = 0;
        continue;
      }
      EXPECT_EQ(pending->reply.error().code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      ++refused;
      if (++streak < kStreak) absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(streak, kStreak) << "the outbox never stayed full";
    return refused;
  }

  std::vector<bool> states(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return states_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kWait);
    return states_;
  }

  EdgeOptions options_;
  std::unique_ptr<core::CoreServer> core_;
  std::unique_ptr<CoreLink> link_;
  absl::Mutex mu_;
  std::vector<bool> states_ ABSL_GUARDED_BY(mu_);
};

TEST_F(CoreLinkTest, HelloWelcomeBringsTheLinkUp) {
  std::string address = StartCore();
  StartLink(address);
  EXPECT_NE(WaitUp(), 0u);
  EXPECT_THAT(states(1), ::testing::ElementsAre(true));
}

TEST_F(CoreLinkTest, DownWithoutACore) {
  StartLink("127.0.0.1:1");
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(link_->generation(), 0u);
  v1::EdgeReply reply = Await(Ask(1, Join("c1", "lobby")));
  EXPECT_EQ(reply.error().code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(CoreLinkTest, RequestGetsItsReply) {
  StartLink(StartCore());
  uint64_t generation = WaitUp();
  ASSERT_TRUE(link_->Send(generation, Connected("c1")));
  v1::EdgeReply joined = Await(Ask(generation, Join("c1", "lobby")));
  ASSERT_FALSE(joined.has_error()) << joined.error().message();
  EXPECT_TRUE(joined.has_join());
  v1::EdgeReply published = Await(Ask(generation, Publish("c1", "lobby", R"({"n":1})")));
  ASSERT_FALSE(published.has_error()) << published.error().message();
  EXPECT_EQ(published.publish().position().offset(), 1u);
}

TEST_F(CoreLinkTest, RequestOnAnOldGenerationFailsUnavailable) {
  StartLink(StartCore());
  uint64_t generation = WaitUp();
  v1::EdgeReply reply = Await(Ask(generation + 1, Join("c1", "lobby")));
  EXPECT_EQ(reply.error().code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(link_->Send(generation + 1, Connected("c1")));
}

TEST_F(CoreLinkTest, RequestTimesOutAgainstACoreThatDoesNotAnswer) {
  FakeCore fake(FakeCore::Mode::kSilent);
  options_.request_timeout = absl::Milliseconds(300);
  StartLink(fake.Start());
  uint64_t generation = WaitUp();
  absl::Time start = absl::Now();
  v1::EdgeReply reply = Await(Ask(generation, Join("c1", "lobby")));
  EXPECT_EQ(reply.error().code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(fake.requests_seen(), 1);
}

TEST_F(CoreLinkTest, PendingRequestsFailUnavailableWhenTheCoreStops) {
  FakeCore fake(FakeCore::Mode::kSilent);
  options_.request_timeout = absl::Seconds(60);
  StartLink(fake.Start());
  uint64_t generation = WaitUp();
  auto first = Ask(generation, Join("c1", "a"));
  auto second = Ask(generation, Join("c1", "b"));
  absl::Time deadline = absl::Now() + kWait;
  while (fake.requests_seen() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(fake.requests_seen(), 2);
  fake.Stop();
  EXPECT_EQ(Await(first).error().code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Await(second).error().code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(WaitDown());
  EXPECT_THAT(states(2), ::testing::ElementsAre(true, false));
}

TEST_F(CoreLinkTest, ReconnectsOnANewGenerationWhenTheCoreComesBack) {
  std::string address = StartCore();
  StartLink(address);
  uint64_t first = WaitUp();
  core_->Shutdown();
  ASSERT_TRUE(WaitDown());
  EXPECT_EQ(Await(Ask(first, Join("c1", "lobby"))).error().code(), grpc::StatusCode::UNAVAILABLE);
  core_.reset();
  StartCore(address);
  uint64_t second = WaitUp(first);
  EXPECT_NE(second, first);
  EXPECT_THAT(states(3), ::testing::ElementsAre(true, false, true));
  ASSERT_TRUE(link_->Send(second, Connected("c2")));
  v1::EdgeReply joined = Await(Ask(second, Join("c2", "lobby")));
  EXPECT_FALSE(joined.has_error()) << joined.error().message();
}

// A core that stops reading: the outbox fills to its bound, then requests
// fail at once with RESOURCE_EXHAUSTED and announcements are refused;
// disconnects still queue.
TEST_F(CoreLinkTest, FullOutboxRefusesRequestsWithResourceExhausted) {
  FakeCore fake(FakeCore::Mode::kNotReading);
  options_.core_outbox_max_messages = 4;
  options_.request_timeout = absl::Seconds(60);
  StartLink(fake.Start());
  uint64_t generation = WaitUp();
  int refused = FillOutbox(generation);
  ASSERT_GT(refused, 0);
  EXPECT_FALSE(link_->Send(generation, Connected("c2")));
  EXPECT_TRUE(link_->Send(generation, Disconnected("c1")));
  EXPECT_EQ(link_->overflow_total(), static_cast<uint64_t>(refused) + 1);
}

TEST_F(CoreLinkTest, ByteBoundRefusesTooMuchData) {
  FakeCore fake(FakeCore::Mode::kNotReading);
  options_.core_outbox_max_bytes = 1024 * 1024;
  options_.request_timeout = absl::Seconds(60);
  StartLink(fake.Start());
  uint64_t generation = WaitUp();
  int refused = FillOutbox(generation);
  ASSERT_GT(refused, 0);
  EXPECT_EQ(link_->overflow_total(), static_cast<uint64_t>(refused));
}

}  // namespace
}  // namespace roomcast::edge
