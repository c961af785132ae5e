// NatsServer: a real `nats-server -js` for one test, on a free loopback port
// with a fresh store directory. Start() waits (bounded) until it accepts
// connections; Kill() stops it by pid (SIGKILL), Restart() brings it back on
// the same port and store. The destructor kills it and removes the store.
// Not thread-safe: the test thread drives it.
#ifndef ROOMCAST_TESTS_CORE_NATS_SERVER_H_
#define ROOMCAST_TESTS_CORE_NATS_SERVER_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace roomcast::core {

class NatsServer {
 public:
  NatsServer() = default;
  ~NatsServer() {
    Kill();
    if (!store_.empty()) std::filesystem::remove_all(store_);
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  static const char* Binary() {
    const char* env = std::getenv("ROOMCAST_NATS_SERVER");
    return env != nullptr ? env : "/usr/sbin/nats-server";
  }
  static bool Available() { return access(Binary(), X_OK) == 0; }

  // Picks a port and a store and starts the server; false when it did not
  // accept connections within 10 s.
  bool Start() {
    if (port_ == 0) port_ = FreePort();
    if (store_.empty()) {
      char tmpl[] = "/tmp/roomcast-nats-XXXXXX";
      if (mkdtemp(tmpl) == nullptr) return false;
      store_ = tmpl;
    }
    return Launch();
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }
  bool Restart() {
    Kill();
    return Launch();
  }

  int port() const { return port_; }
  std::string url() const { return absl::StrCat("nats://127.0.0.1:", port_); }

 private:
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }
  bool Accepts() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
  }
  bool Launch() {
    std::string port = absl::StrCat(port_);
    pid_ = fork();
    if (pid_ == 0) {
      // Dies with the test, and never holds the test's output pipes open.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int null = open("/dev/null", O_RDWR);
      dup2(null, STDIN_FILENO);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      execl(Binary(), Binary(), "-js", "-a", "127.0.0.1", "-p", port.c_str(), "-sd", store_.c_str(),
            "-l", "/dev/null", static_cast<char*>(nullptr));
      _exit(127);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (Accepts()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  int port_ = 0;
  pid_t pid_ = 0;
  std::string store_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_TESTS_CORE_NATS_SERVER_H_
