// detail::make_thread_actor: the caf::actor through which CAF actors message, monitor and link to a
// tandem thread (or any OS thread that owns a tandem::mailbox).
//
// The actor has no behavior and no scheduler slot: its enqueue puts each CAF message straight
// into the thread's mailbox (one lock, and one futex wake only when the thread sleeps), where
// the thread takes it with mailbox::get() or mailbox::receive(). Replies and messages the thread
// sends to actors are scheduled on a CAF worker that recently handed the thread a message (so
// one that is awake), falling back to CAF's scheduler.
//
// Life cycle: *running* from make_thread_actor() until terminate_thread_actor(), then
// *terminated*: CAF actors that monitor it get a caf::down_msg, linked actors a caf::exit_msg,
// both with the exit reason; later monitors and links get them at once; later requests get
// sec::request_receiver_down right away (never a hang). Exit reasons:
//   - the target returned:    caf::exit_reason::normal (an error that converts to false);
//   - the target threw:       caf::exit_reason::unhandled_exception, whose context is a
//                             message holding the exception's what() (detail::make_exit_error;
//                             read it with detail::error_text);
//   - the actor became unreachable before it was terminated: caf::exit_reason::unreachable.
//
// What the thread sees: every message, in order, system messages included: a caf::exit_msg from
// a linked actor that ended and a caf::down_msg from an actor the thread monitors are ordinary
// messages in its mailbox (a thread traps exits: it cannot be killed, it is asked to stop). When
// make_thread_actor got a stop_source, an exit_msg with a non-normal reason also requests a stop
// on it, the cooperative counterpart of CAF's "a linked actor's failure kills you". CAF's
// `sys_atom` queries are answered by the actor itself and never reach the mailbox.
//
// Integration into tandem::thread (all of it; `state` is the thread's detail::thread_state):
//
//   // when the thread gets its mailbox and actor (construction, or first use of mailbox()
//   // or actor()), under state->mtx:
//   auto box = std::make_shared<tandem::mailbox>(/* capacity, 0 = unbounded */);
//   caf::actor self = tandem::detail::make_thread_actor(rt.system(), box, state->name(),
//                                                       state->stop);
//   state->actor = tandem::detail::make_thread_actor_attachment(self);  // terminates at exit
//   // in the new OS thread, around the target (so send_to, reply and receive know the thread):
//   tandem::detail::thread_actor_scope scope{self};
//   // thread::actor() returns `self`; thread::mailbox() returns *box (or
//   // *detail::thread_actor_mailbox(self)); thread::send(xs...) is box->send(xs...).
//
// The attachment's on_exit (after the target returned or threw, after the excepthook) calls
// terminate_thread_actor with the exception. Without thread_state, call terminate_thread_actor
// yourself when the target ended (see tests/framework/thread_actor_test.cpp, plain_thread).
//
// The actor is not registered as running with the actor system: the actor system's destructor
// does not wait for threads (the runtime joins them). The actor system must outlive the actor's
// use: terminate it, and let the threads end, before destroying the system.
#pragma once

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include <exception>
#include <memory>
#include <stop_token>
#include <string>

namespace tandem {

class mailbox;

namespace detail {

class thread_attachment;

// -- construction -------------------------------------------------------------------------------

/// Makes the actor of a thread whose mailbox is `mb`, in `sys`, named `name` (its name() for
/// CAF's logs and `sys_atom` queries). When `stop` has a stop state, a caf::exit_msg with a
/// non-normal reason from a linked actor requests a stop on it (besides being delivered). The
/// actor keeps `mb` alive. Throws std::bad_alloc. Thread-safe.
///
///   auto mb = std::make_shared<tandem::mailbox>();
///   caf::actor self = tandem::detail::make_thread_actor(sys, mb, "worker");
caf::actor make_thread_actor(caf::actor_system& sys, std::shared_ptr<mailbox> mb, std::string name,
                             std::stop_source stop = std::stop_source{std::nostopstate});

/// True when `x` was made by make_thread_actor.
bool is_thread_actor(const caf::actor& x) noexcept;

/// The mailbox of a thread actor; null when `x` is not one.
std::shared_ptr<mailbox> thread_actor_mailbox(const caf::actor& x) noexcept;

// -- termination --------------------------------------------------------------------------------

/// Terminates the thread actor `self` because its thread's target ended: a null `eptr` is a
/// clean end (exit reason caf::exit_reason::normal), otherwise the reason is
/// detail::make_exit_error(eptr). Sends the down and exit messages, refuses later messages
/// (requests get sec::request_receiver_down), and shuts the mailbox down at once: messages left
/// in it are dropped, requests among them answered with sec::request_receiver_down (which also
/// breaks reference cycles through senders). Only the first termination counts; later calls do
/// nothing. Never throws. Requires: `self` was made by make_thread_actor (otherwise nothing
/// happens).
void terminate_thread_actor(const caf::actor& self, const std::exception_ptr& eptr) noexcept;

/// As above, with an explicit exit reason (e.g. caf::exit_reason::user_shutdown for a thread the
/// runtime gave up on).
void terminate_thread_actor(const caf::actor& self, caf::error reason) noexcept;

/// A thread_attachment (detail/thread_state.hpp) whose on_exit terminates `self` with the
/// exception that ended the thread (none: a normal exit): store it in thread_state::actor.
/// Keeps `self` alive until the thread ends. Throws std::bad_alloc.
std::shared_ptr<thread_attachment> make_thread_actor_attachment(caf::actor self);

/// The actor held by an attachment made by make_thread_actor_attachment; null otherwise.
caf::actor thread_actor_of(const thread_attachment* a) noexcept;

// -- the calling thread's identity ---------------------------------------------------------------

/// For tandem::thread: a thread started by tandem speaks as its own actor without a scope. The
/// first time such a thread needs its identity (receive, reply, send_to, monitor, link_to), the
/// thread's mailbox and actor are made (thread::actor()) and kept as its identity until the
/// thread ends. Returns false outside a started tandem thread or when they cannot be made.
/// Implemented with tandem::thread (src/thread_messaging.cpp).
bool adopt_thread_identity() noexcept;

/// Sets the calling thread's identity to `self` (a thread actor) without a scope, or clears it
/// (null). Used by adopt_thread_identity and the attachment's on_exit.
void set_thread_identity(const caf::actor& self) noexcept;

/// Makes the calling OS thread speak as the thread actor `self` while the scope lives: messages
/// it sends with tandem::send_to, mailbox::send and replies carry `self` as their sender (so
/// the receiving actor can answer into the mailbox), tandem::receive uses `self`'s mailbox,
/// tandem::monitor and tandem::link_to act for `self`. Scopes nest (the previous identity
/// returns at the end). Requires: `self` was made by make_thread_actor. Holds a reference to
/// `self` while it lives.
///
///   std::thread worker{[self] {
///     tandem::detail::thread_actor_scope scope{self};
///     tandem::receive([](int x) { return x + 1; });
///   }};
class thread_actor_scope {
public:
  explicit thread_actor_scope(const caf::actor& self);
  thread_actor_scope(const thread_actor_scope&) = delete;
  thread_actor_scope& operator=(const thread_actor_scope&) = delete;
  ~thread_actor_scope();

private:
  caf::strong_actor_ptr previous_actor_;
  void* previous_impl_;
};

/// The calling thread's actor (null outside a thread_actor_scope, and in a tandem thread that
/// has not needed its actor yet: plain sends between threads never create one).
const caf::strong_actor_ptr& current_actor_ptr() noexcept;

/// As current_actor_ptr(), for messages to CAF actors (send_to, replies): a started tandem thread
/// gets its actor now (adopt_thread_identity), so the receiver can answer.
const caf::strong_actor_ptr& current_actor_ptr_for_actors() noexcept;

/// The calling thread's mailbox: its scope's, else a started tandem thread's own (made on first
/// use, without an actor); null otherwise.
mailbox* current_mailbox() noexcept;

/// The calling tandem thread's mailbox (thread::mailbox()), or null outside a started tandem
/// thread or when it cannot be made. Implemented with tandem::thread.
mailbox* current_thread_mailbox() noexcept;

/// The execution unit through which the calling thread schedules the actors it sends to (null
/// outside a thread_actor_scope: CAF's scheduler then picks a worker).
caf::execution_unit* current_execution_unit() noexcept;

} // namespace detail

} // namespace tandem
