// The std::stop_token overloads of every queue: a stop request makes a blocked
// put, get or join return false / nullopt promptly, never throws, and never
// loses an item or a wake-up.
#include "support/watchdog.hpp"

#include <tandem/lifo_queue.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/queue.hpp>
#include <tandem/simple_queue.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <stop_token>
#include <thread>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// Runs `blocking` in a new thread, waits until that thread sleeps, requests a
// stop, and returns how long the blocking call took after the stop request.
template <class Blocking>
clock_type::duration stop_while_blocked(Blocking blocking) {
  std::stop_source stop;
  std::atomic<pid_t> tid{0};
  std::thread t{[&] {
    tid = tandem::test::tid();
    blocking(stop.get_token());
  }};
  tandem::test::wait_until([&] { return tid.load() != 0; });
  pid_t tids[] = {tid.load()};
  CHECK(tandem::test::wait_until_blocked(tids));
  auto start = clock_type::now();
  stop.request_stop();
  t.join();
  return clock_type::now() - start;
}

} // namespace

TYPE_TO_STRING_AS("queue", tandem::queue<int>);
TYPE_TO_STRING_AS("lifo_queue", tandem::lifo_queue<int>);
TYPE_TO_STRING_AS("priority_queue", tandem::priority_queue<int>);
TYPE_TO_STRING_AS("simple_queue", tandem::simple_queue<int>);

TEST_SUITE("queue stop token") {

  TEST_CASE_TEMPLATE("a stop request wakes a blocked get which returns nullopt", Q,
                     tandem::queue<int>, tandem::lifo_queue<int>, tandem::priority_queue<int>,
                     tandem::simple_queue<int>) {
    tandem::test::watchdog guard{10s};
    Q sut;
    std::optional<int> got{-1};
    bool timed = false;
    SUBCASE("without a timeout") {
      timed = false;
    }
    SUBCASE("with a timeout") {
      timed = true;
    }

    auto took = stop_while_blocked(
        [&](std::stop_token st) { got = timed ? sut.get(st, 10s) : sut.get(st); });

    CHECK_FALSE(got.has_value());
    CHECK(took < 5s);
    sut.put(1);
    CHECK(sut.get(0s) == 1);
  }

  TEST_CASE_TEMPLATE("a stop request wakes a blocked put which returns false", Q,
                     tandem::queue<int>, tandem::lifo_queue<int>, tandem::priority_queue<int>) {
    tandem::test::watchdog guard{10s};
    Q sut{1};
    sut.put(1);
    int result = -1;

    auto took = stop_while_blocked([&](std::stop_token st) { result = sut.put(st, 2) ? 1 : 0; });

    CHECK(result == 0);
    CHECK(took < 5s);
    CHECK(sut.qsize() == 1);
    CHECK(sut.unfinished_tasks() == 1);
    CHECK(sut.get() == 1);
    CHECK(sut.put(std::stop_token{}, 3, 0s));
  }

  TEST_CASE_TEMPLATE("a stop request wakes a blocked join which returns false", Q,
                     tandem::queue<int>, tandem::lifo_queue<int>, tandem::priority_queue<int>) {
    tandem::test::watchdog guard{10s};
    Q sut;
    sut.put(1);
    int result = -1;

    auto took = stop_while_blocked([&](std::stop_token st) { result = sut.join(st) ? 1 : 0; });

    CHECK(result == 0);
    CHECK(took < 5s);
    CHECK(sut.unfinished_tasks() == 1);
  }

  TEST_CASE_TEMPLATE("a stop requested before the call returns at once without effect", Q,
                     tandem::queue<int>, tandem::lifo_queue<int>, tandem::priority_queue<int>) {
    Q sut{5};
    sut.put(1);
    std::stop_source stop;
    stop.request_stop();

    CHECK_FALSE(sut.put(stop.get_token(), 2));
    CHECK_FALSE(sut.put(stop.get_token(), 2, 10s));
    CHECK_FALSE(sut.get(stop.get_token()).has_value());
    CHECK_FALSE(sut.get(stop.get_token(), 10s).has_value());
    CHECK_FALSE(sut.join(stop.get_token()));
    CHECK(sut.qsize() == 1);
    CHECK(sut.unfinished_tasks() == 1);
    // Even a shut-down queue answers a stopped call with false or nullopt, not
    // an exception.
    sut.shutdown(true);
    CHECK_FALSE(sut.put(stop.get_token(), 3));
    CHECK_FALSE(sut.get(stop.get_token()).has_value());
  }

  TEST_CASE("a stop requested before a get from a simple queue returns nullopt "
            "and takes nothing") {
    tandem::simple_queue<int> sut;
    sut.put(1);
    std::stop_source stop;
    stop.request_stop();

    CHECK_FALSE(sut.get(stop.get_token()).has_value());
    CHECK(sut.qsize() == 1);
  }

  TEST_CASE_TEMPLATE("a stop token that is never stopped leaves the calls as they are", Q,
                     tandem::queue<int>, tandem::lifo_queue<int>, tandem::priority_queue<int>) {
    tandem::test::watchdog guard{10s};
    Q sut{1};
    std::stop_source stop;
    auto st = stop.get_token();

    CHECK(sut.put(st, 1));
    auto start = clock_type::now();
    CHECK_FALSE(sut.put(st, 2, 20ms));
    auto took = clock_type::now() - start;
    CHECK(took >= 12ms);
    CHECK(took < 200ms);
    CHECK(sut.get(st) == 1);
    start = clock_type::now();
    CHECK_FALSE(sut.get(st, 20ms).has_value());
    took = clock_type::now() - start;
    CHECK(took >= 12ms);
    CHECK(took < 200ms);
    CHECK_FALSE(sut.join(st, 0s));
    sut.task_done();
    CHECK(sut.join(st));
    CHECK(sut.join(std::stop_token{}, 0s));
  }

  TEST_CASE_TEMPLATE("an item put while a getter is being stopped reaches another getter", Q,
                     tandem::queue<int>, tandem::lifo_queue<int>, tandem::priority_queue<int>,
                     tandem::simple_queue<int>) {
    tandem::test::watchdog guard{60s};
    // Races a stop request against a put many times: whichever wins, the item
    // is taken exactly once and the second getter, which is never stopped, does
    // not sleep through its arrival.
    for (int round = 0; round < 200; ++round) {
      CAPTURE(round);
      Q sut;
      std::stop_source stop;
      std::atomic<int> stopped_took{0};
      std::atomic<int> other_took{0};
      std::atomic<pid_t> tids[2] = {0, 0};
      std::thread stopped_getter{[&] {
        tids[0] = tandem::test::tid();
        if (sut.get(stop.get_token())) stopped_took = 1;
      }};
      std::thread other_getter{[&] {
        tids[1] = tandem::test::tid();
        if (sut.get(5s)) other_took = 1;
      }};
      tandem::test::wait_until([&] { return tids[0].load() != 0 && tids[1].load() != 0; });
      pid_t ids[] = {tids[0].load(), tids[1].load()};
      CHECK(tandem::test::wait_until_blocked(ids));
      auto start = clock_type::now();
      std::thread stopper{[&] { stop.request_stop(); }};
      sut.put(round);
      stopper.join();
      stopped_getter.join();
      if (stopped_took.load() != 0)
        sut.put(round); // the stopped getter took the item before it saw the stop
      other_getter.join();

      CHECK(other_took.load() == 1);
      CHECK(clock_type::now() - start < 4s);
      CHECK(sut.empty());
    }
  }

} // TEST_SUITE
