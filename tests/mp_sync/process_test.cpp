// Primitives passed to tandem::mp::process children as arguments, with every start method: the
// child gets a handle of the same object (fork: inherited memory; spawn and forkserver: the
// arena's descriptor and the object's offset), and a child killed while holding a lock is a
// dead holder like any other.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/barrier.hpp>
#include <tandem/mp/event.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/semaphore.hpp>

#include <doctest/doctest.h>

namespace mp = tandem::mp;
using namespace tandem::test::mp_sync;

namespace {

constexpr mp::start_method methods[] = {mp::start_method::forkserver, mp::start_method::spawn,
                                        mp::start_method::fork};

const char* name_of(mp::start_method m) {
  switch (m) {
    case mp::start_method::forkserver:
      return "forkserver";
    case mp::start_method::spawn:
      return "spawn";
    case mp::start_method::fork:
      break;
  }
  return "fork";
}

// The watchdog is a thread, so fork children are allowed with other threads; their targets use
// only the primitives they receive.
mp::process_options with(mp::start_method m) {
  return {.name = {}, .daemon = false, .method = m, .allow_threads = true};
}

// Says it started, waits for the lock the parent holds, counts itself done.
void lock_worker(mp::lock::handle l, mp::event::handle started, mp::semaphore::handle done) {
  started->set();
  if (!l->acquire(10s)) return;
  done->release();
  l->release();
}

// Takes the lock, says so, and waits to be killed.
void lock_holder(mp::lock::handle l, mp::event::handle holding) {
  l->acquire();
  holding->set();
  hang();
}

// Meets the parent at the barrier and reports its arrival index.
void barrier_party(mp::barrier::handle b, mp::semaphore::handle index_plus_one) {
  auto index = b->wait(10s);
  index_plus_one->release(index + 1);
}

} // namespace

TEST_SUITE("mp sync with mp process") {

  TEST_CASE("a lock passed to a process is the same lock with every start method") {
    tandem::test::watchdog guard{60s};
    for (auto m : methods) {
      CAPTURE(name_of(m));
      auto l = mp::lock::create();
      auto started = mp::event::create();
      auto done = mp::semaphore::create(0);
      l->acquire();
      mp::process p{with(m), lock_worker, l, started, done};
      p.start();
      CHECK(started->wait(10s));
      CHECK_FALSE(done->acquire(50ms)); // blocked on the lock held here
      l->release();
      CHECK(done->acquire(10s));
      CHECK(p.join(10s));
      CHECK(p.exitcode() == 0);
    }
  }

  TEST_CASE("a process killed while holding a passed lock is reported as a dead holder") {
    tandem::test::watchdog guard{60s};
    for (auto m : methods) {
      CAPTURE(name_of(m));
      auto l = mp::lock::create();
      auto holding = mp::event::create();
      mp::process p{with(m), lock_holder, l, holding};
      p.start();
      REQUIRE(holding->wait(10s));
      p.kill();
      CHECK(p.join(10s));

      auto start = clock_type::now();
      CHECK_THROWS_AS(l->acquire(5s), tandem::owner_died_error);
      CHECK(clock_type::now() - start < 1s);
      l->make_consistent();
      l->release();
    }
  }

  TEST_CASE("a barrier without an action passed to a process meets it with every start method") {
    tandem::test::watchdog guard{60s};
    for (auto m : methods) {
      CAPTURE(name_of(m));
      auto b = mp::barrier::create(2);
      auto index_plus_one = mp::semaphore::create(0);
      mp::process p{with(m), barrier_party, b, index_plus_one};
      p.start();
      auto mine = b->wait(10s);
      CHECK(p.join(10s));
      // The two indices are 0 and 1: the child's is the other one.
      CHECK(index_plus_one->get_value() == 2 - mine);
    }
  }

} // TEST_SUITE
