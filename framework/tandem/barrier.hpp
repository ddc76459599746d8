// tandem::barrier: Python's `threading.Barrier`, a rendezvous for a fixed number of threads.
//
// A barrier is created for `parties` threads. Each calls wait(); the call blocks until all
// `parties` threads have called it, then all of them return together and the barrier is ready for
// the next cycle. Each wait() returns the thread's arrival index in its cycle, 0 for the first
// arriver to parties() - 1 for the last, unique per cycle (so one thread can be picked for a
// follow-up job, as in Python). The last arriver runs the optional `action` before anyone is
// released.
//
// States (Python's state machine): *filling* (threads arrive), *draining* (the cycle completed and
// its threads are leaving; new arrivals wait until they all left), *resetting* (reset() was called
// while threads waited; they leave with broken_barrier_error) and *broken*. A barrier breaks
// when:
//   - a wait() times out (the default timeout, or the one passed to wait()),
//   - a wait() is cancelled through its std::stop_token,
//   - the action throws: the exception reaches the thread that ran it (the last arriver) and
//     every other waiter gets broken_barrier_error,
//   - abort() is called.
// Every thread waiting in, or later calling, wait() on a broken barrier gets
// broken_barrier_error, until reset() makes it usable again.
//
//   tandem::barrier sync{4, [] { swap_buffers(); }};
//   // in each of four threads:
//   for (;;) {
//     compute_my_part();
//     if (sync.wait() == 0)
//       log_progress();                   // one thread per cycle does this
//   }
//
// Memory ordering: everything each thread wrote before its wait() in a cycle is visible to every
// thread after its wait() of that cycle returns, and to the action.
//
// Thread-safety: every member may be called concurrently from any thread. The action runs with the
// barrier's internal lock held: it must not call wait(), reset() or abort() on the same barrier
// (parties(), n_waiting() and broken() are fine).
//
// Lifetime: destroying a barrier while threads wait on it is undefined behaviour. A barrier is
// neither copyable nor movable.
#pragma once

#include <tandem/detail/futex_condvar.hpp>
#include <tandem/detail/futex_mutex.hpp>
#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>

namespace tandem {

class barrier {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A barrier for `parties` threads (any integer type) that runs `action` (if not empty) in the
  /// last arriver of each cycle, and whose wait() without a timeout waits forever.
  /// Throws value_error when `parties` is less than 1.
  template <std::integral Int>
  explicit barrier(Int parties, std::function<void()> action = {})
      : parties_(checked_parties(parties)), action_(std::move(action)) {}

  /// As above, and wait() without a timeout breaks the barrier after `default_timeout` (measured
  /// from each call), as Python's `Barrier(parties, action, timeout)`. A duration of timeout_max
  /// or more means forever. Throws value_error for a NaN duration.
  template <std::integral Int, class Rep, class Period>
  barrier(Int parties, std::function<void()> action,
          std::chrono::duration<Rep, Period> default_timeout)
      : parties_(checked_parties(parties)), action_(std::move(action)),
        default_timeout_(relative(default_timeout)) {}

  barrier(const barrier&) = delete;
  barrier& operator=(const barrier&) = delete;

  // -- waiting --------------------------------------------------------------------------------

  /// Arrives at the barrier and blocks until parties() threads have arrived in this cycle, or the
  /// barrier's default timeout expires. Returns this thread's arrival index (0 to parties() - 1).
  /// If the barrier is draining (the previous cycle's threads are still leaving) or resetting,
  /// first waits for that to finish.
  ///
  /// Throws broken_barrier_error when the barrier is or becomes broken (or is reset) while this
  /// thread waits, and when this wait times out (which also breaks the barrier for everyone).
  /// In the last arriver, rethrows whatever the action throws (which also breaks the barrier).
  std::size_t wait() { return wait(default_deadline()); }

  /// As wait(), with the timeout `t` instead of the default one.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline. (A zero timeout breaks the barrier unless this thread is the last to
  /// arrive.)
  std::size_t wait(timeout t) { return *wait_impl(t, nullptr); }

  /// As wait(), and also returns std::nullopt promptly once `st` is stopped. A thread stopped
  /// after it arrived breaks the barrier, as a timeout does, so that the others do not wait for
  /// it forever; a thread stopped before it arrived (already at the call, or while the previous
  /// cycle drained) leaves the barrier intact. A stop request never throws; a broken barrier
  /// still throws broken_barrier_error.
  std::optional<std::size_t> wait(const std::stop_token& st) {
    return wait_impl(default_deadline(), &st);
  }

  /// As wait(st), with the timeout `t` instead of the default one.
  std::optional<std::size_t> wait(const std::stop_token& st, timeout t) {
    return wait_impl(t, &st);
  }

  // -- modifiers ------------------------------------------------------------------------------

  /// Returns the barrier to its initial, empty state. Threads waiting in it get
  /// broken_barrier_error; once they have all left, the barrier is usable again (a broken barrier
  /// too). Never throws.
  void reset() noexcept {
    std::scoped_lock guard{mtx_};
    if (count_.load(std::memory_order_relaxed) > 0) {
      auto s = state();
      if (s == state_filling || s == state_broken) set_state(state_resetting);
      // draining: the leaving threads finish the cycle, then the barrier fills again.
    } else {
      set_state(state_filling);
    }
    cv_.notify_all();
  }

  /// Breaks the barrier: every thread waiting in it, and every later wait(), gets
  /// broken_barrier_error until reset(). Useful when a party cannot arrive (it failed), so the
  /// others do not wait for it. Never throws.
  void abort() noexcept {
    std::scoped_lock guard{mtx_};
    break_barrier();
  }

  // -- observers ------------------------------------------------------------------------------

  /// The number of threads needed to pass the barrier.
  std::size_t parties() const noexcept { return parties_; }

  /// The number of threads waiting in the current cycle (0 unless the barrier is filling).
  /// A snapshot.
  std::size_t n_waiting() const noexcept {
    return state() == state_filling ? count_.load(std::memory_order_relaxed) : 0;
  }

  /// True when the barrier is broken. A snapshot.
  bool broken() const noexcept { return state() == state_broken; }

private:
  enum state_type : int {
    state_filling = 0,
    state_draining = 1,
    state_resetting = -1,
    state_broken = -2,
  };

  template <std::integral Int>
  static std::size_t checked_parties(Int parties) {
    if (std::cmp_less(parties, 1))
      throw value_error("tandem::barrier: " + std::to_string(parties) +
                        " parties; a barrier needs at least one party");
    if (std::cmp_greater(parties, std::numeric_limits<std::size_t>::max()))
      throw value_error("tandem::barrier: too many parties");
    return static_cast<std::size_t>(parties);
  }

  // The default timeout as a duration to add at each wait(), or nullopt for forever.
  template <class Rep, class Period>
  static std::optional<timeout::duration> relative(std::chrono::duration<Rep, Period> d) {
    timeout probe{d}; // validates (NaN) and saturates (huge means forever)
    if (probe.is_forever()) return std::nullopt;
    if (d <= d.zero()) return timeout::duration::zero();
    return std::chrono::ceil<timeout::duration>(d);
  }

  timeout default_deadline() const {
    return default_timeout_ ? timeout{*default_timeout_} : forever;
  }

  state_type state() const noexcept {
    return static_cast<state_type>(state_.load(std::memory_order_relaxed));
  }

  void set_state(state_type s) noexcept { state_.store(s, std::memory_order_relaxed); }

  // Requires mtx_.
  void break_barrier() noexcept {
    set_state(state_broken);
    cv_.notify_all();
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_broken(const char* why) {
    throw broken_barrier_error(std::string{"tandem::barrier::wait: "} + why);
  }

  std::optional<std::size_t> wait_impl(const timeout& t, const std::stop_token* st) {
    std::unique_lock guard{mtx_};
    // Python's _enter: block while the previous cycle drains or a reset is in progress.
    while (state() == state_draining || state() == state_resetting) {
      if (st != nullptr && st->stop_requested()) return std::nullopt;
      if (st != nullptr)
        cv_.wait(mtx_, forever, *st);
      else
        cv_.wait(mtx_);
    }
    if (state() == state_broken)
      throw_broken("the barrier is broken; reset() it before using it again");
    if (st != nullptr && st->stop_requested())
      return std::nullopt; // stopped before arriving: not a party of this cycle

    auto index = count_.load(std::memory_order_relaxed);
    count_.store(index + 1, std::memory_order_relaxed);
    // Python's _exit, on every way out (return or throw): the last thread to leave a draining or
    // resetting barrier makes it fill again.
    struct leave {
      barrier& b;
      ~leave() {
        auto left = b.count_.load(std::memory_order_relaxed) - 1;
        b.count_.store(left, std::memory_order_relaxed);
        if (left == 0 && (b.state() == state_draining || b.state() == state_resetting)) {
          b.set_state(state_filling);
          b.cv_.notify_all();
        }
      }
    } on_exit{*this};

    if (index + 1 == parties_) {
      // Python's _release: the last arriver runs the action, then lets everyone go.
      try {
        if (action_) action_();
        set_state(state_draining);
        cv_.notify_all();
      } catch (...) {
        break_barrier();
        throw;
      }
      return index;
    }

    // Python's _wait.
    while (state() == state_filling) {
      if (st != nullptr && st->stop_requested()) {
        break_barrier();
        return std::nullopt;
      }
      if (!t.is_forever() && t.expired()) {
        break_barrier();
        throw_broken("timed out waiting for the other parties; the barrier is now broken");
      }
      if (st != nullptr)
        cv_.wait(mtx_, t, *st);
      else
        cv_.wait(mtx_, t);
    }
    if (state() == state_broken)
      throw_broken("the barrier was broken (aborted, timed out, or its action failed) while "
                   "this thread waited");
    if (state() == state_resetting) throw_broken("the barrier was reset while this thread waited");
    return index;
  }

  const std::size_t parties_;
  const std::function<void()> action_;
  const std::optional<timeout::duration> default_timeout_;
  detail::futex_mutex mtx_;
  detail::futex_condvar cv_;              // signalled on every state change, under mtx_
  std::atomic<int> state_{state_filling}; // written under mtx_; read anywhere
  std::atomic<std::size_t> count_{0};     // written under mtx_; read anywhere
};

} // namespace tandem
