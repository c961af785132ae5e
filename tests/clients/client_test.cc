// roomcast::client against a real in-process CoreServer on a loopback port:
// unary calls and deadlines, the publish stream, and subscriptions that
// reconnect and resume across a server-side disconnect, a dropped TCP
// connection (through a proxy the test can cut), a slow consumer, and a core
// restart (where the epoch changes and the client must say recovered: false).
#include "roomcast/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_server.h"

namespace roomcast::client {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::SizeIs;

// A TCP proxy on 127.0.0.1:0 whose connections the test can cut, to make a
// real "connection dropped" without restarting anything. With upstream_port
// 0 it accepts connections and never answers (a peer that hangs).
class TcpProxy {
 public:
  explicit TcpProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TcpProxy() {
    stop_ = true;
    accept_thread_.join();
    DropAll();
    for (std::thread& t : pumps_) t.join();
    for (int fd : held_) close(fd);
    close(listen_fd_);
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int connections() {
    absl::MutexLock lock(&mu_);
    return accepted_;
  }

  // Cuts every open connection (both sides see the TCP connection close).
  void DropAll() {
    absl::MutexLock lock(&mu_);
    for (int fd : open_) shutdown(fd, SHUT_RDWR);
  }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      absl::MutexLock lock(&mu_);
      ++accepted_;
      if (upstream_port_ == 0) {
        held_.push_back(client);
        continue;
      }
      int upstream = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
      if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(upstream);
        close(client);
        continue;
      }
      open_.push_back(client);
      open_.push_back(upstream);
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  void Pump(int a, int b) {
    char buf[16384];
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    bool open = true;
    while (open && !stop_) {
      if (poll(fds, 2, 20) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          open = false;
          break;
        }
        int to = fds[1 - i].fd;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = send(to, buf + off, n - off, MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          off += w;
        }
      }
    }
    absl::MutexLock lock(&mu_);
    std::erase(open_, a);
    std::erase(open_, b);
    shutdown(a, SHUT_RDWR);
    shutdown(b, SHUT_RDWR);
    close(a);
    close(b);
  }

  const int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  absl::Mutex mu_;
  std::vector<int> open_ ABSL_GUARDED_BY(mu_);
  std::vector<int> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> pumps_;  // Touched by the accept thread, then the destructor.
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
};

// Records a subscription's events. With HoldOnReconnect(), the subscription's
// thread stops inside the kReconnecting callback until Release(): the test
// can then publish while the subscriber is certainly disconnected.
class Recorder {
 public:
  Subscription::Callback callback() {
    return [this](const Event& event) { OnEvent(event); };
  }

  void HoldOnReconnect() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    hold_ = false;
  }
  // Blocks the callback on the next message until Release().
  void HoldOnMessage() {
    absl::MutexLock lock(&mu_);
    hold_message_ = true;
    hold_ = true;
  }

  bool WaitFor(std::function<bool(const std::vector<Event>&)> done,
               absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(events_); };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }
  bool WaitForMessages(size_t n) {
    return WaitFor([n](const std::vector<Event>& events) { return Count(events, kMessage) >= n; });
  }
  bool WaitForType(Event::Type type, size_t n = 1) {
    return WaitFor([=](const std::vector<Event>& events) { return Count(events, type) >= n; });
  }
  bool WaitUntilHeld() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&held_), absl::Seconds(10));
  }

  std::vector<Event> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<Event> Of(Event::Type type) {
    std::vector<Event> out;
    for (Event& e : events()) {
      if (e.type == type) out.push_back(std::move(e));
    }
    return out;
  }
  std::vector<uint64_t> Offsets() {
    std::vector<uint64_t> out;
    for (const Event& e : Of(kMessage)) out.push_back(e.message.position().offset());
    return out;
  }
  std::vector<std::string> Data() {
    std::vector<std::string> out;
    for (const Event& e : Of(kMessage)) out.push_back(e.message.data());
    return out;
  }

  static constexpr Event::Type kMessage = Event::Type::kMessage;

 private:
  static size_t Count(const std::vector<Event>& events, Event::Type type) {
    size_t n = 0;
    for (const Event& e : events) n += e.type == type;
    return n;
  }

  void OnEvent(const Event& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
    bool hold = hold_ && (hold_message_ ? event.type == Event::Type::kMessage
                                        : event.type == Event::Type::kReconnecting);
    if (!hold) return;
    held_ = true;
    auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !hold_; };
    mu_.AwaitWithTimeout(absl::Condition(&released), absl::Seconds(20));
    held_ = false;
    hold_message_ = false;
  }

  absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_message_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
};

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t i = first; i <= last; ++i) out.push_back(i);
  return out;
}

SubscribeOptions OneRoom(const std::string& room, std::optional<v1::Position> since = {}) {
  SubscribeOptions options;
  options.rooms.push_back({room, std::move(since)});
  return options;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCore("127.0.0.1:0"); }
  void TearDown() override {
    if (core_ != nullptr) core_->Shutdown();
  }

  void StartCore(const std::string& listen) {
    core::CoreOptions options = core_options_;
    options.listen = listen;
    core_ = std::make_unique<core::CoreServer>(options);
    absl::StatusOr<std::string> address = core_->Start();
    ASSERT_TRUE(address.ok()) << address.status();
    address_ = *address;
    port_ = std::stoi(address_.substr(address_.rfind(':') + 1));
    admin_ = NewClient();
  }
  void StopCore() {
    core_->Shutdown();
    core_.reset();
  }

  std::unique_ptr<Client> NewClient(std::string target = "") {
    ClientOptions options;
    options.core = target.empty() ? address_ : target;
    options.reconnect_min = absl::Milliseconds(20);
    options.reconnect_max = absl::Milliseconds(200);
    options.call_timeout = absl::Seconds(5);
    return std::make_unique<Client>(options);
  }

  v1::Position MustPublish(const std::string& room, const std::string& data) {
    absl::StatusOr<v1::Position> position = admin_->Publish(room, data);
    EXPECT_TRUE(position.ok()) << position.status();
    return position.value_or(v1::Position());
  }

  // Polls Stats until `done` or 5 s.
  v1::StatsResponse WaitForStats(std::function<bool(const v1::StatsResponse&)> done) {
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    v1::StatsResponse stats;
    do {
      stats = admin_->Stats().value_or(v1::StatsResponse());
      if (done(stats)) break;
      absl::SleepFor(absl::Milliseconds(10));
    } while (absl::Now() < deadline);
    return stats;
  }

  // Every Subscribe stream on the core ends. When one does not, the core
  // is left running: its Shutdown would wait for that stream forever.
  void ExpectStreamsEnd() {
    v1::StatsResponse stats =
        WaitForStats([](const v1::StatsResponse& s) { return s.subscribe_streams() == 0; });
    EXPECT_EQ(stats.subscribe_streams(), 0u)
        << "the core did not finish a cancelled stream (a write failing after "
           "OnCancel: core/queued_writer.h OnWriteDone)";
    if (stats.subscribe_streams() != 0) (void)core_.release();
  }

  core::CoreOptions core_options_ = core::TestOptions();
  std::unique_ptr<core::CoreServer> core_;
  std::string address_;
  int port_ = 0;
  std::unique_ptr<Client> admin_;  // Publishes and inspects on the test's behalf.
};

// --- unary calls -----------------------------------------------------------

TEST_F(ClientTest, PublishHistoryAndListRoomsRoundTrip) {
  v1::Position first = MustPublish("lobby", "hello");
  v1::Position second = MustPublish("lobby", "world");
  EXPECT_EQ(first.offset(), 1u);
  EXPECT_EQ(second.offset(), 2u);
  EXPECT_EQ(first.epoch(), second.epoch());

  v1::HistoryRequest request;
  request.set_room("lobby");
  absl::StatusOr<v1::HistoryResponse> history = admin_->History(request);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_THAT(history->messages(), SizeIs(2));
  EXPECT_EQ(history->messages(0).data(), "hello");
  EXPECT_EQ(history->messages(1).data(), "world");
  EXPECT_EQ(FormatPosition(history->position()), FormatPosition(second));

  auto rooms = admin_->ListRooms("lob");
  ASSERT_TRUE(rooms.ok()) << rooms.status();
  ASSERT_THAT(*rooms, SizeIs(1));
  EXPECT_EQ((*rooms)[0].room(), "lobby");
  EXPECT_EQ((*rooms)[0].position().offset(), 2u);
  EXPECT_EQ(admin_->Stats()->messages_published_total(), 2u);
}

TEST_F(ClientTest, CoreErrorsComeBackWithTheirCode) {
  EXPECT_EQ(admin_->Publish("bad room", "x").status().code(), absl::StatusCode::kInvalidArgument);
  v1::DisconnectRequest neither;
  EXPECT_EQ(admin_->Disconnect(neither).status().code(), absl::StatusCode::kInvalidArgument);
  v1::HistoryRequest past_the_end;
  past_the_end.set_room("lobby");
  *past_the_end.mutable_since() = MustPublish("lobby", "x");
  past_the_end.mutable_since()->set_offset(5);
  EXPECT_EQ(admin_->History(past_the_end).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(ClientTest, UnreachableCoreIsUnavailable) {
  std::string closed = address_;
  StopCore();
  absl::Time start = absl::Now();
  EXPECT_EQ(NewClient(closed)->Stats().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(ClientTest, CallsEndAtTheirDeadline) {
  TcpProxy hangs(/*upstream_port=*/0);
  std::unique_ptr<Client> client = NewClient(hangs.address());
  absl::Time start = absl::Now();
  absl::StatusOr<v1::StatsResponse> stats = client->Stats({.timeout = absl::Milliseconds(300)});
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

// --- publish stream --------------------------------------------------------

TEST_F(ClientTest, PublishStreamAcksEveryMessageInOrder) {
  absl::Mutex mu;
  std::vector<PublishStream::Ack> acks;
  auto stream = admin_->OpenPublishStream([&](const PublishStream::Ack& ack) {
    absl::MutexLock lock(&mu);
    acks.push_back(ack);
  });
  for (int i = 1; i <= 200; ++i) {
    absl::StatusOr<uint64_t> id = stream->Publish(i == 50 ? "bad room" : "feed", absl::StrCat(i));
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(*id, static_cast<uint64_t>(i));
  }
  EXPECT_TRUE(stream->Finish(absl::Seconds(10)).ok());

  absl::MutexLock lock(&mu);
  ASSERT_THAT(acks, SizeIs(200));
  uint64_t offset = 0;
  for (int i = 1; i <= 200; ++i) {
    const PublishStream::Ack& ack = acks[i - 1];
    EXPECT_EQ(ack.id, static_cast<uint64_t>(i));
    if (i == 50) {  // One bad request fails alone; the stream goes on.
      EXPECT_EQ(ack.position.status().code(), absl::StatusCode::kInvalidArgument);
    } else {
      ASSERT_TRUE(ack.position.ok()) << ack.position.status();
      EXPECT_EQ(ack.position->offset(), ++offset);
    }
  }
  EXPECT_EQ(admin_->Stats()->messages_published_total(), 199u);
}

TEST_F(ClientTest, PublishStreamReportsTheCoreShuttingDown) {
  std::unique_ptr<Client> client = NewClient();
  std::atomic<int> acked{0};
  auto stream = client->OpenPublishStream([&](const PublishStream::Ack& ack) { ++acked; });
  ASSERT_TRUE(stream->Publish("feed", "one").ok());
  ASSERT_TRUE(WaitForStats([](const v1::StatsResponse& s) {
                return s.messages_published_total() == 1;
              }).messages_published_total() == 1);
  StopCore();
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (stream->Publish("feed", "more").ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(stream->Finish(absl::Seconds(5)).code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(acked.load(), 1);  // Every Publish that returned an id got an ack.
}

// --- subscriptions ---------------------------------------------------------

TEST_F(ClientTest, SubscribeReplaysFromSinceThenDeliversLive) {
  MustPublish("lobby", "a");
  v1::Position since = MustPublish("lobby", "b");
  since.set_offset(1);
  MustPublish("lobby", "c");

  Recorder recorder;
  auto subscription = admin_->Subscribe(OneRoom("lobby", since), recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  v1::Position last = MustPublish("lobby", "d");
  ASSERT_TRUE(recorder.WaitForMessages(3));

  EXPECT_THAT(recorder.Data(), ElementsAre("b", "c", "d"));
  std::vector<Event> recoveries = recorder.Of(Event::Type::kRecovery);
  ASSERT_THAT(recoveries, SizeIs(1));
  EXPECT_TRUE(recoveries[0].recovery.recovered());
  EXPECT_FALSE(recoveries[0].resumed);
  EXPECT_EQ(recoveries[0].recovery.position().offset(), 3u);
  EXPECT_EQ(FormatPosition(subscription->Positions()["lobby"]), FormatPosition(last));
  // The recovery marker sits between the replay and the live message.
  std::vector<Event> events = recorder.events();
  ASSERT_THAT(events, SizeIs(4));
  EXPECT_EQ(events[2].type, Event::Type::kRecovery);
}

TEST_F(ClientTest, IteratorDeliversTheSameEvents) {
  auto subscription = admin_->Subscribe(OneRoom("lobby"));
  std::optional<Event> first = subscription->Next(absl::Seconds(10));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, Event::Type::kRecovery);
  for (int i = 1; i <= 5; ++i) MustPublish("lobby", absl::StrCat("m", i));

  std::vector<std::string> data;
  for (const Event& event : *subscription) {
    ASSERT_EQ(event.type, Event::Type::kMessage);
    data.push_back(event.message.data());
    if (data.size() == 5) break;
  }
  EXPECT_THAT(data, ElementsAre("m1", "m2", "m3", "m4", "m5"));
  EXPECT_FALSE(subscription->Next(absl::Milliseconds(50)).has_value());  // Nothing else came.
  EXPECT_FALSE(subscription->done());
  subscription->Cancel();
  EXPECT_TRUE(subscription->done());
}

TEST_F(ClientTest, InvalidRoomEndsTheSubscriptionWithoutRetrying) {
  auto subscription = admin_->Subscribe(OneRoom("bad room"));
  std::optional<Event> event = subscription->Next(absl::Seconds(10));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->type, Event::Type::kDone);
  EXPECT_EQ(event->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(subscription->Next(absl::Seconds(1)).has_value());
  EXPECT_TRUE(subscription->done());
}

TEST_F(ClientTest, DisconnectWithoutReconnectIsFinal) {
  Recorder recorder;
  auto subscription = admin_->Subscribe(OneRoom("lobby"), recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  v1::DisconnectRequest request;
  request.set_client_id(subscription->client_id());
  request.set_reason("banned");
  EXPECT_EQ(admin_->Disconnect(request).value_or(0), 1u);

  ASSERT_TRUE(recorder.WaitForType(Event::Type::kDone));
  std::vector<Event> done = recorder.Of(Event::Type::kDone);
  EXPECT_EQ(done[0].status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(done[0].status.message()), ::testing::HasSubstr("banned"));
  EXPECT_THAT(recorder.Of(Event::Type::kReconnecting), SizeIs(0));
}

// Rooms.Disconnect with reconnect = true: the core ends the stream with
// UNAVAILABLE and drops what it had queued for it. The client comes back
// from the last offset it delivered and gets exactly what it missed.
TEST_F(ClientTest, ServerDisconnectWithReconnectResumesExactly) {
  Recorder recorder;
  auto subscription = admin_->Subscribe(OneRoom("lobby"), recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  for (int i = 1; i <= 3; ++i) MustPublish("lobby", absl::StrCat(i));
  ASSERT_TRUE(recorder.WaitForMessages(3));

  recorder.HoldOnReconnect();
  const std::string first_connection = subscription->client_id();
  v1::DisconnectRequest request;
  request.set_client_id(first_connection);
  request.set_reconnect(true);
  EXPECT_EQ(admin_->Disconnect(request).value_or(0), 1u);
  ASSERT_TRUE(recorder.WaitUntilHeld());
  for (int i = 4; i <= 6; ++i) MustPublish("lobby", absl::StrCat(i));  // While it is away.
  recorder.Release();
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery, 2));
  MustPublish("lobby", "7");
  ASSERT_TRUE(recorder.WaitForMessages(7));

  EXPECT_THAT(recorder.Offsets(), ElementsAreArray(Range(1, 7)));
  std::vector<Event> reconnecting = recorder.Of(Event::Type::kReconnecting);
  ASSERT_THAT(reconnecting, SizeIs(1));
  EXPECT_EQ(reconnecting[0].status.code(), absl::StatusCode::kUnavailable);
  std::vector<Event> recoveries = recorder.Of(Event::Type::kRecovery);
  ASSERT_THAT(recoveries, SizeIs(2));
  EXPECT_TRUE(recoveries[1].resumed);
  EXPECT_TRUE(recoveries[1].recovery.recovered());
  EXPECT_EQ(recoveries[1].recovery.position().offset(), 6u);
  EXPECT_NE(subscription->client_id(), first_connection);  // One client_id per connection.
  EXPECT_EQ(WaitForStats([](const v1::StatsResponse& s) {
              return s.subscribe_streams() == 1;
            }).subscribe_streams(),
            1u);
}

// A TCP connection cut under the client (no process restarts): gRPC reports
// UNAVAILABLE, the client reconnects through the proxy and resumes exactly.
TEST_F(ClientTest, DroppedConnectionResumesExactly) {
  TcpProxy proxy(port_);
  std::unique_ptr<Client> client = NewClient(proxy.address());
  Recorder recorder;
  auto subscription = client->Subscribe(OneRoom("lobby"), recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  for (int i = 1; i <= 3; ++i) MustPublish("lobby", absl::StrCat(i));
  ASSERT_TRUE(recorder.WaitForMessages(3));

  recorder.HoldOnReconnect();
  proxy.DropAll();
  ASSERT_TRUE(recorder.WaitUntilHeld());
  for (int i = 4; i <= 6; ++i) MustPublish("lobby", absl::StrCat(i));
  recorder.Release();
  ASSERT_TRUE(recorder.WaitForMessages(6));
  MustPublish("lobby", "7");
  ASSERT_TRUE(recorder.WaitForMessages(7));

  EXPECT_THAT(recorder.Offsets(), ElementsAreArray(Range(1, 7)));
  EXPECT_EQ(recorder.Of(Event::Type::kReconnecting)[0].status.code(),
            absl::StatusCode::kUnavailable);
  std::vector<Event> recoveries = recorder.Of(Event::Type::kRecovery);
  ASSERT_GE(recoveries.size(), 2u);
  EXPECT_TRUE(recoveries.back().resumed);
  EXPECT_TRUE(recoveries.back().recovery.recovered());
  EXPECT_GE(proxy.connections(), 2);
}

// The memory engine loses everything on restart: the room comes back with a
// new epoch, and the client must say so instead of pretending to resume.
TEST_F(ClientTest, CoreRestartReportsNotRecoveredAndContinues) {
  Recorder recorder;
  std::unique_ptr<Client> client = NewClient();
  auto subscription = client->Subscribe(OneRoom("lobby"), recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  v1::Position before;
  for (int i = 1; i <= 3; ++i) before = MustPublish("lobby", absl::StrCat(i));
  ASSERT_TRUE(recorder.WaitForMessages(3));

  StopCore();
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kReconnecting));
  StartCore(address_);  // The same port.
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery, 2));
  v1::Position after = MustPublish("lobby", "after restart");
  ASSERT_TRUE(recorder.WaitForMessages(4));

  std::vector<Event> recoveries = recorder.Of(Event::Type::kRecovery);
  ASSERT_THAT(recoveries, SizeIs(2));
  EXPECT_TRUE(recoveries[1].resumed);
  EXPECT_FALSE(recoveries[1].recovery.recovered());
  EXPECT_NE(recoveries[1].recovery.position().epoch(), before.epoch());
  EXPECT_THAT(recorder.Offsets(), ElementsAre(1, 2, 3, 1));
  EXPECT_EQ(recorder.Of(Event::Type::kMessage).back().message.position().epoch(), after.epoch());
  EXPECT_EQ(recorder.Of(Event::Type::kReconnecting)[0].status.code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(FormatPosition(subscription->Positions()["lobby"]), FormatPosition(after));
}

// A callback that cannot keep up: reading stops, the core's queue overflows
// and it ends the stream (RESOURCE_EXHAUSTED "slow consumer"); the client
// resumes from history and nothing is lost or repeated.
TEST_F(ClientTest, SlowConsumerResumesWithoutLoss) {
  core_options_.subscribe_queue = {.max_events = 16, .max_bytes = 256 * 1024};
  core_options_.engine.default_namespace.history_size = 2000;
  StopCore();
  StartCore("127.0.0.1:0");

  Recorder recorder;
  SubscribeOptions options = OneRoom("lobby");
  options.max_buffered_events = 1;
  auto subscription = admin_->Subscribe(options, recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  recorder.HoldOnMessage();
  const std::string payload(16 * 1024, 'x');
  constexpr int kMessages = 1000;
  for (int i = 1; i <= kMessages; ++i) MustPublish("lobby", payload);
  ASSERT_GE(WaitForStats([](const v1::StatsResponse& s) {
              return s.slow_consumer_disconnects_total() >= 1;
            }).slow_consumer_disconnects_total(),
            1u);
  recorder.Release();
  ASSERT_TRUE(recorder.WaitFor(
      [](const std::vector<Event>& events) {
        size_t n = 0;
        for (const Event& e : events) n += e.type == Event::Type::kMessage;
        return n >= kMessages;
      },
      absl::Seconds(30)));

  EXPECT_THAT(recorder.Offsets(), ElementsAreArray(Range(1, kMessages)));
  std::vector<Event> reconnecting = recorder.Of(Event::Type::kReconnecting);
  ASSERT_GE(reconnecting.size(), 1u);
  EXPECT_EQ(reconnecting[0].status.code(), absl::StatusCode::kResourceExhausted);
  for (const Event& e : recorder.Of(Event::Type::kRecovery)) EXPECT_TRUE(e.recovery.recovered());
}

TEST_F(ClientTest, GivesUpAfterMaxFailedAttemptsWithJitteredBackoff) {
  std::string closed = address_;
  StopCore();
  std::unique_ptr<Client> client = NewClient(closed);  // reconnect_min 20 ms, max 200 ms.
  Recorder recorder;
  SubscribeOptions options = OneRoom("lobby");
  options.max_failed_attempts = 7;
  auto subscription = client->Subscribe(options, recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kDone));

  std::vector<Event> reconnecting = recorder.Of(Event::Type::kReconnecting);
  ASSERT_THAT(reconnecting, SizeIs(6));
  absl::Duration cap = absl::Milliseconds(20);
  // Each delay is uniform in [0, cap]: the six fractions of their caps are
  // not all the same (without jitter they would all be 1). A fixed delay
  // passes this with probability ~0; full jitter fails it with ~1e-10.
  std::vector<double> fractions;
  for (const Event& e : reconnecting) {
    EXPECT_EQ(e.status.code(), absl::StatusCode::kUnavailable);
    EXPECT_GE(e.retry_in, absl::ZeroDuration());
    EXPECT_LE(e.retry_in, cap);
    fractions.push_back(absl::FDivDuration(e.retry_in, cap));
    cap = std::min(cap * 2, absl::Milliseconds(200));
  }
  auto [lowest, highest] = std::minmax_element(fractions.begin(), fractions.end());
  EXPECT_GT(*highest - *lowest, 0.01) << "reconnect delays are not jittered";
  EXPECT_EQ(recorder.Of(Event::Type::kDone)[0].status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(ClientTest, PresenceSubscriberIsAMemberUntilClosed) {
  SubscribeOptions options = OneRoom("lobby");
  options.presence = true;
  options.client.set_user_id("ann");
  Recorder recorder;
  auto subscription = admin_->Subscribe(options, recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kPresence));  // Its own JOIN.

  auto members = admin_->Presence("lobby");
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_THAT(*members, SizeIs(1));
  EXPECT_EQ((*members)[0].client_id(), subscription->client_id());
  EXPECT_EQ((*members)[0].user_id(), "ann");
  auto stats = admin_->PresenceStats("lobby");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->num_clients(), 1u);
  EXPECT_EQ(stats->num_users(), 1u);

  subscription.reset();
  v1::StatsResponse after = WaitForStats([](const v1::StatsResponse& s) {
    return s.presence_entries() == 0 && s.subscribe_streams() == 0;
  });
  EXPECT_EQ(after.presence_entries(), 0u);
  EXPECT_EQ(after.subscribe_streams(), 0u);
  EXPECT_THAT(admin_->Presence("lobby").value_or(std::vector<v1::ClientInfo>{{}}), SizeIs(0));
}

TEST_F(ClientTest, NoCallbackAfterCloseAndTheCoreForgetsTheStreams) {
  Recorder a, b;
  auto first = admin_->Subscribe(OneRoom("lobby"), a.callback());
  auto second = admin_->Subscribe(OneRoom("other"), b.callback());
  ASSERT_TRUE(a.WaitForType(Event::Type::kRecovery));
  ASSERT_TRUE(b.WaitForType(Event::Type::kRecovery));
  EXPECT_EQ(admin_->Stats()->subscribe_streams(), 2u);

  first->Close();
  size_t seen = a.events().size();
  MustPublish("lobby", "after close");
  MustPublish("other", "still open");
  ASSERT_TRUE(b.WaitForMessages(1));
  EXPECT_EQ(a.events().size(), seen);
  second.reset();
  ExpectStreamsEnd();
}

TEST_F(ClientTest, CancelFromTheCallbackStopsDelivery) {
  std::atomic<Subscription*> self{nullptr};
  std::atomic<bool> joined{false};
  std::atomic<int> messages{0};
  auto subscription = admin_->Subscribe(OneRoom("lobby"), [&](const Event& event) {
    if (event.type == Event::Type::kRecovery) joined = true;
    if (event.type != Event::Type::kMessage) return;
    ++messages;
    self.load()->Cancel();
  });
  self = subscription.get();
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!joined && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(joined);
  for (int i = 0; i < 5; ++i) MustPublish("lobby", "x");
  ExpectStreamsEnd();
  EXPECT_TRUE(subscription->done());
  EXPECT_EQ(messages.load(), 1);
}

// The client cancels while the core has a write in flight that the client
// is not reading (flow control holds it): the core must still finish and
// free the stream.
TEST_F(ClientTest, CancelWhileTheCoreIsWritingEndsTheStream) {
  core_options_.subscribe_queue = {.max_events = 100'000, .max_bytes = 256 << 20};
  StopCore();
  StartCore("127.0.0.1:0");
  Recorder recorder;
  SubscribeOptions options = OneRoom("lobby");
  options.max_buffered_events = 1;
  auto subscription = admin_->Subscribe(options, recorder.callback());
  ASSERT_TRUE(recorder.WaitForType(Event::Type::kRecovery));
  recorder.HoldOnMessage();
  const std::string payload(60'000, 'x');
  for (int i = 0; i < 400; ++i) MustPublish("lobby", payload);  // 24 MB: more than TCP holds.
  ASSERT_GT(WaitForStats([](const v1::StatsResponse& s) {
              return s.queued_events() > 0;
            }).queued_events(),
            0u);
  subscription->Cancel();
  recorder.Release();
  ExpectStreamsEnd();
}

TEST(PositionTest, FormatsAndParsesEpochColonOffset) {
  absl::StatusOr<v1::Position> position = ParsePosition("9f3c2a1b7d4e6f08:42");
  ASSERT_TRUE(position.ok());
  EXPECT_EQ(position->epoch(), "9f3c2a1b7d4e6f08");
  EXPECT_EQ(position->offset(), 42u);
  EXPECT_EQ(FormatPosition(*position), "9f3c2a1b7d4e6f08:42");
  EXPECT_EQ(ParsePosition(":0")->epoch(), "");
  EXPECT_FALSE(ParsePosition("42").ok());
  EXPECT_FALSE(ParsePosition("abc:x").ok());
  EXPECT_FALSE(ParsePosition("abc:-1").ok());
}

}  // namespace
}  // namespace roomcast::client
