#include "core/nats_broker.h"

#include <nats/nats.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/room_fanout.h"
#include "google/protobuf/util/time_util.h"

namespace roomcast::core {

namespace {

constexpr char kRoomPrefix[] = "roomcast.room.";
constexpr char kPublishPrefix[] = "roomcast.publish.";
constexpr char kBusQueue[] = "roomcast";
constexpr char kPresencePrefix[] = "roomcast.presence.";
constexpr char kNodeHeader[] = "Roomcast-Node";
constexpr char kKindHeader[] = "Roomcast-Presence";
constexpr char kEpochHeader[] = "Roomcast-Epoch";
constexpr char kOffsetHeader[] = "Roomcast-Offset";
constexpr char kTimeHeader[] = "Roomcast-Time";
constexpr char kPublisherHeader[] = "Roomcast-Publisher";
// Set by hand for a room's first message: cnats only sends a non-zero
// ExpectLastSubjectSeq, and 0 means "no message on this subject yet".
constexpr char kExpectedLastSubjectSeq[] = "Nats-Expected-Last-Subject-Sequence";

std::string NewEpoch() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(*gen));
}

absl::Status NatsError(natsStatus s, jsErrCode code, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", natsStatus_GetText(s));
  if (const char* detail = nats_GetLastError(nullptr); detail != nullptr && *detail != '\0') {
    absl::StrAppend(&message, " (", detail, ")");
  }
  if (code != 0) absl::StrAppend(&message, " (JetStream error ", static_cast<int>(code), ")");
  if (s == NATS_TIMEOUT) return absl::DeadlineExceededError(message);
  return absl::UnavailableError(message);
}

std::string Header(natsMsg* msg, const char* key) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, key, &value) != NATS_OK || value == nullptr) return std::string();
  return value;
}

// A stored room message as a RoomEvent, or nullptr when its headers are not
// roomcast's (a foreign publisher on roomcast.room.*: skipped).
RoomEventPtr DecodeStored(natsMsg* msg, const std::string& room) {
  uint64_t offset = 0;
  std::string epoch = Header(msg, kEpochHeader);
  if (epoch.empty() || !absl::SimpleAtoi(Header(msg, kOffsetHeader), &offset) || offset == 0) {
    return nullptr;
  }
  v1::RoomEvent event;
  v1::Message* m = event.mutable_message();
  m->set_room(room);
  m->mutable_position()->set_epoch(epoch);
  m->mutable_position()->set_offset(offset);
  const char* data = natsMsg_GetData(msg);
  m->set_data(data == nullptr ? std::string() : std::string(data, natsMsg_GetDataLength(msg)));
  int64_t nanos = 0;
  if (absl::SimpleAtoi(Header(msg, kTimeHeader), &nanos)) {
    *m->mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(nanos);
  }
  std::string publisher;
  if (absl::Base64Unescape(Header(msg, kPublisherHeader), &publisher) && !publisher.empty()) {
    m->mutable_publisher()->ParseFromString(publisher);
  }
  return MakeRoomEvent(std::move(event));
}

uint64_t StreamSequenceOf(natsMsg* msg) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) return natsMsg_GetSequence(msg);
  uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return seq;
}

}  // namespace

std::string RoomSubjectToken(absl::string_view room) {
  std::string out;
  out.reserve(room.size());
  for (char c : room) {
    if (c == '.' || c == '%' || c == '*' || c == '>' || static_cast<unsigned char>(c) <= ' ') {
      absl::StrAppendFormat(&out, "%%%02X", static_cast<unsigned char>(c));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string RoomFromSubjectToken(absl::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size(); ++i) {
    int hi = 0, lo = 0;
    auto hex = [](char c, int& v) {
      if (c >= '0' && c <= '9') return v = c - '0', true;
      if (c >= 'A' && c <= 'F') return v = c - 'A' + 10, true;
      if (c >= 'a' && c <= 'f') return v = c - 'a' + 10, true;
      return false;
    };
    if (token[i] == '%' && i + 2 < token.size() && hex(token[i + 1], hi) && hex(token[i + 2], lo)) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(token[i]);
    }
  }
  return out;
}

namespace {

// A KV key token: KV keys allow [-/_=.A-Za-z0-9]; '.' separates tokens, so
// every other byte (and '=') becomes "=XX".
std::string KvToken(absl::string_view in) {
  std::string out;
  for (char c : in) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '/';
    if (plain) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "=%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string MemberKey(absl::string_view room, absl::string_view client_id) {
  return absl::StrCat(KvToken(room), ".", KvToken(client_id));
}

}  // namespace

// The NATS handles. Callbacks of the library reach the broker through
// closures that the subscriptions' completion callbacks free.
struct NatsBroker::Nats {
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* presence = nullptr;  // Set with stream_ready.
  natsSubscription* bus = nullptr;
  natsSubscription* presence_events = nullptr;
  // Tells this broker's own presence events from other nodes'.
  const std::string node_id = NewEpoch();
  std::atomic<bool> stream_ready{false};
  absl::Mutex refresh_mu;
  absl::Time last_refresh ABSL_GUARDED_BY(refresh_mu) = absl::InfinitePast();

  // Subscriptions whose completion callback has not run yet; Stop waits for
  // them so that no library callback outlives the broker.
  absl::Mutex mu;
  int live_subscriptions ABSL_GUARDED_BY(mu) = 0;
};

struct PendingJoin {
  JoinArgs args;
  Subscriber* subscriber;
  JoinedCallback on_joined;
  Completion<absl::Status> done;
  bool cancelled = false;
};

// A publish whose completion waits until this node's consumer delivered it.
struct AwaitedPublish {
  uint64_t seq;
  v1::Position position;
  Completion<absl::StatusOr<v1::Position>> done;
  absl::Time deadline;
};

struct NatsBroker::Room {
  Room(std::string room_name, const NamespaceOptions* ns)
      : name(std::move(room_name)),
        subject(absl::StrCat(kRoomPrefix, RoomSubjectToken(name))),
        options(ns) {}

  const std::string name;
  const std::string subject;
  const NamespaceOptions* const options;

  enum class Consumer { kIdle, kStarting, kReady };

  absl::Mutex mu;
  // Set under both the registry mutex and `mu` when the room leaves the
  // registry; whoever then holds `mu` looks the room up again.
  bool removed ABSL_GUARDED_BY(mu) = false;
  RoomFanout subscribers ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, v1::ClientInfo> members ABSL_GUARDED_BY(mu);
  // The room's consumer on this node (interest: only while subscribers or
  // joins are waiting). `generation` tells a stale callback from the live one.
  Consumer consumer ABSL_GUARDED_BY(mu) = Consumer::kIdle;
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;
  natsSubscription* sub ABSL_GUARDED_BY(mu) = nullptr;
  // Stream sequence of the room's last message when the consumer started;
  // the consumer has caught up once seen_seq reaches it. 0: not known yet.
  uint64_t target_seq ABSL_GUARDED_BY(mu) = 0;
  bool target_known ABSL_GUARDED_BY(mu) = false;
  uint64_t seen_seq ABSL_GUARDED_BY(mu) = 0;
  // The last message the consumer saw and the window of history behind it.
  std::string epoch ABSL_GUARDED_BY(mu);
  uint64_t offset ABSL_GUARDED_BY(mu) = 0;
  std::deque<RoomEventPtr> window ABSL_GUARDED_BY(mu);
  std::vector<PendingJoin> pending ABSL_GUARDED_BY(mu);
  // In stream order; completed once seen_seq reaches them.
  std::deque<AwaitedPublish> awaited ABSL_GUARDED_BY(mu);
  // What this node last knew of the room's end, for the next publish.
  bool pub_known ABSL_GUARDED_BY(mu) = false;
  std::string pub_epoch ABSL_GUARDED_BY(mu);
  uint64_t pub_offset ABSL_GUARDED_BY(mu) = 0;
  uint64_t pub_seq ABSL_GUARDED_BY(mu) = 0;

  v1::Position Position() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    v1::Position p;
    p.set_epoch(epoch);
    p.set_offset(offset);
    return p;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return subscribers.empty() && members.empty() && pending.empty() && awaited.empty() &&
           consumer == Consumer::kIdle;
  }
  void Trim(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (window.size() > options->history_size) window.pop_front();
    absl::Time oldest_kept = now - options->history_ttl;
    while (!window.empty() && TimeOf(window.front()) < oldest_kept) window.pop_front();
  }
  // Appends a stored message the consumer delivered, in stream order.
  void Append(const RoomEventPtr& e, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const v1::Position& p = e->message().position();
    if (p.epoch() != epoch || p.offset() != offset + 1) window.clear();  // History was lost.
    epoch = p.epoch();
    offset = p.offset();
    if (options->history_size > 0) window.push_back(e);
    Trim(now);
  }
};

namespace {

struct ConsumerClosure {
  std::shared_ptr<NatsBroker::Room> room;
  uint64_t generation;
  Clock* clock;
  NatsBroker::Nats* nats;
};

}  // namespace

class NatsBroker::Worker {
 public:
  Worker() : thread_([this] { Run(); }) {}
  ~Worker() { StopAndJoin(); }

  // False when `limit` tasks are already queued.
  bool Post(absl::AnyInvocable<void()>& task, size_t limit) {
    absl::MutexLock lock(&mu_);
    if (tasks_.size() >= limit) return false;
    tasks_.push_back(std::move(task));
    return true;
  }
  // Runs what is queued, then ends the thread.
  void StopAndJoin() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    for (;;) {
      absl::AnyInvocable<void()> task;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !tasks_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

namespace {

// The join results of joins that the consumer's state now allows, handed to
// their subscribers under the room lock; `done` runs after it is released.
struct DoneList {
  std::vector<std::pair<Completion<absl::Status>, absl::Status>> joins;
  std::vector<AwaitedPublish> publishes;
  template <class... A>
  void emplace_back(A&&... a) {
    joins.emplace_back(std::forward<A>(a)...);
  }
};

void RunDones(DoneList& dones) {
  for (auto& [done, status] : dones.joins) std::move(done)(std::move(status));
  dones.joins.clear();
  for (AwaitedPublish& p : dones.publishes) std::move(p.done)(std::move(p.position));
  dones.publishes.clear();
}

// Takes the awaited publishes the consumer has delivered (all of them when
// `all`: the consumer stopped), or whose deadline passed.
void TakeAwaitedLocked(NatsBroker::Room& r, bool all, absl::Time now, DoneList& dones)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  while (!r.awaited.empty() &&
         (all || r.awaited.front().seq <= r.seen_seq || r.awaited.front().deadline < now)) {
    dones.publishes.push_back(std::move(r.awaited.front()));
    r.awaited.pop_front();
  }
}

void AnswerJoinLocked(NatsBroker::Room& r, PendingJoin& join, absl::Time now, DoneList& dones)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  JoinResult result;
  result.position = r.Position();
  if (join.cancelled) {  // A Leave came first: joined and left at once.
    std::move(join.on_joined)(result);
    dones.emplace_back(std::move(join.done), absl::OkStatus());
    return;
  }
  if (join.args.since.has_value()) {
    const v1::Position& since = *join.args.since;
    if (since.epoch() == r.epoch && since.offset() > r.offset) {
      dones.emplace_back(
          std::move(join.done),
          absl::OutOfRangeError(absl::StrFormat("since offset %d is past the room's last offset %d",
                                                since.offset(), r.offset)));
      return;
    }
    r.Trim(now);
    uint64_t first_kept = r.window.empty() ? r.offset + 1 : OffsetOf(r.window.front());
    // Offset 0 of any epoch means "from the start": recovered when nothing
    // of the current epoch was lost.
    bool same = since.epoch() == r.epoch || (since.offset() == 0 && first_kept <= 1);
    result.recovered = same && since.offset() + 1 >= first_kept;
    if (result.recovered) {
      for (const RoomEventPtr& e : r.window) {
        if (OffsetOf(e) > since.offset()) result.replayed.push_back(e);
      }
    }
  }
  r.subscribers.Add(join.subscriber);
  std::move(join.on_joined)(result);
  if (join.args.member.has_value() && r.options->presence) {
    const v1::ClientInfo& member = *join.args.member;
    auto [it, inserted] = r.members.insert_or_assign(member.client_id(), member);
    if (inserted && r.options->join_leave) {
      r.subscribers.Deliver(PresenceEventOf(r.name, v1::PresenceEvent::JOIN, member));
    }
  }
  dones.emplace_back(std::move(join.done), absl::OkStatus());
}

void AnswerPendingLocked(NatsBroker::Room& r, absl::Time now, DoneList& dones)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  std::vector<PendingJoin> pending = std::move(r.pending);
  r.pending.clear();
  for (PendingJoin& join : pending) AnswerJoinLocked(r, join, now, dones);
}

void FailPendingLocked(NatsBroker::Room& r, const absl::Status& status, DoneList& dones)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  for (PendingJoin& join : r.pending) dones.emplace_back(std::move(join.done), status);
  r.pending.clear();
}

void OnRoomMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* c = static_cast<ConsumerClosure*>(closure);
  NatsBroker::Room& r = *c->room;
  RoomEventPtr event = DecodeStored(msg, r.name);
  uint64_t seq = StreamSequenceOf(msg);
  natsMsg_Destroy(msg);
  DoneList dones;
  {
    absl::MutexLock lock(&r.mu);
    if (r.generation != c->generation || r.consumer == NatsBroker::Room::Consumer::kIdle) return;
    r.seen_seq = std::max(r.seen_seq, seq);
    if (event != nullptr) {
      r.Append(event, c->clock->Now());
      if (r.consumer == NatsBroker::Room::Consumer::kReady) r.subscribers.Deliver(event);
    }
    if (r.consumer == NatsBroker::Room::Consumer::kStarting && r.target_known &&
        r.seen_seq >= r.target_seq) {
      r.consumer = NatsBroker::Room::Consumer::kReady;
      AnswerPendingLocked(r, c->clock->Now(), dones);
    }
    TakeAwaitedLocked(r, false, absl::Now(), dones);
  }
  RunDones(dones);
}

void OnSubscriptionDone(void* closure) {
  auto* c = static_cast<ConsumerClosure*>(closure);
  NatsBroker::Nats* nats = c->nats;
  delete c;
  absl::MutexLock lock(&nats->mu);
  --nats->live_subscriptions;
}

struct BusClosure {
  NatsBroker* broker;
  NatsBroker::Nats* nats;
};

void OnBusDone(void* closure) {
  auto* c = static_cast<BusClosure*>(closure);
  NatsBroker::Nats* nats = c->nats;
  delete c;
  absl::MutexLock lock(&nats->mu);
  --nats->live_subscriptions;
}

void Unsubscribe(natsSubscription* sub) {
  if (sub == nullptr) return;
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
}

}  // namespace

NatsBroker::NatsBroker(const Policy* policy, Clock* clock, NatsBrokerOptions options)
    : policy_(policy),
      clock_(clock),
      options_(std::move(options)),
      nats_(std::make_unique<Nats>()) {}

NatsBroker::~NatsBroker() { Stop(); }

bool NatsBroker::Connected() const {
  return nats_->nc != nullptr && natsConnection_Status(nats_->nc) == NATS_CONN_STATUS_CONNECTED;
}

absl::Status NatsBroker::Usable() const {
  if (!Connected()) {
    return absl::UnavailableError(absl::StrCat("NATS is unreachable at ", options_.url));
  }
  if (nats_->stream_ready.load()) return absl::OkStatus();
  // Create or update the stream: limits are the largest of every namespace;
  // each room's own limits are applied when reading (docs/cluster.md).
  const EngineOptions& engine = policy_->options();
  size_t max_size = engine.default_namespace.history_size;
  absl::Duration max_ttl = engine.default_namespace.history_ttl;
  for (const auto& [name, ns] : engine.namespaces) {
    max_size = std::max(max_size, ns.history_size);
    max_ttl = std::max(max_ttl, ns.history_ttl);
  }
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  std::string subjects = absl::StrCat(kRoomPrefix, ">");
  const char* subject_list[] = {subjects.c_str()};
  cfg.Name = options_.stream.c_str();
  cfg.Subjects = subject_list;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  // One message per room stays even without history: it holds the position.
  cfg.MaxMsgsPerSubject = static_cast<int64_t>(std::max<size_t>(max_size, 1));
  cfg.MaxAge = absl::ToInt64Nanoseconds(max_ttl);
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfo* info = nullptr;
  natsStatus s = js_AddStream(&info, nats_->js, &cfg, nullptr, &code);
  if (s != NATS_OK && code == JSStreamNameExistErr) {
    code = static_cast<jsErrCode>(0);
    s = js_UpdateStream(&info, nats_->js, &cfg, nullptr, &code);
  }
  jsStreamInfo_Destroy(info);
  if (s != NATS_OK) return NatsError(s, code, "creating the stream");
  if (nats_->presence == nullptr) {
    kvConfig kv;
    kvConfig_Init(&kv);
    kv.Bucket = options_.presence_bucket.c_str();
    kv.History = 1;
    kv.TTL = absl::ToInt64Nanoseconds(options_.presence_ttl);
    kv.StorageType = js_FileStorage;  // Survives a nats-server restart.
    s = js_CreateKeyValue(&nats_->presence, nats_->js, &kv);
    if (s != NATS_OK) {
      return NatsError(s, static_cast<jsErrCode>(0), "opening the presence bucket");
    }
  }
  nats_->stream_ready.store(true);
  return absl::OkStatus();
}

absl::Status NatsBroker::Start() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (running_) return absl::OkStatus();  // Started already: nothing to do.
  Nats& n = *nats_;
  const int64_t timeout_ms = absl::ToInt64Milliseconds(options_.request_timeout);
  natsStatus s = natsOptions_Create(&n.opts);
  if (s == NATS_OK) s = natsOptions_SetURL(n.opts, options_.url.c_str());
  if (s == NATS_OK) s = natsOptions_SetName(n.opts, options_.node_name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(n.opts, timeout_ms);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(n.opts, -1);
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectWait(n.opts, absl::ToInt64Milliseconds(options_.reconnect_wait));
  }
  // A dead server is noticed within about two ping intervals.
  if (s == NATS_OK) s = natsOptions_SetPingInterval(n.opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(n.opts, 2);
  if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(n.opts, true);
  // One shared pool of delivery threads, not one thread per room consumer.
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(n.opts, true);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(n.opts, true, nullptr, nullptr);
  if (s != NATS_OK) return NatsError(s, static_cast<jsErrCode>(0), "NATS options");
  s = natsConnection_Connect(&n.nc, n.opts);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    return NatsError(s, static_cast<jsErrCode>(0), absl::StrCat("connecting to ", options_.url));
  }
  jsOptions js_opts;
  jsOptions_Init(&js_opts);
  js_opts.Wait = timeout_ms;
  s = natsConnection_JetStream(&n.js, n.nc, &js_opts);
  if (s != NATS_OK) return NatsError(s, static_cast<jsErrCode>(0), "JetStream context");
  if (Connected()) {
    if (absl::Status st = Usable(); !st.ok()) return st;
  }
  if (options_.message_bus) {
    auto* closure = new BusClosure{this, nats_.get()};
    auto on_bus = [](natsConnection* nc, natsSubscription*, natsMsg* msg, void* c) {
      auto* bus = static_cast<BusClosure*>(c);
      absl::string_view subject = natsMsg_GetSubject(msg);
      subject.remove_prefix(std::min(subject.size(), sizeof(kPublishPrefix) - 1));
      PublishArgs args;
      args.room = RoomFromSubjectToken(subject);
      const char* data = natsMsg_GetData(msg);
      if (data != nullptr) args.data.assign(data, natsMsg_GetDataLength(msg));
      const char* reply = natsMsg_GetReply(msg);
      std::string reply_to = reply == nullptr ? std::string() : reply;
      natsMsg_Destroy(msg);
      bus->broker->Publish(std::move(args), [nc, reply_to](absl::StatusOr<v1::Position> p) {
        if (reply_to.empty()) return;
        std::string answer =
            p.ok() ? absl::StrFormat(R"({"epoch":"%s","offset":%d})", p->epoch(), p->offset())
                   : absl::StrFormat(R"({"error":{"code":%d,"message":"%s"}})",
                                     static_cast<int>(p.status().code()),
                                     absl::CEscape(p.status().message()));
        natsConnection_PublishString(nc, reply_to.c_str(), answer.c_str());
      });
    };
    std::string subject = absl::StrCat(kPublishPrefix, ">");
    s = natsConnection_QueueSubscribe(&n.bus, n.nc, subject.c_str(), kBusQueue, on_bus, closure);
    if (s == NATS_OK) {
      absl::MutexLock nats_lock(&n.mu);
      ++n.live_subscriptions;
      natsSubscription_SetOnCompleteCB(n.bus, OnBusDone, closure);
    } else {
      delete closure;
      return NatsError(s, static_cast<jsErrCode>(0), "subscribing to the message bus");
    }
  }
  {
    // JOIN/LEAVE of members on other nodes, for this node's subscribers.
    auto* closure = new BusClosure{this, nats_.get()};
    auto on_presence = [](natsConnection*, natsSubscription*, natsMsg* msg, void* c) {
      auto* self = static_cast<BusClosure*>(c);
      const char* data = natsMsg_GetData(msg);
      std::string member =
          data == nullptr ? std::string() : std::string(data, natsMsg_GetDataLength(msg));
      self->broker->OnPresenceEvent(natsMsg_GetSubject(msg), Header(msg, kNodeHeader),
                                    Header(msg, kKindHeader), member);
      natsMsg_Destroy(msg);
    };
    std::string subject = absl::StrCat(kPresencePrefix, ">");
    s = natsConnection_Subscribe(&n.presence_events, n.nc, subject.c_str(), on_presence, closure);
    if (s != NATS_OK) {
      delete closure;
      return NatsError(s, static_cast<jsErrCode>(0), "subscribing to presence events");
    }
    absl::MutexLock nats_lock(&n.mu);
    ++n.live_subscriptions;
    natsSubscription_SetOnCompleteCB(n.presence_events, OnBusDone, closure);
  }
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.push_back(std::make_unique<Worker>());
  }
  running_ = true;
  {
    absl::MutexLock m(&maintainer_mu_);
    stop_maintainer_ = false;
  }
  maintainer_ = std::thread([this] {
    absl::MutexLock m(&maintainer_mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(maintainer_mu_) { return stop_maintainer_; };
    while (!maintainer_mu_.AwaitWithTimeout(absl::Condition(&stop), options_.maintain_interval)) {
      maintainer_mu_.Unlock();
      MaintainNow();
      maintainer_mu_.Lock();
    }
  });
  return absl::OkStatus();
}

void NatsBroker::Stop() {
  std::vector<std::unique_ptr<Worker>> workers;
  {
    absl::MutexLock lock(&lifecycle_mu_);
    if (!running_ && nats_->nc == nullptr) return;
    running_ = false;
    workers = std::move(workers_);
    workers_.clear();
  }
  if (maintainer_.joinable()) {
    {
      absl::MutexLock m(&maintainer_mu_);
      stop_maintainer_ = true;
    }
    maintainer_.join();
  }
  Nats& n = *nats_;
  Unsubscribe(n.bus);
  n.bus = nullptr;
  Unsubscribe(n.presence_events);
  n.presence_events = nullptr;
  // Queued operations complete (NATS calls are bounded by request_timeout).
  for (auto& w : workers) w->StopAndJoin();
  workers.clear();
  std::vector<std::shared_ptr<Room>> rooms;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, room] : rooms_) rooms.push_back(room);
  }
  for (const auto& room : rooms) {
    DoneList dones;
    natsSubscription* sub = nullptr;
    {
      absl::MutexLock lock(&room->mu);
      ++room->generation;
      room->consumer = Room::Consumer::kIdle;
      std::swap(sub, room->sub);
      FailPendingLocked(*room, absl::UnavailableError("the broker stopped"), dones);
      TakeAwaitedLocked(*room, true, absl::Now(), dones);
    }
    Unsubscribe(sub);
    RunDones(dones);
  }
  if (n.nc != nullptr) natsConnection_Close(n.nc);
  {
    // Completion callbacks of the subscriptions free their closures.
    absl::MutexLock lock(&n.mu);
    auto gone = [&n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(n.mu) { return n.live_subscriptions == 0; };
    n.mu.AwaitWithTimeout(absl::Condition(&gone), absl::Seconds(5));
  }
  kvStore_Destroy(n.presence);
  n.presence = nullptr;
  jsCtx_Destroy(n.js);
  n.js = nullptr;
  natsConnection_Destroy(n.nc);
  n.nc = nullptr;
  natsOptions_Destroy(n.opts);
  n.opts = nullptr;
  n.stream_ready.store(false);
}

void NatsBroker::Post(absl::string_view room, absl::AnyInvocable<void()> task,
                      absl::AnyInvocable<void(absl::Status)> refused, bool bounded) {
  absl::Status status = absl::UnavailableError("the NATS broker is not running");
  {
    absl::ReaderMutexLock lock(&lifecycle_mu_);
    if (running_ && !workers_.empty()) {
      size_t i = absl::HashOf(room) % workers_.size();
      const size_t limit = bounded ? options_.max_queued_per_worker : SIZE_MAX;
      if (workers_[i]->Post(task, limit)) return;
      status = absl::ResourceExhaustedError(absl::StrCat("too many NATS operations queued (limit ",
                                                         options_.max_queued_per_worker,
                                                         " per worker)"));
    }
  }
  refused(std::move(status));
}

std::shared_ptr<NatsBroker::Room> NatsBroker::Find(absl::string_view room) {
  absl::MutexLock lock(&mu_);
  auto it = rooms_.find(room);
  return it == rooms_.end() ? nullptr : it->second;
}

std::shared_ptr<NatsBroker::Room> NatsBroker::GetOrCreate(absl::string_view room,
                                                          const NamespaceOptions* ns) {
  absl::MutexLock lock(&mu_);
  auto it = rooms_.find(room);
  if (it != rooms_.end()) return it->second;
  auto created = std::make_shared<Room>(std::string(room), ns);
  rooms_.emplace(created->name, created);
  return created;
}

void NatsBroker::Publish(PublishArgs args, Completion<absl::StatusOr<v1::Position>> done) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  absl::Status status = ns.ok() ? policy_->CheckPayload(args.data.size()) : ns.status();
  if (status.ok()) status = Connected() ? absl::OkStatus() : Usable();
  if (!status.ok()) {
    std::move(done)(status);
    return;
  }
  std::string room = args.room;
  auto shared_done = std::make_shared<Completion<absl::StatusOr<v1::Position>>>(std::move(done));
  Post(
      room,
      [this, args = std::move(args), shared_done]() mutable {
        uint64_t seq = 0;
        absl::StatusOr<v1::Position> p = PublishNow(args, seq);
        if (p.ok()) {
          if (std::shared_ptr<Room> room = Find(args.room); room != nullptr) {
            absl::MutexLock lock(&room->mu);
            if (room->consumer != Room::Consumer::kIdle && room->seen_seq < seq) {
              room->awaited.push_back(AwaitedPublish{seq, *std::move(p), std::move(*shared_done),
                                                     absl::Now() + options_.request_timeout});
              return;
            }
          }
        }
        std::move (*shared_done)(std::move(p));
      },
      [shared_done](absl::Status s) { std::move (*shared_done)(std::move(s)); });
}

absl::StatusOr<v1::Position> NatsBroker::PublishNow(PublishArgs& args, uint64_t& stored_seq) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) return ns.status();
  if (absl::Status s = Usable(); !s.ok()) return s;
  std::shared_ptr<Room> room = GetOrCreate(args.room, *ns);
  Room& r = *room;
  std::string publisher;
  if (args.publisher.has_value())
    publisher = absl::Base64Escape(args.publisher->SerializeAsString());
  for (int attempt = 0; attempt < options_.max_publish_attempts; ++attempt) {
    std::string epoch;
    uint64_t offset = 0, seq = 0;
    bool known = false;
    {
      absl::MutexLock lock(&r.mu);
      known = r.pub_known;
      epoch = r.pub_epoch;
      offset = r.pub_offset;
      seq = r.pub_seq;
    }
    if (!known) {  // Read the room's last message: its position and sequence.
      natsMsg* last = nullptr;
      jsErrCode code = static_cast<jsErrCode>(0);
      natsStatus s = js_GetLastMsg(&last, nats_->js, options_.stream.c_str(), r.subject.c_str(),
                                   nullptr, &code);
      if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) {
        epoch = NewEpoch();  // No stored message: a new history starts.
        offset = 0;
        seq = 0;
      } else if (s != NATS_OK) {
        return NatsError(s, code, "reading the room's last message");
      } else {
        RoomEventPtr e = DecodeStored(last, r.name);
        seq = natsMsg_GetSequence(last);
        natsMsg_Destroy(last);
        if (e == nullptr) return absl::DataLossError("the room's last message has no position");
        epoch = e->message().position().epoch();
        offset = e->message().position().offset();
      }
    }
    const uint64_t next = offset + 1;
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, r.subject.c_str(), nullptr, args.data.data(),
                                  static_cast<int>(args.data.size()));
    const int64_t now = absl::ToUnixNanos(clock_->Now());
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, kEpochHeader, epoch.c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, kOffsetHeader, absl::StrCat(next).c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, kTimeHeader, absl::StrCat(now).c_str());
    if (s == NATS_OK && !publisher.empty()) {
      s = natsMsgHeader_Set(msg, kPublisherHeader, publisher.c_str());
    }
    if (s == NATS_OK && seq == 0) s = natsMsgHeader_Set(msg, kExpectedLastSubjectSeq, "0");
    jsPubOptions pub;
    jsPubOptions_Init(&pub);
    pub.ExpectLastSubjectSeq = seq;
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (s == NATS_OK) s = js_PublishMsg(&ack, nats_->js, msg, &pub, &code);
    natsMsg_Destroy(msg);
    uint64_t stored = ack == nullptr ? 0 : ack->Sequence;
    jsPubAck_Destroy(ack);
    absl::MutexLock lock(&r.mu);
    if (s == NATS_OK) {
      r.pub_known = true;
      r.pub_epoch = epoch;
      r.pub_offset = next;
      r.pub_seq = stored;
      published_total_.fetch_add(1, std::memory_order_relaxed);
      stored_seq = stored;
      v1::Position p;
      p.set_epoch(epoch);
      p.set_offset(next);
      return p;
    }
    r.pub_known = false;
    if (code != JSStreamWrongLastSequenceErr) return NatsError(s, code, "publishing");
    // Another node took this offset first: read the new end and retry.
  }
  return absl::AbortedError("lost the race for the next offset too many times; retry");
}

void NatsBroker::Join(JoinArgs args, Subscriber* subscriber, JoinedCallback on_joined,
                      Completion<absl::Status> done) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) {
    std::move(done)(ns.status());
    return;
  }
  std::string room = args.room;
  struct State {
    JoinArgs args;
    JoinedCallback on_joined;
    Completion<absl::Status> done;
  };
  auto state =
      std::make_shared<State>(State{std::move(args), std::move(on_joined), std::move(done)});
  Post(
      room,
      [this, state, subscriber] {
        JoinNow(state->args, subscriber, state->on_joined, state->done);
      },
      [state](absl::Status s) { std::move(state->done)(std::move(s)); }, /*bounded=*/false);
}

void NatsBroker::JoinNow(JoinArgs& args, Subscriber* subscriber, JoinedCallback& on_joined,
                         Completion<absl::Status>& done) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) {
    std::move(done)(ns.status());
    return;
  }
  if (args.member.has_value() && (*ns)->presence) {
    if (absl::Status s = PutMember(args.room, &*args.member, args.member->client_id()); !s.ok()) {
      std::move(done)(s);
      return;
    }
    if ((*ns)->join_leave) SendPresenceEvent(args.room, "JOIN", *args.member);
  }
  std::shared_ptr<Room> room;
  DoneList dones;
  bool start = false;
  uint64_t generation = 0;
  for (;;) {
    room = GetOrCreate(args.room, *ns);
    absl::MutexLock lock(&room->mu);
    if (room->removed) continue;  // Maintained away between lookup and lock.
    PendingJoin join{std::move(args), subscriber, std::move(on_joined), std::move(done)};
    if (room->consumer == Room::Consumer::kReady) {
      AnswerJoinLocked(*room, join, clock_->Now(), dones);
    } else {
      room->pending.push_back(std::move(join));
      if (room->consumer == Room::Consumer::kIdle) {
        room->consumer = Room::Consumer::kStarting;
        generation = ++room->generation;
        room->target_known = false;
        room->seen_seq = 0;
        room->epoch.clear();
        room->offset = 0;
        room->window.clear();
        start = true;
      }
    }
    break;
  }
  RunDones(dones);
  if (start) StartConsumer(room, generation);
}

void NatsBroker::StartConsumer(const std::shared_ptr<Room>& room, uint64_t generation) {
  absl::Status status = Usable();
  natsSubscription* sub = nullptr;
  uint64_t last_seq = 0;
  if (status.ok()) {
    auto* closure = new ConsumerClosure{room, generation, clock_, nats_.get()};
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = options_.stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    jsErrCode code = static_cast<jsErrCode>(0);
    {
      absl::MutexLock lock(&nats_->mu);
      ++nats_->live_subscriptions;
    }
    natsStatus s = js_Subscribe(&sub, nats_->js, room->subject.c_str(), OnRoomMessage, closure,
                                nullptr, &so, &code);
    if (s == NATS_OK) {
      natsSubscription_SetOnCompleteCB(sub, OnSubscriptionDone, closure);
      natsMsg* last = nullptr;
      code = static_cast<jsErrCode>(0);
      s = js_GetLastMsg(&last, nats_->js, options_.stream.c_str(), room->subject.c_str(), nullptr,
                        &code);
      if (s == NATS_OK) {
        last_seq = natsMsg_GetSequence(last);
        natsMsg_Destroy(last);
      } else if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) {
        last_seq = 0;
      } else {
        status = NatsError(s, code, "reading the room's last message");
      }
    } else {
      OnSubscriptionDone(closure);
      sub = nullptr;
      status = NatsError(s, code, "subscribing to the room");
    }
  }
  DoneList dones;
  {
    absl::MutexLock lock(&room->mu);
    if (room->generation != generation) {
      // Stopped meanwhile (Stop): whoever changed the generation answered the joins.
    } else if (!status.ok()) {
      room->consumer = Room::Consumer::kIdle;
      FailPendingLocked(*room, status, dones);
    } else {
      std::swap(room->sub, sub);
      room->target_seq = last_seq;
      room->target_known = true;
      if (room->seen_seq >= last_seq) {
        room->consumer = Room::Consumer::kReady;
        AnswerPendingLocked(*room, clock_->Now(), dones);
      }
    }
  }
  Unsubscribe(sub);  // Only when the room did not take it.
  RunDones(dones);
}

void NatsBroker::Leave(LeaveArgs args, Subscriber* subscriber, Completion<absl::Status> done) {
  std::string room = args.room;
  auto state = std::make_shared<std::pair<LeaveArgs, Completion<absl::Status>>>(std::move(args),
                                                                                std::move(done));
  Post(
      room,
      [this, state, subscriber] {
        LeaveNow(state->first, subscriber);
        std::move(state->second)(absl::OkStatus());
      },
      [this, state, subscriber](absl::Status) {
        // Not running: undo the join here; nothing is delivered any more.
        LeaveNow(state->first, subscriber);
        std::move(state->second)(absl::OkStatus());
      },
      /*bounded=*/false);
}

void NatsBroker::LeaveNow(const LeaveArgs& args, Subscriber* subscriber) {
  std::shared_ptr<Room> room = Find(args.room);
  if (room == nullptr) return;
  if (!args.member_client_id.empty() && room->options->presence) {
    // Best effort: a key left behind by an error expires after presence_ttl.
    PutMember(args.room, nullptr, args.member_client_id).IgnoreError();
    if (room->options->join_leave) {
      v1::ClientInfo left;
      {
        absl::MutexLock lock(&room->mu);
        auto m = room->members.find(args.member_client_id);
        if (m != room->members.end()) left = m->second;
      }
      if (!left.client_id().empty()) SendPresenceEvent(args.room, "LEAVE", left);
    }
  }
  natsSubscription* sub = nullptr;
  DoneList dones;
  {
    absl::MutexLock lock(&room->mu);
    if (!room->subscribers.Remove(subscriber)) {
      for (PendingJoin& join : room->pending) {
        if (join.subscriber == subscriber && !join.cancelled) {
          join.cancelled = true;
          break;
        }
      }
    }
    if (!args.member_client_id.empty()) {
      auto m = room->members.find(args.member_client_id);
      if (m != room->members.end()) {
        v1::ClientInfo left = std::move(m->second);
        room->members.erase(m);
        if (room->options->join_leave) {
          room->subscribers.Deliver(PresenceEventOf(room->name, v1::PresenceEvent::LEAVE, left));
        }
      }
    }
    bool waiting = std::any_of(room->pending.begin(), room->pending.end(),
                               [](const PendingJoin& j) { return !j.cancelled; });
    if (room->subscribers.empty() && !waiting && room->consumer != Room::Consumer::kIdle) {
      // No interest left on this node: stop receiving the room.
      ++room->generation;
      room->consumer = Room::Consumer::kIdle;
      std::swap(sub, room->sub);
      AnswerPendingLocked(*room, clock_->Now(), dones);  // Cancelled joins only.
      TakeAwaitedLocked(*room, true, absl::Now(), dones);
      room->window.clear();
    }
  }
  Unsubscribe(sub);
  RunDones(dones);
}

void NatsBroker::History(HistoryArgs args, Completion<absl::StatusOr<HistoryResult>> done) {
  std::string room = args.room;
  auto shared = std::make_shared<Completion<absl::StatusOr<HistoryResult>>>(std::move(done));
  Post(
      room, [this, args = std::move(args), shared] { std::move (*shared)(HistoryNow(args)); },
      [shared](absl::Status s) { std::move (*shared)(std::move(s)); }, /*bounded=*/false);
}

absl::StatusOr<HistoryResult> NatsBroker::HistoryNow(const HistoryArgs& args) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) return ns.status();
  const uint32_t limit = policy_->HistoryLimit(args.limit);
  // Read the room's stored window: a consumer that stops at the last message.
  Room r(args.room, *ns);
  if (absl::Status s = Usable(); !s.ok()) return s;
  natsMsg* last = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetLastMsg(&last, nats_->js, options_.stream.c_str(), r.subject.c_str(), nullptr, &code);
  uint64_t last_seq = 0;
  if (s == NATS_OK) {
    last_seq = natsMsg_GetSequence(last);
    natsMsg_Destroy(last);
  } else if (s != NATS_NOT_FOUND && code != JSNoMessageFoundErr) {
    return NatsError(s, code, "reading the room's last message");
  }
  absl::MutexLock lock(&r.mu);
  if (last_seq > 0) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = options_.stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription* sub = nullptr;
    code = static_cast<jsErrCode>(0);
    s = js_SubscribeSync(&sub, nats_->js, r.subject.c_str(), nullptr, &so, &code);
    if (s != NATS_OK) return NatsError(s, code, "reading the room's history");
    const absl::Time deadline = absl::Now() + options_.request_timeout;
    uint64_t seen = 0;
    while (seen < last_seq) {
      int64_t wait = absl::ToInt64Milliseconds(deadline - absl::Now());
      natsMsg* msg = nullptr;
      if (wait <= 0 || natsSubscription_NextMsg(&msg, sub, wait) != NATS_OK) break;
      seen = StreamSequenceOf(msg);
      RoomEventPtr e = DecodeStored(msg, r.name);
      natsMsg_Destroy(msg);
      if (e != nullptr) r.Append(e, clock_->Now());
    }
    Unsubscribe(sub);
    if (seen < last_seq) return absl::DeadlineExceededError("reading the room's history timed out");
  }
  HistoryResult result;
  result.position = r.Position();
  uint64_t after = 0;
  if (args.since.has_value()) {
    const v1::Position& since = *args.since;
    if (r.offset == 0) {
      if (since.offset() > 0) {
        return absl::FailedPreconditionError("epoch mismatch: the room has no history");
      }
      return result;
    }
    if (since.epoch() != r.epoch) {
      return absl::FailedPreconditionError(absl::StrCat("epoch mismatch: since is from epoch \"",
                                                        since.epoch(), "\", the room is at \"",
                                                        r.epoch, "\""));
    }
    if (since.offset() > r.offset) {
      return absl::OutOfRangeError(absl::StrFormat(
          "since offset %d is past the room's last offset %d", since.offset(), r.offset));
    }
    after = since.offset();
  }
  std::vector<RoomEventPtr> kept;
  for (const RoomEventPtr& e : r.window) {
    if (OffsetOf(e) > after) kept.push_back(e);
  }
  if (args.reverse) std::reverse(kept.begin(), kept.end());
  if (kept.size() > limit) kept.resize(limit);
  result.messages = std::move(kept);
  return result;
}

void NatsBroker::Presence(std::string room_name,
                          Completion<absl::StatusOr<std::vector<v1::ClientInfo>>> done) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(room_name);
  if (!ns.ok()) return std::move(done)(ns.status());
  if (!(*ns)->presence) {
    return std::move(done)(absl::FailedPreconditionError(
        absl::StrCat("presence is off in the namespace of \"", room_name, "\"")));
  }
  auto shared =
      std::make_shared<Completion<absl::StatusOr<std::vector<v1::ClientInfo>>>>(std::move(done));
  std::string room = room_name;
  Post(
      room, [this, room_name, shared] { std::move (*shared)(PresenceNow(room_name)); },
      [shared](absl::Status s) { std::move (*shared)(std::move(s)); }, /*bounded=*/false);
}

absl::Status NatsBroker::PutMember(absl::string_view room, const v1::ClientInfo* member,
                                   absl::string_view client_id) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  std::string key = MemberKey(room, client_id);
  natsStatus s = NATS_OK;
  if (member != nullptr) {
    std::string value = member->SerializeAsString();
    s = kvStore_Put(nullptr, nats_->presence, key.c_str(), value.data(),
                    static_cast<int>(value.size()));
  } else {
    s = kvStore_Delete(nats_->presence, key.c_str());
  }
  if (s != NATS_OK) return NatsError(s, static_cast<jsErrCode>(0), "writing presence");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::ClientInfo>> NatsBroker::PresenceNow(absl::string_view room) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  kvWatchOptions wo;
  kvWatchOptions_Init(&wo);
  wo.IgnoreDeletes = true;
  wo.Timeout = absl::ToInt64Milliseconds(options_.request_timeout);
  kvWatcher* watcher = nullptr;
  std::string keys = absl::StrCat(KvToken(room), ".*");
  natsStatus s = kvStore_Watch(&watcher, nats_->presence, keys.c_str(), &wo);
  if (s != NATS_OK) return NatsError(s, static_cast<jsErrCode>(0), "reading presence");
  absl::btree_map<std::string, v1::ClientInfo> members;
  const absl::Time deadline = absl::Now() + options_.request_timeout;
  bool complete = false;
  while (absl::Now() < deadline) {
    kvEntry* e = nullptr;
    s = kvWatcher_Next(&e, watcher, absl::ToInt64Milliseconds(deadline - absl::Now()) + 1);
    if (s != NATS_OK) break;
    if (e == nullptr) {  // The initial values are all there.
      complete = true;
      break;
    }
    v1::ClientInfo info;
    if (kvEntry_Operation(e) == kvOp_Put &&
        info.ParseFromArray(kvEntry_Value(e), kvEntry_ValueLen(e))) {
      std::string id = info.client_id();
      members.insert_or_assign(std::move(id), std::move(info));
    }
    kvEntry_Destroy(e);
  }
  kvWatcher_Destroy(watcher);
  if (!complete) return absl::DeadlineExceededError("reading presence timed out");
  std::vector<v1::ClientInfo> out;
  out.reserve(members.size());
  for (auto& [id, info] : members) out.push_back(std::move(info));  // Ordered by client_id.
  return out;
}

void NatsBroker::SendPresenceEvent(absl::string_view room, const char* kind,
                                   const v1::ClientInfo& member) {
  if (!Connected()) return;  // Events are at-most-once, like core NATS.
  std::string subject = absl::StrCat(kPresencePrefix, RoomSubjectToken(room));
  std::string body = member.SerializeAsString();
  natsMsg* msg = nullptr;
  natsStatus s =
      natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, kNodeHeader, nats_->node_id.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, kKindHeader, kind);
  if (s == NATS_OK) natsConnection_PublishMsg(nats_->nc, msg);
  natsMsg_Destroy(msg);
}

void NatsBroker::OnPresenceEvent(absl::string_view subject, absl::string_view node,
                                 absl::string_view kind, absl::string_view body) {
  if (node == nats_->node_id) return;  // Delivered locally already.
  subject.remove_prefix(std::min(subject.size(), sizeof(kPresencePrefix) - 1));
  std::shared_ptr<Room> room = Find(RoomFromSubjectToken(subject));
  if (room == nullptr) return;  // No interest on this node.
  v1::ClientInfo member;
  if (!member.ParseFromString(std::string(body))) return;
  const bool join = kind == "JOIN";
  absl::MutexLock lock(&room->mu);
  if (room->consumer != Room::Consumer::kReady || !room->options->join_leave) return;
  room->subscribers.Deliver(PresenceEventOf(
      room->name, join ? v1::PresenceEvent::JOIN : v1::PresenceEvent::LEAVE, member));
}

void NatsBroker::RefreshPresence() {
  {
    absl::MutexLock lock(&nats_->refresh_mu);
    const absl::Time now = absl::Now();
    if (now - nats_->last_refresh < options_.presence_ttl / 3) return;
    nats_->last_refresh = now;
  }
  if (!Connected()) return;
  std::vector<std::pair<std::string, v1::ClientInfo>> members;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, room] : rooms_) {
      absl::MutexLock room_lock(&room->mu);
      for (const auto& [id, info] : room->members) members.emplace_back(name, info);
    }
  }
  for (const auto& [room, info] : members) {
    PutMember(room, &info, info.client_id()).IgnoreError();  // Retried next round.
  }
}

void NatsBroker::ListRooms(std::string prefix,
                           Completion<absl::StatusOr<std::vector<RoomSummary>>> done) {
  std::vector<std::shared_ptr<Room>> rooms;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = rooms_.lower_bound(prefix);
         it != rooms_.end() && absl::StartsWith(it->first, prefix); ++it) {
      rooms.push_back(it->second);
    }
  }
  std::vector<RoomSummary> out;
  for (const auto& room : rooms) {
    absl::MutexLock lock(&room->mu);
    v1::Position p = room->consumer == Room::Consumer::kReady ? room->Position() : v1::Position();
    if (room->consumer != Room::Consumer::kReady && room->pub_known) {
      p.set_epoch(room->pub_epoch);
      p.set_offset(room->pub_offset);
    }
    out.push_back({room->name, p, static_cast<uint32_t>(room->subscribers.size()),
                   static_cast<uint32_t>(room->members.size())});
  }
  std::move(done)(std::move(out));
}

void NatsBroker::Stats(Completion<BrokerStats> done) {
  std::vector<std::shared_ptr<Room>> rooms;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, room] : rooms_) rooms.push_back(room);
  }
  BrokerStats stats;
  stats.rooms = rooms.size();
  stats.messages_published_total = published_total_.load(std::memory_order_relaxed);
  for (const auto& room : rooms) {
    absl::MutexLock lock(&room->mu);
    stats.subscriptions += room->subscribers.size();
    stats.presence_entries += room->members.size();
  }
  std::move(done)(stats);
}

void NatsBroker::MaintainNow() {
  RefreshPresence();
  std::vector<std::shared_ptr<Room>> rooms;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, room] : rooms_) rooms.push_back(room);
  }
  for (const auto& room : rooms) {
    DoneList dones;
    {
      absl::MutexLock lock(&room->mu);
      room->Trim(clock_->Now());
      TakeAwaitedLocked(*room, false, absl::Now(), dones);  // A stalled consumer.
    }
    RunDones(dones);
    {
      absl::MutexLock lock(&room->mu);
      if (!room->Idle()) continue;
    }
    // An idle room is only this node's cache: its history stays in JetStream.
    absl::MutexLock lock(&mu_);
    absl::MutexLock room_lock(&room->mu);
    auto it = rooms_.find(room->name);
    if (room->Idle() && it != rooms_.end() && it->second == room) {
      room->removed = true;
      rooms_.erase(it);
    }
  }
}

}  // namespace roomcast::core
