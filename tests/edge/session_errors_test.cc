// Which I/O errors a session logs, and at what level: ordinary ends of a
// connection stay quiet, what peers cause is debug, the rest a warning.
#include "boost/asio/error.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/websocket/error.hpp"
#include "edge/session_context.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;

TEST(ClassifyErrorTest, OrdinaryEndsAreQuiet) {
  EXPECT_EQ(ClassifyError(net::error::operation_aborted), ErrorSeverity::kQuiet);
  EXPECT_EQ(ClassifyError(beast::websocket::error::closed), ErrorSeverity::kQuiet);
  EXPECT_EQ(ClassifyError(beast::http::error::end_of_stream), ErrorSeverity::kQuiet);
  EXPECT_EQ(ClassifyError(net::error::eof), ErrorSeverity::kQuiet);
}

TEST(ClassifyErrorTest, WhatPeersCauseIsDebug) {
  EXPECT_EQ(ClassifyError(net::error::connection_reset), ErrorSeverity::kDebug);
  EXPECT_EQ(ClassifyError(net::error::broken_pipe), ErrorSeverity::kDebug);
  EXPECT_EQ(ClassifyError(beast::error::timeout), ErrorSeverity::kDebug);
  EXPECT_EQ(ClassifyError(beast::websocket::error::bad_opcode), ErrorSeverity::kDebug);
  EXPECT_EQ(ClassifyError(beast::websocket::error::message_too_big), ErrorSeverity::kDebug);
  EXPECT_EQ(ClassifyError(beast::http::error::bad_target), ErrorSeverity::kDebug);
}

TEST(ClassifyErrorTest, TheRestIsAWarning) {
  EXPECT_EQ(ClassifyError(net::error::no_buffer_space), ErrorSeverity::kWarning);
  EXPECT_EQ(ClassifyError(net::error::no_descriptors), ErrorSeverity::kWarning);
}

}  // namespace
}  // namespace roomcast::edge
