// Internal to roomcast-bench's client side (bench_clients.cc, bench_nats.cc):
// the client thread, what every subscriber shares, and SubscriberBase, the
// per-connection bookkeeping every subscriber kind inherits (join / fail /
// end reporting, the offset tally, latency). A subscriber kind only connects,
// parses its server's protocol and calls Joined / OnMessage / Ended.
//
// bench_main.cc never includes this header (it pulls in Asio); ClientPool
// (bench_clients.h) is the public face.
//
// Thread-safety: a subscriber and its ClientThread's counters are touched
// only on that thread (ClientThread::ioc); see bench_clients.h.
#ifndef ROOMCAST_BENCHMARKS_BENCH_SUBSCRIBER_H_
#define ROOMCAST_BENCHMARKS_BENCH_SUBSCRIBER_H_

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/bench_clients.h"
#include "benchmarks/bench_stats.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace roomcast::bench::internal {

class SubscriberBase;

// One client thread: its io_context, its subscribers and the counters of the
// current step. Touched only on `thread` except while the coordinator waits
// for posted work (RunOnAll).
struct ClientThread {
  boost::asio::io_context ioc{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard{
      boost::asio::make_work_guard(ioc)};
  std::thread thread;
  std::vector<std::shared_ptr<SubscriberBase>> subscribers;
  size_t churn_cursor = 0;  // Next subscriber Replace considers closing.

  // Step counters.
  int64_t step_begin_ns = 0;
  int64_t measure_from_ns = INT64_MAX;
  Histogram latency;
  uint64_t duplicated = 0;
  uint64_t out_of_order = 0;
  uint64_t stale = 0;
  uint64_t unparsed = 0;
  uint64_t presence = 0;
  uint64_t bytes = 0;

  // Connect-phase counters.
  Histogram connect_latency;
  std::map<std::string, int> connect_errors;
};

// What every subscriber shares: where to connect and the phase counters the
// coordinator polls.
struct Shared {
  ClientOptions options;
  boost::asio::ip::tcp::endpoint endpoint;
  std::string host_header;
  std::atomic<int> connecting{0};
  std::atomic<int> joined{0};
  std::atomic<int> failed{0};
  std::atomic<int> open{0};
  // gRPC subscribers: channels shared by up to kStreamsPerChannel streams each,
  // and the calls not finished yet (the pool waits for them before its
  // threads go away: their OnDone posts onto those threads).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::atomic<int> grpc_calls{0};
};

class SubscriberBase : public std::enable_shared_from_this<SubscriberBase> {
 public:
  SubscriberBase(Shared& shared, ClientThread& thread, size_t room_index, std::string room)
      : shared_(shared), thread_(thread), room_index_(room_index), room_(std::move(room)) {}
  virtual ~SubscriberBase() = default;
  SubscriberBase(const SubscriberBase&) = delete;
  SubscriberBase& operator=(const SubscriberBase&) = delete;

  virtual void Start() = 0;
  // Shuts the socket; later errors are ours, not the server's.
  void Close() {
    if (closed_) return;
    closed_by_us_ = true;
    closed_by_us_ns_ = NowNs();
    ShutSocket();
    if (!reported_) Failed("join timeout");
  }
  void FailIfNotJoined() {
    if (!reported_) Close();
  }

  size_t room_index() const { return room_index_; }
  bool open() const { return joined_ && !closed_; }
  bool closed() const { return closed_; }
  bool joined() const { return joined_; }
  int close_code() const { return close_code_; }
  // When the harness closed it (0: it did not).
  int64_t closed_by_us_ns() const { return closed_by_us_ns_; }
  // The room's last offset when the join was confirmed, and when that was.
  uint64_t join_offset() const { return join_offset_; }
  int64_t joined_ns() const { return joined_ns_; }
  OffsetTally& tally() { return tally_; }
  bool in_step = false;

 protected:
  virtual void ShutSocket() = 0;

  void OnMessage(uint64_t offset, std::optional<int64_t> t) {
    switch (tally_.Record(offset)) {
      case OffsetTally::Arrival::kDuplicate:
        ++thread_.duplicated;
        return;
      case OffsetTally::Arrival::kStale:
        ++thread_.stale;
        return;
      case OffsetTally::Arrival::kOutOfOrder:
        ++thread_.out_of_order;
        break;
      case OffsetTally::Arrival::kInOrder:
        break;
    }
    if (t && *t >= thread_.measure_from_ns) thread_.latency.Record(NowNs() - *t);
  }

  void Joined(uint64_t offset) {
    reported_ = true;
    joined_ = true;
    join_offset_ = offset;
    joined_ns_ = NowNs();
    thread_.connect_latency.Record(joined_ns_ - start_ns_);
    shared_.open.fetch_add(1);
    shared_.connecting.fetch_sub(1);
    shared_.joined.fetch_add(1);
  }

  void Failed(std::string why) {
    if (reported_) return;
    reported_ = true;
    ++thread_.connect_errors[std::move(why)];
    shared_.connecting.fetch_sub(1);
    shared_.failed.fetch_add(1);
  }

  // The connection ended (error, close frame, end of stream).
  void Ended(const std::string& what, int code) {
    if (closed_) return;
    closed_ = true;
    close_code_ = code;
    if (joined_) shared_.open.fetch_sub(1);
    if (!reported_) Failed(closed_by_us_ ? "join timeout" : what);
  }

  Shared& shared_;
  ClientThread& thread_;
  const size_t room_index_;
  const std::string room_;
  int64_t start_ns_ = 0;
  bool reported_ = false;  // Joined() or Failed() was counted.
  bool joined_ = false;
  bool closed_ = false;
  bool closed_by_us_ = false;
  int64_t closed_by_us_ns_ = 0;
  int close_code_ = 0;
  uint64_t join_offset_ = 0;
  int64_t joined_ns_ = 0;
  OffsetTally tally_;
};

// A subscriber to nats-server's WebSocket listener (bench_nats.cc): joins by
// SUB <room> and confirms with PING/PONG; counts by the payload's bench_seq.
std::shared_ptr<SubscriberBase> MakeNatsWebSocketSubscriber(Shared& shared, ClientThread& thread,
                                                            size_t room_index, std::string room);

}  // namespace roomcast::bench::internal

#endif  // ROOMCAST_BENCHMARKS_BENCH_SUBSCRIBER_H_
