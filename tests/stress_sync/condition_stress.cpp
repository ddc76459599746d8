// Stress: tandem::condition's notify(n) counting and the notify/timeout race, at scale.
#include "conformance/condition_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/condition.hpp>
#include <tandem/lock.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int scaled(int n) {
  return std::max(1, static_cast<int>(n * tandem::test::stress_scale()));
}

// Waiters wait forever in a loop, counting themselves in `in_wait` under the lock. Each round the
// notifier waits (under the lock) until all of them are queued again, checks that exactly the
// waiters notified so far have woken, and notifies k of them.
void check_notify_counts(tandem::condition& sut) {
  constexpr int waiters = 8;
  const int rounds = scaled(20000);
  int in_wait = 0;      // guarded by sut
  long long woken = 0;  // guarded by sut
  bool stop = false;    // guarded by sut
  int not_notified = 0; // guarded by sut
  std::vector<std::thread> threads;
  for (int i = 0; i < waiters; ++i)
    threads.emplace_back([&] {
      std::scoped_lock with{sut};
      while (!stop) {
        ++in_wait;
        if (!sut.wait()) ++not_notified;
        --in_wait;
        ++woken;
      }
    });

  long long expected = 0;
  int wrong_rounds = 0;
  // Chosen waiters count as in_wait until they re-acquire the lock, so also wait for them to have
  // counted themselves woken. Too few wakes never get there (the wait fails); too many show up as
  // a surplus here or in a later round.
  auto settled = [&] { return in_wait == waiters && woken >= expected; };
  for (int round = 0; round < rounds; ++round) {
    REQUIRE(tandem::test::bodies::acquire_when(sut, settled));
    if (woken != expected) ++wrong_rounds;
    int k = round % (waiters + 2); // 0..9: none, some, all, more than all
    sut.notify(static_cast<std::size_t>(k));
    expected += std::min(k, waiters);
    sut.release();
  }
  REQUIRE(tandem::test::bodies::acquire_when(sut, settled));
  CHECK(woken == expected);
  stop = true;
  sut.notify_all();
  sut.release();
  for (auto& t : threads) t.join();

  CHECK(wrong_rounds == 0);
  CHECK(not_notified == 0);
}

// The notify/timeout race of the conformance body, for many more notifies: every waiter chosen
// by a notify returns true, whatever its timeout did meanwhile.
void check_race(tandem::condition& sut) {
  constexpr int waiters = 4;
  const int notifies_wanted = scaled(100000);
  int in_wait = 0;             // guarded by sut
  int chosen = 0;              // guarded by sut: chosen, not yet returned
  long long notified = 0;      // guarded by sut
  long long returned_true = 0; // guarded by sut
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < waiters; ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; !stop.load(); ++k) {
        std::scoped_lock with{sut};
        ++in_wait;
        bool r = sut.wait(std::chrono::microseconds((k * 7 + i * 3) % 5 * 150));
        --in_wait;
        if (r) {
          ++returned_true;
          --chosen;
        }
      }
    });

  auto deadline = std::chrono::steady_clock::now() + 240s;
  for (;;) {
    {
      std::scoped_lock with{sut};
      if (notified >= notifies_wanted || std::chrono::steady_clock::now() > deadline) break;
      if (in_wait - chosen > 0) {
        sut.notify();
        ++chosen;
        ++notified;
      }
    }
    std::this_thread::yield();
  }
  stop = true;
  for (auto& t : threads) t.join();

  CHECK(notified == notifies_wanted);
  CHECK(returned_true == notified);
  CHECK(chosen == 0);
}

} // namespace

TEST_SUITE("condition stress") {

  TEST_CASE("notify of k wakes exactly k waiters in every round") {
    tandem::test::watchdog guard{300s};
    tandem::condition sut;
    check_notify_counts(sut);
  }

  TEST_CASE("notify of k wakes exactly k waiters in every round with a shared lock") {
    tandem::test::watchdog guard{300s};
    tandem::lock shared;
    tandem::condition sut{shared};
    check_notify_counts(sut);
  }

  TEST_CASE("notifies racing with timeouts are never lost") {
    tandem::test::watchdog guard{300s};
    tandem::condition sut;
    check_race(sut);
  }

  TEST_CASE("notifies racing with timeouts are never lost with a shared lock") {
    tandem::test::watchdog guard{300s};
    tandem::lock shared;
    tandem::condition sut{shared};
    check_race(sut);
  }
}
