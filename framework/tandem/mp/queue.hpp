// tandem::mp::queue<T>: Python's multiprocessing.Queue (with Python 3.13's shutdown) in shared
// memory, for C++ processes.
//
// A first-in, first-out, multi-producer, multi-consumer queue of T shared by every process that
// holds a handle to it: a fork child inherits the parent's handles, and any other process gets
// one from the queue's descriptor (fd(), attach(); mp::process passes queue arguments to spawn
// children this way).
//
//   tandem::mp::queue<job> q{100};          // at most 100 items (queue<T> q; has no item limit)
//   if (fork() == 0) {                      // or a tandem::mp::process
//     q.put(job{1});                        // in shared memory when put returns
//     _exit(0);                             // nothing is lost by exiting right away
//   }
//   job j = q.get();                        // blocks while the queue is empty
//   std::optional<job> o = q.get(1s);       // nullopt: still empty after 1 s
//   q.shutdown();                           // no more puts anywhere; gets drain, then throw
//
// States: *open*, then after shutdown() (from any process) *shut down*: every put throws
// shut_down_error, gets return the remaining items and throw shut_down_error once the queue is
// empty; shutdown(true) also drops the remaining items. A queue never reopens. Separately, each
// handle can be closed (close(): that handle puts and gets no more, as Python's close()).
//
// Members (documented in <tandem/mp/detail/queue_basic.hpp>; Python's names, `timeout`
// everywhere; negative timeouts are equivalent to a zero timeout, deadlines in the past to an
// immediate deadline):
//
//   void put(item);  bool put(item, timeout);  bool put(stop_token, item, timeout = forever);
//   void put_nowait(item);                                // full_error when full
//   T get();  std::optional<T> get(timeout);  std::optional<T> get(stop_token, timeout = forever);
//   T get_nowait();                                       // empty_error when empty
//   void shutdown(bool immediate = false);
//   void close();  bool closed();  void join_thread();  void cancel_join_thread();
//   std::size_t qsize(); bool empty(); bool full(); std::size_t maxsize(); bool is_shutdown();
//   int fd();  static queue attach(int fd);  std::size_t max_item_size();
//
// Elements: trivially copyable types travel as their bytes; any other type is serialized (any
// type with a CAF `inspect` overload; this needs tandem::framework). The serialized item must
// fit the shared buffer: an item larger than max_item_size() makes put throw value_error naming
// queue_options::buffer_bytes, the option to raise:
//
//   tandem::mp::queue<std::string> big{tandem::mp::queue_options{.maxsize = 8,
//                                                                .buffer_bytes = 64 << 20}};
//
// Differences from Python's multiprocessing.Queue: no feeder thread (put() copies the item into
// shared memory before it returns, so put never fails later in the background, a child may exit
// before its items are consumed, and join_thread() has nothing to wait for); timed puts and gets
// return false / std::nullopt instead of raising Full / Empty; a queue without an item limit is
// still bounded by its buffer (a put then waits for room, put_nowait throws full_error); qsize()
// is exact and works everywhere; shutdown(immediate) exists (Python's has none).
//
// Process death: a process killed in the middle of a put never leaves a torn or partial item
// behind, and one killed in the middle of a get never loses the item or blocks the queue; a
// process blocked in a put or get whose peers all died returns at its timeout. (How: see
// <tandem/mp/detail/shm_queue.hpp>.) A process killed while blocked costs the others at most
// spare wake-ups. The queue's memory is freed when the last process holding it exits.
//
// Thread- and process-safety: every member may be called concurrently from any number of
// threads in any number of processes, except that moving or destroying a handle must not race
// other calls on the same handle.
//
// Performance: putting and getting copy the item once into and once out of shared memory, and
// make no system call while neither side has to sleep: a producer and a consumer use separate
// locks, and a waiter polls for a few microseconds before it sleeps.
//
// Handles: a copy is another handle of the same queue (with its own descriptor); a moved-from
// handle is closed.
#pragma once

#include <tandem/mp/detail/queue_basic.hpp>

#include <cstddef>
#include <utility>

namespace tandem::mp {

/// How a cross-process queue is sized: `maxsize` (items; 0 = no limit) and `buffer_bytes` (the
/// shared buffer, rounded up to a power of two; default 1 MiB, at most 1 GiB).
using queue_options = detail::queue_options;

/// Python's multiprocessing.Queue: FIFO across processes. See the file comment.
template <class T>
class queue : private detail::basic_queue<T> {
  using base = detail::basic_queue<T>;

public:
  using typename base::size_type;
  using typename base::value_type;

  // -- construction ---------------------------------------------------------------------------

  /// A new queue holding at most `max_items` items (0: no item limit), with a 1 MiB buffer.
  /// Throws segment_error when the shared memory cannot be created.
  explicit queue(std::size_t max_items = 0) : base(max_items) {}

  /// A new queue sized by `options`. Throws value_error for a buffer above 1 GiB.
  explicit queue(const queue_options& options) : base(options) {}

  /// The queue behind descriptor `fd` (see fd()), taking ownership of it. Throws segment_error
  /// when `fd` is not a queue's descriptor.
  static queue attach(int fd) { return queue{base::attach(fd)}; }

  /// Another handle of the same queue (its own descriptor and mapping); the same as a copy.
  queue clone() const { return queue{base::clone()}; }

  /// Copies are handles of the same queue, like Python's queue objects: each has its own
  /// descriptor and mapping (and its own close()), so a copy can be passed to a process,
  /// `tandem::mp::process p{worker, q};`, and `q` stays usable here. Throws segment_error when
  /// the descriptor cannot be duplicated (EMFILE), usage_error for a moved-from handle.
  queue(const queue& other) : base(other.base::clone()) {}
  queue& operator=(const queue& other) {
    if (this != &other) *this = other.clone();
    return *this;
  }
  queue(queue&&) noexcept = default;
  queue& operator=(queue&&) noexcept = default;

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
  using base::join_thread;
  using base::max_item_size;
  using base::operator tandem::mp::waitable;
  using base::maxsize;
  using base::put;
  using base::put_nowait;
  using base::qsize;
  using base::shutdown;

private:
  explicit queue(base&& b) noexcept : base(std::move(b)) {}
};

} // namespace tandem::mp

/// A spawn child gets its own descriptor of the queue (see detail::process_arg).
template <class T>
struct tandem::mp::detail::process_arg<tandem::mp::queue<T>>
    : tandem::mp::detail::queue_process_arg<tandem::mp::queue<T>> {};
