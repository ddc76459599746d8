// The actor of a child process (tandem::mp::process::actor()): a caf::actor in the parent's actor
// system through which CAF actors message, request and monitor the child.
//
// What it does:
//   - A message sent to it (a caf::message) is encoded as one codec message of its elements
//     (tandem/mp/detail/codec.hpp: the type tag of the elements' types in order, then the values)
//     and written to the child's actor channel, with a request number when it has a sender. The
//     child's mp::receive sees it like a message sent with p.send(xs...) and matches it by its
//     types; a handler's return value travels back with the number and reaches the sender: as
//     the response when the message was a request, as a new message otherwise.
//   - It quits when the child ends, with an exit reason that carries the exit code
//     (mp::exit_code_of): caf::exit_reason::normal for exit code 0, otherwise a tandem error of
//     errc::process whose context holds a description and the code. Monitors get a down message,
//     linked actors an exit message with it; requests not answered by then, and later ones, get
//     caf::sec::request_receiver_down. The child's end is seen through its pidfd by a thread that
//     polls it (and the actor channel); the thread ends when the actor quits.
//   - At the runtime's shutdown (after the children were joined or ended) every process actor
//     of this process has quit before the actor system goes away: the actor is not registered
//     with the actor system, so a forgotten one never makes its destructor wait.
//
// Limits: an element is sent when it has a CAF inspect overload and its type is known at run
// time: user types and std containers (CAF gives their std::type_info), and CAF's builtin types
// that the codec carries (integers, bool, float, double, long double, std::string, std::u16string,
// std::u32string, caf::atom_value, std::vector<char>, std::vector<std::string>,
// std::set<std::string>, std::map<std::string, std::string>, caf::timespan, caf::timestamp).
// CAF stores `long long` as `long` (both 64 bits), so the child's handler must take the type CAF
// stored. Other elements (actor handles, CAF errors, messages) make the request fail with a
// value_error. A reply is turned back into a caf::message only when its types are registered in
// the parent: single values of the builtin types above are, types sent with p.send(xs...) or
// received with p.recv<T>() are (at the first call), and mp::register_message_types<Ts...>()
// registers others; a reply of unknown types fails the request with a bad_message error.
//
// Sending to the actor writes to the channel from the sending thread (a CAF worker, for an
// actor): a child that stops reading eventually blocks its senders, as a full pipe does.
#pragma once

#include <tandem/mp/detail/codec.hpp>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <utility>

namespace tandem::mp {

class connection;
class process;

/// The exit code a process actor's exit reason carries (the down message of a monitor, the exit
/// message of a link): 0 for caf::exit_reason::normal (a process actor ends normally exactly
/// when its child's exit code is 0), the code of a child that failed, was killed (-N for signal
/// N) or called mp::exit(n) otherwise; std::nullopt for any other reason (the exit status was
/// lost, the runtime shut down before the child ended, or the reason is not a process actor's).
///
///   [](const caf::down_msg& m) { if (mp::exit_code_of(m.reason) == -9) restart(); }
std::optional<int> exit_code_of(const caf::error& reason);

namespace detail {

/// Turns a reply message of registered types back into a caf::message.
using reply_decoder = caf::message (*)(std::span<const std::byte>);

/// Registers `decoder` for replies with the type tag `tag`. Thread-safe; later registrations of
/// the same tag do nothing.
void register_reply_decoder(std::uint64_t tag, reply_decoder decoder);

template <class... Ts>
caf::message decode_to_caf_message(std::span<const std::byte> in) {
  auto values = decode<Ts...>(in);
  return std::apply([](auto&... xs) { return caf::make_message(std::move(xs)...); }, values);
}

/// Registers the message of the values Ts... once per program.
template <class... Ts>
void register_reply_types() {
  static const bool registered =
      (register_reply_decoder(type_tag<Ts...>(), &decode_to_caf_message<Ts...>), true);
  (void)registered;
}

template <class T>
struct reply_registration {
  static void run() { register_reply_types<T>(); }
};
template <class... Ts>
struct reply_registration<std::tuple<Ts...>> {
  static void run() { register_reply_types<Ts...>(); }
};

/// What a process keeps of its actor: the actor while it lives, and its exit reason once it quit.
struct process_actor_link {
  std::mutex mtx;
  caf::weak_actor_ptr actor;        // guarded by mtx
  std::optional<caf::error> reason; // guarded by mtx: set when the actor quit
};

/// Makes the actor of the started child `p` (a handle to the same child), which owns the
/// parent's end of the actor channel `requests` and the pidfd `sentinel` (a duplicate it
/// closes), in the actor system of tandem::runtime::current(), and records it in `link`. Throws
/// std::bad_alloc, or std::system_error when the polling thread cannot start (the descriptors are
/// closed then).
caf::actor make_process_actor(process p, connection requests, int sentinel,
                              const std::shared_ptr<process_actor_link>& link);

/// An actor named `name` that quit at once with `reason` (for a process whose actor is gone):
/// monitors get their down message at once.
caf::actor ended_process_actor(std::string name, const caf::error& reason);

/// Ends every process actor of this process and waits for their threads: those whose child has
/// ended quit with its exit code, the others with caf::exit_reason::user_shutdown. Called by
/// the runtime's shutdown after the children. Never throws.
void stop_process_actors() noexcept;

/// The exit code of the ended child `p` (collects its status; works after close()), or
/// std::nullopt when it is lost. Never throws.
std::optional<int> collected_exit_code(const process& p) noexcept;

/// Forgets `fd` as a parent's end of a mailbox (it is about to be closed); see process.cpp.
void forget_parent_end(int fd) noexcept;

} // namespace detail

/// Makes replies of the values Ts... (a child's handler returning Ts..., or a std::tuple of them)
/// reach CAF actors through process actors: see the file comment. Call it once before such
/// replies arrive; calling it again is harmless. Thread-safe.
///
///   tandem::mp::register_message_types<std::vector<int>>();
template <class... Ts>
void register_message_types() {
  detail::register_reply_types<Ts...>();
}

} // namespace tandem::mp
