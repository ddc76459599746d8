// Process death and mp::condition: killed waiters block neither notify, notify_all nor the
// destruction, a notify is not wasted on a dead waiter, and the condition's lock is robust.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/lock.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <mutex>
#include <vector>

using namespace tandem::test::mp_sync;

TEST_SUITE("mp condition process death") {

  TEST_CASE(
      "waiters killed in a condition wait block neither notify nor notify_all nor destruction") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::condition>();
    auto waiting = make_cell<int>(0);
    auto live_notified = make_cell<int>(-1);

    // Three waiters that will be killed, queued first (the oldest).
    std::vector<std::unique_ptr<child>> doomed;
    for (int i = 0; i < 3; ++i) {
      doomed.push_back(std::make_unique<child>([&] {
        sut->acquire();
        waiting->fetch_add(1);
        sut->wait();
        hang();
      }));
      REQUIRE(tandem::test::wait_until([&] {
        std::scoped_lock with{*sut};
        return waiting->load() == i + 1;
      }));
    }
    // One live waiter, queued last.
    child live{[&] {
      sut->acquire();
      waiting->fetch_add(1);
      live_notified->store(sut->wait(10s) ? 1 : 0);
      sut->release();
    }};
    REQUIRE(tandem::test::wait_until([&] {
      std::scoped_lock with{*sut};
      return waiting->load() == 4;
    }));
    for (auto& d : doomed) d->kill();
    doomed[0]->reap(); // one reaped, two left as zombies: both count as dead

    // notify(1) skips the three dead (older) waiters and chooses the live one.
    auto start = clock_type::now();
    sut->acquire();
    sut->notify();
    sut->release();
    CHECK(live.join());
    CHECK(live_notified->load() == 1);
    CHECK(clock_type::now() - start < 2s);

    // Nobody is left: notify_all returns at once, a new waiter times out normally.
    sut->acquire();
    sut->notify_all();
    CHECK_FALSE(sut->wait(50ms));
    sut->release();
    sut.reset(); // the destruction does not wait for the dead
    CHECK(clock_type::now() - start < 5s);
  }

  TEST_CASE("a condition frees the slots of killed waiters when every slot is taken") {
    tandem::test::watchdog guard{60s};
    auto sut = make_shared_object<tandem::mp::condition>();
    auto waiting = make_cell<int>(0);
    constexpr int n = static_cast<int>(tandem::mp::condition::max_waiters);

    // Fill every slot, one waiting process per slot.
    std::vector<std::unique_ptr<child>> doomed;
    for (int i = 0; i < n; ++i)
      doomed.push_back(std::make_unique<child>([&] {
        sut->acquire();
        waiting->fetch_add(1);
        sut->wait();
        hang();
      }));
    REQUIRE(tandem::test::wait_until(
        [&] {
          std::scoped_lock with{*sut};
          return waiting->load() == n;
        },
        30s));
    // A live process that also waits: the condition is full of live waiters.
    sut->acquire();
    CHECK_THROWS_AS(sut->wait(10ms), tandem::usage_error);
    sut->release();
    for (auto& d : doomed) d->kill();
    for (auto& d : doomed) d->reap();

    sut->acquire();
    CHECK_FALSE(sut->wait(20ms)); // the dead waiters' slots were freed
    sut->release();
  }

  TEST_CASE("a waiter that re-acquires the lock from a killed holder gets owner_died_error") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::condition>();
    auto waiting = make_cell<int>(0);
    auto holding = make_cell<int>(0);
    auto outcome = make_cell<int>(0);

    child waiter{[&] {
      sut->acquire();
      waiting->store(1);
      try {
        sut->wait();
        outcome->store(2);
      } catch (const tandem::owner_died_error&) {
        outcome->store(sut->is_owned() ? 1 : 3);
        sut->make_consistent();
      }
      sut->release();
    }};
    REQUIRE(tandem::test::wait_until([&] {
      std::scoped_lock with{*sut};
      return waiting->load() == 1;
    }));
    // A notifier that dies while holding the lock, after choosing the waiter.
    child notifier{[&] {
      sut->acquire();
      sut->notify();
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    notifier.kill();
    CHECK(waiter.join());

    CHECK(outcome->load() == 1);
    CHECK(sut->acquire(0s));
    sut->release();
  }

  TEST_CASE("a condition over a shared lock reports the death of the lock holder") {
    tandem::test::watchdog guard{20s};
    struct lock_and_condition {
      tandem::mp::lock l;
      tandem::mp::condition c{l};
    };
    auto sut = make_shared_object<lock_and_condition>();
    auto holding = make_cell<int>(0);
    child holder{[&] {
      sut->c.acquire();
      holding->store(1);
      hang();
    }};
    REQUIRE(tandem::test::wait_until([&] { return holding->load() == 1; }));
    holder.kill();

    CHECK_THROWS_AS(sut->c.acquire(), tandem::owner_died_error);
    CHECK(sut->l.locked());
    sut->c.make_consistent();
    CHECK_FALSE(sut->c.wait(10ms));
    sut->c.release();
    CHECK_FALSE(sut->l.locked());
  }

} // TEST_SUITE
