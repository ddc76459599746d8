// What the forked conformance runs cannot show: ownership per thread inside one process (an rlock
// is owned by a thread, not by its process), and the std::stop_token overloads of every blocking
// call.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/barrier.hpp>
#include <tandem/mp/bounded_semaphore.hpp>
#include <tandem/mp/condition.hpp>
#include <tandem/mp/event.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/rlock.hpp>
#include <tandem/mp/semaphore.hpp>

#include <doctest/doctest.h>

#include <optional>
#include <stop_token>
#include <thread>

using namespace tandem::test::mp_sync;

namespace {

// Runs `blocking(token)` while another thread requests a stop after 50 ms; returns how long the
// blocking call took.
template <class F>
clock_type::duration time_until_stopped(F blocking) {
  std::stop_source source;
  std::thread stopper{[&] {
    std::this_thread::sleep_for(50ms); // the scenario: a stop that comes while the call blocks
    source.request_stop();
  }};
  auto start = clock_type::now();
  blocking(source.get_token());
  auto took = clock_type::now() - start;
  stopper.join();
  return took;
}

} // namespace

TEST_SUITE("mp sync threads and stop tokens") {

  TEST_CASE("an mp rlock is owned by one thread and not by its whole process") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::rlock>();
    sut->acquire();
    bool other_owns = true;
    bool other_got_it = true;
    bool other_release_refused = false;
    std::thread other{[&] {
      other_owns = sut->is_owned();
      other_got_it = sut->acquire(50ms);
      try {
        sut->release();
      } catch (const tandem::usage_error&) {
        other_release_refused = true;
      }
      sut->unlock(); // not the owner: does nothing
    }};
    other.join();

    CHECK_FALSE(other_owns);
    CHECK_FALSE(other_got_it);
    CHECK(other_release_refused);
    CHECK(sut->is_owned());
    CHECK(sut->recursion_count() == 1);
    sut->release();
    CHECK_FALSE(sut->locked());
  }

  TEST_CASE("an mp lock acquired by one thread may be released by another") {
    tandem::test::watchdog guard{20s};
    auto sut = make_shared_object<tandem::mp::lock>();
    sut->acquire();
    std::thread other{[&] { sut->release(); }};
    other.join();
    CHECK_FALSE(sut->locked());
  }

  TEST_CASE("a stop request ends every blocking call of the mp primitives promptly") {
    tandem::test::watchdog guard{30s};
    auto l = make_shared_object<tandem::mp::lock>();
    auto r = make_shared_object<tandem::mp::rlock>();
    auto c = make_shared_object<tandem::mp::condition>();
    auto e = make_shared_object<tandem::mp::event>();
    auto s = make_shared_object<tandem::mp::semaphore>(0);
    auto rs = make_shared_object<tandem::mp::semaphore>(
        0, tandem::mp::semaphore_options{.return_on_death = true});
    auto bs = make_shared_object<tandem::mp::bounded_semaphore>(0);
    auto b = make_shared_object<tandem::mp::barrier>(2);

    // The locks are held by another thread (rlock) or by anyone (lock), so acquire blocks.
    l->acquire();
    std::thread owner{[&] { r->acquire(); }};
    owner.join(); // the rlock stays owned by the ended thread, as in Python

    bool result = true;
    CHECK(time_until_stopped([&](std::stop_token st) { result = l->acquire(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    CHECK(time_until_stopped([&](std::stop_token st) { result = r->acquire(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    CHECK(time_until_stopped([&](std::stop_token st) { result = e->wait(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    CHECK(time_until_stopped([&](std::stop_token st) { result = s->acquire(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    CHECK(time_until_stopped([&](std::stop_token st) { result = rs->acquire(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    CHECK(time_until_stopped([&](std::stop_token st) { result = bs->acquire(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    c->acquire();
    CHECK(time_until_stopped([&](std::stop_token st) { result = c->wait(st, 10s); }) < 5s);
    CHECK_FALSE(result);
    CHECK(c->is_owned()); // re-acquired before returning
    c->release();
    std::optional<std::size_t> index{0};
    CHECK(time_until_stopped([&](std::stop_token st) { index = b->wait(st, 10s); }) < 5s);
    CHECK_FALSE(index.has_value());
    CHECK(b->broken()); // it had arrived: its stop breaks the barrier, as a timeout does

    // A stop requested before the call: nothing blocks, nothing is taken.
    std::stop_source stopped;
    stopped.request_stop();
    CHECK_FALSE(l->acquire(stopped.get_token()));
    l->release();
    CHECK_FALSE(l->acquire(stopped.get_token()));
    CHECK_FALSE(l->locked());
  }

} // TEST_SUITE
