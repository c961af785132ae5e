// Room name rules (core/room_name.h): what a client may call a room, and how
// the namespace is found. Untrusted input: every bad name must come back as
// INVALID_ARGUMENT, never a crash.
#include "core/room_name.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::core {
namespace {

using ::testing::HasSubstr;

class RoomNameTest : public ::testing::Test {
 protected:
  static constexpr size_t kMaxBytes = 16;

  absl::Status Validate(absl::string_view room) { return ValidateRoomName(room, kMaxBytes); }

  void ExpectInvalid(absl::string_view room, absl::string_view why) {
    absl::Status s = Validate(room);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "room \"" << room << "\": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(why))) << "room \"" << room << "\"";
  }
};

TEST_F(RoomNameTest, AcceptsPlainName) { EXPECT_TRUE(Validate("lobby").ok()); }

TEST_F(RoomNameTest, AcceptsNamespacedName) { EXPECT_TRUE(Validate("chat:lobby").ok()); }

TEST_F(RoomNameTest, AcceptsEveryAllowedCharacterOfTheName) {
  EXPECT_TRUE(Validate("aZ09_-.=@/+").ok());
  EXPECT_TRUE(ValidateRoomName("ns_-09:aZ09_-.=@/+", 100).ok());
}

TEST_F(RoomNameTest, AcceptsNameOfExactlyMaxBytesNamespaceIncluded) {
  EXPECT_TRUE(Validate("chat:abcdefghijk").ok());  // 5 + 11 = 16 bytes.
}

TEST_F(RoomNameTest, RejectsEmptyName) { ExpectInvalid("", "empty"); }

TEST_F(RoomNameTest, RejectsNameOneByteOverMaxNamespaceIncluded) {
  ExpectInvalid("chat:abcdefghijkl", "longer than the limit of 16");  // 17 bytes.
}

TEST_F(RoomNameTest, RejectsSpace) { ExpectInvalid("lob by", "character outside"); }

TEST_F(RoomNameTest, RejectsNonAsciiBytes) { ExpectInvalid("caf\xc3\xa9", "byte 0xc3"); }

TEST_F(RoomNameTest, RejectsEmbeddedNulByte) {
  ExpectInvalid(absl::string_view("ab\0cd", 5), "byte 0x00");
}

TEST_F(RoomNameTest, RejectsSecondColon) { ExpectInvalid("chat:a:b", "byte 0x3a"); }

TEST_F(RoomNameTest, RejectsEmptyNamespace) { ExpectInvalid(":lobby", "namespace"); }

TEST_F(RoomNameTest, RejectsUppercaseNamespace) { ExpectInvalid("Chat:lobby", "namespace"); }

TEST_F(RoomNameTest, RejectsNamespaceWithDot) { ExpectInvalid("a.b:lobby", "namespace"); }

TEST_F(RoomNameTest, RejectsEmptyNameAfterNamespace) {
  ExpectInvalid("chat:", "empty after its namespace");
}

TEST_F(RoomNameTest, NamespaceOfIsThePartBeforeTheColon) {
  EXPECT_EQ(NamespaceOf("chat:lobby"), "chat");
  EXPECT_EQ(NamespaceOf("lobby"), "");
}

TEST_F(RoomNameTest, IsValidNamespaceAcceptsLowercaseDigitsUnderscoreDash) {
  EXPECT_TRUE(IsValidNamespace("a-z_09"));
  EXPECT_FALSE(IsValidNamespace(""));
  EXPECT_FALSE(IsValidNamespace("Chat"));
  EXPECT_FALSE(IsValidNamespace("a:b"));
}

}  // namespace
}  // namespace roomcast::core
