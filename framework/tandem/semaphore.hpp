// tandem::semaphore: Python's `threading.Semaphore`, a counter of available units.
//
// A semaphore holds a count, never negative (it starts at the value given to the constructor, 1 by
// default). acquire() takes one unit, blocking while the count is 0; release(n) adds n units and
// wakes up to n blocked acquirers. Nothing bounds the count except max(): any thread may release
// any number of units (see tandem::bounded_semaphore for a semaphore that refuses to go past its
// initial value).
//
// It meets the C++ *TimedLockable* requirements (lock = acquire one unit, unlock = release one), so
// std::scoped_lock and std::unique_lock work, e.g. to bound concurrency:
//
//   tandem::semaphore slots{4};
//   void download(const url& u) {
//     std::scoped_lock guard{slots};      // at most four downloads at a time
//     fetch(u);
//   }
//
// Memory ordering: a successful acquire synchronizes with the release that provided its unit.
//
// Performance: an uncontended acquire or release is one compare-exchange, with no system call
// unless a thread sleeps. Acquisition is not FIFO.
//
// Thread-safety: every member may be called concurrently from any thread.
//
// Lifetime: destroying a semaphore while threads are blocked in it is undefined behaviour. A
// semaphore is neither copyable nor movable.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/timeout.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stop_token>
#include <string>
#include <utility>

namespace tandem {

class semaphore {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A semaphore with one unit (Python's `Semaphore()`).
  semaphore() noexcept : count_(1) {}

  /// A semaphore with `value` units; `value` may be of any integer type. Throws value_error when
  /// `value` is negative (Python's ValueError) or greater than max().
  template <std::integral Int>
  explicit semaphore(Int value) : count_(checked_initial(value, "semaphore")) {}

  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// The largest count a semaphore can hold.
  static constexpr std::ptrdiff_t max() noexcept {
    return std::numeric_limits<std::int32_t>::max();
  }

  // -- Python's interface ---------------------------------------------------------------------

  /// Takes one unit, blocking while there is none, until a release() provides one or `t` expires.
  /// Returns true when a unit was taken, false when the timeout expired first. A zero timeout tries
  /// once without blocking (Python's `acquire(blocking=False)`).
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool acquire(timeout t = forever) noexcept { return try_take() || acquire_slow(t, nullptr); }

  /// As acquire(t), and also returns false promptly once `st` is stopped (also when it was
  /// stopped before the call). A stop request never throws.
  bool acquire(const std::stop_token& st, timeout t = forever) noexcept {
    if (st.stop_requested()) return false;
    return try_take() || acquire_slow(t, &st);
  }

  /// Adds `n` units and wakes up to `n` blocked acquirers. Throws value_error, and changes
  /// nothing, when the count would exceed max(). `release(0)` does nothing.
  void release(std::size_t n = 1) {
    if (n == 0) return;
    auto c = count_.load(std::memory_order_relaxed);
    do {
      if (n > static_cast<std::size_t>(max()) - c) throw_overflow(c, n);
    } while (!count_.compare_exchange_weak(c, c + static_cast<std::uint32_t>(n),
                                           std::memory_order_seq_cst, std::memory_order_relaxed));
    wake(n);
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  /// Blocks until a unit is taken (acquire() with no timeout).
  void lock() noexcept { acquire(); }

  /// Takes a unit if one is available; never blocks.
  bool try_lock() noexcept { return try_take(); }

  /// acquire(d): blocks at most for `d`.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
    return acquire(timeout{d});
  }

  /// Blocks at most until `tp` on any clock (other clocks than steady_clock are measured once, at
  /// the call).
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return acquire(timeout::until(tp));
  }

  /// Releases one unit, like release(), but never throws: at max() it does nothing.
  void unlock() noexcept { release_within(1, static_cast<std::uint32_t>(max())); }

protected:
  template <std::integral Int>
  static std::uint32_t checked_initial(Int value, const char* type) {
    if (std::cmp_less(value, 0))
      throw value_error(std::string{"tandem::"} + type + ": the initial value " +
                        std::to_string(value) + " is negative; give a count of 0 or more");
    if (std::cmp_greater(value, max()))
      throw value_error(std::string{"tandem::"} + type + ": the initial value " +
                        std::to_string(value) + " exceeds " + std::to_string(max()));
    return static_cast<std::uint32_t>(value);
  }

  /// Adds `n` units unless the count would exceed `limit`; returns false (changing nothing) then.
  /// The check and the addition are one atomic step.
  bool release_within(std::size_t n, std::uint32_t limit) noexcept {
    if (n == 0) return true;
    auto c = count_.load(std::memory_order_relaxed);
    do {
      if (c > limit || n > limit - c) return false;
    } while (!count_.compare_exchange_weak(c, c + static_cast<std::uint32_t>(n),
                                           std::memory_order_seq_cst, std::memory_order_relaxed));
    wake(n);
    return true;
  }

  /// The current count (a snapshot).
  std::uint32_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

private:
  // Spinning pays off when a unit is released within about a microsecond (a semaphore used as a
  // lock); past that, sleeping costs less than burning the core.
  static constexpr int spin_limit = 100;

  bool try_take() noexcept {
    auto c = count_.load(std::memory_order_relaxed);
    while (c != 0)
      if (count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    return false;
  }

  // After a release changed the count (seq_cst), a sleeper that announced itself in waiters_
  // (seq_cst) before reading the count either saw the new count or is seen here: no lost wakeup.
  void wake(std::size_t n) noexcept {
    if (waiters_.load(std::memory_order_seq_cst) != 0)
      detail::futex_wake(count_, n > 0x7fffffff ? 0x7fffffff : static_cast<int>(n));
  }

  bool acquire_slow(const timeout& t, const std::stop_token* st) noexcept {
    if (!t.is_forever() && t.expired()) return false;
    for (int i = 0; i < spin_limit; ++i) {
      if (count_.load(std::memory_order_relaxed) != 0 && try_take()) return true;
      detail::cpu_relax();
    }
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool taken = false;
    for (;;) {
      if (count_.load(std::memory_order_seq_cst) != 0 && try_take()) {
        taken = true;
        break;
      }
      if (st != nullptr && st->stop_requested()) break;
      bool in_time =
          st != nullptr ? detail::futex_wait(count_, 0, t, *st) : detail::futex_wait(count_, 0, t);
      if (!in_time) {
        taken = try_take();
        break;
      }
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    // A release may have woken this thread for a unit it now leaves behind (it was stopped):
    // pass the wake on so that no other sleeper stays asleep beside an available unit.
    if (!taken && count_.load(std::memory_order_seq_cst) != 0 &&
        waiters_.load(std::memory_order_seq_cst) != 0)
      detail::futex_wake(count_, 1);
    return taken;
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_overflow(std::uint32_t count,
                                                                    std::size_t n) {
    throw value_error("tandem::semaphore::release: releasing " + std::to_string(n) +
                      " units on top of " + std::to_string(count) + " would exceed " +
                      std::to_string(max()));
  }

  std::atomic<std::uint32_t> count_;
  std::atomic<std::uint32_t> waiters_{0}; // threads in (or about to enter) a futex wait on count_
};

} // namespace tandem
