// Stress: tandem::event's generations under set/clear storms.
#include "support/watchdog.hpp"

#include <tandem/event.hpp>

#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int scaled(int n) {
  return std::max(1, static_cast<int>(n * tandem::test::stress_scale()));
}

} // namespace

TEST_SUITE("event stress") {

  TEST_CASE("ping pong through two events with clears never loses a set") {
    tandem::test::watchdog guard{600s};
    const int rounds = scaled(200000);
    tandem::event ping;
    tandem::event pong;
    std::atomic<int> timeouts{0};

    std::thread other{[&] {
      for (int i = 0; i < rounds; ++i) {
        if (!ping.wait(30s)) timeouts.fetch_add(1);
        ping.clear();
        pong.set();
      }
    }};
    for (int i = 0; i < rounds; ++i) {
      ping.set();
      if (!pong.wait(30s)) timeouts.fetch_add(1);
      pong.clear();
    }
    other.join();

    CHECK(timeouts.load() == 0);
  }

  TEST_CASE("every waiter blocked at a set wakes even when clear follows at once") {
    // Rounds: waiters announce themselves and wait; once all are asleep in the kernel the main
    // thread sets and clears at once. Each must return true.
    tandem::test::watchdog guard{600s};
    constexpr int waiters = 4;
    const int rounds = scaled(1000);
    tandem::event sut;
    int missed = 0;

    for (int r = 0; r < rounds; ++r) {
      std::vector<pid_t> tids(waiters);
      std::atomic<int> started{0};
      std::atomic<int> woken{0};
      std::vector<std::thread> threads;
      for (int w = 0; w < waiters; ++w)
        threads.emplace_back([&, w] {
          // A low priority keeps the woken waiter from preempting the main thread before its
          // clear(): otherwise the waiters would nearly always see the event still set.
          ::setpriority(PRIO_PROCESS, static_cast<id_t>(tandem::test::tid()), 19);
          tids[static_cast<std::size_t>(w)] = tandem::test::tid();
          started.fetch_add(1);
          if (sut.wait(30s)) woken.fetch_add(1);
        });
      REQUIRE(tandem::test::wait_until([&] { return started.load() == waiters; }));
      REQUIRE(tandem::test::wait_until_blocked(tids));
      sut.set();
      sut.clear();
      for (auto& t : threads) t.join();
      if (woken.load() != waiters) ++missed;
    }

    CHECK(missed == 0);
  }
}
