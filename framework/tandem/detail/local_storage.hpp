// The per-thread storage behind tandem::local<T>: slots, per-thread tables, and the clean-up that
// runs when a thread ends.
//
// Every live local<T> owns one slot index. Every thread that has used a local owns one table: a
// vector of values indexed by slot. A thread reads its own table without locking (its view of the
// table is a thread_local pointer and size that only it changes); every change to a table, by its
// own thread or by a local being destroyed in another thread, happens under the table's mutex.
//
// Values die in three ways:
//   - when their thread ends: a pthread key destructor empties the table (any thread: std::thread,
//     pthreads, tandem::thread), and tandem::thread calls destroy_thread_locals() itself, earlier,
//     so join() returns only after the thread's values are gone (as Python's threading.local);
//   - when their local<T> is destroyed: every thread's value for its slot is destroyed then, in
//     the destroying thread;
//   - never twice: whoever takes a value out of a table (under its mutex) destroys it.
//
// Destructors of values run without any lock held, so they may use other locals (even the
// thread's own table, which is emptied again until it stays empty).
#pragma once

#include <cstddef>
#include <memory>

namespace tandem::detail {

/// A value of some local<T> in one thread.
class local_value_base {
public:
  virtual ~local_value_base() = default;
};

template <class T>
class local_value final : public local_value_base {
public:
  template <class... Args>
  explicit local_value(Args&&... args) : value(std::forward<Args>(args)...) {}

  T value;
};

/// Builds a thread's value for a slot (the local's initial arguments, copied for each thread).
class local_factory {
public:
  virtual ~local_factory() = default;
  virtual std::unique_ptr<local_value_base> make() const = 0;
};

/// The calling thread's view of its table: only that thread writes it.
struct local_view {
  local_value_base* const* data = nullptr;
  std::size_t size = 0;
};

extern thread_local constinit local_view current_local_view;

/// The value of `slot` in the calling thread, or null when the thread has none yet.
inline local_value_base* local_find(std::size_t slot) noexcept {
  const local_view& view = current_local_view;
  return slot < view.size ? view.data[slot] : nullptr;
}

/// Builds the calling thread's value for `slot` with `factory` and stores it. Throws what the
/// factory throws (nothing is stored then).
local_value_base* local_create(std::size_t slot, const local_factory& factory);

/// Reserves a slot for a new local.
std::size_t local_acquire_slot();

/// Destroys every thread's value of `slot` (in the calling thread) and frees the slot for reuse.
void local_release_slot(std::size_t slot) noexcept;

/// Destroys the calling thread's values of every local now, instead of at thread exit. Values
/// created afterwards by the same thread are destroyed at its exit as usual.
void destroy_thread_locals() noexcept;

} // namespace tandem::detail
