// Test support: a watchdog that turns a hang into a named failure, and polling helpers that
// replace sleeps used as synchronization.
//
//   TEST_CASE("a blocking test") {
//     tandem::test::watchdog guard{10s};   // a hang aborts with the test's name after 10 s
//     ...
//   }
//
// Deliberately built on std primitives, not tandem's, so a bug in tandem cannot disarm it.
#pragma once

#include <doctest/doctest.h>

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>

namespace tandem::test {

using namespace std::chrono_literals;

/// Aborts the process with the current test's name when not destroyed within `limit`.
class watchdog {
public:
  explicit watchdog(std::chrono::steady_clock::duration limit)
    : name_(current_test_name()), limit_(limit),
      deadline_(std::chrono::steady_clock::now() + limit), thread_([this] { run(); }) {}

  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  ~watchdog() {
    {
      std::lock_guard guard{mtx_};
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  static std::string current_test_name() {
    auto* opts = doctest::getContextOptions();
    if (opts != nullptr && opts->currentTest != nullptr)
      return opts->currentTest->m_name;
    return "(outside a test case)";
  }

private:
  void run() {
    std::unique_lock guard{mtx_};
    if (cv_.wait_until(guard, deadline_, [this] { return done_; }))
      return;
    auto secs = std::chrono::duration<double>(limit_).count();
    std::fprintf(stderr, "\nwatchdog: test \"%s\" did not finish within %.1f s: aborting\n",
                 name_.c_str(), secs);
    std::fflush(stderr);
    std::abort();
  }

  std::string name_;
  std::chrono::steady_clock::duration limit_;
  std::chrono::steady_clock::time_point deadline_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false; // guarded by mtx_
  std::thread thread_;
};

/// Polls `pred` until it holds or `limit` passes; returns its last value.
inline bool wait_until(const std::function<bool()>& pred,
                       std::chrono::steady_clock::duration limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// The calling thread's kernel id (gettid).
pid_t tid() noexcept;

/// True when the kernel reports the thread `tid` of this process as sleeping (state S or D),
/// e.g. blocked in a futex wait.
bool is_blocked(pid_t tid);

/// Waits until every thread in `tids` is blocked in the kernel, or `limit` passes. Returns whether
/// they all were. Use it after starting threads that should block, before acting on them.
bool wait_until_blocked(std::span<const pid_t> tids, std::chrono::steady_clock::duration limit = 10s);

/// Scales the iteration counts of stress tests: TANDEM_STRESS_SCALE (default 1.0) multiplies them.
/// The long label runs them at full size; the default run at a tenth.
double stress_scale();

} // namespace tandem::test
