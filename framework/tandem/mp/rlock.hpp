// tandem::mp::rlock: Python's `multiprocessing.RLock`, a recursive lock shared by processes and
// owned by one thread of one process, that survives the death of the owning process.
//
// Where it lives, and why it works at any address: as tandem::mp::lock (placement-construct it in
// shared memory before fork(), or `mp::rlock::create()` for a handle in the default arena that a
// spawn child can receive).
//
// An rlock is unowned, or owned by one thread (identified by its process id and kernel thread id,
// as Python's multiprocessing.RLock) at a recursion level of at least 1. The owner may acquire it
// again and must release it as often; only the owner may release it (usage_error otherwise). As
// tandem::rlock it meets C++ *TimedLockable* and offers release_save()/acquire_restore() for
// mp::condition.
//
// Robustness, as mp::lock: when the owning process dies, the next acquirer (and any blocked one)
// becomes the owner at level 1 within a second and gets owner_died_error while owning it; it may
// call make_consistent(); releasing the last level without it makes the rlock not recoverable
// (not_recoverable_error from every later acquire). A thread that ends while owning the rlock, in
// a process that lives on, keeps it owned (as in Python).
//
//   tandem::mp::rlock& r = *shared;
//   void update() {
//     std::scoped_lock guard{r};
//     update_part();                     // may lock r again
//   }
//
// Memory ordering: the acquire that makes a thread the owner synchronizes with the release that
// freed the rlock.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the rlock.
//
// Lifetime: destroying the rlock while any thread uses it is undefined behaviour. Neither copyable
// nor movable.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/detail/robust_word.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <string>

namespace tandem::mp {

class condition;

class basic_rlock {
public:
  /// A shared handle to an rlock in the default arena.
  using handle = detail::arena_handle<basic_rlock>;

  // -- construction ---------------------------------------------------------------------------

  /// An unowned rlock.
  basic_rlock() noexcept = default;

  basic_rlock(const basic_rlock&) = delete;
  basic_rlock& operator=(const basic_rlock&) = delete;

  /// An unowned rlock in the default arena. Throws segment_error when the arena cannot be made
  /// or is full.
  static handle create() { return handle::make(); }

  // -- Python's interface ---------------------------------------------------------------------

  /// Acquires the rlock: at once (one level more) when the calling thread owns it; otherwise
  /// blocks until it is free or `t` expires. Returns true when the caller owns it, false on
  /// timeout. A zero timeout tries once.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// Throws owner_died_error when the rlock was taken over from a process that died owning it
  /// (the caller owns it then, at level 1); not_recoverable_error when it is not recoverable.
  bool acquire(timeout t = forever) {
    if (reenter()) return true;
    return finish(take(t, nullptr), 1);
  }

  /// As acquire(t), and also returns false promptly once `st` is stopped. Re-entering an rlock
  /// the caller owns succeeds even when `st` is stopped.
  bool acquire(const std::stop_token& st, timeout t = forever) {
    if (reenter()) return true;
    if (st.stop_requested()) return false;
    return finish(take(t, &st), 1);
  }

  /// Lowers the recursion level by one; at level 0 the rlock becomes free (or not recoverable,
  /// when it is inconsistent) and one blocked acquirer wakes. Throws usage_error when the calling
  /// thread does not own the rlock.
  void release() {
    if (!is_owned()) throw_not_owner("release");
    if (--count_ == 0) vacate();
  }

  /// Declares the protected state consistent after owner_died_error. Requires ownership. Throws
  /// usage_error when the caller does not own the rlock or it is not inconsistent.
  void make_consistent() {
    if (!is_owned()) throw_not_owner("make_consistent");
    if (inconsistent_.exchange(0, std::memory_order_relaxed) == 0)
      throw usage_error("tandem::mp::rlock::make_consistent: the rlock is not inconsistent; call "
                        "it only after acquire threw owner_died_error");
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  /// Blocks until the calling thread owns the rlock. Throws as acquire().
  void lock() { acquire(); }

  /// Acquires the rlock if it is free (or its owner died) or already the caller's; never blocks.
  /// Throws as acquire().
  bool try_lock() {
    if (reenter()) return true;
    return finish(word_.try_lock(), 1);
  }

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

  /// As release(), but never throws: called by a thread that does not own the rlock, it does
  /// nothing.
  void unlock() noexcept {
    if (!is_owned()) return;
    if (--count_ == 0) vacate();
  }

  // -- saving and restoring the recursion level -----------------------------------------------

  /// Frees the rlock whatever its level and returns that level (Python's RLock._release_save).
  /// Throws usage_error when the caller does not own it.
  std::size_t release_save() {
    if (!is_owned()) throw_not_owner("release_save");
    auto level = count_;
    count_ = 0;
    vacate();
    return level;
  }

  /// Blocks until the calling thread owns the rlock, then sets its level to `level` (Python's
  /// RLock._acquire_restore). Requires: the caller does not own it; `level` > 0. Throws as
  /// acquire() (owner_died_error with the level restored).
  void acquire_restore(std::size_t level) { finish(take(forever, nullptr), level); }

  // -- observers ------------------------------------------------------------------------------

  /// True while some thread of some process owns the rlock (or it is not recoverable).
  bool locked() const noexcept { return word_.locked(); }

  /// True when the calling thread owns the rlock.
  bool is_owned() const noexcept {
    // The key alone could match a thread of a dead owner whose pid this process reuses (its main
    // thread's tid is its pid): the word must name this process by its full tag too.
    return owner_.load(std::memory_order_relaxed) == detail::self_thread_key() &&
           word_.held_by_self();
  }

  /// The calling thread's recursion level; 0 when it does not own the rlock.
  std::size_t recursion_count() const noexcept { return is_owned() ? count_ : 0; }

  /// True when the rlock is not recoverable. A snapshot.
  bool not_recoverable() const noexcept { return word_.not_recoverable(); }

private:
  friend class condition;

  bool reenter() noexcept {
    if (!is_owned()) return false;
    ++count_;
    return true;
  }

  detail::lock_result take(const timeout& t, const std::stop_token* st) noexcept {
    auto r = word_.try_lock();
    if (r == detail::lock_result::timed_out && (t.is_forever() || !t.expired()))
      r = word_.lock(t, st);
    return r;
  }

  // Makes the caller the owner at `level` for the results that hold the word. Never throws.
  detail::lock_result settle(detail::lock_result r, std::size_t level) noexcept {
    if (r == detail::lock_result::acquired || r == detail::lock_result::owner_died) {
      // A thread can only read its own key from owner_ after writing it itself: relaxed suffices.
      owner_.store(detail::self_thread_key(), std::memory_order_relaxed);
      count_ = level;
      if (r == detail::lock_result::owner_died) inconsistent_.store(1, std::memory_order_relaxed);
    }
    return r;
  }

  bool finish(detail::lock_result r, std::size_t level) {
    switch (settle(r, level)) {
      case detail::lock_result::acquired:
        return true;
      case detail::lock_result::timed_out:
        return false;
      case detail::lock_result::owner_died:
        throw owner_died_error("tandem::mp::rlock: the process owning the rlock died; the calling "
                               "thread owns it now: repair the shared state, call "
                               "make_consistent(), then release it");
      case detail::lock_result::not_recoverable:
        break;
    }
    throw not_recoverable_error("tandem::mp::rlock: the rlock is not recoverable (it was released "
                                "without make_consistent() after its owner died); create a new "
                                "one");
  }

  void vacate() noexcept {
    owner_.store(0, std::memory_order_relaxed);
    if (inconsistent_.load(std::memory_order_relaxed) != 0 &&
        inconsistent_.exchange(0, std::memory_order_relaxed) != 0)
      word_.mark_not_recoverable();
    else
      word_.unlock();
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_not_owner(const char* what) {
    throw usage_error(std::string{"tandem::mp::rlock::"} + what +
                      ": the calling thread does not own the rlock; only the thread that "
                      "acquired it may release it, once per acquire");
  }

  detail::robust_word word_;
  std::atomic<std::uint64_t> owner_{0};        // the owner's self_thread_key(), written by it
  std::size_t count_ = 0;                      // touched only by the owner
  std::atomic<std::uint32_t> inconsistent_{0}; // written by the owner
};

/// Python's `multiprocessing.RLock`.
using rlock = basic_rlock;

} // namespace tandem::mp
