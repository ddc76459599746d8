// tandem::event: the event contract (conformance bodies) and what is particular to the in-process
// event: stop tokens, memory ordering, generations.
#include "conformance/event_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/event.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tandem::test::subject;
using clock_type = std::chrono::steady_clock;

TYPE_TO_STRING_AS("event", subject<tandem::event>);

TANDEM_EVENT_CONTRACT(subject<tandem::event>);

TEST_SUITE("event") {

  TEST_CASE("a stop request ends a wait with false promptly") {
    tandem::test::watchdog guard{10s};
    tandem::event sut;
    std::stop_source stop;
    std::atomic<pid_t> waiter{0};
    std::optional<bool> result;

    std::thread t{[&] {
      waiter = tandem::test::tid();
      result = sut.wait(stop.get_token());
    }};
    REQUIRE(tandem::test::wait_until([&] { return waiter.load() != 0; }));
    pid_t tids[] = {waiter.load()};
    REQUIRE(tandem::test::wait_until_blocked(tids));
    auto start = clock_type::now();
    stop.request_stop();
    t.join();

    CHECK(clock_type::now() - start < 2s);
    CHECK(result == false);
  }

  TEST_CASE("a set event wins over a stopped token") {
    tandem::test::watchdog guard{10s};
    tandem::event sut;
    std::stop_source stop;
    stop.request_stop();

    CHECK_FALSE(sut.wait(stop.get_token()));
    CHECK_FALSE(sut.wait(stop.get_token(), 10s));
    sut.set();
    CHECK(sut.wait(stop.get_token()));
    CHECK(sut.wait(std::stop_token{}, 0s));
  }

  TEST_CASE("wait with a deadline in the past only looks at the flag") {
    tandem::test::watchdog guard{10s};
    tandem::event sut;

    auto start = clock_type::now();
    CHECK_FALSE(sut.wait(clock_type::now() - 1h));
    CHECK_FALSE(sut.wait(-5s));
    CHECK(clock_type::now() - start < 1s);
    sut.set();
    CHECK(sut.wait(clock_type::now() - 1h));
  }

  TEST_CASE("set publishes the writes made before it to the waiters") {
    tandem::test::watchdog guard{10s};
    tandem::event sut;
    std::vector<int> payload; // written before set, read after wait
    std::vector<std::thread> readers;
    std::atomic<int> correct{0};

    for (int i = 0; i < 4; ++i)
      readers.emplace_back([&] {
        if (sut.wait(10s) && payload.size() == 1000 && payload.back() == 999) correct.fetch_add(1);
      });
    for (int i = 0; i < 1000; ++i) payload.push_back(i);
    sut.set();
    for (auto& t : readers) t.join();

    CHECK(correct.load() == 4);
  }

  TEST_CASE("set and clear in quick succession never strand a waiter") {
    // Two threads play ping-pong through two events, clearing each before answering: a lost wakeup
    // or a generation mix-up hangs (the watchdog reports it) or miscounts.
    tandem::test::watchdog guard{30s};
    tandem::event ping;
    tandem::event pong;
    constexpr int rounds = 2000;
    int answered = 0;

    std::thread other{[&] {
      for (int i = 0; i < rounds; ++i) {
        if (!ping.wait(10s)) return;
        ping.clear();
        ++answered;
        pong.set();
      }
    }};
    int completed = 0;
    for (int i = 0; i < rounds; ++i) {
      ping.set();
      if (!pong.wait(10s)) break;
      pong.clear();
      ++completed;
    }
    other.join();

    CHECK(completed == rounds);
    CHECK(answered == rounds);
  }

  TEST_CASE("a waiter that arrives after set and clear waits for the next set") {
    tandem::test::watchdog guard{10s};
    tandem::event sut;
    sut.set();
    sut.clear();

    auto start = clock_type::now();
    CHECK_FALSE(sut.wait(100ms));
    CHECK(clock_type::now() - start >= 60ms);
  }
}
