// tandem::lock: Python's `threading.Lock`, a non-recursive mutual-exclusion lock that any thread
// may release.
//
// A lock is either unlocked or locked. `acquire()` moves it from unlocked to locked, blocking while
// another thread (or the caller itself: the lock is not recursive) holds it; `release()` moves it
// back and wakes one blocked acquirer. Unlike std::mutex, the lock has no owner: the thread that
// releases it need not be the one that acquired it, which makes it usable as a binary signal
// between threads, as Python programs use `threading.Lock`.
//
// Besides Python's `acquire(timeout)`/`release()`/`locked()` it meets the C++ *TimedLockable*
// requirements, so std::scoped_lock, std::unique_lock and std::condition_variable_any work:
//
//   tandem::lock l;
//   {
//     std::scoped_lock guard{l};          // lock() ... unlock()
//     ...
//   }
//   if (l.acquire(100ms)) {               // Python's `if l.acquire(timeout=0.1):`
//     ...
//     l.release();
//   }
//
// Memory ordering: a successful acquire synchronizes with the release that unlocked the lock for
// it: everything written before `release()` is visible after the next successful `acquire()`.
//
// Performance: the uncontended acquire and release are one atomic compare-exchange and one atomic
// exchange, inlined, with no system call; a contended acquirer spins briefly, then sleeps on a
// futex. Acquisition is not FIFO: a thread that arrives while the lock is free may overtake
// sleepers (as with std::mutex and Python's Lock).
//
// Thread-safety: every member may be called concurrently from any thread.
//
// Lifetime: destroying a lock while threads are blocked in it is undefined behaviour; destroying a
// locked lock with no waiters is fine (Python allows it).
//
// A lock is neither copyable nor movable: threads find it by address.
#pragma once

#include <tandem/detail/futex_mutex.hpp>
#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

#include <chrono>
#include <stop_token>
#include <type_traits>

namespace tandem {

class basic_lock {
public:
  // -- construction ---------------------------------------------------------------------------

  /// An unlocked lock.
  constexpr basic_lock() noexcept = default;

  basic_lock(const basic_lock&) = delete;
  basic_lock& operator=(const basic_lock&) = delete;

  // -- Python's interface ---------------------------------------------------------------------

  /// Acquires the lock, blocking until it is free or `t` expires. Returns true when the caller
  /// now holds the lock, false when the timeout expired first. The default waits forever; a zero
  /// timeout tries once without blocking (Python's `acquire(blocking=False)`).
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// The lock is not recursive: a thread that acquires a lock it already holds blocks until
  /// another thread releases it (or until `t` expires).
  ///
  ///   if (!l.acquire(1s))
  ///     throw std::runtime_error("the worker still holds the lock");
  bool acquire(timeout t = forever) noexcept { return mtx_.try_lock() || acquire_slow(t); }

  /// As acquire(t), and also returns false promptly once `st` is stopped (also when it was
  /// stopped before the call). A stop request never throws.
  bool acquire(const std::stop_token& st, timeout t = forever) noexcept {
    if (st.stop_requested()) return false;
    return mtx_.try_lock() || acquire_slow(t, st);
  }

  /// Releases the lock and wakes one blocked acquirer, if any. Any thread may release the lock,
  /// not only the one that acquired it.
  ///
  /// Throws usage_error (Python's RuntimeError) when the lock is not locked; the lock is then
  /// left unchanged.
  void release() {
    if (!mtx_.unlock()) throw_release_unlocked();
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  /// Blocks until the lock is acquired (acquire() with no timeout).
  void lock() noexcept { mtx_.lock(); }

  /// Acquires the lock if it is free; never blocks.
  bool try_lock() noexcept { return mtx_.try_lock(); }

  /// acquire(d): blocks at most for `d`.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
    return acquire(timeout{d});
  }

  /// Blocks at most until `tp` on any clock (see timeout::until).
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& tp) {
    return acquire(timeout::until(tp));
  }

  /// Releases the lock, like release(), but never throws: unlocking an unlocked lock does nothing.
  /// (std::scoped_lock and std::unique_lock call it from destructors.)
  void unlock() noexcept { mtx_.unlock(); }

  // -- observers ------------------------------------------------------------------------------

  /// True while the lock is held by some thread. A snapshot: by the time the caller looks at it,
  /// another thread may have changed it.
  bool locked() const noexcept { return mtx_.locked(); }

private:
  bool acquire_slow(const timeout& t) noexcept {
    // A zero or past timeout means "try once": the failed try_lock() above was that try, so do not
    // spin, and do not mark the lock contended (that would cost its holder a useless wake).
    if (!t.is_forever() && t.expired()) return false;
    return mtx_.lock(t);
  }

  bool acquire_slow(const timeout& t, const std::stop_token& st) noexcept {
    if (!t.is_forever() && t.expired()) return false;
    return mtx_.lock(t, st);
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_release_unlocked() {
    throw usage_error("tandem::lock::release: the lock is not locked; release only a lock that "
                      "was acquired, and only once per acquire");
  }

  detail::futex_mutex mtx_;
};

/// Python's `threading.Lock`.
using lock = basic_lock;

} // namespace tandem
