// roomcast: the command-line client of a roomcast core (roomcast.v1.Rooms).
//
// Flags are absl flags, but the command line is walked here rather than by
// absl::ParseCommandLine: that would exit with status 1 on an unknown flag or
// a bad value, which scripts could not tell from a failed call (status 1
// here), and would not know which flags belong to which command.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "roomcast/client.h"

ABSL_FLAG(std::string, core, "127.0.0.1:50051", "the core's gRPC address, HOST:PORT");
ABSL_FLAG(bool, json, false,
          "print one JSON object per line (canonical protobuf JSON; payloads are base64)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "give up after this long (e.g. 500ms, 30s): the deadline of each call; tail stops "
          "listening after it (default: no limit); publish from stdin has no limit unless set");
ABSL_FLAG(std::string, since, "",
          "start after this position, EPOCH:OFFSET (EPOCH:0 = all history)");
ABSL_FLAG(uint64_t, count, 0, "stop after this many messages (0: no limit)");
ABSL_FLAG(int32_t, retries, 5,
          "reconnect attempts in a row that may fail before giving up (0: retry forever)");
ABSL_FLAG(uint32_t, limit, 0, "at most this many messages (0: the core's maximum, 1000)");
ABSL_FLAG(bool, reverse, false, "newest first");
ABSL_FLAG(std::string, prefix, "", "only rooms whose name starts with this");
ABSL_FLAG(bool, stats, false, "print the member counts instead of the members");

namespace roomcast::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

const char kUsage[] =
    R"(usage: roomcast [--core=HOST:PORT] [--json] [--timeout=DURATION] COMMAND [ARGS] [FLAGS]

Talks to a roomcast core over gRPC (roomcast.v1.Rooms). Flags may come before
or after the command.

commands:
  publish ROOM [DATA]   publish DATA, or each line of stdin as one message
  tail ROOM...          print messages as they arrive (reconnects and resumes)
  history ROOM          print a room's stored messages
  presence ROOM         list a room's members, or count them (--stats)
  rooms                 list rooms with their positions and member counts
  stats                 print the core's live counts

global flags:
  --core=HOST:PORT      the core (default 127.0.0.1:50051)
  --json                one JSON object per line, for scripts
  --timeout=DURATION    deadline of each call (default 10s)
  --help                this text; `roomcast COMMAND --help` for one command

exit status:
  0  success
  1  a call failed: the core returned an error or could not be reached; stderr
     says "roomcast: CODE: message" with the gRPC status code name (e.g.
     INVALID_ARGUMENT, UNAVAILABLE, DEADLINE_EXCEEDED)
  2  usage error: unknown command or flag, missing or bad argument
)";

struct Command {
  std::string name;
  std::string args;
  size_t min_args;
  size_t max_args;  // SIZE_MAX: any number.
  std::string help;
  std::vector<std::string> flags;  // Besides the global ones.
};

const std::vector<std::string> kGlobalFlags = {"core", "json", "timeout"};

const std::vector<Command>& Commands() {
  // clang-format off
  static const auto* const kCommands = new std::vector<Command>{
      {"publish", "ROOM [DATA]", 1, 2,
       "Publishes DATA to ROOM and prints its position (EPOCH:OFFSET). Without DATA (or\n"
       "with DATA \"-\") every line of stdin is published as one message, in order, over\n"
       "one PublishStream; one position (or error) is printed per line. --json prints\n"
       "the PublishAck of each message (its id is the line number).",
       {}},
      {"tail", "ROOM...", 1, SIZE_MAX,
       "Subscribes to the rooms and prints each message as\n"
       "  ROOM<TAB>EPOCH:OFFSET<TAB>DATA\n"
       "(presence events as ROOM<TAB>JOIN|LEAVE<TAB>CLIENT_ID<TAB>USER_ID). Reconnects\n"
       "with backoff and resumes from the last message printed; when messages were lost\n"
       "(recovered: false) it says so on stderr. --json prints every event, including\n"
       "the recovery marker of each room, as a SubscribeResponse. Stops after --count\n"
       "messages or --timeout; with --count, a timeout before that many messages is\n"
       "DEADLINE_EXCEEDED (exit 1).",
       {"since", "count", "retries"}},
      {"history", "ROOM", 1, 1,
       "Prints the room's stored messages, oldest first (ROOM<TAB>EPOCH:OFFSET<TAB>DATA).\n"
       "--json prints the whole HistoryResponse, including the room's position.",
       {"since", "limit", "reverse"}},
      {"presence", "ROOM", 1, 1,
       "Lists the room's members (CLIENT_ID<TAB>USER_ID<TAB>INFO), or with --stats prints\n"
       "the numbers of connections and distinct users.",
       {"stats"}},
      {"rooms", "", 0, 0,
       "Lists the rooms that exist: ROOM<TAB>EPOCH:OFFSET<TAB>subscribers=N<TAB>clients=N.",
       {"prefix"}},
      {"stats", "", 0, 0, "Prints the core's live object counts (Rooms.Stats).", {}},
  };
  // clang-format on
  return *kCommands;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void PrintCommandHelp(const Command& command) {
  std::string text = absl::StrCat("usage: roomcast ", command.name, command.args.empty() ? "" : " ",
                                  command.args, " [FLAGS]\n\n", command.help, "\n\nflags:\n");
  std::vector<std::string> flags = command.flags;
  flags.insert(flags.end(), kGlobalFlags.begin(), kGlobalFlags.end());
  for (const std::string& name : flags) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    absl::StrAppend(&text, "  --", name, "  ", flag->Help(),
                    " (default: ", flag->DefaultValue().empty() ? "\"\"" : flag->DefaultValue(),
                    ")\n");
  }
  absl::StrAppend(&text,
                  "\nexit status: 0 success, 1 the call failed (stderr names the gRPC code),",
                  " 2 usage error.\n");
  std::fputs(text.c_str(), stdout);
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "roomcast: %s\n(see roomcast --help)\n", message.c_str());
  return kExitUsage;
}

int Failed(const absl::Status& status) {
  std::fprintf(stderr, "roomcast: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return kExitFailed;
}

void PrintJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    out = "{}";  // Cannot happen for these messages.
  }
  out.push_back('\n');
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void PrintLine(const std::vector<std::string>& columns) {
  std::string line;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) line.push_back('\t');
    line += columns[i];
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out);
  return out;
}

bool Json() { return absl::GetFlag(FLAGS_json); }

// The parsed command line: what the commands need besides the flags.
struct Invocation {
  const Command* command = nullptr;
  std::vector<std::string> args;
  std::set<std::string> specified;  // Flags given on the command line.
};

CallOptions Call() { return CallOptions{.timeout = absl::GetFlag(FLAGS_timeout)}; }

std::optional<v1::Position> SinceFlag(absl::Status* error) {
  std::string since = absl::GetFlag(FLAGS_since);
  if (since.empty()) return std::nullopt;
  absl::StatusOr<v1::Position> position = ParsePosition(since);
  if (!position.ok()) {
    *error = position.status();
    return std::nullopt;
  }
  return *position;
}

int RunPublish(Client& client, const Invocation& in) {
  const std::string& room = in.args[0];
  if (in.args.size() == 2 && in.args[1] != "-") {
    absl::StatusOr<v1::Position> position = client.Publish(room, in.args[1], Call());
    if (!position.ok()) return Failed(position.status());
    if (Json()) {
      v1::PublishResponse response;
      *response.mutable_position() = *position;
      PrintJson(response);
    } else {
      PrintLine({FormatPosition(*position)});
    }
    return kExitOk;
  }

  // Each line of stdin, over one stream. Acks come in order on a gRPC thread.
  absl::Mutex mu;
  bool any_failed = false;
  std::unique_ptr<PublishStream> stream =
      client.OpenPublishStream([&](const PublishStream::Ack& ack) {
        absl::MutexLock lock(&mu);
        if (ack.position.ok()) {
          if (Json()) {
            v1::PublishAck out;
            out.set_id(ack.id);
            *out.mutable_position() = *ack.position;
            PrintJson(out);
          } else {
            PrintLine({FormatPosition(*ack.position)});
          }
        } else {
          any_failed = true;
          if (Json()) {
            v1::PublishAck out;
            out.set_id(ack.id);
            out.mutable_error()->set_code(static_cast<uint32_t>(ack.position.status().code()));
            out.mutable_error()->set_message(std::string(ack.position.status().message()));
            PrintJson(out);
          }
          std::fprintf(stderr, "roomcast: line %llu: %s: %s\n",
                       static_cast<unsigned long long>(ack.id),
                       absl::StatusCodeToString(ack.position.status().code()).c_str(),
                       std::string(ack.position.status().message()).c_str());
        }
        std::fflush(stdout);
      });
  absl::Time deadline = in.specified.contains("timeout")
                            ? absl::Now() + absl::GetFlag(FLAGS_timeout)
                            : absl::InfiniteFuture();
  std::string line;
  while (std::getline(std::cin, line)) {
    absl::StatusOr<uint64_t> id = stream->Publish(room, line);
    if (!id.ok()) break;  // The stream ended; Finish says why.
  }
  absl::Status status =
      stream->Finish(absl::Now() < deadline ? deadline - absl::Now() : absl::ZeroDuration());
  if (!status.ok()) return Failed(status);
  absl::MutexLock lock(&mu);
  return any_failed ? kExitFailed : kExitOk;
}

int RunTail(Client& client, const Invocation& in) {
  absl::Status error;
  std::optional<v1::Position> since = SinceFlag(&error);
  if (!error.ok()) return UsageError(absl::StrCat("--since: ", error.message()));
  if (since.has_value() && in.args.size() > 1) {
    return UsageError("--since applies to one room (positions are per room)");
  }
  SubscribeOptions options;
  for (const std::string& room : in.args) options.rooms.push_back({room, since});
  options.max_failed_attempts = absl::GetFlag(FLAGS_retries);
  std::unique_ptr<Subscription> subscription = client.Subscribe(std::move(options));

  const uint64_t count = absl::GetFlag(FLAGS_count);
  const absl::Time deadline = in.specified.contains("timeout")
                                  ? absl::Now() + absl::GetFlag(FLAGS_timeout)
                                  : absl::InfiniteFuture();
  uint64_t received = 0;
  while (count == 0 || received < count) {
    std::optional<Event> event = subscription->Next(deadline - absl::Now());
    if (!event.has_value()) break;  // The deadline.
    v1::SubscribeResponse json;
    switch (event->type) {
      case Event::Type::kMessage:
        ++received;
        if (Json()) {
          *json.mutable_message() = event->message;
          PrintJson(json);
        } else {
          PrintLine({event->message.room(), FormatPosition(event->message.position()),
                     event->message.data()});
        }
        break;
      case Event::Type::kPresence:
        if (Json()) {
          *json.mutable_presence() = event->presence;
          PrintJson(json);
        } else {
          PrintLine({event->presence.room(), v1::PresenceEvent::Kind_Name(event->presence.kind()),
                     event->presence.client().client_id(), event->presence.client().user_id()});
        }
        break;
      case Event::Type::kRecovery:
        if (Json()) {
          *json.mutable_recovery() = event->recovery;
          PrintJson(json);
        }
        if (!event->recovery.recovered()) {
          std::fprintf(stderr,
                       "roomcast: %s: recovered: false: messages after the requested position "
                       "are no longer available; continuing from %s\n",
                       event->recovery.room().c_str(),
                       FormatPosition(event->recovery.position()).c_str());
        }
        break;
      case Event::Type::kReconnecting:
        std::fprintf(stderr, "roomcast: %s: %s; reconnecting in %s\n",
                     absl::StatusCodeToString(event->status.code()).c_str(),
                     std::string(event->status.message()).c_str(),
                     absl::FormatDuration(event->retry_in).c_str());
        break;
      case Event::Type::kDone:
        std::fflush(stdout);
        return event->status.ok() ? kExitOk : Failed(event->status);
    }
    std::fflush(stdout);
  }
  if (count != 0 && received < count) {
    return Failed(absl::DeadlineExceededError(
        absl::StrCat("received ", received, " of ", count, " messages before --timeout")));
  }
  return kExitOk;
}

int RunHistory(Client& client, const Invocation& in) {
  absl::Status error;
  std::optional<v1::Position> since = SinceFlag(&error);
  if (!error.ok()) return UsageError(absl::StrCat("--since: ", error.message()));
  v1::HistoryRequest request;
  request.set_room(in.args[0]);
  if (since.has_value()) *request.mutable_since() = *since;
  request.set_limit(absl::GetFlag(FLAGS_limit));
  request.set_reverse(absl::GetFlag(FLAGS_reverse));
  absl::StatusOr<v1::HistoryResponse> history = client.History(request, Call());
  if (!history.ok()) return Failed(history.status());
  if (Json()) {
    PrintJson(*history);
  } else {
    for (const v1::Message& m : history->messages()) {
      PrintLine({m.room(), FormatPosition(m.position()), m.data()});
    }
  }
  return kExitOk;
}

int RunPresence(Client& client, const Invocation& in) {
  if (absl::GetFlag(FLAGS_stats)) {
    absl::StatusOr<v1::PresenceStatsResponse> stats = client.PresenceStats(in.args[0], Call());
    if (!stats.ok()) return Failed(stats.status());
    if (Json()) {
      PrintJson(*stats);
    } else {
      PrintLine({"clients", absl::StrCat(stats->num_clients())});
      PrintLine({"users", absl::StrCat(stats->num_users())});
    }
    return kExitOk;
  }
  absl::StatusOr<std::vector<v1::ClientInfo>> members = client.Presence(in.args[0], Call());
  if (!members.ok()) return Failed(members.status());
  if (Json()) {
    v1::PresenceResponse response;
    for (const v1::ClientInfo& m : *members) *response.add_clients() = m;
    PrintJson(response);
  } else {
    for (const v1::ClientInfo& m : *members) {
      PrintLine({m.client_id(), m.user_id(), m.has_info() ? ToJson(m.info()) : ""});
    }
  }
  return kExitOk;
}

int RunRooms(Client& client, const Invocation& in) {
  absl::StatusOr<std::vector<v1::ListRoomsResponse::RoomInfo>> rooms =
      client.ListRooms(absl::GetFlag(FLAGS_prefix), Call());
  if (!rooms.ok()) return Failed(rooms.status());
  if (Json()) {
    v1::ListRoomsResponse response;
    for (const auto& r : *rooms) *response.add_rooms() = r;
    PrintJson(response);
  } else {
    for (const auto& r : *rooms) {
      PrintLine({r.room(), FormatPosition(r.position()),
                 absl::StrCat("subscribers=", r.num_subscribers()),
                 absl::StrCat("clients=", r.num_clients())});
    }
  }
  return kExitOk;
}

int RunStats(Client& client, const Invocation& in) {
  absl::StatusOr<v1::StatsResponse> stats = client.Stats(Call());
  if (!stats.ok()) return Failed(stats.status());
  if (Json()) {
    PrintJson(*stats);
    return kExitOk;
  }
  const google::protobuf::Descriptor* descriptor = stats->GetDescriptor();
  const google::protobuf::Reflection* reflection = stats->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    PrintLine({field->name(), absl::StrCat(reflection->GetUInt64(*stats, field))});
  }
  return kExitOk;
}

// Walks argv: flags (anywhere, "--name=value", "--name value", "--flag",
// "--noflag"; "-" and "--" as usual) and positional arguments.
int ParseArgs(int argc, char** argv, Invocation* in) {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> flags;
  bool help = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) positional.emplace_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    std::string name(arg.substr(0, arg.find('=')));
    std::optional<std::string> value;
    if (arg.find('=') != absl::string_view::npos)
      value = std::string(arg.substr(arg.find('=') + 1));
    if (name == "help" || name == "h") {
      help = true;
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>() && !value.has_value();
      if (negated) name = name.substr(2);
    }
    if (flag == nullptr) return UsageError(absl::StrCat("unknown flag --", name));
    if (negated) {
      value = "false";
    } else if (!value.has_value()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return UsageError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    flags.emplace_back(name, *value);
  }

  if (positional.empty()) {
    if (help) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  if (positional[0] == "help") {
    const Command* command = positional.size() > 1 ? FindCommand(positional[1]) : nullptr;
    if (command != nullptr) {
      PrintCommandHelp(*command);
    } else {
      std::fputs(kUsage, stdout);
    }
    return kExitOk;
  }
  in->command = FindCommand(positional[0]);
  if (in->command == nullptr) {
    return UsageError(absl::StrCat("unknown command \"", positional[0], "\""));
  }
  if (help) {
    PrintCommandHelp(*in->command);
    return kExitOk;
  }
  for (const auto& [name, value] : flags) {
    bool allowed = false;
    for (const std::string& f : in->command->flags) allowed |= f == name;
    for (const std::string& f : kGlobalFlags) allowed |= f == name;
    if (!allowed) {
      return UsageError(absl::StrCat("flag --", name, " does not apply to ", in->command->name));
    }
    std::string error;
    if (!absl::FindCommandLineFlag(name)->ParseFrom(value, &error)) {
      return UsageError(absl::StrCat("--", name, ": ", error));
    }
    in->specified.insert(name);
  }
  in->args.assign(positional.begin() + 1, positional.end());
  if (in->args.size() < in->command->min_args || in->args.size() > in->command->max_args) {
    return UsageError(absl::StrCat("usage: roomcast ", in->command->name, " ", in->command->args));
  }
  return -1;  // Go on.
}

int Main(int argc, char** argv) {
  Invocation in;
  if (int exit = ParseArgs(argc, argv, &in); exit >= 0) return exit;
  ClientOptions options;
  options.core = absl::GetFlag(FLAGS_core);
  Client client(options);
  const std::string& name = in.command->name;
  if (name == "publish") return RunPublish(client, in);
  if (name == "tail") return RunTail(client, in);
  if (name == "history") return RunHistory(client, in);
  if (name == "presence") return RunPresence(client, in);
  if (name == "rooms") return RunRooms(client, in);
  return RunStats(client, in);
}

}  // namespace
}  // namespace roomcast::client

int main(int argc, char** argv) {
  int exit = roomcast::client::Main(argc, argv);
  std::fflush(stdout);
  return exit;
}
