// How the edge's sessions report I/O errors (edge/session_context.h).
#include "boost/asio/error.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/websocket/error.hpp"
#include "edge/session_context.h"
#include "spdlog/spdlog.h"

namespace roomcast::edge {

namespace net = boost::asio;

ErrorSeverity ClassifyError(const boost::system::error_code& ec) {
  namespace beast = boost::beast;
  if (ec == net::error::operation_aborted || ec == beast::websocket::error::closed ||
      ec == beast::http::error::end_of_stream || ec == net::error::eof) {
    return ErrorSeverity::kQuiet;
  }
  if (ec == net::error::connection_reset || ec == net::error::broken_pipe ||
      ec == net::error::timed_out || ec == net::error::not_connected ||
      ec == beast::error::timeout ||
      // Protocol violations by the peer: every value of these enums.
      ec.category() == make_error_code(beast::websocket::error::closed).category() ||
      ec.category() == make_error_code(beast::http::error::end_of_stream).category()) {
    return ErrorSeverity::kDebug;
  }
  return ErrorSeverity::kWarning;
}

void LogSessionError(const char* kind, const std::string& client, const char* where,
                     const boost::system::error_code& ec) {
  switch (ClassifyError(ec)) {
    case ErrorSeverity::kQuiet:
      return;
    case ErrorSeverity::kDebug:
      spdlog::debug("{} connection error client={} where={} error=\"{}\"", kind, client, where,
                    ec.message());
      return;
    case ErrorSeverity::kWarning:
      spdlog::warn("{} connection error client={} where={} error=\"{}\"", kind, client, where,
                   ec.message());
      return;
  }
}

}  // namespace roomcast::edge
