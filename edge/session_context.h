// What the edge's Beast sessions (edge/ws_session.cc, sse_session.cc,
// http_session.cc) share: the EdgeContext, the Asio side of write scheduling
// (DelayedWriter, DelayedWrites: the thin adapter over WriteScheduler), and
// the classification of I/O errors for each session's Fail().
//
// Threads: EdgeContext is shared by every shard; its members are
// thread-safe or read-only. A DelayedWriter and a shard's DelayedWrites are
// used on that shard's thread only.
#ifndef ROOMCAST_EDGE_SESSION_CONTEXT_H_
#define ROOMCAST_EDGE_SESSION_CONTEXT_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/system/error_code.hpp"
#include "edge/core_link.h"
#include "edge/hub.h"
#include "edge/options.h"
#include "edge/write_scheduler.h"

namespace roomcast::edge {

class DelayedWrites;

// Everything the sessions share. Outlives them all (the server waits for
// connections to drain, and destroys the io_contexts, before it goes).
struct EdgeContext {
  const EdgeOptions& options;
  Hub& hub;
  CoreLink& link;
  // One per shard when options.write_delay > 0.
  std::vector<std::unique_ptr<DelayedWrites>> delayed_writes;
  std::atomic<bool> shutting_down{false};

  // The write delay of `shard`; null when writes are not delayed.
  DelayedWrites* delayed_writes_of(size_t shard) const {
    return delayed_writes.empty() ? nullptr : delayed_writes[shard].get();
  }
};

inline std::chrono::steady_clock::duration ToSteady(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// How a session reports an I/O error (its Fail()): kQuiet for the ordinary
// ends of a connection (operation_aborted, a closed WebSocket, end of
// stream), kDebug for what peers cause (resets, timeouts, protocol
// violations), kWarning for everything else.
enum class ErrorSeverity { kQuiet, kDebug, kWarning };
ErrorSeverity ClassifyError(const boost::system::error_code& ec);

// Logs `ec` from `session` (kind and client id) at `where` at its severity.
void LogSessionError(const char* kind, const std::string& client, const char* where,
                     const boost::system::error_code& ec);

// The Asio side of WriteScheduler, shared by the WebSocket and SSE sessions:
// turns its decisions into a post, a wait on the shard's write-delay timer,
// or a write now.
class DelayedWriter {
 public:
  // Starts the write that was scheduled (on the session's shard thread).
  void WriteNow() {
    scheduler_.OnScheduledWrite();
    Write();
  }

 protected:
  explicit DelayedWriter(const EdgeOptions& options)
      : scheduler_(options.write_delay, options.max_batch_bytes) {}
  ~DelayedWriter() = default;

  // Writes what is queued, if no write is in flight.
  virtual void Write() = 0;

  // Call when something was queued and no write is in flight; `queued` bytes
  // wait. `delayed` is the session's shard's write delay (null when writes
  // are not delayed), `executor` its strand, `self` this session.
  void ScheduleWrite(DelayedWrites* delayed, const boost::asio::any_io_executor& executor,
                     size_t queued, std::shared_ptr<DelayedWriter> self);

  // A write started now.
  void WriteStarted() { scheduler_.OnWriteStarted(std::chrono::steady_clock::now()); }

 private:
  WriteScheduler scheduler_;
};

// The write delay of one shard: sessions with something to write wait here
// until the shard's one timer fires, then write together, each everything
// it gathered meanwhile.
class DelayedWrites {
 public:
  DelayedWrites(boost::asio::io_context& context, absl::Duration delay)
      : timer_(context), delay_(ToSteady(delay)) {}

  void Add(std::shared_ptr<DelayedWriter> session) {
    waiting_.push_back(std::move(session));
    if (waiting_.size() > 1) return;  // The timer is armed.
    timer_.expires_after(delay_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;  // Only when the shard stops.
      std::vector<std::shared_ptr<DelayedWriter>> due;
      due.swap(waiting_);
      for (const auto& session : due) session->WriteNow();
    });
  }

 private:
  boost::asio::steady_timer timer_;
  const std::chrono::steady_clock::duration delay_;
  std::vector<std::shared_ptr<DelayedWriter>> waiting_;
};

inline void DelayedWriter::ScheduleWrite(DelayedWrites* delayed,
                                         const boost::asio::any_io_executor& executor,
                                         size_t queued, std::shared_ptr<DelayedWriter> self) {
  switch (scheduler_.OnQueued(queued, std::chrono::steady_clock::now())) {
    case WriteScheduler::Action::kNone:
      return;
    case WriteScheduler::Action::kWriteNow:
      Write();
      return;
    case WriteScheduler::Action::kDelay:
      if (delayed != nullptr) {
        delayed->Add(std::move(self));
        return;
      }
      [[fallthrough]];  // Not delaying after all: write after the handler.
    case WriteScheduler::Action::kPost:
      boost::asio::post(executor, [self = std::move(self)] { self->WriteNow(); });
      return;
  }
}

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_SESSION_CONTEXT_H_
