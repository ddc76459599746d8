// tandem::mp::simple_queue<T>: Python's multiprocessing.SimpleQueue: an unbounded FIFO across
// processes, without task tracking and without shutdown.
//
//   tandem::mp::simple_queue<int> q;
//   if (fork() == 0) { q.put(42); _exit(0); }
//   int x = q.get();                        // blocks while empty
//
// Python's SimpleQueue has get(), put(), empty() and close(); tandem's also has the other forms
// of queue.SimpleQueue (get(timeout), get(stop_token, timeout), get_nowait(), put(item,
// timeout), put_nowait(), qsize()), with the contracts of <tandem/mp/detail/queue_basic.hpp>.
// There is no item limit; puts wait only when the shared buffer (queue_options::buffer_bytes,
// default 1 MiB) is full. After close(), this handle's put and get throw value_error (Python
// raises OSError there).
//
// Process death, thread- and process-safety, elements: as <tandem/mp/queue.hpp>.
//
// Handles: a copy is another handle of the same queue (with its own descriptor); a moved-from
// handle is closed.
#pragma once

#include <tandem/mp/queue.hpp>

#include <cstddef>
#include <utility>

namespace tandem::mp {

/// Python's multiprocessing.SimpleQueue. See the file comment.
template <class T>
class simple_queue : private detail::basic_queue<T> {
  using base = detail::basic_queue<T>;

public:
  using typename base::size_type;
  using typename base::value_type;

  // -- construction ---------------------------------------------------------------------------

  /// A new, empty queue with a 1 MiB buffer.
  simple_queue() : base(std::size_t{0}) {}

  /// A new queue with a buffer of `buffer_bytes` (see queue_options).
  explicit simple_queue(std::size_t buffer_bytes) : base(queue_options{0, buffer_bytes}) {}

  /// The queue behind descriptor `fd`, taking ownership of it.
  static simple_queue attach(int fd) { return simple_queue{base::attach(fd)}; }

  /// Another handle of the same queue (its own descriptor and mapping); the same as a copy.
  simple_queue clone() const { return simple_queue{base::clone()}; }

  /// Copies are handles of the same queue, like Python's queue objects: each has its own
  /// descriptor and mapping (and its own close()), so a copy can be passed to a process,
  /// `tandem::mp::process p{worker, q};`, and `q` stays usable here. Throws segment_error when
  /// the descriptor cannot be duplicated (EMFILE), usage_error for a moved-from handle.
  simple_queue(const simple_queue& other) : base(other.base::clone()) {}
  simple_queue& operator=(const simple_queue& other) {
    if (this != &other) *this = other.clone();
    return *this;
  }
  simple_queue(simple_queue&&) noexcept = default;
  simple_queue& operator=(simple_queue&&) noexcept = default;

  // -- members --------------------------------------------------------------------------------

  using base::close;
  using base::closed;
  using base::empty;
  using base::fd;
  using base::get;
  using base::get_nowait;
  using base::max_item_size;
  using base::operator tandem::mp::waitable;
  using base::put;
  using base::put_nowait;
  using base::qsize;

private:
  explicit simple_queue(base&& b) noexcept : base(std::move(b)) {}
};

} // namespace tandem::mp

/// A spawn child gets its own descriptor of the queue (see detail::process_arg).
template <class T>
struct tandem::mp::detail::process_arg<tandem::mp::simple_queue<T>>
    : tandem::mp::detail::queue_process_arg<tandem::mp::simple_queue<T>> {};
