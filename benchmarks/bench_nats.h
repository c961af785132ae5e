// roomcast-bench's NATS side, for measuring nats-server's WebSocket listener
// with the same harness: NatsReader splits the server-to-client NATS protocol
// stream into operations; NatsPublisher publishes over a plain TCP client
// connection (the subscribers, NATS over WebSocket, are a ClientPool
// transport: Transport::kNatsWebSocket, in bench_nats.cc).
//
// The header has no Asio or Beast types: bench_main.cc includes it.
//
// Thread-safety: neither type locks; use each from one thread.
#ifndef ROOMCAST_BENCHMARKS_BENCH_NATS_H_
#define ROOMCAST_BENCHMARKS_BENCH_NATS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace roomcast::bench {

// Incremental parser of what a NATS server sends (INFO, MSG, PING, PONG,
// +OK, -ERR). Bytes may be appended in pieces of any size: an operation may
// span appends and one append may hold many operations.
class NatsReader {
 public:
  struct Op {
    enum class Kind { kInfo, kMsg, kPing, kPong, kOk, kErr, kOther };
    Kind kind = Kind::kOther;
    // The control line without "\r\n" ("MSG subj 1 5", "-ERR 'x'", ...).
    std::string_view line;
    // kMsg only: the subject and the payload.
    std::string_view subject;
    std::string_view payload;
  };

  // Longest control line accepted (NATS's own default max_control_line is
  // 4 KiB); longest payload accepted (its max_payload is at most 64 MiB).
  static constexpr size_t kMaxLineBytes = 64 * 1024;
  static constexpr size_t kMaxPayloadBytes = 64 << 20;

  void Append(std::string_view bytes);
  // The next complete operation, or nullopt when more bytes are needed or
  // the stream is malformed (then `error` is set and stays set). The views
  // stay valid until the next Append.
  std::optional<Op> Next();
  const std::string& error() const { return error_; }

 private:
  std::string pending_;
  size_t pos_ = 0;  // Start of the first operation not returned yet.
  std::string error_;
};

// A NATS client connection over TCP that only publishes: CONNECT, then
// PUB <subject> <n>\r\n<payload>\r\n pipelined (no round trip per message).
// PING/PONG marks what the server has processed: Confirm() sends a PING and
// waits for its PONG, which the server answers only after every PUB sent
// before it. The server's PINGs are answered on the next call.
//
// Every call is bounded in time: a server that stops reading makes Publish
// or Confirm fail after a timeout instead of blocking the harness.
class NatsPublisher {
 public:
  NatsPublisher(std::string host, std::string port);
  ~NatsPublisher();  // Closes the socket.
  NatsPublisher(const NatsPublisher&) = delete;
  NatsPublisher& operator=(const NatsPublisher&) = delete;

  // TCP connect, wait for INFO, send CONNECT, then one PING/PONG round trip.
  // False with error() set on failure.
  bool Connect();

  // Queues one PUB. Queued bytes are written when `flush` is set or a batch
  // is full; false once the connection failed (see error()).
  bool Publish(std::string_view subject, std::string_view payload, bool flush);

  // Writes everything queued plus a PING and waits for the PONGs of every
  // PING sent, until `deadline_ns` (NowNs clock). True when all came.
  bool Confirm(int64_t deadline_ns);

  // PUBs queued since Connect, and of those, how many the server confirmed
  // having processed (a prefix: the server processes in order).
  uint64_t published() const { return published_; }
  uint64_t confirmed() const { return confirmed_; }
  // Why the connection failed ("" while it works).
  const std::string& error() const { return error_; }
  // -ERR lines the server sent, by text; Publish leaves them here.
  std::map<std::string, int> TakeServerErrors();

 private:
  void Fail(std::string why);
  // Non-blocking: writes what the socket takes / reads what has arrived.
  bool WriteSome();
  bool ReadSome();
  // Waits (poll) for the socket to become readable or (when output is
  // pending) writable, at most until `deadline_ns`; false on timeout.
  bool Wait(int64_t deadline_ns);

  const std::string host_;
  const std::string port_;
  int fd_ = -1;
  std::string out_;     // Queued output not yet written.
  size_t out_pos_ = 0;  // First byte of out_ not written.
  NatsReader reader_;
  std::deque<uint64_t> pings_;  // Per PING in flight: published_ when it was sent.
  uint64_t published_ = 0;
  uint64_t confirmed_ = 0;
  uint64_t since_read_ = 0;  // PUBs since the last ReadSome.
  bool info_seen_ = false;
  std::map<std::string, int> server_errors_;
  std::string error_;
};

}  // namespace roomcast::bench

#endif  // ROOMCAST_BENCHMARKS_BENCH_NATS_H_
