// tandem::timer: CPython's TimerTests and the cancel semantics of threading.Timer.
#include <tandem/error.hpp>
#include <tandem/timer.hpp>

#include "framework/thread_support.hpp"
#include "support/watchdog.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

TEST_SUITE("timer") {

  TEST_CASE("a timer calls its function with its arguments after the interval") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> calls{0};
    std::string seen;
    clock_type::time_point fired_at;
    tandem::timer sut{100ms,
                      [&](std::string s, int n) {
                        fired_at = clock_type::now();
                        seen = s + std::to_string(n);
                        ++calls;
                      },
                      std::string{"x"}, 5};
    auto started_at = clock_type::now();
    sut.start();
    REQUIRE(sut.join(5s));
    CHECK(calls == 1);
    CHECK(seen == "x5");
    CHECK(fired_at - started_at >= 60ms);
    CHECK(fired_at - started_at < 1s);
  }

  TEST_CASE("cancel during the wait stops the timer promptly") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> calls{0};
    tandem::timer sut{30s, [&] { ++calls; }};
    sut.start();
    CHECK(sut.is_alive());
    auto begin = clock_type::now();
    sut.cancel();
    REQUIRE(sut.join(5s));
    CHECK(clock_type::now() - begin < 2s);
    CHECK(calls == 0);
  }

  TEST_CASE("a timer cancelled before start never calls its function") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> calls{0};
    tandem::timer sut{0s, [&] { ++calls; }};
    sut.cancel();
    sut.start();
    REQUIRE(sut.join(5s));
    CHECK(calls == 0);
  }

  TEST_CASE("cancel after the function ran changes nothing") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> calls{0};
    tandem::timer sut{0s, [&] { ++calls; }};
    sut.start();
    REQUIRE(sut.join(5s));
    sut.cancel();
    sut.cancel();
    CHECK(calls == 1);
    CHECK_FALSE(sut.is_alive());
  }

  TEST_CASE("cancel while the function runs does not interrupt it") {
    tandem::test::watchdog guard{10s};
    tandem::test::gate release;
    std::atomic<bool> entered{false}, finished{false};
    tandem::timer sut{0s, [&] {
                        entered = true;
                        release.wait();
                        finished = true;
                      }};
    sut.start();
    REQUIRE(tandem::test::wait_until([&] { return entered.load(); }));
    sut.cancel();
    release.open();
    REQUIRE(sut.join(5s));
    CHECK(finished.load());
  }

  TEST_CASE("a stop request cancels a waiting timer") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> calls{0};
    tandem::timer sut{30s, [&] { ++calls; }};
    sut.start();
    sut.request_stop();
    REQUIRE(sut.join(5s));
    CHECK(calls == 0);
  }

  TEST_CASE("a timer is a thread with a default name and an inherited daemon flag") {
    tandem::test::watchdog guard{10s};
    tandem::timer sut{30s, [] {}};
    CHECK(sut.name().rfind("Thread-", 0) == 0);
    CHECK_FALSE(sut.daemon());
    sut.start();
    CHECK(sut.is_alive());
    CHECK(sut.ident());
    CHECK_FALSE(sut.join(50ms));
    CHECK_THROWS_AS(sut.start(), tandem::usage_error);
    sut.cancel();
    CHECK(sut.join(5s));
    tandem::timer named{{.name = "reminder", .daemon = true}, 1ms, [] {}};
    CHECK(named.name() == "reminder");
    CHECK(named.daemon());
  }

  TEST_CASE("timers keep their own copies of their arguments") {
    tandem::test::watchdog guard{10s};
    std::vector<int> args{1};
    std::vector<int> first_seen, second_seen;
    tandem::timer first{0s, [&](std::vector<int> v) { first_seen = v; }, args};
    args.push_back(2);
    tandem::timer second{0s, [&](std::vector<int> v) { second_seen = v; }, args};
    first.start();
    second.start();
    REQUIRE(first.join(5s));
    REQUIRE(second.join(5s));
    CHECK(first_seen == std::vector<int>{1});
    CHECK(second_seen == std::vector<int>{1, 2});
  }

  TEST_CASE("a timer function may take the stop token") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> possible{-1};
    tandem::timer sut{
        1ms, [&](std::stop_token st, int x) { possible = st.stop_possible() && x == 4; }, 4};
    sut.start();
    REQUIRE(sut.join(5s));
    CHECK(possible == 1);
  }

  TEST_CASE("a moved timer can still be cancelled") {
    tandem::test::watchdog guard{10s};
    std::atomic<int> calls{0};
    tandem::timer original{30s, [&] { ++calls; }};
    tandem::timer sut = std::move(original);
    original.cancel(); // NOLINT(bugprone-use-after-move): a moved-from timer ignores cancel
    sut.start();
    sut.cancel();
    REQUIRE(sut.join(5s));
    CHECK(calls == 0);
  }

  TEST_CASE("a NaN interval is a value error") {
    auto nan = std::chrono::duration<double>{std::numeric_limits<double>::quiet_NaN()};
    CHECK_THROWS_AS(tandem::timer(nan, [] {}), tandem::value_error);
  }
}
