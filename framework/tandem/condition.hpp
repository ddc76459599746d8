// tandem::condition: Python's `threading.Condition`, a condition variable bundled with its lock.
//
// A condition owns an rlock by default, or shares a lock given at construction (a tandem::lock or a
// tandem::rlock, which must outlive it). It is itself a lock: acquire/release and the C++
// *TimedLockable* members act on that lock, so std::scoped_lock, std::unique_lock and
// std::condition_variable_any work with it.
//
// A thread that holds the lock may wait(): it joins the condition's FIFO of waiters, releases the
// lock entirely (at any recursion level), sleeps until another thread that holds the lock chooses
// it with notify(n) or notify_all(), or until its timeout expires, then re-acquires the lock
// (at the same recursion level) before returning, however it was woken.
//
// Guarantees a Python user relies on, and some Python does not give:
//   - wait() returns true only when this waiter was chosen by a notify: no spurious wakeups reach
//     the caller. A waiter chosen by a notify that races with its timeout or stop request returns
//     true: a notify is never lost.
//   - notify(n) chooses exactly min(n, number of waiters) waiters, the longest-waiting first.
//   - A notify with no waiter is not remembered: a later wait() still blocks.
//   - wait/notify by a thread that does not hold the lock throw usage_error (Python's
//     RuntimeError). With an rlock, "holds" means "owns". With a plain lock, which has no owner,
//     Python's rule applies: the lock counts as held when acquire(0) fails, so the check cannot
//     tell the caller from another thread that holds it; calling wait/notify while another
//     thread holds the plain lock is undefined behaviour.
//
//   tandem::condition cv;
//   std::deque<int> items;                     // guarded by cv
//
//   void produce(int x) {
//     std::scoped_lock guard{cv};
//     items.push_back(x);
//     cv.notify();
//   }
//   std::optional<int> consume(tandem::timeout t) {
//     std::scoped_lock guard{cv};
//     if (!cv.wait_for([&] { return !items.empty(); }, t))
//       return std::nullopt;
//     int x = items.front(); items.pop_front();
//     return x;
//   }
//
// Memory ordering: as for the lock: everything written before a release of the lock (including the
// one inside wait()) is visible to the next thread that acquires it, including a waiter returning
// from wait().
//
// Thread-safety: every member may be called concurrently from any thread; wait/notify require the
// lock as described.
//
// Lifetime: destroying a condition while threads wait on it is undefined behaviour. A shared lock
// must outlive the condition. A condition is neither copyable nor movable.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/lock.hpp>
#include <tandem/rlock.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stop_token>
#include <type_traits>

namespace tandem {

namespace detail {

/// What condition::wait_for accepts: called with no argument, returns something testable as a
/// bool (and returned as is).
template <class P>
concept nullary_predicate = std::invocable<P&> && requires(P& p) {
  static_cast<bool>(std::invoke(p));
};

} // namespace detail

class condition {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A condition with its own rlock (Python's `Condition()`).
  condition() noexcept : rlock_(&own_) {}

  /// A condition sharing the plain lock `l` (Python's `Condition(Lock())`). `l` must outlive the
  /// condition.
  explicit condition(basic_lock& l) noexcept : lock_(&l) {}

  /// A condition sharing the rlock `r`. `r` must outlive the condition.
  explicit condition(basic_rlock& r) noexcept : rlock_(&r) {}

  condition(const condition&) = delete;
  condition& operator=(const condition&) = delete;

  // -- Python's interface: the lock ----------------------------------------------------------

  /// Acquires the underlying lock (see lock::acquire and rlock::acquire): true when acquired,
  /// false when `t` expired first.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool acquire(timeout t = forever) noexcept {
    return lock_ != nullptr ? lock_->acquire(t) : rlock_->acquire(t);
  }

  /// As acquire(t), and also returns false promptly once `st` is stopped.
  bool acquire(const std::stop_token& st, timeout t = forever) noexcept {
    return lock_ != nullptr ? lock_->acquire(st, t) : rlock_->acquire(st, t);
  }

  /// Releases the underlying lock. Throws usage_error as lock::release / rlock::release do.
  void release() {
    if (lock_ != nullptr)
      lock_->release();
    else
      rlock_->release();
  }

  // -- C++ TimedLockable, on the underlying lock --------------------------------------------

  /// Blocks until the underlying lock is acquired.
  void lock() noexcept { acquire(); }

  /// Acquires the underlying lock if that needs no waiting; never blocks.
  bool try_lock() noexcept { return lock_ != nullptr ? lock_->try_lock() : rlock_->try_lock(); }

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

  /// Releases the underlying lock, but never throws (see lock::unlock and rlock::unlock).
  void unlock() noexcept {
    if (lock_ != nullptr)
      lock_->unlock();
    else
      rlock_->unlock();
  }

  /// True when the calling thread holds the lock, as wait() and notify() require (Python's
  /// Condition._is_owned()). For a plain lock this is Python's approximation: true when the lock
  /// is locked by anyone, found by a failing acquire(0) (a successful probe is released at once).
  bool is_owned() noexcept {
    if (lock_ == nullptr) return rlock_->is_owned();
    if (lock_->try_lock()) {
      lock_->unlock();
      return false;
    }
    return true;
  }

  // -- waiting --------------------------------------------------------------------------------

  /// Releases the lock, blocks until this thread is chosen by notify()/notify_all() or `t`
  /// expires, then re-acquires the lock (waiting for it as long as it takes, whatever `t` says) at
  /// the recursion level it had. Returns true when chosen by a notify, false when the timeout
  /// expired first. Never returns true spuriously, and never false once chosen.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline. (A zero timeout still releases and re-acquires the lock, so other
  /// threads may run in between, as in Python.)
  ///
  /// Throws usage_error when the calling thread does not hold the lock (nothing changes then).
  bool wait(timeout t = forever) { return wait_impl(t, nullptr); }

  /// As wait(t), and also returns false promptly once `st` is stopped (the lock is re-acquired
  /// first, as for a timeout). A waiter chosen by a notify returns true even if `st` was stopped
  /// at the same time, so the notify is not lost; the caller may check `st` itself.
  bool wait(const std::stop_token& st, timeout t = forever) { return wait_impl(t, &st); }

  /// Waits until `pred()` is true or `t` expires, and returns the last value `pred()` returned
  /// (Python's Condition.wait_for). `pred` is called with the lock held: first before any wait,
  /// then after each wakeup. The timeout covers the whole call, not each wait. As in Python, a
  /// false predicate is followed by at least one wait(), even when `t` has expired already.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// Throws usage_error when the calling thread does not hold the lock and `pred()` is false, and
  /// whatever `pred` throws.
  ///
  ///   std::scoped_lock guard{cv};
  ///   if (!cv.wait_for([&] { return ready; }, 5s))
  ///     report_timeout();
  template <detail::nullary_predicate Predicate>
  std::decay_t<std::invoke_result_t<Predicate&>> wait_for(Predicate pred, timeout t = forever) {
    auto result = std::invoke(pred);
    // As Python: a false predicate always costs one wait (even with a zero timeout, which lets
    // other threads take the lock in between, and checks that the caller holds it).
    for (bool first = true; !static_cast<bool>(result); first = false) {
      if (!first && !t.is_forever() && t.expired()) break;
      wait(t);
      result = std::invoke(pred);
    }
    return result;
  }

  /// As wait_for(pred, t), and also returns (pred()'s last value) promptly once `st` is stopped.
  template <detail::nullary_predicate Predicate>
  std::decay_t<std::invoke_result_t<Predicate&>> wait_for(const std::stop_token& st, Predicate pred,
                                                          timeout t = forever) {
    auto result = std::invoke(pred);
    for (bool first = true; !static_cast<bool>(result); first = false) {
      if (!first && ((!t.is_forever() && t.expired()) || st.stop_requested())) break;
      wait(st, t);
      result = std::invoke(pred);
    }
    return result;
  }

  // -- notification ---------------------------------------------------------------------------

  /// Chooses the `n` longest-waiting waiters (all of them if fewer wait) and wakes them; each of
  /// them returns true from wait() once it re-acquires the lock, which at the earliest happens when
  /// the caller releases it. With no waiter, does nothing and is forgotten.
  ///
  /// Throws usage_error when the calling thread does not hold the lock.
  void notify(std::size_t n = 1) {
    if (!is_owned()) throw_not_held("notify");
    while (n > 0 && head_ != nullptr) {
      waiter* w = head_;
      unlink(*w);
      // The waiter cannot return (its node lives on its stack) before it re-acquires the lock,
      // which we hold: the node stays valid through the store and the wake.
      w->chosen.store(1, std::memory_order_release);
      detail::futex_wake(w->chosen, 1);
      --n;
    }
  }

  /// Wakes every waiter (notify(n) with n = all). Throws usage_error as notify() does.
  void notify_all() { notify(std::numeric_limits<std::size_t>::max()); }

private:
  // One per waiting thread, on its stack. `prev`/`next`/`head_`/`tail_` are guarded by the lock;
  // `chosen` is set (under the lock) by the notify that unlinks the node, and the futex the
  // waiter sleeps on.
  struct waiter {
    waiter* prev = nullptr;
    waiter* next = nullptr;
    std::atomic<std::uint32_t> chosen{0};
  };

  bool wait_impl(const timeout& t, const std::stop_token* st) {
    if (!is_owned()) throw_not_held("wait");
    waiter self;
    link(self);
    // Release the lock completely; from here on no call may throw until it is re-acquired.
    std::size_t level = 0;
    if (lock_ != nullptr)
      lock_->unlock();
    else
      level = rlock_->release_save();
    while (self.chosen.load(std::memory_order_acquire) == 0) {
      if (st != nullptr && st->stop_requested()) break;
      bool in_time = st != nullptr ? detail::futex_wait(self.chosen, 0, t, *st)
                                   : detail::futex_wait(self.chosen, 0, t);
      if (!in_time) break;
    }
    if (lock_ != nullptr)
      lock_->lock();
    else
      rlock_->acquire_restore(level);
    // With the lock held, `chosen` is stable: a notify either unlinked us (and set it) before we
    // got the lock, or will not see us any more once we unlink ourselves below.
    if (self.chosen.load(std::memory_order_relaxed) != 0) return true;
    unlink(self);
    return false;
  }

  void link(waiter& w) noexcept {
    w.prev = tail_;
    w.next = nullptr;
    if (tail_ != nullptr)
      tail_->next = &w;
    else
      head_ = &w;
    tail_ = &w;
  }

  void unlink(waiter& w) noexcept {
    if (w.prev != nullptr)
      w.prev->next = w.next;
    else
      head_ = w.next;
    if (w.next != nullptr)
      w.next->prev = w.prev;
    else
      tail_ = w.prev;
    w.prev = w.next = nullptr;
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_not_held(const char* what) {
    throw usage_error(std::string{"tandem::condition::"} + what +
                      ": the calling thread does not hold the condition's lock; acquire it "
                      "first (e.g. std::scoped_lock guard{cond};)");
  }

  basic_rlock own_;
  basic_lock* lock_ = nullptr;   // the shared plain lock, or null
  basic_rlock* rlock_ = nullptr; // the rlock (own_ or shared) when lock_ is null
  waiter* head_ = nullptr;       // guarded by the lock
  waiter* tail_ = nullptr;       // guarded by the lock
};

} // namespace tandem
