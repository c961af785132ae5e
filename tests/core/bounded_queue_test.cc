// BoundedQueue (core/bounded_queue.h): count and byte limits, order, batch
// takes. Plain values, no threads.
#include "core/bounded_queue.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::core {
namespace {

using ::testing::ElementsAre;
using Queue = BoundedQueue<std::string>;

std::vector<std::string> TakeAll(Queue& queue) {
  std::vector<std::string> out;
  queue.TakeBatch(queue.size(), [&out](std::string& s) {
    out.push_back(std::move(s));
    return true;
  });
  return out;
}

TEST(BoundedQueueTest, ItemsComeOutInTheOrderTheyWentIn) {
  Queue queue(10, 100);
  EXPECT_EQ(queue.Push("a", 1), Queue::PushResult::kQueued);
  EXPECT_EQ(queue.Push("b", 1), Queue::PushResult::kQueued);
  EXPECT_EQ(queue.Push("c", 1), Queue::PushResult::kQueued);
  EXPECT_EQ(queue.PopFront(), "a");
  EXPECT_THAT(TakeAll(queue), ElementsAre("b", "c"));
  EXPECT_TRUE(queue.empty());
}

TEST(BoundedQueueTest, CountLimitOverflowsAndKeepsWhatWasQueued) {
  Queue queue(2, 100);
  ASSERT_EQ(queue.Push("a", 1), Queue::PushResult::kQueued);
  ASSERT_EQ(queue.Push("b", 1), Queue::PushResult::kQueued);
  EXPECT_EQ(queue.Push("c", 1), Queue::PushResult::kOverflow);
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.bytes(), 2u);
  EXPECT_THAT(TakeAll(queue), ElementsAre("a", "b"));
}

TEST(BoundedQueueTest, ByteLimitAcceptsExactlyTheLimitAndRefusesOneMore) {
  Queue queue(10, 100);
  ASSERT_EQ(queue.Push("a", 60), Queue::PushResult::kQueued);
  EXPECT_EQ(queue.Push("b", 41), Queue::PushResult::kOverflow);
  EXPECT_EQ(queue.Push("c", 40), Queue::PushResult::kQueued);
  EXPECT_EQ(queue.bytes(), 100u);
}

TEST(BoundedQueueTest, TakingFreesRoomForMore) {
  Queue queue(1, 10);
  ASSERT_EQ(queue.Push("a", 10), Queue::PushResult::kQueued);
  ASSERT_EQ(queue.Push("b", 1), Queue::PushResult::kOverflow);
  EXPECT_EQ(queue.PopFront(), "a");
  EXPECT_EQ(queue.bytes(), 0u);
  EXPECT_EQ(queue.Push("b", 10), Queue::PushResult::kQueued);
}

TEST(BoundedQueueTest, TakeBatchStopsAtItsMaximumAndCountsWhatItTook) {
  Queue queue(10, 100);
  for (const char* s : {"a", "b", "c"}) ASSERT_EQ(queue.Push(s, 5), Queue::PushResult::kQueued);
  std::vector<std::string> got;
  Queue::Removed removed = queue.TakeBatch(2, [&got](std::string& s) {
    got.push_back(s);
    return true;
  });
  EXPECT_THAT(got, ElementsAre("a", "b"));
  EXPECT_EQ(removed.items, 2u);
  EXPECT_EQ(removed.bytes, 10u);
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue.bytes(), 5u);
}

TEST(BoundedQueueTest, TakeBatchLeavesTheItemItRefusesAtTheFront) {
  Queue queue(10, 100);
  for (const char* s : {"event", "event", "reply", "event"}) {
    ASSERT_EQ(queue.Push(s, 1), Queue::PushResult::kQueued);
  }
  Queue::Removed removed =
      queue.TakeBatch(10, [](std::string& s) { return s == "event"; });  // Coalesce events only.
  EXPECT_EQ(removed.items, 2u);
  EXPECT_EQ(queue.front(), "reply");
  EXPECT_EQ(queue.size(), 2u);
}

TEST(BoundedQueueTest, ClearReportsWhatItDropped) {
  Queue queue(10, 100);
  ASSERT_EQ(queue.Push("a", 7), Queue::PushResult::kQueued);
  ASSERT_EQ(queue.Push("b", 8), Queue::PushResult::kQueued);
  Queue::Removed removed = queue.Clear();
  EXPECT_EQ(removed.items, 2u);
  EXPECT_EQ(removed.bytes, 15u);
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.bytes(), 0u);
}

}  // namespace
}  // namespace roomcast::core
