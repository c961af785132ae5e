// roomcast-edge: browsers over WebSocket and Server-Sent Events, through the core.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "edge/auth.h"
#include "edge/edge_server.h"
#include "edge/options.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080", "HTTP listen address; port 0 picks a free port");
ABSL_FLAG(std::string, core, "127.0.0.1:50051", "address of roomcast-core");
ABSL_FLAG(std::string, edge_name, "edge", "name of this edge in the core's logs");
ABSL_FLAG(int, threads, 2, "I/O threads");
ABSL_FLAG(uint64_t, max_connections, 20'000, "open WebSocket + SSE connections before refusing");
ABSL_FLAG(uint64_t, max_frame_bytes, 64 * 1024, "largest WebSocket message (close 1009 beyond)");
ABSL_FLAG(uint64_t, max_rooms_per_connection, 100, "rooms one connection may join");
ABSL_FLAG(double, rate_limit, 100, "requests per second per connection");
ABSL_FLAG(double, rate_burst, 200, "request burst per connection");
ABSL_FLAG(int, max_bad_requests, 20, "malformed/limited requests before closing with 4500");
ABSL_FLAG(uint64_t, max_queued_bytes, 1 << 20,
          "bytes queued per client before a slow-consumer close");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(30), "WebSocket ping/idle timeout");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "time to complete the HTTP request or the WebSocket handshake");
ABSL_FLAG(absl::Duration, write_timeout, absl::Seconds(30),
          "a write that makes no progress for this long means a dead peer");
ABSL_FLAG(absl::Duration, write_delay, absl::Milliseconds(20),
          "a busy WebSocket or SSE connection writes at most once per this (0: no limit)");
ABSL_FLAG(absl::Duration, sse_heartbeat, absl::Seconds(15), "SSE heartbeat comment interval");
ABSL_FLAG(absl::Duration, sse_retry, absl::Seconds(2), "SSE retry: hint");
ABSL_FLAG(std::vector<std::string>, allowed_origins, {},
          "comma-separated origins allowed cross-origin (same-origin is always allowed; * = any, "
          "without credentials)");
ABSL_FLAG(absl::Duration, request_timeout, absl::Seconds(10),
          "a browser request the core has not answered by then fails (DEADLINE_EXCEEDED) and "
          "the client is told to reconnect (4000)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(3), "time to drain clients on SIGTERM");
ABSL_FLAG(uint64_t, core_outbox_max_messages, 10'000,
          "messages waiting for the core before requests fail with RESOURCE_EXHAUSTED");
ABSL_FLAG(uint64_t, core_outbox_max_bytes, 16 << 20,
          "bytes waiting for the core before requests fail with RESOURCE_EXHAUSTED");
ABSL_FLAG(uint64_t, max_header_bytes, 8 * 1024, "largest HTTP request header block");
ABSL_FLAG(uint64_t, max_batch_bytes, 64 * 1024,
          "a write carries queued frames up to this size (and does not wait for write_delay)");
ABSL_FLAG(uint64_t, reply_queue_factor, 16,
          "replies may queue up to this many times max_queued_bytes before a slow-consumer close");
ABSL_FLAG(int, retry_after, 5, "Retry-After seconds on a 503 refusal");
ABSL_FLAG(std::string, auth_hmac_secret_file, "",
          "file holding the HS256 secret that signs connection tokens (JWT); with it (or "
          "--auth_public_key_file) /ws, /sse and POST /publish need a token");
ABSL_FLAG(std::string, auth_public_key_file, "",
          "PEM public key (RSA: RS256, EC P-256: ES256) that verifies connection tokens");
ABSL_FLAG(bool, allow_anonymous, false,
          "with a token key set, still admit connections without a token (with every grant)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off (stderr)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("roomcast-edge: browsers over WebSocket and SSE, through the core");
  // --help lists this program's own flags (those defined in this file);
  // --helpfull adds the libraries' ones. File names are shown relative to
  // the source tree.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "edge/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.normalize_filename = [](absl::string_view file) {
    while (absl::ConsumePrefix(&file, "../")) {
    }
    return std::string(file);
  };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  roomcast::edge::EdgeOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.core = absl::GetFlag(FLAGS_core);
  options.edge_name = absl::GetFlag(FLAGS_edge_name);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.max_frame_bytes = absl::GetFlag(FLAGS_max_frame_bytes);
  options.max_rooms_per_connection = absl::GetFlag(FLAGS_max_rooms_per_connection);
  options.rate_limit_per_second = absl::GetFlag(FLAGS_rate_limit);
  options.rate_limit_burst = absl::GetFlag(FLAGS_rate_burst);
  options.max_bad_requests = absl::GetFlag(FLAGS_max_bad_requests);
  options.max_queued_bytes = absl::GetFlag(FLAGS_max_queued_bytes);
  options.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  options.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  options.write_timeout = absl::GetFlag(FLAGS_write_timeout);
  options.sse_heartbeat = absl::GetFlag(FLAGS_sse_heartbeat);
  options.write_delay = absl::GetFlag(FLAGS_write_delay);
  options.request_timeout = absl::GetFlag(FLAGS_request_timeout);
  options.sse_retry = absl::GetFlag(FLAGS_sse_retry);
  options.allowed_origins = absl::GetFlag(FLAGS_allowed_origins);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.core_outbox_max_messages = absl::GetFlag(FLAGS_core_outbox_max_messages);
  options.core_outbox_max_bytes = absl::GetFlag(FLAGS_core_outbox_max_bytes);
  options.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  options.max_batch_bytes = absl::GetFlag(FLAGS_max_batch_bytes);
  options.reply_queue_factor = absl::GetFlag(FLAGS_reply_queue_factor);
  options.retry_after_seconds = absl::GetFlag(FLAGS_retry_after);

  // Logs go to stderr; stdout carries only the "listening on" line.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("roomcast-edge"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %L roomcast-edge %v");
  spdlog::level::level_enum level = spdlog::level::from_str(absl::GetFlag(FLAGS_log_level));
  if (level == spdlog::level::off && absl::GetFlag(FLAGS_log_level) != "off") {
    spdlog::error("bad flag --log_level={}", absl::GetFlag(FLAGS_log_level));
    return 2;
  }
  spdlog::set_level(level);
  if (options.threads < 1 || options.threads > 256) {
    spdlog::error("bad flag --threads={} (must be 1..256)", options.threads);
    return 2;
  }
  if (options.max_header_bytes == 0 || options.max_header_bytes > UINT32_MAX ||
      options.max_batch_bytes == 0 || options.core_outbox_max_messages == 0) {
    spdlog::error(
        "bad flags: --max_header_bytes (at most 4 GiB), --max_batch_bytes and "
        "--core_outbox_max_messages must be positive");
    return 2;
  }

  const std::string secret_file = absl::GetFlag(FLAGS_auth_hmac_secret_file);
  const std::string public_key_file = absl::GetFlag(FLAGS_auth_public_key_file);
  if (!secret_file.empty() || !public_key_file.empty()) {
    auto read = [](const std::string& path, std::string& out) {
      if (path.empty()) return true;
      std::ifstream in(path, std::ios::binary);
      if (!in) return false;
      std::ostringstream text;
      text << in.rdbuf();
      out = text.str();
      return true;
    };
    std::string secret;
    std::string public_key;
    if (!read(secret_file, secret) || !read(public_key_file, public_key)) {
      spdlog::error("cannot read --auth_hmac_secret_file or --auth_public_key_file");
      return 2;
    }
    // A trailing newline (echo secret > file) is not part of the secret.
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (!secret_file.empty() && secret.size() < 32) {
      spdlog::error("--auth_hmac_secret_file: the HS256 secret must be at least 32 bytes");
      return 2;
    }
    auto verifier = roomcast::edge::TokenVerifier::Create(std::move(secret), std::move(public_key));
    if (!verifier.ok()) {
      spdlog::error("bad token key: {}", std::string(verifier.status().message()));
      return 2;
    }
    options.token_verifier = *std::move(verifier);
    options.allow_anonymous = absl::GetFlag(FLAGS_allow_anonymous);
    spdlog::info("connection tokens required anonymous={}", options.allow_anonymous);
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  roomcast::edge::EdgeServer server(options);
  absl::StatusOr<std::string> address = server.Start();
  if (!address.ok()) {
    spdlog::error("start failed error=\"{}\"", std::string(address.status().message()));
    return 1;
  }
  std::printf("listening on %s\n", address->c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("signal received signal={}", signal);
  server.Shutdown();
  return 0;
}
