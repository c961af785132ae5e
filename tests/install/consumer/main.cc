// Publishes one message through the installed roomcast::client and reads it
// back with History. Usage: consumer CORE_ADDRESS. Exits 0 and prints
// "ok offset=N" when the message came back intact.
#include <cstdio>
#include <string>

#include "roomcast/client.h"
#include "roomcast/v1/roomcast.pb.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer CORE_ADDRESS\n");
    return 2;
  }
  roomcast::client::ClientOptions options;
  options.core = argv[1];
  roomcast::client::Client client(options);

  const std::string data = R"({"from":"consumer"})";
  absl::StatusOr<roomcast::v1::Position> position = client.Publish("consumer-room", data);
  if (!position.ok()) {
    std::fprintf(stderr, "publish: %s\n", position.status().ToString().c_str());
    return 1;
  }
  roomcast::v1::HistoryRequest request;
  request.set_room("consumer-room");
  absl::StatusOr<roomcast::v1::HistoryResponse> history = client.History(request);
  if (!history.ok()) {
    std::fprintf(stderr, "history: %s\n", history.status().ToString().c_str());
    return 1;
  }
  if (history->messages_size() != 1 || history->messages(0).data() != data ||
      history->messages(0).position().offset() != position->offset()) {
    std::fprintf(stderr, "history does not hold the published message: %s\n",
                 history->DebugString().c_str());
    return 1;
  }
  std::printf("ok offset=%llu\n", static_cast<unsigned long long>(position->offset()));
  return 0;
}
