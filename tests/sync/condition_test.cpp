// tandem::condition: the lock, recursive lock and condition contracts (conformance bodies) over a
// condition with its own rlock, over a shared lock and over a shared rlock; and what is particular
// to the in-process condition: recursion levels across waits, stop tokens, non-bool predicates,
// the notify/timeout race resolved in favour of the notify.
#include "conformance/condition_bodies.hpp"
#include "conformance/lock_bodies.hpp"
#include "conformance/rlock_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/condition.hpp>
#include <tandem/lock.hpp>
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
using condition_over_lock = tandem::test::condition_over<tandem::lock, tandem::condition>;
using condition_over_rlock = tandem::test::condition_over<tandem::rlock, tandem::condition>;

TYPE_TO_STRING_AS("condition", subject<tandem::condition>);
TYPE_TO_STRING_AS("condition over lock", subject<condition_over_lock>);
TYPE_TO_STRING_AS("condition over rlock", subject<condition_over_rlock>);

TANDEM_BASE_LOCK_CONTRACT(subject<tandem::condition>, subject<condition_over_lock>,
                          subject<condition_over_rlock>);
TANDEM_PLAIN_LOCK_CONTRACT(subject<condition_over_lock>);
TANDEM_RLOCK_CONTRACT(subject<tandem::condition>, subject<condition_over_rlock>);
TANDEM_CONDITION_CONTRACT(subject<tandem::condition>, subject<condition_over_lock>,
                          subject<condition_over_rlock>);

namespace {

// Waits until `waiting` counts `n` waiters (counted under the lock right before wait()), then
// returns with the condition's lock held: the waiters are then queued.
void acquire_when_waiting(tandem::condition& sut, const std::atomic<int>& waiting, int n) {
  REQUIRE(tandem::test::bodies::acquire_when(sut, [&] { return waiting.load() == n; }));
}

} // namespace

TEST_SUITE("condition") {

  TEST_CASE("a condition over a lock acquires and releases that lock") {
    // lock_tests.py ConditionTests.test_acquire.
    tandem::test::watchdog guard{10s};
    tandem::lock shared;
    tandem::condition sut{shared};

    sut.acquire();
    CHECK_FALSE(shared.acquire(0s));
    sut.release();
    CHECK(shared.acquire(0s));
    CHECK_FALSE(sut.acquire(0s));
    shared.release();
    {
      std::scoped_lock with{sut};
      CHECK_FALSE(shared.acquire(0s));
    }
    CHECK_FALSE(shared.locked());
  }

  TEST_CASE("a default condition is recursive") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;

    sut.acquire();
    sut.acquire();
    CHECK(sut.try_lock());
    sut.unlock();
    sut.release();
    sut.release();
    CHECK_THROWS_AS(sut.release(), tandem::usage_error);
  }

  TEST_CASE("a wait releases every level of the rlock and restores them") {
    tandem::test::watchdog guard{10s};
    tandem::rlock shared;
    tandem::condition sut{shared};
    std::atomic<int> waiting{0};
    std::atomic<int> other_got_it{-1};
    std::optional<bool> notified;
    std::optional<std::size_t> level_after;

    std::thread waiter{[&] {
      shared.acquire();
      shared.acquire();
      sut.acquire();
      waiting = 1;
      notified = sut.wait();
      level_after = shared.recursion_count();
      sut.release();
      shared.release();
      shared.release();
    }};
    REQUIRE(tandem::test::wait_until([&] { return waiting.load() == 1; }));
    // While the waiter waits at level 3, the rlock is entirely free.
    sut.acquire();
    other_got_it = 1;
    sut.notify();
    sut.release();
    waiter.join();

    CHECK(notified == true);
    CHECK(level_after == 3u);
    CHECK_FALSE(shared.locked());
  }

  TEST_CASE("a waiter chosen by notify after its timeout expired returns true") {
    // The notifier holds the lock past the waiter's deadline: the waiter's timeout has expired, but
    // it cannot leave the queue without the lock, so the notify still chooses it. Having been
    // chosen, it must report the notify, not the timeout (Python would return false here and the
    // notify would be lost).
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::atomic<int> waiting{0};
    std::optional<bool> notified;

    std::thread waiter{[&] {
      std::scoped_lock with{sut};
      waiting = 1;
      notified = sut.wait(50ms);
    }};
    acquire_when_waiting(sut, waiting, 1);
    // Holding the lock past the waiter's deadline is the scenario under test.
    std::this_thread::sleep_for(150ms);
    sut.notify();
    sut.release();
    waiter.join();

    CHECK(notified == true);
  }

  TEST_CASE("a waiter whose timeout expired and that left the queue is not chosen") {
    // The converse: once a timed-out waiter has re-acquired the lock and left, a notify finds
    // nobody, and the waiter reports its timeout.
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::atomic<int> waiting{0};
    std::atomic<int> returned{0};
    std::optional<bool> notified;

    std::thread waiter{[&] {
      std::scoped_lock with{sut};
      waiting = 1;
      notified = sut.wait(50ms);
      returned = 1;
    }};
    REQUIRE(tandem::test::wait_until([&] { return returned.load() == 1; }));
    {
      std::scoped_lock with{sut};
      sut.notify();
    }
    waiter.join();

    CHECK(notified == false);
  }

  TEST_CASE("a waiter chosen by notify returns true even when its stop was requested meanwhile") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::stop_source stop;
    std::atomic<int> waiting{0};
    std::optional<bool> notified;

    std::thread waiter{[&] {
      std::scoped_lock with{sut};
      waiting = 1;
      notified = sut.wait(stop.get_token());
    }};
    acquire_when_waiting(sut, waiting, 1);
    sut.notify();
    stop.request_stop();
    sut.release();
    waiter.join();

    CHECK(notified == true);
  }

  TEST_CASE("a stop request ends a wait with false and the lock held") {
    tandem::test::watchdog guard{10s};
    tandem::lock shared;
    tandem::condition sut{shared};
    std::stop_source stop;
    std::atomic<int> waiting{0};
    std::optional<bool> notified;
    std::optional<bool> held_after;

    std::thread waiter{[&] {
      sut.acquire();
      waiting = 1;
      notified = sut.wait(stop.get_token());
      held_after = shared.locked();
      sut.release();
    }};
    acquire_when_waiting(sut, waiting, 1);
    sut.release();
    auto start = clock_type::now();
    stop.request_stop();
    waiter.join();

    CHECK(clock_type::now() - start < 2s);
    CHECK(notified == false);
    CHECK(held_after == true);
    // The stopped waiter left the queue: a notify now finds nobody and is forgotten.
    sut.acquire();
    sut.notify();
    CHECK_FALSE(sut.wait(0s));
    sut.release();
  }

  TEST_CASE("a wait with a stopped token returns false at once and keeps the lock") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::stop_source stop;
    stop.request_stop();
    std::scoped_lock with{sut};

    auto start = clock_type::now();
    CHECK_FALSE(sut.wait(stop.get_token()));
    CHECK_FALSE(sut.wait(stop.get_token(), 10s));
    CHECK(clock_type::now() - start < 2s);
    CHECK(sut.is_owned());
  }

  TEST_CASE("a stop request ends wait_for with the predicate's last value") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::stop_source stop;
    std::atomic<int> waiting{0};
    std::optional<bool> result;

    std::thread waiter{[&] {
      std::scoped_lock with{sut};
      waiting = 1;
      result = sut.wait_for(stop.get_token(), [] { return false; });
    }};
    acquire_when_waiting(sut, waiting, 1);
    sut.release();
    stop.request_stop();
    waiter.join();

    CHECK(result == false);
    // A true predicate wins over a stopped token.
    std::scoped_lock with{sut};
    CHECK(sut.wait_for(stop.get_token(), [] { return true; }));
  }

  TEST_CASE("wait_for returns the last value of a predicate that is not a bool") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::optional<int> value; // guarded by sut
    std::scoped_lock with{sut};

    CHECK(sut.wait_for([&] { return value; }, 10ms) == std::nullopt);
    value = 7;
    CHECK(sut.wait_for([&] { return value; }, 10ms) == 7);
    int calls = 0;
    CHECK(sut.wait_for([&] { return ++calls; }) == 1);
  }

  TEST_CASE("wait_for keeps one deadline across wakeups") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::atomic<bool> done{false};

    // A notifier that keeps waking the waiter: the wait must still end near its deadline.
    std::thread notifier{[&] {
      while (!done.load()) {
        {
          std::scoped_lock with{sut};
          sut.notify_all();
        }
        std::this_thread::sleep_for(5ms);
      }
    }};
    auto start = clock_type::now();
    bool result = false;
    {
      std::scoped_lock with{sut};
      result = sut.wait_for([] { return false; }, 200ms);
    }
    auto took = clock_type::now() - start;
    done = true;
    notifier.join();

    CHECK_FALSE(result);
    CHECK(took >= 120ms);
    CHECK(took < 2s);
  }

  TEST_CASE("a wait with a zero timeout lets other threads take the lock in between") {
    tandem::test::watchdog guard{10s};
    tandem::lock shared;
    tandem::condition sut{shared};
    std::scoped_lock with{sut};

    CHECK_FALSE(sut.wait(0s));
    CHECK_FALSE(sut.wait(-1s));
    CHECK_FALSE(sut.wait(clock_type::now() - 1h));
    CHECK(shared.locked());
  }

  TEST_CASE("a condition works with std condition_variable_any") {
    tandem::test::watchdog guard{10s};
    tandem::condition sut;
    std::condition_variable_any cv;
    bool ready = false; // guarded by sut

    std::thread t{[&] {
      std::scoped_lock with{sut};
      ready = true;
      cv.notify_one();
    }};
    {
      std::unique_lock with{sut};
      CHECK(cv.wait_for(with, 10s, [&] { return ready; }));
    }
    t.join();
    CHECK(sut.try_lock_until(std::chrono::system_clock::now() + 10ms));
    sut.unlock();
  }

  TEST_CASE("notify_all wakes every waiter of a condition over a shared rlock") {
    tandem::test::watchdog guard{10s};
    tandem::rlock shared;
    tandem::condition sut{shared};
    std::atomic<int> waiting{0};
    std::atomic<int> notified{0};
    std::vector<std::thread> waiters;

    for (int i = 0; i < 8; ++i)
      waiters.emplace_back([&] {
        std::scoped_lock with{sut};
        waiting.fetch_add(1);
        if (sut.wait(10s)) notified.fetch_add(1);
      });
    acquire_when_waiting(sut, waiting, 8);
    sut.notify_all();
    sut.release();
    for (auto& t : waiters) t.join();

    CHECK(notified.load() == 8);
  }
}
