// Machinery shared by detail::basic_queue and tandem::simple_queue: the queue's mutex and a
// scoped lock for it, the lists of sleeping threads and the wait loop, the commit step of a take,
// and the errors the queues throw.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>

namespace tandem::detail {

/// The mutex of a queue: detail::futex_mutex's three-state protocol (0 free, 1 locked, 2 locked
/// with possible sleepers; U. Drepper, "Futexes Are Tricky"), with a different wait: a thread
/// that finds it locked looks again every half microsecond, four times, then sleeps.
///
/// Why: a queue's critical sections last nanoseconds, so two threads that meet on the lock are
/// a producer and a consumer running at the same time, and how the loser waits decides how the
/// pair proceeds. Measured with one producer and one consumer on two cores:
///   - polling the lock word continuously (futex_mutex spins that way) hands the lock over on
///     nearly every item, bouncing its cache line between the cores: the pair can settle there
///     for a whole run at 5 to 20 million items per second;
///   - sleeping at once leaves the holder a run of operations on a cache line that stays in its
///     core (65 million per second), but where waking a sleeping thread is slow (on this
///     virtual machine, at times) the sleeps and wakes cost two thirds of the throughput;
///   - looking every half microsecond lets the holder finish a few dozen operations between two
///     looks and rarely sleeps: as fast as sleeping where wakes are cheap, 2.5 times faster
///     where they are not. Longer spins (5 microseconds and more) lose a quarter of the
///     throughput again.
///
/// Memory ordering: lock() acquires, unlock() releases.
class queue_mutex {
public:
  constexpr queue_mutex() noexcept = default;
  queue_mutex(const queue_mutex&) = delete;
  queue_mutex& operator=(const queue_mutex&) = delete;

  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  void lock() noexcept {
    if (!try_lock()) lock_contended();
  }

  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) futex_wake(state_, 1);
  }

private:
  static constexpr int polls = 4;
  static constexpr std::chrono::nanoseconds poll_interval{500};

  void lock_contended() noexcept {
    // Between two looks the lock word is left alone, so its cache line stays with the holder.
    auto start = std::chrono::steady_clock::now();
    for (int poll = 1; poll <= polls; ++poll) {
      while (std::chrono::steady_clock::now() - start < poll * poll_interval) cpu_relax();
      if (state_.load(std::memory_order_relaxed) == 0 && try_lock()) return;
    }
    // Marks the mutex contended; if it was free meanwhile, it is ours (in state 2, which costs
    // the next unlock one wake that finds nobody).
    while (state_.exchange(2, std::memory_order_acquire) != 0) futex_wait(state_, 2, forever);
  }

  std::atomic<std::uint32_t> state_{0};
};

/// Holds a queue_mutex for a scope; unlock() and lock() let a waiter drop it while it sleeps.
using queue_lock = std::unique_lock<queue_mutex>;

enum class queue_wait_status { ready, timed_out, stopped };

/// A list of the threads sleeping on one of a queue's conditions (not empty, not full, all tasks
/// done), guarded by the queue's mutex. Each sleeper waits on its own futex word in a node on its
/// own stack; a notify unlinks a node, marks it and wakes exactly that thread. So a notify costs
/// a system call only when a thread sleeps and has not been woken yet, and never wakes a thread
/// twice: the property that keeps a busy producer/consumer pair free of system calls.
///
/// Requires: notify_one/notify_all are called with the queue's mutex held (the woken node lives on
/// the sleeper's stack until the sleeper has the mutex again).
class queue_waiters {
public:
  queue_waiters() noexcept = default;
  queue_waiters(const queue_waiters&) = delete;
  queue_waiters& operator=(const queue_waiters&) = delete;

  /// Sleeps until notified, `t` expires or `st` (if not null) is stopped. `lk` holds the queue's
  /// mutex on entry and on return. Returns true when notified.
  bool wait(queue_lock& lk, const timeout& t, const std::stop_token* st) noexcept {
    node self;
    link(self);
    lk.unlock();
    while (self.signaled.load(std::memory_order_acquire) == 0) {
      if (st != nullptr && st->stop_requested()) break;
      bool in_time =
          st != nullptr ? futex_wait(self.signaled, 0, t, *st) : futex_wait(self.signaled, 0, t);
      if (!in_time) break;
    }
    lk.lock();
    if (self.signaled.load(std::memory_order_relaxed) != 0) return true;
    unlink(self);
    return false;
  }

  /// Wakes the longest-sleeping thread, if any.
  void notify_one() noexcept {
    if (head_ != nullptr) wake(*head_);
  }

  /// Wakes every sleeping thread.
  void notify_all() noexcept {
    while (head_ != nullptr) wake(*head_);
  }

  bool empty() const noexcept { return head_ == nullptr; }

private:
  struct node {
    std::atomic<std::uint32_t> signaled{0};
    node* prev = nullptr;
    node* next = nullptr;
  };

  void link(node& n) noexcept {
    n.prev = tail_;
    if (tail_ != nullptr)
      tail_->next = &n;
    else
      head_ = &n;
    tail_ = &n;
  }

  void unlink(node& n) noexcept {
    (n.prev != nullptr ? n.prev->next : head_) = n.next;
    (n.next != nullptr ? n.next->prev : tail_) = n.prev;
  }

  void wake(node& n) noexcept {
    unlink(n);
    n.signaled.store(1, std::memory_order_release);
    futex_wake(n.signaled, 1);
  }

  node* head_ = nullptr; // guarded by the queue's mutex
  node* tail_ = nullptr; // guarded by the queue's mutex
};

/// Waits on `w` (the queue's mutex held by `lk`) until `ready()` holds, `t` expires or `st` (if
/// not null) is stopped. Holds the lock on return. ready() is checked before every other
/// outcome, so a waiter that was notified and can proceed always does: no notification is lost
/// to a timeout or a stop request.
///
/// It sleeps at once, without spinning first. Measured with a producer and a consumer on two
/// cores: a waiter that spins wakes as soon as one slot or one item is there and then contends
/// for the lock on every item, while a waiter that sleeps lets the other side run a long batch
/// on a lock and buffer that stay in its core's cache; the batches more than repay the sleep
/// and the wake (spinning first cost 20% of the throughput when polling every half
/// microsecond for two, 40% when polling continuously, 85% when polling for 50 microseconds).
template <class Ready>
queue_wait_status queue_wait(queue_waiters& w, queue_lock& lk, Ready ready, const timeout& t,
                             const std::stop_token* st) {
  for (;;) {
    if (ready()) return queue_wait_status::ready;
    if (st != nullptr && st->stop_requested()) return queue_wait_status::stopped;
    if (t.expired()) return queue_wait_status::timed_out;
    if (!w.wait(lk, t, st) && !ready())
      return t.expired() ? queue_wait_status::timed_out : queue_wait_status::stopped;
  }
}

/// Runs `commit()` when the scope ends normally, not when an exception leaves it: the step of
/// a take that removes the element once the caller's copy of it exists.
template <class Commit, bool can_throw>
class queue_commit_guard {
public:
  explicit queue_commit_guard(Commit commit) noexcept : commit_(commit) {}
  queue_commit_guard(const queue_commit_guard&) = delete;
  queue_commit_guard& operator=(const queue_commit_guard&) = delete;
  ~queue_commit_guard() {
    if constexpr (can_throw) {
      if (std::uncaught_exceptions() != exceptions_) return;
    }
    commit_();
  }

private:
  Commit commit_;
  int exceptions_ = can_throw ? std::uncaught_exceptions() : 0;
};

template <class R>
inline constexpr bool queue_is_optional = false;
template <class U>
inline constexpr bool queue_is_optional<std::optional<U>> = true;

/// Builds the value a get returns (T or std::optional<T>) straight from the queue's element,
/// copying it when its move constructor may throw, so the element stays intact if it does.
template <class R, class T>
R queue_make_result(T& element) {
  if constexpr (queue_is_optional<R>)
    return R(std::in_place, std::move_if_noexcept(element));
  else
    return R(std::move_if_noexcept(element));
}

// The errors. Out of line and cold: they are the exceptional paths.

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_put_shut_down() {
  throw shut_down_error("put on a shut-down queue: shutdown() was called, so the queue accepts "
                        "no more items; stop producing, or create a new queue");
}

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_get_shut_down() {
  throw shut_down_error("get on a shut-down queue that is empty: shutdown() was called and "
                        "every item has been taken (or dropped by shutdown(true)); stop "
                        "consuming");
}

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_full(std::size_t maxsize) {
  throw full_error("put_nowait on a full queue (maxsize " + std::to_string(maxsize) +
                   "): wait with put(item) or put(item, timeout), or retry later");
}

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_empty() {
  throw empty_error("get_nowait on an empty queue: wait with get() or get(timeout), or retry "
                    "later");
}

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_task_done() {
  throw value_error("task_done() called more times than items were put: call it once for "
                    "each item taken with get()");
}

} // namespace tandem::detail
