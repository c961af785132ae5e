// NATS for roomcast-bench: the protocol reader, the TCP publisher and the
// subscriber to nats-server's WebSocket listener (Beast; a translation unit
// of its own so that it does not grow bench_clients.cc).
#include "benchmarks/bench_nats.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "benchmarks/bench_clients.h"
#include "benchmarks/bench_stats.h"
#include "benchmarks/bench_subscriber.h"

namespace roomcast::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

// What a client sends first. verbose=false: no +OK per operation (a PING's
// PONG confirms instead); no echo, headers or other options are needed.
constexpr char kConnect[] = R"(CONNECT {"verbose":false,"pedantic":false,"protocol":1})"
                            "\r\n";
constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr int64_t kIoTimeoutNs = 10'000'000'000;
// The publisher writes once this much is queued even when not told to flush
// (rate 0 or a late publisher: coalesced PUBs, as NATS clients do).
constexpr size_t kBatchBytes = 64 * 1024;
// Queued output beyond which Publish waits for the socket (a server that
// reads slower than we publish holds the publisher here, bounded by
// kIoTimeoutNs, instead of growing memory).
constexpr size_t kMaxQueuedBytes = 8 << 20;

// nats-server's WebSocket listener: it sends binary frames whose payloads
// are the NATS protocol byte stream (frames do not align with operations).
// Joining is CONNECT + SUB <room> 1 + PING once INFO arrived; the PONG
// confirms the subscription (the server handles a connection's operations
// in order). Payloads carry bench_seq and bench_t (generic target mode).
class NatsWebSocketSubscriber final : public internal::SubscriberBase {
 public:
  NatsWebSocketSubscriber(internal::Shared& shared, internal::ClientThread& thread,
                          size_t room_index, std::string room)
      : SubscriberBase(shared, thread, room_index, std::move(room)), ws_(thread.ioc) {}

  void Start() override {
    start_ns_ = NowNs();
    beast::get_lowest_layer(ws_).expires_after(kConnectTimeout);
    beast::get_lowest_layer(ws_).async_connect(
        shared_.endpoint, [self = Self()](beast::error_code ec) { self->OnConnect(ec); });
  }

 private:
  std::shared_ptr<NatsWebSocketSubscriber> Self() {
    return std::static_pointer_cast<NatsWebSocketSubscriber>(shared_from_this());
  }

  void ShutSocket() override {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

  void OnConnect(beast::error_code ec) {
    if (ec) return Ended(absl::StrCat("connect: ", ec.message()), 0);
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.async_handshake(shared_.host_header, shared_.options.generic.path,
                        [self = Self()](beast::error_code ec) { self->OnHandshake(ec); });
  }

  void OnHandshake(beast::error_code ec) {
    if (ec) return Ended(absl::StrCat("handshake: ", ec.message()), 0);
    ws_.binary(true);
    Read();
  }

  void Read() {
    ws_.async_read(buffer_,
                   [self = Self()](beast::error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(beast::error_code ec, size_t n) {
    if (ec) {
      const int code = ec == websocket::error::closed ? ws_.reason().code : 0;
      return Ended(absl::StrCat("read: ", ec.message()), code);
    }
    thread_.bytes += n;
    reader_.Append(
        std::string_view(static_cast<const char*>(buffer_.cdata().data()), buffer_.size()));
    buffer_.consume(buffer_.size());
    while (std::optional<NatsReader::Op> op = reader_.Next()) {
      OnOp(*op);
      if (closed_ || closed_by_us_) return;
    }
    if (!reader_.error().empty()) {
      Ended(absl::StrCat("nats protocol: ", reader_.error()), 0);
      return ShutSocket();
    }
    Read();
  }

  void OnOp(const NatsReader::Op& op) {
    using Kind = NatsReader::Op::Kind;
    switch (op.kind) {
      case Kind::kMsg: {
        std::optional<int64_t> seq = NumberField(op.payload, "bench_seq");
        if (!seq || *seq <= 0) {
          ++thread_.unparsed;
          return;
        }
        OnMessage(static_cast<uint64_t>(*seq), NumberField(op.payload, "bench_t"));
        return;
      }
      case Kind::kInfo:
        if (!subscribed_) {
          subscribed_ = true;
          Send(absl::StrCat(kConnect, "SUB ", room_, " 1\r\nPING\r\n"));
        }
        return;
      case Kind::kPing:
        Send("PONG\r\n");
        return;
      case Kind::kPong:
        if (!reported_) Joined(0);
        return;
      case Kind::kOk:
        return;
      case Kind::kErr:
        if (!reported_) {
          Failed(absl::StrCat("nats: ", std::string(op.line.substr(0, 200))));
          Close();
        } else {
          ++thread_.unparsed;
        }
        return;
      case Kind::kOther:
        ++thread_.unparsed;
        return;
    }
  }

  // One write in flight (Beast's rule); the rest waits in order.
  void Send(std::string bytes) {
    outbox_.push_back(std::move(bytes));
    if (outbox_.size() == 1) WriteFront();
  }

  void WriteFront() {
    ws_.async_write(net::buffer(outbox_.front()), [self = Self()](beast::error_code ec, size_t) {
      if (ec) return self->Ended(absl::StrCat("write: ", ec.message()), 0);
      self->outbox_.pop_front();
      if (!self->outbox_.empty()) self->WriteFront();
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  NatsReader reader_;
  std::deque<std::string> outbox_;  // Front: being written.
  bool subscribed_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------
// NatsReader
// ---------------------------------------------------------------------------

void NatsReader::Append(std::string_view bytes) {
  if (pos_ > 0) {
    pending_.erase(0, pos_);
    pos_ = 0;
  }
  pending_.append(bytes.data(), bytes.size());
}

std::optional<NatsReader::Op> NatsReader::Next() {
  if (!error_.empty()) return std::nullopt;
  const std::string_view rest = std::string_view(pending_).substr(pos_);
  const size_t eol = rest.find("\r\n");
  if (eol == std::string_view::npos) {
    if (rest.size() > kMaxLineBytes) error_ = "control line too long";
    return std::nullopt;
  }
  Op op;
  op.line = rest.substr(0, eol);
  size_t consumed = eol + 2;
  const absl::string_view line(op.line.data(), op.line.size());
  auto is = [&](absl::string_view verb) {
    return line.size() >= verb.size() && absl::EqualsIgnoreCase(line.substr(0, verb.size()), verb);
  };
  if (is("MSG ") || is("MSG\t")) {
    // MSG <subject> <sid> [reply-to] <#bytes>
    std::vector<absl::string_view> args =
        absl::StrSplit(line.substr(4), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    size_t size = 0;
    if (args.size() < 3 || args.size() > 4 || !absl::SimpleAtoi(args.back(), &size) ||
        size > kMaxPayloadBytes) {
      error_ = absl::StrCat("bad MSG line: ", line.substr(0, 200));
      return std::nullopt;
    }
    if (rest.size() < consumed + size + 2) return std::nullopt;  // Payload not all here.
    if (rest.substr(consumed + size, 2) != "\r\n") {
      error_ = "MSG payload not followed by CRLF";
      return std::nullopt;
    }
    op.kind = Op::Kind::kMsg;
    op.subject = std::string_view(args[0].data(), args[0].size());
    op.payload = rest.substr(consumed, size);
    consumed += size + 2;
  } else if (is("PING")) {
    op.kind = Op::Kind::kPing;
  } else if (is("PONG")) {
    op.kind = Op::Kind::kPong;
  } else if (is("INFO")) {
    op.kind = Op::Kind::kInfo;
  } else if (is("+OK")) {
    op.kind = Op::Kind::kOk;
  } else if (is("-ERR")) {
    op.kind = Op::Kind::kErr;
  }
  pos_ += consumed;
  return op;
}

// ---------------------------------------------------------------------------
// NatsPublisher
// ---------------------------------------------------------------------------

NatsPublisher::NatsPublisher(std::string host, std::string port)
    : host_(std::move(host)), port_(std::move(port)) {}

NatsPublisher::~NatsPublisher() {
  if (fd_ >= 0) close(fd_);
}

void NatsPublisher::Fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

bool NatsPublisher::Connect() {
  const int64_t deadline = NowNs() + kIoTimeoutNs;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found); rc != 0) {
    Fail(absl::StrCat("resolve ", host_, ":", port_, ": ", gai_strerror(rc)));
    return false;
  }
  fd_ = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || (connect(fd_, found->ai_addr, found->ai_addrlen) != 0 && errno != EINPROGRESS)) {
    freeaddrinfo(found);
    Fail(absl::StrCat("connect ", host_, ":", port_, ": ", std::strerror(errno)));
    return false;
  }
  freeaddrinfo(found);
  pollfd p{fd_, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof(err);
  if (poll(&p, 1, static_cast<int>(kIoTimeoutNs / 1'000'000)) != 1 ||
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    Fail(absl::StrCat("connect ", host_, ":", port_, ": ",
                      err != 0 ? std::strerror(err) : "timed out"));
    return false;
  }
  // We coalesce writes ourselves; Nagle would add delayed-ACK stalls.
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  // INFO comes first; CONNECT answers it.
  while (!info_seen_) {
    if (!Wait(deadline)) {
      Fail("no INFO from the server");
      return false;
    }
    if (!ReadSome()) return false;
  }
  out_.append(kConnect);
  if (!Confirm(deadline)) {
    if (error_.empty()) Fail("no PONG after CONNECT");
    return false;
  }
  if (!server_errors_.empty()) {
    Fail(absl::StrCat("CONNECT refused: ", server_errors_.begin()->first));
    return false;
  }
  return true;
}

bool NatsPublisher::Publish(std::string_view subject, std::string_view payload, bool flush) {
  if (fd_ < 0) return false;
  absl::StrAppend(&out_, "PUB ", absl::string_view(subject.data(), subject.size()), " ",
                  payload.size(), "\r\n", absl::string_view(payload.data(), payload.size()),
                  "\r\n");
  ++published_;
  if (++since_read_ >= 64) {
    since_read_ = 0;
    if (!ReadSome()) return false;
  }
  if (flush || out_.size() - out_pos_ >= kBatchBytes) {
    if (!WriteSome()) return false;
  }
  if (out_.size() - out_pos_ >= kMaxQueuedBytes) {
    const int64_t deadline = NowNs() + kIoTimeoutNs;
    while (out_.size() - out_pos_ >= kBatchBytes) {
      if (!Wait(deadline)) {
        Fail("the server stopped reading (publish timed out)");
        return false;
      }
      if (!ReadSome() || !WriteSome()) return false;
    }
  }
  return true;
}

bool NatsPublisher::Confirm(int64_t deadline_ns) {
  if (fd_ < 0) return false;
  out_.append("PING\r\n");
  pings_.push_back(published_);
  if (!WriteSome()) return false;
  while (!pings_.empty()) {
    if (!Wait(deadline_ns)) return false;
    if (!ReadSome() || !WriteSome()) return false;
  }
  return true;
}

std::map<std::string, int> NatsPublisher::TakeServerErrors() {
  std::map<std::string, int> out;
  out.swap(server_errors_);
  return out;
}

bool NatsPublisher::WriteSome() {
  while (out_pos_ < out_.size()) {
    const ssize_t n =
        send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      Fail(absl::StrCat("write: ", std::strerror(errno)));
      return false;
    }
    out_pos_ += static_cast<size_t>(n);
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ >= kBatchBytes) {
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
  return true;
}

bool NatsPublisher::ReadSome() {
  char chunk[16 * 1024];
  for (;;) {
    const ssize_t n = recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n == 0) {
      Fail(server_errors_.empty() ? std::string("the server closed the connection")
                                  : absl::StrCat("the server closed the connection after ",
                                                 server_errors_.begin()->first));
      return false;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      Fail(absl::StrCat("read: ", std::strerror(errno)));
      return false;
    }
    reader_.Append(std::string_view(chunk, static_cast<size_t>(n)));
  }
  while (std::optional<NatsReader::Op> op = reader_.Next()) {
    switch (op->kind) {
      case NatsReader::Op::Kind::kPing:
        out_.append("PONG\r\n");
        break;
      case NatsReader::Op::Kind::kPong:
        if (!pings_.empty()) {
          confirmed_ = std::max(confirmed_, pings_.front());
          pings_.pop_front();
        }
        break;
      case NatsReader::Op::Kind::kInfo:
        info_seen_ = true;
        break;
      case NatsReader::Op::Kind::kErr:
        ++server_errors_[std::string(op->line.substr(0, 200))];
        break;
      default:  // +OK (verbose is off), anything else: nothing to do.
        break;
    }
  }
  if (!reader_.error().empty()) {
    Fail(absl::StrCat("nats protocol: ", reader_.error()));
    return false;
  }
  return true;
}

bool NatsPublisher::Wait(int64_t deadline_ns) {
  if (fd_ < 0) return false;
  for (;;) {
    const int64_t left = deadline_ns - NowNs();
    if (left <= 0) return false;
    pollfd p{fd_, static_cast<short>(POLLIN | (out_pos_ < out_.size() ? POLLOUT : 0)), 0};
    const int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left / 1'000'000 + 1, 1000)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) {
      Fail(absl::StrCat("poll: ", std::strerror(errno)));
      return false;
    }
  }
}

namespace internal {

std::shared_ptr<SubscriberBase> MakeNatsWebSocketSubscriber(Shared& shared, ClientThread& thread,
                                                            size_t room_index, std::string room) {
  return std::make_shared<NatsWebSocketSubscriber>(shared, thread, room_index, std::move(room));
}

}  // namespace internal
}  // namespace roomcast::bench
