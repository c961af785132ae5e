// Routing, CORS and admission as plain decisions: no sockets, no Beast.
#include "edge/http_router.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

class HttpRouterTest : public ::testing::Test {
 protected:
  HttpRouterTest() {
    options_.max_connections = 10;
    options_.max_rooms_per_connection = 3;
    state_.link_generation = 7;
  }

  RouteDecision Get(std::string target) {
    HttpRequestInfo request;
    request.method = HttpMethod::kGet;
    request.target = std::move(target);
    request.host = "edge.example:8080";
    request.origin = origin_;
    return RouteRequest(request, state_, options_);
  }
  RouteDecision Upgrade(std::string protocols = "") {
    HttpRequestInfo request;
    request.target = "/ws";
    request.host = "edge.example:8080";
    request.origin = origin_;
    request.websocket_upgrade = true;
    request.sec_websocket_protocol = std::move(protocols);
    return RouteRequest(request, state_, options_);
  }
  RouteDecision Publish(HttpMethod method = HttpMethod::kPost) {
    HttpRequestInfo request;
    request.method = method;
    request.target = "/publish";
    request.host = "edge.example:8080";
    request.origin = origin_;
    return RouteRequest(request, state_, options_);
  }

  EdgeOptions options_;
  EdgeState state_;
  std::optional<std::string> origin_;
};

TEST_F(HttpRouterTest, WebSocketUpgradeIsAdmittedOnTheCurrentGeneration) {
  RouteDecision d = Upgrade();
  EXPECT_EQ(d.route, Route::kWebSocket);
  EXPECT_EQ(d.generation, 7u);
  EXPECT_FALSE(d.binary);
}

TEST_F(HttpRouterTest, BinarySubprotocolAmongOthers) {
  EXPECT_TRUE(Upgrade("chat, roomcast.v1.proto").binary);
  EXPECT_FALSE(Upgrade("roomcast.v1.protobuf").binary);
}

TEST_F(HttpRouterTest, WsWithoutUpgradeIsNotFound) {
  RouteDecision d = Get("/ws");
  EXPECT_EQ(d.route, Route::kRespond);
  EXPECT_EQ(d.response.status, 404u);
}

TEST_F(HttpRouterTest, FullEdgeRefusesWith503AndRetryAfter) {
  state_.connections = 10;
  RouteDecision d = Upgrade();
  EXPECT_EQ(d.route, Route::kRespond);
  EXPECT_EQ(d.response.status, 503u);
  EXPECT_EQ(d.response.body, "server full\n");
  EXPECT_THAT(d.response.headers, Contains(Pair("Retry-After", "5")));
  EXPECT_TRUE(d.response.close);
  EXPECT_TRUE(d.refused);
}

TEST_F(HttpRouterTest, RetryAfterComesFromTheOptions) {
  options_.retry_after_seconds = 30;
  state_.shutting_down = true;
  EXPECT_THAT(Get("/sse?room=a").response.headers, Contains(Pair("Retry-After", "30")));
}

TEST_F(HttpRouterTest, NoCoreLinkRefusesNewConnections) {
  state_.link_generation = 0;
  RouteDecision d = Get("/sse?room=a");
  EXPECT_EQ(d.response.status, 503u);
  EXPECT_EQ(d.response.body, "not ready: no core link\n");
  EXPECT_TRUE(d.refused);
}

TEST_F(HttpRouterTest, ShuttingDownIsSaidBeforeFull) {
  state_.shutting_down = true;
  state_.connections = 100;
  EXPECT_EQ(Upgrade().response.body, "shutting down\n");
}

TEST_F(HttpRouterTest, SameOriginNeedsNoCorsHeaders) {
  origin_ = "http://edge.example:8080";
  RouteDecision d = Get("/sse?room=a");
  EXPECT_EQ(d.route, Route::kSse);
  EXPECT_THAT(d.cors_headers, IsEmpty());
}

TEST_F(HttpRouterTest, ForeignOriginIsForbidden) {
  origin_ = "https://evil.example";
  for (RouteDecision d :
       {Upgrade(), Get("/sse?room=a"), Publish(), Publish(HttpMethod::kOptions)}) {
    EXPECT_EQ(d.route, Route::kRespond);
    EXPECT_EQ(d.response.status, 403u);
    EXPECT_TRUE(d.response.close);
  }
}

TEST_F(HttpRouterTest, ListedOriginGetsCredentialedCors) {
  options_.allowed_origins = {"https://app.example"};
  origin_ = "https://app.example";
  RouteDecision d = Publish();
  EXPECT_EQ(d.route, Route::kPublish);
  EXPECT_THAT(
      d.cors_headers,
      ElementsAre(Pair("Access-Control-Allow-Origin", "https://app.example"),
                  Pair("Access-Control-Allow-Credentials", "true"), Pair("Vary", "Origin")));
}

TEST_F(HttpRouterTest, WildcardOriginWithoutCredentials) {
  options_.allowed_origins = {"*"};
  origin_ = "https://any.example";
  EXPECT_THAT(Get("/sse?room=a").cors_headers,
              ElementsAre(Pair("Access-Control-Allow-Origin", "*")));
}

TEST_F(HttpRouterTest, PreflightAnswers204WithMethodsAndMaxAge) {
  options_.allowed_origins = {"*"};
  origin_ = "https://any.example";
  RouteDecision d = Publish(HttpMethod::kOptions);
  EXPECT_EQ(d.response.status, 204u);
  EXPECT_THAT(d.response.headers, Contains(Pair("Access-Control-Allow-Methods", "POST, OPTIONS")));
  EXPECT_THAT(d.response.headers, Contains(Pair("Access-Control-Max-Age", "600")));
  EXPECT_THAT(d.response.headers, Contains(Pair("Access-Control-Allow-Origin", "*")));
}

TEST_F(HttpRouterTest, SseRoomsAreSplitAndDeduplicatedInOrder) {
  RouteDecision d = Get("/sse?room=b,a&room=b&room=c");
  EXPECT_EQ(d.route, Route::kSse);
  EXPECT_THAT(d.rooms, ElementsAre("b", "a", "c"));
}

TEST_F(HttpRouterTest, SseWithoutRoomsOrTooManyIs400) {
  EXPECT_EQ(Get("/sse").response.status, 400u);
  RouteDecision d = Get("/sse?room=a,b,c,d");
  EXPECT_EQ(d.response.status, 400u);
  EXPECT_EQ(d.response.body, "name 1 to 3 rooms: /sse?room=a&room=b\n");
}

TEST_F(HttpRouterTest, LastEventIdHeaderWinsOverQuery) {
  EXPECT_EQ(Get("/sse?room=a&lastEventId=q").last_event_id, "q");
  HttpRequestInfo request;
  request.target = "/sse?room=a&lastEventId=q";
  request.last_event_id = "header";
  state_.link_generation = 1;
  EXPECT_EQ(RouteRequest(request, state_, options_).last_event_id, "header");
}

TEST_F(HttpRouterTest, HealthSaysWhyNotReady) {
  EXPECT_EQ(Get("/healthz").response.status, 200u);
  state_.link_generation = 0;
  EXPECT_EQ(Get("/healthz").response.body, "not ready: no core link\n");
  state_.shutting_down = true;
  RouteDecision d = Get("/healthz");
  EXPECT_EQ(d.response.status, 503u);
  EXPECT_EQ(d.response.body, "not ready: shutting down\n");
  EXPECT_FALSE(d.refused);
}

TEST_F(HttpRouterTest, StaticRoutesAndUnknownPaths) {
  EXPECT_EQ(Get("/metrics").route, Route::kMetrics);
  EXPECT_EQ(Get("/").route, Route::kDemoPage);
  EXPECT_EQ(Get("/roomcast.js").route, Route::kClientModule);
  EXPECT_EQ(Get("/nope").response.status, 404u);
  EXPECT_EQ(Publish(HttpMethod::kGet).response.status, 404u);
}

TEST_F(HttpRouterTest, BadTargetIs400) {
  RouteDecision d = Get("http://absolute.example/");
  EXPECT_EQ(d.response.status, 400u);
  EXPECT_EQ(d.response.body, "bad request target\n");
}

}  // namespace
}  // namespace roomcast::edge
