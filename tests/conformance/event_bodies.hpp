// Conformance bodies of the event contract, ported from CPython's Lib/test/lock_tests.py
// (EventTests), over a subject (see flavour.hpp).
//
//   TANDEM_EVENT_CONTRACT(subject<tandem::event>, ...);
#pragma once

#include "conformance/lock_bodies.hpp"

#include <doctest/doctest.h>

#include <sys/resource.h>

namespace tandem::test::bodies {

/// Lowers the calling party's scheduling priority, so that waking it does not preempt the waker:
/// the waker then runs on (e.g. into clear()) before the woken party looks at the event.
inline void lower_priority() {
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(tandem::test::tid()), 19);
}

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("is_set follows set and clear" * doctest::test_suite("event contract"), S,
                          event_is_set) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK_FALSE(sut->is_set());
  sut->set();
  CHECK(sut->is_set());
  sut->set();
  CHECK(sut->is_set());
  sut->clear();
  CHECK_FALSE(sut->is_set());
  sut->clear();
  CHECK_FALSE(sut->is_set());
}

TEST_CASE_TEMPLATE_DEFINE("set wakes every waiter and later waits return at once" *
                              doctest::test_suite("event contract"),
                          S, event_notify) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = 5;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>();

  // Twice: on a new event, then after an explicit set and clear.
  for (int round = 0; round < 2; ++round) {
    auto first = F::template make<tandem::test::shared<int>>(0);
    auto second = F::template make<tandem::test::shared<int>>(0);
    sleepers<F> blocked{n};

    typename F::parties ps;
    ps.start_n(n, [&](std::size_t i) {
      blocked.arrive(i);
      if (sut->wait()) first->fetch_add(1);
      if (sut->wait()) second->fetch_add(1);
    });
    CHECK(blocked.wait_blocked());
    CHECK(first->load() == 0);
    sut->set();
    ps.join();

    CHECK(first->load() == static_cast<int>(n));
    CHECK(second->load() == static_cast<int>(n));
    sut->set();
    sut->clear();
  }
}

TEST_CASE_TEMPLATE_DEFINE("wait times out on a clear event and returns at once on a set one" *
                              doctest::test_suite("event contract"),
                          S, event_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = 5;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto polls_true = F::template make<tandem::test::shared<int>>(0);
  auto waits_true = F::template make<tandem::test::shared<int>>(0);
  std::vector<decltype(F::template make<tandem::test::shared<long long>>(0))> took;
  for (std::size_t i = 0; i < n; ++i)
    took.push_back(F::template make<tandem::test::shared<long long>>(0));
  auto run = [&] {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t i) {
      if (sut->wait(0s)) polls_true->fetch_add(1);
      auto start = clock_type::now();
      if (sut->wait(200ms)) waits_true->fetch_add(1);
      took[i]->store(elapsed_ns(start));
    });
  };

  run();
  CHECK(polls_true->load() == 0);
  CHECK(waits_true->load() == 0);
  for (auto& t : took) check_timeout(std::chrono::nanoseconds(t->load()), 200ms);

  sut->set();
  run();
  CHECK(polls_true->load() == static_cast<int>(n));
  CHECK(waits_true->load() == static_cast<int>(n));
  for (auto& t : took) CHECK(t->load() < std::chrono::nanoseconds(200ms).count());
}

TEST_CASE_TEMPLATE_DEFINE("a waiter blocked at set returns true even when the event is cleared "
                          "at once" *
                              doctest::test_suite("event contract"),
                          S, event_set_and_clear) {
  // Several rounds: a waiter woken by set() often runs before the clear() (the waker gets
  // preempted), which would hide a missing generation; over rounds some waiter runs after it.
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = 5;
  constexpr int rounds = 10;
  tandem::test::watchdog guard{60s};
  auto sut = F::template make<typename S::type>();
  auto woken = F::template make<tandem::test::shared<int>>(0);

  for (int round = 0; round < rounds; ++round) {
    sleepers<F> blocked{n};
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t i) {
      lower_priority();
      blocked.arrive(i);
      if (sut->wait(10s)) woken->fetch_add(1);
    });
    CHECK(blocked.wait_blocked());
    sut->set();
    sut->clear();
    ps.join();
  }

  CHECK(woken->load() == static_cast<int>(n) * rounds);
  CHECK_FALSE(sut->is_set());
}

#define TANDEM_EVENT_CONTRACT(...)                                                                 \
  TEST_CASE_TEMPLATE_INVOKE(event_is_set, __VA_ARGS__);                                            \
  TEST_CASE_TEMPLATE_INVOKE(event_notify, __VA_ARGS__);                                            \
  TEST_CASE_TEMPLATE_INVOKE(event_timeout, __VA_ARGS__);                                           \
  TEST_CASE_TEMPLATE_INVOKE(event_set_and_clear, __VA_ARGS__)
