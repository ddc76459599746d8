// tandem::rlock: Python's `threading.RLock`, a recursive lock owned by the thread that holds it.
//
// An rlock is either unowned or owned by one thread with a recursion level of at least 1. The
// owner may acquire it again (the level goes up) and must release it as many times as it acquired
// it; the lock becomes free when the level drops to 0. Only the owner may release it: release()
// by any other thread, or of an unowned rlock, throws usage_error (Python's RuntimeError).
//
// Besides Python's `acquire(timeout)`/`release()` it meets the C++ *TimedLockable* requirements,
// so std::scoped_lock, std::unique_lock and std::condition_variable_any work:
//
//   tandem::rlock r;
//   void update() {
//     std::scoped_lock guard{r};
//     helper();                          // may lock r again: it is recursive
//   }
//
// `release_save()` and `acquire_restore(level)` give up and take back the whole recursion level at
// once; tandem::condition uses them so that a wait works at any recursion level, as Python's
// Condition uses RLock._release_save/_acquire_restore.
//
// Memory ordering: the acquire that makes a thread the owner synchronizes with the release that
// freed the lock: everything written before the lock became free is visible to the next owner.
//
// Performance: acquiring a free rlock is one compare-exchange plus two plain stores, re-entering
// it is an increment, and releasing it is a decrement plus (at level 0) one exchange: no system
// call without contention. Contended acquirers spin briefly, then sleep on a futex.
//
// Thread-safety: every member may be called concurrently from any thread.
//
// Lifetime: destroying an rlock while threads are blocked in it is undefined behaviour.
// An rlock is neither copyable nor movable.
#pragma once

#include <tandem/detail/futex_mutex.hpp>
#include <tandem/error.hpp>
#include <tandem/timeout.hpp>
#include <tandem/timeout.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <string>

namespace tandem {

class basic_rlock {
public:
  // -- construction ---------------------------------------------------------------------------

  /// An unowned rlock.
  basic_rlock() noexcept = default;

  basic_rlock(const basic_rlock&) = delete;
  basic_rlock& operator=(const basic_rlock&) = delete;

  // -- Python's interface ---------------------------------------------------------------------

  /// Acquires the rlock. If the calling thread owns it already, raises the recursion level by one
  /// and returns true at once. Otherwise blocks until the rlock is free or `t` expires; returns
  /// true when the caller now owns it (at level 1), false when the timeout expired first. A zero
  /// timeout tries once without blocking.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool acquire(timeout t = forever) noexcept {
    auto self = self_id();
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++count_;
      return true;
    }
    if (!mtx_.try_lock() && !acquire_slow(t, nullptr)) return false;
    set_owner(self, 1);
    return true;
  }

  /// As acquire(t), and also returns false promptly once `st` is stopped (also when it was
  /// stopped before the call). Re-entering an rlock the caller owns succeeds even when `st` is
  /// stopped: it never blocks. A stop request never throws.
  bool acquire(const std::stop_token& st, timeout t = forever) noexcept {
    auto self = self_id();
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++count_;
      return true;
    }
    if (st.stop_requested()) return false;
    if (!mtx_.try_lock() && !acquire_slow(t, &st)) return false;
    set_owner(self, 1);
    return true;
  }

  /// Lowers the recursion level by one; at level 0 the rlock becomes free and one blocked
  /// acquirer, if any, is woken.
  ///
  /// Throws usage_error when the calling thread does not own the rlock (it is unowned, or owned by
  /// another thread); nothing changes then.
  void release() {
    if (owner_.load(std::memory_order_relaxed) != self_id()) throw_not_owner("release");
    if (--count_ == 0) vacate();
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  /// Blocks until the calling thread owns the rlock (acquire() with no timeout).
  void lock() noexcept { acquire(); }

  /// Acquires the rlock if it is free or already the caller's; never blocks.
  bool try_lock() noexcept {
    auto self = self_id();
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++count_;
      return true;
    }
    if (!mtx_.try_lock()) return false;
    set_owner(self, 1);
    return true;
  }

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

  /// As release(), but never throws: called by a thread that does not own the rlock, it does
  /// nothing. (std::scoped_lock and std::unique_lock call it from destructors.)
  void unlock() noexcept {
    if (owner_.load(std::memory_order_relaxed) != self_id()) return;
    if (--count_ == 0) vacate();
  }

  // -- saving and restoring the recursion level -----------------------------------------------

  /// Frees the rlock whatever its recursion level and returns that level, so that
  /// acquire_restore() can take it back. Throws usage_error when the caller does not own the
  /// rlock (Python's RLock._release_save).
  ///
  ///   auto level = r.release_save();   // r is free now, even if it was locked three times
  ///   ...
  ///   r.acquire_restore(level);        // owned again, at the same level
  std::size_t release_save() {
    if (owner_.load(std::memory_order_relaxed) != self_id()) throw_not_owner("release_save");
    auto level = count_;
    count_ = 0;
    vacate();
    return level;
  }

  /// Blocks until the calling thread owns the rlock, then sets its recursion level to `level`
  /// (Python's RLock._acquire_restore). Requires: the caller does not own the rlock, and
  /// `level` > 0 (a value returned by release_save()).
  void acquire_restore(std::size_t level) noexcept {
    mtx_.lock();
    set_owner(self_id(), level);
  }

  // -- observers ------------------------------------------------------------------------------

  /// True while some thread owns the rlock (a snapshot; Python 3.14's RLock.locked()).
  bool locked() const noexcept { return mtx_.locked(); }

  /// True when the calling thread owns the rlock (Python's RLock._is_owned()). Exact for the
  /// calling thread: no other thread can make it true or false.
  bool is_owned() const noexcept { return owner_.load(std::memory_order_relaxed) == self_id(); }

  /// The calling thread's recursion level: how many releases it owes; 0 when it does not own the
  /// rlock (Python's RLock._recursion_count()).
  std::size_t recursion_count() const noexcept { return is_owned() ? count_ : 0; }

private:
  // The identity of the calling thread: pthread_self() is never 0 for a running thread, so 0
  // means "no owner". A thread can only ever read its own id from owner_ when it wrote it itself
  // (and has not overwritten it since), so relaxed loads and stores suffice: the mutex orders
  // everything else.
  static std::uintptr_t self_id() noexcept { return static_cast<std::uintptr_t>(::pthread_self()); }

  void set_owner(std::uintptr_t self, std::size_t level) noexcept {
    owner_.store(self, std::memory_order_relaxed);
    count_ = level;
  }

  void vacate() noexcept {
    owner_.store(0, std::memory_order_relaxed);
    mtx_.unlock();
  }

  bool acquire_slow(const timeout& t, const std::stop_token* st) noexcept {
    if (!t.is_forever() && t.expired()) return false;
    return st != nullptr ? mtx_.lock(t, *st) : mtx_.lock(t);
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_not_owner(const char* what) {
    throw usage_error(std::string{"tandem::rlock::"} + what +
                      ": the calling thread does not own the rlock; only the thread that "
                      "acquired it may release it, once per acquire");
  }

  detail::futex_mutex mtx_;
  std::atomic<std::uintptr_t> owner_{0}; // written only by the owner, under mtx_
  std::size_t count_ = 0;                // guarded by mtx_ (touched only by the owner)
};

/// Python's `threading.RLock`.
using rlock = basic_rlock;

} // namespace tandem
