// RoomFanout (core/room_fanout.h): counted joins and one delivery per
// subscriber, in order.
#include "core/room_fanout.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class Recorder final : public Subscriber {
 public:
  void OnEvent(const RoomEventPtr& event) override { got.push_back(event->message().data()); }
  std::vector<std::string> got;
};

RoomEventPtr Message(const std::string& data) {
  v1::RoomEvent event;
  event.mutable_message()->set_data(data);
  return MakeRoomEvent(std::move(event));
}

TEST(RoomFanoutTest, EverySubscriberGetsEveryEventInOrder) {
  RoomFanout fanout;
  Recorder a, b;
  fanout.Add(&a);
  fanout.Add(&b);
  fanout.Deliver(Message("1"));
  fanout.Deliver(Message("2"));
  EXPECT_THAT(a.got, ElementsAre("1", "2"));
  EXPECT_THAT(b.got, ElementsAre("1", "2"));
}

TEST(RoomFanoutTest, ASubscriberJoinedTwiceGetsEachEventOnce) {
  RoomFanout fanout;
  Recorder a;
  EXPECT_TRUE(fanout.Add(&a));
  EXPECT_FALSE(fanout.Add(&a));
  EXPECT_EQ(fanout.size(), 1u);
  EXPECT_EQ(fanout.joins(&a), 2);
  fanout.Deliver(Message("1"));
  EXPECT_THAT(a.got, ElementsAre("1"));
}

TEST(RoomFanoutTest, ASubscriberStaysUntilItsLastRemoval) {
  RoomFanout fanout;
  Recorder a;
  fanout.Add(&a);
  fanout.Add(&a);
  EXPECT_FALSE(fanout.Remove(&a));
  fanout.Deliver(Message("still here"));
  EXPECT_TRUE(fanout.Remove(&a));
  fanout.Deliver(Message("gone"));
  EXPECT_THAT(a.got, ElementsAre("still here"));
  EXPECT_TRUE(fanout.empty());
}

TEST(RoomFanoutTest, RemovingAStrangerChangesNothing) {
  RoomFanout fanout;
  Recorder member, stranger;
  fanout.Add(&member);
  EXPECT_FALSE(fanout.Remove(&stranger));
  EXPECT_EQ(fanout.joins(&member), 1);
  fanout.Deliver(Message("1"));
  EXPECT_THAT(member.got, ElementsAre("1"));
  EXPECT_THAT(stranger.got, IsEmpty());
}

TEST(RoomEventTest, SubscribeFrameIsBuiltOnceAndCarriesTheEvent) {
  v1::RoomEvent proto;
  proto.mutable_message()->set_room("lobby");
  proto.mutable_message()->set_data("hi");
  proto.mutable_message()->mutable_position()->set_offset(3);
  RoomEventPtr event = MakeRoomEvent(std::move(proto));
  const std::string& first = event->SubscribeFrame();
  EXPECT_EQ(&event->SubscribeFrame(), &first);  // Shared, not rebuilt per stream.
  v1::SubscribeResponse response;
  ASSERT_TRUE(response.ParseFromString(first));
  EXPECT_EQ(response.message().room(), "lobby");
  EXPECT_EQ(response.message().data(), "hi");
  EXPECT_EQ(response.message().position().offset(), 3u);
}

}  // namespace
}  // namespace roomcast::core
