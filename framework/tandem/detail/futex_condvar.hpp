// detail::futex_condvar: a condition variable for detail::futex_mutex, used inside tandem's
// primitives (queues, barrier). Not Python's Condition: that is tandem::condition.
//
// Waiters sleep on a sequence word that every notify bumps, so a notify that lands between a
// waiter's unlock and its sleep is never lost. A count of sleepers lets notify skip the system
// call when nobody waits. Spurious wakeups are possible: callers wait in a predicate loop.
//
// Requires: wait() is called with `m` locked by the caller; notify may be called with or
// without the mutex held, after the state change it announces was made under the mutex.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/detail/futex_mutex.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <climits>
#include <cstdint>
#include <stop_token>

namespace tandem::detail {

class futex_condvar {
public:
  constexpr futex_condvar() noexcept = default;
  futex_condvar(const futex_condvar&) = delete;
  futex_condvar& operator=(const futex_condvar&) = delete;

  // -- waiting --------------------------------------------------------------------------------

  /// Unlocks `m`, sleeps until notified, `t` expires or (spuriously) otherwise, and locks `m`
  /// again. Returns false when `t` expired.
  bool wait(futex_mutex& m, const timeout& t = forever) noexcept {
    auto seq = seq_.load(std::memory_order_relaxed);
    sleepers_.fetch_add(1, std::memory_order_relaxed);
    m.unlock();
    bool in_time = futex_wait(seq_, seq, t);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    m.lock();
    return in_time;
  }

  /// As wait(m, t), and also returns (true) once `st` is stopped; callers check `st`.
  bool wait(futex_mutex& m, const timeout& t, const std::stop_token& st) noexcept {
    auto seq = seq_.load(std::memory_order_relaxed);
    sleepers_.fetch_add(1, std::memory_order_relaxed);
    m.unlock();
    bool in_time = futex_wait(seq_, seq, t, st);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    m.lock();
    return in_time;
  }

  // -- notification ---------------------------------------------------------------------------

  /// Wakes at least one waiter, if any.
  void notify_one() noexcept { notify(1); }

  /// Wakes every waiter.
  void notify_all() noexcept { notify(INT_MAX); }

  /// Wakes up to `n` waiters.
  void notify(int n) noexcept {
    // seq_cst pairs with the sleeper's increment made under the mutex the notifier also took.
    if (sleepers_.load(std::memory_order_seq_cst) == 0)
      return;
    seq_.fetch_add(1, std::memory_order_release);
    futex_wake(seq_, n);
  }

  /// True when a thread is (about to be) asleep in wait().
  bool has_waiters() const noexcept { return sleepers_.load(std::memory_order_relaxed) != 0; }

private:
  std::atomic<std::uint32_t> seq_{0};
  std::atomic<std::uint32_t> sleepers_{0};
};

} // namespace tandem::detail
