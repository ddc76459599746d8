// mp::detail::basic_queue<T>: the typed handle behind tandem::mp::queue, joinable_queue and
// simple_queue. It turns T into the bytes of a detail::shm_queue item and back, and carries the
// per-handle state (close()). Each public type exposes the members Python gives it; the member
// contracts are here, where the members are.
//
// Items: a trivially copyable T is copied bit for bit (one memcpy into shared memory, one out).
// Any other T is serialized with tandem::mp::detail::encode/decode (any type with a CAF
// `inspect` overload: strings, containers, user structs), available when tandem::framework (CAF)
// is: with tandem::primitives alone, only trivially copyable T compile.
#pragma once

#include <tandem/detail/queue_sync.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/process_arg.hpp>
#include <tandem/mp/detail/shm_queue.hpp>
#include <tandem/mp/wait.hpp>
#include <tandem/timeout.hpp>

#if __has_include(<caf/serializer.hpp>) && __has_include(<tandem/mp/detail/codec.hpp>)
#include <tandem/mp/detail/codec.hpp>
#define TANDEM_MP_QUEUE_HAS_CODEC 1
#else
#define TANDEM_MP_QUEUE_HAS_CODEC 0
#endif

#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>

namespace tandem::mp::detail {

/// True when T travels through a cross-process queue as its bytes.
template <class T>
inline constexpr bool queue_item_is_raw = std::is_trivially_copyable_v<T>;

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_closed() {
  throw value_error("the queue is closed: close() was called on this handle, so it can no "
                    "longer put or get; use another handle of the queue");
}

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_size(std::size_t got,
                                                                    std::size_t expected) {
  throw bad_message_error("a cross-process queue delivered an item of " + std::to_string(got) +
                          " bytes where " + std::to_string(expected) +
                          " were expected: every process must use the queue with the same "
                          "element type");
}

[[noreturn, gnu::cold, gnu::noinline]] inline void queue_throw_no_codec() {
  throw usage_error("this element type needs tandem's serialization: link tandem::framework");
}

template <class T>
class basic_queue {
  static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                "a queue holds non-const objects");
#if !TANDEM_MP_QUEUE_HAS_CODEC
  static_assert(queue_item_is_raw<T>, "without tandem::framework (CAF), a cross-process queue "
                                      "holds only trivially copyable types");
#endif

public:
  using value_type = T;
  using size_type = std::size_t;

  // -- construction ---------------------------------------------------------------------------

  /// A new queue in a new shared-memory segment, holding at most `max_items` items (0: no item
  /// limit) in a buffer of the default size (queue_options{}.buffer_bytes, 1 MiB). Throws
  /// segment_error when the segment cannot be created.
  explicit basic_queue(std::size_t max_items = 0) : core_(queue_options{max_items}) {}

  /// A new queue sized by `options`. Throws value_error when options.buffer_bytes is above
  /// 1 GiB, segment_error when the segment cannot be created.
  explicit basic_queue(const queue_options& options) : core_(options) {}

  /// The queue behind descriptor `fd` (received from another process), taking ownership of
  /// `fd`. Throws segment_error when `fd` is not a queue (the descriptor is closed then too).
  static basic_queue attach(int fd) {
    return basic_queue{shm_queue::attach(fd)};
  }

  /// Another handle of the same queue in this process (its own descriptor and mapping), e.g. to
  /// pass to a process while keeping this one. The new handle is open even if this one is
  /// closed. Throws segment_error when the descriptor cannot be duplicated or mapped, usage_error
  /// for a moved-from handle.
  basic_queue clone() const {
    if (core_.fd() < 0) throw usage_error("clone() of a moved-from queue handle");
    int fd = ::fcntl(core_.fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
      throw segment_error(errno, "cannot duplicate a queue's descriptor: too many open files?");
    return attach(fd);
  }

  basic_queue(basic_queue&& other) noexcept
      : core_(std::move(other.core_)),
        closed_(other.closed_.exchange(true, std::memory_order_relaxed)) {}
  basic_queue& operator=(basic_queue&& other) noexcept {
    core_ = std::move(other.core_);
    closed_.store(other.closed_.exchange(true, std::memory_order_relaxed),
                  std::memory_order_relaxed);
    return *this;
  }
  basic_queue(const basic_queue&) = delete;
  basic_queue& operator=(const basic_queue&) = delete;

  /// Unmaps this process's view. The queue and its items live on while any handle in any
  /// process maps it. Never throws.
  ~basic_queue() = default;

  // -- putting --------------------------------------------------------------------------------

  /// Python's `put(item)`: copies `item` into shared memory, blocking while the queue holds
  /// maxsize() items or its buffer has no room. Returns once the item is in shared memory: this
  /// process may exit right after, and the item stays for the consumers. Counts one more
  /// unfinished task.
  ///
  /// Throws shut_down_error if the queue is shut down (also while this call waits), value_error
  /// when this handle is closed or the item is larger than max_item_size() (its message names
  /// the buffer size to ask for), what serializing `item` throws; the queue is then unchanged.
  void put(const T& item) {
    (void)put_impl(item, forever, nullptr, false);
  }

  /// Python's `put(item, timeout=t)`: as put(item), but returns false when `t` expires first
  /// (where Python raises Full). Negative timeouts are equivalent to a zero timeout. Deadlines
  /// in the past are equivalent to an immediate deadline.
  ///
  ///   if (!q.put(job, 100ms)) log("queue still full after 100 ms");
  bool put(const T& item, timeout t) {
    return put_impl(item, t, nullptr, false);
  }

  /// As put(item, t), and also returns false promptly once `st` is stopped while waiting for
  /// room; at once, changing nothing, when `st` is stopped on entry.
  bool put(std::stop_token st, const T& item, timeout t = forever) {
    if (st.stop_requested()) return false;
    return put_impl(item, t, &st, false);
  }

  /// Python's `put_nowait(item)`: puts only if there is room right away. Throws full_error
  /// otherwise, shut_down_error when shut down (checked first), and as put(item).
  void put_nowait(const T& item) {
    (void)put_impl(item, forever, nullptr, true);
  }

  // -- getting --------------------------------------------------------------------------------

  /// Python's `get()`: removes and returns the oldest item, blocking while the queue is empty.
  ///
  /// Throws shut_down_error once the queue is shut down and empty (items queued before a plain
  /// shutdown are still returned), value_error when this handle is closed, bad_message_error
  /// when the item does not decode as a T (the item is consumed), and what allocating the
  /// item's copy throws (the item then stays in the queue, in its place).
  ///
  /// Memory ordering: everything the putting thread (of any process) did before its put
  /// happens-before the get that returns that item.
  T get() {
    return *get_impl(forever, nullptr, false);
  }

  /// Python's `get(timeout=t)`: as get(), but returns std::nullopt when `t` expires first.
  /// Never returns nullopt because of a shutdown: on a shut-down, empty queue it throws
  /// shut_down_error, even with a zero timeout. Negative timeouts are equivalent to a zero
  /// timeout. Deadlines in the past are equivalent to an immediate deadline.
  std::optional<T> get(timeout t) {
    return get_impl(t, nullptr, false);
  }

  /// As get(t), and also returns std::nullopt promptly once `st` is stopped while waiting; at
  /// once, taking nothing, when `st` is stopped on entry. A stop request never makes it throw.
  ///
  ///   while (auto job = q.get(stop)) run(*job);
  std::optional<T> get(std::stop_token st, timeout t = forever) {
    if (st.stop_requested()) return std::nullopt;
    return get_impl(t, &st, false);
  }

  /// Python's `get_nowait()`: the oldest item if there is one; never blocks. Throws empty_error
  /// when the queue is empty, shut_down_error when it is shut down and empty, and as get().
  T get_nowait() {
    return *get_impl(forever, nullptr, true);
  }

  // -- tasks ----------------------------------------------------------------------------------

  /// Python's `task_done()`: the work on one taken item is complete. When no unfinished task is
  /// left, every join() of every process returns. Throws value_error (changing nothing) when
  /// called more times than items were put.
  void task_done() {
    core_.task_done();
  }

  /// Python's `join()`: blocks until every item ever put has been taken and reported with
  /// task_done() (or dropped by shutdown(true)), in any process. True then; false when `t`
  /// expires first. A plain shutdown() does not release it.
  ///
  /// Memory ordering: the task_done() that brought the count to zero happens-before a join()
  /// that returns true because of it.
  bool join(timeout t = forever) {
    return core_.join(t, nullptr);
  }

  /// As join(t), and also returns false promptly once `st` is stopped.
  bool join(std::stop_token st, timeout t = forever) {
    if (st.stop_requested()) return false;
    return core_.join(t, &st);
  }

  // -- shutdown and close ---------------------------------------------------------------------

  /// Python 3.13's `shutdown(immediate=False)` for every process: from now on every put throws
  /// shut_down_error, and every get throws it once the queue is empty. Wakes every process
  /// blocked in a put, a get (or, with `immediate`, a join). With `immediate`, drops the queued
  /// items and counts each as a finished task. Repeating it is allowed. Never throws.
  void shutdown(bool immediate = false) noexcept {
    core_.shutdown(immediate);
  }

  /// Python's `close()`: this handle will put and get no more (both then throw value_error);
  /// other handles, in this and other processes, are unaffected, and so are the items already
  /// put. The observers, task_done() and join() still work. Repeating it does nothing. Never
  /// throws. Unlike Python's, no data waits in a feeder thread: every put already is in shared
  /// memory.
  void close() noexcept {
    closed_.store(true, std::memory_order_release);
  }

  /// Python's `join_thread()`: Python waits here for its feeder thread to flush; tandem's puts
  /// are already in shared memory, so it returns at once. Throws usage_error when this handle
  /// is not closed (Python asserts that).
  void join_thread() const {
    if (!closed())
      throw usage_error("join_thread() on a queue handle that is not closed: call close() first");
  }

  /// Python's `cancel_join_thread()`: nothing to cancel, since nothing is left to flush.
  void cancel_join_thread() noexcept {}

  // -- observers ------------------------------------------------------------------------------

  /// Python's `qsize()`: the number of queued items (a snapshot). Lock-free.
  std::size_t qsize() const noexcept {
    return core_.qsize();
  }

  /// Python's `empty()`: qsize() == 0 (a snapshot).
  bool empty() const noexcept {
    return core_.empty();
  }

  /// Python's `full()`: a bounded queue holding maxsize() items (a snapshot); never true for a
  /// queue without an item limit (whose puts may still wait for room in the buffer).
  bool full() const noexcept {
    return core_.full();
  }

  /// The item limit given at construction; 0 for none.
  std::size_t maxsize() const noexcept {
    return core_.maxsize();
  }

  /// Python's `is_shutdown`: true once shutdown() was called in any process.
  bool is_shutdown() const noexcept {
    return core_.is_shutdown();
  }

  /// Items put and not yet reported with task_done() (or dropped by shutdown(true)).
  std::size_t unfinished_tasks() const noexcept {
    return core_.unfinished_tasks();
  }

  /// True once close() was called on this handle.
  bool closed() const noexcept {
    return closed_.load(std::memory_order_acquire);
  }

  /// The largest serialized item put accepts, in bytes.
  std::size_t max_item_size() const noexcept {
    return core_.max_item_size();
  }

  /// For tandem::mp::wait (Python's `wait([q._reader])`): ready when a get would not block (an
  /// item is there, or the queue is shut down and get would throw). The waitable refers to this
  /// handle, which must outlive it.
  ///
  ///   std::vector<tandem::mp::waitable> objects{conn, q};
  ///   auto ready = tandem::mp::wait(objects, 1s);
  ///
  /// Performance: while any waitable of the queue exists (in any process), every put makes a
  /// futex wake system call; destroy waitables once their wait is over.
  operator mp::waitable() const { // NOLINT(google-explicit-constructor): Python passes queues
    core_.watch_not_empty(true);
    // Unregisters when the last copy of the waitable is destroyed.
    std::shared_ptr<const shm_queue> watch{&core_,
                                           [](const shm_queue* q) { q->watch_not_empty(false); }};
    return mp::waitable::on_word(
        core_.not_empty_word(), [watch] { return watch->get_ready(); }, true, this);
  }

  /// The shared segment's descriptor (owned by this handle, close-on-exec), for handing the
  /// queue to another process.
  int fd() const noexcept {
    return core_.fd();
  }

private:
  explicit basic_queue(shm_queue core) noexcept : core_(std::move(core)) {}

  bool put_impl(const T& item, const timeout& t, const std::stop_token* st, bool nowait) {
    if (closed()) queue_throw_closed();
    if constexpr (queue_item_is_raw<T>) {
      return core_.put(std::as_bytes(std::span{&item, 1}), t, st, nowait);
    } else {
#if TANDEM_MP_QUEUE_HAS_CODEC
      thread_local std::vector<std::byte> buffer;
      buffer.clear();
      encode(buffer, item);
      return core_.put(buffer, t, st, nowait);
#else
      queue_throw_no_codec();
#endif
    }
  }

  std::optional<T> get_impl(const timeout& t, const std::stop_token* st, bool nowait) {
    if (closed()) queue_throw_closed();
    if constexpr (queue_item_is_raw<T>) {
      struct sink_state {
        std::array<std::byte, sizeof(T)> bytes;
        std::size_t size;
      } out{};
      auto sink = [](void* ctx, std::span<const std::byte> a, std::span<const std::byte> b) {
        auto& o = *static_cast<sink_state*>(ctx);
        o.size = a.size() + b.size();
        if (o.size != sizeof(T)) return; // reported after the item left the queue
        std::memcpy(o.bytes.data(), a.data(), a.size());
        std::memcpy(o.bytes.data() + a.size(), b.data(), b.size());
      };
      if (!core_.get(sink, &out, t, st, nowait)) return std::nullopt;
      if (out.size != sizeof(T)) queue_throw_size(out.size, sizeof(T));
      return std::bit_cast<T>(out.bytes);
    } else {
#if TANDEM_MP_QUEUE_HAS_CODEC
      std::vector<std::byte> bytes;
      auto sink = [](void* ctx, std::span<const std::byte> a, std::span<const std::byte> b) {
        auto& v = *static_cast<std::vector<std::byte>*>(ctx);
        v.reserve(a.size() + b.size());
        v.insert(v.end(), a.begin(), a.end());
        v.insert(v.end(), b.begin(), b.end());
      };
      if (!core_.get(sink, &bytes, t, st, nowait)) return std::nullopt;
      return std::optional<T>(std::in_place, std::get<0>(decode<T>(bytes)));
#else
      queue_throw_no_codec();
#endif
    }
  }

  shm_queue core_;
  std::atomic<bool> closed_{false};
};

/// process_arg for the queue handles (Q = mp::queue<T>, joinable_queue<T>, simple_queue<T>): a
/// spawn child receives a copy of the queue's descriptor and attaches it. The bytes are the
/// descriptor's index.
template <class Q>
struct queue_process_arg {
  static void save(arg_writer& w, const Q& q) {
    if (q.fd() < 0) throw usage_error("a moved-from queue handle cannot be passed to a process");
    auto index = static_cast<std::uint64_t>(w.add_fd(q.fd()));
    auto old = w.bytes.size();
    w.bytes.resize(old + sizeof index);
    std::memcpy(w.bytes.data() + old, &index, sizeof index);
  }
  static Q load(arg_reader& r) {
    std::uint64_t index = 0;
    if (r.bytes.size() != sizeof index)
      throw bad_message_error("a queue argument has " + std::to_string(r.bytes.size()) +
                              " bytes instead of " + std::to_string(sizeof index));
    std::memcpy(&index, r.bytes.data(), sizeof index);
    return Q::attach(r.fd(static_cast<std::size_t>(index)));
  }
};

} // namespace tandem::mp::detail
