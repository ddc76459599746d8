// A child process's mailbox: what a process target uses to talk with its parent.
//
// Every child tandem starts (any start method) gets a duplex channel to its parent at start().
// The parent sends with `p.send(xs...)` and receives with `p.recv<T>()` (tandem/mp/process.hpp);
// CAF actors in the parent reach the child through `p.actor()`. In the child:
//
//   void worker() {
//     while (tandem::mp::receive(
//         [](int x) { return x * 2; },                          // the reply goes to the parent
//         [](const std::string& cmd, int n) { run(cmd, n); },   // the message p.send("go", 3)
//         std::chrono::seconds{5})) {                           // false when 5 s pass idle
//     }
//   }
//   // or, with Pipe semantics:
//   auto job = tandem::mp::recv<std::tuple<std::string, int>>(); // p.send("go", 3)
//   tandem::mp::send(42);                                        // the parent's p.recv<int>()
//
// Messages: a message is a list of values; see tandem/mp/detail/process_actor_message.hpp for the
// rule (send(a, b) is received as recv<std::tuple<A, B>>() or by a handler taking (A, B); one
// value as recv<A>() or a handler taking A; strings travel as std::string).
//
// The stash: receive() looks at the messages it set aside before (in arrival order), then at new
// ones, and runs the first handler whose argument types are the message's types (as a CAF
// behavior matches); a message that no handler matches stays in the stash for a later receive()
// or recv(). recv() takes the oldest message sent with p.send() (stashed or new), whatever its
// type: a message of another type is a bad_message_error, and the message is consumed. Messages
// of the process's actor (sent by CAF actors in the parent) are seen only by receive().
//
// Replies: a receive() handler's return value (unless void) is the reply: to a message sent with
// p.send() it goes back as a message the parent reads with p.recv<R>(); to a request of a CAF
// actor it is the response to that request; to an actor's message that is not a request, a
// message to its sender. A std::tuple result is a reply of several values.
//
// End of file: when the parent is gone (it exited, or was killed), and every message it sent was
// read, receive() and recv() throw eof_error (at once: the channel closes when the parent dies).
//
// Errors: usage_error in a process that is not a child tandem started ("this process has no
// parent mailbox"); bad_message_error for a message that does not decode; eof_error as above;
// sending to a parent that is gone: tandem::error with EPIPE (never SIGPIPE).
//
// Thread-safety: every function may be called from any thread of the child; receiving calls are
// serialized (one receives at a time; a handler may itself receive or send), sending calls too.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/detail/process_actor_message.hpp>
#include <tandem/timeout.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::mp {

namespace detail {

/// One message that arrived from the parent.
struct inbound {
  /// The codec message (without the request number).
  std::vector<std::byte> bytes;
  /// The request number of an actor message (0: no answer wanted).
  std::uint64_t id = 0;
  /// True when it came from the process's actor.
  bool from_actor = false;
};

/// The child's end of the mailbox: both channels and the stash.
class parent_inbox {
public:
  explicit parent_inbox(child_channels channels) noexcept;

  /// Holds the receiving side (recursive: a handler may receive).
  std::unique_lock<std::recursive_mutex> lock() { return std::unique_lock{recv_mtx_}; }

  /// Makes sure the stash holds more than `i` messages, reading from the channels (both, or only
  /// the plain one) until `t` expires. Returns false on timeout; throws eof_error when no more
  /// messages can come. Requires lock().
  bool fetch(std::size_t i, bool with_requests, const timeout& t,
             const std::stop_token* st = nullptr);

  /// The stashed message `i`. Requires lock() and i < stashed().
  const inbound& at(std::size_t i) const { return stash_[i]; }

  /// Removes and returns stashed message `i`. Requires lock() and i < stashed().
  inbound take(std::size_t i);

  /// The number of stashed messages. Requires lock().
  std::size_t stashed() const noexcept { return stash_.size(); }

  /// The oldest plain message (stashed first), waiting until `t`; std::nullopt on timeout.
  std::optional<inbound> take_plain(const timeout& t, const std::stop_token* st = nullptr);

  /// True when recv() would not block: a plain message is stashed or ready, or at end of file.
  bool poll(const timeout& t, const std::stop_token* st = nullptr);

  /// Sends a plain message (its codec bytes) to the parent.
  void send(std::span<const std::byte> bytes);

  /// Sends `bytes` as the reply to `m`.
  void reply(const inbound& m, std::span<const std::byte> bytes);

  /// The plain channel.
  connection& box() noexcept { return channels_.box; }

  /// Closes both channels (a fork child drops the ones it inherited). Not synchronized.
  void close() noexcept {
    channels_.box.close();
    channels_.requests.close();
  }

private:
  // Reads one message from `c` into the stash; false when `c` is at end of file.
  bool read_one(connection& c, bool from_actor);

  child_channels channels_;
  std::recursive_mutex recv_mtx_;
  std::mutex send_mtx_;
  std::deque<inbound> stash_; // guarded by recv_mtx_
  bool box_eof_ = false;      // guarded by recv_mtx_
  bool requests_eof_ = false; // guarded by recv_mtx_
};

/// The current process's parent inbox. Throws usage_error when this process is not a child
/// tandem started.
parent_inbox& parent_inbox_or_throw();

template <class F>
struct handler_traits : handler_traits<decltype(&std::decay_t<F>::operator())> {};

template <class R, class... As>
struct handler_traits<R (*)(As...)> {
  using result = R;
  using args = std::tuple<std::decay_t<As>...>;
};
template <class R, class... As>
struct handler_traits<R (*)(As...) noexcept> : handler_traits<R (*)(As...)> {};
template <class R, class... As>
struct handler_traits<R(As...)> : handler_traits<R (*)(As...)> {};
template <class C, class R, class... As>
struct handler_traits<R (C::*)(As...)> : handler_traits<R (*)(As...)> {};
template <class C, class R, class... As>
struct handler_traits<R (C::*)(As...) const> : handler_traits<R (*)(As...)> {};
template <class C, class R, class... As>
struct handler_traits<R (C::*)(As...) noexcept> : handler_traits<R (*)(As...)> {};
template <class C, class R, class... As>
struct handler_traits<R (C::*)(As...) const noexcept> : handler_traits<R (*)(As...)> {};

/// The receive type of a handler taking `Args` (a std::tuple of its decayed parameter types):
/// the one parameter's type, or the tuple of several.
template <class Args>
struct handler_message {
  using type = Args;
};
template <class A>
struct handler_message<std::tuple<A>> {
  using type = A;
};

// Runs `f` on stashed message `i` when its types match; returns whether they did.
template <class F>
bool try_handler(parent_inbox& in, std::size_t i, std::uint64_t tag, F& f) {
  using traits = handler_traits<F>;
  using args = typename traits::args;
  static_assert(std::tuple_size_v<args> > 0, "a receive() handler takes at least one argument");
  using message = typename handler_message<args>::type;
  if (tag != message_types<message>::tag()) return false;
  auto m = in.take(i);
  auto value = decode_message<message>(m.bytes);
  auto call = [&]() -> decltype(auto) {
    if constexpr (std::tuple_size_v<args> == 1)
      return std::invoke(f, std::move(value));
    else
      return std::apply(f, std::move(value));
  };
  if constexpr (std::is_void_v<typename traits::result>) {
    call();
  } else {
    auto result = call();
    std::vector<std::byte> out;
    encode_message(out, result);
    in.reply(m, out);
  }
  return true;
}

template <class... Fs>
bool receive_with(const timeout& t, const std::stop_token* st, Fs&... fs) {
  auto& in = parent_inbox_or_throw();
  auto lk = in.lock();
  if (st != nullptr && st->stop_requested()) return false;
  for (std::size_t i = 0;; ++i) {
    if (!in.fetch(i, true, t, st)) return false;
    auto tag = message_tag(in.at(i).bytes);
    if (!tag) {
      in.take(i);
      throw bad_message_error{"a message from the parent is not a codec message (unknown "
                              "version or too short): it was dropped"};
    }
    bool handled = false;
    ((handled = handled || try_handler(in, i, *tag, fs)), ...);
    if (handled) return true;
  }
}

} // namespace detail

namespace detail {

// receive's argument list: handlers, then optionally a timeout.
template <class... Ts>
bool receive_args(const std::stop_token* st, Ts&&... xs) {
  constexpr std::size_t n = sizeof...(Ts);
  static_assert(n > 0, "receive() needs at least one handler");
  using last = std::decay_t<std::tuple_element_t<n - 1, std::tuple<Ts...>>>;
  if constexpr (std::is_convertible_v<last, timeout>) {
    static_assert(n > 1, "receive() needs at least one handler before its timeout");
    auto args = std::forward_as_tuple(xs...);
    timeout t{std::get<n - 1>(args)};
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return receive_with(t, st, std::get<I>(args)...);
    }
    (std::make_index_sequence<n - 1>{});
  } else {
    return receive_with(forever, st, xs...);
  }
}

} // namespace detail

// -- receiving ----------------------------------------------------------------------------------

/// Runs the first handler that matches a message from the parent (stashed ones first, see the
/// file comment) and sends its return value back as the reply. Arguments: handlers, then
/// optionally a timeout (tandem::timeout, a duration or a steady_clock time point; default
/// forever). Returns true once a message was handled, false when none matched before the timeout
/// (messages that arrived meanwhile stay stashed). Throws eof_error when the parent is gone and no
/// stashed or pending message matches; bad_message_error when a matching message does not decode
/// (it is consumed); usage_error outside a child; what a handler throws (its message is consumed).
/// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to an
/// immediate deadline.
///
///   tandem::mp::receive([](int x) { return x + 1; }, [](std::string s) { log(s); }, 1s);
template <class... Ts>
bool receive(Ts&&... xs) {
  return detail::receive_args(nullptr, std::forward<Ts>(xs)...);
}

/// As receive(handlers..., timeout), and returns false promptly once a stop is requested on `st`
/// (messages that arrived meanwhile stay stashed).
///
///   while (tandem::mp::receive(st, [](int job) { run(job); })) {}
template <class... Ts>
bool receive(std::stop_token st, Ts&&... xs) {
  return detail::receive_args(&st, std::forward<Ts>(xs)...);
}

/// Receives the oldest message the parent sent with p.send() (see the file comment for types).
/// Blocks until one arrives. Throws eof_error when the parent is gone and every message was read;
/// bad_message_error when it holds other types (it is consumed); usage_error outside a child.
template <class T>
T recv() {
  auto m = detail::parent_inbox_or_throw().take_plain(forever);
  return detail::decode_message<T>(m->bytes);
}

/// As recv<T>(), but waits at most `t`: std::nullopt when no message came. Negative timeouts are
/// equivalent to a zero timeout. Deadlines in the past are equivalent to an immediate deadline.
template <class T>
std::optional<T> recv(timeout t) {
  auto m = detail::parent_inbox_or_throw().take_plain(t);
  if (!m) return std::nullopt;
  return detail::decode_message<T>(m->bytes);
}

/// As recv<T>(t), and returns std::nullopt promptly once a stop is requested on `st`.
template <class T>
std::optional<T> recv(std::stop_token st, timeout t = forever) {
  auto m = detail::parent_inbox_or_throw().take_plain(t, &st);
  if (!m) return std::nullopt;
  return detail::decode_message<T>(m->bytes);
}

/// True when recv() would not block (a message is there, or the parent is gone); waits up to `t`
/// (default: do not wait). Throws usage_error outside a child.
inline bool poll(timeout t = std::chrono::seconds{0}) {
  return detail::parent_inbox_or_throw().poll(t);
}

/// As poll(t), and returns false promptly once a stop is requested on `st`.
inline bool poll(std::stop_token st, timeout t = std::chrono::seconds{0}) {
  return detail::parent_inbox_or_throw().poll(t, &st);
}

// -- sending ------------------------------------------------------------------------------------

/// Sends the message of the values `xs...` to the parent (its p.recv()). Blocks while the channel
/// is full. Throws value_error when a value cannot be encoded (nothing is sent); tandem::error
/// with EPIPE when the parent is gone; usage_error outside a child.
template <class... Ts>
void send(const Ts&... xs) {
  std::vector<std::byte> bytes;
  detail::encode_message(bytes, xs...);
  detail::parent_inbox_or_throw().send(bytes);
}

/// The plain channel to the parent itself, for mp::wait or fileno(). Receiving on it directly
/// bypasses the stash (see the file comment); prefer recv(). Throws usage_error outside a child.
inline connection& parent_connection() {
  return detail::parent_inbox_or_throw().box();
}

} // namespace tandem::mp
