// The request side of a WebSocket connection without sockets: rate limit,
// bad-request window, reply order, rooms, the reply cap. Time is a fake
// clock.
#include "edge/request_pipeline.h"

#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const SteadyTime kT0 = SteadyTime() + std::chrono::hours(1);

TEST(RateLimiterTest, BurstThenRefused) {
  RateLimiter limiter(/*rate=*/10, /*burst=*/3, kT0);
  EXPECT_TRUE(limiter.Allow(kT0));
  EXPECT_TRUE(limiter.Allow(kT0));
  EXPECT_TRUE(limiter.Allow(kT0));
  EXPECT_FALSE(limiter.Allow(kT0));
}

TEST(RateLimiterTest, RefillsAtTheRate) {
  RateLimiter limiter(/*rate=*/10, /*burst=*/1, kT0);
  EXPECT_TRUE(limiter.Allow(kT0));
  EXPECT_FALSE(limiter.Allow(kT0 + milliseconds(50)));
  EXPECT_TRUE(limiter.Allow(kT0 + milliseconds(150)));
}

TEST(RateLimiterTest, RefillStopsAtTheBurst) {
  RateLimiter limiter(/*rate=*/10, /*burst=*/2, kT0);
  EXPECT_TRUE(limiter.Allow(kT0 + seconds(100)));
  EXPECT_TRUE(limiter.Allow(kT0 + seconds(100)));
  EXPECT_FALSE(limiter.Allow(kT0 + seconds(100)));
}

TEST(BadRequestCounterTest, ClosesPastTheLimitWithinAWindow) {
  BadRequestCounter counter(/*max_per_window=*/2, absl::Minutes(1), kT0);
  EXPECT_FALSE(counter.Count(kT0));
  EXPECT_FALSE(counter.Count(kT0 + seconds(1)));
  EXPECT_TRUE(counter.Count(kT0 + seconds(2)));
}

TEST(BadRequestCounterTest, ANewWindowStartsOver) {
  BadRequestCounter counter(/*max_per_window=*/2, absl::Minutes(1), kT0);
  EXPECT_FALSE(counter.Count(kT0));
  EXPECT_FALSE(counter.Count(kT0));
  EXPECT_FALSE(counter.Count(kT0 + seconds(61)));
  EXPECT_FALSE(counter.Count(kT0 + seconds(62)));
  EXPECT_TRUE(counter.Count(kT0 + seconds(63)));
}

TEST(ReplyOrderTest, LocalReplyWaitsBehindARequestAtTheCore) {
  ReplyOrder order;
  ReplyOrder::Slot join = order.Reserve();
  order.AddReady("pong");
  EXPECT_THAT(order.TakeReady(), IsEmpty());
  order.Fill(join, {"message", "joined"});
  EXPECT_THAT(order.TakeReady(), ElementsAre("message", "joined", "pong"));
  EXPECT_EQ(order.pending(), 0u);
}

TEST(ReplyOrderTest, CoreRepliesOutOfOrderLeaveInRequestOrder) {
  ReplyOrder order;
  ReplyOrder::Slot a = order.Reserve();
  ReplyOrder::Slot b = order.Reserve();
  order.Fill(b, {"b"});
  EXPECT_THAT(order.TakeReady(), IsEmpty());
  order.Fill(a, {"a"});
  EXPECT_THAT(order.TakeReady(), ElementsAre("a", "b"));
}

TEST(ReplyOrderTest, AnEmptyReplyReleasesTheOnesBehindIt) {
  ReplyOrder order;
  ReplyOrder::Slot silent = order.Reserve();  // id 0: no reply wanted.
  order.AddReady("pong");
  order.Fill(silent, {});
  EXPECT_THAT(order.TakeReady(), ElementsAre("pong"));
}

TEST(ReplyOrderTest, ClearForgetsPendingSlots) {
  ReplyOrder order;
  ReplyOrder::Slot slot = order.Reserve();
  order.Clear();
  order.Fill(slot, {"late"});
  EXPECT_THAT(order.TakeReady(), IsEmpty());
}

TEST(RoomSetTest, JoinTwiceIsAlreadyExistsWhileJoiningAndJoined) {
  RoomSet rooms(10);
  ASSERT_TRUE(rooms.BeginJoin("a").ok());
  EXPECT_EQ(rooms.BeginJoin("a").code(), absl::StatusCode::kAlreadyExists);
  rooms.EndJoin("a");
  rooms.AddJoined("a");
  EXPECT_EQ(rooms.BeginJoin("a").code(), absl::StatusCode::kAlreadyExists);
}

TEST(RoomSetTest, PendingJoinsCountAgainstTheLimit) {
  RoomSet rooms(2);
  ASSERT_TRUE(rooms.BeginJoin("a").ok());
  ASSERT_TRUE(rooms.BeginJoin("b").ok());
  absl::Status third = rooms.BeginJoin("c");
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.message()), ::testing::HasSubstr("limit 2"));
}

TEST(RoomSetTest, FailedJoinFreesItsPlace) {
  RoomSet rooms(1);
  ASSERT_TRUE(rooms.BeginJoin("a").ok());
  rooms.EndJoin("a");  // The core refused it.
  EXPECT_TRUE(rooms.BeginJoin("b").ok());
}

TEST(RoomSetTest, LeaveSaysWhetherItWasJoined) {
  RoomSet rooms(10);
  ASSERT_TRUE(rooms.BeginJoin("a").ok());
  rooms.EndJoin("a");
  rooms.AddJoined("a");
  EXPECT_TRUE(rooms.Leave("a"));
  EXPECT_FALSE(rooms.Leave("a"));
  EXPECT_FALSE(rooms.Leave("never"));
}

TEST(RoomSetTest, TakeJoinedEmptiesTheSet) {
  RoomSet rooms(10);
  rooms.AddJoined("a");
  ASSERT_TRUE(rooms.BeginJoin("b").ok());
  EXPECT_THAT(rooms.TakeJoined(), ElementsAre("a"));
  EXPECT_EQ(rooms.size(), 0u);
}

TEST(ReplyFitsTest, CapIsTheFactorTimesTheQueueLimit) {
  EdgeOptions options;
  options.max_queued_bytes = 100;
  options.reply_queue_factor = 4;
  EXPECT_TRUE(ReplyFits(options, 300, 100));
  EXPECT_FALSE(ReplyFits(options, 301, 100));
}

TEST(ReplyFitsTest, AnOversizedReplyGoesOutWhenNothingWaits) {
  EdgeOptions options;
  options.max_queued_bytes = 100;
  options.reply_queue_factor = 4;
  EXPECT_TRUE(ReplyFits(options, 0, 1'000'000));
  EXPECT_FALSE(ReplyFits(options, 1, 1'000'000));
}

}  // namespace
}  // namespace roomcast::edge
