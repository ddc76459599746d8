// Support for the manager tests: segment names unique to this run (removed at setup and
// teardown), forked children that report through their exit status, and the check that the run
// leaves nothing with its prefix in /dev/shm.
#pragma once

#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::test::manager {

using namespace std::chrono_literals;

/// The prefix of every name this run uses: "tdmgr_<pid>_<8 hex digits>_".
const std::string& run_prefix();

/// The names in /dev/shm that start with run_prefix().
std::vector<std::string> leftovers();

/// A fresh segment name for this run, removed now and at destruction.
struct scoped_name {
  explicit scoped_name(std::string_view what);
  scoped_name(const scoped_name&) = delete;
  scoped_name& operator=(const scoped_name&) = delete;
  ~scoped_name();
  std::string name;
};

/// Forks a child that runs `body` and exits with its result (0..255); an exception makes it
/// exit with 99. Returns the child's pid.
pid_t fork_child(const std::function<int()>& body);

/// Waits for `pid`; returns its exit status, or 1000 + the signal that killed it.
int wait_child(pid_t pid);

/// Kills (SIGKILL) and reaps a child that is still running when the guard goes, so that a
/// failed assertion never leaves a looping child behind.
class child_guard {
public:
  explicit child_guard(pid_t pid) noexcept : pid_(pid) {}
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;
  ~child_guard();
  /// Waits for the child (see wait_child); the guard then has nothing left to do.
  int wait();
  pid_t pid() const noexcept { return pid_; }

private:
  pid_t pid_;
};

} // namespace tandem::test::manager
