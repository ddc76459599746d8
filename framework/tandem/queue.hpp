// tandem::queue<T>: Python's queue.Queue (3.13, shutdown included) for C++ threads.
//
// A first-in, first-out, multi-producer, multi-consumer queue of T, optionally bounded:
//
//   tandem::queue<std::string> q{100};          // at most 100 items; queue<T> q; is unbounded
//   q.put("job");                               // blocks while the queue is full
//   if (!q.put("job", 50ms)) { ... }            // false: still full after 50 ms
//   std::string s = q.get();                    // blocks while the queue is empty
//   std::optional<std::string> o = q.get(1s);   // nullopt: still empty after 1 s
//   q.task_done();                              // the work on one taken item is complete
//   q.join();                                   // blocks until every item put is done
//   q.shutdown();                               // no more puts; gets drain, then throw
//
// States: *open* (puts and gets work), then, after shutdown(), *shut down*: every put throws
// shut_down_error, gets return the remaining items and throw shut_down_error once the queue is
// empty; shutdown(true) also drops the remaining items at once. A queue never reopens.
// Alongside, the queue counts *unfinished tasks*: +1 per put, -1 per task_done() (and per item
// dropped by shutdown(true)); join() waits for zero.
//
// The members, shared with lifo_queue and priority_queue, are documented in
// <tandem/detail/queue_basic.hpp>. In brief (Python's names; `timeout` everywhere; negative
// timeouts are equivalent to a zero timeout, deadlines in the past to an immediate deadline):
//
//   void put(item);  bool put(item, timeout);  bool put(stop_token, item, timeout = forever);
//   void put_nowait(item);                                // full_error when full
//   T get();  std::optional<T> get(timeout);  std::optional<T> get(stop_token, timeout = forever);
//   T get_nowait();                                       // empty_error when empty
//   void task_done();                                     // value_error when called too often
//   bool join(timeout = forever);  bool join(stop_token, timeout = forever);
//   void shutdown(bool immediate = false);
//   std::size_t qsize(); bool empty(); bool full(); std::size_t maxsize(); bool is_shutdown();
//   std::size_t unfinished_tasks();
//
// Differences from Python, all C++ spellings of the same behaviour: a timed put or get that
// expires returns false or std::nullopt instead of raising Full or Empty; a negative timeout is
// a poll instead of a ValueError; maxsize is fixed at construction; stop_token overloads return
// false / nullopt on a stop request (at once when it was made before the call).
//
// Exception safety (strong): when copying or moving an element, or allocating, throws inside a
// put or a get, the exception propagates and the queue is unchanged (size, order, unfinished
// tasks), and the caller's argument is untouched: a put moves from an rvalue only when it can no
// longer fail. Element types whose move constructor may throw are copied instead where they are
// copyable (std::move_if_noexcept); a type that can neither be copied nor moved without
// throwing gets the basic guarantee when the queue grows. Element destructors must not throw.
//
// Thread-safety: every member may be called concurrently from any number of threads. Element
// copy, move and destruction run under the queue's lock (except the items dropped by
// shutdown(true)): they must not call back into the same queue.
//
// Lifetime: the queue must outlive every call on it. A thread may destroy the queue as soon as
// no other call is in progress, e.g. once it took the last item and the producers were joined.
//
// Performance: a ring buffer (no allocation once it has grown to the working size) under one
// futex-based mutex whose waiters back off instead of polling (detail::queue_mutex); a wake-up
// costs a system call only when a thread sleeps and was not woken yet. A producer and a consumer
// on different cores so hand items over in batches of several hundred, with one sleep and one
// wake per batch: on 2 cores, a bounded queue(1024) of int moves 2.5 times as many items per second
// as a std::mutex + std::condition_variable queue (1 producer, 1 consumer) and 3.5 times as many
// with 4 producers and 4 consumers; more when the machine is busy.
//
// Neither copyable nor movable.
#pragma once

#include <tandem/detail/queue_basic.hpp>
#include <tandem/detail/queue_containers.hpp>

#include <cstddef>

namespace tandem {

/// Python's queue.Queue: first in, first out. See the file comment.
template <class T>
class queue : public detail::basic_queue<T, detail::queue_fifo<T>> {
  using base = detail::basic_queue<T, detail::queue_fifo<T>>;

public:
  // -- construction ---------------------------------------------------------------------------

  /// A queue holding at most `maxsize` items; 0 (the default) means unbounded.
  explicit queue(std::size_t maxsize = 0) noexcept : base(maxsize) {}
};

} // namespace tandem
