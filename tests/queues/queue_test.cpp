// tandem::queue beyond the shared contract
// (tests/conformance/queue_bodies.hpp): the ring buffer's order across
// wrap-around and growth, element lifetimes, move-only elements, and how
// blocked threads are woken.
#include "support/watchdog.hpp"

#include <tandem/queue.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Counts the live instances of itself.
struct counted {
  static inline std::atomic<int> live{0};
  int value;
  explicit counted(int v) : value(v) { ++live; }
  counted(const counted& other) : value(other.value) { ++live; }
  counted(counted&& other) noexcept : value(other.value) { ++live; }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) noexcept = default;
  ~counted() { --live; }
};

// Starts `n` threads running fn(i), waits until each sleeps in the kernel, and
// returns them.
template <class Fn>
std::vector<std::thread> start_blocked(int n, Fn fn) {
  std::vector<std::atomic<pid_t>> tids(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&tids, fn, i] {
      tids[static_cast<std::size_t>(i)] = tandem::test::tid();
      fn(i);
    });
  tandem::test::wait_until(
      [&] { return std::all_of(tids.begin(), tids.end(), [](auto& t) { return t.load() != 0; }); });
  std::vector<pid_t> ids;
  for (auto& t : tids) ids.push_back(t.load());
  CHECK(tandem::test::wait_until_blocked(ids));
  return threads;
}

} // namespace

TEST_SUITE("queue") {

  TEST_CASE("items keep their order across the ring's wrap-around and growth") {
    tandem::queue<int> sut;
    int next_in = 0;
    int next_out = 0;

    // Move the head forward, so the items wrap around the end of the buffer
    // before it grows.
    for (int i = 0; i < 10; ++i) sut.put(next_in++);
    for (int i = 0; i < 7; ++i) CHECK(sut.get() == next_out++);
    for (int round = 0; round < 5; ++round) {
      for (int i = 0; i < 50 * (round + 1); ++i) sut.put(next_in++);
      for (int i = 0; i < 30 * (round + 1); ++i) REQUIRE(sut.get() == next_out++);
    }
    while (auto v = sut.get(0s)) REQUIRE(*v == next_out++);

    CHECK(next_out == next_in);
    CHECK(sut.empty());
  }

  TEST_CASE("an unbounded queue holds many items in order") {
    tandem::queue<int> sut;
    constexpr int n = 100'000;

    for (int i = 0; i < n; ++i) sut.put(i);
    CHECK(sut.qsize() == n);
    CHECK_FALSE(sut.full());
    bool in_order = true;
    for (int i = 0; i < n; ++i) in_order = in_order && sut.get() == i;

    CHECK(in_order);
    CHECK(sut.unfinished_tasks() == n);
  }

  TEST_CASE("a queue of maxsize one alternates puts and gets") {
    tandem::queue<int> sut{1};

    for (int i = 0; i < 100; ++i) {
      sut.put(i);
      REQUIRE(sut.full());
      REQUIRE_THROWS_AS(sut.put_nowait(i), tandem::full_error);
      REQUIRE(sut.get() == i);
      REQUIRE(sut.empty());
    }
  }

  TEST_CASE("a queue holds move-only items") {
    tandem::queue<std::unique_ptr<int>> sut{2};

    sut.put(std::make_unique<int>(1));
    auto two = std::make_unique<int>(2);
    sut.put(std::move(two));
    CHECK(two == nullptr);
    CHECK_FALSE(sut.put(std::make_unique<int>(3), 0s));

    CHECK(*sut.get() == 1);
    auto second = sut.get(0s);
    REQUIRE(second.has_value());
    CHECK(**second == 2);
  }

  TEST_CASE("items are destroyed when taken and when the queue or a shutdown "
            "drops them") {
    REQUIRE(counted::live == 0);
    {
      tandem::queue<counted> sut;
      for (int i = 0; i < 40; ++i) // grows the ring twice
        sut.put(counted{i});
      CHECK(counted::live == 40);
      { auto taken = sut.get(); }
      CHECK(counted::live == 39);
      sut.shutdown(true);
      CHECK(counted::live == 0);
      for (int i = 0; i < 3; ++i) CHECK_THROWS_AS(sut.put(counted{i}), tandem::shut_down_error);
      CHECK(counted::live == 0);
    }
    {
      tandem::queue<counted> sut;
      for (int i = 0; i < 5; ++i) sut.put(counted{i});
    }
    CHECK(counted::live == 0);
  }

  TEST_CASE("a taken item leaves no copy behind") {
    tandem::queue<std::shared_ptr<int>> sut;
    std::weak_ptr<int> watch;
    {
      auto item = std::make_shared<int>(1);
      watch = item;
      sut.put(std::move(item));
    }
    CHECK(watch.use_count() == 1);

    auto taken = sut.get();
    CHECK(taken.use_count() == 1);
    taken.reset();
    CHECK(watch.expired());
  }

  TEST_CASE("each get lets exactly one blocked putter through") {
    tandem::test::watchdog guard{10s};
    tandem::queue<int> sut{1};
    sut.put(0);
    std::atomic<int> done{0};

    auto putters = start_blocked(3, [&](int i) {
      sut.put(i + 1);
      ++done;
    });
    for (int round = 1; round <= 3; ++round) {
      CHECK(sut.get(5s).has_value());
      CHECK(tandem::test::wait_until([&] { return done.load() == round; }));
      CHECK(sut.full());
    }
    for (auto& t : putters) t.join();

    CHECK(done == 3);
    CHECK(sut.qsize() == 1);
    CHECK(sut.unfinished_tasks() == 4);
  }

  TEST_CASE("several blocked getters each receive one item") {
    tandem::test::watchdog guard{10s};
    tandem::queue<int> sut;
    std::vector<int> got(4, -1);

    auto getters = start_blocked(4, [&](int i) { got[static_cast<std::size_t>(i)] = sut.get(); });
    for (int i = 0; i < 4; ++i) sut.put(i);
    for (auto& t : getters) t.join();

    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<int>{0, 1, 2, 3});
    CHECK(sut.empty());
  }

  TEST_CASE("timed gets of many threads all expire on an empty queue") {
    tandem::test::watchdog guard{10s};
    tandem::queue<int> sut;
    std::atomic<int> expired{0};
    std::atomic<int> early{0};

    std::vector<std::thread> getters;
    for (int i = 0; i < 5; ++i)
      getters.emplace_back([&] {
        auto start = std::chrono::steady_clock::now();
        if (!sut.get(50ms)) ++expired;
        if (std::chrono::steady_clock::now() - start < 30ms) ++early;
      });
    for (auto& t : getters) t.join();

    CHECK(expired == 5);
    CHECK(early == 0);
  }

  TEST_CASE("one producer's items reach every consumer in the producer's order") {
    tandem::test::watchdog guard{30s};
    constexpr int producers = 3;
    constexpr int per_producer = 20'000;
    tandem::queue<int> sut{64};
    std::atomic<int> out_of_order{0};
    std::atomic<long long> received{0};

    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        for (int i = 0; i < per_producer; ++i) sut.put(p * per_producer + i);
      });
    for (int c = 0; c < 2; ++c)
      threads.emplace_back([&] {
        std::vector<int> last(producers, -1);
        while (auto v = sut.get(1s)) {
          int p = *v / per_producer;
          if (*v <= last[static_cast<std::size_t>(p)]) ++out_of_order;
          last[static_cast<std::size_t>(p)] = *v;
          ++received;
        }
      });
    for (auto& t : threads) t.join();

    CHECK(out_of_order == 0);
    CHECK(received == producers * per_producer);
  }

} // TEST_SUITE
