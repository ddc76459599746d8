// The orderings behind detail::basic_queue: FIFO (tandem::queue), LIFO (tandem::lifo_queue) and
// least-first (tandem::priority_queue).
//
// Each container takes an element in two steps so that basic_queue can give the strong exception
// guarantee even when building the caller's copy of the element throws:
//
//   auto plan = c.prepare_pop();   // may throw (the heap compares); changes nothing
//   T result(std::move_if_noexcept(c.top()));  // may throw; changes nothing the queue relies on
//   c.commit_pop(plan);            // never throws: removes the (moved-from) top
//
// take_all() moves every element out (into an object the caller destroys later, outside the
// queue's lock) and leaves the container empty.
//
// push gives the strong guarantee: when it throws (allocation, the element's copy or move, the
// comparison), the container and the argument are unchanged. An rvalue argument is moved from
// only by the final construction of the element, after every step that can fail, except that a
// throwing move constructor of a type that cannot be copied leaves the argument as that move
// constructor left it.
//
// Thread-safety: none; basic_queue serializes every call under its mutex.
#pragma once

#include <tandem/detail/queue_ring.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::detail {

/// What a FIFO or LIFO container needs to remember between prepare_pop and commit_pop: nothing.
struct queue_no_plan {};

/// First in, first out, in a ring buffer.
template <class T>
class queue_fifo {
public:
  using plan = queue_no_plan;

  std::size_t size() const noexcept { return ring_.size(); }
  bool empty() const noexcept { return ring_.empty(); }

  template <class U>
  void push(U&& x) {
    ring_.push_back(std::forward<U>(x));
  }

  plan prepare_pop() noexcept { return {}; }
  T& top() noexcept { return ring_.front(); }
  void commit_pop(plan) noexcept { ring_.pop_front(); }

  /// Moves every element out, leaving the container empty.
  queue_ring<T> take_all() noexcept { return queue_ring<T>(std::move(ring_)); }

private:
  queue_ring<T> ring_;
};

/// Last in, first out, in a vector (which grows with std::move_if_noexcept: strong guarantee).
template <class T>
class queue_lifo {
public:
  using plan = queue_no_plan;

  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }

  template <class U>
  void push(U&& x) {
    items_.emplace_back(std::forward<U>(x));
  }

  plan prepare_pop() noexcept { return {}; }
  T& top() noexcept { return items_.back(); }
  void commit_pop(plan) noexcept { items_.pop_back(); }

  std::vector<T> take_all() noexcept { return std::exchange(items_, std::vector<T>{}); }

private:
  std::vector<T> items_;
};

/// Least first under Compare, and first in, first out among equal elements: a binary min-heap
/// of (element, sequence number) nodes.
///
/// The heap never runs a comparison after it started moving nodes: push and prepare_pop find
/// where the nodes go with comparisons only, then nodes move with operations that cannot throw.
/// Elements whose move constructor or move assignment may throw live behind a unique_ptr, so the
/// nodes always move without throwing.
template <class T, class Compare>
class queue_heap {
  static constexpr bool inline_values =
      std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>;

  struct inline_node {
    T value;
    std::uint64_t seq;
  };

  struct boxed_node {
    std::unique_ptr<T> value;
    std::uint64_t seq;
  };

  using node = std::conditional_t<inline_values, inline_node, boxed_node>;

public:
  /// The index where the former last node settles once the top is removed.
  struct plan {
    std::size_t hole = 0;
  };

  explicit queue_heap(Compare comp = Compare()) noexcept(
      std::is_nothrow_move_constructible_v<Compare>)
      : comp_(std::move(comp)) {}

  std::size_t size() const noexcept { return nodes_.size(); }
  bool empty() const noexcept { return nodes_.empty(); }

  template <class U>
  void push(U&& x) {
    if (nodes_.size() == nodes_.capacity()) nodes_.reserve(nodes_.empty() ? 16 : nodes_.size() * 2);
    // Sift up with comparisons only. The new node has the largest sequence number, so it rises
    // above an ancestor only when it is strictly less: equal elements stay first in, first out.
    std::size_t hole = nodes_.size();
    while (hole > 0) {
      std::size_t parent = (hole - 1) / 2;
      if (!comp_(std::as_const(x), value(nodes_[parent]))) break;
      hole = parent;
    }
    // The capacity is reserved, so this either throws having changed nothing, or succeeds.
    if constexpr (inline_values)
      nodes_.push_back(node{T(std::forward<U>(x)), seq_});
    else
      nodes_.push_back(node{std::make_unique<T>(std::forward<U>(x)), seq_});
    ++seq_;
    // Nothing below throws.
    std::size_t i = nodes_.size() - 1;
    if (i == hole) return;
    node moving = std::move(nodes_[i]);
    while (i != hole) {
      std::size_t parent = (i - 1) / 2;
      nodes_[i] = std::move(nodes_[parent]);
      i = parent;
    }
    nodes_[hole] = std::move(moving);
  }

  plan prepare_pop() {
    // The last node will fill the root's place; find where it settles (Floyd's sift-down done
    // with comparisons only).
    std::size_t last = nodes_.size() - 1;
    std::size_t hole = 0;
    if (last == 0) return {hole};
    const node& settling = nodes_[last];
    for (;;) {
      std::size_t child = 2 * hole + 1;
      if (child >= last) break;
      if (child + 1 < last && less(nodes_[child + 1], nodes_[child])) ++child;
      if (!less(nodes_[child], settling)) break;
      hole = child;
    }
    return {hole};
  }

  T& top() noexcept { return value(nodes_.front()); }

  void commit_pop(plan p) noexcept {
    std::size_t last = nodes_.size() - 1;
    if (last != 0) {
      // The path from the root down to the hole: each node on it moves up one level.
      std::size_t path[64];
      std::size_t depth = 0;
      for (std::size_t i = p.hole; i != 0; i = (i - 1) / 2) path[depth++] = i;
      std::size_t parent = 0;
      while (depth > 0) {
        std::size_t child = path[--depth];
        nodes_[parent] = std::move(nodes_[child]);
        parent = child;
      }
      nodes_[p.hole] = std::move(nodes_[last]);
    }
    nodes_.pop_back();
  }

  std::vector<node> take_all() noexcept { return std::exchange(nodes_, std::vector<node>{}); }

private:
  static T& value(node& n) noexcept {
    if constexpr (inline_values)
      return n.value;
    else
      return *n.value;
  }

  static const T& value(const node& n) noexcept {
    if constexpr (inline_values)
      return n.value;
    else
      return *n.value;
  }

  // The heap's order: the element's order, then arrival.
  bool less(const node& a, const node& b) {
    if (comp_(value(a), value(b))) return true;
    if (comp_(value(b), value(a))) return false;
    return a.seq < b.seq;
  }

  std::vector<node> nodes_;
  std::uint64_t seq_ = 0;
  Compare comp_;
};

} // namespace tandem::detail
