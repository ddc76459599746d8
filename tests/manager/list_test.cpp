// mp::list: Python's list behaviour (the Manager list cases of _test_multiprocessing and
// CPython's list tests that apply), use from several processes, and deterministic process death
// at every critical point of each operation.
#include "manager/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/manager.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <signal.h>

using namespace tandem::test::manager;
using tandem::mp::manager;

namespace {

using ints = std::vector<std::int64_t>;

struct fixture {
  scoped_name n{"list"};
  manager m = manager::create(n.name);
  ~fixture() {
    try {
      m.unlink();
    } catch (const tandem::segment_error&) {
    }
  }
};

} // namespace

TEST_SUITE("manager list") {

  TEST_CASE_FIXTURE(fixture, "the multiprocessing list case holds") {
    // _test_multiprocessing.test_list: a = list(range(10)); b = manager.list(a); b.extend(range(5))
    auto sut = m.list<std::int64_t>("b");
    sut.extend(ints{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(sut.to_vector() == ints{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    sut.extend(ints{0, 1, 2, 3, 4});
    CHECK(sut.to_vector() == ints{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4});
    CHECK(sut.get(-1) == 4);
    CHECK(sut.slice(2, 5) == ints{2, 3, 4});
    CHECK(sut.size() == 15);
  }

  TEST_CASE_FIXTURE(fixture, "append insert and pop follow Python indexes") {
    auto sut = m.list<std::int64_t>("l");
    sut.append(1);
    sut.append(2);
    sut.insert(0, 0);
    sut.insert(100, 9); // clamped: appends
    sut.insert(-1, 8);  // before the last
    CHECK(sut.to_vector() == ints{0, 1, 2, 8, 9});
    CHECK(sut.pop() == 9);
    CHECK(sut.pop(0) == 0);
    CHECK(sut.pop(-2) == 2);
    CHECK(sut.to_vector() == ints{1, 8});
    CHECK_THROWS_AS((void)sut.pop(5), tandem::value_error);
    CHECK_THROWS_AS((void)sut.get(2), tandem::value_error);
    CHECK_THROWS_AS((void)sut.get(-3), tandem::value_error);
    sut.clear();
    CHECK_THROWS_AS((void)sut.pop(), tandem::value_error);
    CHECK(sut.empty());
  }

  TEST_CASE_FIXTURE(fixture, "set replaces and index count remove compare values") {
    auto sut = m.list<std::string>("l");
    sut.extend(std::vector<std::string>{"a", "b", "a", "c"});
    sut.set(-1, "d");
    CHECK(sut.get(3) == "d");
    CHECK_THROWS_AS(sut.set(4, "x"), tandem::value_error);
    CHECK(sut.index("a") == 0);
    CHECK(sut.index("a", 1) == 2);
    CHECK_THROWS_AS((void)sut.index("a", 3), tandem::value_error);
    CHECK(sut.count("a") == 2);
    CHECK(sut.contains("d"));
    sut.remove("a");
    CHECK(sut.to_vector() == std::vector<std::string>{"b", "a", "d"});
    CHECK_THROWS_AS(sut.remove("z"), tandem::value_error);
  }

  TEST_CASE_FIXTURE(fixture, "slices follow Python including negative steps and bounds") {
    auto sut = m.list<std::int64_t>("l");
    sut.extend(ints{0, 1, 2, 3, 4, 5});
    CHECK(sut.slice(-2, 100) == ints{4, 5});
    CHECK(sut.slice(0, 6, 2) == ints{0, 2, 4});
    CHECK(sut.slice(5, -100, -1) == ints{5, 4, 3, 2, 1, 0});
    CHECK(sut.slice(-1, 0, -2) == ints{5, 3, 1});
    CHECK(sut.slice(4, 2) == ints{});
    CHECK_THROWS_AS((void)sut.slice(0, 1, 0), tandem::value_error);
  }

  TEST_CASE_FIXTURE(fixture, "sort is stable and accepts a comparison") {
    auto sut = m.list<std::string>("l");
    sut.extend(std::vector<std::string>{"pear", "fig", "apple", "kiwi", "plum"});
    sut.sort([](const std::string& a, const std::string& b) { return a.size() < b.size(); });
    CHECK(sut.to_vector() == std::vector<std::string>{"fig", "pear", "kiwi", "plum", "apple"});
    sut.sort();
    CHECK(sut.to_vector() == std::vector<std::string>{"apple", "fig", "kiwi", "pear", "plum"});
    // A comparison that throws leaves the list as it was.
    CHECK_THROWS_AS(sut.sort([](const std::string&, const std::string&) -> bool {
      throw tandem::value_error("no order");
    }),
                    tandem::value_error);
    CHECK(sut.to_vector() == std::vector<std::string>{"apple", "fig", "kiwi", "pear", "plum"});
    CHECK(m.check_heap().empty());
  }

  TEST_CASE_FIXTURE(fixture, "a list and a dict of one name are told apart") {
    (void)m.list<std::int64_t>("x");
    CHECK_THROWS_AS(((void)m.dict<std::int64_t, std::int64_t>("x")), tandem::value_error);
    CHECK_THROWS_AS(((void)m.list<std::string>("x")), tandem::value_error);
  }

  TEST_CASE_FIXTURE(fixture, "appenders in four processes lose no element") {
    tandem::test::watchdog guard{30s};
    auto sut = m.list<std::int64_t>("l");
    std::vector<pid_t> children;
    for (int p = 0; p < 4; ++p) {
      children.push_back(fork_child([&, p] {
        auto mm = manager::attach(n.name);
        auto l = mm.list<std::int64_t>("l");
        for (std::int64_t i = 0; i < 3000; ++i) l.append(p * 10000 + i);
        return 0;
      }));
    }
    for (pid_t c : children) CHECK(wait_child(c) == 0);
    auto all = sut.to_vector();
    CHECK(all.size() == 12000);
    sut.sort();
    auto sorted = sut.to_vector();
    for (int p = 0; p < 4; ++p)
      for (std::int64_t i = 0; i < 3000; i += 499)
        CHECK(sorted[static_cast<std::size_t>(p * 3000 + i)] == p * 10000 + i);
    CHECK(m.check_heap().empty());
  }

  TEST_CASE_FIXTURE(
      fixture,
      "a writer killed at every critical point of each list operation leaves before or after") {
    tandem::test::watchdog guard{60s};
    struct scenario {
      const char* name;
      int baseline;
      std::function<void(tandem::mp::list<std::string>&)> op;
    };
    const std::vector<scenario> scenarios{
        {"append that fits", 3, [](auto& l) { l.append("new"); }},
        {"append that grows", 16, [](auto& l) { l.append("new"); }},
        {"extend", 3,
         [](auto& l) {
           l.extend(std::vector<std::string>{"x", "y", "z"});
         }},
        {"insert", 5, [](auto& l) { l.insert(1, "mid"); }},
        {"set", 5, [](auto& l) { l.set(2, "replaced with a longer value"); }},
        {"pop last", 5, [](auto& l) { (void)l.pop(); }},
        {"pop first", 5, [](auto& l) { (void)l.pop(0); }},
        {"remove", 5, [](auto& l) { l.remove("e3"); }},
        {"sort", 6, [](auto& l) { l.sort(std::greater<std::string>{}); }},
        {"clear", 6, [](auto& l) { l.clear(); }},
    };
    int object = 0;
    auto fill = [](tandem::mp::list<std::string>& l, int k) {
      for (int i = 0; i < k; ++i) l.append("e" + std::to_string(i));
    };
    for (const auto& sc : scenarios) {
      const std::string scenario_name{sc.name};
      CAPTURE(scenario_name);
      auto ref = m.list<std::string>("ref" + std::to_string(object++));
      fill(ref, sc.baseline);
      const auto before = ref.to_vector();
      sc.op(ref);
      const auto after = ref.to_vector();
      int points = 0;
      for (std::uint64_t at = 1;; ++at) {
        CAPTURE(at);
        auto l = m.list<std::string>("l" + std::to_string(object++));
        fill(l, sc.baseline);
        child_guard child{fork_child([&] {
          tandem::mp::detail::manager_fault_after(at);
          sc.op(l);
          tandem::mp::detail::manager_fault_after(0);
          return 0;
        })};
        int rc = child.wait();
        if (rc == 0) break;
        REQUIRE(rc == 1000 + SIGKILL);
        ++points;
        std::vector<std::string> now;
        bool told = false;
        try {
          now = l.to_vector();
        } catch (const tandem::owner_died_error&) {
          told = true;
          now = l.to_vector();
        }
        CHECK(told);
        CHECK((now == before || now == after));
        REQUIRE(m.check_heap().empty());
        l.append("later");
        CHECK(l.get(-1) == "later");
      }
      MESSAGE(scenario_name << ": " << points << " critical points");
      CHECK(points > 0);
      if (scenario_name != "insert" && scenario_name != "clear" && scenario_name != "extend")
        continue;
      // Then processes die repairing: each repairer one point later than the one before.
      for (std::uint64_t at = 1;; ++at) {
        CAPTURE(at);
        auto l = m.list<std::string>("l" + std::to_string(object++));
        fill(l, sc.baseline);
        child_guard writer{fork_child([&] {
          tandem::mp::detail::manager_fault_after(at);
          sc.op(l);
          return 0;
        })};
        if (writer.wait() == 0) break;
        for (std::uint64_t rp = 1;; ++rp) {
          child_guard repairer{fork_child([&] {
            tandem::mp::detail::manager_fault_after(rp);
            try {
              (void)l.size();
            } catch (const tandem::owner_died_error&) {
            }
            return 0;
          })};
          int rc = repairer.wait();
          REQUIRE(m.check_heap().empty());
          if (rc == 0) break;
          REQUIRE(rc == 1000 + SIGKILL);
        }
        auto now = l.to_vector();
        CHECK((now == before || now == after));
      }
    }
    CHECK(m.check_heap().empty());
  }

} // TEST_SUITE
