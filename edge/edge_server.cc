// EdgeServer: the listener, the shards (one io_context and thread each), the
// hub and the core link; sessions live in edge/ws_session.cc,
// sse_session.cc and http_session.cc.
#include "edge/edge_server.h"

#include <algorithm>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "edge/core_link.h"
#include "edge/hub.h"
#include "edge/session_context.h"
#include "edge/sessions.h"
#include "spdlog/spdlog.h"

namespace roomcast::edge {

namespace net = boost::asio;
using tcp = net::ip::tcp;

class EdgeServer::Impl {
 public:
  explicit Impl(EdgeOptions options)
      : options_(std::move(options)),
        contexts_(MakeContexts(options_.threads)),
        hub_(Pointers(contexts_)),
        link_(options_,
              CoreLink::Handler{
                  .on_events = [this](const v1::EdgeEvents& e) { hub_.OnEvents(e); },
                  .on_disconnect = [this](const v1::DisconnectClient& d) { hub_.OnDisconnect(d); },
                  .on_state =
                      [this](bool up) {
                        if (!up) hub_.CloseAll(v1::RECONNECT, "the core link went down; reconnect");
                      }}),
        ctx_{options_, hub_, link_, {}},
        acceptor_(std::in_place, *contexts_[0]) {
    if (options_.write_delay > absl::ZeroDuration()) {
      for (auto& context : contexts_) {
        ctx_.delayed_writes.push_back(
            std::make_unique<DelayedWrites>(*context, options_.write_delay));
      }
    }
  }

  ~Impl() {
    Shutdown();
    // Sessions still holding handlers (a peer that never finished its close)
    // are destroyed with their io_context; they use hub_ and ctx_, so the
    // contexts go first (the acceptor, bound to one of them, before that).
    acceptor_.reset();
    ctx_.delayed_writes.clear();
    guards_.clear();
    contexts_.clear();
  }

  absl::StatusOr<std::string> Start() {
    auto colon = options_.listen.rfind(':');
    uint32_t port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("--listen: not host:port: ", options_.listen));
    }
    boost::system::error_code ec;
    auto address = net::ip::make_address(options_.listen.substr(0, colon), ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat("--listen: bad address: ", ec.message()));
    }
    tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen, ": ", ec.message()));
    }
    tcp::endpoint bound = acceptor_->local_endpoint();
    link_.Start();
    DoAccept();
    for (auto& context : contexts_) {
      guards_.push_back(net::make_work_guard(*context));
      threads_.emplace_back([c = context.get()] { c->run(); });
    }
    return absl::StrCat(bound.address().to_string(), ":", bound.port());
  }

  void Shutdown() {
    if (stopped_ || threads_.empty()) return;
    stopped_ = true;
    ctx_.shutting_down = true;
    spdlog::info("edge shutting down connections={}", hub_.counters().connections());
    net::post(acceptor_->get_executor(), [this] {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    });
    hub_.CloseAll(v1::GOING_AWAY, "server shutting down");
    absl::Time deadline = absl::Now() + options_.shutdown_grace;
    while (hub_.counters().connections() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (int64_t left = hub_.counters().connections(); left > 0) {
      spdlog::warn("edge shutdown grace over, closing anyway connections={}", left);
    }
    link_.Stop();
    for (auto& context : contexts_) context->stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    guards_.clear();
  }

 private:
  static std::vector<std::unique_ptr<net::io_context>> MakeContexts(int n) {
    std::vector<std::unique_ptr<net::io_context>> out;
    for (int i = 0; i < std::max(1, n); ++i) out.push_back(std::make_unique<net::io_context>(1));
    return out;
  }
  static std::vector<net::io_context*> Pointers(
      const std::vector<std::unique_ptr<net::io_context>>& v) {
    std::vector<net::io_context*> out;
    for (const auto& c : v) out.push_back(c.get());
    return out;
  }

  void DoAccept() {
    size_t shard = hub_.PickShard();
    acceptor_->async_accept(*contexts_[shard],
                            [this, shard](boost::system::error_code ec, tcp::socket socket) {
                              if (ec == net::error::operation_aborted || !acceptor_->is_open())
                                return;
                              if (ec) {
                                // Out of descriptors, typically: the next accept may succeed.
                                spdlog::warn("accept failed error=\"{}\"", ec.message());
                              } else {
                                socket.set_option(tcp::no_delay(true), ec);
                                StartHttpSession(ctx_, std::move(socket), shard);
                              }
                              DoAccept();
                            });
  }

  const EdgeOptions options_;
  std::vector<std::unique_ptr<net::io_context>> contexts_;
  Hub hub_;
  CoreLink link_;
  EdgeContext ctx_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

EdgeServer::EdgeServer(EdgeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EdgeServer::~EdgeServer() = default;
absl::StatusOr<std::string> EdgeServer::Start() { return impl_->Start(); }
void EdgeServer::Shutdown() { impl_->Shutdown(); }

}  // namespace roomcast::edge
