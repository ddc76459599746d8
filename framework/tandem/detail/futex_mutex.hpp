// detail::futex_mutex: the three-state futex mutex at the heart of tandem::lock and of every
// primitive that needs internal mutual exclusion (queues, barrier, condition).
//
// States: 0 unlocked, 1 locked, 2 locked and possibly contended. The uncontended path is one
// compare-exchange to lock and one exchange to unlock, inlined, with no system call; a waiter
// spins briefly, then sleeps on the word (U. Drepper, "Futexes Are Tricky", mutex #3). It is not
// an owning mutex: any thread may unlock it, as Python's Lock allows.
//
// Memory ordering: lock() acquires, unlock() releases: everything written before unlock() is
// visible to the next thread that locks.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <cstdint>
#include <stop_token>

namespace tandem::detail {

class futex_mutex {
public:
  // -- construction ---------------------------------------------------------------------------

  constexpr futex_mutex() noexcept = default;
  futex_mutex(const futex_mutex&) = delete;
  futex_mutex& operator=(const futex_mutex&) = delete;

  // -- locking --------------------------------------------------------------------------------

  /// Takes the mutex if it is free; never blocks.
  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  /// Blocks until the mutex is taken.
  void lock() noexcept {
    if (!try_lock())
      lock_slow(forever, nullptr);
  }

  /// Blocks until the mutex is taken or `t` expires; returns whether it was taken.
  bool lock(const timeout& t) noexcept { return try_lock() || lock_slow(t, nullptr); }

  /// As lock(t), and also gives up (false) once `st` is stopped.
  bool lock(const timeout& t, const std::stop_token& st) noexcept {
    if (st.stop_requested())
      return false;
    return try_lock() || lock_slow(t, &st);
  }

  /// Releases the mutex and wakes one sleeper if there may be one. Returns false (and changes
  /// nothing) when the mutex was not locked.
  bool unlock() noexcept {
    auto previous = state_.exchange(0, std::memory_order_release);
    if (previous == 2)
      futex_wake(state_, 1);
    return previous != 0;
  }

  // -- observers ------------------------------------------------------------------------------

  /// True while some thread holds the mutex (a snapshot).
  bool locked() const noexcept { return state_.load(std::memory_order_relaxed) != 0; }

private:
  // Spinning pays off when the holder runs on another core and releases within about a
  // microsecond; past that, sleeping costs less than burning the core.
  static constexpr int spin_limit = 100;

  bool lock_slow(const timeout& t, const std::stop_token* st) noexcept {
    for (int i = 0; i < spin_limit; ++i) {
      if (state_.load(std::memory_order_relaxed) == 0 && try_lock())
        return true;
      cpu_relax();
    }
    for (;;) {
      // Mark the mutex contended; if it was free, we own it (in state 2, which only costs the
      // next unlock a wake that finds nobody).
      if (state_.exchange(2, std::memory_order_acquire) == 0)
        return true;
      if (st != nullptr && st->stop_requested())
        return false;
      bool in_time = st != nullptr ? futex_wait(state_, 2, t, *st) : futex_wait(state_, 2, t);
      if (!in_time)
        return state_.exchange(2, std::memory_order_acquire) == 0;
    }
  }

  std::atomic<std::uint32_t> state_{0};
};

} // namespace tandem::detail
