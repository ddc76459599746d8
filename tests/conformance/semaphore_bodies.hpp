// Conformance bodies of the semaphore contracts, ported from CPython's Lib/test/lock_tests.py
// (BaseSemaphoreTests, SemaphoreTests, BoundedSemaphoreTests) and test_threading.py
// (test_BoundedSemaphore_limit), over a subject (see flavour.hpp).
//
//   TANDEM_SEMAPHORE_CONTRACT(subject<tandem::semaphore>, subject<tandem::bounded_semaphore>);
//   TANDEM_UNBOUNDED_SEMAPHORE_CONTRACT(subject<tandem::semaphore>);
//   TANDEM_BOUNDED_SEMAPHORE_CONTRACT(subject<tandem::bounded_semaphore>);
#pragma once

#include "conformance/lock_bodies.hpp"

#include <tandem/error.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <limits>

// -- every semaphore (BaseSemaphoreTests) --------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("a negative initial value is a value error" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_constructor) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  using T = typename S::type;

  CHECK_THROWS_AS(F::template make<T>(-1), tandem::value_error);
  CHECK_THROWS_AS(F::template make<T>(std::numeric_limits<std::ptrdiff_t>::min() + 1),
                  tandem::value_error);
  auto zero = F::template make<T>(0);
  CHECK_FALSE(zero->acquire(0s));
}

TEST_CASE_TEMPLATE_DEFINE("acquire takes units and release gives them back" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_acquire) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  using T = typename S::type;
  tandem::test::watchdog guard{10s};

  auto one = F::template make<T>(1);
  CHECK(one->acquire());
  CHECK_FALSE(one->acquire(0s));
  one->release();
  auto sut = F::template make<T>(2);
  CHECK(sut->acquire());
  CHECK(sut->acquire());
  CHECK_FALSE(sut->acquire(0s));
  sut->release();
  sut->release();
  CHECK(sut->acquire(0s));
}

TEST_CASE_TEMPLATE_DEFINE("a semaphore with taken units can be destroyed" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_acquire_destroy) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto other_got_one = F::template make<tandem::test::shared<int>>(-1);

  CHECK(sut->acquire());
  {
    typename F::parties ps;
    ps.start([&] { other_got_one->store(sut->acquire(0s) ? 1 : 0); });
  }
  sut.reset();

  CHECK(other_got_one->load() == 0);
}

namespace tandem::test::bodies {

// lock_tests.py test_acquire_contended and test_multirelease: a semaphore of 7 with one unit taken;
// ten parties acquire twice each, recording the phase they see. Releases come one at a time or as
// release(n).
template <class S>
void check_contended(bool multirelease) {
  using F = typename S::flavour;
  constexpr int sem_value = 7;
  auto sut = F::template make<typename S::type>(sem_value);
  auto phase = F::template make<tandem::test::shared<int>>(0);
  auto total = F::template make<tandem::test::shared<int>>(0);
  std::array<decltype(F::template make<tandem::test::shared<int>>(0)), 3> per_phase;
  for (auto& p : per_phase) p = F::template make<tandem::test::shared<int>>(0);
  auto release = [&](int n) {
    if (multirelease) {
      sut->release(static_cast<std::size_t>(n));
    } else {
      for (int i = 0; i < n; ++i) sut->release();
    }
  };
  sut->acquire();

  typename F::parties ps;
  ps.start_n(10, [&](std::size_t) {
    for (int k = 0; k < 2; ++k) {
      sut->acquire();
      per_phase[phase->load()]->fetch_add(1);
      total->fetch_add(1);
    }
  });
  // Phase 0: the six free units.
  CHECK(reaches(*total, sem_value - 1));
  settle();
  CHECK(total->load() == sem_value - 1);
  // Phase 1: seven more.
  phase->store(1);
  release(sem_value);
  CHECK(reaches(*total, 2 * sem_value - 1));
  settle();
  CHECK(total->load() == 2 * sem_value - 1);
  // Phase 2: six more; one party still waits.
  phase->store(2);
  release(sem_value - 1);
  CHECK(reaches(*total, 3 * sem_value - 2));
  settle();
  CHECK(total->load() == 3 * sem_value - 2);
  CHECK_FALSE(sut->acquire(0s));
  // The last unit lets the last party finish.
  release(1);
  ps.join();

  CHECK(per_phase[0]->load() == sem_value - 1);
  CHECK(per_phase[1]->load() == sem_value);
  CHECK(per_phase[2]->load() == sem_value);
}

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("contended acquirers proceed one per released unit" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_acquire_contended) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{20s};
  check_contended<S>(false);
}

TEST_CASE_TEMPLATE_DEFINE("release of n units lets n acquirers proceed" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_multirelease) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{20s};
  check_contended<S>(true);
}

TEST_CASE_TEMPLATE_DEFINE("a try acquire takes a unit only when one is available" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_try_acquire) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(2);

  CHECK(sut->acquire(0s));
  CHECK(sut->try_lock());
  CHECK_FALSE(sut->acquire(0s));
  CHECK_FALSE(sut->try_lock());
  sut->release();
  CHECK(sut->acquire(-1s));
  sut->release(0);
  CHECK_FALSE(sut->acquire(0s));
}

TEST_CASE_TEMPLATE_DEFINE("try acquires by many parties take exactly the available units" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_try_acquire_contended) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(4);
  auto taken = F::template make<tandem::test::shared<int>>(0);
  auto refused = F::template make<tandem::test::shared<int>>(0);
  sut->acquire();

  {
    typename F::parties ps;
    ps.start_n(5, [&](std::size_t) {
      for (int k = 0; k < 2; ++k) (sut->acquire(0s) ? taken : refused)->fetch_add(1);
    });
  }

  CHECK(taken->load() == 3);
  CHECK(refused->load() == 7);
}

TEST_CASE_TEMPLATE_DEFINE("an acquire with a timeout waits at most that long" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_acquire_timeout) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(2);

  CHECK(sut->acquire(5ms));
  CHECK(sut->acquire(5ms));
  CHECK_FALSE(sut->acquire(5ms));
  sut->release();
  CHECK(sut->acquire(5ms));
  auto start = clock_type::now();
  CHECK_FALSE(sut->acquire(200ms));
  check_timeout(clock_type::now() - start, 200ms);
}

TEST_CASE_TEMPLATE_DEFINE("the default value is one" * doctest::test_suite("semaphore contract"), S,
                          semaphore_default_value) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto finished = F::template make<tandem::test::shared<int>>(0);
  sleepers<F> blocked{1};
  sut->acquire();

  typename F::parties ps;
  ps.start([&] {
    blocked.arrive(0);
    sut->acquire();
    sut->release();
    finished->store(1);
  });
  CHECK(blocked.wait_blocked());
  CHECK(finished->load() == 0);
  sut->release();
  ps.join();

  CHECK(finished->load() == 1);
  CHECK(sut->acquire(0s));
  CHECK_FALSE(sut->acquire(0s));
}

TEST_CASE_TEMPLATE_DEFINE("a scoped lock gives its unit back even when an exception leaves it" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_with) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(2);
  auto with = [&](bool raise) {
    std::scoped_lock outer{*sut};
    CHECK(sut->acquire(0s));
    sut->release();
    std::scoped_lock inner{*sut};
    CHECK_FALSE(sut->acquire(0s));
    if (raise) throw body_error{};
  };

  with(false);
  CHECK(sut->acquire(0s));
  sut->release();
  CHECK_THROWS_AS(with(true), body_error);
  CHECK(sut->acquire(0s));
  CHECK(sut->acquire(0s));
  CHECK_FALSE(sut->acquire(0s));
}

// -- semaphore only (SemaphoreTests) -------------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("an unbounded semaphore may be released past its initial value" *
                              doctest::test_suite("semaphore contract"),
                          S, semaphore_release_unacquired) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>(1);

  sut->release();
  sut->release(3);
  for (int i = 0; i < 5; ++i) CHECK(sut->acquire(0s));
  CHECK_FALSE(sut->acquire(0s));
}

// -- bounded semaphore only (BoundedSemaphoreTests) ----------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("releasing a bounded semaphore past its initial value is a value error "
                          "that changes nothing" *
                              doctest::test_suite("semaphore contract"),
                          S, bounded_semaphore_release_unacquired) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto one = F::template make<typename S::type>();
  auto sut = F::template make<typename S::type>(3);

  CHECK_THROWS_AS(one->release(), tandem::value_error);
  one->acquire();
  one->release();
  CHECK_THROWS_AS(one->release(), tandem::value_error);

  // release(n) checks the whole n at once: from 1 of 3, release(3) fails and changes nothing.
  sut->acquire();
  sut->acquire();
  CHECK_THROWS_AS(sut->release(3), tandem::value_error);
  CHECK(sut->acquire(0s));
  CHECK_FALSE(sut->acquire(0s));
  sut->release(3);
  CHECK_THROWS_AS(sut->release(), tandem::value_error);
  sut->unlock(); // never throws, changes nothing at the bound
  for (int i = 0; i < 3; ++i) CHECK(sut->acquire(0s));
  CHECK_FALSE(sut->acquire(0s));
}

TEST_CASE_TEMPLATE_DEFINE("a bounded semaphore released by many parties stops at its limit" *
                              doctest::test_suite("semaphore contract"),
                          S, bounded_semaphore_limit) {
  // test_threading.py test_BoundedSemaphore_limit.
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{20s};

  for (int limit = 1; limit < 10; ++limit) {
    auto sut = F::template make<typename S::type>(limit);
    auto refused = F::template make<tandem::test::shared<int>>(0);
    {
      typename F::parties ps;
      ps.start_n(static_cast<std::size_t>(limit), [&](std::size_t) { sut->acquire(); });
    }
    {
      typename F::parties ps;
      ps.start_n(static_cast<std::size_t>(limit), [&](std::size_t) {
        try {
          sut->release();
        } catch (const tandem::value_error&) {
          refused->fetch_add(1);
        }
      });
    }
    CHECK(refused->load() == 0);
    CHECK_THROWS_AS(sut->release(), tandem::value_error);
  }
}

#define TANDEM_SEMAPHORE_CONTRACT(...)                                                             \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_constructor, __VA_ARGS__);                                   \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_acquire, __VA_ARGS__);                                       \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_acquire_destroy, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_acquire_contended, __VA_ARGS__);                             \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_multirelease, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_try_acquire, __VA_ARGS__);                                   \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_try_acquire_contended, __VA_ARGS__);                         \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_acquire_timeout, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_default_value, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_with, __VA_ARGS__)

#define TANDEM_UNBOUNDED_SEMAPHORE_CONTRACT(...)                                                   \
  TEST_CASE_TEMPLATE_INVOKE(semaphore_release_unacquired, __VA_ARGS__)

#define TANDEM_BOUNDED_SEMAPHORE_CONTRACT(...)                                                     \
  TEST_CASE_TEMPLATE_INVOKE(bounded_semaphore_release_unacquired, __VA_ARGS__);                    \
  TEST_CASE_TEMPLATE_INVOKE(bounded_semaphore_limit, __VA_ARGS__)
