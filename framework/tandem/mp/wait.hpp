// tandem::mp::wait: Python's `multiprocessing.connection.wait(object_list, timeout)`.
//
// Waits until at least one of several objects is ready and returns which ones are, in the order
// they were given. An object is described by a `waitable`, built from:
//   - a connection: ready when poll() would return true (a message, part of one, or end of file);
//   - a pollable file descriptor, such as a process sentinel (a pidfd, ready once the process
//     exited): ready when it is readable or hung up;
//   - anything with `int fileno() const`: ready as its descriptor;
//   - a 32-bit word and a readiness predicate (waitable::on_word): the extension point for
//     objects that signal through a futex rather than a descriptor, such as shared-memory queues.
//
//   auto [a, b] = tandem::mp::pipe();
//   std::vector<tandem::mp::waitable> objects{reader1, reader2, tandem::mp::waitable{sentinel}};
//   for (std::size_t i : tandem::mp::wait(objects, 5s)) {
//     if (i == 2) { /* the process exited */ }
//     else handle(i == 0 ? reader1.recv_bytes() : reader2.recv_bytes());
//   }
//
// A waitable refers to its object (or descriptor, or word) without owning it: the object must
// outlive every wait that uses the waitable. Waiting never reads from a descriptor.
//
// Thread- and process-safety: wait() only polls, so any number of threads may wait on the same
// objects at once, also while other threads send to or receive from them (the object may be
// drained between the wait's return and the caller's receive, as in Python).
#pragma once

#include <tandem/mp/connection.hpp>
#include <tandem/timeout.hpp>

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::mp {

struct wait_access;

/// One object that wait() can wait for; see the file comment. Copyable; refers to its object
/// without owning it.
class waitable {
public:
  // -- construction ---------------------------------------------------------------------------

  /// Ready when `conn.poll()` would return true. Throws usage_error when `conn` is closed or
  /// write-only (it can never become ready).
  waitable(const connection& conn); // NOLINT(google-explicit-constructor): Python passes objects

  /// Ready as the descriptor `obj.fileno()` (readable or hung up).
  template <class T>
  requires(!std::is_same_v<std::remove_cvref_t<T>, connection>) && requires(const T& x) {
    { x.fileno() } -> std::convertible_to<int>;
  }
  waitable(const T& obj) // NOLINT(google-explicit-constructor)
      : fd_(static_cast<int>(obj.fileno())), object_(&obj) {}

  /// Ready when the descriptor `fd` is readable or hung up: a process sentinel (pidfd), an
  /// eventfd, a socket, a pipe. Throws value_error when `fd` is negative. Implicit, so a
  /// sentinel goes into a list as in Python: `wait({conn, p.sentinel()}, 1s)`.
  waitable(int fd); // NOLINT(google-explicit-constructor)

  /// The extension point for objects that signal through a 32-bit word rather than a descriptor
  /// (`shared` when the word lives in shared memory). Ready when `ready()` returns true.
  ///
  /// The signalling side must, after every change that can make `ready()` true, modify `word`
  /// (for example increment it) and then wake every thread blocked on it
  /// (`tandem::detail::futex_wake_all(word, shared)`): wait() reads the word before it calls
  /// `ready()` and sleeps only while the word still holds that value, so no change is missed.
  /// A wake of a single waiter could go to wait() instead of the thread it was meant for: wake
  /// them all. `ready` is called from the waiting thread, possibly many times; it must not block
  /// and must not throw. `object` is what object() returns.
  ///
  ///   auto w = waitable::on_word(q.not_empty_word(), [&q] { return !q.empty(); }, true, &q);
  static waitable on_word(const std::atomic<std::uint32_t>& word, std::function<bool()> ready,
                          bool shared = false, const void* object = nullptr);

  // -- observers ------------------------------------------------------------------------------

  /// The descriptor waited on; -1 for a word-based waitable.
  int fd() const noexcept { return fd_; }

  /// The object this waitable was built from (the connection, the object with fileno(), the
  /// `object` given to on_word); nullptr for a bare descriptor. Lets a caller map ready entries
  /// back to its objects.
  const void* object() const noexcept { return object_; }

private:
  friend struct wait_access;

  waitable() = default;

  int fd_ = -1;
  const void* object_ = nullptr;
  const std::atomic<std::uint32_t>* word_ = nullptr;
  bool shared_ = false;
  std::function<bool()> ready_;
};

/// Waits until at least one of `objects` is ready or `t` expires; returns the indices of the
/// ready ones in increasing order (empty on timeout). A zero timeout polls once. Negative
/// timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to an
/// immediate deadline. The deadline is on the monotonic clock and a signal does not shorten or
/// extend it. An empty `objects` returns an empty vector when `t` expires (as Python's
/// wait([]), it never returns with the default forever). Blocks in ppoll when every object is a
/// descriptor, in a futex wait when the only object is a word; a mix waits in short ppoll slices
/// (a few milliseconds) and re-checks the words between them. Throws value_error when a
/// descriptor is not open (POLLNVAL), tandem::error with the errno when ppoll fails otherwise.
///
///   auto ready = tandem::mp::wait(objects);          // blocks until one is ready
///   auto now = tandem::mp::wait(objects, 0s);        // poll once
std::vector<std::size_t> wait(std::span<const waitable> objects, timeout t = forever);

/// As wait(objects, t), and returns an empty vector promptly once a stop is requested on `st`
/// (also when some objects are ready: the stop wins, as in connection::poll).
std::vector<std::size_t> wait(std::span<const waitable> objects, std::stop_token st,
                              timeout t = forever);

/// As wait(objects, t), for a braced list: `wait({a, b, p.sentinel()}, 1s)`.
inline std::vector<std::size_t> wait(std::initializer_list<waitable> objects, timeout t = forever) {
  return wait(std::span<const waitable>{objects.begin(), objects.size()}, t);
}

/// As wait(objects, st, t), for a braced list.
inline std::vector<std::size_t> wait(std::initializer_list<waitable> objects, std::stop_token st,
                                     timeout t = forever) {
  return wait(std::span<const waitable>{objects.begin(), objects.size()}, std::move(st), t);
}

} // namespace tandem::mp
