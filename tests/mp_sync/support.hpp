// Support for the mp_sync tests: objects in shared memory (the forked flavour's make<>), child
// processes that can be killed, and timing.
#pragma once

#include "processes/queue_flavour.hpp"
#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <functional>
#include <thread>
#include <utility>

namespace tandem::test::mp_sync {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// An object in its own MAP_SHARED mapping, destroyed by the creating process.
template <class T, class... Args>
auto make_shared_object(Args&&... args) {
  return forked::make<T>(std::forward<Args>(args)...);
}

/// A shared atomic cell.
template <class U>
auto make_cell(U value) {
  return forked::make<std::atomic<U>>(value);
}

/// Nanoseconds on the monotonic clock (the same in every process).
inline long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

/// A forked child running `fn`, ending with _exit(0) when it returns (70 when it throws).
/// Killed and reaped by kill(), reaped by join(); the destructor kills what is left.
class child {
public:
  explicit child(const std::function<void()>& fn) {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTERM}) ::signal(sig, SIG_DFL);
      int code = 0;
      try {
        fn();
      } catch (...) {
        code = 70;
      }
      ::_exit(code);
    }
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      reap();
    }
  }

  pid_t pid() const noexcept { return pid_; }

  /// SIGKILL, and waits until the child is dead; it stays a zombie until reap() (or join()).
  void kill() {
    ::kill(pid_, SIGKILL);
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) < 0 &&
           errno == EINTR) {
    }
  }

  /// Waits for the child; returns its wait status.
  int reap() {
    if (reaped_) return status_;
    while (::waitpid(pid_, &status_, 0) < 0) {
    }
    reaped_ = true;
    return status_;
  }

  /// Waits for the child and checks that it exited with 0.
  bool join() {
    int status = reap();
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

/// Blocks the calling child until it is killed.
[[noreturn]] inline void hang() {
  for (;;) ::pause();
}

} // namespace tandem::test::mp_sync
