// Policy (core/policy.h): names, namespaces and limits, without storage.
#include "core/policy.h"

#include <string>

#include "gtest/gtest.h"

namespace roomcast::core {
namespace {

class PolicyTest : public ::testing::Test {
 protected:
  PolicyTest() : policy_(Options()) {}

  static EngineOptions Options() {
    EngineOptions options;
    NamespaceOptions chat;
    chat.history_size = 7;
    NamespaceOptions feed;
    feed.client_publish = false;
    options.namespaces = {{"chat", chat}, {"feed", feed}};
    options.max_room_name_bytes = 16;
    options.max_payload_bytes = 10;
    options.max_client_id_bytes = 4;
    options.max_client_info_bytes = 32;
    options.max_history_limit = 50;
    return options;
  }

  static v1::ClientInfo Client(std::string client_id, std::string user_id = "") {
    v1::ClientInfo c;
    c.set_client_id(std::move(client_id));
    c.set_user_id(std::move(user_id));
    return c;
  }

  Policy policy_;
};

TEST_F(PolicyTest, RoomWithoutNamespaceUsesTheDefaultNamespace) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_.Resolve("lobby");
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ(*ns, &policy_.options().default_namespace);
}

TEST_F(PolicyTest, RoomInANamedNamespaceGetsItsOptions) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_.Resolve("chat:lobby");
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ((*ns)->history_size, 7u);
}

TEST_F(PolicyTest, UnknownNamespaceIsInvalidArgument) {
  EXPECT_EQ(policy_.Resolve("nope:lobby").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyTest, MalformedAndOverlongNamesAreInvalidArgument) {
  EXPECT_EQ(policy_.Resolve("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy_.Resolve("lob by").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy_.Resolve(std::string(17, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(policy_.Resolve(std::string(16, 'a')).ok());
}

TEST_F(PolicyTest, PayloadOfExactlyTheLimitIsAcceptedAndOneMoreIsNot) {
  EXPECT_TRUE(policy_.CheckPayload(10).ok());
  EXPECT_EQ(policy_.CheckPayload(11).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyTest, ClientAndUserIdsAreLimitedToMaxClientIdBytes) {
  EXPECT_TRUE(policy_.ValidateClientInfo(Client("abcd", "wxyz")).ok());
  EXPECT_EQ(policy_.ValidateClientInfo(Client("abcde")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(policy_.ValidateClientInfo(Client("a", "vwxyz")).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyTest, ClientInfoOverItsLimitIsInvalidArgument) {
  v1::ClientInfo client = Client("c1");
  (*client.mutable_info()->mutable_fields())["k"].set_string_value(std::string(40, 'x'));
  EXPECT_EQ(policy_.ValidateClientInfo(client).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyTest, ClientPublishFollowsTheNamespace) {
  EXPECT_TRUE(policy_.CheckClientPublish("lobby").ok());
  EXPECT_TRUE(policy_.CheckClientPublish("chat:lobby").ok());
  EXPECT_EQ(policy_.CheckClientPublish("feed:news").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(policy_.CheckClientPublish("nope:x").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyTest, HistoryLimitDefaultsAndCapsAtMaxHistoryLimit) {
  EXPECT_EQ(policy_.HistoryLimit(0), 50u);
  EXPECT_EQ(policy_.HistoryLimit(7), 7u);
  EXPECT_EQ(policy_.HistoryLimit(51), 50u);
}

TEST(CheckGrantTest, ExactNamesPrefixesAndAll) {
  v1::Grants grants;
  grants.add_subscribe("a");
  grants.add_subscribe("chat:*");
  EXPECT_TRUE(CheckGrant(grants, RoomOp::kSubscribe, "a").ok());
  EXPECT_TRUE(CheckGrant(grants, RoomOp::kSubscribe, "chat:lobby").ok());
  EXPECT_EQ(CheckGrant(grants, RoomOp::kSubscribe, "ab").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckGrant(grants, RoomOp::kSubscribe, "chat").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckGrant(grants, RoomOp::kPublish, "a").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckGrant(v1::Grants(), RoomOp::kHistory, "a").code(),
            absl::StatusCode::kPermissionDenied);
  grants.set_all(true);
  EXPECT_TRUE(CheckGrant(grants, RoomOp::kPublish, "anything").ok());
}

}  // namespace
}  // namespace roomcast::core
