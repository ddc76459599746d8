// tandem::bounded_semaphore: Python's `threading.BoundedSemaphore`, a semaphore whose count may
// never exceed its initial value.
//
// It behaves as tandem::semaphore, except that release(n) throws value_error, and changes nothing,
// when it would raise the count above the initial value: releasing more often than acquiring is a
// bug that a bounded semaphore reports instead of silently widening the bound. The check and the
// addition are one atomic step, so concurrent releases cannot overshoot together.
//
//   tandem::bounded_semaphore pool_slots{8};
//   pool_slots.acquire();
//   ...
//   pool_slots.release();
//   pool_slots.release();                 // throws value_error: one release too many
//
// It meets the C++ *TimedLockable* requirements like tandem::semaphore; its unlock() never throws
// and does nothing when the count is already at the initial value.
//
// Memory ordering: a successful acquire synchronizes with the release that provided its unit.
//
// Thread-safety: every member may be called concurrently from any thread.
//
// Lifetime: destroying a bounded_semaphore while threads are blocked in it is undefined behaviour.
// It is neither copyable nor movable. It is not a tandem::semaphore (no conversion), so the bound
// cannot be bypassed through a reference to the base.
#pragma once

#include <tandem/error.hpp>
#include <tandem/semaphore.hpp>
#include <tandem/timeout.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tandem {

class bounded_semaphore : private semaphore {
public:
  // -- construction ---------------------------------------------------------------------------

  /// A bounded semaphore with one unit, bounded at 1.
  bounded_semaphore() noexcept : semaphore(), initial_(1) {}

  /// A bounded semaphore with `value` units, bounded at `value`; `value` may be of any integer
  /// type. Throws value_error when `value` is negative or greater than max().
  template <std::integral Int>
  explicit bounded_semaphore(Int value)
      : semaphore(checked_initial(value, "bounded_semaphore")),
        initial_(static_cast<std::uint32_t>(value)) {}

  bounded_semaphore(const bounded_semaphore&) = delete;
  bounded_semaphore& operator=(const bounded_semaphore&) = delete;

  using semaphore::max;

  // -- Python's interface ---------------------------------------------------------------------

  /// See semaphore::acquire.
  using semaphore::acquire;

  /// Adds `n` units and wakes up to `n` blocked acquirers. Throws value_error, and changes
  /// nothing, when the count would exceed the initial value (Python's "Semaphore released too many
  /// times"). `release(0)` does nothing.
  void release(std::size_t n = 1) {
    if (!release_within(n, initial_)) throw_too_many(n);
  }

  // -- C++ TimedLockable ----------------------------------------------------------------------

  using semaphore::lock;
  using semaphore::try_lock;
  using semaphore::try_lock_for;
  using semaphore::try_lock_until;

  /// Releases one unit, like release(), but never throws: at the bound it does nothing.
  void unlock() noexcept { release_within(1, initial_); }

  // -- observers ------------------------------------------------------------------------------

  /// The initial value, which is also the bound.
  std::size_t initial_value() const noexcept { return initial_; }

private:
  [[noreturn, gnu::cold, gnu::noinline]] void throw_too_many(std::size_t n) const {
    throw value_error("tandem::bounded_semaphore::release: releasing " + std::to_string(n) +
                      " unit(s) would raise the count from " + std::to_string(count()) +
                      " past the initial value " + std::to_string(initial_) +
                      "; release only what was acquired");
  }

  const std::uint32_t initial_;
};

} // namespace tandem
