// tandem::simple_queue<T>: Python's queue.SimpleQueue for C++ threads.
//
// An unbounded first-in, first-out, multi-producer, multi-consumer queue without task tracking
// and without shutdown: the lean choice when nobody calls join().
//
//   tandem::simple_queue<int> q;
//   q.put(1);                          // never blocks
//   int x = q.get();                   // blocks while empty
//   std::optional<int> y = q.get(1s);  // nullopt: still empty after 1 s
//
// States: none beyond its items. Puts never block and never fail except by throwing what copying
// or moving the item (or growing the buffer) throws, which leaves the queue and the argument
// unchanged. A get that throws while copying or moving the item out leaves the item queued, in
// its place.
//
// Thread-safety: every member may be called concurrently from any number of threads. Element
// copy, move and destruction run under the queue's lock: they must not call back into the same
// queue (Python's SimpleQueue is reentrant for __del__ callbacks; a C++ destructor that puts into
// the queue it is leaving would deadlock).
//
// Lifetime: the queue must outlive every call on it; items still queued are destroyed with it.
//
// Neither copyable nor movable.
#pragma once

#include <tandem/detail/queue_ring.hpp>
#include <tandem/detail/queue_sync.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <cstddef>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace tandem {

/// Python's queue.SimpleQueue: unbounded FIFO, no task tracking. See the file comment.
template <class T>
class simple_queue {
  static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                "a queue holds non-const objects");
  static_assert(std::is_nothrow_destructible_v<T>,
                "a queue's elements must not throw when destroyed");
  static_assert(std::is_move_constructible_v<T>, "a queue's elements must be movable or copyable");

public:
  using value_type = T;
  using size_type = std::size_t;

  // -- construction ---------------------------------------------------------------------------

  /// An empty queue; allocates nothing until the first put.
  simple_queue() noexcept = default;
  simple_queue(const simple_queue&) = delete;
  simple_queue& operator=(const simple_queue&) = delete;

  /// Destroys the items still queued. Requires: no thread is using the queue.
  ~simple_queue() = default;

  // -- putting --------------------------------------------------------------------------------

  /// Python's `put(item)`: appends `item`; never blocks. Throws what copying or moving `item`
  /// (or growing the buffer) throws; the queue and `item` are then unchanged. The rvalue
  /// overload moves from `item` only when the put can no longer fail (copying it instead when
  /// T's move constructor may throw and T is copyable).
  void put(const T& item) { put_impl(item); }
  void put(T&& item) { put_impl(std::move_if_noexcept(item)); }

  /// Python's `put(item, block, timeout)`: the timeout is ignored, since a put never blocks;
  /// returns true. For code written against tandem::queue.
  bool put(const T& item, timeout) {
    put_impl(item);
    return true;
  }
  bool put(T&& item, timeout) {
    put_impl(std::move_if_noexcept(item));
    return true;
  }

  /// Python's `put_nowait(item)`: the same as put(item).
  void put_nowait(const T& item) { put_impl(item); }
  void put_nowait(T&& item) { put_impl(std::move_if_noexcept(item)); }

  // -- getting --------------------------------------------------------------------------------

  /// Python's `get()`: removes and returns the oldest item, blocking while the queue is empty.
  /// Throws what copying or moving the item out throws; the item then stays queued.
  ///
  /// Memory ordering: everything the putting thread did before its put happens-before the get
  /// that returns that item.
  T get() {
    detail::queue_lock lk{mtx_};
    wait_for_item(lk, forever, nullptr);
    return take<T>();
  }

  /// Python's `get(timeout=t)`: as get(), but returns std::nullopt when `t` expires first.
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent
  /// to an immediate deadline. A zero timeout takes an item only if one is there right away.
  std::optional<T> get(timeout t) {
    detail::queue_lock lk{mtx_};
    if (!wait_for_item(lk, t, nullptr)) return std::nullopt;
    return take<std::optional<T>>();
  }

  /// As get(t), and also returns std::nullopt promptly once `st` is stopped while waiting (at
  /// once, taking nothing, if it is stopped on entry). A stop request never makes it throw.
  std::optional<T> get(std::stop_token st, timeout t = forever) {
    if (st.stop_requested()) return std::nullopt;
    detail::queue_lock lk{mtx_};
    if (!wait_for_item(lk, t, &st)) return std::nullopt;
    return take<std::optional<T>>();
  }

  /// Python's `get_nowait()`: removes and returns the oldest item if there is one; never
  /// blocks. Throws empty_error when the queue is empty.
  T get_nowait() {
    detail::queue_lock lk{mtx_};
    if (ring_.empty()) detail::queue_throw_empty();
    return take<T>();
  }

  // -- observers ------------------------------------------------------------------------------

  /// Python's `qsize()`: the number of queued items (a snapshot). Lock-free.
  std::size_t qsize() const noexcept { return size_.load(std::memory_order_acquire); }

  /// Python's `empty()`: qsize() == 0 (a snapshot).
  bool empty() const noexcept { return qsize() == 0; }

private:
  template <class U>
  void put_impl(U&& item) {
    detail::queue_lock lk{mtx_};
    ring_.push_back(std::forward<U>(item));
    size_.store(ring_.size(), std::memory_order_release);
    not_empty_.notify_one();
  }

  bool wait_for_item(detail::queue_lock& lk, timeout t, const std::stop_token* st) {
    if (!ring_.empty()) return true;
    return detail::queue_wait(
               not_empty_, lk, [this] { return !ring_.empty(); }, t, st) ==
           detail::queue_wait_status::ready;
  }

  template <class R>
  R take() {
    auto commit = [this]() noexcept {
      ring_.pop_front();
      size_.store(ring_.size(), std::memory_order_release);
    };
    detail::queue_commit_guard<decltype(commit), !std::is_nothrow_move_constructible_v<T>> guard{
        commit};
    return detail::queue_make_result<R>(ring_.front());
  }

  detail::queue_mutex mtx_;
  std::atomic<std::size_t> size_{0}; // ring_.size(), stored under mtx_, read without it
  detail::queue_waiters not_empty_;  // guarded by mtx_
  detail::queue_ring<T> ring_;       // guarded by mtx_
};

} // namespace tandem
