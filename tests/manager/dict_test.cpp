// mp::dict: Python's dict behaviour (CPython's test_dict and the Manager dict cases of
// _test_multiprocessing that apply), the stored types, and use from several processes.
#include "manager/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/manager.hpp>

#include <caf/meta/type_name.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace tandem::test::manager;
using tandem::mp::manager;

namespace {

struct point {
  std::int32_t x;
  std::int32_t y;
  double weight;
  friend bool operator==(const point&, const point&) = default;
};

// Not trivially copyable: stored serialized.
struct job {
  std::string name;
  std::vector<std::int64_t> inputs;
  friend bool operator==(const job&, const job&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job& x) {
  return f(caf::meta::type_name("job"), x.name, x.inputs);
}

// A fresh manager per case, unlinked at the end.
struct fixture {
  scoped_name n{"dict"};
  manager m = manager::create(n.name);
  ~fixture() {
    try {
      m.unlink();
    } catch (const tandem::segment_error&) {
    }
  }
};

} // namespace

TEST_SUITE("manager dict") {

  TEST_CASE_FIXTURE(fixture, "missing keys are key_error and bad list indices are index_error") {
    auto d = m.dict<std::string, std::int64_t>("errors");
    auto l = m.list<std::int64_t>("errors-list");
    d.set("present", 1);
    CHECK_THROWS_AS(d.get("absent"), tandem::key_error);
    CHECK_THROWS_AS(d.erase("absent"), tandem::key_error);
    CHECK_THROWS_AS(d.pop("absent"), tandem::key_error);
    d.clear();
    CHECK_THROWS_AS(d.popitem(), tandem::key_error);
    CHECK_THROWS_AS(l.get(0), tandem::index_error);
    CHECK_THROWS_AS(l.pop(), tandem::index_error);
    l.append(5);
    CHECK_THROWS_AS(l.set(3, 1), tandem::index_error);
    CHECK_THROWS_AS(l.index(7), tandem::value_error); // Python's ValueError, not IndexError
    // Both are value_errors, so code that catches value_error still does.
    CHECK_THROWS_AS(d.get("absent"), tandem::value_error);
    CHECK_THROWS_AS(l.get(9), tandem::value_error);
  }

  TEST_CASE_FIXTURE(fixture, "the multiprocessing dict case holds") {
    // _test_multiprocessing.test_dict: d[i] = chr(i) for i in range(65, 70).
    auto sut = m.dict<std::int64_t, std::string>("d");
    std::vector<std::pair<std::int64_t, std::string>> expected;
    for (std::int64_t i = 65; i < 70; ++i) {
      sut.set(i, std::string(1, static_cast<char>(i)));
      expected.emplace_back(i, std::string(1, static_cast<char>(i)));
    }
    CHECK(sut.items() == expected);
    CHECK(sut.keys() == std::vector<std::int64_t>{65, 66, 67, 68, 69});
    CHECK(sut.values() == std::vector<std::string>{"A", "B", "C", "D", "E"});
    CHECK(sut.size() == 5);
  }

  TEST_CASE_FIXTURE(fixture,
                    "get of a missing key throws value_error and get with a default does not") {
    auto sut = m.dict<std::string, std::int64_t>("scores");
    CHECK_THROWS_AS((void)sut.get("nobody"), tandem::value_error);
    try {
      (void)sut.get("nobody");
    } catch (const tandem::value_error& e) {
      CHECK(std::string{e.what()}.find("'nobody'") != std::string::npos);
    }
    CHECK(sut.get("nobody", 7) == 7);
    CHECK_FALSE(sut.find("nobody").has_value());
    CHECK_FALSE(sut.contains("nobody"));
    CHECK(sut.empty());
  }

  TEST_CASE_FIXTURE(fixture, "set keeps insertion order and a replaced value keeps its place") {
    auto sut = m.dict<std::string, std::int64_t>("d");
    sut.set("a", 1);
    sut.set("b", 2);
    sut.set("c", 3);
    sut.set("a", 10);
    CHECK(sut.keys() == std::vector<std::string>{"a", "b", "c"});
    CHECK(sut.get("a") == 10);
    sut.erase("a");
    sut.set("a", 11); // erased and set again: last
    CHECK(sut.keys() == std::vector<std::string>{"b", "c", "a"});
  }

  TEST_CASE_FIXTURE(fixture, "erase of a missing key throws value_error and changes nothing") {
    auto sut = m.dict<std::string, std::int64_t>("d");
    sut.set("a", 1);
    CHECK_THROWS_AS(sut.erase("b"), tandem::value_error);
    sut.erase("a");
    CHECK_THROWS_AS(sut.erase("a"), tandem::value_error);
    CHECK(sut.size() == 0);
  }

  TEST_CASE_FIXTURE(fixture, "pop returns and removes and pop with a default never throws") {
    auto sut = m.dict<std::string, std::int64_t>("d");
    sut.set("a", 1);
    CHECK(sut.pop("a") == 1);
    CHECK_FALSE(sut.contains("a"));
    CHECK_THROWS_AS((void)sut.pop("a"), tandem::value_error);
    CHECK(sut.pop("a", -1) == -1);
    sut.set("b", 2);
    CHECK(sut.pop("b", -1) == 2);
    CHECK(sut.empty());
  }

  TEST_CASE_FIXTURE(fixture, "popitem returns the last inserted item and throws when empty") {
    auto sut = m.dict<std::string, std::int64_t>("d");
    sut.set("a", 1);
    sut.set("b", 2);
    sut.set("a", 3); // keeps its place: "b" is still the last inserted
    CHECK(sut.popitem() == std::pair<std::string, std::int64_t>{"b", 2});
    CHECK(sut.popitem() == std::pair<std::string, std::int64_t>{"a", 3});
    CHECK_THROWS_AS((void)sut.popitem(), tandem::value_error);
  }

  TEST_CASE_FIXTURE(fixture, "setdefault inserts only a missing key and returns the value it has") {
    auto sut = m.dict<std::string, std::int64_t>("d");
    CHECK(sut.setdefault("a", 5) == 5);
    CHECK(sut.setdefault("a", 6) == 5);
    CHECK(sut.setdefault("z") == 0);
    CHECK(sut.keys() == std::vector<std::string>{"a", "z"});
  }

  TEST_CASE_FIXTURE(fixture, "update sets every pair in order and a later duplicate wins") {
    auto sut = m.dict<std::string, std::int64_t>("d");
    sut.set("x", 0);
    sut.update({{"a", 1}, {"b", 2}, {"a", 3}, {"x", 9}});
    CHECK(sut.items() ==
          std::vector<std::pair<std::string, std::int64_t>>{{"x", 9}, {"a", 3}, {"b", 2}});
    std::vector<std::pair<std::string, std::int64_t>> more{{"c", 4}};
    sut.update(more);
    sut.update(std::vector<std::pair<std::string, std::int64_t>>{});
    CHECK(sut.size() == 4);
    CHECK(m.check_heap().empty());
  }

  TEST_CASE_FIXTURE(fixture, "clear empties the dict and it stays usable") {
    auto sut = m.dict<std::int64_t, std::int64_t>("d");
    for (std::int64_t i = 0; i < 1000; ++i) sut.set(i, i * i);
    sut.clear();
    CHECK(sut.size() == 0);
    CHECK(sut.keys().empty());
    CHECK_FALSE(sut.contains(5));
    sut.clear(); // clearing an empty dict is fine
    sut.set(5, 25);
    CHECK(sut.items() == std::vector<std::pair<std::int64_t, std::int64_t>>{{5, 25}});
    CHECK(m.check_heap().empty());
  }

  TEST_CASE_FIXTURE(fixture, "many keys survive rehashing and erasing half keeps the rest") {
    auto sut = m.dict<std::int64_t, std::int64_t>("d");
    for (std::int64_t i = 0; i < 20000; ++i) sut.set(i, -i);
    for (std::int64_t i = 0; i < 20000; i += 2) sut.erase(i);
    CHECK(sut.size() == 10000);
    for (std::int64_t i = 0; i < 20000; ++i) {
      if (i % 2 == 0)
        REQUIRE_FALSE(sut.contains(i));
      else
        REQUIRE(sut.get(i) == -i);
    }
    auto keys = sut.keys();
    CHECK(std::is_sorted(keys.begin(), keys.end())); // insertion order
    CHECK(m.check_heap().empty());
  }

  TEST_CASE_FIXTURE(fixture, "strings of any length are keys and values including the empty one") {
    auto sut = m.dict<std::string, std::string>("d");
    std::string big(1 << 20, 'b');
    sut.set("", "empty key");
    sut.set("big", big);
    sut.set("empty value", "");
    sut.set(std::string{"nul\0inside", 10}, "x");
    CHECK(sut.get("") == "empty key");
    CHECK(sut.get("big") == big);
    CHECK(sut.get("empty value").empty());
    CHECK(sut.get(std::string{"nul\0inside", 10}) == "x");
    CHECK_FALSE(sut.contains("nul"));
  }

  TEST_CASE_FIXTURE(fixture, "trivially copyable structs round trip as values") {
    auto sut = m.dict<std::int32_t, point>("d");
    sut.set(1, point{1, 2, 0.5});
    CHECK(sut.get(1) == point{1, 2, 0.5});
  }

  TEST_CASE_FIXTURE(fixture, "floating point keys treat minus zero as zero") {
    auto sut = m.dict<double, std::int64_t>("d");
    sut.set(0.0, 1);
    sut.set(-0.0, 2);
    CHECK(sut.size() == 1);
    CHECK(sut.get(0.0) == 2);
    sut.set(1.5, 3);
    CHECK(sut.get(1.5) == 3);
  }

  TEST_CASE_FIXTURE(fixture, "types with an inspect overload are stored serialized") {
    auto sut = m.dict<std::vector<std::string>, job>("jobs");
    job j{"build", {1, 2, 3}};
    sut.set({"a", "b"}, j);
    CHECK(sut.get({"a", "b"}) == j);
    CHECK_FALSE(sut.contains({"a"}));
    CHECK(sut.items().front().first == std::vector<std::string>{"a", "b"});
  }

  TEST_CASE_FIXTURE(fixture,
                    "two handles of one name see each other and outlive the manager handle") {
    auto a = m.dict<std::string, std::int64_t>("d");
    auto b = m.dict<std::string, std::int64_t>("d");
    a.set("k", 1);
    CHECK(b.get("k") == 1);
    CHECK(a.name() == "d");
    manager other = manager::attach(n.name);
    auto c = other.dict<std::string, std::int64_t>("d");
    other = manager{}; // the handle goes, the mapping stays for c
    c.set("k", 2);
    CHECK(a.get("k") == 2);
  }

  TEST_CASE_FIXTURE(fixture, "writers in four processes lose no item") {
    tandem::test::watchdog guard{30s};
    auto sut = m.dict<std::string, std::int64_t>("d");
    std::vector<pid_t> children;
    for (int p = 0; p < 4; ++p) {
      children.push_back(fork_child([&, p] {
        auto mm = manager::attach(n.name);
        auto d = mm.dict<std::string, std::int64_t>("d");
        for (std::int64_t i = 0; i < 2000; ++i)
          d.set(std::to_string(p) + ":" + std::to_string(i), i);
        for (std::int64_t i = 0; i < 2000; i += 3)
          d.erase(std::to_string(p) + ":" + std::to_string(i));
        d.update({{"shared", p}, {std::to_string(p) + ":done", 1}});
        return 0;
      }));
    }
    for (pid_t c : children) CHECK(wait_child(c) == 0);
    CHECK(sut.size() == 4 * (2000 - 667) + 4 + 1);
    for (int p = 0; p < 4; ++p) {
      CHECK(sut.get(std::to_string(p) + ":1") == 1);
      CHECK_FALSE(sut.contains(std::to_string(p) + ":3"));
      CHECK(sut.get(std::to_string(p) + ":done") == 1);
    }
    CHECK(m.check_heap().empty());
  }

} // TEST_SUITE
