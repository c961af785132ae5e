// The Asio side of write scheduling (DelayedWriter, DelayedWrites in
// edge/session_context.h) on a real io_context, without sockets: a write
// runs after the handler that queued it, a busy writer waits for the shard's
// timer, writers due together share one timer firing, a full batch does not
// wait.
#include <chrono>
#include <memory>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "edge/session_context.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

using Clock = std::chrono::steady_clock;

constexpr absl::Duration kDelay = absl::Milliseconds(50);

EdgeOptions Options() {
  EdgeOptions options;
  options.write_delay = kDelay;
  options.max_batch_bytes = 100;
  return options;
}

// Records when its writes ran; each write "starts" and completes at once.
class FakeWriter final : public DelayedWriter, public std::enable_shared_from_this<FakeWriter> {
 public:
  FakeWriter(boost::asio::io_context& io, DelayedWrites* delayed)
      : DelayedWriter(Options()), io_(io), delayed_(delayed) {}

  // Something was queued: `queued` bytes wait.
  void Queue(size_t queued) {
    ScheduleWrite(delayed_, io_.get_executor(), queued, shared_from_this());
  }

  std::vector<Clock::time_point> writes;

 private:
  void Write() override {
    writes.push_back(Clock::now());
    WriteStarted();
  }

  boost::asio::io_context& io_;
  DelayedWrites* const delayed_;
};

class DelayedWritesTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeWriter> NewWriter() { return std::make_shared<FakeWriter>(io_, &delayed_); }
  // Runs handlers until `writer` has written `count` times (deadline 5 s).
  void RunUntil(const FakeWriter& writer, size_t count) {
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
    while (writer.writes.size() < count && Clock::now() < deadline) {
      io_.restart();  // Running out of work stops an io_context.
      io_.run_one_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(writer.writes.size(), count);
  }

  boost::asio::io_context io_;
  DelayedWrites delayed_{io_, kDelay};
};

TEST_F(DelayedWritesTest, FirstWriteRunsAfterTheHandlerThatQueued) {
  auto writer = NewWriter();
  writer->Queue(10);
  EXPECT_TRUE(writer->writes.empty());  // Not inside the queuing handler.
  RunUntil(*writer, 1);
}

TEST_F(DelayedWritesTest, BusyWriterWaitsForTheTimer) {
  auto writer = NewWriter();
  writer->Queue(10);
  RunUntil(*writer, 1);
  writer->Queue(10);
  writer->Queue(20);  // Joins the write that waits.
  RunUntil(*writer, 2);
  EXPECT_GE(writer->writes[1] - writer->writes[0], absl::ToChronoNanoseconds(kDelay));
  io_.restart();
  io_.poll();
  EXPECT_EQ(writer->writes.size(), 2u);
}

TEST_F(DelayedWritesTest, WritersDueTogetherShareOneTimerFiring) {
  auto a = NewWriter();
  auto b = NewWriter();
  a->Queue(10);
  b->Queue(10);
  RunUntil(*a, 1);
  RunUntil(*b, 1);
  a->Queue(10);
  b->Queue(10);
  RunUntil(*a, 2);
  ASSERT_EQ(b->writes.size(), 2u);  // In the same timer handler as a's.
}

TEST_F(DelayedWritesTest, FullBatchDoesNotWaitForTheTimer) {
  auto writer = NewWriter();
  writer->Queue(10);
  RunUntil(*writer, 1);
  writer->Queue(10);   // Waits for the timer...
  writer->Queue(100);  // ...until a full batch is queued: written at once.
  EXPECT_EQ(writer->writes.size(), 2u);
}

TEST(DelayedWriterTest, WithoutADelayEveryWriteIsPosted) {
  boost::asio::io_context io;
  auto writer = std::make_shared<FakeWriter>(io, nullptr);
  writer->Queue(10);
  io.poll();
  writer->Queue(10);
  io.restart();  // Running out of work stopped it.
  io.poll();
  EXPECT_EQ(writer->writes.size(), 2u);
}

}  // namespace
}  // namespace roomcast::edge
