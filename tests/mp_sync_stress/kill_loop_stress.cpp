// Stress: processes killed with SIGKILL at random points while they use mp::lock, mp::condition,
// mp::barrier, mp::semaphore (return_on_death) and the locks of mp::value and mp::array. Each round
// kills a worker somewhere in its loop (inside acquire, between the updates it makes under the
// lock, inside release, in a wait) and checks that the survivors never hang, that every death is
// reported, and that the protected state can always be repaired. 50 rounds each at full size (label
// long); 5 in the default run.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/array.hpp>
#include <tandem/mp/barrier.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/semaphore.hpp>
#include <tandem/mp/value.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <memory>
#include <random>
#include <vector>

using namespace tandem::test::mp_sync;

namespace {

int scaled(int n) {
  return std::max(1, static_cast<int>(n * tandem::test::stress_scale()));
}

std::chrono::microseconds random_delay(std::mt19937& rng, int max_us) {
  return std::chrono::microseconds{std::uniform_int_distribution<int>{0, max_us}(rng)};
}

} // namespace

TEST_SUITE("mp sync kill loop") {

  TEST_CASE("workers killed anywhere in a locked update never leave the lock unusable") {
    struct shared_state {
      tandem::mp::lock l;
      long counter = 0; // guarded by l
      long shadow = 0;  // guarded by l: equals counter between updates
      long repairs = 0; // guarded by l
    };
    const int rounds = scaled(50);
    tandem::test::watchdog guard{std::chrono::seconds{30 + rounds * 4}};
    auto s = make_shared_object<shared_state>();
    std::mt19937 rng{12345};
    auto worker = [&] {
      for (;;) {
        try {
          s->l.acquire();
        } catch (const tandem::owner_died_error&) {
          s->shadow = s->counter; // the dead worker may have stopped between the two updates
          ++s->repairs;
          s->l.make_consistent();
        }
        ++s->counter;
        ++s->shadow;
        s->l.release();
      }
    };

    std::vector<std::unique_ptr<child>> workers;
    for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<child>(worker));
    int reported = 0;
    for (int round = 0; round < rounds; ++round) {
      std::this_thread::sleep_for(random_delay(rng, 20000));
      auto victim = std::uniform_int_distribution<std::size_t>{0, workers.size() - 1}(rng);
      workers[victim]->kill();
      workers[victim]->reap();
      // This process checks the state under the lock: it must get it within a second or so.
      auto start = clock_type::now();
      bool held = false;
      try {
        held = s->l.acquire(5s);
      } catch (const tandem::owner_died_error&) {
        held = true;
        s->shadow = s->counter;
        ++reported;
        s->l.make_consistent();
      }
      REQUIRE(held);
      CHECK(clock_type::now() - start < 2s);
      CHECK(s->counter == s->shadow);
      s->l.release();
      workers[victim] = std::make_unique<child>(worker);
    }
    for (auto& w : workers) w->kill();
    for (auto& w : workers) w->reap();
    bool held = false;
    try {
      held = s->l.acquire(5s);
    } catch (const tandem::owner_died_error&) {
      held = true;
      s->l.make_consistent();
    }
    REQUIRE(held);
    CHECK_FALSE(s->l.not_recoverable());
    s->l.release();
    MESSAGE("rounds: ", rounds, ", deaths reported to the checker: ", reported,
            ", repairs by workers: ", s->repairs);
  }

  TEST_CASE("writers killed anywhere in a value or array update never wedge its lock") {
    // Each worker writes the same number into a value and every item of an array, under the
    // array's lock, through set(), set_slice() and get_obj(). A worker killed anywhere leaves the
    // lock to the next user with owner_died_error reported once, and the data readable.
    const int rounds = scaled(50);
    tandem::test::watchdog guard{std::chrono::seconds{30 + rounds * 4}};
    auto v = tandem::mp::value<std::int64_t>::create();
    auto a = tandem::mp::array<std::int64_t>::create(64);
    std::mt19937 rng{777};
    auto worker = [v, a](std::int64_t me) {
      return [v, a, me] {
        std::vector<std::int64_t> row(64, me);
        for (std::int64_t i = 0;; ++i) {
          try {
            v.set(me * 1000 + i % 1000);
            a.set_slice(0, row);
            std::scoped_lock held{a.get_lock()};
            a.span()[i % 64] = me;
          } catch (const tandem::owner_died_error&) {
            // Reported once; the lock is usable again: carry on.
          }
        }
      };
    };
    std::vector<std::unique_ptr<child>> workers;
    for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<child>(worker(i + 1)));
    int reported = 0;
    for (int round = 0; round < rounds; ++round) {
      std::this_thread::sleep_for(random_delay(rng, 20000));
      auto victim = std::uniform_int_distribution<std::size_t>{0, workers.size() - 1}(rng);
      workers[victim]->kill();
      workers[victim]->reap();
      auto start = clock_type::now();
      bool done = false;
      while (!done) {
        try {
          auto x = v.get();
          auto items = a.to_vector();
          CHECK((x == 0 || (x >= 1000 && x < 4000))); // 0 until a worker has written
          for (auto item : items) CHECK((item >= 0 && item <= 3));
          done = true;
        } catch (const tandem::owner_died_error&) {
          ++reported;
        }
      }
      CHECK(clock_type::now() - start < 3s);
      workers[victim] = std::make_unique<child>(worker(static_cast<std::int64_t>(victim) + 1));
    }
    for (auto& w : workers) w->kill();
    for (auto& w : workers) w->reap();
    bool usable = false;
    for (int i = 0; i < 3 && !usable; ++i) {
      try {
        v.set(1);
        a.set(0, 1);
        usable = v.get() == 1 && a.get(0) == 1;
      } catch (const tandem::owner_died_error&) {
      }
    }
    CHECK(usable);
    MESSAGE("rounds: ", rounds, ", deaths reported to the checker: ", reported);
  }

  TEST_CASE("consumers killed while waiting on a condition never block the producer") {
    struct shared_state {
      tandem::mp::condition cv;
      long items = 0;    // guarded by cv
      long consumed = 0; // guarded by cv
    };
    const int rounds = scaled(50);
    tandem::test::watchdog guard{std::chrono::seconds{30 + rounds * 4}};
    auto s = make_shared_object<shared_state>();
    std::mt19937 rng{54321};
    auto consumer = [&] {
      for (;;) {
        try {
          std::scoped_lock with{s->cv};
          s->cv.wait_for([&] { return s->items > 0; });
          --s->items;
          ++s->consumed;
        } catch (const tandem::owner_died_error&) {
          s->cv.make_consistent();
          s->cv.release();
        }
      }
    };

    std::vector<std::unique_ptr<child>> consumers;
    for (int i = 0; i < 4; ++i) consumers.push_back(std::make_unique<child>(consumer));
    long produced = 0;
    for (int round = 0; round < rounds; ++round) {
      for (int i = 0; i < 20; ++i) {
        auto start = clock_type::now();
        try {
          s->cv.acquire();
        } catch (const tandem::owner_died_error&) {
          s->cv.make_consistent();
        }
        ++s->items;
        ++produced;
        s->cv.notify();
        s->cv.release();
        CHECK(clock_type::now() - start < 2s);
      }
      std::this_thread::sleep_for(random_delay(rng, 5000));
      auto victim = std::uniform_int_distribution<std::size_t>{0, consumers.size() - 1}(rng);
      consumers[victim]->kill();
      consumers[victim]->reap();
      consumers[victim] = std::make_unique<child>(consumer);
    }
    // Every item is consumed by the survivors (items taken by a killed consumer are gone with it).
    CHECK(tandem::test::wait_until(
        [&] {
          try {
            std::scoped_lock with{s->cv};
            return s->items == 0;
          } catch (const tandem::owner_died_error&) {
            s->cv.make_consistent();
            s->cv.release();
            return false;
          }
        },
        20s));
    for (auto& c : consumers) c->kill();
    for (auto& c : consumers) c->reap();
    auto start = clock_type::now();
    try {
      s->cv.acquire();
    } catch (const tandem::owner_died_error&) {
      s->cv.make_consistent();
    }
    s->cv.notify_all();
    s->cv.release();
    s.reset();
    CHECK(clock_type::now() - start < 2s);
    CHECK(produced == rounds * 20);
  }

  TEST_CASE("a barrier party killed at a random point breaks the barrier and reset repairs it") {
    // The victim dies inside wait() (then the others break within a second) or, rarely, in the few
    // instructions between two waits, where it cannot be told from a late party (then they break
    // at their timeout).
    const int rounds = scaled(50);
    tandem::test::watchdog guard{std::chrono::seconds{30 + rounds * 6}};
    constexpr int parties = 4;
    auto sut = make_shared_object<tandem::mp::barrier>(parties);
    auto broken = make_cell<int>(0);
    auto cycles = make_cell<int>(0);
    auto stop = make_cell<int>(0);
    std::mt19937 rng{777};
    auto party = [&] {
      while (stop->load() == 0) {
        try {
          sut->wait(2s);
          cycles->fetch_add(1);
        } catch (const tandem::broken_barrier_error&) {
          broken->fetch_add(1);
          // Wait for the reset by the test's process.
          tandem::test::wait_until([&] { return !sut->broken() || stop->load() != 0; }, 20s);
        }
      }
    };

    int fast = 0;
    for (int round = 0; round < rounds; ++round) {
      broken->store(0);
      cycles->store(0);
      std::vector<std::unique_ptr<child>> ps;
      for (int i = 0; i < parties; ++i) ps.push_back(std::make_unique<child>(party));
      REQUIRE(tandem::test::wait_until([&] { return cycles->load() >= parties; }));
      std::this_thread::sleep_for(random_delay(rng, 10000));
      auto start = clock_type::now();
      ps[0]->kill();
      CHECK(tandem::test::wait_until([&] { return sut->broken(); }, 5s));
      if (clock_type::now() - start < 1s) ++fast;
      CHECK(tandem::test::wait_until([&] { return broken->load() == parties - 1; }, 5s));
      stop->store(1);
      sut->reset();
      for (std::size_t i = 1; i < ps.size(); ++i) CHECK(ps[i]->join());
      ps[0]->reap();
      stop->store(0);
      sut->reset();
      CHECK_FALSE(sut->broken());
      CHECK(sut->n_waiting() == 0);
    }
    MESSAGE("rounds: ", rounds, ", broken within a second: ", fast);
    CHECK(fast * 10 >= rounds * 8);
  }

  TEST_CASE("units of workers killed at random points come back and are never duplicated") {
    constexpr int units = 3;
    const int rounds = scaled(50);
    tandem::test::watchdog guard{std::chrono::seconds{30 + rounds * 4}};
    auto sut = make_shared_object<tandem::mp::semaphore>(
        units, tandem::mp::semaphore_options{.return_on_death = true});
    auto over = make_cell<int>(0);
    auto inside = make_cell<unsigned>(0); // bit i: worker i holds a unit
    std::mt19937 rng{4242};
    auto worker = [&](unsigned i) {
      return [&, i] {
        for (;;) {
          sut->acquire();
          auto before = inside->fetch_or(1u << i);
          if (std::popcount(before | (1u << i)) > units) over->fetch_add(1);
          inside->fetch_and(~(1u << i));
          sut->release();
        }
      };
    };

    std::vector<std::unique_ptr<child>> workers;
    for (unsigned i = 0; i < 4; ++i) workers.push_back(std::make_unique<child>(worker(i)));
    for (int round = 0; round < rounds; ++round) {
      std::this_thread::sleep_for(random_delay(rng, 10000));
      auto victim = std::uniform_int_distribution<unsigned>{0, 3}(rng);
      workers[victim]->kill();
      workers[victim]->reap();
      inside->fetch_and(~(1u << victim)); // it may have died holding a unit
      workers[victim] = std::make_unique<child>(worker(victim));
    }
    for (auto& w : workers) w->kill();
    for (auto& w : workers) w->reap();
    CHECK(over->load() == 0);
    // Every unit the workers held comes back, none twice, wherever they were killed.
    int got = 0;
    while (got < units + 1 && sut->acquire(got < units ? 2s : 200ms)) ++got;
    CHECK(got == units);
    MESSAGE("units back after ", rounds, " kills: ", got, " of ", units);
  }

} // TEST_SUITE
