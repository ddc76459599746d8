// The strong exception guarantee of every queue, the C++ form of CPython's
// FailingQueueTest: when an element's copy, move or comparison throws inside a
// put or a get, the exception reaches the caller and the queue is unchanged
// (size, order, unfinished tasks), and so is the put's argument. Also: a put
// that fails for any other reason (full, timeout, shutdown, stop) leaves an
// rvalue argument untouched.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/lifo_queue.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/queue.hpp>
#include <tandem/simple_queue.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct injected_fault : std::runtime_error {
  injected_fault() : std::runtime_error("injected fault") {}
};

// How many more copies, moves or comparisons of a `fragile` succeed before one
// throws; negative: none throws. Global, so a fault can be injected into a copy
// the queue makes on another thread.
std::atomic<int> copies_left{-1};
std::atomic<int> moves_left{-1};
std::atomic<int> compares_left{-1};

void spend(std::atomic<int>& budget) {
  int left = budget.load();
  while (left >= 0 && !budget.compare_exchange_weak(left, left - 1)) {
  }
  if (left == 0) throw injected_fault{};
}

// Disarms every fault on scope exit, so a failing test does not poison the
// next.
struct faults_disarmed {
  faults_disarmed() { disarm(); }
  ~faults_disarmed() { disarm(); }
  static void disarm() {
    copies_left = -1;
    moves_left = -1;
    compares_left = -1;
  }
};

// An element whose copy (and, unless NothrowMove, move) and comparison may
// throw. A move leaves the source at -1, so a moved-from argument is visible; a
// throwing copy or move throws before it changes anything.
template <bool NothrowMove>
struct fragile {
  int value = 0;

  fragile() = default;
  explicit fragile(int v) : value(v) {}
  fragile(const fragile& other) : value(other.value) { spend(copies_left); }
  fragile(fragile&& other) noexcept(NothrowMove) : value(other.value) {
    if constexpr (!NothrowMove) spend(moves_left);
    other.value = -1;
  }
  fragile& operator=(const fragile& other) {
    spend(copies_left);
    value = other.value;
    return *this;
  }
  fragile& operator=(fragile&& other) noexcept(NothrowMove) {
    if constexpr (!NothrowMove) spend(moves_left);
    value = other.value;
    other.value = -1;
    return *this;
  }
  ~fragile() = default;

  friend bool operator<(const fragile& a, const fragile& b) {
    spend(compares_left);
    return a.value < b.value;
  }
};

using copied = fragile<false>; // the queues copy it (its move may throw)
using moved = fragile<true>;   // the queues move it (its move never throws)

// A move-only element whose move may throw: the queues can only move it.
struct move_only_fragile {
  int value = 0;
  explicit move_only_fragile(int v) : value(v) {}
  move_only_fragile(const move_only_fragile&) = delete;
  move_only_fragile(move_only_fragile&& other) noexcept(false) : value(other.value) {
    spend(moves_left);
    other.value = -1;
  }
  move_only_fragile& operator=(move_only_fragile&& other) noexcept(false) {
    spend(moves_left);
    value = other.value;
    other.value = -1;
    return *this;
  }
  ~move_only_fragile() = default;
  friend bool operator<(const move_only_fragile& a, const move_only_fragile& b) {
    return a.value < b.value;
  }
};

template <class Q>
constexpr bool tracks_tasks = requires(Q& q) {
  q.task_done();
};

template <class Q>
constexpr bool least_first = false;
template <class T, class C>
constexpr bool least_first<tandem::priority_queue<T, C>> = true;

template <class Q>
constexpr bool last_first = false;
template <class T>
constexpr bool last_first<tandem::lifo_queue<T>> = true;

// The values a queue filled with `put` (in that order) hands out, in its order.
template <class Q>
std::vector<int> expected_order(std::vector<int> put) {
  if constexpr (least_first<Q>)
    std::stable_sort(put.begin(), put.end());
  else if constexpr (last_first<Q>)
    std::reverse(put.begin(), put.end());
  return put;
}

// Takes every item out (with faults disarmed) and returns their values.
template <class Q>
std::vector<int> drain(Q& q) {
  faults_disarmed::disarm();
  std::vector<int> out;
  while (auto v = q.get(0s)) out.push_back(v->value);
  return out;
}

template <class Q>
std::unique_ptr<Q> filled(const std::vector<int>& values, std::size_t maxsize = 0) {
  std::unique_ptr<Q> q;
  if constexpr (std::is_constructible_v<Q, std::size_t>)
    q = std::make_unique<Q>(maxsize);
  else
    q = std::make_unique<Q>();
  for (int v : values) q->put(typename Q::value_type{v});
  return q;
}

std::vector<int> iota_values(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] = (i * 7) % n; // not sorted, so the order matters
  return v;
}

} // namespace

TYPE_TO_STRING_AS("queue", tandem::queue<copied>);
TYPE_TO_STRING_AS("lifo_queue", tandem::lifo_queue<copied>);
TYPE_TO_STRING_AS("priority_queue", tandem::priority_queue<copied>);
TYPE_TO_STRING_AS("simple_queue", tandem::simple_queue<copied>);
TYPE_TO_STRING_AS("queue with nothrow move", tandem::queue<moved>);
TYPE_TO_STRING_AS("lifo_queue with nothrow move", tandem::lifo_queue<moved>);
TYPE_TO_STRING_AS("priority_queue with nothrow move", tandem::priority_queue<moved>);
TYPE_TO_STRING_AS("simple_queue with nothrow move", tandem::simple_queue<moved>);
TYPE_TO_STRING_AS("queue of string", tandem::queue<std::string>);
TYPE_TO_STRING_AS("lifo_queue of string", tandem::lifo_queue<std::string>);
TYPE_TO_STRING_AS("priority_queue of string", tandem::priority_queue<std::string>);
TYPE_TO_STRING_AS("queue of move-only", tandem::queue<move_only_fragile>);
TYPE_TO_STRING_AS("lifo_queue of move-only", tandem::lifo_queue<move_only_fragile>);
TYPE_TO_STRING_AS("priority_queue of move-only", tandem::priority_queue<move_only_fragile>);
TYPE_TO_STRING_AS("simple_queue of move-only", tandem::simple_queue<move_only_fragile>);

TEST_SUITE("queue exception safety") {

  TEST_CASE_TEMPLATE("a put that throws at any copy leaves the queue and its "
                     "argument unchanged",
                     Q, tandem::queue<copied>, tandem::lifo_queue<copied>,
                     tandem::priority_queue<copied>, tandem::simple_queue<copied>,
                     tandem::queue<moved>, tandem::lifo_queue<moved>, tandem::priority_queue<moved>,
                     tandem::simple_queue<moved>) {
    faults_disarmed disarmed;
    using T = typename Q::value_type;
    // Sizes around the growth points of the ring (16, 32) and of the vectors
    // (powers of two).
    for (int size : {0, 1, 3, 15, 16, 17, 31, 32}) {
      CAPTURE(size);
      auto values = iota_values(size);
      bool succeeded = false;
      // Inject the fault at the first copy, then the second, ... until the put
      // gets through.
      for (int n = 0; !succeeded; ++n) {
        CAPTURE(n);
        REQUIRE(n < 100);
        auto sut = filled<Q>(values);
        T lvalue{1000};
        T rvalue{1001};
        copies_left = n;
        moves_left = n;
        bool lvalue_ok = false;
        bool rvalue_ok = false;
        try {
          sut->put(lvalue);
          lvalue_ok = true;
          sut->put(std::move(rvalue));
          rvalue_ok = true;
        } catch (const injected_fault&) {
        }
        faults_disarmed::disarm();
        CHECK(lvalue.value == 1000);
        if (!rvalue_ok) CHECK(rvalue.value == 1001);
        auto expected = values;
        if (lvalue_ok) expected.push_back(1000);
        if (rvalue_ok) expected.push_back(1001);
        CHECK(sut->qsize() == expected.size());
        if constexpr (tracks_tasks<Q>) CHECK(sut->unfinished_tasks() == expected.size());
        CHECK(drain(*sut) == expected_order<Q>(expected));
        succeeded = lvalue_ok && rvalue_ok;
      }
    }
  }

  TEST_CASE_TEMPLATE("a get whose copy throws leaves the item in its place", Q,
                     tandem::queue<copied>, tandem::lifo_queue<copied>,
                     tandem::priority_queue<copied>, tandem::simple_queue<copied>) {
    tandem::test::watchdog guard{10s};
    faults_disarmed disarmed;
    auto values = iota_values(5);
    auto sut = filled<Q>(values, 10);

    copies_left = 0;
    CHECK_THROWS_AS((void)sut->get(), injected_fault);
    copies_left = 0;
    CHECK_THROWS_AS((void)sut->get(10ms), injected_fault);
    copies_left = 0;
    CHECK_THROWS_AS((void)sut->get_nowait(), injected_fault);
    copies_left = 0;
    CHECK_THROWS_AS((void)sut->get(std::stop_token{}, 10ms), injected_fault);
    faults_disarmed::disarm();

    CHECK(sut->qsize() == values.size());
    if constexpr (tracks_tasks<Q>) CHECK(sut->unfinished_tasks() == values.size());
    CHECK(drain(*sut) == expected_order<Q>(values));
  }

  TEST_CASE_TEMPLATE("a comparison that throws leaves a priority queue unchanged", Q,
                     tandem::priority_queue<copied>, tandem::priority_queue<moved>) {
    faults_disarmed disarmed;
    std::mt19937 rng{42};
    std::vector<int> values;
    for (int i = 0; i < 40; ++i)
      values.push_back(static_cast<int>(rng() % 10)); // many equal elements

    SUBCASE("in a put") {
      bool succeeded = false;
      for (int n = 0; !succeeded; ++n) {
        CAPTURE(n);
        REQUIRE(n < 100);
        auto sut = filled<Q>(values);
        compares_left = n;
        try {
          sut->put(typename Q::value_type{-5});
          succeeded = true;
        } catch (const injected_fault&) {
        }
        auto expected = values;
        if (succeeded) expected.push_back(-5);
        CHECK(sut->unfinished_tasks() == expected.size());
        CHECK(drain(*sut) == expected_order<Q>(expected));
      }
    }
    SUBCASE("in a get") {
      bool succeeded = false;
      for (int n = 0; !succeeded; ++n) {
        CAPTURE(n);
        REQUIRE(n < 100);
        auto sut = filled<Q>(values);
        compares_left = n;
        std::vector<int> taken;
        try {
          taken.push_back(sut->get().value);
          succeeded = true;
        } catch (const injected_fault&) {
        }
        auto rest = drain(*sut);
        taken.insert(taken.end(), rest.begin(), rest.end());
        CHECK(taken == expected_order<Q>(values));
      }
    }
  }

  TEST_CASE_TEMPLATE("a put blocked on a full queue whose copy throws after "
                     "waking changes nothing",
                     Q, tandem::queue<moved>, tandem::lifo_queue<moved>,
                     tandem::priority_queue<moved>) {
    tandem::test::watchdog guard{10s};
    faults_disarmed disarmed;
    bool timed = false;
    SUBCASE("without a timeout") {
      timed = false;
    }
    SUBCASE("with a timeout") {
      timed = true;
    }
    Q sut{2};
    sut.put(moved{1});
    sut.put(moved{2});
    std::atomic<pid_t> putter{0};
    std::atomic<int> failed{0};
    moved item{3};

    std::thread t{[&] {
      putter = tandem::test::tid();
      try {
        if (timed)
          (void)sut.put(item, 10s);
        else
          sut.put(item);
      } catch (const injected_fault&) {
        failed = 1;
      }
    }};
    tandem::test::wait_until([&] { return putter.load() != 0; });
    pid_t tids[] = {putter.load()};
    CHECK(tandem::test::wait_until_blocked(tids));
    copies_left = 0; // the putter's copy of `item` fails; the get below moves,
                     // never copies
    (void)sut.get();
    t.join();
    faults_disarmed::disarm();

    CHECK(failed == 1);
    CHECK(item.value == 3);
    CHECK(sut.qsize() == 1);
    CHECK(sut.unfinished_tasks() == 2);
    sut.put(item); // the room the failed put left is still there
    CHECK(sut.full());
  }

  TEST_CASE_TEMPLATE("a get blocked on an empty queue whose copy throws after "
                     "waking changes nothing",
                     Q, tandem::queue<copied>, tandem::lifo_queue<copied>,
                     tandem::priority_queue<copied>, tandem::simple_queue<copied>) {
    tandem::test::watchdog guard{10s};
    faults_disarmed disarmed;
    bool timed = false;
    SUBCASE("without a timeout") {
      timed = false;
    }
    SUBCASE("with a timeout") {
      timed = true;
    }
    Q sut;
    std::atomic<pid_t> getter{0};
    std::atomic<int> failed{0};

    std::thread t{[&] {
      getter = tandem::test::tid();
      try {
        if (timed)
          (void)sut.get(10s);
        else
          (void)sut.get();
      } catch (const injected_fault&) {
        failed = 1;
      }
    }};
    tandem::test::wait_until([&] { return getter.load() != 0; });
    pid_t tids[] = {getter.load()};
    CHECK(tandem::test::wait_until_blocked(tids));
    copies_left = 1; // the put's copy succeeds, the getter's copy fails
    sut.put(copied{7});
    t.join();
    faults_disarmed::disarm();

    CHECK(failed == 1);
    CHECK(sut.qsize() == 1);
    CHECK(sut.get().value == 7);
  }

  TEST_CASE_TEMPLATE("a put whose move throws leaves a move-only argument and "
                     "the queue unchanged",
                     Q, tandem::queue<move_only_fragile>, tandem::lifo_queue<move_only_fragile>,
                     tandem::priority_queue<move_only_fragile>,
                     tandem::simple_queue<move_only_fragile>) {
    faults_disarmed disarmed;
    Q sut;
    sut.put(move_only_fragile{1});
    move_only_fragile item{2};

    moves_left = 0;
    CHECK_THROWS_AS(sut.put(std::move(item)), injected_fault);
    faults_disarmed::disarm();

    CHECK(item.value == 2);
    CHECK(sut.qsize() == 1);
    CHECK(sut.get().value == 1);
    sut.put(std::move(item));
    CHECK(item.value == -1);
    CHECK(sut.get().value == 2);
  }

  TEST_CASE_TEMPLATE("a put that fails for any reason leaves an rvalue argument untouched", Q,
                     tandem::queue<std::string>, tandem::lifo_queue<std::string>,
                     tandem::priority_queue<std::string>) {
    tandem::test::watchdog guard{10s};
    const std::string text(100, 'x'); // long enough to live on the heap: a move would steal it
    Q sut{1};
    sut.put("first");
    std::string item = text;

    CHECK_THROWS_AS(sut.put_nowait(std::move(item)), tandem::full_error);
    CHECK(item == text);
    CHECK_FALSE(sut.put(std::move(item), 10ms));
    CHECK(item == text);
    CHECK_FALSE(sut.put(std::move(item), 0s));
    CHECK(item == text);
    std::stop_source stop;
    stop.request_stop();
    CHECK_FALSE(sut.put(stop.get_token(), std::move(item)));
    CHECK(item == text);
    std::stop_source later;
    pid_t self[] = {tandem::test::tid()};
    std::thread stopper{[&] {
      tandem::test::wait_until_blocked(self);
      later.request_stop();
    }};
    CHECK_FALSE(sut.put(later.get_token(), std::move(item), 10s));
    stopper.join();
    CHECK(item == text);
    sut.shutdown();
    CHECK_THROWS_AS(sut.put(std::move(item)), tandem::shut_down_error);
    CHECK(item == text);
    CHECK_THROWS_AS(sut.put_nowait(std::move(item)), tandem::shut_down_error);
    CHECK(item == text);
    CHECK(sut.qsize() == 1);
    CHECK(sut.unfinished_tasks() == 1);
  }

  TEST_CASE_TEMPLATE("a put that succeeds moves from an rvalue and copies an lvalue", Q,
                     tandem::queue<std::string>, tandem::lifo_queue<std::string>,
                     tandem::priority_queue<std::string>, tandem::simple_queue<std::string>) {
    const std::string text(100, 'y');
    Q sut;
    std::string kept = text;
    std::string given = text;

    sut.put(kept);
    sut.put(std::move(given));

    CHECK(kept == text);
    CHECK(given != text); // moved from: the queue took its buffer
    CHECK(sut.get() == text);
    CHECK(sut.get() == text);
  }

} // TEST_SUITE
