// tandem::priority_queue<T, Compare>: Python's queue.PriorityQueue (3.13, shutdown included) for
// C++ threads.
//
// A queue that returns its *least* element under Compare first, as Python's heapq does; this is
// the opposite of std::priority_queue, which returns the greatest. Equal elements come out in
// the order they were put (Python leaves that order unspecified; tandem makes it FIFO).
// Otherwise it has tandem::queue's whole contract: bounding, blocking puts and gets with
// timeouts and stop tokens, task_done()/join(), shutdown(immediate), the strong exception
// guarantee.
//
//   tandem::priority_queue<std::pair<int, std::string>> jobs;
//   jobs.put({2, "later"});
//   jobs.put({1, "first"});
//   jobs.get();   // {1, "first"}
//
//   tandem::priority_queue<int, std::greater<int>> largest_first;
//
// Requires: Compare is a strict weak ordering on T. It may throw: a put or get whose comparison
// throws propagates the exception and leaves the queue (and the put's argument) unchanged, since
// the heap compares before it moves anything.
//
// See <tandem/queue.hpp> for states, exception safety, thread-safety and lifetime, and
// <tandem/detail/queue_basic.hpp> for every member's contract. Compare runs under the queue's
// lock: it must not call back into the queue.
//
// Storage: a binary heap in a std::vector; elements whose move may throw are held through a
// pointer so the heap can always reorder without throwing. put and get take O(log n)
// comparisons.
//
// Neither copyable nor movable.
#pragma once

#include <tandem/detail/queue_basic.hpp>
#include <tandem/detail/queue_containers.hpp>

#include <cstddef>
#include <functional>
#include <utility>

namespace tandem {

/// Python's queue.PriorityQueue: least element under Compare first. See the file comment.
template <class T, class Compare = std::less<T>>
class priority_queue : public detail::basic_queue<T, detail::queue_heap<T, Compare>> {
  using base = detail::basic_queue<T, detail::queue_heap<T, Compare>>;

public:
  using value_compare = Compare;

  // -- construction ---------------------------------------------------------------------------

  /// A priority queue holding at most `maxsize` items (0, the default, means unbounded) and
  /// ordering them with `comp`.
  explicit priority_queue(std::size_t maxsize = 0, Compare comp = Compare())
      : base(maxsize, std::in_place, std::move(comp)) {}
};

} // namespace tandem
