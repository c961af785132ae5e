// A CoreServer on a loopback port 0 for service tests, with stubs and the
// small helpers every service test needs.
#ifndef ROOMCAST_TESTS_CORE_TEST_SERVER_H_
#define ROOMCAST_TESTS_CORE_TEST_SERVER_H_

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::core {

inline CoreOptions TestOptions() {
  CoreOptions options;
  options.listen = "127.0.0.1:0";
  options.shutdown_grace = absl::Seconds(2);
  return options;
}

class TestServer {
 public:
  explicit TestServer(CoreOptions options = TestOptions()) : server_(std::move(options)) {
    absl::StatusOr<std::string> address = server_.Start();
    EXPECT_TRUE(address.ok()) << address.status();
    address_ = address.value_or("");
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    rooms_ = v1::Rooms::NewStub(channel_);
    edge_link_ = v1::EdgeLink::NewStub(channel_);
  }

  CoreServer& server() { return server_; }
  const std::string& address() const { return address_; }
  v1::Rooms::Stub& rooms() { return *rooms_; }
  v1::EdgeLink::Stub& edge_link() { return *edge_link_; }

  v1::StatsResponse Stats() {
    grpc::ClientContext ctx;
    v1::StatsResponse stats;
    EXPECT_TRUE(rooms_->Stats(&ctx, v1::StatsRequest(), &stats).ok());
    return stats;
  }

  // Polls Stats until `done(stats)` or a 5 s deadline; returns the last stats.
  template <typename Pred>
  v1::StatsResponse WaitForStats(Pred done) {
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    v1::StatsResponse stats = Stats();
    while (!done(stats) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
      stats = Stats();
    }
    return stats;
  }

  grpc::Status Publish(const std::string& room, const std::string& data,
                       v1::Position* position = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::PublishRequest request;
    request.set_room(room);
    request.set_data(data);
    v1::PublishResponse response;
    grpc::Status status = rooms_->Publish(&ctx, request, &response);
    if (position != nullptr) *position = response.position();
    return status;
  }

 private:
  CoreServer server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Rooms::Stub> rooms_;
  std::unique_ptr<v1::EdgeLink::Stub> edge_link_;
};

inline v1::Position MakePosition(const std::string& epoch, uint64_t offset) {
  v1::Position p;
  p.set_epoch(epoch);
  p.set_offset(offset);
  return p;
}

}  // namespace roomcast::core

#endif  // ROOMCAST_TESTS_CORE_TEST_SERVER_H_
