// tandem::lock: the lock contracts (conformance bodies) and what is particular to the in-process
// lock: TimedLockable with the standard library, stop tokens, other clocks.
#include "conformance/lock_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/barrier.hpp>
#include <tandem/bounded_semaphore.hpp>
#include <tandem/condition.hpp>
#include <tandem/event.hpp>
#include <tandem/lock.hpp>
#include <tandem/rlock.hpp>
#include <tandem/semaphore.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <concepts>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

using namespace std::chrono_literals;
using tandem::test::subject;
using clock_type = std::chrono::steady_clock;

namespace {

// C++ TimedLockable, as std::scoped_lock, std::unique_lock and std::condition_variable_any need.
template <class T>
concept timed_lockable = requires(T& t) {
  t.lock();
  t.unlock();
  { t.try_lock() } -> std::same_as<bool>;
  { t.try_lock_for(1ms) } -> std::same_as<bool>;
  { t.try_lock_until(clock_type::now()) } -> std::same_as<bool>;
  { t.try_lock_until(std::chrono::system_clock::now()) } -> std::same_as<bool>;
};

template <class T>
constexpr bool pinned = !std::is_copy_constructible_v<T> && !std::is_move_constructible_v<T> &&
                        !std::is_copy_assignable_v<T> && !std::is_move_assignable_v<T>;

static_assert(timed_lockable<tandem::lock>);
static_assert(timed_lockable<tandem::rlock>);
static_assert(timed_lockable<tandem::condition>);
static_assert(timed_lockable<tandem::semaphore>);
static_assert(timed_lockable<tandem::bounded_semaphore>);
static_assert(pinned<tandem::lock> && pinned<tandem::rlock> && pinned<tandem::condition> &&
              pinned<tandem::event> && pinned<tandem::semaphore> &&
              pinned<tandem::bounded_semaphore> && pinned<tandem::barrier>);
static_assert(std::is_same_v<tandem::lock, tandem::basic_lock>);
static_assert(std::is_same_v<tandem::rlock, tandem::basic_rlock>);
static_assert(
    noexcept(std::declval<tandem::lock&>().unlock()) && noexcept(std::declval<tandem::rlock&>().unlock()) && noexcept(
        std::declval<tandem::condition&>()
            .unlock()) && noexcept(std::declval<tandem::semaphore&>()
                                       .unlock()) && noexcept(std::declval<tandem::
                                                                               bounded_semaphore&>()
                                                                  .unlock()) && noexcept(std::
                                                                                             declval<
                                                                                                 tandem::
                                                                                                     event&>()
                                                                                                 .clear()));

} // namespace

TYPE_TO_STRING_AS("lock", subject<tandem::lock>);

TANDEM_BASE_LOCK_CONTRACT(subject<tandem::lock>);
TANDEM_PLAIN_LOCK_CONTRACT(subject<tandem::lock>);

TEST_SUITE("lock") {

  TEST_CASE("a lock works with std scoped_lock and unique_lock") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;

    {
      std::scoped_lock held{sut};
      CHECK(sut.locked());
    }
    CHECK_FALSE(sut.locked());
    {
      std::unique_lock held{sut, std::try_to_lock};
      CHECK(held.owns_lock());
      std::unique_lock other{sut, std::defer_lock};
      CHECK_FALSE(other.try_lock_for(10ms));
      CHECK_FALSE(other.try_lock_until(clock_type::now() + 10ms));
      held.unlock();
      CHECK(other.try_lock_for(10ms));
    }
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("a lock works as the mutex of std condition_variable_any") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
    std::condition_variable_any cv;
    int items = 0; // guarded by sut
    int consumed = 0;

    std::thread consumer{[&] {
      std::unique_lock held{sut};
      for (int i = 0; i < 100; ++i) {
        cv.wait(held, [&] { return items > 0; });
        --items;
        ++consumed;
      }
    }};
    for (int i = 0; i < 100; ++i) {
      {
        std::scoped_lock held{sut};
        ++items;
      }
      cv.notify_one();
    }
    consumer.join();

    CHECK(consumed == 100);
    CHECK(items == 0);
  }

  TEST_CASE("try_lock_until accepts deadlines of the system clock") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;

    CHECK(sut.try_lock_until(std::chrono::system_clock::now() + 1s));
    auto start = clock_type::now();
    CHECK_FALSE(sut.try_lock_until(std::chrono::system_clock::now() + 100ms));
    auto took = clock_type::now() - start;
    CHECK(took >= 60ms);
    CHECK(took < 1s);
    start = clock_type::now();
    CHECK_FALSE(sut.try_lock_until(std::chrono::system_clock::now() - 1h));
    CHECK_FALSE(sut.try_lock_until(std::chrono::system_clock::time_point::min()));
    CHECK(clock_type::now() - start < 100ms);
    sut.unlock();
    CHECK(sut.try_lock_until(std::chrono::system_clock::time_point::max()));
    sut.release();
  }

  TEST_CASE("try_lock_for and try_lock_until time out after their duration") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
    sut.lock();

    auto start = clock_type::now();
    CHECK_FALSE(sut.try_lock_for(100ms));
    auto took = clock_type::now() - start;
    CHECK(took >= 60ms);
    CHECK(took < 1s);
    start = clock_type::now();
    CHECK_FALSE(sut.try_lock_until(clock_type::now() + 100ms));
    took = clock_type::now() - start;
    CHECK(took >= 60ms);
    CHECK(took < 1s);
    CHECK_FALSE(sut.try_lock_for(std::chrono::duration<double>(-1.0)));
    sut.unlock();
  }

  TEST_CASE("a stop request makes a blocked acquire return false promptly") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
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
    REQUIRE(result.has_value());
    CHECK_FALSE(*result);
    CHECK(sut.locked()); // still ours
    sut.release();
  }

  TEST_CASE("a stopped token makes acquire return false even on a free lock") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
    std::stop_source stop;
    stop.request_stop();

    CHECK_FALSE(sut.acquire(stop.get_token()));
    CHECK_FALSE(sut.acquire(stop.get_token(), 0s));
    CHECK_FALSE(sut.locked());
  }

  TEST_CASE("an acquire with a token that is never stopped behaves as a plain acquire") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
    std::stop_source stop;

    CHECK(sut.acquire(stop.get_token()));
    auto start = clock_type::now();
    CHECK_FALSE(sut.acquire(stop.get_token(), 100ms));
    CHECK(clock_type::now() - start >= 60ms);
    CHECK_FALSE(sut.acquire(std::stop_token{}, 0s));
    sut.release();
    CHECK(sut.acquire(std::stop_token{}, 0s));
    sut.release();
  }

  TEST_CASE("the release of a lock publishes earlier writes to the next acquirer") {
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
    long long total = 0; // guarded by sut

    std::thread t{[&] {
      for (int i = 0; i < 10000; ++i) {
        std::scoped_lock held{sut};
        total += 1;
      }
    }};
    for (int i = 0; i < 10000; ++i) {
      sut.acquire();
      total += 2;
      sut.release();
    }
    t.join();

    CHECK(total == 30000);
  }

  TEST_CASE("a lock can hand itself over from one thread to another") {
    // A lock as a binary signal: one thread acquires, another releases (Python's classic use).
    tandem::test::watchdog guard{10s};
    tandem::lock sut;
    std::atomic<int> rounds{0};
    sut.acquire();

    std::thread t{[&] {
      for (int i = 0; i < 1000; ++i) {
        sut.release(); // hand over to the main thread
        while (rounds.load() == i) std::this_thread::yield();
      }
    }};
    for (int i = 0; i < 1000; ++i) {
      sut.acquire(); // wait for the other thread's release
      rounds.fetch_add(1);
    }
    t.join();

    CHECK(rounds.load() == 1000);
    CHECK(sut.locked());
    sut.release();
  }
}
