// tandem::lifo_queue beyond the shared contract
// (tests/conformance/queue_bodies.hpp).
#include "support/watchdog.hpp"

#include <tandem/lifo_queue.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

TEST_SUITE("lifo_queue") {

  TEST_CASE("puts and gets interleave as on a stack") {
    tandem::lifo_queue<int> sut;

    sut.put(1);
    sut.put(2);
    CHECK(sut.get() == 2);
    sut.put(3);
    sut.put(4);
    CHECK(sut.get() == 4);
    CHECK(sut.get() == 3);
    CHECK(sut.get() == 1);
    CHECK_FALSE(sut.get(0s).has_value());
  }

  TEST_CASE("a lifo queue returns many items newest first") {
    tandem::lifo_queue<std::string> sut;
    for (int i = 0; i < 1000; ++i) sut.put(std::to_string(i));

    bool in_order = true;
    for (int i = 999; i >= 0; --i) in_order = in_order && sut.get() == std::to_string(i);

    CHECK(in_order);
    CHECK(sut.empty());
  }

  TEST_CASE("a lifo queue holds move-only items") {
    tandem::lifo_queue<std::unique_ptr<int>> sut{2};

    sut.put(std::make_unique<int>(1));
    sut.put(std::make_unique<int>(2));
    CHECK_THROWS_AS(sut.put_nowait(std::make_unique<int>(3)), tandem::full_error);

    CHECK(*sut.get() == 2);
    CHECK(*sut.get() == 1);
  }

  TEST_CASE("a bounded lifo queue hands the newest item to a blocked getter") {
    tandem::test::watchdog guard{10s};
    tandem::lifo_queue<int> sut{3};
    sut.put(1);
    sut.put(2);
    sut.put(3);

    CHECK_FALSE(sut.put(4, 10ms));
    CHECK(sut.get() == 3);
    CHECK(sut.put(4, 10ms));
    CHECK(sut.get() == 4);
    CHECK(sut.get() == 2);
  }

} // TEST_SUITE
