// Conformance bodies of the recursive lock contract, ported from CPython's Lib/test/lock_tests.py
// (RLockTests; test_threading.py runs them over Condition too), over a subject (see flavour.hpp).
// Subjects: rlock, condition (own rlock), condition over an rlock. Members only some subjects
// have (locked, recursion_count, release_save) are checked where present.
//
//   TANDEM_RLOCK_CONTRACT(subject<tandem::rlock>, ...);
#pragma once

#include "conformance/lock_bodies.hpp"

#include <tandem/error.hpp>

#include <doctest/doctest.h>

namespace tandem::test::bodies {

template <class T>
concept has_recursion_count = requires(const T& t) {
  { t.recursion_count() } -> std::convertible_to<std::size_t>;
};

template <class T>
concept has_release_save = requires(T& t) {
  { t.release_save() } -> std::convertible_to<std::size_t>;
};

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("the owner may acquire an rlock again" *
                              doctest::test_suite("rlock contract"),
                          S, rlock_reacquire) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK(sut->acquire());
  CHECK(sut->acquire());
  sut->release();
  CHECK(sut->acquire(0s));
  CHECK(sut->try_lock());
  sut->unlock();
  sut->release();
  sut->release();

  CHECK_THROWS_AS(sut->release(), tandem::usage_error);
}

TEST_CASE_TEMPLATE_DEFINE("releasing an unowned rlock is a usage error" *
                              doctest::test_suite("rlock contract"),
                          S, rlock_release_unacquired) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();

  CHECK_THROWS_AS(sut->release(), tandem::usage_error);
  sut->acquire();
  sut->acquire();
  sut->release();
  sut->acquire();
  sut->release();
  sut->release();
  CHECK_THROWS_AS(sut->release(), tandem::usage_error);
  if constexpr (has_release_save<typename S::type>)
    CHECK_THROWS_AS(sut->release_save(), tandem::usage_error);
}

TEST_CASE_TEMPLATE_DEFINE("a party that does not own an rlock can neither release nor unlock it" *
                              doctest::test_suite("rlock contract"),
                          S, rlock_different_thread) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto holding = F::template make<tandem::test::shared<int>>(0);
  auto may_finish = F::template make<tandem::test::shared<int>>(0);

  typename F::parties ps;
  ps.start([&] {
    sut->acquire();
    holding->store(1);
    tandem::test::wait_until([&] { return may_finish->load() == 1; });
    sut->release();
  });
  REQUIRE(reaches(*holding, 1));
  CHECK_THROWS_AS(sut->release(), tandem::usage_error);
  sut->unlock();
  bool got_it = sut->acquire(0s);
  may_finish->store(1);
  ps.join();

  CHECK_FALSE(got_it);
  CHECK(sut->acquire(0s));
  sut->release();
}

TEST_CASE_TEMPLATE_DEFINE("is_owned tells whether the calling party owns the rlock" *
                              doctest::test_suite("rlock contract"),
                          S, rlock_is_owned) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto other_sees_owned = F::template make<tandem::test::shared<int>>(-1);

  CHECK_FALSE(sut->is_owned());
  sut->acquire();
  CHECK(sut->is_owned());
  sut->acquire();
  CHECK(sut->is_owned());
  {
    typename F::parties ps;
    ps.start([&] { other_sees_owned->store(sut->is_owned() ? 1 : 0); });
  }
  sut->release();
  CHECK(sut->is_owned());
  sut->release();

  CHECK_FALSE(sut->is_owned());
  CHECK(other_sees_owned->load() == 0);
}

TEST_CASE_TEMPLATE_DEFINE("locked and recursion_count follow the acquires of every party" *
                              doctest::test_suite("rlock contract"),
                          S, rlock_locked_and_count) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  using T = typename S::type;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<T>();
  auto before = F::template make<tandem::test::shared<int>>(-1);
  auto after = F::template make<tandem::test::shared<int>>(-1);
  auto count_in_party = F::template make<tandem::test::shared<long long>>(-1);

  if constexpr (has_locked<T> && has_recursion_count<T>) {
    CHECK_FALSE(sut->locked());
    CHECK(sut->recursion_count() == 0);
    sut->acquire();
    sut->acquire();
    sut->acquire();
    CHECK(sut->locked());
    CHECK(sut->recursion_count() == 3);
    {
      typename F::parties ps;
      ps.start([&] { count_in_party->store(static_cast<long long>(sut->recursion_count())); });
    }
    CHECK(count_in_party->load() == 0);
    sut->release();
    CHECK(sut->recursion_count() == 2);
    CHECK(sut->locked());
    sut->release();
    sut->release();
    CHECK(sut->recursion_count() == 0);
    CHECK_FALSE(sut->locked());

    // gh-134323: an rlock acquired by another party is locked for everyone.
    {
      typename F::parties ps;
      ps.start([&] {
        before->store(sut->locked() ? 1 : 0);
        sut->acquire();
        after->store(sut->locked() ? 1 : 0);
      });
    }
    CHECK(sut->locked());
    CHECK(before->load() == 0);
    CHECK(after->load() == 1);
  } else {
    // Subjects without these observers (condition) still lock for everyone.
    sut->acquire();
    {
      typename F::parties ps;
      ps.start([&] { after->store(sut->acquire(0s) ? 1 : 0); });
    }
    CHECK(after->load() == 0);
    sut->release();
  }
}

TEST_CASE_TEMPLATE_DEFINE("a blocked acquirer gets the rlock once every level is released" *
                              doctest::test_suite("rlock contract"),
                          S, rlock_contended_levels) {
  using namespace tandem::test::bodies;
  using F = typename S::flavour;
  tandem::test::watchdog guard{10s};
  auto sut = F::template make<typename S::type>();
  auto got_it = F::template make<tandem::test::shared<int>>(0);
  sleepers<F> blocked{1};
  sut->acquire();
  sut->acquire();

  typename F::parties ps;
  ps.start([&] {
    blocked.arrive(0);
    sut->acquire();
    got_it->store(1);
    sut->release();
  });
  CHECK(blocked.wait_blocked());
  sut->release();
  settle();
  CHECK(got_it->load() == 0);
  sut->release();
  ps.join();

  CHECK(got_it->load() == 1);
}

#define TANDEM_RLOCK_CONTRACT(...)                                                                 \
  TEST_CASE_TEMPLATE_INVOKE(rlock_reacquire, __VA_ARGS__);                                         \
  TEST_CASE_TEMPLATE_INVOKE(rlock_release_unacquired, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(rlock_different_thread, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(rlock_is_owned, __VA_ARGS__);                                          \
  TEST_CASE_TEMPLATE_INVOKE(rlock_locked_and_count, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(rlock_contended_levels, __VA_ARGS__)
