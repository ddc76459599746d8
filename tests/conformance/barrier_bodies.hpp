// Conformance bodies of the barrier contract, ported from CPython's Lib/test/lock_tests.py
// (BarrierTests) and extended with what tandem adds: an action that throws reaches the last
// arriver, arrival indices are unique in every cycle. Over a subject (see flavour.hpp).
//
//   TANDEM_BARRIER_CONTRACT(subject<tandem::barrier>);
#pragma once

#include "conformance/lock_bodies.hpp"

#include <tandem/error.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <functional>
#include <stdexcept>

namespace tandem::test::bodies {

constexpr std::size_t barrier_parties = 5;

/// The error a throwing barrier action raises.
struct action_error : std::runtime_error {
  action_error() : std::runtime_error("raised by the barrier action") {}
};

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("fewer than one party is a value error" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_constructor) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  using T = typename S::type;

  CHECK_THROWS_AS(F::template make<T>(0), tandem::value_error);
  CHECK_THROWS_AS(F::template make<T>(-1), tandem::value_error);
  CHECK(F::template make<T>(3)->parties() == 3);
}

TEST_CASE_TEMPLATE_DEFINE("parties pass the barrier in lockstep" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_lockstep) {
  // lock_tests.py test_barrier and test_barrier_10: between two waits every party sees the
  // counts of the others' progress exactly.
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  tandem::test::watchdog guard{20s};

  for (int passes : {1, 10}) {
    auto sut = F::template make<typename S::type>(n, std::function<void()>{}, 10s);
    auto before = F::template make<tandem::test::shared<int>>(0);
    auto after = F::template make<tandem::test::shared<int>>(0);
    auto out_of_step = F::template make<tandem::test::shared<int>>(0);
    {
      typename F::parties ps;
      ps.start_n(n, [&](std::size_t) {
        for (int i = 0; i < passes; ++i) {
          before->fetch_add(1);
          if (after->load() != i * static_cast<int>(n)) out_of_step->fetch_add(1);
          sut->wait();
          after->fetch_add(1);
          if (before->load() != (i + 1) * static_cast<int>(n)) out_of_step->fetch_add(1);
          sut->wait();
        }
      });
    }

    CHECK(out_of_step->load() == 0);
    CHECK(sut->n_waiting() == 0);
    CHECK_FALSE(sut->broken());
  }
}

TEST_CASE_TEMPLATE_DEFINE("wait returns each arrival index once per cycle" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_wait_return) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  constexpr int cycles = 20;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>(n);
  auto out_of_range = F::template make<tandem::test::shared<int>>(0);
  std::vector<decltype(F::template make<tandem::test::shared<int>>(0))> per_index;
  for (std::size_t i = 0; i < n; ++i)
    per_index.push_back(F::template make<tandem::test::shared<int>>(0));

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      for (int c = 0; c < cycles; ++c) {
        auto index = sut->wait();
        if (index < n)
          per_index[index]->fetch_add(1);
        else
          out_of_range->fetch_add(1);
      }
    });
  }

  CHECK(out_of_range->load() == 0);
  for (auto& count : per_index) CHECK(count->load() == cycles);
}

TEST_CASE_TEMPLATE_DEFINE("the action runs once per cycle before any party leaves" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_action) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  constexpr int cycles = 3;
  tandem::test::watchdog guard{20s};
  auto actions = F::template make<tandem::test::shared<int>>(0);
  auto wrong_count = F::template make<tandem::test::shared<int>>(0);
  auto sut = F::template make<typename S::type>(n, [&] { actions->fetch_add(1); });

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      // Two waits per round, so that nobody completes the next cycle before every party checked
      // the count of this one.
      for (int c = 0; c < cycles; ++c) {
        sut->wait();
        if (actions->load() != 2 * c + 1) wrong_count->fetch_add(1);
        sut->wait();
        if (actions->load() != 2 * c + 2) wrong_count->fetch_add(1);
      }
    });
  }

  CHECK(wrong_count->load() == 0);
  CHECK(actions->load() == 2 * cycles);
}

TEST_CASE_TEMPLATE_DEFINE("abort breaks the barrier for every waiter" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_abort) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>(n, std::function<void()>{}, 10s);
  auto passed = F::template make<tandem::test::shared<int>>(0);
  auto broken = F::template make<tandem::test::shared<int>>(0);

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      try {
        if (sut->wait() == n / 2) {
          sut->abort(); // this party cannot go on: let the others know
          return;
        }
        sut->wait();
        passed->fetch_add(1);
      } catch (const tandem::broken_barrier_error&) {
        broken->fetch_add(1);
      }
    });
  }

  CHECK(passed->load() == 0);
  CHECK(broken->load() == static_cast<int>(n) - 1);
  CHECK(sut->broken());
  CHECK_THROWS_AS(sut->wait(), tandem::broken_barrier_error);
}

TEST_CASE_TEMPLATE_DEFINE("reset frees the waiting parties and the barrier works again" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_reset) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>(n, std::function<void()>{}, 10s);
  auto passed = F::template make<tandem::test::shared<int>>(0);
  auto broken = F::template make<tandem::test::shared<int>>(0);
  auto passed_again = F::template make<tandem::test::shared<int>>(0);

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      if (sut->wait() == n / 2) {
        // Wait until the others all wait again, then reset.
        tandem::test::wait_until([&] { return sut->n_waiting() >= n - 1; });
        sut->reset();
      } else {
        try {
          sut->wait();
          passed->fetch_add(1);
        } catch (const tandem::broken_barrier_error&) {
          broken->fetch_add(1);
        }
      }
      sut->wait();
      passed_again->fetch_add(1);
    });
  }

  CHECK(passed->load() == 0);
  CHECK(broken->load() == static_cast<int>(n) - 1);
  CHECK(passed_again->load() == static_cast<int>(n));
  CHECK_FALSE(sut->broken());
}

TEST_CASE_TEMPLATE_DEFINE("a broken barrier can be reset" * doctest::test_suite("barrier contract"),
                          S, barrier_abort_and_reset) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>(n, std::function<void()>{}, 10s);
  auto sync = F::template make<typename S::type>(n);
  auto passed = F::template make<tandem::test::shared<int>>(0);
  auto broken = F::template make<tandem::test::shared<int>>(0);
  auto passed_again = F::template make<tandem::test::shared<int>>(0);

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      try {
        if (sut->wait() == n / 2) {
          sut->abort();
        } else {
          sut->wait();
          passed->fetch_add(1);
        }
      } catch (const tandem::broken_barrier_error&) {
        broken->fetch_add(1);
      }
      // Everyone has left the broken barrier before the reset, and nobody enters it before.
      if (sync->wait() == n / 2) sut->reset();
      sync->wait();
      sut->wait();
      passed_again->fetch_add(1);
    });
  }

  CHECK(passed->load() == 0);
  CHECK(broken->load() == static_cast<int>(n) - 1);
  CHECK(passed_again->load() == static_cast<int>(n));
}

TEST_CASE_TEMPLATE_DEFINE("a timed out wait breaks the barrier for every party" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>(n, std::function<void()>{}, 10s);
  auto broken = F::template make<tandem::test::shared<int>>(0);
  auto timed_out_ns = F::template make<tandem::test::shared<long long>>(0);

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      if (sut->wait() == n / 2)
        // One party is late: the scenario under test, not synchronization.
        std::this_thread::sleep_for(500ms);
      auto start = clock_type::now();
      try {
        sut->wait(100ms);
      } catch (const tandem::broken_barrier_error&) {
        broken->fetch_add(1);
        auto took = elapsed_ns(start);
        auto longest = timed_out_ns->load();
        while (took > longest && !timed_out_ns->compare_exchange_weak(longest, took)) {
        }
      }
    });
  }

  CHECK(broken->load() == static_cast<int>(n));
  CHECK(sut->broken());
  // The first to time out waited its 100 ms; the others were woken by the break.
  CHECK(timed_out_ns->load() >= std::chrono::nanoseconds(60ms).count());
}

TEST_CASE_TEMPLATE_DEFINE("the default timeout breaks the barrier" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_default_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(2, std::function<void()>{}, 100ms);
  auto broken = F::template make<tandem::test::shared<int>>(0);
  auto took_ns = F::template make<tandem::test::shared<long long>>(0);

  {
    typename F::parties ps;
    ps.start([&] {
      auto start = clock_type::now();
      try {
        sut->wait();
      } catch (const tandem::broken_barrier_error&) {
        broken->store(1);
      }
      took_ns->store(elapsed_ns(start));
    });
  }

  CHECK(broken->load() == 1);
  check_timeout(std::chrono::nanoseconds(took_ns->load()), 100ms);
  CHECK(sut->broken());
}

TEST_CASE_TEMPLATE_DEFINE("a barrier of one party never blocks" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_single_thread) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(1);

  CHECK(sut->wait() == 0);
  CHECK(sut->wait() == 0);
  CHECK(sut->wait(0s) == 0);
}

TEST_CASE_TEMPLATE_DEFINE("n_waiting counts the parties of the current cycle" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_n_waiting) {
  // lock_tests.py test_repr, through the observers.
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(3);

  CHECK(sut->n_waiting() == 0);
  {
    typename F::parties ps;
    ps.start_n(2, [&](std::size_t) { sut->wait(10s); });
    CHECK(tandem::test::wait_until([&] { return sut->n_waiting() == 2; }));
    CHECK(sut->parties() == 3);
    CHECK(sut->wait(10s) == 2);
  }
  CHECK(sut->n_waiting() == 0);
  CHECK_FALSE(sut->broken());
  sut->abort();
  CHECK(sut->broken());
  CHECK(sut->n_waiting() == 0);
}

TEST_CASE_TEMPLATE_DEFINE("an action that throws breaks the barrier and reaches the last arriver" *
                              doctest::test_suite("barrier contract"),
                          S, barrier_action_throws) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  constexpr std::size_t n = barrier_parties;
  tandem::test::watchdog guard{20s};
  auto sut = F::template make<typename S::type>(n, [] { throw action_error{}; });
  auto action_failed = F::template make<tandem::test::shared<int>>(0);
  auto broken = F::template make<tandem::test::shared<int>>(0);
  auto passed = F::template make<tandem::test::shared<int>>(0);

  {
    typename F::parties ps;
    ps.start_n(n, [&](std::size_t) {
      try {
        sut->wait();
        passed->fetch_add(1);
      } catch (const action_error&) {
        action_failed->fetch_add(1);
      } catch (const tandem::broken_barrier_error&) {
        broken->fetch_add(1);
      }
    });
  }

  CHECK(action_failed->load() == 1);
  CHECK(broken->load() == static_cast<int>(n) - 1);
  CHECK(passed->load() == 0);
  CHECK(sut->broken());
}

#define TANDEM_BARRIER_CONTRACT(...)                                                               \
  TEST_CASE_TEMPLATE_INVOKE(barrier_constructor, __VA_ARGS__);                                     \
  TEST_CASE_TEMPLATE_INVOKE(barrier_lockstep, __VA_ARGS__);                                        \
  TEST_CASE_TEMPLATE_INVOKE(barrier_wait_return, __VA_ARGS__);                                     \
  TEST_CASE_TEMPLATE_INVOKE(barrier_action, __VA_ARGS__);                                          \
  TEST_CASE_TEMPLATE_INVOKE(barrier_abort, __VA_ARGS__);                                           \
  TEST_CASE_TEMPLATE_INVOKE(barrier_reset, __VA_ARGS__);                                           \
  TEST_CASE_TEMPLATE_INVOKE(barrier_abort_and_reset, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(barrier_timeout, __VA_ARGS__);                                         \
  TEST_CASE_TEMPLATE_INVOKE(barrier_default_timeout, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(barrier_single_thread, __VA_ARGS__);                                   \
  TEST_CASE_TEMPLATE_INVOKE(barrier_n_waiting, __VA_ARGS__);                                       \
  TEST_CASE_TEMPLATE_INVOKE(barrier_action_throws, __VA_ARGS__)
