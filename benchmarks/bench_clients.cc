// The subscribing side of roomcast-bench: WebSocket and SSE subscribers
// (Beast) and direct gRPC Rooms.Subscribe subscribers. Kept in this one
// translation unit because Beast is expensive to compile.
#include "benchmarks/bench_clients.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cctype>
#include <chrono>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "benchmarks/bench_subscriber.h"
#include "edge/codec.h"
#include "grpcpp/grpcpp.h"
#include "roomcast/v1/roomcast.grpc.pb.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

constexpr char kBinarySubprotocol[] = "roomcast.v1.proto";
constexpr auto kConnectTimeout = std::chrono::seconds(10);

using internal::ClientThread;
using internal::Shared;
using internal::SubscriberBase;

constexpr size_t kStreamsPerChannel = 100;

// Parses the decimal digits at the start of `text`.
std::optional<uint64_t> LeadingNumber(absl::string_view text) {
  size_t n = 0;
  while (n < text.size() && n < 20 && text[n] >= '0' && text[n] <= '9') ++n;
  uint64_t v = 0;
  if (n == 0 || !absl::SimpleAtoi(text.substr(0, n), &v)) return std::nullopt;
  return v;
}

// The number after `key` in `frame`, e.g. key `"offset":"`.
std::optional<uint64_t> NumberAfter(absl::string_view frame, absl::string_view key) {
  size_t at = frame.find(key);
  if (at == absl::string_view::npos) return std::nullopt;
  return LeadingNumber(frame.substr(at + key.size()));
}

// The roomcast (and generic target) frame parsing shared by the WebSocket,
// SSE and gRPC subscribers; the bookkeeping is SubscriberBase's.
class Subscriber : public SubscriberBase {
 public:
  using SubscriberBase::SubscriberBase;

 protected:
  std::string JoinFrameJson() const {
    return absl::StrCat(R"({"id":1,"join":{"room":")", room_, R"("}})");
  }

  // A text frame from a generic target.
  void OnGenericFrame(absl::string_view frame) {
    const GenericTarget& g = shared_.options.generic;
    const std::string_view text(frame.data(), frame.size());
    if (absl::StrContains(frame, g.message_match)) {
      std::optional<int64_t> seq = NumberField(text, "bench_seq");
      if (!seq || *seq <= 0) {
        ++thread_.unparsed;
        return;
      }
      OnMessage(static_cast<uint64_t>(*seq), NumberField(text, "bench_t"));
    } else if (!reported_ && !g.joined_match.empty() && absl::StrContains(frame, g.joined_match)) {
      Joined(0);
    } else {
      ++thread_.unparsed;
    }
  }

  // A canonical-JSON ServerFrame (WebSocket text frame or SSE data).
  void OnJsonFrame(absl::string_view frame) {
    if (absl::StartsWith(frame, R"({"message":)")) {
      std::optional<uint64_t> offset = NumberAfter(frame, R"("offset":")");
      if (!offset) {
        ++thread_.unparsed;
        return;
      }
      // The payload is the message's last field: look for it from the end.
      std::optional<uint64_t> t;
      constexpr absl::string_view kData = R"("data":{"t":)";
      if (size_t at = frame.rfind(kData); at != absl::string_view::npos) {
        t = LeadingNumber(frame.substr(at + kData.size()));
      }
      OnMessage(*offset, t ? std::optional<int64_t>(static_cast<int64_t>(*t)) : std::nullopt);
    } else if (absl::StartsWith(frame, R"({"presence":)")) {
      ++thread_.presence;
    } else if (!reported_ && absl::StrContains(frame, R"("reply":{"join":)")) {
      Joined(NumberAfter(frame, R"("offset":")").value_or(0));
    } else if (absl::StrContains(frame, R"("error":{)")) {
      if (!reported_) {
        Failed(absl::StrCat("join refused: ", frame.substr(0, 200)));
        Close();
      } else {
        ++thread_.unparsed;
      }
    } else if (!absl::StartsWith(frame, R"({"disconnect":)")) {
      ++thread_.unparsed;
    }
  }

  // A serialized ServerFrame (binary subprotocol).
  void OnBinaryFrame(absl::string_view bytes) {
    v1::ServerFrame frame;
    if (!frame.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      ++thread_.unparsed;
      return;
    }
    switch (frame.kind_case()) {
      case v1::ServerFrame::kMessage: {
        std::optional<int64_t> t;
        const auto& fields = frame.message().data().struct_value().fields();
        if (auto it = fields.find("t"); it != fields.end()) {
          t = static_cast<int64_t>(it->second.number_value());
        }
        OnMessage(frame.message().position().offset(), t);
        break;
      }
      case v1::ServerFrame::kPresence:
        ++thread_.presence;
        break;
      case v1::ServerFrame::kReply:
        if (!reported_ && frame.reply().has_join()) {
          Joined(frame.reply().join().position().offset());
        } else {
          ++thread_.unparsed;
        }
        break;
      case v1::ServerFrame::kError:
        if (!reported_) {
          Failed(absl::StrCat("join refused: ", frame.error().message()));
          Close();
        } else {
          ++thread_.unparsed;
        }
        break;
      case v1::ServerFrame::kDisconnect:
        break;
      default:
        ++thread_.unparsed;
    }
  }
};

class WebSocketSubscriber final : public Subscriber {
 public:
  WebSocketSubscriber(Shared& shared, ClientThread& thread, size_t room_index, std::string room,
                      bool binary, bool generic)
      : Subscriber(shared, thread, room_index, std::move(room)),
        binary_(binary),
        generic_(generic),
        ws_(thread.ioc) {}

  void Start() override {
    start_ns_ = NowNs();
    beast::get_lowest_layer(ws_).expires_after(kConnectTimeout);
    beast::get_lowest_layer(ws_).async_connect(
        shared_.endpoint, [self = Self()](beast::error_code ec) { self->OnConnect(ec); });
  }

 private:
  std::shared_ptr<WebSocketSubscriber> Self() {
    return std::static_pointer_cast<WebSocketSubscriber>(shared_from_this());
  }

  void ShutSocket() override {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

  void OnConnect(beast::error_code ec) {
    if (ec) return Ended(absl::StrCat("connect: ", ec.message()), 0);
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    if (binary_) {
      ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
        req.set(http::field::sec_websocket_protocol, kBinarySubprotocol);
      }));
    }
    ws_.async_handshake(response_, shared_.host_header,
                        generic_ ? shared_.options.generic.path : std::string("/ws"),
                        [self = Self()](beast::error_code ec) { self->OnHandshake(ec); });
  }

  void OnHandshake(beast::error_code ec) {
    if (ec) {
      return Ended(
          absl::StrCat("handshake: ", ec.message(), " (HTTP ", response_.result_int(), ")"), 0);
    }
    if (binary_) {
      if (std::string(response_[http::field::sec_websocket_protocol]) != kBinarySubprotocol) {
        Ended("handshake: the edge did not accept subprotocol roomcast.v1.proto", 0);
        return ShutSocket();
      }
      v1::ClientFrame join;
      join.set_id(1);
      join.mutable_join()->set_room(room_);
      join_frame_ = join.SerializeAsString();
    } else if (generic_) {
      join_frame_ =
          absl::StrReplaceAll(shared_.options.generic.subscribe_frame, {{"{room}", room_}});
    } else {
      join_frame_ = JoinFrameJson();
    }
    ws_.binary(binary_);
    ws_.async_write(net::buffer(join_frame_), [self = Self()](beast::error_code ec, size_t) {
      if (ec) return self->Ended(absl::StrCat("write join: ", ec.message()), 0);
      if (self->generic_ && self->shared_.options.generic.joined_match.empty() &&
          !self->reported_) {
        self->Joined(0);
      }
    });
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
    absl::string_view message(static_cast<const char*>(buffer_.cdata().data()), buffer_.size());
    // One message carries one or more frames (edge/codec.h, "Batches"); a
    // generic target's text messages are split at newlines the same way.
    const bool text = generic_ || ws_.got_text();
    absl::StatusOr<std::vector<absl::string_view>> frames =
        edge::SplitBatch(message, text ? edge::Encoding::kJson : edge::Encoding::kProtobuf);
    if (!frames.ok()) {
      ++thread_.unparsed;
      frames.emplace();
    }
    for (absl::string_view frame : *frames) {
      if (generic_) {
        OnGenericFrame(frame);
      } else if (text) {
        OnJsonFrame(frame);
      } else {
        OnBinaryFrame(frame);
      }
    }
    buffer_.consume(buffer_.size());
    if (!closed_) Read();
  }

  const bool binary_;
  const bool generic_;
  websocket::stream<beast::tcp_stream> ws_;
  websocket::response_type response_;
  beast::flat_buffer buffer_;
  std::string join_frame_;
};

// GET /sse?room=R, then the body is an event stream until the connection
// ends (the edge writes it raw: no length, no chunking).
class SseSubscriber final : public Subscriber {
 public:
  SseSubscriber(Shared& shared, ClientThread& thread, size_t room_index, std::string room)
      : Subscriber(shared, thread, room_index, std::move(room)), stream_(thread.ioc) {}

  void Start() override {
    start_ns_ = NowNs();
    stream_.expires_after(kConnectTimeout);
    stream_.async_connect(shared_.endpoint,
                          [self = Self()](beast::error_code ec) { self->OnConnect(ec); });
  }

 private:
  std::shared_ptr<SseSubscriber> Self() {
    return std::static_pointer_cast<SseSubscriber>(shared_from_this());
  }

  void ShutSocket() override {
    beast::error_code ec;
    stream_.socket().close(ec);
  }

  void OnConnect(beast::error_code ec) {
    if (ec) return Ended(absl::StrCat("connect: ", ec.message()), 0);
    stream_.expires_never();
    request_ = absl::StrCat("GET /sse?room=", room_, " HTTP/1.1\r\nHost: ", shared_.host_header,
                            "\r\nAccept: text/event-stream\r\n\r\n");
    net::async_write(stream_, net::buffer(request_), [self = Self()](beast::error_code ec, size_t) {
      if (ec) self->Ended(absl::StrCat("write request: ", ec.message()), 0);
    });
    Read();
  }

  void Read() {
    stream_.async_read_some(net::buffer(chunk_), [self = Self()](beast::error_code ec, size_t n) {
      self->OnRead(ec, n);
    });
  }

  void OnRead(beast::error_code ec, size_t n) {
    if (ec) return Ended(absl::StrCat("read: ", ec.message()), 0);
    thread_.bytes += n;
    pending_.append(chunk_.data(), n);
    size_t pos = 0;
    if (!header_done_) {
      size_t end = pending_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (pending_.size() > 16 * 1024) return Fail("response header too large");
        return Read();
      }
      if (!absl::StartsWith(pending_, "HTTP/1.1 200")) {
        return Fail(absl::StrCat("HTTP ", pending_.substr(0, pending_.find("\r\n"))));
      }
      header_done_ = true;
      pos = end + 4;
    }
    for (;;) {
      size_t end = pending_.find("\n\n", pos);
      if (end == std::string::npos) break;
      absl::string_view block(pending_.data() + pos, end - pos);
      pos = end + 2;
      // One JSON frame per event: a single data: line (the edge never
      // breaks its compact JSON over lines).
      while (!block.empty()) {
        size_t eol = block.find('\n');
        absl::string_view line = block.substr(0, eol);
        if (absl::StartsWith(line, "data: ")) OnJsonFrame(line.substr(6));
        if (eol == absl::string_view::npos) break;
        block.remove_prefix(eol + 1);
      }
      if (closed_) return;
    }
    pending_.erase(0, pos);
    Read();
  }

  void Fail(const std::string& why) {
    Ended(why, 0);
    ShutSocket();
  }

  beast::tcp_stream stream_;
  std::string request_;
  std::array<char, 4096> chunk_;
  std::string pending_;
  bool header_done_ = false;
};

// Rooms.Subscribe to one room, straight to the core (no edge). gRPC runs the
// reactor's callbacks on its own threads: each extracts what it needs from the
// response and posts it onto the subscriber's client thread, where all the
// counting happens, then starts the next read (one read in flight).
class GrpcSubscriber final : public Subscriber,
                             public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  GrpcSubscriber(Shared& shared, ClientThread& thread, size_t room_index, std::string room,
                 std::shared_ptr<grpc::Channel> channel)
      : Subscriber(shared, thread, room_index, std::move(room)),
        stub_(v1::Rooms::NewStub(channel)) {}

  void Start() override {
    start_ns_ = NowNs();
    request_.add_rooms()->set_room(room_);
    self_ = std::static_pointer_cast<GrpcSubscriber>(shared_from_this());
    shared_.grpc_calls.fetch_add(1);
    stub_->async()->Subscribe(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

 private:
  void ShutSocket() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status.
    switch (response_.event_case()) {
      case v1::SubscribeResponse::kMessage: {
        const uint64_t offset = response_.message().position().offset();
        absl::string_view data = response_.message().data();
        std::optional<int64_t> t;
        if (absl::ConsumePrefix(&data, R"({"t":)")) {
          if (auto v = LeadingNumber(data)) t = static_cast<int64_t>(*v);
        }
        net::post(thread_.ioc, [self = self_, offset, t] { self->OnMessage(offset, t); });
        break;
      }
      case v1::SubscribeResponse::kRecovery: {
        const uint64_t offset = response_.recovery().position().offset();
        net::post(thread_.ioc, [self = self_, offset] {
          if (!self->reported_) self->Joined(offset);
        });
        break;
      }
      case v1::SubscribeResponse::kPresence:
        net::post(thread_.ioc, [self = self_] { ++self->thread_.presence; });
        break;
      default:
        net::post(thread_.ioc, [self = self_] { ++self->thread_.unparsed; });
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    // The posted work holds the last reference: this object outlives OnDone.
    net::post(thread_.ioc, [self = std::move(self_), status] {
      self->Ended(absl::StrCat("Subscribe: ", status.error_code(), " ", status.error_message()),
                  status.error_code());
    });
    shared_.grpc_calls.fetch_sub(1);
  }

  std::unique_ptr<v1::Rooms::Stub> stub_;
  grpc::ClientContext context_;
  v1::SubscribeRequest request_;
  v1::SubscribeResponse response_;
  std::shared_ptr<GrpcSubscriber> self_;  // Set from Start until OnDone.
};

}  // namespace

class ClientPool::Impl {
 public:
  explicit Impl(ClientOptions options) {
    shared_.options = std::move(options);
    const ClientOptions& o = shared_.options;
    net::io_context resolver_context;
    tcp::resolver resolver(resolver_context);
    auto results = resolver.resolve(o.host, o.port);  // Throws at start-up only.
    shared_.endpoint = *results.begin();
    shared_.host_header = absl::StrCat(o.host, ":", o.port);
    const int n = std::max(1, o.threads);
    for (int i = 0; i < n; ++i) {
      threads_.push_back(std::make_unique<ClientThread>());
      ClientThread* t = threads_.back().get();
      t->thread = std::thread([t] { t->ioc.run(); });
    }
  }

  ~Impl() {
    CloseAll();
    for (int i = 0; i < 10'000 && shared_.grpc_calls.load() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    RunOnAll([](ClientThread& t) { t.subscribers.clear(); });
    for (auto& t : threads_) {
      t->guard.reset();
      t->ioc.stop();
      t->thread.join();
    }
  }

  // Runs `fn` on every client thread and waits for all of them.
  template <class Fn>
  void RunOnAll(Fn fn) {
    std::latch done(static_cast<ptrdiff_t>(threads_.size()));
    for (auto& t : threads_) {
      net::post(t->ioc, [&fn, &done, t = t.get()] {
        fn(*t);
        done.count_down();
      });
    }
    done.wait();
  }

  ConnectReport Connect(int count, const std::vector<std::string>& rooms, absl::Duration timeout) {
    ConnectReport report;
    report.requested = count;
    shared_.joined = 0;
    shared_.failed = 0;
    const int64_t start = NowNs();
    const int64_t deadline = start + absl::ToInt64Nanoseconds(timeout);
    auto done = [&] { return shared_.joined.load() + shared_.failed.load() >= count; };
    int started = 0;
    for (; started < count && NowNs() < deadline; ++started) {
      while (shared_.connecting.load() >= shared_.options.max_connecting && NowNs() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      StartOne(rooms);
    }
    while (!done() && NowNs() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!done()) {
      RunOnAll([](ClientThread& t) {
        for (auto& s : t.subscribers) s->FailIfNotJoined();
      });
    }
    report.seconds = static_cast<double>(NowNs() - start) / 1e9;
    report.joined = shared_.joined.load();
    report.failed = shared_.failed.load() + (count - started);
    if (count > started) report.errors["not started: connect phase timed out"] = count - started;
    shared_.joined = 0;  // Every one has reported: later joins belong to Replace.
    shared_.failed = 0;
    CollectConnectStats(report);
    return report;
  }

  void Replace(int count, const std::vector<std::string>& rooms) {
    // Close `count` open subscribers, spread over the threads, oldest first.
    const int n = static_cast<int>(threads_.size());
    for (int i = 0; i < n; ++i) {
      const int share = count / n + (i < count % n ? 1 : 0);
      if (share == 0) continue;
      ClientThread* t = threads_[i].get();
      net::post(t->ioc, [t, share] {
        int closed = 0;
        for (size_t seen = 0; seen < t->subscribers.size() && closed < share; ++seen) {
          SubscriberBase& s = *t->subscribers[t->churn_cursor];
          t->churn_cursor = (t->churn_cursor + 1) % t->subscribers.size();
          if (!s.open()) continue;
          s.Close();
          ++closed;
        }
      });
    }
    replace_requested_ += count;
    for (int i = 0; i < count; ++i) StartOne(rooms);
  }

  ConnectReport TakeReplaceReport(absl::Duration timeout) {
    const int64_t deadline = NowNs() + absl::ToInt64Nanoseconds(timeout);
    while (shared_.connecting.load() > 0 && NowNs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (shared_.connecting.load() > 0) {
      RunOnAll([](ClientThread& t) {
        for (auto& s : t.subscribers) s->FailIfNotJoined();
      });
    }
    ConnectReport report;
    report.requested = replace_requested_;
    report.joined = shared_.joined.load();
    report.failed = shared_.failed.load();
    replace_requested_ = 0;
    shared_.joined = 0;
    shared_.failed = 0;
    CollectConnectStats(report);
    return report;
  }

  // Moves the threads' connect histograms and errors into `report`.
  void CollectConnectStats(ConnectReport& report) {
    std::mutex mu;
    RunOnAll([&](ClientThread& t) {
      std::lock_guard<std::mutex> lock(mu);
      report.latency.Merge(t.connect_latency);
      report.presence_frames += t.presence;
      t.presence = 0;
      for (const auto& [e, n] : t.connect_errors) report.errors[e] += n;
      t.connect_latency.Reset();
      t.connect_errors.clear();
    });
  }

  // Subscriber `index`'s channel: its own TCP connection per
  // kStreamsPerChannel streams, as separate backends would have.
  std::shared_ptr<grpc::Channel> GrpcChannel(size_t index) {
    const size_t n = index / kStreamsPerChannel;
    while (shared_.channels.size() <= n) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("roomcast.bench.channel", static_cast<int>(shared_.channels.size()));
      args.SetMaxReceiveMessageSize(-1);
      shared_.channels.push_back(grpc::CreateCustomChannel(
          shared_.options.core, grpc::InsecureChannelCredentials(), args));
    }
    return shared_.channels[n];
  }

  // Creates the next subscriber on its thread and starts it.
  void StartOne(const std::vector<std::string>& rooms) {
    const size_t index = next_index_++;
    ClientThread* t = threads_[index % threads_.size()].get();
    const size_t room_index = index % rooms.size();
    std::shared_ptr<SubscriberBase> s;
    switch (shared_.options.transport) {
      case Transport::kWebSocketJson:
      case Transport::kWebSocketBinary:
      case Transport::kGenericWs:
        s = std::make_shared<WebSocketSubscriber>(
            shared_, *t, room_index, rooms[room_index],
            shared_.options.transport == Transport::kWebSocketBinary,
            shared_.options.transport == Transport::kGenericWs);
        break;
      case Transport::kSse:
        s = std::make_shared<SseSubscriber>(shared_, *t, room_index, rooms[room_index]);
        break;
      case Transport::kGrpc:
        s = std::make_shared<GrpcSubscriber>(shared_, *t, room_index, rooms[room_index],
                                             GrpcChannel(index));
        break;
      case Transport::kNatsWebSocket:
        s = internal::MakeNatsWebSocketSubscriber(shared_, *t, room_index, rooms[room_index]);
        break;
    }
    shared_.connecting.fetch_add(1);
    net::post(t->ioc, [t, s = std::move(s)] {
      t->subscribers.push_back(s);
      s->Start();
    });
  }

  void BeginStep(const std::vector<uint64_t>& base, int64_t measure_from_ns) {
    const int64_t now = NowNs();
    RunOnAll([&](ClientThread& t) {
      t.step_begin_ns = now;
      t.measure_from_ns = measure_from_ns;
      t.latency.Reset();
      t.duplicated = t.out_of_order = t.stale = t.unparsed = t.presence = t.bytes = 0;
      for (auto& s : t.subscribers) {
        s->in_step = s->open();
        if (s->room_index() < base.size()) s->tally().Rebase(base[s->room_index()]);
      }
    });
  }

  int CountBehind(const std::vector<uint64_t>& last) {
    std::atomic<int> behind{0};
    RunOnAll([&](ClientThread& t) {
      int n = 0;
      for (auto& s : t.subscribers) {
        if (!s->open() || s->room_index() >= last.size()) continue;
        uint64_t target = last[s->room_index()];
        // One that joined after `target` was published is owed nothing.
        if (target > s->join_offset() && s->tally().max_offset() < target) ++n;
      }
      behind.fetch_add(n);
    });
    return behind.load();
  }

  DeliveryTally EndStep(const std::vector<uint64_t>& first, const std::vector<uint64_t>& last) {
    DeliveryTally total;
    std::mutex mu;
    RunOnAll([&](ClientThread& t) {
      DeliveryTally d;
      for (auto& s : t.subscribers) {
        const bool joined_during = !s->in_step && s->joined() && s->joined_ns() >= t.step_begin_ns;
        if (!s->in_step && !joined_during) continue;
        if (s->closed_by_us_ns() >= t.step_begin_ns) {
          // Closed by the harness (churn): what it would have missed is not loss.
          ++d.churned;
          continue;
        }
        if (joined_during) {
          ++d.joined_during_step;
        } else {
          ++d.subscribers;
        }
        const size_t r = s->room_index();
        // A subscriber that joined at offset L is owed everything after L.
        const uint64_t from = r < first.size() ? std::max(first[r], s->join_offset() + 1) : 0;
        if (r < first.size() && r < last.size() && last[r] >= from && last[r] > 0) {
          const uint64_t expected = last[r] - from + 1;
          const uint64_t received = s->tally().CountInRange(from, last[r]);
          d.expected += expected;
          d.received += received;
          if (received < expected) {
            d.lost += expected - received;
            ++d.subscribers_with_loss;
          }
        }
        if (s->closed()) {
          ++d.disconnected;
          ++d.close_codes[s->close_code()];
        }
      }
      d.duplicated = t.duplicated;
      d.out_of_order = t.out_of_order;
      d.stale = t.stale;
      d.unparsed_frames = t.unparsed;
      d.presence_frames = t.presence;
      d.bytes_received = t.bytes;
      std::lock_guard<std::mutex> lock(mu);
      total.subscribers += d.subscribers;
      total.churned += d.churned;
      total.joined_during_step += d.joined_during_step;
      total.expected += d.expected;
      total.received += d.received;
      total.lost += d.lost;
      total.duplicated += d.duplicated;
      total.out_of_order += d.out_of_order;
      total.stale += d.stale;
      total.unparsed_frames += d.unparsed_frames;
      total.presence_frames += d.presence_frames;
      total.subscribers_with_loss += d.subscribers_with_loss;
      total.disconnected += d.disconnected;
      for (const auto& [code, n] : d.close_codes) total.close_codes[code] += n;
      total.bytes_received += d.bytes_received;
      total.latency.Merge(t.latency);
    });
    return total;
  }

  void CloseAll() {
    RunOnAll([](ClientThread& t) {
      for (auto& s : t.subscribers) s->Close();
    });
  }

  int open() const { return shared_.open.load(); }

 private:
  Shared shared_;
  std::vector<std::unique_ptr<ClientThread>> threads_;
  size_t next_index_ = 0;
  int replace_requested_ = 0;
};

std::optional<int64_t> NumberField(std::string_view text, std::string_view key) {
  const std::string quoted = absl::StrCat("\"", absl::string_view(key.data(), key.size()), "\":");
  size_t at = text.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(at + quoted.size());
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '"')) rest.remove_prefix(1);
  size_t n = 0;
  while (n < rest.size() && n < 32 &&
         (std::isdigit(static_cast<unsigned char>(rest[n])) || rest[n] == '.' || rest[n] == 'e' ||
          rest[n] == 'E' || rest[n] == '+' || rest[n] == '-')) {
    ++n;
  }
  double v = 0;  // Servers may print big integers as 1.23e+11.
  if (n == 0 || !absl::SimpleAtod(absl::string_view(rest.data(), n), &v)) return std::nullopt;
  return static_cast<int64_t>(v);
}

struct HttpPoster::Impl {
  std::string host, port, path;
  net::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

HttpPoster::HttpPoster(std::string host, std::string port, std::string path)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = std::move(port);
  impl_->path = std::move(path);
}
HttpPoster::~HttpPoster() = default;

// Synchronous in effect, asynchronous inside: Beast's stream timeouts apply
// only to asynchronous operations, and a publisher must not hang on a server
// that stops answering.
int HttpPoster::Post(const std::string& body, std::string* error) {
  Impl& i = *impl_;
  http::request<http::string_body> req(http::verb::post, i.path, 11);
  req.set(http::field::host, absl::StrCat(i.host, ":", i.port));
  req.set(http::field::content_type, "application/json");
  req.keep_alive(true);
  req.body() = body;
  req.prepare_payload();
  for (int attempt = 0; attempt < 2; ++attempt) {
    beast::error_code ec;
    if (!i.stream) {
      tcp::resolver resolver(i.ioc);
      auto results = resolver.resolve(i.host, i.port, ec);
      if (ec) {
        *error = absl::StrCat("resolve: ", ec.message());
        return 0;
      }
      i.stream.emplace(i.ioc);
      i.stream->expires_after(kConnectTimeout);
      i.stream->async_connect(results, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
      i.ioc.restart();
      i.ioc.run();
      if (ec) {
        i.stream.reset();
        *error = absl::StrCat("connect: ", ec.message());
        continue;
      }
      i.stream->socket().set_option(tcp::no_delay(true), ec);
      i.buffer.clear();
    }
    http::response<http::string_body> res;
    i.stream->expires_after(std::chrono::seconds(10));
    http::async_write(*i.stream, req, [&](beast::error_code e, size_t) {
      if (e) {
        ec = e;
        return;
      }
      http::async_read(*i.stream, i.buffer, res, [&](beast::error_code e, size_t) { ec = e; });
    });
    i.ioc.restart();
    i.ioc.run();
    if (ec) {
      i.stream.reset();
      *error = absl::StrCat("request: ", ec.message());
      continue;
    }
    if (!res.keep_alive()) i.stream.reset();
    if (res.result_int() / 100 != 2) {
      *error = absl::StrCat("HTTP ", res.result_int(), ": ", res.body().substr(0, 200));
    }
    return static_cast<int>(res.result_int());
  }
  return 0;
}

ClientPool::ClientPool(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
ClientPool::~ClientPool() = default;

ConnectReport ClientPool::Connect(int count, const std::vector<std::string>& rooms,
                                  absl::Duration timeout) {
  return impl_->Connect(count, rooms, timeout);
}
void ClientPool::BeginStep(const std::vector<uint64_t>& base, int64_t measure_from_ns) {
  impl_->BeginStep(base, measure_from_ns);
}
int ClientPool::CountBehind(const std::vector<uint64_t>& last) { return impl_->CountBehind(last); }
DeliveryTally ClientPool::EndStep(const std::vector<uint64_t>& first,
                                  const std::vector<uint64_t>& last) {
  return impl_->EndStep(first, last);
}
int ClientPool::open() const { return impl_->open(); }
void ClientPool::Replace(int count, const std::vector<std::string>& rooms) {
  impl_->Replace(count, rooms);
}
ConnectReport ClientPool::TakeReplaceReport(absl::Duration timeout) {
  return impl_->TakeReplaceReport(timeout);
}
void ClientPool::CloseAll() { impl_->CloseAll(); }

}  // namespace roomcast::bench
