#include "manager/support.hpp"

#include <cinttypes>
#include <cstdio>
#include <exception>
#include <random>

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

namespace tandem::test::manager {

const std::string& run_prefix() {
  static const std::string prefix = [] {
    std::random_device rd;
    char buf[64];
    std::snprintf(buf, sizeof buf, "tdmgr_%d_%08x_", static_cast<int>(::getpid()),
                  static_cast<unsigned>(rd()));
    return std::string{buf};
  }();
  return prefix;
}

std::vector<std::string> leftovers() {
  std::vector<std::string> out;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    std::string_view n{e->d_name};
    if (n.starts_with(run_prefix())) out.emplace_back(n);
  }
  ::closedir(dir);
  return out;
}

scoped_name::scoped_name(std::string_view what) {
  static int counter = 0;
  name = run_prefix() + std::string{what} + "_" + std::to_string(++counter);
  ::shm_unlink(("/" + name).c_str());
}

scoped_name::~scoped_name() {
  ::shm_unlink(("/" + name).c_str());
}

pid_t fork_child(const std::function<int()>& body) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    } catch (...) {
    }
    ::_exit(rc);
  }
  return pid;
}

namespace {

// At exit (not in forked children, which _exit), the run must have left nothing in /dev/shm.
struct leftover_check {
  leftover_check() { (void)run_prefix(); }
  leftover_check(const leftover_check&) = delete;
  leftover_check& operator=(const leftover_check&) = delete;
  ~leftover_check() {
    auto left = leftovers();
    if (left.empty()) return;
    for (const auto& n : left) {
      std::fprintf(stderr, "leftover in /dev/shm: %s\n", n.c_str());
      ::shm_unlink(("/" + n).c_str());
    }
    std::fflush(stderr);
    ::_exit(3);
  }
} the_leftover_check;

} // namespace

int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
  return -1;
}

child_guard::~child_guard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)wait_child(pid_);
}

int child_guard::wait() {
  int rc = wait_child(pid_);
  pid_ = 0;
  return rc;
}

} // namespace tandem::test::manager
