// Conformance bodies of the lock contract, ported from CPython's Lib/test/lock_tests.py
// (BaseLockTests, LockTests), written once over a subject (see flavour.hpp).
//
//   base lock contract  every lock type: lock, rlock, condition (any lock it wraps)
//   plain lock contract non-recursive locks any party may release: lock, condition over a lock
//
// Instantiate with
//   TANDEM_BASE_LOCK_CONTRACT(subject<tandem::lock>, subject<tandem::rlock>, ...);
//   TANDEM_PLAIN_LOCK_CONTRACT(subject<tandem::lock>, ...);
// in exactly one translation unit per executable, after TYPE_TO_STRING_AS for each subject.
//
// This header also holds the helpers every *_bodies.hpp uses (namespace tandem::test::bodies).
#pragma once

#include "conformance/flavour.hpp"
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

#include <doctest/doctest.h>

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

namespace tandem::test::bodies {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// Python's assertTimeout: an expired wait took at least 0.6x its timeout and less than 10x. On a
/// busy 2-CPU machine a 10 ms wait can be scheduled 100+ ms late, so the upper bound is at least
/// the timeout plus 2 s: still far from a wait that ignores its timeout.
inline void check_timeout(clock_type::duration actual, clock_type::duration expected) {
  CHECK(actual >= expected * 6 / 10);
  CHECK(actual < std::max<clock_type::duration>(expected * 10, expected + 2s));
}

/// Nanoseconds since `start`, for a shared<long long> cell.
inline long long elapsed_ns(clock_type::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - start).count();
}

/// Waits until the shared cell `c` holds at least `n`; returns whether it did within 10 s.
template <class Cell, class N>
bool reaches(const Cell& c, N n) {
  return wait_until([&] { return c.load() >= n; });
}

/// Gives parties that should stay blocked a chance to (wrongly) get through before the body
/// checks that they did not. Not synchronization: a correct primitive passes without it, and a
/// broken one is only caught more often with it.
inline void settle() {
  std::this_thread::sleep_for(30ms);
}

/// The kernel ids of parties, recorded by the parties themselves, so the body can wait until they
/// are asleep: exact for in-process parties (threads of this process); other flavours, whose
/// parties this process cannot inspect, fall back to settle().
template <class F>
class sleepers {
public:
  explicit sleepers(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) tids_.push_back(F::template make<shared<pid_t>>(0));
  }

  /// Called by party `i` just before it blocks.
  void arrive(std::size_t i) { tids_[i]->store(tandem::test::tid()); }

  /// Waits until every party has arrived and is asleep.
  bool wait_blocked() {
    bool arrived = wait_until([&] {
      for (auto& t : tids_)
        if (t->load() == 0) return false;
      return true;
    });
    if constexpr (std::is_same_v<F, inprocess>) {
      std::vector<pid_t> ids;
      for (auto& t : tids_) ids.push_back(t->load());
      return arrived && wait_until_blocked(ids);
    } else {
      settle();
      return arrived;
    }
  }

private:
  std::vector<decltype(F::template make<shared<pid_t>>(0))> tids_;
};

/// True when T has Python 3.13's `locked()` (lock, rlock; not condition).
template <class T>
concept has_locked = requires(const T& t) {
  { t.locked() } -> std::convertible_to<bool>;
};

/// The exception bodies throw through a scoped lock.
struct body_error : std::runtime_error {
  body_error() : std::runtime_error("raised by the test body") {}
};

} // namespace tandem::test::bodies

// -- base lock contract (BaseLockTests) ----------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("a new lock can be acquired and released" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_acquire_release) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK(sut->acquire());
  if constexpr (has_locked<typename S::type>) CHECK(sut->locked());
  sut->release();
  if constexpr (has_locked<typename S::type>) CHECK_FALSE(sut->locked());
  CHECK(sut->acquire());
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("a held lock can be destroyed" * doctest::test_suite("lock contract"), S,
                          base_lock_acquire_destroy) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto other_got_it = F::template make<tandem::test::shared<int>>(-1);

  sut->acquire();
  {
    typename F::parties ps;
    ps.start([&] { other_got_it->store(sut->acquire(0s) ? 1 : 0); });
  }
  sut.reset();

  CHECK(other_got_it->load() == 0);
}

TEST_CASE_TEMPLATE_DEFINE("a try acquire succeeds on a free lock" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_try_acquire) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK(sut->acquire(0s));
  sut->release();
  CHECK(sut->try_lock());
  sut->unlock();
  CHECK(sut->acquire(-1s));
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("a try acquire fails while another party holds the lock" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_try_acquire_contended) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto zero = F::template make<tandem::test::shared<int>>(-1);
  auto negative = F::template make<tandem::test::shared<int>>(-1);
  auto try_lock = F::template make<tandem::test::shared<int>>(-1);
  auto took_ns = F::template make<tandem::test::shared<long long>>(0);
  sut->acquire();

  {
    typename F::parties ps;
    ps.start([&] {
      auto start = clock_type::now();
      zero->store(sut->acquire(0s) ? 1 : 0);
      negative->store(sut->acquire(-100s) ? 1 : 0);
      try_lock->store(sut->try_lock() ? 1 : 0);
      took_ns->store(elapsed_ns(start));
    });
  }

  CHECK(zero->load() == 0);
  CHECK(negative->load() == 0);
  CHECK(try_lock->load() == 0);
  CHECK(took_ns->load() < std::chrono::nanoseconds(1s).count());
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("contended acquirers block until the lock is released" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_acquire_contended) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = 5;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto finished = F::template make<tandem::test::shared<int>>(0);
  sleepers<F> blocked{n};
  sut->acquire();

  typename F::parties ps;
  ps.start_n(n, [&](std::size_t i) {
    blocked.arrive(i);
    sut->acquire();
    sut->release();
    finished->fetch_add(1);
  });
  CHECK(blocked.wait_blocked());
  CHECK(finished->load() == 0);
  sut->release();
  ps.join();

  CHECK(finished->load() == static_cast<int>(n));
}

TEST_CASE_TEMPLATE_DEFINE("a scoped lock releases the lock even when an exception leaves it" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_with) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto free_after_scope = F::template make<tandem::test::shared<int>>(-1);
  auto free_after_throw = F::template make<tandem::test::shared<int>>(-1);
  auto probe = [&](auto& cell) {
    typename F::parties ps;
    ps.start([&] {
      bool got = sut->acquire(0s);
      if (got) sut->release();
      cell.store(got ? 1 : 0);
    });
  };

  { std::scoped_lock with{*sut}; }
  probe(*free_after_scope);
  CHECK_THROWS_AS(([&] {
                    std::scoped_lock with{*sut};
                    throw body_error{};
                  }()),
                  body_error);
  probe(*free_after_throw);

  CHECK(free_after_scope->load() == 1);
  CHECK(free_after_throw->load() == 1);
}

TEST_CASE_TEMPLATE_DEFINE("an acquire with a timeout succeeds at once on a free lock" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_timeout_free) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK(sut->acquire(tandem::timeout_max));
  sut->release();
  auto start = clock_type::now();
  CHECK(sut->acquire(5s));
  CHECK(clock_type::now() - start < 5s);
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("a contended acquire times out after its timeout" *
                              doctest::test_suite("lock contract"),
                          S, base_lock_timeout_contended) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto result = F::template make<tandem::test::shared<int>>(-1);
  auto took_ns = F::template make<tandem::test::shared<long long>>(0);
  sut->acquire();

  {
    typename F::parties ps;
    ps.start([&] {
      auto start = clock_type::now();
      result->store(sut->acquire(200ms) ? 1 : 0);
      took_ns->store(elapsed_ns(start));
    });
  }

  CHECK(result->load() == 0);
  check_timeout(std::chrono::nanoseconds(took_ns->load()), 200ms);
  sut->release();
}

// -- plain lock contract (LockTests) -------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("a lock is not recursive so a second acquire waits for a release" *
                              doctest::test_suite("lock contract"),
                          S, plain_lock_reacquire) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto phase = F::template make<tandem::test::shared<int>>(0);
  sleepers<F> blocked{1};

  typename F::parties ps;
  ps.start([&] {
    sut->acquire();
    phase->store(1);
    blocked.arrive(0);
    sut->acquire();
    phase->store(2);
    // Stay alive while the body checks: a robust cross-process lock hands a dead holder's lock
    // to the next acquirer.
    reaches(*phase, 3);
  });
  CHECK(reaches(*phase, 1));
  CHECK(blocked.wait_blocked());
  CHECK(phase->load() == 1);
  sut->release();

  CHECK(reaches(*phase, 2));
  CHECK_FALSE(sut->acquire(0s)); // the party's second acquire holds it
  phase->store(3);
  ps.join();
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("any party may release a lock" * doctest::test_suite("lock contract"), S,
                          plain_lock_different_thread) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto released = F::template make<tandem::test::shared<int>>(0);
  sut->acquire();

  {
    typename F::parties ps;
    ps.start([&] {
      sut->release();
      released->store(1);
    });
  }

  CHECK(released->load() == 1);
  CHECK(sut->acquire(0s));
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("a lock is free after a timed out acquire and its release" *
                              doctest::test_suite("lock contract"),
                          S, plain_lock_state_after_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  sut->acquire();
  CHECK_FALSE(sut->acquire(10ms));
  sut->release();

  if constexpr (has_locked<typename S::type>) CHECK_FALSE(sut->locked());
  CHECK(sut->acquire(0s));
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("releasing an unlocked lock is a usage error that changes nothing" *
                              doctest::test_suite("lock contract"),
                          S, plain_lock_release_unlocked) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK_THROWS_AS(sut->release(), tandem::usage_error);
  sut->acquire();
  sut->release();
  CHECK_THROWS_AS(sut->release(), tandem::usage_error);
  sut->unlock(); // never throws

  CHECK(sut->acquire(0s));
  CHECK_FALSE(sut->acquire(0s));
  sut->release();
}

#define TANDEM_BASE_LOCK_CONTRACT(...)                                                             \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_acquire_release, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_acquire_destroy, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_try_acquire, __VA_ARGS__);                                   \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_try_acquire_contended, __VA_ARGS__);                         \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_acquire_contended, __VA_ARGS__);                             \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_with, __VA_ARGS__);                                          \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_timeout_free, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(base_lock_timeout_contended, __VA_ARGS__)

#define TANDEM_PLAIN_LOCK_CONTRACT(...)                                                            \
  TEST_CASE_TEMPLATE_INVOKE(plain_lock_reacquire, __VA_ARGS__);                                    \
  TEST_CASE_TEMPLATE_INVOKE(plain_lock_different_thread, __VA_ARGS__);                             \
  TEST_CASE_TEMPLATE_INVOKE(plain_lock_state_after_timeout, __VA_ARGS__);                          \
  TEST_CASE_TEMPLATE_INVOKE(plain_lock_release_unlocked, __VA_ARGS__)
