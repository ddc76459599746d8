// tandem::mp::semaphore: Python's `multiprocessing.Semaphore`, a counter of available units shared
// by processes; optionally, the units a dead process held come back.
//
// Where it lives, and why it works at any address: as tandem::mp::lock (placement-construct it in
// shared memory before fork(), or `mp::semaphore::create(3)` for a handle in the default arena).
//
// The contract is tandem::semaphore's: acquire() takes one unit, blocking while the count is 0;
// release(n) adds n units and wakes up to n blocked acquirers; any thread of any process may
// release; C++ *TimedLockable* (lock = acquire one unit, unlock = release one).
//
//   // in shared memory, before fork():
//   auto* slots = new (shared_memory) tandem::mp::semaphore{4};
//   // in each worker process:
//   std::scoped_lock guard{*slots};      // at most four at a time, across processes
//   work();
//
// Process death. By default (as POSIX and Python semaphores), the units a process took are lost
// when it dies without releasing them: the semaphore cannot know whether a unit was "held" or
// handed over. Built with `semaphore_options{.return_on_death = true}`, the semaphore records how
// many units each process holds (acquired minus released by that process, in a table of
// max_tracked_processes entries inside the semaphore) and gives back the units of processes that
// died: blocked acquirers notice within a second, and a try-acquire that finds no unit looks for
// dead holders first. Then:
//   - a unit should be released by the process that acquired it: a release by a process that
//     holds no unit still adds units but frees no holding, so the acquirer's unit would come back
//     a second time when it dies (never past the bound of a bounded_semaphore, nor past max());
//   - an entry of the table belongs to a process while it holds units: a release that brings its
//     units to 0 frees the entry, and a process that finds the table full first frees the
//     entries of dead processes (giving their units back); units taken while
//     max_tracked_processes live processes hold units are not tracked (lost on death, as by
//     default);
//   - the count and the table change together under an internal robust lock with an undo record,
//     so a process killed in the middle of an acquire or release neither loses nor duplicates a
//     unit; acquire and release cost a lock round trip more than without the option.
//
// Memory ordering: a successful acquire synchronizes with the release that provided its unit.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the semaphore.
//
// Lifetime: destroying the semaphore while live threads use it is undefined behaviour. Neither
// copyable nor movable.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/detail/robust_word.hpp>
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

namespace tandem::mp {

/// How a semaphore treats the units of a process that dies.
struct semaphore_options {
  /// Give the units a dead process held back to the semaphore (see semaphore.hpp).
  bool return_on_death = false;
};

class semaphore {
public:
  /// A shared handle to a semaphore in the default arena.
  using handle = detail::arena_handle<semaphore>;

  /// How many processes' holdings a semaphore with return_on_death tracks at once.
  static constexpr std::size_t max_tracked_processes = 32;

  // -- construction ---------------------------------------------------------------------------

  /// A semaphore with one unit.
  semaphore() noexcept : count_(1) {}

  /// A semaphore with `value` units (any integer type), treating dead processes' units as
  /// `options` says. Throws value_error when `value` is negative or greater than max().
  template <std::integral Int>
  explicit semaphore(Int value, semaphore_options options = {})
      : count_(checked_initial(value, "semaphore")),
        return_on_death_(options.return_on_death ? 1 : 0) {}

  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// A semaphore built from `args` (as the constructors) in the default arena. Throws as the
  /// constructor, and segment_error when the arena cannot be made or is full.
  template <class... Args>
  static handle create(Args&&... args) {
    return handle::make(std::forward<Args>(args)...);
  }

  /// The largest count a semaphore can hold.
  static constexpr std::ptrdiff_t max() noexcept {
    return std::numeric_limits<std::int32_t>::max();
  }

  // -- Python's interface ---------------------------------------------------------------------

  /// Takes one unit, blocking while there is none, until a release() (or, with return_on_death,
  /// a dead holder) provides one or `t` expires. Returns true when a unit was taken. A zero
  /// timeout tries once.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool acquire(timeout t = forever) noexcept { return take() || acquire_slow(t, nullptr); }

  /// As acquire(t), and also returns false promptly once `st` is stopped.
  bool acquire(const std::stop_token& st, timeout t = forever) noexcept {
    if (st.stop_requested()) return false;
    return take() || acquire_slow(t, &st);
  }

  /// Adds `n` units and wakes up to `n` blocked acquirers. Throws value_error, and changes
  /// nothing, when the count would exceed max(). `release(0)` does nothing.
  void release(std::size_t n = 1) {
    if (!release_within(n, static_cast<std::uint32_t>(max()))) throw_overflow(n);
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  /// Blocks until a unit is taken.
  void lock() noexcept { acquire(); }

  /// Takes a unit if one is available (or, with return_on_death, was held by a dead process);
  /// never waits for a unit (with return_on_death it may wait a moment for the internal lock that
  /// guards the holdings).
  bool try_lock() noexcept { return acquire(timeout::immediate()); }

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

  /// Releases one unit, like release(), but never throws: at max() it does nothing.
  void unlock() noexcept { release_within(1, static_cast<std::uint32_t>(max())); }

  // -- observers ------------------------------------------------------------------------------

  /// The current count (Python's get_value(); a snapshot).
  std::size_t get_value() const noexcept { return count_.load(std::memory_order_relaxed); }

  /// True when the units of dead processes come back (see the file comment).
  bool returns_on_death() const noexcept { return return_on_death_ != 0; }

protected:
  template <std::integral Int>
  static std::uint32_t checked_initial(Int value, const char* type) {
    if (std::cmp_less(value, 0))
      throw value_error(std::string{"tandem::mp::"} + type + ": the initial value " +
                        std::to_string(value) + " is negative; give a count of 0 or more");
    if (std::cmp_greater(value, max()))
      throw value_error(std::string{"tandem::mp::"} + type + ": the initial value " +
                        std::to_string(value) + " exceeds " + std::to_string(max()));
    return static_cast<std::uint32_t>(value);
  }

  /// Adds `n` units unless the count would exceed `limit`; returns false (changing nothing) then.
  bool release_within(std::size_t n, std::uint32_t limit) noexcept;

  /// The current count (a snapshot).
  std::uint32_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

  /// The count that units given back by dead processes never push past (a bounded semaphore's
  /// initial value). Set by the constructor of a derived class.
  void set_return_limit(std::uint32_t limit) noexcept { return_limit_ = limit; }

private:
  // One process's holdings: its tag (0: free entry) and how many units it holds (guarded by
  // mtx_).
  // Both are atomics although guarded: a process that dies under mtx_ leaves its stores for the
  // next holder, and release stores keep them in program order (see begin_change()).
  struct holding {
    std::atomic<std::uint64_t> tag{0}; // also read without mtx_, to look for dead holders
    std::atomic<std::uint32_t> units{0};
  };

  // What a change under mtx_ overwrites, so that the next holder can undo the change of a process
  // that died in its middle (guarded by mtx_).
  struct undo_record {
    std::atomic<std::uint32_t> active{0};
    std::uint32_t count = 0;
    std::uint64_t index = 0;
    std::uint64_t tag = 0;
    std::uint32_t units = 0;
  };

  // Takes a unit, recording it when tracking.
  bool take() noexcept { return return_on_death_ != 0 ? tracked_take() : try_take(); }

  bool try_take() noexcept {
    auto c = count_.load(std::memory_order_relaxed);
    while (c != 0)
      if (count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return true;
    return false;
  }

  void wake(std::size_t n) noexcept {
    if (waiters_.load(std::memory_order_seq_cst) != 0)
      tandem::detail::futex_wake(count_, n > 0x7fffffff ? 0x7fffffff : static_cast<int>(n), true);
  }

  bool acquire_slow(const timeout& t, const std::stop_token* st) noexcept;

  // return_on_death only: the count and the holdings change together under mtx_.
  bool tracked_take() noexcept;
  bool tracked_release(std::size_t n, std::uint32_t limit) noexcept;
  bool reclaim_dead() noexcept;
  std::uint32_t reclaim_locked() noexcept; // requires mtx_; returns the units given back
  void lock_table() noexcept;
  void undo_dead_change() noexcept;         // requires mtx_, taken over from a dead holder
  void repair_dead_table_holder() noexcept; // takes mtx_ over when its holder died, and undoes
  holding* find_holding() noexcept;         // requires mtx_; null when the table is full
  // Requires mtx_; when the table is full, frees the entries of dead processes first (adding the
  // units given back to `returned`); null when it is full of live processes.
  holding* my_holding(std::uint32_t& returned) noexcept;
  void begin_change(std::size_t index) noexcept;
  void end_change() noexcept { undo_.active.store(0, std::memory_order_release); }

  [[noreturn, gnu::cold, gnu::noinline]] void throw_overflow(std::size_t n) const;

  std::atomic<std::uint32_t> count_;
  std::atomic<std::uint32_t> waiters_{0}; // threads in (or about to enter) a futex wait
  std::uint32_t return_on_death_ = 0;
  std::uint32_t return_limit_ = static_cast<std::uint32_t>(max());
  detail::robust_word mtx_;
  undo_record undo_;                        // guarded by mtx_
  holding holdings_[max_tracked_processes]; // guarded by mtx_
};

} // namespace tandem::mp
