// Stress: mutual exclusion and counting of tandem::lock, rlock, condition (as a lock), semaphore
// and bounded_semaphore, with blocking, timed and cancellable acquires mixed.
#include "support/watchdog.hpp"

#include <tandem/bounded_semaphore.hpp>
#include <tandem/condition.hpp>
#include <tandem/lock.hpp>
#include <tandem/rlock.hpp>
#include <tandem/semaphore.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int scaled(int n) {
  return std::max(1, static_cast<int>(n * tandem::test::stress_scale()));
}

// Four threads increment a plain counter under `sut`, with a blocking acquire, a timed acquire
// (retried on timeout) and a try acquire in turn. `inside` catches two threads in the critical
// section at once; the plain counter catches lost updates (and ThreadSanitizer the data race).
template <class Lock>
void check_mutual_exclusion(Lock& sut) {
  constexpr int threads_n = 4;
  const int per_thread = scaled(500000);
  long long counter = 0; // guarded by sut
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::vector<std::thread> threads;

  for (int t = 0; t < threads_n; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        switch ((i + t) % 3) {
          case 0:
            sut.acquire();
            break;
          case 1:
            while (!sut.acquire(100us)) {
            }
            break;
          default:
            while (!sut.acquire(0s)) std::this_thread::yield();
        }
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counter;
        inside.fetch_sub(1);
        sut.release();
      }
    });
  for (auto& th : threads) th.join();

  CHECK(overlaps.load() == 0);
  CHECK(counter == static_cast<long long>(threads_n) * per_thread);
}

} // namespace

TEST_SUITE("lock stress") {

  TEST_CASE("a lock excludes under blocking timed and try acquires") {
    tandem::test::watchdog guard{600s};
    tandem::lock sut;
    check_mutual_exclusion(sut);
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("an rlock excludes under blocking timed and try acquires") {
    tandem::test::watchdog guard{600s};
    tandem::rlock sut;
    check_mutual_exclusion(sut);
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("an rlock taken at several levels excludes") {
    tandem::test::watchdog guard{600s};
    tandem::rlock sut;
    const int per_thread = scaled(200000);
    long long counter = 0; // guarded by sut
    std::vector<std::thread> threads;

    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i) {
          std::scoped_lock outer{sut};
          std::scoped_lock inner{sut};
          ++counter;
          if (i % 8 == 0) {
            auto level = sut.release_save();
            sut.acquire_restore(level);
          }
        }
      });
    for (auto& th : threads) th.join();

    CHECK(counter == 4LL * per_thread);
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("a condition used as a lock excludes") {
    tandem::test::watchdog guard{600s};
    tandem::condition own;
    check_mutual_exclusion(own);
    tandem::lock shared;
    tandem::condition over_lock{shared};
    check_mutual_exclusion(over_lock);
  }

  TEST_CASE("a semaphore of one excludes") {
    tandem::test::watchdog guard{600s};
    tandem::semaphore sut{1};
    check_mutual_exclusion(sut);
    CHECK(sut.acquire(0s));
    CHECK_FALSE(sut.acquire(0s));
  }

  TEST_CASE("a bounded semaphore of one excludes") {
    tandem::test::watchdog guard{600s};
    tandem::bounded_semaphore sut{1};
    check_mutual_exclusion(sut);
    CHECK_THROWS_AS(sut.release(), tandem::value_error);
  }

  TEST_CASE("a semaphore never lets more than its units in and loses no unit to release bursts") {
    // Holders take a unit and give it back; a releaser adds units in bursts of release(n) and takes
    // the same number back, so the count always returns to `units`.
    tandem::test::watchdog guard{600s};
    constexpr int units = 3;
    const int per_thread = scaled(200000);
    tandem::semaphore sut{units};
    std::atomic<int> inside{0};
    std::atomic<int> too_many{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> holders;

    for (int t = 0; t < 5; ++t)
      holders.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i) {
          std::scoped_lock unit{sut};
          if (inside.fetch_add(1) + 1 > units + 4) too_many.fetch_add(1);
          inside.fetch_sub(1);
        }
      });
    std::thread burster{[&] {
      while (!done.load()) {
        sut.release(4);                            // four extra units for a moment...
        for (int k = 0; k < 4; ++k) sut.acquire(); // ...taken back
      }
    }};
    for (auto& th : holders) th.join();
    done = true;
    burster.join();

    CHECK(too_many.load() == 0);
    int left = 0;
    while (sut.acquire(0s)) ++left;
    CHECK(left == units);
  }

  TEST_CASE("stopped acquirers never strand a released unit") {
    // Rounds: eight acquirers block on an empty semaphore, half of them cancellable; the main
    // thread stops the cancellable ones while releasing eight units. Every plain acquirer must get
    // a unit (a stopped acquirer that absorbed a wake passes it on), and no unit may get lost.
    tandem::test::watchdog guard{600s};
    const int rounds = scaled(2000);
    int lost_units = 0;

    for (int r = 0; r < rounds; ++r) {
      tandem::semaphore sut{0};
      std::stop_source stop;
      std::atomic<int> got{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
          bool ok = t % 2 == 0 ? sut.acquire() : sut.acquire(stop.get_token());
          if (ok) got.fetch_add(1);
        });
      for (int k = 0; k < 8; ++k) {
        if (k == r % 8) stop.request_stop();
        sut.release();
      }
      for (auto& th : threads) th.join();
      int left = 0;
      while (sut.acquire(0s)) ++left;
      if (got.load() + left != 8) ++lost_units;
    }

    CHECK(lost_units == 0);
  }
}
