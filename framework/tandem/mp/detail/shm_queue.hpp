// detail::shm_queue: the byte-level core of tandem::mp::queue, joinable_queue and simple_queue.
//
// A multi-producer, multi-consumer FIFO queue of variable-length byte items that lives in an
// anonymous shared-memory segment (detail::shm_segment), usable from every process that maps it.
// It has Python 3.13's queue.Queue behaviour (maxsize in items, put/get with timeouts, nowait
// forms, task_done/join, shutdown(immediate)); the typed front ends add the element type.
//
// States: *open*, then after shutdown() *shut down* (puts throw shut_down_error; gets drain what
// is left, then throw it); shutdown(true) also drops the items left. Alongside, the queue counts
// unfinished tasks (+1 per put, -1 per task_done and per item dropped by shutdown(true)).
//
// Design (why it survives kill -9 and is fast):
//   - Storage: a byte ring of `capacity` bytes (a power of two). An item is an 8-byte header (its
//     length and the length's complement) followed by its bytes, padded to 8; an item may wrap
//     around the end of the ring (it is copied in two pieces), so no space is wasted on skips.
//   - Two published words, each on its own cache line: the *tail word* (where the next item goes,
//     and how many items were ever put) and the *head word* (where the next item to take is, and
//     how many were ever taken), each packing a 36-bit byte position and a 28-bit item count into
//     one 64-bit atomic. An item becomes visible by one release store of the tail word after its
//     bytes were copied, and is removed by one release store of the head word after its bytes
//     were copied out: every change of the queue is committed by a single store. So the state in
//     shared memory is consistent at every instant, whatever instruction a process dies on.
//   - Producers are serialized by one mutex, consumers by another (a two-lock queue): a producer
//     and a consumer never wait for each other, and with one of each the two mutexes are never
//     contended, so the pair runs like a single-producer single-consumer ring (each side also
//     caches the other side's word and re-reads it only when the cached value says full/empty).
//     The mutexes are pthread mutexes with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST: when
//     a holder dies (killed mid-put or mid-get), the kernel releases the mutex and the next
//     locker gets EOWNERDEAD. Since the shared state is consistent by construction (the dead
//     producer's half-copied item was never published; the dead consumer's item was never
//     removed), the locker marks the mutex consistent and carries on: no torn item is ever seen,
//     nothing is wedged, and an item whose consumer died before returning it is not lost.
//   - Blocking: three futex sequence words (not empty, not full, all tasks done), each with an
//     "armed" flag, shared (FUTEX_WAIT without FUTEX_PRIVATE_FLAG). A waiter reads the sequence,
//     arms the flag, re-checks the condition and sleeps only if it still does not hold; the first
//     notifier that finds the flag armed disarms it, bumps the sequence and wakes every sleeper
//     (who re-arm if they must sleep again). So a busy producer/consumer pair makes no system
//     call, and a producer makes one wake call per sleep of its consumer, not one per item until
//     the woken consumer is scheduled. A waiter killed while armed costs one spare wake. Before
//     sleeping, a waiter polls the condition for a few microseconds, so a consumer that keeps up
//     with its producer rarely sleeps at all.
//   - put() copies the item into shared memory before it returns (no feeder thread): a process
//     may exit right after its put, and the item stays for the consumers.
//
// Thread- and process-safety: every member may be called concurrently from any thread of any
// process that maps the queue (moving or destroying a handle must not race other calls on it).
//
// Timeouts: monotonic deadlines (tandem::timeout). Negative timeouts are equivalent to a zero
// timeout. Deadlines in the past are equivalent to an immediate deadline. The producer and the
// consumer mutex are held by another process only while it copies one item, so a call waits for
// them up to 100 ms even with a zero timeout (a poll does not fail just because another process
// is copying); only a holder that is stopped (SIGSTOP) can make a timed call overrun its
// deadline, by at most those 100 ms. Stop requests are seen while waiting for an item or for
// room, not while waiting for a mutex.
//
// Memory ordering: everything a producer did before its put happens-before the get that
// returns its item; a task_done that brings the count to zero happens-before the join it ends.
#pragma once

#include <tandem/mp/detail/shm_segment.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stop_token>
#include <utility>

namespace tandem::mp::detail {

/// How a cross-process queue is sized.
struct queue_options {
  /// The most items the queue holds; 0 (the default) means no item limit (only the buffer
  /// bounds it). Python's `maxsize`.
  std::size_t maxsize = 0;

  /// The size of the shared byte buffer, rounded up to a power of two (at least 256 bytes, at
  /// most 1 GiB). Each item takes its size rounded up to 8, plus 8 bytes; an item larger than
  /// max_item_size() = buffer_bytes - 8 is refused by put with value_error.
  std::size_t buffer_bytes = std::size_t{1} << 20;
};

struct shm_queue_state;

class shm_queue {
public:
  /// Receives an item during a get: its bytes, in one or two pieces (the second is empty unless
  /// the item wraps around the end of the ring). Called with the consumer mutex held; if it
  /// throws, the item stays in the queue, in its place, and the exception propagates.
  using sink_fn = void (*)(void* ctx, std::span<const std::byte> first,
                           std::span<const std::byte> second);

  /// The segment kind of a queue (see shm_segment::header::kind).
  static constexpr std::uint32_t segment_kind = 0x5155'4531; // "QUE1"

  static constexpr std::size_t min_buffer_bytes = 256;
  static constexpr std::size_t max_buffer_bytes = std::size_t{1} << 30;

  // -- construction ---------------------------------------------------------------------------

  /// An empty handle; every member but the observers of emptiness is undefined on it.
  shm_queue() noexcept = default;

  /// Creates a queue in a new segment. Throws value_error when options.buffer_bytes is above
  /// max_buffer_bytes, segment_error when the segment cannot be created.
  explicit shm_queue(const queue_options& options);

  /// Maps the queue behind descriptor `fd`, taking ownership of it (closed on error too).
  /// Throws segment_error when `fd` is not a queue segment of this layout.
  static shm_queue attach(int fd);

  shm_queue(shm_queue&& other) noexcept
      : segment_(std::move(other.segment_)), state_(std::exchange(other.state_, nullptr)),
        ring_(std::exchange(other.ring_, nullptr)) {}
  shm_queue& operator=(shm_queue&& other) noexcept {
    segment_ = std::move(other.segment_);
    state_ = std::exchange(other.state_, nullptr);
    ring_ = std::exchange(other.ring_, nullptr);
    return *this;
  }
  shm_queue(const shm_queue&) = delete;
  shm_queue& operator=(const shm_queue&) = delete;
  ~shm_queue() = default;

  // -- putting and getting --------------------------------------------------------------------

  /// Copies `item` into the queue, waiting while the queue holds maxsize items or the buffer
  /// lacks room. Returns true once the item is in shared memory; false when `t` expires or `st`
  /// (if not null) is stopped first. With `nowait`, never waits: throws full_error instead.
  /// Throws shut_down_error when the queue is shut down (checked first, and after every wait),
  /// value_error when the item can never fit (larger than max_item_size()).
  bool put(std::span<const std::byte> item, const timeout& t, const std::stop_token* st,
           bool nowait);

  /// Takes the next item, handing its bytes to `sink(ctx, ...)`, waiting while the queue is
  /// empty. Returns true when an item was taken; false when `t` expires or `st` is stopped
  /// first. With `nowait`, throws empty_error instead of waiting. Throws shut_down_error when the
  /// queue is shut down and empty (also with a zero timeout), bad_message_error if an item's
  /// header is corrupt (the item is then skipped), and what `sink` throws (the item stays).
  bool get(sink_fn sink, void* ctx, const timeout& t, const std::stop_token* st, bool nowait);

  // -- tasks ----------------------------------------------------------------------------------

  /// One taken item is done. Throws value_error when no task is unfinished.
  void task_done();

  /// Waits until no task is unfinished; false when `t` expires or `st` is stopped first.
  bool join(const timeout& t, const std::stop_token* st);

  // -- shutdown -------------------------------------------------------------------------------

  /// Python 3.13's shutdown(immediate). Wakes every waiter of every process. Never throws.
  void shutdown(bool immediate) noexcept;

  // -- external waiters (tandem::mp::wait) ----------------------------------------------------

  /// The shared futex word that changes (and is woken) after a put or a shutdown while an
  /// external waiter is registered with watch_not_empty(true).
  const std::atomic<std::uint32_t>& not_empty_word() const noexcept;

  /// Registers (true) or unregisters (false) an external waiter of not_empty_word(). While one
  /// is registered, every put bumps the word and wakes its sleepers (a system call per put).
  void watch_not_empty(bool on) const noexcept;

  /// True when a get would not wait: an item is there, or the queue is shut down.
  bool get_ready() const noexcept;

  // -- observers ------------------------------------------------------------------------------

  std::size_t qsize() const noexcept;
  bool empty() const noexcept { return qsize() == 0; }
  bool full() const noexcept;
  std::size_t maxsize() const noexcept;
  bool is_shutdown() const noexcept;
  std::size_t unfinished_tasks() const noexcept;
  /// The ring's size in bytes (buffer_bytes rounded up).
  std::size_t capacity() const noexcept;
  /// The largest item put accepts.
  std::size_t max_item_size() const noexcept { return capacity() - 8; }
  /// The segment's descriptor (owned by this handle).
  int fd() const noexcept { return segment_.fd(); }
  explicit operator bool() const noexcept { return state_ != nullptr; }

private:
  explicit shm_queue(shm_segment segment) noexcept;

  shm_segment segment_;
  shm_queue_state* state_ = nullptr;
  std::byte* ring_ = nullptr;
};

} // namespace tandem::mp::detail
