// WriteScheduler and WriteQueue: when a connection writes and what one write
// carries, with a fake clock and no Asio.
#include "edge/write_scheduler.h"

#include <chrono>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

using std::chrono::milliseconds;
using Action = WriteScheduler::Action;

constexpr size_t kBatch = 100;

class WriteSchedulerTest : public ::testing::Test {
 protected:
  WriteScheduler scheduler_{absl::Milliseconds(20), kBatch};
  SteadyTime t0_ = SteadyTime() + std::chrono::hours(1);

  // Runs the scheduled write at `now`, as the post or the timer would.
  void WriteAt(SteadyTime now) {
    scheduler_.OnScheduledWrite();
    scheduler_.OnWriteStarted(now);
  }
};

TEST_F(WriteSchedulerTest, FirstWriteGoesAfterTheHandlerWithoutDelay) {
  EXPECT_EQ(scheduler_.OnQueued(10, t0_), Action::kPost);
  EXPECT_TRUE(scheduler_.scheduled());
}

TEST_F(WriteSchedulerTest, MoreQueuedWhileScheduledJoinsTheScheduledWrite) {
  EXPECT_EQ(scheduler_.OnQueued(10, t0_), Action::kPost);
  EXPECT_EQ(scheduler_.OnQueued(20, t0_), Action::kNone);
}

TEST_F(WriteSchedulerTest, BusyConnectionWaitsForTheDelay) {
  ASSERT_EQ(scheduler_.OnQueued(10, t0_), Action::kPost);
  WriteAt(t0_);
  EXPECT_EQ(scheduler_.OnQueued(10, t0_ + milliseconds(5)), Action::kDelay);
  EXPECT_EQ(scheduler_.OnQueued(20, t0_ + milliseconds(6)), Action::kNone);
}

TEST_F(WriteSchedulerTest, QuietConnectionWritesAtOnce) {
  ASSERT_EQ(scheduler_.OnQueued(10, t0_), Action::kPost);
  WriteAt(t0_);
  EXPECT_EQ(scheduler_.OnQueued(10, t0_ + milliseconds(20)), Action::kPost);
}

TEST_F(WriteSchedulerTest, FullBatchDoesNotWaitForTheDelay) {
  ASSERT_EQ(scheduler_.OnQueued(10, t0_), Action::kPost);
  WriteAt(t0_);
  EXPECT_EQ(scheduler_.OnQueued(kBatch, t0_ + milliseconds(1)), Action::kPost);
}

TEST_F(WriteSchedulerTest, FullBatchFindingADelayedWriteWritesNow) {
  ASSERT_EQ(scheduler_.OnQueued(10, t0_), Action::kPost);
  WriteAt(t0_);
  ASSERT_EQ(scheduler_.OnQueued(10, t0_ + milliseconds(1)), Action::kDelay);
  EXPECT_EQ(scheduler_.OnQueued(kBatch, t0_ + milliseconds(2)), Action::kWriteNow);
}

TEST(WriteSchedulerNoDelayTest, ZeroDelayNeverWaits) {
  WriteScheduler scheduler(absl::ZeroDuration(), kBatch);
  SteadyTime t0 = SteadyTime() + std::chrono::hours(1);
  ASSERT_EQ(scheduler.OnQueued(10, t0), Action::kPost);
  scheduler.OnScheduledWrite();
  scheduler.OnWriteStarted(t0);
  EXPECT_EQ(scheduler.OnQueued(10, t0), Action::kPost);
}

class WriteQueueTest : public ::testing::Test {
 protected:
  WriteQueue queue_{10};
};

TEST_F(WriteQueueTest, BatchTakesEntriesUpToTheLimit) {
  queue_.PushCopy("aaaa");
  queue_.PushCopy("bbbb");
  queue_.PushCopy("cccc");
  EXPECT_EQ(queue_.queued_bytes(), 12u);
  EXPECT_EQ(queue_.TakeBatch(false), "aaaabbbb");
  EXPECT_TRUE(queue_.writing());
  EXPECT_EQ(queue_.queued_bytes(), 12u);  // In flight still counts.
  queue_.WriteDone();
  EXPECT_EQ(queue_.queued_bytes(), 4u);
  EXPECT_EQ(queue_.TakeBatch(false), "cccc");
  queue_.WriteDone();
  EXPECT_TRUE(queue_.empty());
  EXPECT_EQ(queue_.queued_bytes(), 0u);
}

TEST_F(WriteQueueTest, OversizedEntryGoesAloneInOneWrite) {
  queue_.PushCopy("0123456789abcdef");
  queue_.PushCopy("x");
  EXPECT_EQ(queue_.TakeBatch(false), "0123456789abcdef");
  queue_.WriteDone();
  EXPECT_EQ(queue_.TakeBatch(false), "x");
}

TEST_F(WriteQueueTest, StripsTheFirstSeparatorOnly) {
  queue_.PushCopy("\n{1}");
  queue_.PushCopy("\n{2}");
  EXPECT_EQ(queue_.TakeBatch(true), "{1}\n{2}");
  EXPECT_EQ(queue_.queued_bytes(), 7u);
}

TEST_F(WriteQueueTest, SharedEntriesAreReferencedNotCopiedUntilTheWrite) {
  auto event = std::make_shared<const std::string>("shared");
  queue_.Push(event, *event);
  EXPECT_EQ(event.use_count(), 2);
  EXPECT_EQ(queue_.TakeBatch(false), "shared");
  EXPECT_EQ(event.use_count(), 1);
}

TEST_F(WriteQueueTest, DropPendingKeepsTheWriteInFlight) {
  queue_.PushCopy("aaaa");
  queue_.TakeBatch(false);
  queue_.PushCopy("bbbb");
  queue_.DropPending();
  EXPECT_TRUE(queue_.empty());
  EXPECT_EQ(queue_.queued_bytes(), 4u);
  queue_.WriteDone();
  EXPECT_EQ(queue_.queued_bytes(), 0u);
}

}  // namespace
}  // namespace roomcast::edge
