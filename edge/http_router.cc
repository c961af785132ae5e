#include "edge/http_router.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "boost/url/parse.hpp"

namespace roomcast::edge {
namespace {

HttpResponseSpec Text(unsigned status, std::string body) {
  HttpResponseSpec response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

RouteDecision Respond(HttpResponseSpec response) {
  RouteDecision decision;
  decision.route = Route::kRespond;
  decision.response = std::move(response);
  return decision;
}

RouteDecision Go(Route route) {
  RouteDecision decision;
  decision.route = route;
  return decision;
}

RouteDecision Forbidden() {
  HttpResponseSpec response = Text(403, "origin not allowed\n");
  response.close = true;
  return Respond(std::move(response));
}

// Refuses a new long-lived connection when shutting down, without a core
// link, or full; nullopt when it is admitted.
std::optional<RouteDecision> Refuse(const EdgeState& state, const EdgeOptions& options) {
  const char* why = nullptr;
  if (state.shutting_down) {
    why = "shutting down\n";
  } else if (state.link_generation == 0) {
    why = "not ready: no core link\n";
  } else if (static_cast<size_t>(std::max<int64_t>(0, state.connections)) >=
             options.max_connections) {
    why = "server full\n";
  }
  if (why == nullptr) return std::nullopt;
  HttpResponseSpec response = Text(503, why);
  response.headers.emplace_back("Retry-After", absl::StrCat(options.retry_after_seconds));
  response.close = true;
  RouteDecision decision = Respond(std::move(response));
  decision.refused = true;
  return decision;
}

}  // namespace

std::optional<HttpHeaders> CheckOrigin(const HttpRequestInfo& request, const EdgeOptions& options) {
  HttpHeaders headers;
  if (!request.origin.has_value()) return headers;
  const std::string& origin = *request.origin;
  if (origin == "http://" + request.host || origin == "https://" + request.host) return headers;
  const auto& allowed = options.allowed_origins;
  if (std::find(allowed.begin(), allowed.end(), origin) != allowed.end()) {
    headers.emplace_back("Access-Control-Allow-Origin", origin);
    headers.emplace_back("Access-Control-Allow-Credentials", "true");
    headers.emplace_back("Vary", "Origin");
    return headers;
  }
  if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) {
    headers.emplace_back("Access-Control-Allow-Origin", "*");
    return headers;
  }
  return std::nullopt;
}

RouteDecision RouteRequest(const HttpRequestInfo& request, const EdgeState& state,
                           const EdgeOptions& options) {
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url) return Respond(Text(400, "bad request target\n"));
  const std::string path = url->path();
  const bool is_get = request.method == HttpMethod::kGet || request.method == HttpMethod::kHead;

  if (path == "/ws" && request.websocket_upgrade) {
    if (!CheckOrigin(request, options).has_value()) return Forbidden();
    if (auto refused = Refuse(state, options)) return *std::move(refused);
    RouteDecision decision;
    decision.route = Route::kWebSocket;
    decision.generation = state.link_generation;
    for (absl::string_view p : absl::StrSplit(request.sec_websocket_protocol, ',')) {
      if (absl::StripAsciiWhitespace(p) == kBinarySubprotocol) decision.binary = true;
    }
    return decision;
  }
  if (path == "/sse" && is_get) {
    std::optional<HttpHeaders> cors = CheckOrigin(request, options);
    if (!cors.has_value()) return Forbidden();
    RouteDecision decision;
    decision.route = Route::kSse;
    decision.cors_headers = *std::move(cors);
    decision.last_event_id = request.last_event_id;
    for (auto param : url->params()) {
      if (param.key == "room") {
        for (absl::string_view r :
             absl::StrSplit(std::string(param.value), ',', absl::SkipEmpty())) {
          if (std::find(decision.rooms.begin(), decision.rooms.end(), r) == decision.rooms.end()) {
            decision.rooms.emplace_back(r);
          }
        }
      } else if (param.key == "lastEventId" && decision.last_event_id.empty()) {
        decision.last_event_id = param.value;
      }
    }
    if (decision.rooms.empty() || decision.rooms.size() > options.max_rooms_per_connection) {
      return Respond(Text(400, absl::StrCat("name 1 to ", options.max_rooms_per_connection,
                                            " rooms: /sse?room=a&room=b\n")));
    }
    if (auto refused = Refuse(state, options)) return *std::move(refused);
    decision.generation = state.link_generation;
    return decision;
  }
  if (path == "/publish" &&
      (request.method == HttpMethod::kPost || request.method == HttpMethod::kOptions)) {
    std::optional<HttpHeaders> cors = CheckOrigin(request, options);
    if (!cors.has_value()) return Forbidden();
    if (request.method == HttpMethod::kPost) {
      RouteDecision decision;
      decision.route = Route::kPublish;
      decision.cors_headers = *std::move(cors);
      return decision;
    }
    HttpResponseSpec response;
    response.status = 204;
    response.content_type.clear();
    response.headers = *std::move(cors);
    response.headers.emplace_back("Access-Control-Allow-Methods", "POST, OPTIONS");
    response.headers.emplace_back("Access-Control-Allow-Headers", "Content-Type");
    response.headers.emplace_back("Access-Control-Max-Age",
                                  absl::StrCat(absl::ToInt64Seconds(options.cors_max_age)));
    return Respond(std::move(response));
  }
  if (path == "/healthz" && is_get) {
    if (state.shutting_down) return Respond(Text(503, "not ready: shutting down\n"));
    if (state.link_generation == 0) return Respond(Text(503, "not ready: no core link\n"));
    return Respond(Text(200, "ok\n"));
  }
  if (path == "/metrics" && is_get) return Go(Route::kMetrics);
  if (path == "/" && is_get) return Go(Route::kDemoPage);
  if (path == "/roomcast.js" && is_get) return Go(Route::kClientModule);
  return Respond(Text(404, "not found\n"));
}

}  // namespace roomcast::edge
