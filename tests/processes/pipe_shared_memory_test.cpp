// Large pipe messages through shared memory, across processes: readers that take turns on one
// end, and a sender whose memory is full of unread messages.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/pipe.hpp>

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 131 + seed) % 251);
  return out;
}

// Forks a child that runs `fn` and exits with its result (0 on success).
template <class F>
pid_t fork_child(F fn) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(fn());
  return pid;
}

int exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

} // namespace

TEST_SUITE("mp pipe shared memory across processes") {
  TEST_CASE("forked readers taking turns on one end can each read large messages") {
    tandem::test::watchdog guard{30s};
    auto [reader, writer] = tandem::mp::pipe(false);
    // Both readers exist before the first large message, so only the first would see the memory
    // if it were sent once.
    auto read_one = [&r = reader](unsigned seed) {
      return [&r, seed] {
        try {
          return r.recv_bytes() == pattern(300u << 10, seed) ? 0 : 1;
        } catch (const tandem::error&) {
          return 2;
        }
      };
    };
    writer.send_bytes(pattern(300u << 10, 1));
    pid_t first = fork_child(read_one(1));
    CHECK(exit_code(first) == 0);
    writer.send_bytes(pattern(300u << 10, 2));
    pid_t second = fork_child(read_one(2));
    CHECK(exit_code(second) == 0);
  }

  TEST_CASE("a sender whose shared memory is full streams after a bounded wait") {
    tandem::test::watchdog guard{30s};
    auto [reader, writer] = tandem::mp::pipe(false);
    // Four unread 1 MiB messages fill what a sender may keep in flight.
    for (unsigned i = 0; i < 4; ++i) writer.send_bytes(pattern(1u << 20, i));
    auto start = std::chrono::steady_clock::now();
    writer.send_bytes(pattern(100u << 10, 9)); // no room: waits, then goes through the socket
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 150ms);
    CHECK(waited < 10s);
    for (unsigned i = 0; i < 4; ++i) CHECK(reader.recv_bytes() == pattern(1u << 20, i));
    CHECK(reader.recv_bytes() == pattern(100u << 10, 9));
  }
}
