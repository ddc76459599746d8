// tandem::mp::barrier: Python's `multiprocessing.Barrier`, a rendezvous for a fixed number of
// threads in any processes, that breaks instead of hanging when a waiting party dies.
//
// Where it lives, and why it works at any address: as tandem::mp::lock (placement-construct it in
// shared memory before fork(), or `mp::barrier::create(4)` for a handle in the default arena).
//
// The contract is tandem::barrier's: wait() blocks until parties() threads have called it, then
// all return together, each with its arrival index (0 to parties() - 1, unique per cycle); the
// last arriver runs the optional action first. States filling, draining, resetting and broken; a
// timeout, a stop request after arriving, a throwing action or abort() break the barrier, and
// every waiter (and every later wait()) gets broken_barrier_error until reset().
//
//   // in shared memory, before fork():
//   auto* sync = new (shared_memory) tandem::mp::barrier{4};
//   // in each of four processes:
//   for (;;) {
//     compute_my_part();
//     sync->wait();
//   }
//
// Robustness: the barrier records which processes are inside wait(). A party that dies inside
// wait() (waiting, arriving, or running the action) breaks the barrier within a second: every
// waiter, and every later wait(), gets broken_barrier_error, as after abort(); reset() makes it
// usable again. A party that dies after its arrival completed a cycle, before it left, lets that
// cycle complete for the others, then breaks the barrier for the next one (which would otherwise
// wait for it forever). A party that dies outside wait() (between two waits) cannot be told from
// a late one: give wait() a timeout for that. At most max_parties parties.
//
// The action: a std::function kept inside the barrier, valid in the program image that built the
// barrier, i.e. in the creating process and its fork() children (whose memory is a copy of the
// creator's). If the last arriver runs another image (an mp::process started with spawn or
// forkserver, an unrelated process), it cannot run the action: the barrier breaks and that party
// gets usage_error. Barriers shared with such processes should have no action (use the arrival
// index instead: `if (b.wait() == 0) ...`).
//
// Memory ordering: everything each thread wrote before its wait() in a cycle is visible to every
// thread of every process after its wait() of that cycle returns, and to the action.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the barrier. The action runs with the barrier's internal lock held: it must
// not call wait(), reset() or abort() on the same barrier.
//
// Lifetime: destroying a barrier while live threads wait on it is undefined behaviour. Neither
// copyable nor movable.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/detail/robust_word.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>

namespace tandem::mp {

class barrier {
public:
  /// A shared handle to a barrier in the default arena.
  using handle = detail::arena_handle<barrier>;

  /// The most parties a barrier can have.
  static constexpr std::size_t max_parties = 128;

  // -- construction ---------------------------------------------------------------------------

  /// A barrier for `parties` threads (any integer type) that runs `action` (if not empty) in the
  /// last arriver of each cycle, and whose wait() without a timeout waits forever. Throws
  /// value_error when `parties` is less than 1 or more than max_parties.
  template <std::integral Int>
  explicit barrier(Int parties, std::function<void()> action = {})
      : barrier(checked_parties(parties), std::move(action), std::int64_t{-1}) {}

  /// As above, and wait() without a timeout breaks the barrier after `default_timeout` (measured
  /// from each call). A duration of timeout_max or more means forever. Throws value_error for a
  /// NaN duration.
  template <std::integral Int, class Rep, class Period>
  barrier(Int parties, std::function<void()> action,
          std::chrono::duration<Rep, Period> default_timeout)
      : barrier(checked_parties(parties), std::move(action), relative_ns(default_timeout)) {}

  barrier(const barrier&) = delete;
  barrier& operator=(const barrier&) = delete;

  /// Destroys the action in the image that built it (elsewhere it is not this process's to
  /// destroy). Never throws.
  ~barrier();

  /// A barrier built from `args` (as the constructors) in the default arena.
  template <class... Args>
  static handle create(Args&&... args) {
    return handle::make(std::forward<Args>(args)...);
  }

  // -- waiting --------------------------------------------------------------------------------

  /// Arrives and blocks until parties() threads have arrived in this cycle, or the default
  /// timeout expires. Returns this thread's arrival index. Waits first while the previous cycle
  /// drains or a reset completes.
  ///
  /// Throws broken_barrier_error when the barrier is or becomes broken (aborted, timed out, a
  /// party died, the action failed) or is reset while this thread waits; in the last arriver,
  /// rethrows what the action throws, or usage_error when the action cannot run in this process.
  std::size_t wait() { return *wait_impl(default_deadline(), nullptr); }

  /// As wait(), with the timeout `t` instead of the default one. Negative timeouts are
  /// equivalent to a zero timeout. Deadlines in the past are equivalent to an immediate deadline.
  std::size_t wait(timeout t) { return *wait_impl(t, nullptr); }

  /// As wait(), and also returns std::nullopt promptly once `st` is stopped (breaking the barrier
  /// when this thread had arrived, as a timeout does).
  std::optional<std::size_t> wait(const std::stop_token& st) {
    return wait_impl(default_deadline(), &st);
  }

  /// As wait(st), with the timeout `t`.
  std::optional<std::size_t> wait(const std::stop_token& st, timeout t) {
    return wait_impl(t, &st);
  }

  // -- modifiers ------------------------------------------------------------------------------

  /// Returns the barrier to its initial state; waiting threads get broken_barrier_error. Never
  /// throws.
  void reset() noexcept;

  /// Breaks the barrier for every waiting and later thread until reset(). Never throws.
  void abort() noexcept;

  // -- observers ------------------------------------------------------------------------------

  /// The number of threads needed to pass the barrier.
  std::size_t parties() const noexcept { return parties_; }

  /// The number of threads waiting in the current cycle (0 unless filling). A snapshot.
  std::size_t n_waiting() const noexcept {
    return state_.load(std::memory_order_relaxed) == state_filling
               ? count_.load(std::memory_order_relaxed)
               : 0;
  }

  /// True when the barrier is broken. A snapshot.
  bool broken() const noexcept { return state_.load(std::memory_order_relaxed) == state_broken; }

private:
  enum : int { state_filling = 0, state_draining = 1, state_resetting = -1, state_broken = -2 };
  using action_type = std::function<void()>;

  barrier(std::size_t parties, action_type action, std::int64_t default_timeout_ns);

  template <std::integral Int>
  static std::size_t checked_parties(Int parties) {
    if (std::cmp_less(parties, 1))
      throw value_error("tandem::mp::barrier: " + std::to_string(parties) +
                        " parties; a barrier needs at least one party");
    if (std::cmp_greater(parties, max_parties))
      throw value_error("tandem::mp::barrier: " + std::to_string(parties) +
                        " parties; a barrier holds at most " + std::to_string(max_parties));
    return static_cast<std::size_t>(parties);
  }

  template <class Rep, class Period>
  static std::int64_t relative_ns(std::chrono::duration<Rep, Period> d) {
    timeout probe{d}; // validates (NaN) and saturates (huge means forever)
    if (probe.is_forever()) return -1;
    if (d <= d.zero()) return 0;
    return std::chrono::ceil<std::chrono::nanoseconds>(d).count();
  }

  timeout default_deadline() const {
    return default_timeout_ns_ < 0 ? forever
                                   : timeout{std::chrono::nanoseconds{default_timeout_ns_}};
  }

  std::optional<std::size_t> wait_impl(const timeout& t, const std::stop_token* st);

  // The internal lock, and what the next holder does after a holder died.
  void lock_internal() noexcept;
  void repair() noexcept;
  // Requires mtx_: releases it, sleeps until a state change, `t` or one check interval, takes it
  // back, and breaks the barrier if a party inside died.
  // `last_check`: when dead parties were last looked for; updated when they are looked for again
  // (every check_interval, however the wait ends).
  void wait_change(const timeout& t, const std::stop_token* st,
                   timeout::time_point& last_check) noexcept;
  // Requires mtx_: forgets dead parties; true when there were some.
  bool prune_dead() noexcept;
  // Requires mtx_: the last party left a draining barrier.
  void finish_drain() noexcept;
  void notify_all() noexcept;
  void set_state(int s) noexcept { state_.store(s, std::memory_order_relaxed); }
  int state() const noexcept { return state_.load(std::memory_order_relaxed); }

  action_type* action() noexcept { return std::launder(reinterpret_cast<action_type*>(action_)); }

  const std::uint32_t parties_;
  const std::int64_t default_timeout_ns_; // -1: forever
  std::uint64_t action_image_ = 0;        // image_cookie() of the creator; 0: no action
  alignas(action_type) unsigned char action_[sizeof(action_type)];
  detail::robust_word mtx_;
  std::atomic<std::uint32_t> seq_{0};      // bumped (under mtx_) on every state change; a futex
  std::atomic<int> state_{state_filling};  // written under mtx_
  std::atomic<std::size_t> count_{0};      // written under mtx_: parties inside wait()
  std::uint32_t lost_party_ = 0;           // guarded by mtx_: a party died while draining
  std::uint64_t inside_[max_parties] = {}; // guarded by mtx_: tags of the parties that arrived
  std::atomic<std::uint64_t> entering_[max_parties] = {}; // tags of the callers inside wait()
};

} // namespace tandem::mp
