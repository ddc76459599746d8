// mp::shareable_list<T>: CPython's ShareableList cases that apply to a typed list.
#include "shm/shm_support.hpp"
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/shareable_list.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tandem::mp::shareable_list;
namespace shm = tandem::test::shm;

namespace {

struct alignas(256) wide {
  std::int64_t v;
};

struct point {
  std::int32_t x;
  std::int32_t y;
};

int errno_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const tandem::segment_error& e) {
    return e.errno_value();
  }
  return 0;
}

} // namespace

TEST_SUITE("shareable_list") {

  TEST_CASE("a list of integers indexes counts and searches as Python does") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<std::int64_t>::create({1, 2, 3, 100, 42, 42});
    CHECK(sut.size() == 6);
    CHECK(sut[0] == 1);
    CHECK(sut[-1] == 42);
    CHECK(sut[-6] == 1);
    CHECK_THROWS_AS((void)sut.get(6), tandem::index_error);
    CHECK_THROWS_AS((void)sut.get(-7), tandem::index_error);
    CHECK_THROWS_AS(sut[6] = 2, tandem::index_error);
    CHECK(sut.count(42) == 2);
    CHECK(sut.count(7) == 0);
    CHECK(sut.index(100) == 3);
    CHECK_THROWS_AS((void)sut.index(7), tandem::value_error);
    std::vector<std::int64_t> seen(sut.begin(), sut.end());
    CHECK(seen == std::vector<std::int64_t>{1, 2, 3, 100, 42, 42});
    sut[3] = 42;
    CHECK(sut[3] == 42);
    CHECK(sut.count(42) == 3);
    sut.set(-1, 880);
    CHECK(sut.get(5) == 880);
    CHECK(sut.capacity() == 0);
    sut.shm().unlink();
  }

  TEST_CASE("a string list refuses a value that does not fit and keeps the old one") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<std::string>::create({"howdy", "HoWdY"});
    CHECK(sut.capacity() == 8);
    CHECK(sut[0] == "howdy");
    sut[0] = "encod\xc3\xa9s"; // 8 bytes of UTF-8: fits
    CHECK(sut[0] == "encod\xc3\xa9s");
    try {
      sut[0] = "encod\xc3\xa9\x65s"; // 9 bytes
      FAIL("no exception");
    } catch (const tandem::value_error& e) {
      CHECK(std::string{e.what()}.find("exceeds available storage") != std::string::npos);
    }
    CHECK(sut[0] == "encod\xc3\xa9s");
    CHECK_THROWS_AS(sut[1] = "123456789", tandem::value_error);
    CHECK(sut[1] == "HoWdY");
    sut[1] = "";
    CHECK(sut.get(1).empty());
    sut[1] = std::string{"a\0b", 3};
    CHECK(sut.get(1) == std::string{"a\0b", 3});
    CHECK(sut.count("HoWdY") == 0);
    CHECK(sut.count("encod\xc3\xa9s") == 1);
    CHECK(sut.index(std::string{"a\0b", 3}) == 1);
    sut.shm().unlink();
  }

  TEST_CASE("a string list takes an explicit capacity and refuses initial values beyond it") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<std::string>::create({"a", "b"}, {.capacity = 4});
    CHECK(sut.capacity() == 4);
    sut[0] = "abcd";
    CHECK_THROWS_AS(sut[0] = "abcde", tandem::value_error);
    CHECK(sut[0] == "abcd");
    sut.shm().unlink();

    shm::scoped_name n{"toolong"};
    CHECK_THROWS_AS(
        (void)shareable_list<std::string>::create({"abcdef"}, {.name = n.name, .capacity = 4}),
        tandem::value_error);
    CHECK_FALSE(shm::exists(n.name));
    CHECK_THROWS_AS((void)shareable_list<int>::create({1}, {.capacity = 4}), tandem::value_error);
  }

  TEST_CASE("an empty list has no items and finds nothing") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<std::string>::create(std::span<const std::string>{});
    CHECK(sut.size() == 0);
    CHECK(sut.count("any") == 0);
    CHECK_THROWS_AS((void)sut.index(""), tandem::value_error);
    CHECK(sut.begin() == sut.end());
    auto same = shareable_list<std::string>::attach(sut.shm().name());
    CHECK(same.size() == 0);
    sut.shm().unlink();
  }

  TEST_CASE("a named copy of a list is independent of the original") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<double>::create({-273.154, 100.0, 42.0});
    shm::scoped_name n{"copy"};
    std::vector<double> values(sut.begin(), sut.end());
    auto copy = shareable_list<double>::create(values, {.name = n.name});
    CHECK(copy.shm().name() == n.name);
    CHECK(std::equal(copy.begin(), copy.end(), sut.begin(), sut.end()));
    copy[-1] = 77.0;
    CHECK(copy[-1] == 77.0);
    CHECK(sut[-1] == 42.0);
    copy.shm().unlink();
    sut.shm().unlink();
  }

  TEST_CASE("a list attached by name sees the writes of every process") {
    tandem::test::watchdog guard{20s};
    auto sut = shareable_list<std::string>::create({"one", "two", "three"}, {.capacity = 16});
    std::string name = sut.shm().name();
    auto tethered = shareable_list<std::string>::attach(name);
    CHECK(tethered.capacity() == 16);
    tethered[-1] = "880";
    CHECK(sut[-1] == "880");
    pid_t child = shm::fork_child([&] {
      auto there = shareable_list<std::string>::attach(name);
      if (there[0] != "one") return 1;
      there[0] = "changed";
      return 0;
    });
    CHECK(shm::wait_child(child) == 0);
    CHECK(sut[0] == "changed");
    CHECK(tethered[0] == "changed");
    sut.shm().unlink();
  }

  TEST_CASE("attach refuses a segment that holds another type or no list") {
    tandem::test::watchdog guard{10s};
    auto ints = shareable_list<std::int32_t>::create({1, 2, 3});
    const std::string& name = ints.shm().name();
    CHECK(errno_of([&] { (void)shareable_list<double>::attach(name); }) == EINVAL);
    CHECK(errno_of([&] { (void)shareable_list<std::string>::attach(name); }) == EINVAL);
    CHECK(shareable_list<std::uint32_t>::attach(name).size() == 3); // same size: allowed
    auto plain = tandem::mp::shared_memory::create(256);
    CHECK(errno_of([&] { (void)shareable_list<std::int32_t>::attach(plain.name()); }) == EINVAL);
    auto tiny = tandem::mp::shared_memory::create(8);
    CHECK(errno_of([&] { (void)shareable_list<std::int32_t>::attach(tiny.name()); }) == EINVAL);
    plain.unlink();
    tiny.unlink();
    ints.shm().unlink();
  }

  TEST_CASE("span gives the items in place and children fill it without copies") {
    tandem::test::watchdog guard{30s};
    constexpr std::size_t n = 1 << 20;
    std::vector<std::uint64_t> zeros(n, 0);
    auto sut = shareable_list<std::uint64_t>::create(zeros);
    std::span<std::uint64_t> all = sut.span();
    REQUIRE(all.size() == n);
    constexpr int workers = 4;
    std::vector<pid_t> children;
    for (int w = 0; w < workers; ++w)
      children.push_back(shm::fork_child([&, w] {
        auto list = shareable_list<std::uint64_t>::attach(sut.shm().name());
        std::span<std::uint64_t> mine = list.span();
        for (std::size_t i = static_cast<std::size_t>(w); i < n; i += workers) mine[i] = i * i;
        return 0;
      }));
    for (pid_t c : children) CHECK(shm::wait_child(c, 20s) == 0);
    bool right = true;
    for (std::size_t i = 0; i < n; ++i) right = right && all[i] == i * i;
    CHECK(right);
    CHECK(sut[7] == 49);
    sut.shm().unlink();
  }

  TEST_CASE("structs without equality are compared by their bytes") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<point>::create({{1, 2}, {3, 4}, {1, 2}});
    CHECK(sut.count(point{1, 2}) == 2);
    CHECK(sut.index(point{3, 4}) == 1);
    sut[1] = point{5, 6};
    point p = sut[1];
    CHECK(p.x == 5);
    CHECK(p.y == 6);
    sut.shm().unlink();
  }

  TEST_CASE("over-aligned items keep their alignment and items copy between slots") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<wide>::create({wide{1}, wide{2}});
    CHECK(reinterpret_cast<std::uintptr_t>(sut.span().data()) % alignof(wide) == 0);
    sut[0] = sut[1];
    CHECK(sut.get(0).v == 2);
    auto same = shareable_list<wide>::attach(sut.shm().name());
    CHECK(same.get(-2).v == 2);
    sut.shm().unlink();
  }

  TEST_CASE("a closed list refuses access with usage_error") {
    tandem::test::watchdog guard{10s};
    auto sut = shareable_list<int>::create({1, 2});
    sut.shm().close();
    CHECK_THROWS_AS((void)sut.get(0), tandem::usage_error);
    CHECK_THROWS_AS(sut.set(0, 1), tandem::usage_error);
    CHECK_THROWS_AS((void)sut.span(), tandem::usage_error);
    sut.shm().unlink();
  }

} // TEST_SUITE
