// tandem::mp::event: Python's `multiprocessing.Event`, a flag that threads of any process can wait
// for.
//
// Where it lives, and why it works at any address: as tandem::mp::lock (placement-construct it in
// shared memory before fork(), or `mp::event::create()` for a handle in the default arena).
//
// The contract is tandem::event's: set() sets the flag and wakes every waiter, clear() clears it,
// wait(timeout) returns true at once while it is set and otherwise blocks until the next set();
// a waiter blocked when set() is called returns true even if clear() follows at once.
//
//   // in shared memory, before fork():
//   tandem::mp::event& ready = *shared_ready;
//   // worker process: load(); ready.set();
//   if (!ready.wait(5s)) throw std::runtime_error("the worker did not get ready in time");
//
// Robustness: an event has no holder, so no process death can leave it locked; a process killed
// while waiting costs the others nothing. It is one 32-bit word (a process-shared futex).
//
// Memory ordering: everything a thread wrote before set() is visible to a thread of any process
// once its wait() or is_set() returns true because of that set().
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the event.
//
// Lifetime: destroying an event while live threads wait on it is undefined behaviour. Neither
// copyable nor movable.
#pragma once

#include <tandem/detail/futex.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <cstdint>
#include <stop_token>

namespace tandem::mp {

class event {
public:
  /// A shared handle to an event in the default arena.
  using handle = detail::arena_handle<event>;

  // -- construction ---------------------------------------------------------------------------

  /// A clear event.
  constexpr event() noexcept = default;

  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// A clear event in the default arena. Throws segment_error when the arena cannot be made or
  /// is full.
  static handle create() { return handle::make(); }

  // -- modifiers ------------------------------------------------------------------------------

  /// Sets the event and wakes every thread blocked in wait(), in every process. Setting a set
  /// event changes nothing.
  void set() noexcept {
    auto w = word_.load(std::memory_order_relaxed);
    std::uint32_t next;
    do {
      next = (w & set_bit) != 0 ? w : ((w & ~waiters_bit) + generation_one) | set_bit;
    } while (!word_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                          std::memory_order_relaxed));
    if ((w & (set_bit | waiters_bit)) == waiters_bit) tandem::detail::futex_wake_all(word_, true);
  }

  /// Clears the event. Threads blocked when the last set() happened still return true.
  void clear() noexcept { word_.fetch_and(~set_bit, std::memory_order_acq_rel); }

  // -- waiting --------------------------------------------------------------------------------

  /// Blocks until the event is set or `t` expires. Returns true when the event was set, or was
  /// set while this thread waited; false when the timeout expired first.
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
  /// an immediate deadline.
  bool wait(timeout t = forever) noexcept {
    auto w = word_.load(std::memory_order_acquire);
    if ((w & set_bit) != 0) return true;
    return wait_slow(w, t, nullptr);
  }

  /// As wait(t), and also returns false promptly once `st` is stopped (unless the event was set
  /// first).
  bool wait(const std::stop_token& st, timeout t = forever) noexcept {
    auto w = word_.load(std::memory_order_acquire);
    if ((w & set_bit) != 0) return true;
    return wait_slow(w, t, &st);
  }

  // -- observers ------------------------------------------------------------------------------

  /// True while the event is set (a snapshot).
  bool is_set() const noexcept { return (word_.load(std::memory_order_acquire) & set_bit) != 0; }

private:
  // Bit 0 the flag, bit 1 "a thread may sleep on this word", bits 2-31 the generation, advanced
  // by each set() of a clear event (as tandem::event).
  static constexpr std::uint32_t set_bit = 1;
  static constexpr std::uint32_t waiters_bit = 2;
  static constexpr std::uint32_t generation_one = 4;

  static bool set_since(std::uint32_t start, std::uint32_t now) noexcept {
    return (now & set_bit) != 0 ||
           (now & ~(set_bit | waiters_bit)) != (start & ~(set_bit | waiters_bit));
  }

  bool wait_slow(std::uint32_t w, const timeout& t, const std::stop_token* st) noexcept {
    const auto start = w;
    for (;;) {
      if (set_since(start, w)) return true;
      if ((!t.is_forever() && t.expired()) || (st != nullptr && st->stop_requested())) return false;
      if ((w & waiters_bit) == 0) {
        if (!word_.compare_exchange_weak(w, w | waiters_bit, std::memory_order_acquire,
                                         std::memory_order_acquire))
          continue;
        w |= waiters_bit;
      }
      bool in_time = st != nullptr ? tandem::detail::futex_wait(word_, w, t, *st, true)
                                   : tandem::detail::futex_wait(word_, w, t, true);
      w = word_.load(std::memory_order_acquire);
      if (!in_time) return set_since(start, w);
    }
  }

  std::atomic<std::uint32_t> word_{0};
};

} // namespace tandem::mp
