// tandem::rlock: the lock and recursive lock contracts (conformance bodies) and what is particular
// to the in-process rlock: release_save/acquire_restore, TimedLockable, stop tokens.
#include "conformance/lock_bodies.hpp"
#include "conformance/rlock_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/rlock.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

using namespace std::chrono_literals;
using tandem::test::subject;
using clock_type = std::chrono::steady_clock;

TYPE_TO_STRING_AS("rlock", subject<tandem::rlock>);

TANDEM_BASE_LOCK_CONTRACT(subject<tandem::rlock>);
TANDEM_RLOCK_CONTRACT(subject<tandem::rlock>);

TEST_SUITE("rlock") {

  TEST_CASE("release_save frees every level and acquire_restore takes them back") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    std::optional<bool> other_got_it;
    sut.acquire();
    sut.acquire();
    sut.acquire();

    auto level = sut.release_save();
    CHECK_FALSE(sut.locked());
    CHECK_FALSE(sut.is_owned());
    std::thread t{[&] {
      other_got_it = sut.acquire(0s);
      if (*other_got_it) sut.release();
    }};
    t.join();
    sut.acquire_restore(level);

    CHECK(level == 3);
    CHECK(other_got_it == true);
    CHECK(sut.recursion_count() == 3);
    sut.release();
    sut.release();
    sut.release();
    CHECK_FALSE(sut.locked());
    CHECK_THROWS_AS(sut.release_save(), tandem::usage_error);
  }

  TEST_CASE("an rlock works with nested std scoped_lock and unique_lock") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;

    {
      std::scoped_lock outer{sut};
      std::scoped_lock inner{sut};
      CHECK(sut.recursion_count() == 2);
      std::unique_lock timed{sut, std::defer_lock};
      CHECK(timed.try_lock_for(0ms));
      std::unique_lock until{sut, std::defer_lock};
      CHECK(until.try_lock_until(std::chrono::system_clock::now()));
      CHECK(sut.recursion_count() == 4);
    }
    CHECK(sut.recursion_count() == 0);
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("an rlock works as the mutex of std condition_variable_any") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    std::condition_variable_any cv;
    bool ready = false; // guarded by sut

    std::thread t{[&] {
      std::scoped_lock held{sut};
      ready = true;
      cv.notify_one();
    }};
    {
      std::unique_lock held{sut};
      CHECK(cv.wait_for(held, 10s, [&] { return ready; }));
      CHECK(sut.is_owned());
    }
    t.join();
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("try_lock_until on the system clock times out while another thread owns the rlock") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    std::atomic<int> phase{0};
    std::optional<bool> result;
    clock_type::duration took{};

    std::thread owner{[&] {
      sut.acquire();
      phase = 1;
      tandem::test::wait_until([&] { return phase.load() == 2; });
      sut.release();
    }};
    REQUIRE(tandem::test::wait_until([&] { return phase.load() == 1; }));
    auto start = clock_type::now();
    result = sut.try_lock_until(std::chrono::system_clock::now() + 100ms);
    took = clock_type::now() - start;
    phase = 2;
    owner.join();

    CHECK(result == false);
    CHECK(took >= 60ms);
    CHECK(took < 1s);
    CHECK(sut.try_lock_for(1s));
    sut.unlock();
  }

  TEST_CASE("a stop request makes a blocked acquire return false promptly") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    std::stop_source stop;
    std::atomic<pid_t> waiter{0};
    std::optional<bool> result;
    sut.acquire();

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
    CHECK(sut.recursion_count() == 1);
    sut.release();
  }

  TEST_CASE("the owner re-enters an rlock even with a stopped token") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    std::stop_source stop;
    stop.request_stop();

    CHECK_FALSE(sut.acquire(stop.get_token()));
    sut.acquire();
    CHECK(sut.acquire(stop.get_token()));
    CHECK(sut.recursion_count() == 2);
    sut.release();
    sut.release();
  }

  TEST_CASE("unlock by a thread that does not own the rlock does nothing") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    sut.acquire();

    std::thread t{[&] { sut.unlock(); }};
    t.join();
    sut.unlock(); // never throws either when called too often by the owner...
    sut.unlock(); // ...after the last level

    std::optional<bool> other_got_it;
    std::thread probe{[&] {
      other_got_it = sut.acquire(0s);
      if (*other_got_it) sut.release();
    }};
    probe.join();
    CHECK(other_got_it == true);
  }

  TEST_CASE("recursion_count is per thread") {
    tandem::test::watchdog guard{10s};
    tandem::rlock sut;
    std::optional<std::size_t> seen_by_other;
    sut.acquire();
    sut.acquire();

    std::thread t{[&] { seen_by_other = sut.recursion_count(); }};
    t.join();

    CHECK(seen_by_other == 0u);
    CHECK(sut.recursion_count() == 2);
    sut.release();
    sut.release();
  }
}
