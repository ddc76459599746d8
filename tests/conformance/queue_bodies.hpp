// Conformance bodies of the queue contracts, ported from CPython's Lib/test/test_queue.py (3.13:
// BaseQueueTestMixin with the shutdown tests, BaseSimpleQueueTest), written once over a subject
// (see flavour.hpp).
//
//   queue contract         Python's Queue, LifoQueue, PriorityQueue: tandem::queue, lifo_queue,
//                          priority_queue (element type int or std::string), later tandem::mp
//                          queues; bounding, timeouts, task_done/join, shutdown
//   simple queue contract  Python's SimpleQueue, which every FIFO queue also meets:
//                          tandem::simple_queue, tandem::queue
//
// Instantiate with
//   TANDEM_QUEUE_CONTRACT(subject<tandem::queue<int>>, subject<tandem::lifo_queue<int>>, ...);
//   TANDEM_SIMPLE_QUEUE_CONTRACT(subject<tandem::simple_queue<int>>, ...);
// in exactly one translation unit per executable, after TYPE_TO_STRING_AS for each subject.
// A queue type whose order is not FIFO specializes tandem::test::bodies::queue_kind.
//
// Python's FailingQueueTest (a queue whose _put/_get raise) has no cross-flavour form: its C++
// counterpart, elements whose copy, move or comparison throws, is in tests/queues.
#pragma once

#include "conformance/lock_bodies.hpp"

#include <tandem/error.hpp>
#include <tandem/lifo_queue.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/timeout.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace tandem::test::bodies {

/// Python's QUEUE_SIZE.
constexpr int queue_size = 5;

enum class queue_order { fifo, lifo, least_first };

/// The order a queue type hands out its items in; FIFO unless specialized.
template <class Q>
struct queue_kind {
  static constexpr queue_order order = queue_order::fifo;
};
template <class T>
struct queue_kind<tandem::lifo_queue<T>> {
  static constexpr queue_order order = queue_order::lifo;
};
template <class T, class C>
struct queue_kind<tandem::priority_queue<T, C>> {
  static constexpr queue_order order = queue_order::least_first;
};

/// The item standing for the number `i` in a queue of V (int or std::string).
template <class V>
V queue_item(int i) {
  if constexpr (std::is_same_v<V, std::string>)
    return std::to_string(i);
  else
    return static_cast<V>(i);
}

/// The number an item stands for.
template <class V>
int queue_value(const V& v) {
  if constexpr (std::is_same_v<V, std::string>)
    return std::stoi(v);
  else
    return static_cast<int>(v);
}

/// The outcome of a call made by a party, stored in a shared<int>.
enum queue_outcome : int {
  outcome_none = 0,     // not returned (yet)
  outcome_ok = 1,       // returned normally (an item, or true)
  outcome_nothing = 2,  // returned false or nullopt
  outcome_shut_down = 3 // threw shut_down_error
};

/// Runs `call` and returns how it ended.
template <class Call>
int queue_outcome_of(Call call) {
  try {
    return call() ? outcome_ok : outcome_nothing;
  } catch (const tandem::shut_down_error&) {
    return outcome_shut_down;
  }
}

/// A barrier for parties, made of one shared counter (Python's tests use threading.Barrier).
template <class Cell>
void queue_arrive_and_wait(Cell& arrived, int parties) {
  arrived.fetch_add(1);
  while (arrived.load() < parties) std::this_thread::yield();
}

/// Records every item delivered, as a bitmap of shared words and a count of duplicates, so a
/// body can check that each item arrived exactly once.
template <class F, std::size_t items>
class queue_ledger {
public:
  queue_ledger()
      : bits_(F::template make<std::array<shared<std::uint64_t>, words>>()),
        duplicates_(F::template make<shared<int>>(0)) {}

  /// Marks item `i` delivered.
  void deliver(int i) {
    auto bit = std::uint64_t{1} << (static_cast<std::size_t>(i) % 64);
    if (((*bits_)[static_cast<std::size_t>(i) / 64].fetch_or(bit) & bit) != 0)
      duplicates_->fetch_add(1);
  }

  /// True when every item in [0, items) was delivered.
  bool complete() const {
    for (std::size_t i = 0; i < items; ++i)
      if (((*bits_)[i / 64].load() & (std::uint64_t{1} << (i % 64))) == 0) return false;
    return true;
  }

  int duplicates() const { return duplicates_->load(); }

private:
  static constexpr std::size_t words = (items + 63) / 64;
  decltype(F::template make<std::array<shared<std::uint64_t>, words>>()) bits_;
  decltype(F::template make<shared<int>>(0)) duplicates_;
};

} // namespace tandem::test::bodies

// The first lines of every body.
#define TANDEM_QUEUE_BODY_SETUP                                                                    \
  using namespace tandem::test::bodies;                                                            \
  using F = typename S::flavour;                                                                   \
  using Q = typename S::type;                                                                      \
  using V = typename Q::value_type;                                                                \
  using tandem::test::shared;                                                                      \
  [[maybe_unused]] auto item = [](int i) { return queue_item<V>(i); };                             \
  [[maybe_unused]] auto value = [](const V& v) { return queue_value<V>(v); };                      \
  tandem::test::watchdog guard {                                                                   \
    20s                                                                                            \
  }

// -- queue contract: basics (BaseQueueTestMixin.basic_queue_test and friends) -------------------

TEST_CASE_TEMPLATE_DEFINE("a new queue is empty and not full" *
                              doctest::test_suite("queue contract"),
                          S, queue_new) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);
  auto unbounded = F::template make<Q>();

  CHECK(sut->empty());
  CHECK_FALSE(sut->full());
  CHECK(sut->qsize() == 0);
  CHECK(sut->maxsize() == queue_size);
  CHECK_FALSE(sut->is_shutdown());
  CHECK(sut->unfinished_tasks() == 0);
  CHECK(unbounded->maxsize() == 0);
  for (int i = 0; i < 100; ++i) unbounded->put(item(i));
  CHECK_FALSE(unbounded->full());
  CHECK(unbounded->qsize() == 100);
}

TEST_CASE_TEMPLATE_DEFINE("items come out in the order of the queue kind" *
                              doctest::test_suite("queue contract"),
                          S, queue_order_of_kind) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);
  std::vector<int> expected;
  switch (queue_kind<Q>::order) {
    case queue_order::fifo:
      expected = {111, 333, 222};
      break;
    case queue_order::lifo:
      expected = {222, 333, 111};
      break;
    case queue_order::least_first:
      expected = {111, 222, 333};
      break;
  }

  // Twice, as Python does, to see that a drained queue works like a new one.
  for (int round = 0; round < 2; ++round) {
    sut->put(item(111));
    sut->put(item(333));
    sut->put(item(222));
    std::vector<int> actual{value(sut->get()), value(sut->get()), value(sut->get())};

    CHECK(actual == expected);
    CHECK(sut->empty());
  }
}

TEST_CASE_TEMPLATE_DEFINE("a full queue refuses another put without blocking" *
                              doctest::test_suite("queue contract"),
                          S, queue_full) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);
  for (int i = 0; i < queue_size - 1; ++i) {
    sut->put(item(i));
    CHECK(sut->qsize() == static_cast<std::size_t>(i + 1));
  }
  CHECK_FALSE(sut->full());
  sut->put(item(2 * queue_size));
  REQUIRE(sut->full());
  CHECK_FALSE(sut->empty());

  CHECK_THROWS_AS(sut->put_nowait(item(30)), tandem::full_error);
  auto start = clock_type::now();
  CHECK_FALSE(sut->put(item(30), 20ms));
  check_timeout(clock_type::now() - start, 20ms);
  start = clock_type::now();
  CHECK_FALSE(sut->put(item(30), 0s));
  CHECK_FALSE(sut->put(item(30), -1s));
  CHECK_FALSE(sut->put(item(30), clock_type::now() - 1s));
  CHECK(clock_type::now() - start < 1s);

  CHECK(sut->qsize() == static_cast<std::size_t>(queue_size));
  CHECK(sut->unfinished_tasks() == static_cast<std::size_t>(queue_size));
}

TEST_CASE_TEMPLATE_DEFINE("a put blocked on a full queue completes once a get makes room" *
                              doctest::test_suite("queue contract"),
                          S, queue_blocking_put) {
  TANDEM_QUEUE_BODY_SETUP;
  bool timed = false;
  SUBCASE("without a timeout") {
    timed = false;
  }
  SUBCASE("with a timeout") {
    timed = true;
  }
  auto sut = F::template make<Q>(2);
  auto done = F::template make<shared<int>>(outcome_none);
  sut->put(item(1));
  sut->put(item(2));
  sleepers<F> blocked{1};

  {
    typename F::parties ps;
    ps.start([&] {
      blocked.arrive(0);
      done->store(queue_outcome_of([&] {
        if (!timed) {
          sut->put(item(3));
          return true;
        }
        return sut->put(item(3), 10s);
      }));
    });
    CHECK(blocked.wait_blocked());
    CHECK(done->load() == outcome_none);
    (void)sut->get();
  }

  CHECK(done->load() == outcome_ok);
  CHECK(sut->qsize() == 2);
  CHECK(sut->unfinished_tasks() == 3);
}

TEST_CASE_TEMPLATE_DEFINE("an empty queue refuses a get without blocking" *
                              doctest::test_suite("queue contract"),
                          S, queue_empty) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);

  CHECK_THROWS_AS((void)sut->get_nowait(), tandem::empty_error);
  auto start = clock_type::now();
  CHECK_FALSE(sut->get(20ms).has_value());
  check_timeout(clock_type::now() - start, 20ms);
  start = clock_type::now();
  CHECK_FALSE(sut->get(0s).has_value());
  CHECK_FALSE(sut->get(-1s).has_value());
  CHECK(clock_type::now() - start < 1s);
  CHECK(sut->empty());
}

TEST_CASE_TEMPLATE_DEFINE("a get blocked on an empty queue completes once a put supplies an item" *
                              doctest::test_suite("queue contract"),
                          S, queue_blocking_get) {
  TANDEM_QUEUE_BODY_SETUP;
  bool timed = false;
  SUBCASE("without a timeout") {
    timed = false;
  }
  SUBCASE("with a timeout") {
    timed = true;
  }
  auto sut = F::template make<Q>(queue_size);
  auto got = F::template make<shared<int>>(-1);
  sleepers<F> blocked{1};

  {
    typename F::parties ps;
    ps.start([&] {
      blocked.arrive(0);
      if (!timed) {
        got->store(value(sut->get()));
      } else {
        auto v = sut->get(10s);
        got->store(v ? value(*v) : -2);
      }
    });
    CHECK(blocked.wait_blocked());
    CHECK(got->load() == -1);
    sut->put(item(42));
  }

  CHECK(got->load() == 42);
  CHECK(sut->empty());
}

TEST_CASE_TEMPLATE_DEFINE("put_nowait and get_nowait fill and drain without blocking" *
                              doctest::test_suite("queue contract"),
                          S, queue_nowait) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);

  for (int i = 0; i < queue_size; ++i) sut->put_nowait(item(1));
  CHECK_THROWS_AS(sut->put_nowait(item(1)), tandem::full_error);
  for (int i = 0; i < queue_size; ++i) CHECK(value(sut->get_nowait()) == 1);
  CHECK_THROWS_AS((void)sut->get_nowait(), tandem::empty_error);
  CHECK(sut->unfinished_tasks() == static_cast<std::size_t>(queue_size));
}

TEST_CASE_TEMPLATE_DEFINE("a negative timeout polls" * doctest::test_suite("queue contract"), S,
                          queue_negative_timeout) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);

  // Python raises ValueError for a negative timeout; tandem treats it as zero.
  CHECK(sut->put(item(7), -1s));
  auto v = sut->get(-1s);
  REQUIRE(v.has_value());
  CHECK(value(*v) == 7);
  CHECK_FALSE(sut->get(-1s).has_value());
}

// -- queue contract: task_done and join -----------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("task_done without an unfinished task throws value_error" *
                              doctest::test_suite("queue contract"),
                          S, queue_task_done_too_often) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();

  CHECK_THROWS_AS(sut->task_done(), tandem::value_error);
  sut->put(item(1));
  (void)sut->get();
  sut->task_done();
  CHECK_THROWS_AS(sut->task_done(), tandem::value_error);
  CHECK(sut->unfinished_tasks() == 0);
  CHECK(sut->join(0s));
}

TEST_CASE_TEMPLATE_DEFINE("join returns once every item put was taken and marked done" *
                              doctest::test_suite("queue contract"),
                          S, queue_join) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  auto cum = F::template make<shared<long long>>(0);

  // Twice, as Python does: a queue can be joined again once new tasks arrive.
  for (int round = 0; round < 2; ++round) {
    cum->store(0);
    typename F::parties ps;
    ps.start_n(2, [&](std::size_t) {
      for (;;) {
        int x = value(sut->get());
        if (x < 0) {
          sut->task_done();
          return;
        }
        cum->fetch_add(x);
        sut->task_done();
      }
    });
    for (int i = 0; i < 100; ++i) sut->put(item(i));
    sut->join();
    CHECK(cum->load() == 4950);
    for (int i = 0; i < 2; ++i) sut->put(item(-1)); // one sentinel per worker
    sut->join();                                    // joining twice works
    ps.join();
  }

  CHECK_THROWS_AS(sut->task_done(), tandem::value_error);
}

TEST_CASE_TEMPLATE_DEFINE("join with a timeout returns false while a task is unfinished" *
                              doctest::test_suite("queue contract"),
                          S, queue_join_timeout) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  CHECK(sut->join(0s));
  sut->put(item(1));

  auto start = clock_type::now();
  CHECK_FALSE(sut->join(20ms));
  check_timeout(clock_type::now() - start, 20ms);
  CHECK_FALSE(sut->join(0s));
  CHECK_FALSE(sut->join(-1s));
  (void)sut->get();
  CHECK_FALSE(sut->join(0s));
  sut->task_done();
  CHECK(sut->join(0s));
  CHECK(sut->join());
}

TEST_CASE_TEMPLATE_DEFINE("join blocked on unfinished tasks returns on the last task_done" *
                              doctest::test_suite("queue contract"),
                          S, queue_join_blocked) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  auto joined = F::template make<shared<int>>(outcome_none);
  sut->put(item(1));
  sut->put(item(2));
  sleepers<F> blocked{1};

  {
    typename F::parties ps;
    ps.start([&] {
      blocked.arrive(0);
      joined->store(queue_outcome_of([&] { return sut->join(); }));
    });
    CHECK(blocked.wait_blocked());
    (void)sut->get();
    (void)sut->get();
    sut->task_done();
    CHECK(joined->load() == outcome_none);
    sut->task_done();
  }

  CHECK(joined->load() == outcome_ok);
}

// -- queue contract: shutdown (Python 3.13) -------------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("a shut-down empty queue refuses every put and every get" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_empty) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);
  sut->shutdown();

  auto start = clock_type::now();
  CHECK_THROWS_AS(sut->put(item(1)), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->put(item(1), 5s), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->put(item(1), 0s), tandem::shut_down_error);
  CHECK_THROWS_AS(sut->put_nowait(item(1)), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get(), tandem::shut_down_error);
  // Never an empty optional because of a shutdown, whatever the timeout.
  CHECK_THROWS_AS((void)sut->get(5s), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get(0s), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get(-1s), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get_nowait(), tandem::shut_down_error);
  CHECK(clock_type::now() - start < 2s);

  CHECK(sut->is_shutdown());
  CHECK(sut->empty());
  CHECK(sut->unfinished_tasks() == 0);
}

TEST_CASE_TEMPLATE_DEFINE("a shut-down queue still hands out its remaining items" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_nonempty) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);
  sut->put(item(1));
  sut->put(item(2));
  sut->put(item(3));
  sut->shutdown();

  CHECK_THROWS_AS(sut->put(item(4)), tandem::shut_down_error);
  (void)sut->get();
  (void)sut->get_nowait();
  auto v = sut->get(10ms);
  CHECK(v.has_value());
  CHECK_THROWS_AS((void)sut->get(), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get(10ms), tandem::shut_down_error);
  CHECK(sut->unfinished_tasks() == 3);
}

TEST_CASE_TEMPLATE_DEFINE("an immediate shutdown drops the remaining items and their tasks" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_immediate) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(queue_size);
  sut->put(item(1));
  sut->put(item(2));
  sut->put(item(3));
  (void)sut->get(); // taken, its task not done yet

  sut->shutdown(true);

  CHECK(sut->empty());
  CHECK(sut->qsize() == 0);
  CHECK_THROWS_AS((void)sut->get(), tandem::shut_down_error);
  CHECK(sut->unfinished_tasks() == 1);
  CHECK_FALSE(sut->join(0s));
  sut->task_done();
  CHECK(sut->join(0s));
  CHECK_THROWS_AS(sut->task_done(), tandem::value_error);
}

TEST_CASE_TEMPLATE_DEFINE("shutdown may be repeated and made immediate later" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_transitions) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  sut->put(item(1));
  sut->put(item(2));
  CHECK_FALSE(sut->is_shutdown());

  sut->shutdown();
  CHECK(sut->is_shutdown());
  CHECK(sut->qsize() == 2);

  sut->shutdown(true);
  CHECK(sut->is_shutdown());
  CHECK(sut->qsize() == 0);
  CHECK(sut->unfinished_tasks() == 0);

  sut->shutdown(false);
  CHECK(sut->is_shutdown());
  CHECK_THROWS_AS((void)sut->get(), tandem::shut_down_error);
}

TEST_CASE_TEMPLATE_DEFINE("every method of a shut-down queue behaves as in Python" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_all_methods) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(2);
  sut->put(item(1));
  sut->put_nowait(item(2));

  sut->shutdown();

  // The queue is full too: the shutdown is reported first.
  CHECK_THROWS_AS(sut->put(item(3)), tandem::shut_down_error);
  CHECK_THROWS_AS(sut->put_nowait(item(4)), tandem::shut_down_error);
  int a = value(sut->get());
  sut->task_done();
  int b = value(sut->get());
  sut->task_done();
  CHECK(a + b == 3);
  CHECK(sut->join(10s));
  CHECK_THROWS_AS((void)sut->get(), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get_nowait(), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get(1s), tandem::shut_down_error);
}

TEST_CASE_TEMPLATE_DEFINE("every method of an immediately shut-down queue behaves as in Python" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_immediate_all_methods) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(2);
  sut->put(item(1));
  sut->put_nowait(item(2));

  sut->shutdown(true);

  CHECK_THROWS_AS(sut->put(item(3)), tandem::shut_down_error);
  CHECK_THROWS_AS(sut->put_nowait(item(4)), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get(), tandem::shut_down_error);
  CHECK_THROWS_AS((void)sut->get_nowait(), tandem::shut_down_error);
  CHECK_THROWS_AS(sut->task_done(), tandem::value_error);
  CHECK(sut->join(10s));
}

TEST_CASE_TEMPLATE_DEFINE("shutdown wakes a blocked get which then throws" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_wakes_get) {
  TANDEM_QUEUE_BODY_SETUP;
  bool immediate = false;
  SUBCASE("plain shutdown") {
    immediate = false;
  }
  SUBCASE("immediate shutdown") {
    immediate = true;
  }
  auto sut = F::template make<Q>();
  auto plain = F::template make<shared<int>>(outcome_none);
  auto timed = F::template make<shared<int>>(outcome_none);
  sleepers<F> blocked{2};

  {
    typename F::parties ps;
    ps.start([&] {
      blocked.arrive(0);
      plain->store(queue_outcome_of([&] {
        (void)sut->get();
        return true;
      }));
    });
    ps.start([&] {
      blocked.arrive(1);
      timed->store(queue_outcome_of([&] { return sut->get(10s).has_value(); }));
    });
    CHECK(blocked.wait_blocked());
    sut->shutdown(immediate);
  }

  CHECK(plain->load() == outcome_shut_down);
  CHECK(timed->load() == outcome_shut_down);
}

TEST_CASE_TEMPLATE_DEFINE("shutdown wakes blocked puts which then throw" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_wakes_put) {
  TANDEM_QUEUE_BODY_SETUP;
  bool immediate = false;
  SUBCASE("plain shutdown") {
    immediate = false;
  }
  SUBCASE("immediate shutdown") {
    immediate = true;
  }
  auto sut = F::template make<Q>(2);
  auto plain = F::template make<shared<int>>(outcome_none);
  auto timed = F::template make<shared<int>>(outcome_none);
  sut->put(item(1));
  sut->put(item(2));
  sleepers<F> blocked{2};

  {
    typename F::parties ps;
    ps.start([&] {
      blocked.arrive(0);
      plain->store(queue_outcome_of([&] {
        sut->put(item(3));
        return true;
      }));
    });
    ps.start([&] {
      blocked.arrive(1);
      timed->store(queue_outcome_of([&] { return sut->put(item(4), 10s); }));
    });
    CHECK(blocked.wait_blocked());
    sut->shutdown(immediate);
  }

  CHECK(plain->load() == outcome_shut_down);
  CHECK(timed->load() == outcome_shut_down);
  CHECK(sut->qsize() == (immediate ? 0u : 2u));
  CHECK(sut->unfinished_tasks() == (immediate ? 0u : 2u));
}

TEST_CASE_TEMPLATE_DEFINE("after shutdown getters take what is left and the others throw" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_get) {
  TANDEM_QUEUE_BODY_SETUP;
  bool immediate = false;
  SUBCASE("plain shutdown") {
    immediate = false;
  }
  SUBCASE("immediate shutdown") {
    immediate = true;
  }
  auto sut = F::template make<Q>(2);
  auto got = F::template make<shared<int>>(0);
  auto refused = F::template make<shared<int>>(0);
  sut->put(item(1));
  sut->put(item(2));

  sut->shutdown(immediate);
  {
    typename F::parties ps;
    ps.start_n(3, [&](std::size_t) {
      int outcome = queue_outcome_of([&] {
        (void)sut->get();
        return true;
      });
      (outcome == outcome_ok ? got : refused)->fetch_add(1);
    });
  }

  CHECK(got->load() == (immediate ? 0 : 2));
  CHECK(refused->load() == (immediate ? 3 : 1));
}

TEST_CASE_TEMPLATE_DEFINE("getters blocked at shutdown take the last item and the others throw" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_blocked_getters) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  auto got = F::template make<shared<int>>(0);
  auto refused = F::template make<shared<int>>(0);
  sleepers<F> blocked{3};

  {
    typename F::parties ps;
    ps.start_n(3, [&](std::size_t i) {
      blocked.arrive(i);
      int outcome = queue_outcome_of([&] {
        (void)sut->get();
        return true;
      });
      (outcome == outcome_ok ? got : refused)->fetch_add(1);
    });
    CHECK(blocked.wait_blocked());
    sut->put(item(1));
    sut->shutdown();
  }

  CHECK(got->load() == 1);
  CHECK(refused->load() == 2);
  CHECK(sut->empty());
}

TEST_CASE_TEMPLATE_DEFINE("a plain shutdown does not release join before the tasks are done" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_join) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  auto joined = F::template make<shared<int>>(0);
  sut->put(item(1));
  sleepers<F> blocked{2};

  {
    typename F::parties ps;
    ps.start_n(2, [&](std::size_t i) {
      blocked.arrive(i);
      if (queue_outcome_of([&] { return sut->join(); }) == outcome_ok) joined->fetch_add(1);
    });
    CHECK(blocked.wait_blocked());
    sut->shutdown();
    CHECK_FALSE(sut->join(20ms));
    CHECK(joined->load() == 0);
    (void)sut->get();
    sut->task_done();
  }

  CHECK(joined->load() == 2);
}

TEST_CASE_TEMPLATE_DEFINE("an immediate shutdown releases join" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_immediate_join) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  auto joined = F::template make<shared<int>>(0);
  sut->put(item(1));
  sleepers<F> blocked{2};

  {
    typename F::parties ps;
    ps.start_n(2, [&](std::size_t i) {
      blocked.arrive(i);
      if (queue_outcome_of([&] { return sut->join(); }) == outcome_ok) joined->fetch_add(1);
    });
    CHECK(blocked.wait_blocked());
    sut->shutdown(true);
  }

  CHECK(joined->load() == 2);
  CHECK(sut->unfinished_tasks() == 0);
}

TEST_CASE_TEMPLATE_DEFINE("an immediate shutdown keeps join waiting for items already taken" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_immediate_join_taken) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  auto joined = F::template make<shared<int>>(outcome_none);
  sut->put(item(1));
  sut->put(item(2));
  (void)sut->get();
  sleepers<F> blocked{1};

  {
    typename F::parties ps;
    ps.start([&] {
      blocked.arrive(0);
      joined->store(queue_outcome_of([&] { return sut->join(); }));
    });
    CHECK(blocked.wait_blocked());
    sut->shutdown(true);
    CHECK(sut->unfinished_tasks() == 1);
    CHECK_FALSE(sut->join(20ms));
    CHECK(joined->load() == outcome_none);
    sut->task_done();
  }

  CHECK(joined->load() == outcome_ok);
}

TEST_CASE_TEMPLATE_DEFINE("a put after shutdown throws while join waits for the queued task" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_put_join) {
  TANDEM_QUEUE_BODY_SETUP;
  bool immediate = false;
  SUBCASE("plain shutdown") {
    immediate = false;
  }
  SUBCASE("immediate shutdown") {
    immediate = true;
  }
  auto sut = F::template make<Q>(2);
  auto put = F::template make<shared<int>>(outcome_none);
  auto joined = F::template make<shared<int>>(outcome_none);
  auto go = F::template make<shared<int>>(0);
  sut->put(item(1));
  CHECK(sut->unfinished_tasks() == 1);

  {
    typename F::parties ps;
    ps.start([&] {
      tandem::test::wait_until([&] { return go->load() != 0; });
      put->store(queue_outcome_of([&] {
        sut->put(item(2));
        return true;
      }));
    });
    ps.start([&] { joined->store(queue_outcome_of([&] { return sut->join(); })); });
    sut->shutdown(immediate);
    go->store(1);
    if (immediate) {
      CHECK_THROWS_AS((void)sut->get_nowait(), tandem::shut_down_error);
    } else {
      CHECK(value(sut->get()) == 1);
      sut->task_done();
    }
  }

  CHECK(put->load() == outcome_shut_down);
  CHECK(joined->load() == outcome_ok);
}

TEST_CASE_TEMPLATE_DEFINE("after a plain shutdown getters finish the tasks and joiners return" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_get_task_done_join) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>(2);
  auto ok = F::template make<shared<int>>(0);
  sut->put(item(1));
  sut->put(item(2));
  CHECK(sut->unfinished_tasks() == sut->qsize());

  {
    typename F::parties ps;
    ps.start_n(2, [&](std::size_t) {
      int outcome = queue_outcome_of([&] {
        (void)sut->get();
        sut->task_done();
        return true;
      });
      if (outcome == outcome_ok) ok->fetch_add(1);
    });
    ps.start_n(2, [&](std::size_t) {
      if (queue_outcome_of([&] { return sut->join(); }) == outcome_ok) ok->fetch_add(1);
    });
    sut->shutdown(false);
  }

  CHECK(ok->load() == 4);
}

namespace tandem::test::bodies {

// Python's _shutdown_all_methods_in_many_threads: writers, readers and (for an immediate shutdown)
// joiners run while one writer triggers the shutdown half-way.
template <class S>
void run_queue_shutdown_many_threads(bool immediate) {
  using F = typename S::flavour;
  using Q = typename S::type;
  using V = typename Q::value_type;
  constexpr int writers = 4;
  constexpr int readers = 6;
  constexpr int joiners = 2;
  constexpr int messages = 1024 * 64;
  constexpr int per_writer = messages / writers;
  constexpr int shutdown_at = per_writer / 2;
  const int parties = writers + readers + (immediate ? joiners : 0);
  auto sut = F::template make<Q>();
  auto arrived = F::template make<shared<int>>(0);
  auto shutdown_requested = F::template make<shared<int>>(0);
  auto triggered = F::template make<shared<int>>(0);
  auto readers_shut_down = F::template make<shared<int>>(0);
  auto empty_after_shutdown = F::template make<shared<int>>(-1);

  {
    typename F::parties ps;
    ps.start_n(writers, [&](std::size_t) {
      for (int i = 0; i < shutdown_at / 2; ++i) sut->put(queue_item<V>(i));
      queue_arrive_and_wait(*arrived, parties);
      for (int i = shutdown_at / 2; i < per_writer; ++i) {
        try {
          sut->put(queue_item<V>(i));
        } catch (const tandem::shut_down_error&) {
          break;
        }
        int expected = 0;
        if (i == shutdown_at && shutdown_requested->compare_exchange_strong(expected, 1))
          triggered->fetch_add(1);
      }
    });
    ps.start_n(readers, [&](std::size_t) {
      (void)sut->get();
      sut->task_done();
      queue_arrive_and_wait(*arrived, parties);
      for (;;) {
        try {
          (void)sut->get_nowait();
          sut->task_done();
        } catch (const tandem::shut_down_error&) {
          readers_shut_down->fetch_add(1);
          break;
        } catch (const tandem::empty_error&) {
          std::this_thread::yield();
        }
      }
    });
    ps.start([&] {
      wait_until([&] { return shutdown_requested->load() != 0; }, 60s);
      sut->shutdown(immediate);
      empty_after_shutdown->store(sut->qsize() == 0 ? 1 : 0);
    });
    if (immediate)
      ps.start_n(joiners, [&](std::size_t) {
        queue_arrive_and_wait(*arrived, parties);
        sut->join();
      });
  }

  CHECK(triggered->load() == 1);
  CHECK(readers_shut_down->load() == readers);
  if (immediate) {
    CHECK(empty_after_shutdown->load() == 1);
    CHECK(sut->empty());
  }
  CHECK(sut->join(0s));
}

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("a shutdown amid many writers and readers ends every one of them" *
                              doctest::test_suite("queue contract"),
                          S, queue_shutdown_many_threads) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{60s};
  run_queue_shutdown_many_threads<S>(false);
}

TEST_CASE_TEMPLATE_DEFINE(
    "an immediate shutdown amid many writers readers and joiners ends every one of them" *
        doctest::test_suite("queue contract"),
    S, queue_shutdown_immediate_many_threads) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{60s};
  run_queue_shutdown_many_threads<S>(true);
}

#define TANDEM_QUEUE_CONTRACT(...)                                                                 \
  TEST_CASE_TEMPLATE_INVOKE(queue_new, __VA_ARGS__);                                               \
  TEST_CASE_TEMPLATE_INVOKE(queue_order_of_kind, __VA_ARGS__);                                     \
  TEST_CASE_TEMPLATE_INVOKE(queue_full, __VA_ARGS__);                                              \
  TEST_CASE_TEMPLATE_INVOKE(queue_blocking_put, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(queue_empty, __VA_ARGS__);                                             \
  TEST_CASE_TEMPLATE_INVOKE(queue_blocking_get, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(queue_nowait, __VA_ARGS__);                                            \
  TEST_CASE_TEMPLATE_INVOKE(queue_negative_timeout, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(queue_task_done_too_often, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(queue_join, __VA_ARGS__);                                              \
  TEST_CASE_TEMPLATE_INVOKE(queue_join_timeout, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(queue_join_blocked, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_empty, __VA_ARGS__);                                    \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_nonempty, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_immediate, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_transitions, __VA_ARGS__);                              \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_all_methods, __VA_ARGS__);                              \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_immediate_all_methods, __VA_ARGS__);                    \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_wakes_get, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_wakes_put, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_get, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_blocked_getters, __VA_ARGS__);                          \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_join, __VA_ARGS__);                                     \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_immediate_join, __VA_ARGS__);                           \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_immediate_join_taken, __VA_ARGS__);                     \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_put_join, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_get_task_done_join, __VA_ARGS__);                       \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_many_threads, __VA_ARGS__);                             \
  TEST_CASE_TEMPLATE_INVOKE(queue_shutdown_immediate_many_threads, __VA_ARGS__)

// -- simple queue contract (BaseSimpleQueueTest) --------------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("puts and gets keep the count" *
                              doctest::test_suite("simple queue contract"),
                          S, simple_queue_basic) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();

  CHECK(sut->empty());
  CHECK(sut->qsize() == 0);
  sut->put(item(1));
  CHECK_FALSE(sut->empty());
  CHECK(sut->qsize() == 1);
  sut->put(item(2));
  sut->put_nowait(item(3));
  CHECK(sut->put(item(4), 0s)); // never blocks: room is always there
  CHECK(sut->qsize() == 4);

  CHECK(value(sut->get()) == 1);
  CHECK(sut->qsize() == 3);
  CHECK(value(sut->get_nowait()) == 2);
  CHECK(sut->qsize() == 2);
  auto third = sut->get(0s);
  REQUIRE(third.has_value());
  CHECK(value(*third) == 3);
  CHECK(sut->qsize() == 1);
  auto fourth = sut->get(100ms);
  REQUIRE(fourth.has_value());
  CHECK(value(*fourth) == 4);
  CHECK(sut->empty());

  CHECK_FALSE(sut->get(0s).has_value());
  auto start = clock_type::now();
  CHECK_FALSE(sut->get(10ms).has_value());
  check_timeout(clock_type::now() - start, 10ms);
  CHECK_THROWS_AS((void)sut->get_nowait(), tandem::empty_error);
  CHECK(sut->empty());
  CHECK(sut->qsize() == 0);
}

TEST_CASE_TEMPLATE_DEFINE("a negative timeout polls a simple queue" *
                              doctest::test_suite("simple queue contract"),
                          S, simple_queue_negative_timeout) {
  TANDEM_QUEUE_BODY_SETUP;
  auto sut = F::template make<Q>();
  sut->put(item(1));

  auto v = sut->get(-1s);
  REQUIRE(v.has_value());
  CHECK(value(*v) == 1);
  auto start = clock_type::now();
  CHECK_FALSE(sut->get(-1s).has_value());
  CHECK(clock_type::now() - start < 1s);
}

namespace tandem::test::bodies {

enum class simple_consume { blocking, nonblocking, timeout };

// Python's BaseSimpleQueueTest.run_threads: n feeders share one sequence of inputs, each ends with
// a sentinel; n consumers take items until they see a sentinel. Returns nothing: it checks that
// every input was delivered exactly once and the queue is left empty.
template <class S, std::size_t inputs>
void simple_queue_run_threads(int n, simple_consume mode) {
  using F = typename S::flavour;
  using Q = typename S::type;
  using V = typename Q::value_type;
  constexpr int sentinel = -1;
  auto sut = F::template make<Q>();
  auto next = F::template make<shared<int>>(0);
  queue_ledger<F, inputs> ledger;

  {
    typename F::parties ps;
    ps.start_n(static_cast<std::size_t>(n), [&](std::size_t) {
      for (;;) {
        int i = next->fetch_add(1);
        if (i >= static_cast<int>(inputs)) {
          sut->put(queue_item<V>(sentinel));
          return;
        }
        sut->put(queue_item<V>(i));
        if (i % 3 == 0) std::this_thread::yield();
      }
    });
    ps.start_n(static_cast<std::size_t>(n), [&](std::size_t) {
      for (;;) {
        std::optional<V> v;
        switch (mode) {
          case simple_consume::blocking:
            v = sut->get();
            break;
          case simple_consume::nonblocking:
            try {
              v = sut->get_nowait();
            } catch (const tandem::empty_error&) {
              std::this_thread::sleep_for(10us);
            }
            break;
          case simple_consume::timeout:
            v = sut->get(10us);
            break;
        }
        if (!v) continue;
        int x = queue_value<V>(*v);
        if (x == sentinel) return;
        ledger.deliver(x);
      }
    });
  }

  CHECK(ledger.complete());
  CHECK(ledger.duplicates() == 0);
  CHECK(sut->empty());
  CHECK(sut->qsize() == 0);
}

} // namespace tandem::test::bodies

TEST_CASE_TEMPLATE_DEFINE("one producer and one consumer see the items in order" *
                              doctest::test_suite("simple queue contract"),
                          S, simple_queue_order) {
  TANDEM_QUEUE_BODY_SETUP;
  constexpr int inputs = 100;
  auto sut = F::template make<Q>();
  auto results = F::template make<std::array<shared<int>, inputs>>();

  {
    typename F::parties ps;
    ps.start([&] {
      for (int i = 0; i < inputs; ++i) {
        sut->put(item(i));
        if (i % 2 == 0) std::this_thread::yield();
      }
    });
    ps.start([&] {
      for (int i = 0; i < inputs; ++i)
        (*results)[static_cast<std::size_t>(i)].store(value(sut->get()));
    });
  }

  bool in_order = true;
  for (int i = 0; i < inputs; ++i)
    in_order = in_order && (*results)[static_cast<std::size_t>(i)].load() == i;
  CHECK(in_order);
  CHECK(sut->empty());
}

TEST_CASE_TEMPLATE_DEFINE("many producers and consumers deliver every item exactly once" *
                              doctest::test_suite("simple queue contract"),
                          S, simple_queue_many_threads) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{60s};
  simple_queue_run_threads<S, 10000>(50, simple_consume::blocking);
}

TEST_CASE_TEMPLATE_DEFINE(
    "many producers and non-blocking consumers deliver every item exactly once" *
        doctest::test_suite("simple queue contract"),
    S, simple_queue_many_threads_nonblock) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{60s};
  simple_queue_run_threads<S, 10000>(50, simple_consume::nonblocking);
}

TEST_CASE_TEMPLATE_DEFINE(
    "many producers and consumers with timeouts deliver every item exactly once" *
        doctest::test_suite("simple queue contract"),
    S, simple_queue_many_threads_timeout) {
  using namespace tandem::test::bodies;
  tandem::test::watchdog guard{60s};
  simple_queue_run_threads<S, 1000>(50, simple_consume::timeout);
}

#define TANDEM_SIMPLE_QUEUE_CONTRACT(...)                                                          \
  TEST_CASE_TEMPLATE_INVOKE(simple_queue_basic, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(simple_queue_negative_timeout, __VA_ARGS__);                           \
  TEST_CASE_TEMPLATE_INVOKE(simple_queue_order, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(simple_queue_many_threads, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(simple_queue_many_threads_nonblock, __VA_ARGS__);                      \
  TEST_CASE_TEMPLATE_INVOKE(simple_queue_many_threads_timeout, __VA_ARGS__)
