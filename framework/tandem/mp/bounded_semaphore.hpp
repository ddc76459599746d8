// tandem::mp::bounded_semaphore: Python's `multiprocessing.BoundedSemaphore`, a semaphore shared by
// processes whose count may never exceed its initial value.
//
// It behaves as tandem::mp::semaphore (including semaphore_options{.return_on_death}), except
// that release(n) throws value_error, and changes nothing, when it would raise the count above
// the initial value; the check and the addition are one atomic step across processes. Units a
// dead process held and that come back (return_on_death) never raise the count past the bound:
// they were taken from it.
//
//   // in shared memory, before fork():
//   auto* pool = new (shared_memory) tandem::mp::bounded_semaphore{8};
//   pool->acquire();
//   ...
//   pool->release();
//   pool->release();                     // value_error: one release too many
//
// Where it lives, memory ordering, thread- and process-safety, lifetime: as mp::semaphore. It is
// not an mp::semaphore (no conversion), so the bound cannot be bypassed through a base reference.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/robust_arena.hpp>
#include <tandem/mp/semaphore.hpp>
#include <tandem/timeout.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace tandem::mp {

class bounded_semaphore : private semaphore {
public:
  /// A shared handle to a bounded semaphore in the default arena.
  using handle = detail::arena_handle<bounded_semaphore>;

  // -- construction ---------------------------------------------------------------------------

  /// A bounded semaphore with one unit, bounded at 1.
  bounded_semaphore() noexcept : semaphore(), initial_(1) { set_return_limit(1); }

  /// A bounded semaphore with `value` units, bounded at `value`, treating dead processes' units
  /// as `options` says. Throws value_error when `value` is negative or greater than max().
  template <std::integral Int>
  explicit bounded_semaphore(Int value, semaphore_options options = {})
      : semaphore(checked_initial(value, "bounded_semaphore"), options),
        initial_(static_cast<std::uint32_t>(value)) {
    set_return_limit(initial_);
  }

  bounded_semaphore(const bounded_semaphore&) = delete;
  bounded_semaphore& operator=(const bounded_semaphore&) = delete;

  /// A bounded semaphore built from `args` (as the constructors) in the default arena.
  template <class... Args>
  static handle create(Args&&... args) {
    return handle::make(std::forward<Args>(args)...);
  }

  using semaphore::max;

  // -- Python's interface ---------------------------------------------------------------------

  /// See semaphore::acquire.
  using semaphore::acquire;

  /// Adds `n` units and wakes up to `n` blocked acquirers. Throws value_error, and changes
  /// nothing, when the count would exceed the initial value. `release(0)` does nothing.
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

  using semaphore::get_value;
  using semaphore::returns_on_death;

  /// The initial value, which is also the bound.
  std::size_t initial_value() const noexcept { return initial_; }

private:
  [[noreturn, gnu::cold, gnu::noinline]] void throw_too_many(std::size_t n) const {
    throw value_error("tandem::mp::bounded_semaphore::release: releasing " + std::to_string(n) +
                      " unit(s) would raise the count from " + std::to_string(count()) +
                      " past the initial value " + std::to_string(initial_) +
                      "; release only what was acquired");
  }

  const std::uint32_t initial_;
};

} // namespace tandem::mp
