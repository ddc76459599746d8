// tandem::barrier: the barrier contract (conformance bodies) and what is particular to the
// in-process barrier: stop tokens, default timeouts, memory ordering through the action.
#include "conformance/barrier_bodies.hpp"
#include "support/watchdog.hpp"

#include <tandem/barrier.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tandem::test::subject;
using clock_type = std::chrono::steady_clock;

TYPE_TO_STRING_AS("barrier", subject<tandem::barrier>);

TANDEM_BARRIER_CONTRACT(subject<tandem::barrier>);

TEST_SUITE("barrier") {

  TEST_CASE("a stop request ends a wait with nullopt and breaks the barrier for the others") {
    tandem::test::watchdog guard{10s};
    tandem::barrier sut{3};
    std::stop_source stop;
    std::optional<std::size_t> stopped_result{42};
    std::atomic<int> broken{0};

    std::thread plain{[&] {
      try {
        sut.wait();
      } catch (const tandem::broken_barrier_error&) {
        broken = 1;
      }
    }};
    std::thread stoppable{[&] { stopped_result = sut.wait(stop.get_token()); }};
    REQUIRE(tandem::test::wait_until([&] { return sut.n_waiting() == 2; }));
    auto start = clock_type::now();
    stop.request_stop();
    stoppable.join();
    plain.join();

    CHECK(clock_type::now() - start < 2s);
    CHECK(stopped_result == std::nullopt);
    CHECK(broken.load() == 1);
    CHECK(sut.broken());
  }

  TEST_CASE("a wait with a token stopped before the call leaves the barrier intact") {
    tandem::test::watchdog guard{10s};
    tandem::barrier sut{2};
    std::stop_source stop;
    stop.request_stop();

    CHECK(sut.wait(stop.get_token()) == std::nullopt);
    CHECK(sut.wait(stop.get_token(), 0s) == std::nullopt);
    CHECK_FALSE(sut.broken());
    CHECK(sut.n_waiting() == 0);
  }

  TEST_CASE("a wait with a token that is not stopped passes as a plain wait") {
    tandem::test::watchdog guard{10s};
    tandem::barrier sut{2};
    std::stop_source stop;
    std::optional<std::size_t> first;

    std::thread t{[&] { first = sut.wait(stop.get_token(), 10s); }};
    auto second = sut.wait(stop.get_token());
    t.join();

    REQUIRE(first.has_value());
    REQUIRE(second.has_value());
    CHECK(*first + *second == 1);
  }

  TEST_CASE("default timeouts of timeout_max or more mean forever") {
    tandem::test::watchdog guard{10s};
    tandem::barrier huge{2, {}, std::chrono::hours{24 * 365 * 1000}}; // past timeout_max
    tandem::barrier at_max{2, {}, tandem::timeout_max};
    tandem::barrier infinite{2, {}, std::chrono::duration<double>(INFINITY)};

    for (auto* sut : {&huge, &at_max, &infinite}) {
      std::thread t{[&] { sut->wait(); }};
      CHECK(tandem::test::wait_until([&] { return sut->n_waiting() == 1; }));
      sut->wait();
      t.join();
      CHECK_FALSE(sut->broken());
    }
  }

  TEST_CASE("a NaN default timeout is a value error") {
    CHECK_THROWS_AS((tandem::barrier{2, {}, std::chrono::duration<double>(std::nan(""))}),
                    tandem::value_error);
  }

  TEST_CASE("a negative or zero default timeout breaks the barrier at once") {
    tandem::test::watchdog guard{10s};
    tandem::barrier negative{2, {}, -1s};
    tandem::barrier zero{2, {}, 0ms};

    for (auto* sut : {&negative, &zero}) {
      auto start = clock_type::now();
      CHECK_THROWS_AS(sut->wait(), tandem::broken_barrier_error);
      CHECK(clock_type::now() - start < 1s);
      CHECK(sut->broken());
    }
  }

  TEST_CASE("the action sees what every party wrote before arriving") {
    tandem::test::watchdog guard{20s};
    constexpr int parties = 4;
    constexpr int cycles = 200;
    std::vector<int> slots(parties, 0); // each party writes its own slot; the action reads all
    int wrong_sums = 0;                 // written by the action only
    int cycle = 0;                      // written by the action only
    tandem::barrier sut{parties, [&] {
                          ++cycle;
                          int sum = 0;
                          for (int s : slots) sum += s;
                          // Two cycles per round: the parties wrote the round's number before both.
                          if (sum != parties * ((cycle + 1) / 2)) ++wrong_sums;
                        }};
    std::vector<std::thread> threads;

    for (int p = 0; p < parties; ++p)
      threads.emplace_back([&, p] {
        for (int c = 1; c <= cycles; ++c) {
          slots[static_cast<std::size_t>(p)] = c;
          sut.wait();
          sut.wait(); // nobody writes the next value before the action of this cycle read it
        }
      });
    for (auto& t : threads) t.join();

    CHECK(wrong_sums == 0);
    CHECK(cycle == 2 * cycles);
  }

  TEST_CASE("reset without waiters keeps the barrier usable and repairs a broken one") {
    tandem::test::watchdog guard{10s};
    tandem::barrier sut{1};

    sut.reset();
    CHECK(sut.wait() == 0);
    sut.abort();
    CHECK(sut.broken());
    CHECK_THROWS_AS(sut.wait(), tandem::broken_barrier_error);
    sut.reset();
    CHECK_FALSE(sut.broken());
    CHECK(sut.wait() == 0);
  }

  TEST_CASE("parties may be given as any integer type") {
    CHECK(tandem::barrier{std::size_t{3}}.parties() == 3);
    CHECK(tandem::barrier{2u}.parties() == 2);
    CHECK(tandem::barrier{static_cast<short>(4)}.parties() == 4);
    CHECK_THROWS_AS(tandem::barrier{0u}, tandem::value_error);
    CHECK_THROWS_AS(tandem::barrier{-5LL}, tandem::value_error);
  }

  TEST_CASE("a thread that arrives while the barrier drains waits for the next cycle") {
    // Python's _enter: with more threads than parties, a third thread arriving while the first two
    // are still leaving must not join their cycle; it forms the next one with a fourth. The threads
    // run until enough cycles passed, then a stop request ends them (breaking the barrier, which
    // releases whoever still waits for a partner).
    tandem::test::watchdog guard{30s};
    std::atomic<int> cycles{0};
    tandem::barrier sut{2, [&] { cycles.fetch_add(1); }};
    std::stop_source stop;
    std::atomic<int> out_of_range{0};
    std::vector<std::thread> threads;

    for (int i = 0; i < 6; ++i)
      threads.emplace_back([&] {
        try {
          while (auto index = sut.wait(stop.get_token()))
            if (*index > 1) out_of_range.fetch_add(1);
        } catch (const tandem::broken_barrier_error&) {
        }
      });
    CHECK(tandem::test::wait_until([&] { return cycles.load() >= 1000; }, 20s));
    stop.request_stop();
    for (auto& t : threads) t.join();

    CHECK(out_of_range.load() == 0);
    CHECK(cycles.load() >= 1000);
  }
}
