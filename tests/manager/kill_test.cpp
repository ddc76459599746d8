// Process death: writers killed with SIGKILL at random points of dict operations and of object
// creation. After every kill the dict holds what it held before or after an operation (never a
// mixture), nothing stays locked, every death is reported exactly once (owner_died_error from
// the first call after it, which did nothing), and the heap audit finds no leaked or doubly
// owned block.
#include "manager/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/manager.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

using namespace tandem::test::manager;
using tandem::mp::manager;

namespace {

using text_dict = tandem::mp::dict<std::string, std::string>;

const char* const group[] = {"g0", "g1", "g2", "g3"};

// Every key's value starts with the key and ':'; the group keys are set only together (update)
// and removed only together (clear), so they are all present with one value, or all absent.
// Returns an empty string when the dict satisfies this, else what is wrong. With `quiet` (no
// writer runs), size() must also agree with the snapshot.
std::string violation(const text_dict& d, bool quiet) {
  auto items = d.items();
  std::set<std::string> seen;
  std::vector<std::string> group_values;
  for (const auto& [k, v] : items) {
    if (!seen.insert(k).second) return "duplicate key " + k;
    bool in_group = k.size() == 2 && k[0] == 'g';
    if (in_group) {
      if (v.rfind("g:", 0) != 0) return "bad group value " + v;
      group_values.push_back(v);
    } else if (v.rfind(k + ":", 0) != 0) {
      return "value " + v.substr(0, 40) + " does not belong to key " + k;
    }
  }
  if (!group_values.empty() && group_values.size() != 4) return "a torn update";
  for (const auto& v : group_values)
    if (v != group_values.front()) return "a torn update (mixed generations)";
  if (quiet && d.size() != items.size()) return "size() disagrees with items()";
  return {};
}

// A counter in memory shared with forked children.
struct shared_counters {
  std::atomic<int> stop{0};
  std::atomic<int> told{0};
  std::atomic<int> bad{0};
  std::atomic<long> ops{0};
};

// The writer: set, pop, setdefault, update and clear in a tight loop, until killed.
[[noreturn]] void writer(text_dict d, unsigned seed, shared_counters* counters) {
  std::mt19937 rng{seed};
  std::uint64_t gen = seed;
  for (;;) {
    try {
      counters->ops.fetch_add(1, std::memory_order_relaxed);
      auto r = rng() % 100;
      std::string key = "k" + std::to_string(rng() % 64);
      if (r < 40) {
        d.set(key, key + ":" + std::string(rng() % 200, 'v'));
      } else if (r < 60) {
        (void)d.pop(key, "");
      } else if (r < 75) {
        std::string v = "g:" + std::to_string(++gen);
        d.update({{group[0], v}, {group[1], v}, {key, key + ":u"}, {group[2], v}, {group[3], v}});
      } else if (r < 85) {
        (void)d.setdefault(key, key + ":sd");
      } else if (r < 87) {
        d.clear();
      } else {
        (void)d.get(key, "");
      }
    } catch (const tandem::owner_died_error&) {
      counters->told.fetch_add(1);
    }
  }
}

shared_counters* map_counters() {
  void* p = ::mmap(nullptr, sizeof(shared_counters), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  return ::new (p) shared_counters{};
}

} // namespace

TEST_SUITE("manager kill") {

  TEST_CASE("a writer killed at random points 200 times never leaves the dict torn or locked") {
    tandem::test::watchdog guard{90s};
    scoped_name n{"kill"};
    auto m = manager::create(
        n.name, tandem::mp::manager_options{.initial_size = 64 << 10, .max_size = 64 << 20});
    auto d = m.dict<std::string, std::string>("d");
    auto* counters = map_counters();
    // A reader process that attached by name checks snapshots all along, and is often blocked on
    // the dict's mutex when a writer dies holding it.
    child_guard reader{fork_child([&] {
      auto rm = manager::attach(n.name);
      auto rd = rm.dict<std::string, std::string>("d");
      while (counters->stop.load() == 0) {
        try {
          if (!violation(rd, false).empty()) counters->bad.fetch_add(1);
        } catch (const tandem::owner_died_error&) {
          counters->told.fetch_add(1);
        }
      }
      return 0;
    })};
    std::mt19937 rng{20261125};
    int told_here = 0;
    int kills = 0;
    for (int round = 0; round < 200; ++round) {
      unsigned seed = static_cast<unsigned>(rng());
      bool by_name = round % 10 == 0;
      child_guard w{fork_child([&]() -> int {
        if (by_name) {
          auto wm = manager::attach(n.name);
          writer(wm.dict<std::string, std::string>("d"), seed, counters);
        }
        writer(d, seed, counters);
      })};
      // Once the writer runs, the sleep picks the random point where it dies.
      const long ops_before = counters->ops.load();
      CHECK(tandem::test::wait_until([&] { return counters->ops.load() > ops_before + 2; }));
      std::this_thread::sleep_for(std::chrono::microseconds{rng() % 2000});
      REQUIRE(::kill(w.pid(), SIGKILL) == 0);
      REQUIRE(w.wait() == 1000 + SIGKILL);
      ++kills;
      std::string probe = "p" + std::to_string(round);
      try {
        d.set(probe, probe + ":x");
      } catch (const tandem::owner_died_error&) {
        ++told_here;
        CHECK_FALSE(d.contains(probe)); // the call that was told did nothing
        d.set(probe, probe + ":x");
      }
      CHECK(d.get(probe) == probe + ":x");
      d.erase(probe);
      auto v = violation(d, true);
      REQUIRE_MESSAGE(v.empty(), "after kill " << kills << ": " << v);
    }
    counters->stop.store(1);
    CHECK(reader.wait() == 0);
    CHECK(counters->bad.load() == 0);
    const auto told = told_here + counters->told.load();
    MESSAGE(kills << " kills, " << told << " inside an operation, repaired, "
                  << counters->ops.load() << " writer operations");
    CHECK(told > 0);
    CHECK(d.repairs() == static_cast<std::uint64_t>(told)); // each death told exactly once
    CHECK(m.check_heap().empty());
    // Still fully usable.
    d.clear();
    d.update({{"a", "a:1"}, {"b", "b:2"}});
    CHECK(d.size() == 2);
    CHECK(m.check_heap().empty());
    ::munmap(counters, sizeof(shared_counters));
    m.unlink();
    CHECK(leftovers().empty());
  }

  TEST_CASE("a process killed while creating objects never leaves the directory torn") {
    tandem::test::watchdog guard{90s};
    scoped_name n{"killdir"};
    auto m = manager::create(
        n.name, tandem::mp::manager_options{.initial_size = 64 << 10, .max_size = 64 << 20});
    auto* counters = map_counters();
    std::mt19937 rng{42};
    int told = 0;
    // Every object holds at most the pair (1, its id).
    auto check_object = [&](const std::string& name, std::size_t prefix_size) {
      auto id = std::stoll(name.substr(prefix_size));
      for (;;) {
        try {
          auto obj = m.dict<std::int64_t, std::int64_t>(name);
          auto size = obj.size();
          REQUIRE(size <= 1);
          if (size == 1) {
            auto value = obj.get(1);
            REQUIRE(value == id);
          }
          return;
        } catch (const tandem::owner_died_error&) {
          ++told;
        }
      }
    };
    for (int round = 0; round < 100; ++round) {
      const std::string prefix = "obj" + std::to_string(round) + "_";
      child_guard w{fork_child([&] {
        for (int i = 0;; ++i) {
          int id = i % 400;
          counters->ops.fetch_add(1, std::memory_order_relaxed);
          try {
            m.dict<std::int64_t, std::int64_t>(prefix + std::to_string(id)).set(1, id);
          } catch (const tandem::owner_died_error&) {
          }
        }
        return 0;
      })};
      // Once the child runs, the sleep picks the random point where it dies.
      const long ops_before = counters->ops.load();
      CHECK(tandem::test::wait_until([&] { return counters->ops.load() > ops_before + 2; }));
      std::this_thread::sleep_for(std::chrono::microseconds{rng() % 1000});
      REQUIRE(::kill(w.pid(), SIGKILL) == 0);
      REQUIRE(w.wait() == 1000 + SIGKILL);
      std::vector<std::string> names;
      for (;;) {
        try {
          names = m.names();
          break;
        } catch (const tandem::owner_died_error&) {
          ++told;
        }
      }
      for (const auto& name : names)
        if (name.rfind(prefix, 0) == 0) check_object(name, prefix.size());
    }
    MESSAGE(told << " deaths inside an operation, repaired");
    CHECK(told > 0);
    auto names = m.names();
    CHECK(names.size() <= 100 * 400);
    for (const auto& name : names) check_object(name, name.find('_') + 1);
    ::munmap(counters, sizeof(shared_counters));
    CHECK(m.check_heap().empty());
    m.unlink();
    CHECK(leftovers().empty());
  }

} // TEST_SUITE
