// Process helpers of the cross-process benchmarks: pinning, a start gate between a parent and
// its peer process, fork and reap, whole reads and writes. A failing system call ends the
// benchmark process with a message (a benchmark has nobody to report an error to).
#pragma once

#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace tandem_bench {

[[noreturn]] inline void die(const char* what) {
  std::perror(what);
  std::_Exit(111);
}

inline void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

inline int cpus_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

// The calling thread's affinity, restored when a pinned benchmark ends.
class affinity_guard {
public:
  affinity_guard() { sched_getaffinity(0, sizeof saved_, &saved_); }
  ~affinity_guard() { sched_setaffinity(0, sizeof saved_, &saved_); }
  affinity_guard(const affinity_guard&) = delete;
  affinity_guard& operator=(const affinity_guard&) = delete;

private:
  cpu_set_t saved_{};
};

// A gate between the parent and a peer: the peer blocks in wait() until the parent's open().
class gate {
public:
  gate() {
    if (::pipe(fds_.data()) != 0) die("pipe");
  }
  ~gate() {
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
  }
  gate(const gate&) = delete;
  gate& operator=(const gate&) = delete;
  void open() {
    char c = 1;
    if (::write(fds_[1], &c, 1) != 1) die("gate write");
  }
  void wait() {
    char c;
    if (::read(fds_[0], &c, 1) != 1) die("gate read");
  }

private:
  std::array<int, 2> fds_{-1, -1};
};

template <class F>
pid_t fork_peer(F&& body) {
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    body();
    std::_Exit(0);
  }
  return pid;
}

inline bool reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline void read_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      die("read");
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

inline void write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      die("send");
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

} // namespace tandem_bench
