// tandem::mp::lock: Python's `multiprocessing.Lock`, a non-recursive lock shared by processes,
// that survives the death of the process holding it.
//
// The object itself lives in memory every process sees: placement-construct it in a MAP_SHARED
// mapping before fork(), in a shared-memory segment, or get it from the default arena with
// `mp::lock::create()`, whose handle any mp::process child receives as a process argument (see
// <tandem/mp/detail/robust_arena.hpp>). It holds no pointer and no descriptor: it works at any
// address in any process that maps it.
//
// States: *unlocked*, *locked* (by some process), *inconsistent* (locked, taken over from a
// holder that died, and not yet declared consistent) and *not recoverable* (released while
// inconsistent; unusable for good).
//
// As tandem::lock: acquire(timeout)/release()/locked() plus C++ *TimedLockable*, and any thread
// of any process may release it (a binary signal, as Python's Lock, which is a semaphore).
//
//   // before fork(): in a shared mapping
//   auto* l = new (shared_memory) tandem::mp::lock;
//   ...
//   try {
//     std::scoped_lock guard{*l};
//     update_shared_state();
//   } catch (const tandem::owner_died_error&) {
//     // we hold the lock; a process died while holding it: repair, then say so
//     repair_shared_state();
//     l->make_consistent();
//     l->release();
//   }
//
// Robustness (glibc's PTHREAD_MUTEX_ROBUST semantics, at the granularity of processes): when the
// process holding the lock dies (killed, crashed, or exited without releasing), the next acquirer,
// and any acquirer already blocked, takes the lock within a second and gets owner_died_error from
// acquire()/lock()/try_lock() *while holding the lock*. It may repair what the lock protects and
// call make_consistent(), then use the lock as usual. If it (or anyone) releases the lock without
// calling make_consistent(), the lock becomes not recoverable: every later acquire throws
// not_recoverable_error. A thread that ends while its process lives does not count as dead: the
// holder is the process, and another thread may release the lock.
//
// Difference from Python: multiprocessing.Lock (a POSIX semaphore) stays locked for good when the
// process holding it exits or dies; tandem::mp::lock is taken over as above. A program that
// means to hand a locked lock to another process and exit should let the other process acquire
// it, not leave it behind.
//
// Dead holders are found by their pid and start time (a reused pid is not mistaken for the holder);
// the processes must share a pid namespace. A waiter checks the holder's liveness after every
// 100 ms it spends asleep without being woken.
//
// Memory ordering: a successful acquire synchronizes with the release that unlocked the lock for
// it, in whichever process.
//
// Performance: the uncontended acquire and release are one compare-exchange each plus one plain
// store, with no system call; contended acquirers spin briefly, then sleep on a process-shared
// futex. A try that fails (try_lock(), a zero or expired timeout) checks that the holder is
// alive, which costs a few microseconds of system calls.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the lock.
//
// Lifetime: destroying the lock while some thread of any process uses it is undefined behaviour.
// A lock is neither copyable nor movable.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/detail/robust_word.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>

namespace tandem::mp {

class condition;

class basic_lock {
public:
  /// A shared handle to a lock in the default arena (see robust_arena.hpp).
  using handle = detail::arena_handle<basic_lock>;

  // -- construction ---------------------------------------------------------------------------

  /// An unlocked lock.
  basic_lock() noexcept = default;

  basic_lock(const basic_lock&) = delete;
  basic_lock& operator=(const basic_lock&) = delete;

  /// An unlocked lock in the default arena: any process that gets the handle (a fork child, or a
  /// spawn child through mp::process arguments) uses the same lock. Throws segment_error when
  /// the arena cannot be created or is full.
  static handle create() { return handle::make(); }

  // -- Python's interface ---------------------------------------------------------------------

  /// Acquires the lock, blocking until it is free or `t` expires. Returns true when the caller
  /// now holds the lock, false when the timeout expired first. A zero timeout tries once.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// Throws owner_died_error when the lock was taken over from a process that died holding it;
  /// the caller holds the lock then (see make_consistent()). Throws not_recoverable_error when
  /// the lock is not recoverable (the caller does not hold it).
  bool acquire(timeout t = forever) { return finish(acquire_result(t, nullptr)); }

  /// As acquire(t), and also returns false promptly once `st` is stopped.
  bool acquire(const std::stop_token& st, timeout t = forever) {
    if (st.stop_requested()) return false;
    return finish(acquire_result(t, &st));
  }

  /// Releases the lock and wakes one blocked acquirer. Any thread of any process may release it.
  /// Releasing an inconsistent lock (see make_consistent()) makes it not recoverable.
  ///
  /// Throws usage_error when the lock is not locked, not_recoverable_error when it is not
  /// recoverable; nothing changes then.
  void release() {
    if (inconsistent_.load(std::memory_order_relaxed) != 0 &&
        inconsistent_.exchange(0, std::memory_order_relaxed) != 0) {
      word_.mark_not_recoverable();
      return;
    }
    auto r = word_.unlock();
    if (r == detail::unlock_result::was_free) throw_release_unlocked();
    if (r == detail::unlock_result::not_recoverable) throw_not_recoverable();
  }

  /// Declares the state the lock protects consistent again, after owner_died_error. Requires
  /// that the caller holds the lock. Throws usage_error when the lock is not inconsistent.
  void make_consistent() {
    if (inconsistent_.exchange(0, std::memory_order_relaxed) == 0)
      throw usage_error("tandem::mp::lock::make_consistent: the lock is not inconsistent; call it "
                        "only after acquire threw owner_died_error");
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  /// Blocks until the lock is acquired. Throws as acquire().
  void lock() { acquire(); }

  /// Acquires the lock if no live process holds it; never blocks. Throws as acquire().
  bool try_lock() { return finish(word_.try_lock()); }

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

  /// Releases the lock like release(), but never throws: on an unlocked or not recoverable lock
  /// it does nothing.
  void unlock() noexcept {
    if (inconsistent_.load(std::memory_order_relaxed) != 0 &&
        inconsistent_.exchange(0, std::memory_order_relaxed) != 0) {
      word_.mark_not_recoverable();
      return;
    }
    word_.unlock();
  }

  // -- observers ------------------------------------------------------------------------------

  /// True while some process holds the lock (and when it is not recoverable). A snapshot.
  bool locked() const noexcept { return word_.locked(); }

  /// True when the lock is not recoverable. A snapshot.
  bool not_recoverable() const noexcept { return word_.not_recoverable(); }

private:
  friend class condition;

  detail::lock_result acquire_result(const timeout& t, const std::stop_token* st) noexcept {
    auto r = word_.try_lock();
    if (r == detail::lock_result::timed_out && (t.is_forever() || !t.expired()))
      r = word_.lock(t, st);
    if (r == detail::lock_result::owner_died) inconsistent_.store(1, std::memory_order_relaxed);
    return r;
  }

  bool finish(detail::lock_result r) {
    switch (r) {
      case detail::lock_result::acquired:
        return true;
      case detail::lock_result::timed_out:
        return false;
      case detail::lock_result::owner_died:
        inconsistent_.store(1, std::memory_order_relaxed);
        throw_owner_died();
      case detail::lock_result::not_recoverable:
        break;
    }
    throw_not_recoverable();
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_release_unlocked() {
    throw usage_error("tandem::mp::lock::release: the lock is not locked; release only a lock "
                      "that was acquired, and only once per acquire");
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_owner_died() {
    throw owner_died_error("tandem::mp::lock: the process holding the lock died; the caller "
                           "holds it now: repair the shared state, call make_consistent(), "
                           "then release it");
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_not_recoverable() {
    throw not_recoverable_error("tandem::mp::lock: the lock is not recoverable (it was released "
                                "without make_consistent() after its holder died); create a new "
                                "lock");
  }

  detail::robust_word word_;
  std::atomic<std::uint32_t> inconsistent_{0}; // written by the holder
};

/// Python's `multiprocessing.Lock`.
using lock = basic_lock;

} // namespace tandem::mp
