// detail::basic_queue<T, Container>: the one implementation of Python's queue.Queue behind
// tandem::queue (FIFO), tandem::lifo_queue (LIFO) and tandem::priority_queue (least first). The
// container decides the order (detail/queue_containers.hpp); everything else (bounding,
// blocking, timeouts, cancellation, task tracking, shutdown, exception safety) lives here once.
//
// The public headers (<tandem/queue.hpp>, <tandem/lifo_queue.hpp>, <tandem/priority_queue.hpp>)
// describe the type as a whole; the member contracts are here, where the members are.
//
// Implementation: one detail::queue_mutex guards the container and the task count; three lists
// of sleeping threads (detail::queue_waiters: not_empty_, not_full_, all_done_) carry Python's
// three conditions. A waiter sleeps at once (see queue_wait for why it does not spin); a notify
// costs a system call only when a thread sleeps and was not woken yet, so a busy producer and
// consumer pair works in long batches without system calls.
#pragma once

#include <tandem/detail/queue_sync.hpp>
#include <tandem/timeout.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace tandem::detail {

template <class T, class Container>
class basic_queue {
  static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                "a queue holds non-const objects");
  static_assert(std::is_nothrow_destructible_v<T>,
                "a queue's elements must not throw when destroyed");
  static_assert(std::is_move_constructible_v<T>, "a queue's elements must be movable or copyable");

public:
  using value_type = T;
  using size_type = std::size_t;

  // -- construction ---------------------------------------------------------------------------

  /// A queue that holds at most `maxsize` items; 0 means no limit (Python's maxsize <= 0).
  /// Allocates nothing until the first put.
  explicit basic_queue(std::size_t maxsize = 0) noexcept(
      std::is_nothrow_default_constructible_v<Container>)
      : maxsize_(maxsize) {}

  /// As above, with the container built from `args` (priority_queue passes its comparison).
  template <class... Args>
  basic_queue(std::size_t maxsize, std::in_place_t, Args&&... args)
      : maxsize_(maxsize), c_(std::forward<Args>(args)...) {}

  basic_queue(const basic_queue&) = delete;
  basic_queue& operator=(const basic_queue&) = delete;

  /// Destroys the items still queued. Requires: no thread is using the queue.
  ~basic_queue() = default;

  // -- putting --------------------------------------------------------------------------------

  /// Python's `put(item)`: adds `item`, blocking while the queue is full. Counts one more
  /// unfinished task.
  ///
  /// Throws shut_down_error if the queue is shut down, also when the shutdown happens while this
  /// call waits for room. Throws whatever copying or moving `item` into the queue throws
  /// (std::bad_alloc included); the queue is then unchanged.
  ///
  /// The rvalue overloads move from `item` only once the put cannot fail any more: a put that
  /// throws, times out or is stopped leaves `item` untouched. (When T's move constructor may
  /// throw and T is copyable, `item` is copied instead, as std::move_if_noexcept does, so it
  /// stays untouched even then.)
  void put(const T& item) { put_impl(item, forever, nullptr, false); }
  void put(T&& item) { put_impl(std::move_if_noexcept(item), forever, nullptr, false); }

  /// Python's `put(item, timeout=t)`: as put(item), but gives up when `t` expires first and
  /// returns false (where Python raises Full); returns true once the item is in the queue.
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent
  /// to an immediate deadline. A zero timeout puts only if there is room right away.
  ///
  ///   if (!q.put(job, 100ms)) log("queue still full after 100 ms");
  bool put(const T& item, timeout t) { return put_impl(item, t, nullptr, false); }
  bool put(T&& item, timeout t) { return put_impl(std::move_if_noexcept(item), t, nullptr, false); }

  /// As put(item, t), and also returns false promptly once `st` is stopped while waiting for
  /// room. If `st` is stopped on entry, returns false at once and changes nothing (even when
  /// there is room). A stop request never makes it throw.
  bool put(std::stop_token st, const T& item, timeout t = forever) {
    if (st.stop_requested()) return false;
    return put_impl(item, t, &st, false);
  }
  bool put(std::stop_token st, T&& item, timeout t = forever) {
    if (st.stop_requested()) return false;
    return put_impl(std::move_if_noexcept(item), t, &st, false);
  }

  /// Python's `put_nowait(item)`: adds `item` if there is room right away; never blocks.
  /// Throws full_error when the queue is full, shut_down_error when it is shut down (checked
  /// first, as Python does), and what copying or moving `item` throws; in every case the queue
  /// and `item` are unchanged.
  void put_nowait(const T& item) { put_impl(item, forever, nullptr, true); }
  void put_nowait(T&& item) { put_impl(std::move_if_noexcept(item), forever, nullptr, true); }

  // -- getting --------------------------------------------------------------------------------

  /// Python's `get()`: removes and returns the next item (the order is the queue's: FIFO, LIFO or
  /// least first), blocking while the queue is empty.
  ///
  /// Throws shut_down_error once the queue is shut down and empty, also when that happens while
  /// this call waits; items queued before a plain shutdown() are still returned. Throws what
  /// copying or moving the item out throws (or, in a priority_queue, what the comparison
  /// throws); the item then stays in the queue, in its place.
  ///
  /// Memory ordering: everything the putting thread did before its put happens-before the get
  /// that returns that item.
  T get() {
    queue_lock lk{mtx_};
    wait_for_item(lk, forever, nullptr, false);
    return take<T>();
  }

  /// Python's `get(timeout=t)`: as get(), but returns std::nullopt when `t` expires first
  /// (where Python raises Empty). Never returns nullopt because of a shutdown: on a shut-down,
  /// empty queue it throws shut_down_error, even with a zero timeout.
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent
  /// to an immediate deadline. A zero timeout takes an item only if one is there right away.
  std::optional<T> get(timeout t) {
    queue_lock lk{mtx_};
    if (!wait_for_item(lk, t, nullptr, false)) return std::nullopt;
    return take<std::optional<T>>();
  }

  /// As get(t), and also returns std::nullopt promptly once `st` is stopped while waiting. If
  /// `st` is stopped on entry, returns nullopt at once and takes nothing (even when an item is
  /// there). A stop request never makes it throw.
  ///
  ///   while (auto job = q.get(stop)) run(*job);   // a worker that ends on a stop request
  std::optional<T> get(std::stop_token st, timeout t = forever) {
    if (st.stop_requested()) return std::nullopt;
    queue_lock lk{mtx_};
    if (!wait_for_item(lk, t, &st, false)) return std::nullopt;
    return take<std::optional<T>>();
  }

  /// Python's `get_nowait()`: removes and returns the next item if there is one; never blocks.
  /// Throws shut_down_error when the queue is shut down and empty, empty_error when it is just
  /// empty, and what taking the item out throws (as get()).
  T get_nowait() {
    queue_lock lk{mtx_};
    wait_for_item(lk, forever, nullptr, true);
    return take<T>();
  }

  // -- tasks ----------------------------------------------------------------------------------

  /// Python's `task_done()`: tells the queue that the work on one item taken with get() is
  /// complete. When no unfinished task is left, every join() returns. Throws value_error
  /// (changing nothing) when called more times than items were put.
  void task_done() {
    queue_lock lk{mtx_};
    if (unfinished_ == 0) queue_throw_task_done();
    if (--unfinished_ == 0) all_done_.notify_all();
  }

  /// Python's `join()`: blocks until every item ever put has been taken and reported with
  /// task_done() (or dropped by shutdown(true)). Returns true then, false when `t` expires first.
  /// A plain shutdown() does not release it. Negative timeouts are equivalent to a zero
  /// timeout. Deadlines in the past are equivalent to an immediate deadline.
  ///
  /// Memory ordering: every task_done() that brought the count to zero happens-before a join()
  /// that returns true because of it.
  bool join(timeout t = forever) { return join_impl(t, nullptr); }

  /// As join(t), and also returns false promptly once `st` is stopped (at once if it is
  /// stopped on entry). A stop request never makes it throw.
  bool join(std::stop_token st, timeout t = forever) {
    if (st.stop_requested()) return false;
    return join_impl(t, &st);
  }

  // -- shutdown -------------------------------------------------------------------------------

  /// Python 3.13's `shutdown(immediate=False)`: from now on every put form throws
  /// shut_down_error, and every get form throws it once the queue is empty. Wakes every thread
  /// blocked in a put or a get (they throw, or a getter takes a remaining item).
  ///
  /// With `immediate`, also drops every queued item at once (so gets throw right away) and
  /// counts each dropped item as a finished task, waking join()ers: join() returns unless items
  /// already taken still wait for their task_done(). The dropped items are destroyed after the
  /// queue's lock is released, so their destructors may use the queue.
  ///
  /// Shutting down again is allowed (shutdown() then shutdown(true) drops what is left).
  /// Never throws.
  void shutdown(bool immediate = false) noexcept {
    // Declared before the lock: destroyed after it is released.
    std::optional<decltype(std::declval<Container&>().take_all())> dropped;
    queue_lock lk{mtx_};
    shut_down_.store(true, std::memory_order_release);
    if (immediate) {
      auto n = c_.size();
      dropped.emplace(c_.take_all());
      unfinished_ -= std::min(unfinished_, n);
      size_.store(0, std::memory_order_release);
      all_done_.notify_all();
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  // -- observers ------------------------------------------------------------------------------

  /// Python's `qsize()`: the number of queued items (a snapshot: other threads may change it
  /// right after). Lock-free.
  std::size_t qsize() const noexcept { return size_.load(std::memory_order_acquire); }

  /// Python's `empty()`: qsize() == 0 (a snapshot).
  bool empty() const noexcept { return qsize() == 0; }

  /// Python's `full()`: a bounded queue holding maxsize() items (a snapshot). Never true for an
  /// unbounded queue.
  bool full() const noexcept { return maxsize_ != 0 && qsize() >= maxsize_; }

  /// The bound given at construction; 0 for an unbounded queue.
  std::size_t maxsize() const noexcept { return maxsize_; }

  /// Python's `is_shutdown`: true once shutdown() was called.
  bool is_shutdown() const noexcept { return shut_down_.load(std::memory_order_acquire); }

  /// Python's `unfinished_tasks`: items put and not yet reported with task_done() (or dropped by
  /// shutdown(true)).
  std::size_t unfinished_tasks() const noexcept {
    queue_lock lk{mtx_};
    return unfinished_;
  }

private:
  // Puts `item` (const T& or T&&); true when it is queued, false on timeout or stop.
  template <class U>
  bool put_impl(U&& item, timeout t, const std::stop_token* st, bool nowait) {
    queue_lock lk{mtx_};
    if (shut_down_.load(std::memory_order_relaxed)) queue_throw_put_shut_down();
    if (maxsize_ != 0 && c_.size() >= maxsize_) {
      if (nowait) queue_throw_full(maxsize_);
      auto status = queue_wait(
          not_full_, lk,
          [this] { return c_.size() < maxsize_ || shut_down_.load(std::memory_order_relaxed); }, t,
          st);
      // Python checks for a shutdown after every wait, before it looks at the room.
      if (shut_down_.load(std::memory_order_relaxed)) queue_throw_put_shut_down();
      if (status != queue_wait_status::ready) return false;
    }
    c_.push(std::forward<U>(item));
    ++unfinished_;
    size_.store(c_.size(), std::memory_order_release);
    // Under the lock: once a getter can see the item, this call touches the queue no more (a
    // consumer may destroy the queue as soon as it has the last item).
    not_empty_.notify_one();
    return true;
  }

  // Waits until an item is there; true then. False on timeout or stop. Throws shut_down_error
  // when the queue is shut down and empty, empty_error for an empty queue with `nowait`.
  bool wait_for_item(queue_lock& lk, timeout t, const std::stop_token* st, bool nowait) {
    if (!c_.empty()) return true;
    if (shut_down_.load(std::memory_order_relaxed)) queue_throw_get_shut_down();
    if (nowait) queue_throw_empty();
    queue_wait(
        not_empty_, lk,
        [this] { return !c_.empty() || shut_down_.load(std::memory_order_relaxed); }, t, st);
    if (!c_.empty()) return true;
    if (shut_down_.load(std::memory_order_relaxed)) queue_throw_get_shut_down();
    return false;
  }

  // Removes the top item and returns it as R (T or std::optional<T>). Requires: mtx_ held and
  // !c_.empty(). Strong guarantee: the item is removed only after R was built from it.
  template <class R>
  R take() {
    auto plan = c_.prepare_pop();
    auto commit = [this, plan]() noexcept {
      c_.commit_pop(plan);
      size_.store(c_.size(), std::memory_order_release);
      if (maxsize_ != 0) not_full_.notify_one();
    };
    queue_commit_guard<decltype(commit), !std::is_nothrow_move_constructible_v<T>> guard{commit};
    return queue_make_result<R>(c_.top());
  }

  bool join_impl(timeout t, const std::stop_token* st) {
    queue_lock lk{mtx_};
    if (unfinished_ == 0) return true;
    return queue_wait(
               all_done_, lk, [this] { return unfinished_ == 0; }, t, st) ==
           queue_wait_status::ready;
  }

  mutable queue_mutex mtx_;
  std::atomic<std::size_t> size_{0};   // c_.size(), stored under mtx_, read without it
  std::atomic<bool> shut_down_{false}; // stored under mtx_, read without it
  std::size_t unfinished_ = 0;         // guarded by mtx_
  const std::size_t maxsize_;
  queue_waiters not_empty_; // guarded by mtx_
  queue_waiters not_full_;  // guarded by mtx_
  queue_waiters all_done_;  // guarded by mtx_
  Container c_;             // guarded by mtx_
};

} // namespace tandem::detail
