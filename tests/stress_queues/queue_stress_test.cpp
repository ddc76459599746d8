// Stress tests of the queues: many producers and consumers, shutdowns in the
// middle of traffic, task_done/join under load. Iteration counts are multiplied
// by tandem::test::stress_scale() (0.1 in the default run, 1.0 under the `long`
// label).
//
// Sizes at scale 1: each of 8 producers puts 1,000,000 items (8,000,000 in
// total) through a bounded queue; measured at about 1 s per queue type in a
// release build on 2 cores, so the full per-producer count is affordable and
// the default run (a tenth) stays well under a second.
//
// Items are 64-bit ids: producer p puts p * per_producer + i for i = 0, 1, ...
// Every consumer marks the ids it receives in a shared bitmap (a second mark is
// a duplicate) and sums them; FIFO queues are also checked to hand each
// producer's items to each consumer in increasing order.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/lifo_queue.hpp>
#include <tandem/priority_queue.hpp>
#include <tandem/queue.hpp>
#include <tandem/simple_queue.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int producers = 8;
constexpr int consumers = 8;
constexpr std::size_t bound = 100; // not a power of two: the ring is larger than the bound

std::int64_t scaled(double n) {
  return std::max<std::int64_t>(1000, static_cast<std::int64_t>(n * tandem::test::stress_scale()));
}

// Generous: a hang is a failure, a slow machine is not.
std::chrono::seconds stress_limit() {
  return std::chrono::seconds(60 + static_cast<int>(600 * tandem::test::stress_scale()));
}

/// One bit per id: which ids arrived, and how many arrived twice.
class bitmap {
public:
  explicit bitmap(std::int64_t ids) : words_(static_cast<std::size_t>(ids / 64 + 1)) {}

  /// Marks `id`; returns false if it was marked already.
  bool mark(std::int64_t id) {
    auto bit = std::uint64_t{1} << (id % 64);
    return (words_[static_cast<std::size_t>(id / 64)].fetch_or(bit, std::memory_order_relaxed) &
            bit) == 0;
  }

  bool test(std::int64_t id) const {
    auto bit = std::uint64_t{1} << (id % 64);
    return (words_[static_cast<std::size_t>(id / 64)].load(std::memory_order_relaxed) & bit) != 0;
  }

private:
  std::vector<std::atomic<std::uint64_t>> words_;
};

template <class Q>
constexpr bool is_fifo = false;
template <class T>
constexpr bool is_fifo<tandem::queue<T>> = true;
template <class T>
constexpr bool is_fifo<tandem::simple_queue<T>> = true;

template <class Q>
std::unique_ptr<Q> make_bounded() {
  if constexpr (std::is_constructible_v<Q, std::size_t>)
    return std::make_unique<Q>(bound);
  else
    return std::make_unique<Q>();
}

// An item that knows whether it was consumed: a consumer takes its id out; an
// item destroyed with its id still in it was dropped (by shutdown(true)), and
// says so.
struct tracked_item {
  std::int64_t id = -1;
  bitmap* dropped = nullptr;
  std::atomic<int>* drop_duplicates = nullptr;

  tracked_item(std::int64_t i, bitmap* d, std::atomic<int>* dup)
      : id(i), dropped(d), drop_duplicates(dup) {}
  tracked_item(tracked_item&& other) noexcept
      : id(std::exchange(other.id, -1)), dropped(other.dropped),
        drop_duplicates(other.drop_duplicates) {}
  tracked_item& operator=(tracked_item&& other) noexcept {
    release();
    id = std::exchange(other.id, -1);
    dropped = other.dropped;
    drop_duplicates = other.drop_duplicates;
    return *this;
  }
  tracked_item(const tracked_item&) = delete;
  tracked_item& operator=(const tracked_item&) = delete;
  ~tracked_item() { release(); }

  /// Takes the id out: the item is consumed.
  std::int64_t take() { return std::exchange(id, -1); }

private:
  void release() noexcept {
    if (id >= 0 && !dropped->mark(id)) ++*drop_duplicates;
  }
};

} // namespace

TYPE_TO_STRING_AS("queue", tandem::queue<std::int64_t>);
TYPE_TO_STRING_AS("lifo_queue", tandem::lifo_queue<std::int64_t>);
TYPE_TO_STRING_AS("priority_queue", tandem::priority_queue<std::int64_t>);
TYPE_TO_STRING_AS("simple_queue", tandem::simple_queue<std::int64_t>);

TEST_SUITE("queue stress") {

  TEST_CASE_TEMPLATE("eight producers and eight consumers deliver every item exactly once", Q,
                     tandem::queue<std::int64_t>, tandem::lifo_queue<std::int64_t>,
                     tandem::priority_queue<std::int64_t>, tandem::simple_queue<std::int64_t>) {
    tandem::test::watchdog guard{stress_limit()};
    const std::int64_t per_producer = scaled(1'000'000);
    const std::int64_t total = per_producer * producers;
    auto sut = make_bounded<Q>();
    bitmap seen{total};
    std::atomic<std::int64_t> duplicates{0};
    std::atomic<std::int64_t> out_of_order{0};
    std::atomic<std::int64_t> sum{0};
    std::atomic<std::int64_t> received{0};
    constexpr std::int64_t sentinel = -1;

    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        for (std::int64_t i = 0; i < per_producer; ++i) sut->put(p * per_producer + i);
      });
    for (int c = 0; c < consumers; ++c)
      threads.emplace_back([&] {
        std::vector<std::int64_t> last(producers, -1);
        std::int64_t local_sum = 0;
        std::int64_t local_count = 0;
        for (;;) {
          std::int64_t id = sut->get();
          if (id == sentinel) break;
          if (!seen.mark(id)) ++duplicates;
          auto& l = last[static_cast<std::size_t>(id / per_producer)];
          if (is_fifo<Q> && id <= l) ++out_of_order;
          l = id;
          local_sum += id;
          ++local_count;
        }
        sum += local_sum;
        received += local_count;
      });
    for (int p = 0; p < producers; ++p) threads[static_cast<std::size_t>(p)].join();
    // A LIFO or priority queue hands the sentinels out before older items, so
    // they go in only once the producers' items are all taken; a FIFO queue
    // hands them out last anyway.
    if constexpr (!is_fifo<Q>)
      tandem::test::wait_until([&] { return sut->empty(); }, stress_limit());
    for (int c = 0; c < consumers; ++c) sut->put(sentinel);
    for (auto& t : threads)
      if (t.joinable()) t.join();

    CHECK(received == total);
    CHECK(duplicates == 0);
    CHECK(out_of_order == 0);
    CHECK(sum == total * (total - 1) / 2);
    bool all_seen = true;
    for (std::int64_t id = 0; id < total && all_seen; ++id) all_seen = seen.test(id);
    CHECK(all_seen);
    CHECK(sut->empty());
  }

  // Every item whose put returned normally was *accepted*; a put that threw
  // shut_down_error *refused* its item and left it with the producer. After a
  // plain shutdown, every accepted item is consumed exactly once. After an
  // immediate shutdown, every accepted item is either consumed exactly once or
  // dropped (destroyed unconsumed by the shutdown), never both, never neither.
  // No refused item is ever consumed or dropped, no item is duplicated, and
  // once the consumers have called task_done for what they took, join() returns
  // at once.
  TEST_CASE("a shutdown in the middle of traffic loses and duplicates nothing") {
    tandem::test::watchdog guard{stress_limit()};
    bool immediate = false;
    SUBCASE("plain shutdown") {
      immediate = false;
    }
    SUBCASE("immediate shutdown") {
      immediate = true;
    }
    const std::int64_t per_producer = scaled(1'000'000);
    const std::int64_t total = per_producer * producers;
    tandem::queue<tracked_item> sut{bound};
    bitmap consumed{total};
    bitmap dropped{total};
    std::atomic<int> duplicates{0};
    std::atomic<int> drop_duplicates{0};
    std::atomic<int> untouched_violations{0};
    std::atomic<int> out_of_order{0};
    std::atomic<std::int64_t> consumed_count{0};
    std::vector<std::int64_t> accepted(producers, 0);

    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        for (std::int64_t i = 0; i < per_producer; ++i) {
          tracked_item item{p * per_producer + i, &dropped, &drop_duplicates};
          try {
            sut.put(std::move(item));
          } catch (const tandem::shut_down_error&) {
            if (item.take() != p * per_producer + i) // refused: still ours, and untouched
              ++untouched_violations;
            break;
          }
          accepted[static_cast<std::size_t>(p)] = i + 1;
        }
      });
    for (int c = 0; c < consumers; ++c)
      threads.emplace_back([&] {
        std::vector<std::int64_t> last(producers, -1);
        for (;;) {
          std::int64_t id = -1;
          try {
            id = sut.get().take();
          } catch (const tandem::shut_down_error&) {
            break;
          }
          if (!consumed.mark(id)) ++duplicates;
          auto& l = last[static_cast<std::size_t>(id / per_producer)];
          if (id <= l) ++out_of_order;
          l = id;
          ++consumed_count;
          sut.task_done();
        }
      });
    tandem::test::wait_until([&] { return consumed_count.load() >= total / 3; }, stress_limit());
    sut.shutdown(immediate);
    for (auto& t : threads) t.join();

    CHECK(duplicates == 0);
    CHECK(drop_duplicates == 0);
    CHECK(untouched_violations == 0);
    CHECK(out_of_order == 0);
    std::int64_t accepted_total = 0;
    std::int64_t dropped_total = 0;
    std::int64_t neither = 0;
    std::int64_t both = 0;
    std::int64_t refused_seen = 0;
    for (int p = 0; p < producers; ++p) {
      auto n = accepted[static_cast<std::size_t>(p)];
      accepted_total += n;
      for (std::int64_t i = 0; i < per_producer; ++i) {
        auto id = p * per_producer + i;
        bool c = consumed.test(id);
        bool d = dropped.test(id);
        if (i < n) {
          neither += !c && !d;
          both += c && d;
          dropped_total += d;
        } else {
          refused_seen += c || d;
        }
      }
    }
    CHECK(accepted_total < total); // the shutdown did come in the middle
    CHECK(neither == 0);
    CHECK(both == 0);
    CHECK(refused_seen == 0);
    CHECK(consumed_count + dropped_total == accepted_total);
    if (!immediate) CHECK(dropped_total == 0);
    CHECK(sut.empty());
    CHECK(sut.unfinished_tasks() == 0);
    CHECK(sut.join(0s));
  }

  TEST_CASE("join under load returns only when every task put before it is done") {
    tandem::test::watchdog guard{stress_limit()};
    constexpr int workers = 4;
    constexpr int joiners = 2;
    const std::int64_t per_producer = scaled(1'000'000) / 2;
    const std::int64_t total = per_producer * workers;
    tandem::queue<std::int64_t> sut{bound};
    std::atomic<std::int64_t> put_done{0};
    std::atomic<std::int64_t> tasks_done{0};
    std::atomic<std::int64_t> early_returns{0};
    std::atomic<std::int64_t> joins_returned{0};
    std::atomic<bool> producing{true};

    std::vector<std::thread> producer_threads;
    std::vector<std::thread> others;
    for (int p = 0; p < workers; ++p)
      producer_threads.emplace_back([&, p] {
        for (std::int64_t i = 0; i < per_producer; ++i) {
          sut.put(p * per_producer + i);
          ++put_done; // after the put: puts counted here happened before a
                      // later join started
        }
      });
    for (int c = 0; c < workers; ++c)
      others.emplace_back([&] {
        for (;;) {
          try {
            (void)sut.get();
          } catch (const tandem::shut_down_error&) {
            return;
          }
          ++tasks_done; // before task_done: a join that returns sees at least
                        // this count
          sut.task_done();
        }
      });
    for (int j = 0; j < joiners; ++j)
      others.emplace_back([&] {
        while (producing.load()) {
          auto before = put_done.load();
          if (sut.join(1ms)) {
            ++joins_returned;
            if (tasks_done.load() < before) ++early_returns;
          }
        }
      });
    for (auto& t : producer_threads) t.join();
    sut.join();
    auto done_at_join = tasks_done.load();
    producing = false;
    sut.shutdown();
    for (auto& t : others) t.join();

    CHECK(done_at_join == total);
    CHECK(early_returns == 0);
    CHECK(sut.unfinished_tasks() == 0);
    MESSAGE("joins that returned while traffic ran: " << joins_returned.load());
  }

} // TEST_SUITE
