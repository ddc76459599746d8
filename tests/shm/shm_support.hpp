// Support for the shared-memory tests: names unique to this run, forked children, pipes that
// carry a child's report, and the check that the run leaves nothing of its own in /dev/shm.
//
// Every name a test uses comes from unique_name(), which starts with run_prefix() (the pid and
// 32 random bits). At exit, the executable looks for files with that prefix in /dev/shm and for
// segments it still owns; it removes them and fails (exit status 3) if there are any.
#pragma once

#include <doctest/doctest.h>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::test::shm {

using namespace std::chrono_literals;

/// The prefix of every name this run uses: "tdmt_<pid>_<8 hex digits>_".
const std::string& run_prefix();

/// A fresh name for this run: run_prefix() + what + a counter.
std::string unique_name(std::string_view what);

/// True when /dev/shm/`name` exists.
bool exists(const std::string& name);

/// Removes /dev/shm/`name` if it exists.
void remove(const std::string& name);

/// A unique name, removed at construction and at destruction.
struct scoped_name {
  explicit scoped_name(std::string_view what) : name(unique_name(what)) { remove(name); }
  scoped_name(const scoped_name&) = delete;
  scoped_name& operator=(const scoped_name&) = delete;
  ~scoped_name() { remove(name); }
  std::string name;
};

/// A one-way pipe from a child to the parent.
class report_pipe {
public:
  report_pipe();
  report_pipe(const report_pipe&) = delete;
  report_pipe& operator=(const report_pipe&) = delete;
  ~report_pipe();

  /// In the child: writes `line` and a newline.
  void send(std::string_view line) const noexcept;
  /// In the parent: the next line, or nullopt at end of file or after `limit`.
  std::optional<std::string> receive(std::chrono::milliseconds limit = 10s);
  /// In the child, right after fork: closes the read end. In the parent: closes the write end.
  void child_side() noexcept;
  void parent_side() noexcept;

private:
  int fds_[2] = {-1, -1};
  std::string buffered_;
};

/// Forks a child that runs `body` and ends with _exit(body's result), or 70 when it threw.
pid_t fork_child(const std::function<int()>& body);

/// Waits (polling, at most `limit`) for the child `pid` to end. Returns its exit status, 128 +
/// the signal that killed it, or -1 when it did not end in time (it is then killed).
int wait_child(pid_t pid, std::chrono::milliseconds limit = 10s);

/// Kills `pid` with SIGKILL and reaps it (a child of this process).
void kill_child(pid_t pid);

/// True when the process `pid` is gone (or a zombie): for processes that are not our children.
bool process_gone(pid_t pid);

/// Polls `pred` every millisecond until it holds or `limit` passes; returns its last value.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5s);

} // namespace tandem::test::shm
