// tandem::lifo_queue<T>: Python's queue.LifoQueue (3.13, shutdown included) for C++ threads.
//
// A last-in, first-out stack with tandem::queue's whole contract: bounding, blocking puts and
// gets with timeouts and stop tokens, task_done()/join(), shutdown(immediate), the strong
// exception guarantee. Only the order differs: get() returns the most recently put item.
//
//   tandem::lifo_queue<int> s{10};
//   s.put(1); s.put(2); s.put(3);
//   s.get();   // 3
//   s.get();   // 2
//
// See <tandem/queue.hpp> for states, exception safety, thread-safety and lifetime, and
// <tandem/detail/queue_basic.hpp> for every member's contract.
//
// Storage: a std::vector, which grows with std::move_if_noexcept.
//
// Neither copyable nor movable.
#pragma once

#include <tandem/detail/queue_basic.hpp>
#include <tandem/detail/queue_containers.hpp>

#include <cstddef>

namespace tandem {

/// Python's queue.LifoQueue: last in, first out. See the file comment.
template <class T>
class lifo_queue : public detail::basic_queue<T, detail::queue_lifo<T>> {
  using base = detail::basic_queue<T, detail::queue_lifo<T>>;

public:
  // -- construction ---------------------------------------------------------------------------

  /// A stack holding at most `maxsize` items; 0 (the default) means unbounded.
  explicit lifo_queue(std::size_t maxsize = 0) noexcept : base(maxsize) {}
};

} // namespace tandem
