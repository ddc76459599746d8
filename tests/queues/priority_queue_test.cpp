// tandem::priority_queue beyond the shared contract
// (tests/conformance/queue_bodies.hpp): least first under any comparison, first
// in first out among equal elements, and a model check of the heap against
// std::multimap.
#include "support/watchdog.hpp"

#include <tandem/priority_queue.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Orders by key only, so elements with equal keys are equal to the queue.
struct by_key {
  bool operator()(const std::pair<int, int>& a, const std::pair<int, int>& b) const {
    return a.first < b.first;
  }
};

// A comparison with state: orders by distance from a pivot.
struct closest_to {
  int pivot;
  bool operator()(int a, int b) const { return std::abs(a - pivot) < std::abs(b - pivot); }
};

// An element whose move may throw (never does here): the queue keeps it behind
// a pointer.
struct throwing_move {
  int value;
  explicit throwing_move(int v) : value(v) {}
  throwing_move(const throwing_move&) = default;
  throwing_move(throwing_move&& other) noexcept(false) : value(other.value) {}
  throwing_move& operator=(const throwing_move&) = default;
  throwing_move& operator=(throwing_move&&) noexcept(false) = default;
  ~throwing_move() = default;
  friend bool operator<(const throwing_move& a, const throwing_move& b) {
    return a.value < b.value;
  }
};

} // namespace

TEST_SUITE("priority_queue") {

  TEST_CASE("get returns the least element first") {
    tandem::priority_queue<int> sut;
    std::mt19937 rng{7};
    std::vector<int> values;
    for (int i = 0; i < 1000; ++i) values.push_back(static_cast<int>(rng() % 500));

    for (int v : values) sut.put(v);
    std::vector<int> out;
    while (auto v = sut.get(0s)) out.push_back(*v);

    std::sort(values.begin(), values.end());
    CHECK(out == values);
  }

  TEST_CASE("std greater as the comparison returns the greatest element first") {
    tandem::priority_queue<int, std::greater<int>> sut;

    for (int v : {3, 1, 4, 1, 5, 9, 2, 6}) sut.put(v);

    std::vector<int> out;
    while (auto v = sut.get(0s)) out.push_back(*v);
    CHECK(out == std::vector<int>{9, 6, 5, 4, 3, 2, 1, 1});
  }

  TEST_CASE("a comparison with state given to the constructor orders the elements") {
    tandem::priority_queue<int, closest_to> sut{0, closest_to{10}};

    for (int v : {0, 12, 30, 7, 10}) sut.put(v);

    CHECK(sut.get() == 10);
    CHECK(sut.get() == 12);
    CHECK(sut.get() == 7);
    CHECK(sut.get() == 0);
    CHECK(sut.get() == 30);
  }

  TEST_CASE("equal elements come out in the order they were put") {
    tandem::priority_queue<std::pair<int, int>, by_key> sut;

    for (int seq = 0; seq < 300; ++seq) sut.put({seq % 3, seq});

    std::pair<int, int> last{-1, -1};
    bool stable = true;
    for (int i = 0; i < 300; ++i) {
      auto v = sut.get();
      stable =
          stable && (v.first > last.first || (v.first == last.first && v.second > last.second));
      last = v;
    }
    CHECK(stable);
  }

  TEST_CASE("interleaved puts and gets match a model of the queue") {
    // std::multimap keeps equal keys in insertion order: exactly the queue's
    // contract.
    tandem::priority_queue<std::pair<int, int>, by_key> sut;
    std::multimap<int, int> model;
    std::mt19937 rng{11};

    for (int step = 0; step < 20'000; ++step) {
      if (model.empty() || rng() % 3 != 0) {
        int key = static_cast<int>(rng() % 50);
        sut.put({key, step});
        model.emplace(key, step);
      } else {
        auto expected = *model.begin();
        model.erase(model.begin());
        auto got = sut.get();
        REQUIRE(got.first == expected.first);
        REQUIRE(got.second == expected.second);
      }
      REQUIRE(sut.qsize() == model.size());
    }
  }

  TEST_CASE("a priority queue holds move-only elements") {
    auto less = [](const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) {
      return *a < *b;
    };
    tandem::priority_queue<std::unique_ptr<int>, decltype(less)> sut{0, less};

    for (int v : {5, 2, 8}) sut.put(std::make_unique<int>(v));

    CHECK(*sut.get() == 2);
    CHECK(*sut.get() == 5);
    CHECK(*sut.get() == 8);
  }

  TEST_CASE("elements whose move may throw keep their order") {
    tandem::priority_queue<throwing_move> sut;
    std::mt19937 rng{3};
    std::vector<int> values;
    for (int i = 0; i < 200; ++i) values.push_back(static_cast<int>(rng() % 100));

    for (int v : values) sut.put(throwing_move{v});
    std::vector<int> out;
    while (auto v = sut.get(0s)) out.push_back(v->value);

    std::sort(values.begin(), values.end());
    CHECK(out == values);
  }

  TEST_CASE("a blocked getter receives the least of the items put meanwhile") {
    tandem::test::watchdog guard{10s};
    tandem::priority_queue<std::string> sut{3};

    sut.put("pear");
    sut.put("apple");
    sut.put("fig");
    CHECK(sut.full());
    CHECK_FALSE(sut.put("kiwi", 10ms));

    CHECK(sut.get() == "apple");
    CHECK(sut.put("banana", 10ms));
    CHECK(sut.get() == "banana");
    CHECK(sut.get() == "fig");
    CHECK(sut.get() == "pear");
  }

} // TEST_SUITE
