// tandem::mp::joinable_queue<T>: Python's multiprocessing.JoinableQueue: a tandem::mp::queue<T>
// that also counts unfinished tasks across processes.
//
//   tandem::mp::joinable_queue<int> q;
//   if (fork() == 0) {                    // a worker
//     for (;;) { int job = q.get(); work(job); q.task_done(); }
//   }
//   for (int i = 0; i < 100; ++i) q.put(i);
//   q.join();                             // every job was taken and reported done
//
// Everything of <tandem/mp/queue.hpp> holds. In addition, the queue counts *unfinished tasks*
// (shared by every process): +1 per put, -1 per task_done() and per item dropped by
// shutdown(true); join() waits for zero. Members, beyond queue<T>'s (contracts in
// <tandem/mp/detail/queue_basic.hpp>):
//
//   void task_done();                                 // value_error when called too often
//   bool join(timeout = forever);  bool join(stop_token, timeout = forever);
//   std::size_t unfinished_tasks();
//
// Process death: a consumer killed after get() and before task_done() leaves its task
// unfinished (join() then waits for it, as in Python); use join(timeout) where workers may die.
//
// Handles: a copy is another handle of the same queue (with its own descriptor); a moved-from
// handle is closed.
#pragma once

#include <tandem/mp/queue.hpp>

#include <cstddef>
#include <utility>

namespace tandem::mp {

/// Python's multiprocessing.JoinableQueue. See the file comment.
template <class T>
class joinable_queue : private detail::basic_queue<T> {
  using base = detail::basic_queue<T>;

public:
  using typename base::size_type;
  using typename base::value_type;

  // -- construction ---------------------------------------------------------------------------

  /// A new queue holding at most `max_items` items (0: no item limit), with a 1 MiB buffer.
  explicit joinable_queue(std::size_t max_items = 0) : base(max_items) {}

  /// A new queue sized by `options`.
  explicit joinable_queue(const queue_options& options) : base(options) {}

  /// The queue behind descriptor `fd`, taking ownership of it.
  static joinable_queue attach(int fd) { return joinable_queue{base::attach(fd)}; }

  /// Another handle of the same queue (its own descriptor and mapping); the same as a copy.
  joinable_queue clone() const { return joinable_queue{base::clone()}; }

  /// Copies are handles of the same queue, like Python's queue objects: each has its own
  /// descriptor and mapping (and its own close()), so a copy can be passed to a process,
  /// `tandem::mp::process p{worker, q};`, and `q` stays usable here. Throws segment_error when
  /// the descriptor cannot be duplicated (EMFILE), usage_error for a moved-from handle.
  joinable_queue(const joinable_queue& other) : base(other.base::clone()) {}
  joinable_queue& operator=(const joinable_queue& other) {
    if (this != &other) *this = other.clone();
    return *this;
  }
  joinable_queue(joinable_queue&&) noexcept = default;
  joinable_queue& operator=(joinable_queue&&) noexcept = default;

  // -- members --------------------------------------------------------------------------------

  using base::cancel_join_thread;
  using base::close;
  using base::closed;
  using base::empty;
  using base::fd;
  using base::full;
  using base::get;
  using base::get_nowait;
  using base::is_shutdown;
  using base::join;
  using base::join_thread;
  using base::max_item_size;
  using base::operator tandem::mp::waitable;
  using base::maxsize;
  using base::put;
  using base::put_nowait;
  using base::qsize;
  using base::shutdown;
  using base::task_done;
  using base::unfinished_tasks;

private:
  explicit joinable_queue(base&& b) noexcept : base(std::move(b)) {}
};

} // namespace tandem::mp

/// A spawn child gets its own descriptor of the queue (see detail::process_arg).
template <class T>
struct tandem::mp::detail::process_arg<tandem::mp::joinable_queue<T>>
    : tandem::mp::detail::queue_process_arg<tandem::mp::joinable_queue<T>> {};
