// Helpers of the thread, timer and runtime tests: a gate and a child-process runner.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <string>

namespace tandem::test {

/// A one-shot gate on std primitives (so these tests do not depend on tandem's own event).
class gate {
public:
  void open() {
    {
      std::lock_guard guard{mtx_};
      open_ = true;
    }
    cv_.notify_all();
  }

  void wait() {
    std::unique_lock guard{mtx_};
    cv_.wait(guard, [this] { return open_; });
  }

  /// Returns false when `st` stops first.
  bool wait(std::stop_token st) {
    std::unique_lock guard{mtx_};
    return cv_.wait(guard, st, [this] { return open_; });
  }

  bool is_open() {
    std::lock_guard guard{mtx_};
    return open_;
  }

private:
  std::mutex mtx_;
  std::condition_variable_any cv_;
  bool open_ = false;
};

/// What a child process did.
struct child_result {
  /// The exit code, or -signal when killed, or -1000 when it outlived the limit (then killed).
  int status = 0;
  std::string out;
  std::string err;
  std::chrono::duration<double> elapsed{};
};

/// Runs this test executable again with TANDEM_THREAD_CHILD=`scenario` in its environment (the
/// executable then runs that scenario instead of its tests and exits with its result), capturing
/// its output. Kills it after `limit`.
child_result run_child(const std::string& scenario,
                       std::chrono::steady_clock::duration limit = std::chrono::seconds{30});

} // namespace tandem::test
