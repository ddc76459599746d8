#include "shm/shm_support.hpp"

#include <tandem/mp/detail/shm_named.hpp>
#include <tandem/mp/detail/shm_tracker.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

namespace tandem::test::shm {

namespace {

// At exit: anything this run left in /dev/shm, or still owns, is a failure.
void check_no_leftovers() {
  std::vector<std::string> left;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(dir))
      if (std::string_view{e->d_name}.starts_with(run_prefix())) left.emplace_back(e->d_name);
    ::closedir(dir);
  }
  for (const auto& n : tandem::mp::detail::shm_tracker_owned())
    if (std::find(left.begin(), left.end(), n) == left.end()) left.push_back(n);
  if (left.empty()) return;
  for (const auto& n : left) {
    std::fprintf(stderr, "shm tests: leftover shared-memory segment /dev/shm/%s\n", n.c_str());
    remove(n);
  }
  std::fprintf(stderr, "shm tests: FAILED: %zu segment(s) of this run were left behind\n",
               left.size());
  std::fflush(stderr);
  std::_Exit(3);
}

const bool leftover_check_installed = [] {
  (void)run_prefix();
  std::atexit(check_no_leftovers);
  return true;
}();

} // namespace

const std::string& run_prefix() {
  static const std::string prefix = [] {
    std::uint32_t r = 0;
    if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r))
      r = static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    char buf[64];
    std::snprintf(buf, sizeof buf, "tdmt_%d_%08" PRIx32 "_", static_cast<int>(::getpid()), r);
    return std::string{buf};
  }();
  return prefix;
}

std::string unique_name(std::string_view what) {
  static std::atomic<int> counter{0};
  return run_prefix() + std::string{what} + "_" + std::to_string(counter++);
}

bool exists(const std::string& name) {
  return ::access((std::string{"/dev/shm/"} + name).c_str(), F_OK) == 0;
}

void remove(const std::string& name) {
  ::unlink((std::string{"/dev/shm/"} + name).c_str());
}

report_pipe::report_pipe() {
  if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
}

report_pipe::~report_pipe() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

void report_pipe::send(std::string_view line) const noexcept {
  std::string l{line};
  l += '\n';
  (void)!::write(fds_[1], l.data(), l.size());
}

std::optional<std::string> report_pipe::receive(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fds_[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[512];
    ssize_t n = ::read(fds_[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    buffered_.append(buf, static_cast<std::size_t>(n));
  }
}

void report_pipe::child_side() noexcept {
  ::close(fds_[0]);
  fds_[0] = -1;
}

void report_pipe::parent_side() noexcept {
  ::close(fds_[1]);
  fds_[1] = -1;
}

pid_t fork_child(const std::function<int()>& body) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 70;
    try {
      rc = body();
    } catch (...) {
      rc = 70;
    }
    ::_exit(rc);
  }
  return pid;
}

int wait_child(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill_child(pid);
      return -1;
    }
    std::this_thread::sleep_for(1ms);
  }
}

void kill_child(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

bool process_gone(pid_t pid) {
  return !tandem::mp::detail::process_start_time(pid).has_value();
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

} // namespace tandem::test::shm
