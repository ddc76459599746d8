// Messaging from inside a tandem thread: receive from the thread's own mailbox, answer the
// message being handled, send to CAF actors as the thread, monitor and link to them.
//
//   // in a tandem thread's target:
//   tandem::send_to(counter, caf::atom("add"), 1);        // `counter` sees the thread as sender
//   tandem::receive(
//     [](int x) { return x * 2; },                         // answers the sender (request or not)
//     [](const std::string& s) { tandem::reply(s.size()); }, // or answer explicitly
//     [](caf::down_msg& m) { ... },                        // from tandem::monitor(actor)
//     1s);                                                 // false when nothing matched in 1 s
//
// The calling thread's identity (its caf::actor and mailbox) is the one a
// detail::thread_actor_scope set: tandem::thread sets it for its targets; a plain std::thread that
// owns a mailbox and a thread actor sets it itself. Without one, receive() and the monitor/link
// calls throw usage_error, and send_to sends anonymously (the receiver cannot answer).
#pragma once

#include <tandem/detail/thread_actor.hpp>
#include <tandem/mailbox.hpp>

#include <caf/actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_id.hpp>

#include <utility>

namespace tandem {

namespace detail {

/// The calling thread's mailbox (see detail::current_mailbox); throws usage_error outside a
/// tandem thread or a thread_actor_scope.
mailbox& current_mailbox_or_throw();

/// The envelope being handled by the calling thread's receive(); throws usage_error outside a
/// handler.
mailbox::envelope& current_envelope_or_throw();

} // namespace detail

// -- receiving ----------------------------------------------------------------------------------

/// mailbox::receive on the calling thread's mailbox: handlers, then optionally a timeout, and
/// optionally a std::stop_token first. Returns true once a message was handled, false on timeout
/// or stop. Throws usage_error outside a tandem thread, shut_down_error as mailbox::receive.
/// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent to
/// an immediate deadline.
template <class... Ts>
bool receive(Ts&&... xs) {
  return detail::current_mailbox_or_throw().receive(std::forward<Ts>(xs)...);
}

/// The envelope whose handler is running in the calling thread's receive(), or null outside a
/// handler. A handler may move it out (`auto e = std::move(*tandem::current_envelope());`) to
/// answer later, from any thread, with envelope::reply; receive() then sends nothing itself.
/// The handler's arguments refer into the envelope's message: they stay valid while the moved
/// envelope lives.
mailbox::envelope* current_envelope() noexcept;

/// The sender of the message being handled (null outside a handler, or for a message from plain
/// code). Convert with caf::actor_cast<caf::actor>(tandem::current_sender()).
inline const caf::strong_actor_ptr& current_sender() noexcept {
  static const caf::strong_actor_ptr none;
  auto* e = current_envelope();
  return e != nullptr && *e ? e->sender() : none;
}

/// Answers the message being handled with caf::make_message(xs...) (see envelope::reply): a
/// request gets it as its response, an async message a new message to its sender. One answer
/// per message: a later reply, or the handler's return value, is then ignored. Throws
/// usage_error outside a receive() handler. Never blocks.
///
///   tandem::receive([](int x) { tandem::reply(x, x * x); });
template <class... Ts>
void reply(Ts&&... xs) {
  detail::current_envelope_or_throw().reply(std::forward<Ts>(xs)...);
}

// -- sending ------------------------------------------------------------------------------------

/// Sends caf::make_message(xs...) to `dest` as the calling thread's actor, so `dest` sees it as
/// current_sender() and its answers (a handler's return value, or a send back) arrive in the
/// thread's mailbox. Outside a tandem thread the message is anonymous. Does nothing when `dest`
/// is invalid. Never blocks (CAF mailboxes are unbounded). Throws std::bad_alloc.
///
///   tandem::send_to(worker, caf::atom("job"), 42);
///   tandem::receive([](int answer) { ... });   // the worker's reply
template <class... Ts>
void send_to(const caf::actor& dest, Ts&&... xs) {
  if (!dest) return;
  dest->enqueue(caf::make_mailbox_element(detail::current_actor_ptr_for_actors(),
                                          caf::make_message_id(), {}, std::forward<Ts>(xs)...),
                detail::current_execution_unit());
}

// -- monitoring and linking ---------------------------------------------------------------------

/// The calling thread's actor starts monitoring `whom`: when `whom` ends, a caf::down_msg with
/// its exit reason arrives in the thread's mailbox (at once if it already ended). Throws
/// usage_error outside a tandem thread. Does nothing for an invalid handle.
void monitor(const caf::actor& whom);

/// Stops monitoring `whom` (a down_msg already delivered stays in the mailbox).
void demonitor(const caf::actor& whom);

/// Links the calling thread's actor to `other`: when either ends, the other gets a
/// caf::exit_msg. A thread traps exits: the exit_msg arrives in its mailbox (and, for a
/// non-normal reason, requests a stop when the thread actor has a stop_source); a CAF actor
/// that does not trap exits dies with the thread's non-normal exit reason, as with any link.
/// Throws usage_error outside a tandem thread. Does nothing for an invalid handle.
void link_to(const caf::actor& other);

/// Removes a link made with link_to.
void unlink_from(const caf::actor& other);

} // namespace tandem
