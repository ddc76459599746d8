// tandem::mp::wait over process sentinels (pidfds) and connections to child processes.
#include "support/watchdog.hpp"

#include <tandem/mp/connection.hpp>
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/wait.hpp>

#include <doctest/doctest.h>

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// A pidfd for `pid`: readable once the process exited.
int open_pidfd(pid_t pid) {
  auto fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  REQUIRE_MESSAGE(fd >= 0, "pidfd_open failed with errno " << errno);
  return fd;
}

// Reaps `pid` and returns its exit status.
int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

} // namespace

TEST_SUITE("mp wait processes") {

  TEST_CASE("a process sentinel becomes ready when the child exits") {
    tandem::test::watchdog guard{20s};
    auto [reader, writer] = tandem::mp::pipe(false);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Waits for the parent to close its end, then exits.
      writer.close();
      std::byte go{};
      auto got = ::read(reader.fileno(), &go, 1);
      ::_exit(got == 0 ? 3 : 4);
    }
    int sentinel = open_pidfd(pid);

    std::vector<tandem::mp::waitable> sut{tandem::mp::waitable{sentinel}};
    CHECK(tandem::mp::wait(sut, 50ms).empty());
    writer.close();
    reader.close();
    auto ready = tandem::mp::wait(sut, 10s);
    int status = reap(pid);
    ::close(sentinel);

    CHECK(ready == std::vector<std::size_t>{0});
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 3);
  }

  TEST_CASE("wait sees a child's message and its exit among several objects") {
    tandem::test::watchdog guard{20s};
    auto [parent_end, child_end] = tandem::mp::pipe();
    auto [idle_end, idle_peer] = tandem::mp::pipe();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      parent_end.close();
      try {
        std::vector<std::byte> hello{std::byte{'h'}, std::byte{'i'}};
        child_end.send_bytes(hello);
        child_end.recv_bytes(); // waits for the parent's reply
      } catch (...) {
        ::_exit(2);
      }
      ::_exit(0);
    }
    child_end.close();
    int sentinel = open_pidfd(pid);
    std::vector<tandem::mp::waitable> sut{idle_end, parent_end, tandem::mp::waitable{sentinel}};

    auto first = tandem::mp::wait(sut, 10s);
    auto message = parent_end.recv_bytes();
    parent_end.send_bytes(message);
    // The child exits after the reply, which also closes its end: once the sentinel is ready,
    // both are.
    auto exited = tandem::mp::wait({tandem::mp::waitable{sentinel}}, 10s);
    auto second = tandem::mp::wait(sut, 0s);
    int status = reap(pid);
    ::close(sentinel);

    CHECK(first == std::vector<std::size_t>{1});
    CHECK(message.size() == 2);
    CHECK(exited == std::vector<std::size_t>{0});
    CHECK(second == std::vector<std::size_t>{1, 2});
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}
