// Hub: local membership and fan-out across shards, without sockets.
#include "edge/hub.h"

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/post.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

// Records what the hub hands it; touched only on its shard's thread.
class FakeClient : public Client {
 public:
  using Client::Client;
  void Deliver(const FramePtr& frame) override {
    absl::MutexLock lock(&mu_);
    frames_.push_back(frame);
    threads_.push_back(std::this_thread::get_id());
  }
  void Close(v1::DisconnectCode code, std::string reason) override {
    absl::MutexLock lock(&mu_);
    closed_with_ = code;
  }
  std::vector<FramePtr> frames() {
    absl::MutexLock lock(&mu_);
    return frames_;
  }
  std::vector<std::thread::id> threads() {
    absl::MutexLock lock(&mu_);
    return threads_;
  }
  v1::DisconnectCode closed_with() {
    absl::MutexLock lock(&mu_);
    return closed_with_;
  }

 private:
  absl::Mutex mu_;
  std::vector<FramePtr> frames_;
  std::vector<std::thread::id> threads_;
  v1::DisconnectCode closed_with_ = v1::DISCONNECT_CODE_UNSPECIFIED;
};

class HubTest : public ::testing::Test {
 protected:
  static constexpr int kShards = 2;

  HubTest() : hub_({&contexts_[0], &contexts_[1]}) {
    for (auto& c : contexts_) {
      guards_.emplace_back(boost::asio::make_work_guard(c));
      threads_.emplace_back([&c] { c.run(); });
    }
  }
  ~HubTest() override {
    guards_.clear();
    for (auto& c : contexts_) c.stop();
    for (auto& t : threads_) t.join();
  }

  // Runs `f` on `shard`'s thread and waits for it.
  template <typename F>
  void OnShard(size_t shard, F f) {
    absl::Notification done;
    boost::asio::post(contexts_[shard], [&] {
      f();
      done.Notify();
    });
    done.WaitForNotification();
  }
  // Waits until every shard has run what was posted before.
  void Drain() {
    for (size_t s = 0; s < kShards; ++s) OnShard(s, [] {});
  }

  std::shared_ptr<FakeClient> AddClient(size_t shard, const std::string& room) {
    auto client = std::make_shared<FakeClient>(hub_.NewClientId(), shard);
    hub_.Register(client);
    OnShard(shard, [&] { hub_.Join(*client, room); });
    return client;
  }

  static v1::EdgeEvents MessageEvents(const std::string& room, int count) {
    v1::EdgeEvents events;
    for (int i = 1; i <= count; ++i) {
      v1::Message* m = events.add_events()->mutable_message();
      m->set_room(room);
      m->mutable_position()->set_epoch("e");
      m->mutable_position()->set_offset(i);
      m->set_data("{\"n\":" + std::to_string(i) + "}");
    }
    return events;
  }

  boost::asio::io_context contexts_[kShards];
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  Hub hub_;
};

TEST_F(HubTest, EveryMemberOnEveryShardGetsEachEventOnceInOrder) {
  std::vector<std::shared_ptr<FakeClient>> members;
  for (int i = 0; i < 6; ++i) members.push_back(AddClient(i % kShards, "lobby"));
  auto outsider = AddClient(0, "elsewhere");
  hub_.OnEvents(MessageEvents("lobby", 3));
  Drain();
  for (auto& m : members) {
    std::vector<FramePtr> frames = m->frames();
    ASSERT_EQ(frames.size(), 3u);
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(frames[i]->position.offset(), static_cast<uint64_t>(i + 1));
  }
  EXPECT_TRUE(outsider->frames().empty());
}

TEST_F(HubTest, AnEventIsEncodedOnceAndSharedByEveryRecipient) {
  auto a = AddClient(0, "r");
  auto b = AddClient(1, "r");
  hub_.OnEvents(MessageEvents("r", 1));
  Drain();
  ASSERT_EQ(a->frames().size(), 1u);
  ASSERT_EQ(b->frames().size(), 1u);
  EXPECT_EQ(a->frames()[0].get(), b->frames()[0].get());  // The same encoded frame.
  EXPECT_THAT(a->frames()[0]->json(), ::testing::HasSubstr("\"data\":{\"n\":1}"));
}

TEST_F(HubTest, DeliveryHappensOnTheClientsOwnShardThread) {
  auto a = AddClient(0, "r");
  auto b = AddClient(1, "r");
  std::thread::id shard0, shard1;
  OnShard(0, [&] { shard0 = std::this_thread::get_id(); });
  OnShard(1, [&] { shard1 = std::this_thread::get_id(); });
  hub_.OnEvents(MessageEvents("r", 2));
  Drain();
  EXPECT_THAT(a->threads(), ::testing::Each(shard0));
  EXPECT_THAT(b->threads(), ::testing::Each(shard1));
}

TEST_F(HubTest, LeaveStopsDeliveryAndMembershipsReturnToZero) {
  auto a = AddClient(0, "r");
  auto b = AddClient(1, "r");
  EXPECT_EQ(hub_.counters().memberships.load(), 2);
  OnShard(0, [&] { hub_.Leave(*a, "r"); });
  OnShard(0, [&] { hub_.Leave(*a, "r"); });  // Idempotent.
  hub_.OnEvents(MessageEvents("r", 1));
  Drain();
  EXPECT_TRUE(a->frames().empty());
  EXPECT_EQ(b->frames().size(), 1u);
  OnShard(1, [&] { hub_.Leave(*b, "r"); });
  EXPECT_EQ(hub_.counters().memberships.load(), 0);
}

TEST_F(HubTest, CoreDisconnectReachesOnlyTheNamedClient) {
  auto a = AddClient(0, "r");
  auto b = AddClient(1, "r");
  v1::DisconnectClient d;
  d.set_client_id(b->id());
  d.set_code(v1::DISCONNECTED);
  hub_.OnDisconnect(d);
  Drain();
  EXPECT_EQ(b->closed_with(), v1::DISCONNECTED);
  EXPECT_EQ(a->closed_with(), v1::DISCONNECT_CODE_UNSPECIFIED);
}

TEST_F(HubTest, CloseAllClosesEveryRegisteredClient) {
  auto a = AddClient(0, "r");
  auto b = AddClient(1, "s");
  auto gone = AddClient(1, "s");
  hub_.Unregister(*gone);
  hub_.CloseAll(v1::RECONNECT, "link lost");
  Drain();
  EXPECT_EQ(a->closed_with(), v1::RECONNECT);
  EXPECT_EQ(b->closed_with(), v1::RECONNECT);
  EXPECT_EQ(gone->closed_with(), v1::DISCONNECT_CODE_UNSPECIFIED);
}

TEST_F(HubTest, ClientIdsAreUnique) { EXPECT_NE(hub_.NewClientId(), hub_.NewClientId()); }

}  // namespace
}  // namespace roomcast::edge
