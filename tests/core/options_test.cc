// ParseNamespaces (core/options.h): the --namespaces flag. A bad spec is a
// start-up misconfiguration, so every mistake must come back as
// INVALID_ARGUMENT naming what is wrong, never a silently ignored field.
#include "core/options.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Key;
using ::testing::UnorderedElementsAre;

using NamespaceMap = absl::flat_hash_map<std::string, NamespaceOptions>;

class ParseNamespacesTest : public ::testing::Test {
 protected:
  ParseNamespacesTest() {
    // Distinct from the struct defaults so "kept the base" is observable.
    base_.history_size = 7;
    base_.history_ttl = absl::Seconds(42);
    base_.presence = false;
    base_.client_publish = false;
  }

  absl::StatusOr<NamespaceMap> Parse(absl::string_view spec) {
    return ParseNamespaces(spec, base_);
  }

  // Parses a spec that must be valid and returns the one namespace `name`.
  NamespaceOptions ParseOne(absl::string_view spec, const std::string& name) {
    absl::StatusOr<NamespaceMap> parsed = Parse(spec);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) return {};
    EXPECT_EQ(parsed->size(), 1u);
    auto it = parsed->find(name);
    EXPECT_NE(it, parsed->end()) << "no namespace " << name;
    return it == parsed->end() ? NamespaceOptions{} : it->second;
  }

  // Expects `spec` to be refused with a message containing `why`.
  void ExpectInvalid(absl::string_view spec, absl::string_view why) {
    absl::StatusOr<NamespaceMap> parsed = Parse(spec);
    ASSERT_FALSE(parsed.ok()) << "accepted \"" << spec << "\"";
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(std::string(why)));
  }

  NamespaceOptions base_;
};

TEST_F(ParseNamespacesTest, ParsesEveryField) {
  NamespaceOptions chat =
      ParseOne("chat:history_size=100,history_ttl=5m,presence=true,client_publish=true", "chat");
  EXPECT_EQ(chat.history_size, 100u);
  EXPECT_EQ(chat.history_ttl, absl::Minutes(5));
  EXPECT_TRUE(chat.presence);
  EXPECT_TRUE(chat.client_publish);
}

TEST_F(ParseNamespacesTest, ParsesJoinLeave) {
  EXPECT_FALSE(ParseOne("big:join_leave=false", "big").join_leave);
  EXPECT_TRUE(ParseOne("big:join_leave=true", "big").join_leave);
}

TEST_F(ParseNamespacesTest, UnspecifiedFieldsKeepTheBase) {
  NamespaceOptions feed = ParseOne("feed:history_size=0", "feed");
  EXPECT_EQ(feed.history_size, 0u);
  EXPECT_EQ(feed.history_ttl, absl::Seconds(42));
  EXPECT_FALSE(feed.presence);
  EXPECT_FALSE(feed.client_publish);
}

TEST_F(ParseNamespacesTest, NamespaceWithoutFieldsIsTheBase) {
  NamespaceOptions plain = ParseOne("plain", "plain");
  EXPECT_EQ(plain.history_size, 7u);
  EXPECT_EQ(plain.history_ttl, absl::Seconds(42));
}

TEST_F(ParseNamespacesTest, ParsesSeveralNamespacesIgnoringSpacesAndEmptyParts) {
  absl::StatusOr<NamespaceMap> parsed =
      Parse(" chat: history_size = 3 , presence=true ;; feed:client_publish=1; ");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(*parsed, UnorderedElementsAre(Key("chat"), Key("feed")));
  EXPECT_EQ(parsed->at("chat").history_size, 3u);
  EXPECT_TRUE(parsed->at("chat").presence);
  EXPECT_TRUE(parsed->at("feed").client_publish);
  EXPECT_EQ(parsed->at("feed").history_size, 7u);
}

TEST_F(ParseNamespacesTest, EmptySpecDefinesNoNamespace) {
  absl::StatusOr<NamespaceMap> parsed = Parse("");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->empty());
}

TEST_F(ParseNamespacesTest, UnknownOptionIsInvalid) {
  ExpectInvalid("chat:history=5", "unknown namespace option: history");
}

TEST_F(ParseNamespacesTest, NonNumericHistorySizeIsInvalid) {
  ExpectInvalid("chat:history_size=ten", "history_size: not a number: ten");
}

TEST_F(ParseNamespacesTest, NegativeHistorySizeIsInvalid) {
  ExpectInvalid("chat:history_size=-1", "history_size: not a number");
}

TEST_F(ParseNamespacesTest, MissingValueIsInvalid) {
  ExpectInvalid("chat:history_size", "history_size: not a number");
}

TEST_F(ParseNamespacesTest, DurationWithoutUnitIsInvalid) {
  ExpectInvalid("chat:history_ttl=5", "history_ttl: not a duration: 5");
}

TEST_F(ParseNamespacesTest, NegativeDurationIsInvalid) {
  ExpectInvalid("chat:history_ttl=-5s", "history_ttl: not a duration");
}

TEST_F(ParseNamespacesTest, NonBooleanIsInvalid) {
  ExpectInvalid("chat:presence=maybe", "presence: not a boolean: maybe");
  ExpectInvalid("chat:client_publish=", "client_publish: not a boolean");
}

TEST_F(ParseNamespacesTest, ErrorNamesTheNamespace) {
  ExpectInvalid("chat:presence=true;feed:presence=maybe", "namespace feed:");
}

TEST_F(ParseNamespacesTest, DuplicateNamespaceIsInvalid) {
  ExpectInvalid("chat:history_size=1;chat:history_size=2", "namespace defined twice: chat");
}

TEST_F(ParseNamespacesTest, UppercaseNamespaceNameIsInvalid) {
  ExpectInvalid("Chat:presence=true", "invalid namespace name: \"Chat\"");
}

TEST_F(ParseNamespacesTest, EmptyNamespaceNameIsInvalid) {
  ExpectInvalid(":presence=true", "invalid namespace name: \"\"");
}

TEST_F(ParseNamespacesTest, NamespaceNameWithDotIsInvalid) {
  ExpectInvalid("a.b", "invalid namespace name");
}

// The limits that were literals in the services and the server keep their
// values as CoreOptions defaults (behaviour unchanged unless a flag says so).
TEST(CoreOptionsTest, DefaultsKeepTheLimitsThatUsedToBeLiterals) {
  CoreOptions options;
  EXPECT_EQ(options.broker, "memory");
  EXPECT_EQ(options.engine.max_client_id_bytes, 256u);
  EXPECT_EQ(options.max_events_per_edge_batch, 512u);
  EXPECT_EQ(options.keepalive_time, absl::Seconds(30));
  EXPECT_EQ(options.keepalive_timeout, absl::Seconds(10));
  EXPECT_EQ(options.min_client_ping_interval, absl::Seconds(10));
  EXPECT_EQ(options.max_envelope_bytes, 64u * 1024);
  EXPECT_EQ(options.stats_interval, absl::Seconds(1));
}

}  // namespace
}  // namespace roomcast::core
