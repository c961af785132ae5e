// metrics_publisher: an example backend built on roomcast::client.
//
// Every --interval it publishes this host's load average as a JSON message
// to --room over one PublishStream, counting acks. It also follows
// --control_room: the text "pause" stops publishing, "resume" starts it
// again. The control state is rebuilt from History when the subscription
// starts and whenever the client reports recovered = false (commands were
// missed, e.g. the core restarted), which is how a backend should treat that
// flag. SIGINT/SIGTERM shut it down cleanly: the stream is finished (every
// message acked) and the subscription closed.
//
//   roomcast-core --listen=127.0.0.1:50051 &
//   roomcast_metrics_publisher --room=metrics --control_room=metrics-control &
//   roomcast tail metrics
//   roomcast publish metrics-control pause
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "roomcast/client.h"

ABSL_FLAG(std::string, core, "127.0.0.1:50051", "the core's gRPC address");
ABSL_FLAG(std::string, room, "metrics", "room the metrics are published to");
ABSL_FLAG(std::string, control_room, "metrics-control", "room with pause/resume commands");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(1), "time between two samples");

namespace {

using roomcast::client::Client;
using roomcast::client::Event;

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = 0, five = 0, fifteen = 0;
  in >> one >> five >> fifteen;
  return absl::StrFormat("[%.2f,%.2f,%.2f]", one, five, fifteen);
}

// The latest command in the control room's history decides.
bool PausedFromHistory(Client& client, const std::string& room) {
  roomcast::v1::HistoryRequest request;
  request.set_room(room);
  request.set_limit(1);
  request.set_reverse(true);
  auto history = client.History(request);
  if (!history.ok()) {
    std::fprintf(stderr, "history of %s: %s\n", room.c_str(), history.status().ToString().c_str());
    return false;
  }
  return history->messages_size() > 0 && history->messages(0).data() == "pause";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("metrics_publisher: publishes load averages to a roomcast room");
  absl::ParseCommandLine(argc, argv);

  // The stop signals go to one thread that waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  roomcast::client::ClientOptions options;
  options.core = absl::GetFlag(FLAGS_core);
  Client client(options);
  const std::string room = absl::GetFlag(FLAGS_room);
  const std::string control_room = absl::GetFlag(FLAGS_control_room);

  std::atomic<bool> paused{PausedFromHistory(client, control_room)};
  roomcast::client::SubscribeOptions subscribe;
  subscribe.rooms.push_back({control_room, std::nullopt});
  // Runs on the subscription's own thread, one event at a time.
  auto subscription = client.Subscribe(subscribe, [&](const Event& event) {
    switch (event.type) {
      case Event::Type::kMessage:
        if (event.message.data() == "pause") paused = true;
        if (event.message.data() == "resume") paused = false;
        break;
      case Event::Type::kRecovery:
        if (!event.recovery.recovered()) paused = PausedFromHistory(client, control_room);
        break;
      case Event::Type::kReconnecting:
        std::fprintf(stderr, "control: %s; reconnecting in %s\n", event.status.ToString().c_str(),
                     absl::FormatDuration(event.retry_in).c_str());
        break;
      case Event::Type::kDone:
        std::fprintf(stderr, "control: %s\n", event.status.ToString().c_str());
        break;
      case Event::Type::kPresence:
        break;
    }
  });

  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> failed{0};
  // Runs on a gRPC thread: count, do not block.
  auto on_ack = [&](const roomcast::client::PublishStream::Ack& ack) {
    (ack.position.ok() ? acked : failed).fetch_add(1);
  };
  auto stream = client.OpenPublishStream(on_ack);

  absl::Notification stop;
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    stop.Notify();
  });

  uint64_t seq = 0;
  while (!stop.WaitForNotificationWithTimeout(absl::GetFlag(FLAGS_interval))) {
    if (paused) continue;
    std::string data = absl::StrFormat(R"({"seq":%d,"time":"%s","loadavg":%s})", ++seq,
                                       absl::FormatTime(absl::Now()), LoadAverage());
    if (auto id = stream->Publish(room, data); !id.ok()) {
      std::fprintf(stderr, "publish stream ended; opening a new one\n");
      // Its unacked messages were counted as failed (they may or may not
      // have been published); this example does not publish them again.
      (void)stream->Finish(absl::Seconds(1));
      stream = client.OpenPublishStream(on_ack);
    }
  }
  waiter.join();

  absl::Status finished = stream->Finish(absl::Seconds(5));
  subscription->Close();
  std::fprintf(stderr, "published %llu, acked %llu, failed %llu: %s\n",
               static_cast<unsigned long long>(seq), static_cast<unsigned long long>(acked.load()),
               static_cast<unsigned long long>(failed.load()), finished.ToString().c_str());
  return finished.ok() ? 0 : 1;
}
