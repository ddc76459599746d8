// Conformance bodies of the condition contract, ported from CPython's Lib/test/lock_tests.py
// (ConditionTests) and extended with what tandem promises beyond Python: notify(n) wakes exactly
// min(n, waiters), oldest first; no spurious wakeups; a notify that races with a timeout is never
// lost. Subjects: condition (own rlock), condition over a lock, condition over an rlock.
//
// Parties know that another party waits without sleeping: a waiter counts itself in a shared cell
// while it holds the lock, right before wait(); wait() releases the lock only once the waiter is
// queued, so whoever acquires the lock after seeing the count finds that waiter queued.
//
//   TANDEM_CONDITION_CONTRACT(subject<tandem::condition>, ...);
#pragma once

#include "conformance/lock_bodies.hpp"

#include <tandem/error.hpp>

#include <doctest/doctest.h>

#include <array>

namespace tandem::test {

template <class Lock>
struct lock_holder {
  Lock held_lock;
};

/// A condition over a lock it carries along, so that `F::make<condition_over<L, C>>()` builds "a
/// condition sharing a lock" as one subject. The lock is a base, so it is built before the
/// condition that refers to it and destroyed after it.
template <class Lock, class Condition>
class condition_over : private lock_holder<Lock>, public Condition {
public:
  condition_over() : Condition(this->held_lock) {}

  /// The lock the condition shares.
  Lock& shared_lock() noexcept { return this->held_lock; }
};

} // namespace tandem::test

namespace tandem::test::bodies {

/// Acquires `sut` once `pred()` holds under it, polling; returns with the lock held.
template <class T, class Pred>
bool acquire_when(T& sut, Pred pred) {
  auto deadline = clock_type::now() + 10s;
  for (;;) {
    sut.acquire();
    if (pred()) return true;
    sut.release();
    if (clock_type::now() >= deadline) return false;
    std::this_thread::yield();
  }
}

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("wait and notify without holding the lock are usage errors" *
                              doctest::test_suite("condition contract"),
                          S, condition_unacquired) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK_THROWS_AS(sut->wait(), tandem::usage_error);
  CHECK_THROWS_AS(sut->wait(0s), tandem::usage_error);
  CHECK_THROWS_AS(sut->notify(), tandem::usage_error);
  CHECK_THROWS_AS(sut->notify(3), tandem::usage_error);
  CHECK_THROWS_AS(sut->notify_all(), tandem::usage_error);
  CHECK_THROWS_AS(sut->wait_for([] { return false; }, 0s), tandem::usage_error);

  // The failed calls left the lock usable.
  CHECK(sut->acquire(0s));
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("notify wakes the waiters it is asked to in each phase" *
                              doctest::test_suite("condition contract"),
                          S, condition_notify_phases) {
  // lock_tests.py _check_notify, twice on the same condition: five parties wait twice each;
  // notify(3), then notify(5) (to parties in their first or second wait), then notify_all. A party
  // records the phase it sees after waking; the notifier sets the phase after notifying, under the
  // lock, so a party woken by a given notify sees that notify's phase.
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr int n = 5;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>();

  for (int round = 0; round < 2; ++round) {
    auto ready = F::template make<tandem::test::shared<int>>(0);
    auto phase = F::template make<tandem::test::shared<int>>(0);
    auto not_notified = F::template make<tandem::test::shared<int>>(0);
    std::array<decltype(F::template make<tandem::test::shared<int>>(0)), 4> first, second;
    for (int p = 0; p < 4; ++p) {
      first[p] = F::template make<tandem::test::shared<int>>(0);
      second[p] = F::template make<tandem::test::shared<int>>(0);
    }
    auto total = [&] {
      int sum = 0;
      for (int p = 0; p < 4; ++p) sum += first[p]->load() + second[p]->load();
      return sum;
    };

    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      for (auto* results : {&first, &second}) {
        sut->acquire();
        ready->fetch_add(1);
        if (!sut->wait()) not_notified->fetch_add(1);
        int seen = phase->load();
        sut->release();
        (*results)[seen]->fetch_add(1);
      }
    });

    // Phase 1: notify(3) with all five in their first wait.
    REQUIRE(acquire_when(*sut, [&] { return ready->load() == n; }));
    sut->notify(3);
    phase->store(1);
    sut->release();
    CHECK(tandem::test::wait_until([&] { return first[1]->load() == 3; }));
    // Phase 2: notify(5) once the three woken parties wait again: two wait for the first time,
    // three for the second, all five wake.
    REQUIRE(acquire_when(*sut, [&] { return ready->load() == n + 3; }));
    CHECK(total() == 3);
    sut->notify(5);
    phase->store(2);
    sut->release();
    CHECK(tandem::test::wait_until([&] { return total() == n + 3; }));
    // Phase 3: notify_all with the last two in their second wait.
    REQUIRE(acquire_when(*sut, [&] { return ready->load() == 2 * n; }));
    sut->notify_all();
    phase->store(3);
    sut->release();
    ps.join();

    CHECK(first[1]->load() == 3);
    CHECK(first[2]->load() == 2);
    CHECK(second[2]->load() == 3);
    CHECK(second[3]->load() == 2);
    CHECK(first[0]->load() + first[3]->load() + second[0]->load() + second[1]->load() == 0);
    CHECK(not_notified->load() == 0);
  }
}

TEST_CASE_TEMPLATE_DEFINE("notify wakes exactly min of n and the waiters and the oldest first" *
                              doctest::test_suite("condition contract"),
                          S, condition_notify_exact) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = 6;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>();
  auto ready = F::template make<tandem::test::shared<int>>(0);
  auto phase = F::template make<tandem::test::shared<int>>(0);
  auto woken = F::template make<tandem::test::shared<int>>(0);
  auto not_notified = F::template make<tandem::test::shared<int>>(0);
  std::vector<decltype(F::template make<tandem::test::shared<int>>(0))> woke_in;
  for (std::size_t i = 0; i < n; ++i)
    woke_in.push_back(F::template make<tandem::test::shared<int>>(-1));

  typename F::parties ps;
  // Start the waiters one at a time, so the queue order is the start order.
  for (std::size_t i = 0; i < n; ++i) {
    ps.start([&, i] {
      sut->acquire();
      ready->fetch_add(1);
      if (!sut->wait()) not_notified->fetch_add(1);
      woke_in[i]->store(phase->load());
      sut->release();
      woken->fetch_add(1);
    });
    REQUIRE(acquire_when(*sut, [&] { return ready->load() == static_cast<int>(i) + 1; }));
    sut->release();
  }

  sut->acquire();
  sut->notify(0);
  sut->notify(2);
  phase->store(1);
  sut->release();
  CHECK(reaches(*woken, 2));
  settle();
  CHECK(woken->load() == 2);
  sut->acquire();
  sut->notify(100);
  phase->store(2);
  sut->release();
  ps.join();

  CHECK(woken->load() == static_cast<int>(n));
  CHECK(not_notified->load() == 0);
  CHECK(woke_in[0]->load() == 1);
  CHECK(woke_in[1]->load() == 1);
  for (std::size_t i = 2; i < n; ++i) CHECK(woke_in[i]->load() == 2);
}

TEST_CASE_TEMPLATE_DEFINE("a notify with no waiter is not remembered" *
                              doctest::test_suite("condition contract"),
                          S, condition_notify_forgotten) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  sut->acquire();
  sut->notify();
  sut->notify(5);
  sut->notify_all();
  auto start = clock_type::now();
  bool notified = sut->wait(100ms);
  auto took = clock_type::now() - start;
  sut->release();

  CHECK_FALSE(notified);
  check_timeout(took, 100ms);
}

TEST_CASE_TEMPLATE_DEFINE("an unnotified wait times out and returns false" *
                              doctest::test_suite("condition contract"),
                          S, condition_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = 5;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto notified = F::template make<tandem::test::shared<int>>(0);
  auto still_held = F::template make<tandem::test::shared<int>>(0);
  std::vector<decltype(F::template make<tandem::test::shared<long long>>(0))> took;
  for (std::size_t i = 0; i < n; ++i)
    took.push_back(F::template make<tandem::test::shared<long long>>(0));

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t i) {
      sut->acquire();
      auto start = clock_type::now();
      if (sut->wait(200ms)) notified->fetch_add(1);
      took[i]->store(elapsed_ns(start));
      if (sut->is_owned()) still_held->fetch_add(1);
      sut->release();
    });
  }

  CHECK(notified->load() == 0);
  CHECK(still_held->load() == static_cast<int>(n));
  for (auto& t : took) check_timeout(std::chrono::nanoseconds(t->load()), 200ms);
}

TEST_CASE_TEMPLATE_DEFINE("wait_for returns once the predicate holds" *
                              doctest::test_suite("condition contract"),
                          S, condition_wait_for) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto state = F::template make<tandem::test::shared<int>>(0);
  auto result = F::template make<tandem::test::shared<int>>(-1);
  auto state_seen = F::template make<tandem::test::shared<int>>(-1);

  typename F::parties ps;
  ps.start([&] {
    std::scoped_lock with{*sut};
    result->store(sut->wait_for([&] { return state->load() == 4; }) ? 1 : 0);
    state_seen->store(state->load());
  });
  for (int i = 0; i < 4; ++i) {
    std::scoped_lock with{*sut};
    state->fetch_add(1);
    sut->notify();
  }
  ps.join();

  CHECK(result->load() == 1);
  CHECK(state_seen->load() == 4);
}

TEST_CASE_TEMPLATE_DEFINE("wait_for returns the false predicate once its timeout expires" *
                              doctest::test_suite("condition contract"),
                          S, condition_wait_for_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto state = F::template make<tandem::test::shared<int>>(0);
  auto waiting = F::template make<tandem::test::shared<int>>(0);
  auto result = F::template make<tandem::test::shared<int>>(-1);
  auto took_ns = F::template make<tandem::test::shared<long long>>(0);

  typename F::parties ps;
  ps.start([&] {
    std::scoped_lock with{*sut};
    waiting->store(1);
    auto start = clock_type::now();
    result->store(sut->wait_for([&] { return state->load() == 4; }, 200ms) ? 1 : 0);
    took_ns->store(elapsed_ns(start));
  });
  // Only three increments, so the predicate never holds: each notify wakes the party, which
  // re-checks and waits again for what is left of the same 200 ms.
  REQUIRE(acquire_when(*sut, [&] { return waiting->load() == 1; }));
  sut->release();
  for (int i = 0; i < 3; ++i) {
    std::scoped_lock with{*sut};
    state->fetch_add(1);
    sut->notify();
  }
  ps.join();

  CHECK(result->load() == 0);
  check_timeout(std::chrono::nanoseconds(took_ns->load()), 200ms);
}

TEST_CASE_TEMPLATE_DEFINE("a notify that races with a timeout is never lost" *
                              doctest::test_suite("condition contract"),
                          S, condition_notify_races_timeout) {
  // Waiters wait with tiny timeouts while the notifier notifies one at a time. The number of
  // queued waiters is known under the lock: parties between entering and leaving wait() minus
  // those already chosen. Every notify made while some waiter is queued chooses one, which must
  // return true even when its timeout expired at the same moment; no other wait may return true.
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t waiters = 3;
  constexpr int notifies_wanted = 300;
  tandem::test::watchdog guard{30s};
  auto sut = F::template make<typename S::type>();
  auto in_wait = F::template make<tandem::test::shared<int>>(0);
  auto chosen = F::template make<tandem::test::shared<int>>(0); // chosen, not yet returned
  auto notified = F::template make<tandem::test::shared<int>>(0);
  auto returned_true = F::template make<tandem::test::shared<int>>(0);
  auto stop = F::template make<tandem::test::shared<int>>(0);

  typename F::parties ps;
  ps.start_n(waiters, [&](std::size_t i) {
    for (int k = 0; stop->load() == 0; ++k) {
      std::scoped_lock with{*sut};
      in_wait->fetch_add(1);
      auto t = std::chrono::microseconds((k + static_cast<int>(i)) % 4 * 300);
      bool r = sut->wait(t);
      in_wait->fetch_sub(1);
      if (r) {
        returned_true->fetch_add(1);
        chosen->fetch_sub(1);
      }
    }
  });
  auto deadline = clock_type::now() + 20s;
  while (notified->load() < notifies_wanted && clock_type::now() < deadline) {
    {
      std::scoped_lock with{*sut};
      if (in_wait->load() - chosen->load() > 0) {
        // Hold the lock a little before choosing: waiters whose timeout expires meanwhile are
        // still queued (they cannot leave without the lock), which is the race under test.
        auto until = clock_type::now() + std::chrono::microseconds(notified->load() % 5 * 100);
        while (clock_type::now() < until) {
        }
        sut->notify();
        chosen->fetch_add(1);
        notified->fetch_add(1);
      }
    }
    std::this_thread::yield(); // lets the waiters take the lock back
  }
  stop->store(1);
  ps.join();

  CHECK(notified->load() == notifies_wanted);
  CHECK(returned_true->load() == notified->load());
  CHECK(chosen->load() == 0);
}

#define TANDEM_CONDITION_CONTRACT(...)                                                             \
  TEST_CASE_TEMPLATE_INVOKE(condition_unacquired, __VA_ARGS__);                                    \
  TEST_CASE_TEMPLATE_INVOKE(condition_notify_phases, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(condition_notify_exact, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(condition_notify_forgotten, __VA_ARGS__);                              \
  TEST_CASE_TEMPLATE_INVOKE(condition_timeout, __VA_ARGS__);                                       \
  TEST_CASE_TEMPLATE_INVOKE(condition_wait_for, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(condition_wait_for_timeout, __VA_ARGS__);                              \
  TEST_CASE_TEMPLATE_INVOKE(condition_notify_races_timeout, __VA_ARGS__)
