// tandem::semaphore and tandem::bounded_semaphore: the semaphore contracts (conformance bodies) and
// what is particular to the in-process semaphores: TimedLockable, stop tokens, limits, release(n)
// waking exactly as many acquirers.
#include "conformance/semaphore_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/bounded_semaphore.hpp>
#include <tandem/semaphore.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using tandem::test::subject;
using clock_type = std::chrono::steady_clock;

TYPE_TO_STRING_AS("semaphore", subject<tandem::semaphore>);
TYPE_TO_STRING_AS("bounded_semaphore", subject<tandem::bounded_semaphore>);

TANDEM_SEMAPHORE_CONTRACT(subject<tandem::semaphore>, subject<tandem::bounded_semaphore>);
TANDEM_UNBOUNDED_SEMAPHORE_CONTRACT(subject<tandem::semaphore>);
TANDEM_BOUNDED_SEMAPHORE_CONTRACT(subject<tandem::bounded_semaphore>);

static_assert(!std::is_convertible_v<tandem::bounded_semaphore&, tandem::semaphore&>,
              "the bound must not be bypassed through the base");

namespace {

template <class Sem>
void check_release_wakes_exactly() {
  tandem::test::watchdog guard{20s};
  Sem sut(5);
  for (int i = 0; i < 5; ++i) sut.acquire();
  std::atomic<int> through{0};
  std::vector<pid_t> tids(5);
  std::atomic<int> started{0};
  std::vector<std::thread> acquirers;
  for (int i = 0; i < 5; ++i)
    acquirers.emplace_back([&, i] {
      tids[static_cast<std::size_t>(i)] = tandem::test::tid();
      started.fetch_add(1);
      sut.acquire();
      through.fetch_add(1);
    });
  REQUIRE(tandem::test::wait_until([&] { return started.load() == 5; }));
  REQUIRE(tandem::test::wait_until_blocked(tids));

  sut.release(3);
  CHECK(tandem::test::wait_until([&] { return through.load() == 3; }));
  tandem::test::bodies::settle();
  CHECK(through.load() == 3);
  sut.release(2);
  for (auto& t : acquirers) t.join();

  CHECK(through.load() == 5);
  CHECK_FALSE(sut.acquire(0s));
}

template <class Sem>
void check_stop_ends_acquire() {
  tandem::test::watchdog guard{10s};
  Sem sut(1);
  sut.acquire();
  std::stop_source stop;
  std::atomic<pid_t> waiter{0};
  std::optional<bool> result;

  std::thread t{[&] {
    waiter = tandem::test::tid();
    result = sut.acquire(stop.get_token());
  }};
  REQUIRE(tandem::test::wait_until([&] { return waiter.load() != 0; }));
  pid_t tids[] = {waiter.load()};
  REQUIRE(tandem::test::wait_until_blocked(tids));
  auto start = clock_type::now();
  stop.request_stop();
  t.join();

  CHECK(clock_type::now() - start < 2s);
  CHECK(result == false);
  // The unit still goes to the next acquirer.
  sut.release();
  CHECK_FALSE(sut.acquire(stop.get_token()));
  CHECK(sut.acquire(std::stop_token{}, 0s));
}

} // namespace

TEST_SUITE("semaphore") {

  TEST_CASE("release of n units lets exactly n blocked acquirers through") {
    check_release_wakes_exactly<tandem::semaphore>();
  }

  TEST_CASE("a stop request ends a blocked acquire with false") {
    check_stop_ends_acquire<tandem::semaphore>();
  }

  TEST_CASE("a semaphore works with std scoped_lock and unique_lock") {
    tandem::test::watchdog guard{10s};
    tandem::semaphore sut{2};

    {
      std::scoped_lock one{sut};
      std::unique_lock two{sut, std::defer_lock};
      CHECK(two.try_lock_for(10ms));
      std::unique_lock three{sut, std::defer_lock};
      auto start = clock_type::now();
      CHECK_FALSE(three.try_lock_until(std::chrono::system_clock::now() + 100ms));
      CHECK(clock_type::now() - start >= 60ms);
      CHECK_FALSE(three.try_lock());
    }
    CHECK(sut.acquire(0s));
    CHECK(sut.acquire(0s));
    CHECK_FALSE(sut.acquire(0s));
  }

  TEST_CASE("a semaphore bounds how many threads are inside at once") {
    tandem::test::watchdog guard{20s};
    tandem::semaphore sut{3};
    std::atomic<int> inside{0};
    std::atomic<int> most{0};
    std::vector<std::thread> threads;

    for (int i = 0; i < 8; ++i)
      threads.emplace_back([&] {
        for (int k = 0; k < 500; ++k) {
          std::scoped_lock slot{sut};
          int now = inside.fetch_add(1) + 1;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          std::this_thread::yield();
          inside.fetch_sub(1);
        }
      });
    for (auto& t : threads) t.join();

    CHECK(most.load() <= 3);
    CHECK(most.load() >= 1);
    CHECK(inside.load() == 0);
  }

  TEST_CASE("the count is limited to max and a release past it is a value error") {
    tandem::test::watchdog guard{10s};
    constexpr auto max = tandem::semaphore::max();

    CHECK_THROWS_AS(tandem::semaphore{max + 1}, tandem::value_error);
    CHECK_THROWS_AS(tandem::semaphore{std::numeric_limits<std::uint64_t>::max()},
                    tandem::value_error);
    tandem::semaphore full{max};
    CHECK_THROWS_AS(full.release(), tandem::value_error);
    full.unlock(); // never throws
    tandem::semaphore almost{max - 1};
    CHECK_THROWS_AS(almost.release(2), tandem::value_error);
    almost.release(1);
    CHECK_THROWS_AS(almost.release(), tandem::value_error);
    CHECK_THROWS_AS(tandem::semaphore{0}.release(std::numeric_limits<std::size_t>::max()),
                    tandem::value_error);
  }

  TEST_CASE("initial values of any integer type are accepted") {
    tandem::semaphore from_unsigned{3u};
    tandem::semaphore from_size{std::size_t{2}};
    tandem::semaphore from_long_long{1LL};
    tandem::semaphore from_default;

    CHECK(from_unsigned.acquire(0s));
    CHECK(from_size.acquire(0s));
    CHECK(from_size.acquire(0s));
    CHECK_FALSE(from_size.acquire(0s));
    CHECK(from_long_long.acquire(0s));
    CHECK(from_default.acquire(0s));
    CHECK_FALSE(from_default.acquire(0s));
  }
}

TEST_SUITE("bounded_semaphore") {

  TEST_CASE("release of n units lets exactly n blocked acquirers through") {
    check_release_wakes_exactly<tandem::bounded_semaphore>();
  }

  TEST_CASE("a stop request ends a blocked acquire with false") {
    check_stop_ends_acquire<tandem::bounded_semaphore>();
  }

  TEST_CASE("initial_value reports the bound") {
    CHECK(tandem::bounded_semaphore{}.initial_value() == 1);
    CHECK(tandem::bounded_semaphore{7}.initial_value() == 7);
    CHECK(tandem::bounded_semaphore{0u}.initial_value() == 0);
    CHECK_THROWS_AS(tandem::bounded_semaphore{-3}, tandem::value_error);
    CHECK_THROWS_AS(tandem::bounded_semaphore{tandem::bounded_semaphore::max() + 1},
                    tandem::value_error);
  }

  TEST_CASE("concurrent releases never push the count past the bound") {
    tandem::test::watchdog guard{20s};
    for (int round = 0; round < 50; ++round) {
      tandem::bounded_semaphore sut{4};
      for (int i = 0; i < 4; ++i) sut.acquire();
      std::atomic<int> accepted{0};
      std::atomic<int> refused{0};
      std::atomic<bool> go{false};
      std::vector<std::thread> releasers;

      for (int i = 0; i < 8; ++i)
        releasers.emplace_back([&] {
          while (!go.load()) std::this_thread::yield();
          try {
            sut.release();
            accepted.fetch_add(1);
          } catch (const tandem::value_error&) {
            refused.fetch_add(1);
          }
        });
      go = true;
      for (auto& t : releasers) t.join();

      CHECK(accepted.load() == 4);
      CHECK(refused.load() == 4);
      int units = 0;
      while (sut.acquire(0s)) ++units;
      CHECK(units == 4);
    }
  }

  TEST_CASE("a bounded semaphore works with std scoped_lock") {
    tandem::test::watchdog guard{10s};
    tandem::bounded_semaphore sut{1};

    {
      std::scoped_lock slot{sut};
      CHECK_FALSE(sut.try_lock());
      CHECK_FALSE(sut.try_lock_for(10ms));
    }
    CHECK_THROWS_AS(sut.release(), tandem::value_error);
    CHECK(sut.try_lock_until(std::chrono::system_clock::now()));
    sut.unlock();
    sut.unlock(); // at the bound: nothing happens
    CHECK(sut.acquire(0s));
    CHECK_FALSE(sut.acquire(0s));
  }
}
