// mp::value, mp::raw_value, mp::array, mp::raw_array: Python's Value, RawValue, Array and
// RawArray across processes. CPython's test_value/test_array cases that apply, exact counts under
// get_lock() from many processes, the lock-free fast paths, handles passed to children of every
// start method, and a process killed while holding a value's lock.
#include "mp_sync/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/array.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/mp/value.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <mutex>
#include <vector>

namespace mp = tandem::mp;
using namespace tandem::test::mp_sync;

namespace {

constexpr mp::start_method methods[] = {mp::start_method::forkserver, mp::start_method::spawn,
                                        mp::start_method::fork};

mp::process_options with(mp::start_method m) {
  return {.name = {}, .daemon = false, .method = m, .allow_threads = true};
}

struct point {
  double x;
  double y;
  std::int32_t tag;
};

void add_under_lock(mp::value<std::int64_t> v, int n) {
  for (int i = 0; i < n; ++i) {
    std::scoped_lock guard{v.get_lock()};
    v.get_obj() += 1;
  }
}

void fill_array(mp::array<double> a, double x) {
  std::scoped_lock guard{a.get_lock()};
  for (auto& item : a.span()) item = x;
}

void double_raw(mp::raw_array<std::int32_t> a, mp::raw_value<std::int32_t> flag) {
  for (std::size_t i = 0; i < a.size(); ++i)
    a.set(static_cast<std::ptrdiff_t>(i), a.get(static_cast<std::ptrdiff_t>(i)) * 2);
  flag.set(1);
}

} // namespace

TEST_SUITE("mp value and array") {
  TEST_CASE("a value starts at zero or at its initial value and get and set round trip") {
    auto zero = mp::value<std::int64_t>::create();
    auto pi = mp::value<double>::create(3.25);
    auto p = mp::value<point>::create(point{1.5, -2.5, 7});
    CHECK(zero.get() == 0);
    CHECK(pi.get() == 3.25);
    CHECK(p.get().tag == 7);
    pi.set(-1.0);
    p.set(point{0, 0, 9});
    CHECK(pi.get() == -1.0);
    CHECK(p.get().tag == 9);
    CHECK(p.get().y == 0.0);
  }

  TEST_CASE("copies of a value handle share one value") {
    auto a = mp::value<int>::create(1);
    auto b = a;
    b.set(5);
    CHECK(a.get() == 5);
    CHECK(&a.get_obj() == &b.get_obj());
    CHECK(&a.get_lock() == &b.get_lock());
  }

  TEST_CASE("get_lock is a recursive lock by default and get and set may run while holding it") {
    tandem::test::watchdog guard{10s};
    auto v = mp::value<int>::create();
    std::scoped_lock outer{v.get_lock()};
    v.set(3); // takes the lock again: recursion, not deadlock
    CHECK(v.get() == 3);
    CHECK(v.get_lock().recursion_count() == 1);
  }

  TEST_CASE("values created with one lock share it") {
    auto l = mp::rlock::create();
    auto a = mp::value<int>::create(1, l);
    auto b = mp::value<double>::create(2.0, l);
    CHECK(&a.get_lock() == &b.get_lock());
    CHECK(&a.get_lock() == l.get());
    auto plain = mp::value<int, mp::lock>::create(4, mp::lock::create());
    CHECK(plain.get() == 4);
    CHECK_THROWS_AS(mp::value<int>::create(0, mp::rlock::handle{}), tandem::usage_error);
  }

  TEST_CASE("eight processes incrementing under get_lock end exact") {
    tandem::test::watchdog guard{60s};
    constexpr int processes = 8;
    constexpr int each = 100'000;
    auto v = mp::value<std::int64_t>::create();
    std::vector<std::unique_ptr<child>> kids;
    for (int i = 0; i < processes; ++i)
      kids.push_back(std::make_unique<child>([v] { add_under_lock(v, each); }));
    for (auto& k : kids) CHECK(k->join());
    CHECK(v.get() == std::int64_t{processes} * each);
  }

  TEST_CASE("the lock-free fast paths count exactly without the lock") {
    tandem::test::watchdog guard{30s};
    auto v = mp::value<std::int64_t>::create(10);
    {
      std::vector<std::unique_ptr<child>> kids;
      for (int i = 0; i < 4; ++i)
        kids.push_back(std::make_unique<child>([v] {
          for (int j = 0; j < 50'000; ++j) v.fetch_add(2);
          for (int j = 0; j < 50'000; ++j) v.fetch_sub(1);
        }));
      for (auto& k : kids) CHECK(k->join());
    }
    CHECK(v.atomic_load() == 10 + 4 * 50'000);
    CHECK(v.exchange(7) == 10 + 4 * 50'000);
    std::int64_t expected = 8;
    CHECK_FALSE(v.compare_exchange(expected, 9));
    CHECK(expected == 7);
    CHECK(v.compare_exchange(expected, 9));
    v.atomic_store(11);
    CHECK(v.get() == 11);
  }

  TEST_CASE("a raw value has no lock and is shared with a fork child") {
    tandem::test::watchdog guard{10s};
    auto r = mp::raw_value<std::int32_t>::create(5);
    child c{[r] { r.set(r.get() + 1); }};
    CHECK(c.join());
    CHECK(r.get() == 6);
  }

  TEST_CASE("a value passed to a process is the same value with every start method") {
    tandem::test::watchdog guard{60s};
    auto v = mp::value<std::int64_t>::create();
    for (auto m : methods) {
      mp::process p{with(m), add_under_lock, v, 1000};
      p.start();
      REQUIRE(p.join(30s));
      CHECK(p.exitcode() == 0);
    }
    CHECK(v.get() == 3000);
  }

  TEST_CASE("a process killed while holding the lock of a value makes get report it once") {
    tandem::test::watchdog guard{20s};
    auto v = mp::value<int>::create(1);
    auto holding = make_cell(0);
    child holder{[v, &holding] {
      v.get_lock().acquire();
      v.get_obj() = 2;
      holding->store(1);
      hang();
    }};
    while (holding->load() == 0) std::this_thread::yield();
    holder.kill();
    auto start = clock_type::now();
    CHECK_THROWS_AS(v.get(), tandem::owner_died_error);
    CHECK(clock_type::now() - start < 5s); // within about a second; slack for a busy machine
    CHECK(v.get() == 2);                   // the lock works again
    v.set(3);
    CHECK(v.get() == 3);
  }

  TEST_CASE("an array is zero-filled or a copy of its initial items") {
    auto zeros = mp::array<double>::create(5);
    auto xs = mp::array<int>::create({1, 2, 3, 4, 5});
    CHECK(zeros.size() == 5);
    CHECK(zeros.to_vector() == std::vector<double>(5, 0.0));
    CHECK(xs.to_vector() == std::vector<int>{1, 2, 3, 4, 5});
    auto empty = mp::array<int>::create(0);
    CHECK(empty.size() == 0);
    CHECK(empty.to_vector().empty());
  }

  TEST_CASE("array indexing follows Python and an index out of range changes nothing") {
    auto xs = mp::array<int>::create({10, 20, 30});
    CHECK(xs.get(0) == 10);
    CHECK(xs.get(-1) == 30);
    CHECK(xs.get(-3) == 10);
    xs.set(-2, 21);
    CHECK(xs.get(1) == 21);
    CHECK_THROWS_AS(xs.get(3), tandem::index_error);
    CHECK_THROWS_AS(xs.get(-4), tandem::index_error);
    CHECK_THROWS_AS(xs.set(3, 0), tandem::index_error);
    CHECK_THROWS_AS(xs.get(3), tandem::value_error); // an index_error is a value_error
    CHECK(xs.to_vector() == std::vector<int>{10, 21, 30});
  }

  TEST_CASE("array slices clamp as Python and a slice that does not fit changes nothing") {
    auto xs = mp::array<int>::create({0, 1, 2, 3, 4, 5});
    CHECK(xs.slice(1, 3) == std::vector<int>{1, 2});
    CHECK(xs.slice(-2, 100) == std::vector<int>{4, 5});
    CHECK(xs.slice(4, 2).empty());
    CHECK(xs.slice(-100, 2) == std::vector<int>{0, 1});
    std::vector<int> three{7, 8, 9};
    xs.set_slice(2, three);
    CHECK(xs.to_vector() == std::vector<int>{0, 1, 7, 8, 9, 5});
    xs.set_slice(-3, three);
    CHECK(xs.to_vector() == std::vector<int>{0, 1, 7, 7, 8, 9});
    CHECK_THROWS_AS(xs.set_slice(4, three), tandem::value_error);
    CHECK(xs.to_vector() == std::vector<int>{0, 1, 7, 7, 8, 9});
  }

  TEST_CASE("an array passed to a process is the same array with every start method") {
    tandem::test::watchdog guard{60s};
    auto a = mp::array<double>::create(std::size_t{1} << 18);
    double x = 1.0;
    for (auto m : methods) {
      mp::process p{with(m), fill_array, a, x};
      p.start();
      REQUIRE(p.join(30s));
      CHECK(p.exitcode() == 0);
      CHECK(a.get(0) == x);
      CHECK(a.get(-1) == x);
      x += 1.0;
    }
  }

  TEST_CASE("raw arrays and raw values reach a spawn child without locks") {
    tandem::test::watchdog guard{30s};
    auto a = mp::raw_array<std::int32_t>::create({1, 2, 3});
    auto flag = mp::raw_value<std::int32_t>::create();
    mp::process p{with(mp::start_method::spawn), double_raw, a, flag};
    p.start();
    REQUIRE(p.join(20s));
    CHECK(p.exitcode() == 0);
    CHECK(flag.get() == 1);
    CHECK(a.slice(0, 3) == std::vector<std::int32_t>{2, 4, 6});
    CHECK_THROWS_AS(a.get(3), tandem::value_error);
  }
}
