// tandem::mp::condition: Python's `multiprocessing.Condition`, a condition variable bundled with
// its lock, shared by processes, that a dead waiter never blocks.
//
// Where it lives, and why it works at any address: as tandem::mp::lock (placement-construct it in
// shared memory before fork(), or `mp::condition::create()` for a handle in the default arena).
// A condition owns an mp::rlock by default, or shares an mp::lock or mp::rlock given at
// construction, which must live in the same shared mapping (the condition finds it by its distance
// from itself, so that both work at any address) and outlive it.
//
// The contract is tandem::condition's, across processes: wait() releases the lock entirely (at
// any recursion level), sleeps until a notify chooses this waiter or the timeout expires, and
// re-acquires the lock; it returns true only when chosen (no spurious wakeups; a notify that
// races with the timeout is never lost); notify(n) chooses exactly min(n, live waiters), the
// longest-waiting first; a notify with no waiter is not remembered; wait/notify without holding
// the lock throw usage_error. (With a plain lock, "holding" means "locked by anyone", as in
// Python.)
//
//   // in shared memory, before fork():
//   struct shared { tandem::mp::condition cv; int items = 0; };
//   // consumer process:
//   std::scoped_lock guard{s->cv};
//   s->cv.wait_for([&] { return s->items > 0; });
//   --s->items;
//   // producer process:
//   std::scoped_lock guard{s->cv};
//   ++s->items;
//   s->cv.notify();
//
// Robustness:
//   - The lock is robust (see mp::lock, mp::rlock): when the process holding it dies, acquire(),
//     and a wait() re-acquiring it, throw owner_died_error while holding it.
//   - A process killed while waiting never blocks notify(), notify_all() or the destruction:
//     waiters are slots in the condition (no futex-based condition variable whose internal state
//     a dead waiter could leave half-changed), and notify skips and frees the slots of dead
//     processes, so a notify is never wasted on a dead waiter.
//   - A notifier killed after choosing a waiter but before waking it does not strand the waiter:
//     waiters look at their slot at least every detail::check_interval (100 ms), then
//     re-acquire the lock (and get owner_died_error from the dead notifier).
//   - At most max_waiters threads (all processes together) may wait at once; one more wait()
//     throws usage_error after freeing the slots of dead waiters.
//
// Memory ordering: as for the lock: everything written before a release of the lock (including
// the one inside wait()) is visible to the next thread that acquires it, in any process.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the condition; wait/notify require the lock as described.
//
// Lifetime: destroying a condition while live threads wait on it is undefined behaviour (dead
// ones do not matter). Neither copyable nor movable.
#pragma once

#include <tandem/condition.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/detail/robust_word.hpp>
#include <tandem/mp/lock.hpp>
#include <tandem/mp/rlock.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stop_token>
#include <type_traits>

namespace tandem::mp {

class condition {
public:
  /// A shared handle to a condition (with its own rlock) in the default arena.
  using handle = detail::arena_handle<condition>;

  /// How many threads may wait at once, across all processes.
  static constexpr std::size_t max_waiters = 128;

  // -- construction ---------------------------------------------------------------------------

  /// A condition with its own rlock (Python's `Condition()`).
  condition() noexcept : kind_(kind_own) {}

  /// A condition sharing the plain lock `l`, which must live in the same shared mapping and
  /// outlive the condition.
  explicit condition(basic_lock& l) noexcept : kind_(kind_lock), offset_(distance_to(&l)) {}

  /// A condition sharing the rlock `r`, which must live in the same shared mapping and outlive
  /// the condition.
  explicit condition(basic_rlock& r) noexcept : kind_(kind_rlock), offset_(distance_to(&r)) {}

  condition(const condition&) = delete;
  condition& operator=(const condition&) = delete;

  /// A condition with its own rlock in the default arena. Throws segment_error when the arena
  /// cannot be made or is full.
  static handle create() { return handle::make(); }

  // -- the lock -------------------------------------------------------------------------------

  /// Acquires the lock (see mp::lock::acquire and mp::rlock::acquire; throws as they do).
  bool acquire(timeout t = forever) {
    if (auto* l = plain()) return l->acquire(t);
    return recursive()->acquire(t);
  }

  /// As acquire(t), and also returns false promptly once `st` is stopped.
  bool acquire(const std::stop_token& st, timeout t = forever) {
    if (auto* l = plain()) return l->acquire(st, t);
    return recursive()->acquire(st, t);
  }

  /// Releases the lock. Throws usage_error as mp::lock::release / mp::rlock::release do.
  void release() {
    if (auto* l = plain())
      l->release();
    else
      recursive()->release();
  }

  /// Blocks until the lock is acquired. Throws as acquire().
  void lock() { acquire(); }

  /// Acquires the lock if that needs no waiting. Throws as acquire().
  bool try_lock() {
    if (auto* l = plain()) return l->try_lock();
    return recursive()->try_lock();
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

  /// Releases the lock, but never throws.
  void unlock() noexcept {
    if (auto* l = plain())
      l->unlock();
    else
      recursive()->unlock();
  }

  /// Declares the state consistent after owner_died_error (see mp::lock::make_consistent).
  void make_consistent() {
    if (auto* l = plain())
      l->make_consistent();
    else
      recursive()->make_consistent();
  }

  /// True when the calling thread holds the lock (for a plain lock: when anyone holds it).
  bool is_owned() const noexcept {
    if (auto* l = plain()) return l->locked() && !l->not_recoverable();
    return recursive()->is_owned();
  }

  // -- waiting --------------------------------------------------------------------------------

  /// Releases the lock, blocks until this thread is chosen by notify()/notify_all() or `t`
  /// expires, then re-acquires the lock (as long as that takes) at its recursion level. Returns
  /// true when chosen, false when the timeout expired first; never true spuriously, never false
  /// once chosen.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  ///
  /// Throws usage_error when the calling thread does not hold the lock, or when max_waiters
  /// threads wait already (nothing changes then); owner_died_error (holding the lock) when the
  /// lock was re-acquired from a process that died holding it; not_recoverable_error (not
  /// holding it) when the lock became not recoverable meanwhile.
  bool wait(timeout t = forever) { return wait_impl(t, nullptr); }

  /// As wait(t), and also returns false promptly once `st` is stopped (after re-acquiring the
  /// lock). A waiter chosen by a notify returns true even if `st` was stopped at the same time.
  bool wait(const std::stop_token& st, timeout t = forever) { return wait_impl(t, &st); }

  /// Waits until `pred()` is true or `t` expires; returns pred()'s last value (Python's
  /// Condition.wait_for). The timeout covers the whole call. Throws as wait() and whatever `pred`
  /// throws.
  template <tandem::detail::nullary_predicate Predicate>
  std::decay_t<std::invoke_result_t<Predicate&>> wait_for(Predicate pred, timeout t = forever) {
    auto result = std::invoke(pred);
    for (bool first = true; !static_cast<bool>(result); first = false) {
      if (!first && !t.is_forever() && t.expired()) break;
      wait(t);
      result = std::invoke(pred);
    }
    return result;
  }

  /// As wait_for(pred, t), and also returns promptly once `st` is stopped.
  template <tandem::detail::nullary_predicate Predicate>
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

  /// Chooses the `n` longest-waiting live waiters (all if fewer) and wakes them; each returns
  /// true from wait() once it re-acquires the lock. Slots of waiters whose process died are freed
  /// and not counted. Never blocks. Throws usage_error when the caller does not hold the lock.
  void notify(std::size_t n = 1);

  /// Wakes every live waiter. Throws usage_error as notify() does.
  void notify_all() { notify(std::numeric_limits<std::size_t>::max()); }

private:
  enum : std::uint32_t { kind_own, kind_lock, kind_rlock };
  enum : std::uint32_t { slot_free = 0, slot_waiting = 1, slot_chosen = 2 };

  // One waiting thread. `state` is its futex word; everything is written under the lock (the
  // waiter also reads `state` without it, to sleep).
  struct slot {
    std::atomic<std::uint32_t> state{slot_free};
    std::uint64_t ticket = 0; // arrival order
    std::uint64_t tag = 0;    // the waiter's process
  };

  std::ptrdiff_t distance_to(const void* p) const noexcept {
    return static_cast<std::ptrdiff_t>(reinterpret_cast<std::uintptr_t>(p) -
                                       reinterpret_cast<std::uintptr_t>(this));
  }
  template <class T>
  T* at_distance() const noexcept {
    return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(this) +
                                static_cast<std::uintptr_t>(offset_));
  }
  basic_lock* plain() const noexcept {
    return kind_ == kind_lock ? at_distance<basic_lock>() : nullptr;
  }
  basic_rlock* recursive() const noexcept {
    return kind_ == kind_rlock ? at_distance<basic_rlock>() : const_cast<basic_rlock*>(&own_);
  }

  bool wait_impl(const timeout& t, const std::stop_token* st);
  std::size_t claim_slot();
  void free_slot(slot& s) noexcept;

  basic_rlock own_;
  std::uint32_t kind_;
  std::ptrdiff_t offset_ = 0;     // from this to the shared lock
  std::uint64_t next_ticket_ = 0; // guarded by the lock
  std::uint32_t waiting_ = 0;     // guarded by the lock: at least the slots in slot_waiting
  slot slots_[max_waiters];
};

} // namespace tandem::mp
