// Plain HTTP (Beast glue): reads requests, asks the router
// (edge/http_router.h) what to do, and carries it out: a response, a
// WebSocket upgrade, an SSE stream, POST /publish (edge/publish.h),
// /metrics (edge/metrics.h) or the demo page.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/post.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "edge/auth.h"
#include "edge/demo_page.h"
#include "edge/http_router.h"
#include "edge/metrics.h"
#include "edge/publish.h"
#include "edge/sessions.h"
#include "spdlog/spdlog.h"

namespace roomcast::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

HttpMethod MethodOf(http::verb verb) {
  switch (verb) {
    case http::verb::get:
      return HttpMethod::kGet;
    case http::verb::head:
      return HttpMethod::kHead;
    case http::verb::post:
      return HttpMethod::kPost;
    case http::verb::options:
      return HttpMethod::kOptions;
    default:
      return HttpMethod::kOther;
  }
}

HttpRequestInfo InfoOf(const http::request<http::string_body>& req) {
  HttpRequestInfo info;
  info.method = MethodOf(req.method());
  info.target = std::string(req.target());
  if (auto it = req.find(http::field::origin); it != req.end()) {
    info.origin = std::string(it->value());
  }
  info.host = std::string(req[http::field::host]);
  info.websocket_upgrade = beast::websocket::is_upgrade(req);
  info.sec_websocket_protocol = std::string(req[http::field::sec_websocket_protocol]);
  info.last_event_id = std::string(req["Last-Event-ID"]);
  return info;
}

template <class Body>
void AddHeaders(http::response<Body>& res, const HttpHeaders& headers) {
  for (const auto& [name, value] : headers) res.set(name, value);
}

class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(EdgeContext& ctx, tcp::socket&& socket, size_t shard)
      : ctx_(ctx), stream_(std::move(socket)), shard_(shard) {}

  void Run() { DoRead(); }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(ctx_.options.max_header_bytes));
    parser_->body_limit(ctx_.options.max_frame_bytes + ctx_.options.publish_body_slack_bytes);
    stream_.expires_after(ToSteady(ctx_.options.handshake_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  // Logs an I/O error, unless it is an ordinary end of a connection.
  void Fail(beast::error_code ec, const char* where) { LogSessionError("http", "", where, ec); }

  void OnRead(beast::error_code ec, size_t) {
    if (ec == http::error::end_of_stream) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec == http::error::body_limit) {
      Respond(Text(413, "request body too large\n", parser_->get()));
      return;
    }
    if (ec) {  // Timed out or garbage: drop the connection.
      Fail(ec, "read");
      return;
    }
    Route(parser_->release());
  }

  http::response<http::string_body> Text(
      unsigned status, std::string body, const http::request<http::string_body>& req,
      absl::string_view content_type = "text/plain; charset=utf-8") {
    http::response<http::string_body> res(static_cast<http::status>(status), req.version());
    res.set(http::field::server, "roomcast-edge");
    if (!content_type.empty()) res.set(http::field::content_type, std::string(content_type));
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  void Route(http::request<http::string_body> req) {
    EdgeState state;
    state.shutting_down = ctx_.shutting_down;
    state.link_generation = ctx_.link.generation();
    state.connections = ctx_.hub.counters().connections();
    RouteDecision decision = RouteRequest(InfoOf(req), state, ctx_.options);
    if (decision.refused) ctx_.hub.counters().refused_total.fetch_add(1);
    switch (decision.route) {
      case Route::kRespond: {
        const HttpResponseSpec& spec = decision.response;
        auto res = Text(spec.status, spec.body, req, spec.content_type);
        AddHeaders(res, spec.headers);
        if (spec.close) res.keep_alive(false);
        Respond(std::move(res));
        return;
      }
      case Route::kWebSocket: {
        // A refusal is carried out after the upgrade (close 4501), where a
        // browser can read it.
        absl::StatusOr<Identity> identity = IdentityOf(req);
        stream_.expires_never();
        StartWebSocketSession(ctx_, stream_.release_socket(), shard_, decision.generation,
                              decision.binary, std::move(identity), std::move(req));
        return;
      }
      case Route::kSse: {
        absl::StatusOr<Identity> identity = IdentityOf(req);
        if (!identity.ok()) {
          Unauthorized(req, decision.cors_headers, identity.status());
          return;
        }
        http::response<http::empty_body> headers(http::status::ok, req.version());
        headers.set(http::field::server, "roomcast-edge");
        AddHeaders(headers, decision.cors_headers);
        stream_.expires_never();
        StartSseSession(ctx_, std::move(stream_), shard_, decision.generation,
                        std::move(decision.rooms), ParseSseCursor(decision.last_event_id),
                        *std::move(identity), std::move(headers));
        return;
      }
      case Route::kPublish:
        Publish(std::move(req), std::move(decision.cors_headers));
        return;
      case Route::kMetrics:
        Respond(Text(200,
                     RenderMetrics(ctx_.hub.counters(),
                                   LinkMetrics{.up = ctx_.link.generation() != 0,
                                               .overflow_total = ctx_.link.overflow_total()}),
                     req, "text/plain; version=0.0.4"));
        return;
      case Route::kDemoPage:
        Respond(Text(200, std::string(DemoPage()), req, "text/html; charset=utf-8"));
        return;
      case Route::kClientModule:
        Respond(Text(200, std::string(ClientModule()), req, "text/javascript; charset=utf-8"));
        return;
    }
  }

  // The identity of a request's token (?token= or Authorization: Bearer).
  // Checked once per connection (per request for /publish), never per
  // message.
  absl::StatusOr<Identity> IdentityOf(const http::request<http::string_body>& req) {
    if (ctx_.options.token_verifier == nullptr) {
      return Authenticate(nullptr, true, std::nullopt, absl::Now());
    }
    return Authenticate(ctx_.options.token_verifier.get(), ctx_.options.allow_anonymous,
                        TokenOf(absl::string_view(req.target().data(), req.target().size()),
                                absl::string_view(req[http::field::authorization].data(),
                                                  req[http::field::authorization].size())),
                        absl::Now());
  }

  // HTTP 401 with {"error":{"code":16,"message":...}}; the connection closes.
  void Unauthorized(const http::request<http::string_body>& req, const HttpHeaders& cors,
                    const absl::Status& status) {
    ctx_.hub.counters().refused_total.fetch_add(1);
    auto res = Text(401, UnauthorizedBody(status.message()), req, "application/json");
    AddHeaders(res, cors);
    res.set(http::field::www_authenticate, "Bearer");
    res.keep_alive(false);
    Respond(std::move(res));
  }

  // POST /publish {"room": "...", "data": <any JSON>} → {"position": {...}}
  void Publish(http::request<http::string_body> req, HttpHeaders cors) {
    absl::StatusOr<Identity> identity = IdentityOf(req);
    if (!identity.ok()) {
      Unauthorized(req, cors, identity.status());
      return;
    }
    absl::StatusOr<v1::PublishRequest> publish = ParsePublishBody(req.body());
    if (!publish.ok()) {
      PublishDone(req, cors,
                  ErrorReply(grpc::StatusCode::INVALID_ARGUMENT, publish.status().message()));
      return;
    }
    uint64_t generation = ctx_.link.generation();
    if (generation == 0) {
      PublishDone(req, cors, ErrorReply(grpc::StatusCode::UNAVAILABLE, "not ready: no core link"));
      return;
    }
    // A short-lived client of its own, so the core applies the same rules
    // as to a WebSocket publish.
    std::string client_id = ctx_.hub.NewClientId();
    if (!Allowed(identity->grants, RoomOp::kPublish, publish->room())) {
      PublishDone(req, cors,
                  ErrorReply(grpc::StatusCode::PERMISSION_DENIED,
                             absl::StrCat("not allowed to publish to \"",
                                          publish->room().substr(0, 256), "\"")));
      return;
    }
    v1::EdgeToCore connected;
    AnnounceIdentity(*identity, *connected.mutable_client_connected());
    connected.mutable_client_connected()->mutable_client()->set_client_id(client_id);
    if (!ctx_.link.Send(generation, std::move(connected))) {
      PublishDone(req, cors,
                  ctx_.link.generation() != generation
                      ? ErrorReply(grpc::StatusCode::UNAVAILABLE, "the core link went down")
                      : ErrorReply(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "the edge's link to the core is congested; retry later"));
      return;
    }
    v1::EdgeRequest request;
    request.set_client_id(client_id);
    *request.mutable_publish() = *std::move(publish);
    auto state = std::make_shared<std::pair<http::request<http::string_body>, HttpHeaders>>(
        std::move(req), std::move(cors));
    ctx_.link.Request(
        generation, std::move(request),
        [self = shared_from_this(), state, client_id, generation](v1::EdgeReply reply) {
          v1::EdgeToCore gone;
          gone.mutable_client_disconnected()->set_client_id(client_id);
          self->ctx_.link.Send(generation, std::move(gone));
          net::post(self->stream_.get_executor(), [self, state, reply = std::move(reply)] {
            self->PublishDone(state->first, state->second, reply);
          });
        });
  }

  void PublishDone(const http::request<http::string_body>& req, const HttpHeaders& cors,
                   const v1::EdgeReply& reply) {
    PublishResponse rendered = RenderPublishReply(reply);
    auto res = Text(rendered.status, std::move(rendered.json), req, "application/json");
    AddHeaders(res, cors);
    Respond(std::move(res));
  }

  template <class Body>
  void Respond(http::response<Body> res) {
    auto sp = std::make_shared<http::response<Body>>(std::move(res));
    stream_.expires_after(ToSteady(ctx_.options.write_timeout));
    http::async_write(stream_, *sp, [self = shared_from_this(), sp](beast::error_code ec, size_t) {
      if (ec) self->Fail(ec, "write");
      if (ec || !sp->keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->DoRead();
    });
  }

  EdgeContext& ctx_;
  beast::tcp_stream stream_;
  const size_t shard_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

}  // namespace

void StartHttpSession(EdgeContext& ctx, tcp::socket socket, size_t shard) {
  std::make_shared<HttpSession>(ctx, std::move(socket), shard)->Run();
}

}  // namespace roomcast::edge
