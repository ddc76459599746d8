// Process death and mp::lock, mp::rlock: a holder killed with SIGKILL hands the lock to the next
// acquirer and to a blocked one with owner_died_error, make_consistent() repairs it, a release
// without it makes the lock not recoverable for good.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/rlock.hpp>

#include <doctest/doctest.h>

#include <mutex>

using namespace tandem::test::mp_sync;

namespace {

// A child that acquires `sut` (`levels` times), says so in `holding`, and hangs until killed.
template <class Lock>
child holder_of(Lock& sut, std::atomic<int>& holding, int levels = 1) {
  return child{[&sut, &holding, levels] {
    for (int i = 0; i < levels; ++i) sut.acquire();
    holding.store(1);
    hang();
  }};
}

} // namespace

TEST_SUITE("mp lock process death") {

  TEST_CASE("a lock whose holder is killed goes to the next acquirer with owner_died_error") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    CHECK_FALSE(sut->acquire(0s)); // a live holder keeps it

    h.kill(); // not reaped: a zombie is dead too
    auto start = clock_type::now();
    CHECK_THROWS_AS(sut->acquire(), tandem::owner_died_error);
    CHECK(clock_type::now() - start < 1s);

    // The caller holds it now: nobody else gets it.
    CHECK(sut->locked());
    auto other = make_cell<int>(-1);
    {
      child probe{[&] { other->store(sut->try_lock() ? 1 : 0); }};
      CHECK(probe.join());
    }
    CHECK(other->load() == 0);
    sut->make_consistent();
    sut->release();

    // Repaired: an ordinary lock again.
    CHECK(sut->acquire(0s));
    sut->release();
    CHECK_THROWS_AS(sut->make_consistent(), tandem::usage_error);
    h.reap();
  }

  TEST_CASE("a try_lock on a lock whose holder was killed and reaped takes it over") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    h.kill();
    h.reap();

    CHECK_THROWS_AS(sut->try_lock(), tandem::owner_died_error);
    CHECK(sut->locked());
    sut->make_consistent();
    sut->unlock();
    CHECK_FALSE(sut->locked());
  }

  TEST_CASE("an acquirer blocked before the holder is killed gets the lock within a second") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto waiting = make_cell<int>(0);
    auto outcome = make_cell<int>(0); // 1: owner_died_error, 2: acquired plainly, 3: other
    auto killed_at = make_cell<long long>(0);
    auto got_at = make_cell<long long>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));

    child waiter{[&] {
      waiting->store(1);
      try {
        outcome->store(sut->acquire(10s) ? 2 : 3);
      } catch (const tandem::owner_died_error&) {
        got_at->store(now_ns());
        outcome->store(1);
        sut->make_consistent();
      }
      sut->release();
    }};
    REQUIRE(tandem::test::wait_until([&] { return waiting->load() == 1; }));
    // Let the waiter go to sleep in the futex: the case under test is a waiter already blocked.
    std::this_thread::sleep_for(150ms);
    killed_at->store(now_ns());
    h.kill();
    CHECK(waiter.join());

    CHECK(outcome->load() == 1);
    CHECK(got_at->load() - killed_at->load() < std::chrono::nanoseconds(1s).count());
    CHECK(sut->acquire(0s)); // repaired and released by the waiter
    sut->release();
  }

  TEST_CASE("a lock released without make_consistent after its holder died is not recoverable") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    h.kill();
    h.reap();

    CHECK_THROWS_AS(sut->acquire(), tandem::owner_died_error);
    sut->release(); // without make_consistent

    CHECK(sut->not_recoverable());
    CHECK_THROWS_AS(sut->acquire(), tandem::not_recoverable_error);
    CHECK_THROWS_AS(sut->acquire(0s), tandem::not_recoverable_error);
    CHECK_THROWS_AS(sut->try_lock(), tandem::not_recoverable_error);
    CHECK_THROWS_AS(sut->release(), tandem::not_recoverable_error);
    sut->unlock(); // never throws
    auto in_child = make_cell<int>(0);
    {
      child other{[&] {
        try {
          sut->acquire(1s);
        } catch (const tandem::not_recoverable_error&) {
          in_child->store(1);
        }
      }};
      CHECK(other.join());
    }
    CHECK(in_child->load() == 1);
    CHECK_THROWS_AS(sut->acquire(), tandem::not_recoverable_error);
  }

  TEST_CASE("an acquirer blocked on a lock that becomes not recoverable wakes with the error") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto outcome = make_cell<int>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    h.kill();
    h.reap();
    CHECK_THROWS_AS(sut->acquire(), tandem::owner_died_error);

    child waiter{[&] {
      outcome->store(1);
      try {
        sut->acquire(10s);
        outcome->store(2);
      } catch (const tandem::not_recoverable_error&) {
        outcome->store(3);
      }
    }};
    REQUIRE(tandem::test::wait_until([&] { return outcome->load() == 1; }));
    std::this_thread::sleep_for(50ms); // the waiter sleeps in the futex: the case under test
    sut->release();
    CHECK(waiter.join());
    CHECK(outcome->load() == 3);
  }

  TEST_CASE("a lock that another live process holds is not taken over") {
    // plain_lock_reacquire from the lock contract with a party that lives until the check: the
    // second acquire of the party holds the lock, and the parent cannot take it.
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto phase = make_cell<int>(0);
    auto may_finish = make_cell<int>(0);
    child party{[&] {
      sut->acquire();
      phase->store(1);
      sut->acquire();
      phase->store(2);
      tandem::test::wait_until([&] { return may_finish->load() == 1; }, 20s);
      sut->release();
    }};
    REQUIRE(tandem::test::wait_until([&] { return phase->load() == 1; }));
    std::this_thread::sleep_for(250ms); // longer than a liveness check interval
    CHECK(phase->load() == 1);
    sut->release();
    REQUIRE(tandem::test::wait_until([&] { return phase->load() == 2; }));
    std::this_thread::sleep_for(250ms);

    CHECK_FALSE(sut->acquire(0s));
    CHECK_FALSE(sut->acquire(150ms));
    may_finish->store(1);
    CHECK(party.join());
    CHECK(sut->acquire(0s));
    sut->release();
  }

  TEST_CASE("an rlock whose owner is killed at any level goes to the next acquirer at level one") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::rlock>();
    auto holding = make_cell<int>(0);
    auto h = holder_of(*sut, *holding, 3);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    CHECK_FALSE(sut->acquire(0s));
    h.kill();

    auto start = clock_type::now();
    CHECK_THROWS_AS(sut->acquire(), tandem::owner_died_error);
    CHECK(clock_type::now() - start < 1s);
    CHECK(sut->is_owned());
    CHECK(sut->recursion_count() == 1);
    sut->make_consistent();
    CHECK(sut->acquire()); // recursive as usual
    sut->release();
    sut->release();
    CHECK_FALSE(sut->locked());
    CHECK_THROWS_AS(sut->release(), tandem::usage_error);
    h.reap();
  }

  TEST_CASE("an rlock released without make_consistent after its owner died is not recoverable") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::rlock>();
    auto holding = make_cell<int>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    h.kill();
    h.reap();

    CHECK_THROWS_AS(sut->acquire(), tandem::owner_died_error);
    CHECK(sut->acquire()); // level 2: still inconsistent
    sut->release();
    CHECK_FALSE(sut->not_recoverable());
    sut->release(); // the last level, without make_consistent

    CHECK(sut->not_recoverable());
    CHECK_FALSE(sut->is_owned());
    CHECK_THROWS_AS(sut->acquire(), tandem::not_recoverable_error);
    CHECK_THROWS_AS(sut->try_lock(), tandem::not_recoverable_error);
  }

  TEST_CASE("an rlock acquirer blocked before the owner is killed gets it within a second") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::rlock>();
    auto holding = make_cell<int>(0);
    auto waiting = make_cell<int>(0);
    auto outcome = make_cell<int>(0);
    auto killed_at = make_cell<long long>(0);
    auto got_at = make_cell<long long>(0);
    auto h = holder_of(*sut, *holding, 2);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));

    child waiter{[&] {
      waiting->store(1);
      try {
        sut->acquire();
        outcome->store(2);
      } catch (const tandem::owner_died_error&) {
        got_at->store(now_ns());
        outcome->store(sut->is_owned() && sut->recursion_count() == 1 ? 1 : 3);
        sut->make_consistent();
      }
      sut->release();
    }};
    REQUIRE(tandem::test::wait_until([&] { return waiting->load() == 1; }));
    std::this_thread::sleep_for(150ms);
    killed_at->store(now_ns());
    h.kill();
    CHECK(waiter.join());

    CHECK(outcome->load() == 1);
    CHECK(got_at->load() - killed_at->load() < std::chrono::nanoseconds(1s).count());
    CHECK(sut->acquire(0s));
    sut->release();
  }

  TEST_CASE("a scoped lock over a lock whose holder died throws while the lock is held") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    auto holding = make_cell<int>(0);
    auto h = holder_of(*sut, *holding);
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    h.kill();
    h.reap();

    bool repaired = false;
    try {
      std::scoped_lock with{*sut};
    } catch (const tandem::owner_died_error&) {
      sut->make_consistent();
      sut->release();
      repaired = true;
    }
    CHECK(repaired);
    { std::scoped_lock with{*sut}; }
    CHECK_FALSE(sut->locked());
  }

} // TEST_SUITE
