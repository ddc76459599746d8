// tandem::simple_queue beyond the shared contract
// (tests/conformance/queue_bodies.hpp).
#include "support/watchdog.hpp"

#include <tandem/simple_queue.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

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

} // namespace

TEST_SUITE("simple_queue") {

  TEST_CASE("a put never blocks and a put with a timeout returns true at once") {
    tandem::simple_queue<int> sut;
    auto start = std::chrono::steady_clock::now();

    for (int i = 0; i < 10'000; ++i) sut.put(i);
    CHECK(sut.put(-1, 0s));
    CHECK(sut.put(-2, -1s));
    sut.put_nowait(-3);

    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(sut.qsize() == 10'003);
    CHECK(sut.get() == 0);
  }

  TEST_CASE("a simple queue holds move-only items") {
    tandem::simple_queue<std::unique_ptr<int>> sut;

    sut.put(std::make_unique<int>(1));
    sut.put(std::make_unique<int>(2));

    CHECK(*sut.get() == 1);
    auto second = sut.get_nowait();
    CHECK(*second == 2);
  }

  TEST_CASE("the queue keeps no reference to an item once it is taken") {
    // CPython's test_references: the queue loses its reference as soon as the
    // item leaves it.
    tandem::simple_queue<std::shared_ptr<int>> sut;
    std::vector<std::weak_ptr<int>> watches;
    for (int i = 0; i < 20; ++i) {
      auto item = std::make_shared<int>(i);
      watches.push_back(item);
      sut.put(std::move(item));
    }

    for (int i = 0; i < 20; ++i) {
      { auto taken = sut.get(); }
      CHECK(watches[static_cast<std::size_t>(i)].expired());
    }
  }

  TEST_CASE("items left in a simple queue are destroyed with it") {
    REQUIRE(counted::live == 0);
    {
      tandem::simple_queue<counted> sut;
      for (int i = 0; i < 50; ++i) sut.put(counted{i});
      (void)sut.get();
      CHECK(counted::live == 49);
    }
    CHECK(counted::live == 0);
  }

  TEST_CASE("several blocked getters of a simple queue each receive one item") {
    tandem::test::watchdog guard{10s};
    tandem::simple_queue<int> sut;
    std::vector<std::atomic<pid_t>> tids(3);
    std::atomic<int> sum{0};

    std::vector<std::thread> getters;
    for (std::size_t i = 0; i < 3; ++i)
      getters.emplace_back([&, i] {
        tids[i] = tandem::test::tid();
        sum += sut.get();
      });
    tandem::test::wait_until([&] {
      for (auto& t : tids)
        if (t.load() == 0) return false;
      return true;
    });
    std::vector<pid_t> ids;
    for (auto& t : tids) ids.push_back(t.load());
    CHECK(tandem::test::wait_until_blocked(ids));
    sut.put(1);
    sut.put(10);
    sut.put(100);
    for (auto& t : getters) t.join();

    CHECK(sum == 111);
    CHECK(sut.empty());
  }

} // TEST_SUITE
