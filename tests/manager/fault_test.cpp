// Deterministic process death: a forked child performs one dict operation and kills itself
// (SIGKILL) at its n-th critical point (a store of a change), for every n until the operation
// completes; then children die repairing, at every point of the repair. After each death the
// dict holds exactly what it held before or after the operation, the heap audit is clean, and
// the dict stays usable.
#include "manager/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/manager.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <signal.h>

using namespace tandem::test::manager;
using tandem::mp::manager;

namespace {

using text_dict = tandem::mp::dict<std::string, std::string>;
using snapshot = std::vector<std::pair<std::string, std::string>>;

struct scenario {
  const char* name;
  int baseline; // keys k0.. set before the operation
  std::function<void(text_dict&)> op;
};

void fill(text_dict& d, int n) {
  for (int i = 0; i < n; ++i) d.set("k" + std::to_string(i), "k" + std::to_string(i) + ":base");
}

// The first call after a death may be told about it (and did nothing): call again.
snapshot items_after_repair(text_dict& d) {
  for (int i = 0;; ++i) {
    try {
      return d.items();
    } catch (const tandem::owner_died_error&) {
      REQUIRE(i == 0); // told once, then repaired
    }
  }
}

const std::vector<scenario>& scenarios() {
  static const std::vector<scenario> all{
      {"insert", 5, [](text_dict& d) { d.set("new", "new:1"); }},
      {"insert with rehash", 11, [](text_dict& d) { d.set("new", "new:1"); }},
      {"replace", 5, [](text_dict& d) { d.set("k2", "k2:replaced with a longer value"); }},
      {"erase", 5, [](text_dict& d) { d.erase("k3"); }},
      {"pop", 5, [](text_dict& d) { (void)d.pop("k0"); }},
      {"popitem", 5, [](text_dict& d) { (void)d.popitem(); }},
      {"setdefault", 5, [](text_dict& d) { (void)d.setdefault("new", "new:sd"); }},
      {"update", 5,
       [](text_dict& d) {
         d.update({{"k1", "k1:u"}, {"new", "new:u"}, {"k4", "k4:u"}});
       }},
      {"update with rehash", 11,
       [](text_dict& d) {
         d.update({{"a", "a:u"}, {"k1", "k1:u"}, {"b", "b:u"}, {"c", "c:u"}});
       }},
      {"clear", 8, [](text_dict& d) { d.clear(); }},
  };
  return all;
}

} // namespace

TEST_SUITE("manager faults") {

  TEST_CASE("a writer killed at every critical point of each operation leaves before or after") {
    tandem::test::watchdog guard{60s};
    scoped_name n{"fault"};
    auto m = manager::create(n.name, tandem::mp::manager_options{.max_size = 256 << 20});
    int object = 0;
    for (const auto& sc : scenarios()) {
      const std::string scenario_name{sc.name};
      CAPTURE(scenario_name);
      auto ref = m.dict<std::string, std::string>("ref" + std::to_string(object++));
      fill(ref, sc.baseline);
      const snapshot before = ref.items();
      sc.op(ref);
      const snapshot after = ref.items();
      int points = 0;
      for (std::uint64_t at = 1;; ++at) {
        CAPTURE(at);
        auto d = m.dict<std::string, std::string>("d" + std::to_string(object++));
        fill(d, sc.baseline);
        child_guard child{fork_child([&] {
          tandem::mp::detail::manager_fault_after(at);
          sc.op(d);
          tandem::mp::detail::manager_fault_after(0);
          return 0;
        })};
        int rc = child.wait();
        if (rc == 0) break; // fewer than `at` points: the operation completed
        REQUIRE(rc == 1000 + SIGKILL);
        ++points;
        auto now = items_after_repair(d);
        CHECK((now == before || now == after));
        REQUIRE(m.check_heap().empty());
        d.set("later", "later:1"); // usable
        CHECK(d.get("later") == "later:1");
      }
      MESSAGE(scenario_name << ": " << points << " critical points");
      CHECK(points > 0);
    }
    REQUIRE(m.check_heap().empty());
    m.unlink();
  }

  TEST_CASE("processes killed again and again while repairing still end with before or after") {
    tandem::test::watchdog guard{90s};
    scoped_name n{"refault"};
    auto m = manager::create(n.name, tandem::mp::manager_options{.max_size = 256 << 20});
    int object = 0;
    for (const auto& sc : scenarios()) {
      if (std::string{sc.name} != "update with rehash" && std::string{sc.name} != "clear" &&
          std::string{sc.name} != "replace")
        continue;
      const std::string scenario_name{sc.name};
      CAPTURE(scenario_name);
      auto ref = m.dict<std::string, std::string>("ref" + std::to_string(object++));
      fill(ref, sc.baseline);
      const snapshot before = ref.items();
      sc.op(ref);
      const snapshot after = ref.items();
      int repair_deaths = 0;
      for (std::uint64_t at = 1;; ++at) {
        CAPTURE(at);
        auto d = m.dict<std::string, std::string>("d" + std::to_string(object++));
        fill(d, sc.baseline);
        child_guard writer{fork_child([&] {
          tandem::mp::detail::manager_fault_after(at);
          sc.op(d);
          return 0;
        })};
        if (writer.wait() == 0) break;
        // Each repairer dies one point later than the one before; repairs are idempotent, so
        // the last one finishes the work that all of them began.
        for (std::uint64_t rp = 1;; ++rp) {
          child_guard repairer{fork_child([&] {
            tandem::mp::detail::manager_fault_after(rp);
            try {
              (void)d.size();
            } catch (const tandem::owner_died_error&) {
            }
            return 0;
          })};
          int rc = repairer.wait();
          REQUIRE(m.check_heap().empty());
          if (rc == 0) break;
          REQUIRE(rc == 1000 + SIGKILL);
          ++repair_deaths;
        }
        auto now = items_after_repair(d);
        CHECK((now == before || now == after));
        REQUIRE(m.check_heap().empty());
      }
      MESSAGE(scenario_name << ": " << repair_deaths << " deaths while repairing");
    }
    CHECK(m.check_heap().empty());
    m.unlink();
  }

} // TEST_SUITE
