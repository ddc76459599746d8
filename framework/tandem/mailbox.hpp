// tandem::mailbox: the mailbox of a tandem thread. Python's queue.Queue semantics (FIFO, optional
// capacity, get with timeout, task_done/join, qsize/empty/full, Python 3.13's shutdown) over CAF
// messages, plus CAF's blocking receive: match messages against handlers, with a timeout.
//
//   auto mb = std::make_shared<tandem::mailbox>();     // unbounded; mailbox{100} holds 100
//   mb->send(42, std::string{"hello"});                // from any thread
//   mb->receive(                                       // in the owning thread
//     [](int x, const std::string& s) { ... },
//     [](double d) { return d * 2; },                  // a value answers a request
//     500ms);                                          // false: nothing matched within 500 ms
//   auto e = mb->get();                                // or take raw envelopes, Queue style
//   if (e.content().match_elements<int>()) e.reply(e.content().get_as<int>(0) + 1);
//   mb->task_done();
//
// An item is an *envelope*: the sender (a caf::strong_actor_ptr; null when the message came from
// plain code without an actor identity), the message id (async or request, for replies) and the
// content (a caf::message). Envelopes arrive by send() or put() from any thread, or through the
// enqueue of the thread's caf::actor (detail/thread_actor.hpp), which hands CAF messages straight
// in through deliver(), without a scheduler hop.
//
// States: *open*, then *shut down* after shutdown() (or after the thread actor terminated): every
// put form throws shut_down_error, CAF senders of requests get an error response, gets and
// receives return what is left and throw shut_down_error once nothing is left. shutdown(true)
// also drops what is left at once. A mailbox never reopens.
//
// The stash: receive() takes messages in order and runs the first handler that matches, as a
// CAF behavior does; a message no handler matches (or whose handler returns caf::skip) is kept
// in the stash, in order, and every later receive() or get() looks at the stash before the
// queue. So a receive that waits for one kind of message never loses the others, exactly as
// CAF's blocking receive. Stashed messages count in qsize() but not against the capacity (they
// already left the queue); shutdown(true) drops them too.
//
// Tasks: the unfinished-task count goes up by one per message that arrives (by any route) and
// down by one per task_done(), per message a receive() handled (receive() reports its own
// work: a handled message is a finished task) and per message shutdown(true) drops. get() does
// not report: as with Queue, its caller calls task_done().
//
// Capacity: a bounded mailbox blocks plain senders (send, put) while it holds maxsize() queued
// messages. Messages from CAF actors are never blocked or refused for capacity: they may take
// the mailbox past maxsize(), because blocking a scheduler thread could stall the whole actor
// system (the thread that should empty the mailbox may be waiting for an actor on that very
// scheduler thread). full() then stays true until the consumer catches up.
//
// Replies: a receive handler that returns a value answers the message's sender (a request gets
// it as its response, an async message gets it as a new message, as CAF handlers do);
// tandem::reply(xs...) answers explicitly from inside a handler (<tandem/receive.hpp>), and
// envelope::reply(xs...) answers an envelope taken with get(), from any thread. A request that
// is never answered is answered with an error when its envelope is destroyed, so no requester
// waits forever (CAF 1.x calls this a broken promise; the error is sec::request_receiver_down).
// The sender of a reply is the actor of the calling thread (detail::thread_actor_scope), or
// none.
//
// Differences from tandem::queue<T>: this type stores CAF's own mailbox elements in an
// intrusive list (no allocation per message beyond the element the sender built), lets CAF
// senders past the capacity (above), and owns the stash. Order: FIFO; CAF's message priorities
// are ignored.
//
// Performance: a message costs one uncontended lock acquisition for the sender, two for a
// receive() (take, then report done), and no allocation beyond the element its sender built; a
// receiver that waits first spins (adaptively, up to 200 us, so a thread in a conversation with an
// actor on another core takes the next message without a system call, and an idle thread soon spins
// only briefly), then sleeps on a futex; a sender wakes it with one futex wake, only when it
// sleeps.
//
// Thread-safety: every member may be called concurrently from any thread. receive() is meant for
// one consumer (the owning thread); several concurrent receivers or getters each get whole
// messages, but the order in which they see stashed messages is then unspecified.
//
// Lifetime: the mailbox must outlive every call on it; the thread actor keeps it alive through a
// std::shared_ptr. Destroying it destroys the envelopes left (answering requests with an error).
//
// Neither copyable nor movable.
#pragma once

#include <tandem/detail/futex_condvar.hpp>
#include <tandem/detail/futex_mutex.hpp>
#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message.hpp>
#include <caf/message_id.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tandem {

class mailbox;

namespace detail {

/// The sender identity of the calling thread: the strong pointer of its thread actor while a
/// detail::thread_actor_scope is active on it, null otherwise. Defined in thread_actor.cpp.
const caf::strong_actor_ptr& current_actor_ptr() noexcept;

/// The execution unit CAF messages sent by the calling thread are scheduled through (routes the
/// receiving actor to a CAF worker that is awake), or null. Defined in thread_actor.cpp.
caf::execution_unit* current_execution_unit() noexcept;

/// True for the arguments receive() reads as its timeout: tandem::timeout, any duration, a
/// steady_clock time point.
template <class T>
inline constexpr bool is_receive_timeout_v =
    std::is_convertible_v<T, timeout> && !std::is_same_v<std::decay_t<T>, caf::behavior>;

} // namespace detail

class mailbox {
public:
  class envelope;

  // -- construction ---------------------------------------------------------------------------

  /// A mailbox that holds at most `maxsize` queued messages from plain senders; 0 (the default)
  /// means unbounded. Allocates nothing.
  explicit mailbox(std::size_t maxsize = 0) noexcept : maxsize_(maxsize) {}

  mailbox(const mailbox&) = delete;
  mailbox& operator=(const mailbox&) = delete;

  /// Destroys the envelopes still queued or stashed; requests among them are answered with
  /// sec::request_receiver_down. Requires: no thread is using the mailbox.
  ~mailbox();

  // -- sending --------------------------------------------------------------------------------

  /// Sends a message made of `xs` (caf::make_message(xs...)), blocking while the mailbox is
  /// full. The sender is the calling thread's actor when it already has one (it has called
  /// thread::actor(), or talked to CAF actors: send_to, a reply, monitor), none otherwise: a plain
  /// send never starts an actor system. To be answered, use tandem::send_to(other.actor(), ...).
  /// Throws shut_down_error on a shut-down mailbox.
  ///
  ///   mb.send(std::string{"job"}, 3);
  template <class T, class... Ts>
  void send(T&& x, Ts&&... xs) {
    auto element = caf::make_mailbox_element(detail::current_actor_ptr(), caf::make_message_id(),
                                             {}, std::forward<T>(x), std::forward<Ts>(xs)...);
    put_element(element, forever, nullptr, false);
  }

  /// Python's `put(item)`: queues `e`, blocking while the mailbox is full. Counts one more
  /// unfinished task. Throws shut_down_error if the mailbox is shut down, also when that happens
  /// while this call waits; `e` is then untouched. An envelope converts from a caf::message
  /// (sender none, async), so `mb.put(caf::make_message(1, 2))` works.
  ///
  /// The rvalue parameter is moved from only once the put succeeded: a put that throws, times
  /// out or is stopped leaves `e` as it was.
  ///
  /// Memory ordering: everything the putting thread did before its put happens-before the get
  /// or receive that takes the message.
  void put(envelope&& e);

  /// Python's `put(item, timeout=t)`: as put(e), but gives up when `t` expires first and
  /// returns false (where Python raises Full). Negative timeouts are equivalent to a zero
  /// timeout. Deadlines in the past are equivalent to an immediate deadline.
  bool put(envelope&& e, timeout t);

  /// As put(e, t), and also returns false promptly once `st` is stopped while waiting for room
  /// (at once, changing nothing, when it is stopped on entry). A stop never makes it throw.
  bool put(std::stop_token st, envelope&& e, timeout t = forever);

  /// Python's `put_nowait(item)`: queues `e` if there is room right away; never blocks. Throws
  /// shut_down_error on a shut-down mailbox (checked first, as Python does), full_error when it
  /// is full; `e` is then untouched.
  void put_nowait(envelope&& e);

  /// Queues a CAF mailbox element without ever blocking and regardless of the capacity (see the
  /// file comment); the thread actor's enqueue calls this. Returns false, leaving `x` untouched,
  /// when the mailbox is shut down: the caller then answers a request with an error. Never
  /// throws. Requires: `x` is not null.
  bool deliver(caf::mailbox_element_ptr& x) noexcept;

  // -- receiving ------------------------------------------------------------------------------

  /// Python's `get()`: removes and returns the next envelope (the oldest stashed one first, then
  /// the oldest queued one), blocking while there is none. Throws shut_down_error once the
  /// mailbox is shut down and empty (stash included), also when that happens while this waits.
  /// The caller reports the message with task_done() when done with it.
  envelope get();

  /// Python's `get(timeout=t)`: as get(), but returns std::nullopt when `t` expires first. Never
  /// returns nullopt for a shutdown (it throws shut_down_error). Negative timeouts are
  /// equivalent to a zero timeout. Deadlines in the past are equivalent to an immediate
  /// deadline.
  std::optional<envelope> get(timeout t);

  /// As get(t), and also returns std::nullopt promptly once `st` is stopped while waiting (at
  /// once, taking nothing, when it is stopped on entry). A stop never makes it throw.
  std::optional<envelope> get(std::stop_token st, timeout t = forever);

  /// Python's `get_nowait()`: the next envelope if there is one right away. Throws
  /// shut_down_error on a shut-down, empty mailbox, empty_error on an empty one.
  envelope get_nowait();

  /// CAF's blocking receive. Arguments: handlers (lambdas as in a caf::behavior, or a ready
  /// caf::behavior / caf::message_handler, which saves building one per call), then optionally
  /// a timeout (tandem::timeout, a duration or a steady_clock time point; default forever), and
  /// optionally a std::stop_token as the FIRST argument.
  ///
  /// Looks at the stashed messages in order first, then takes queued ones as they come, and runs
  /// the first handler that matches (CAF's matching: types in order, first match wins). A
  /// message that matches nothing (or whose handler returns caf::skip) goes to the stash (see
  /// the file comment). Returns true once one message was handled, false when `t` expired or
  /// `st` was stopped first.
  ///
  /// The handled message is reported as a finished task. When the handler returns a value (not
  /// void, not caf::none) and the message has a sender, the value goes back to it: a request
  /// gets it as its response (so an event-based actor's `request(thread_actor, infinite,
  /// 42).then(...)` works); an async message gets a new message with it. A handler returning void
  /// for a request answers it with an empty message, as CAF does. A handler may instead answer
  /// explicitly with tandem::reply(xs...) (<tandem/receive.hpp>), or take the envelope with
  /// `std::move(*tandem::current_envelope())` to answer later from anywhere.
  ///
  /// Responses to requests nobody waits for any more are dropped (and reported done), as CAF
  /// does. Throws shut_down_error once the mailbox is shut down and has no queued message left
  /// (stashed messages that match nothing cannot help). Exceptions from a handler propagate; the
  /// message then counts as handled (an unanswered request among them is answered with an
  /// error).
  ///
  /// A handler list may end with CAF's `caf::after(d) >> f` instead of (or besides) a timeout:
  /// the earlier deadline applies, and f runs when it is `d` that expired (receive() still
  /// returns false).
  ///
  /// Negative timeouts are equivalent to a zero timeout. Deadlines in the past are equivalent
  /// to an immediate deadline.
  ///
  ///   bool stop = false;
  ///   while (!stop)
  ///     mb.receive([&](int job) { run(job); },                 // false after 1 s without one
  ///                [&](caf::exit_msg&) { stop = true; }, 1s);
  template <class... Ts>
  bool receive(Ts&&... xs) {
    static_assert(sizeof...(Ts) > 0, "receive() needs at least one handler");
    if constexpr (std::is_same_v<std::decay_t<std::tuple_element_t<0, std::tuple<Ts...>>>,
                                 std::stop_token>)
      return receive_args(std::forward<Ts>(xs)...);
    else
      return receive_args(std::stop_token{}, std::forward<Ts>(xs)...);
  }

  // -- tasks ----------------------------------------------------------------------------------

  /// Python's `task_done()`: the work on one message taken with get() is complete. When no
  /// unfinished task is left, every join() returns. Throws value_error (changing nothing) when
  /// called more times than messages arrived.
  void task_done();

  /// Python's `join()`: blocks until every message that arrived was handled by receive(),
  /// reported with task_done() or dropped by shutdown(true). Returns false when `t` expires
  /// first. Negative timeouts are equivalent to a zero timeout. Deadlines in the past are
  /// equivalent to an immediate deadline.
  bool join(timeout t = forever);

  /// As join(t), and also returns false promptly once `st` is stopped.
  bool join(std::stop_token st, timeout t = forever);

  // -- shutdown -------------------------------------------------------------------------------

  /// Python 3.13's `shutdown(immediate=False)`: from now on every put form throws
  /// shut_down_error (CAF requesters get an error response), and gets and receives throw it once
  /// nothing is left. Wakes every blocked sender and receiver.
  ///
  /// With `immediate`, also drops every queued and stashed message at once, counting each as a
  /// finished task (so join() returns unless messages taken with get() still wait for their
  /// task_done()). Requests among them are answered with a shut_down error; the dropped
  /// envelopes are destroyed after the lock is released. Calling it again is allowed. Never
  /// throws.
  void shutdown(bool immediate = false) noexcept;

  /// As shutdown(immediate), with the error that requests among the dropped messages get
  /// (the thread actor passes sec::request_receiver_down when its thread ended).
  void shutdown(bool immediate, const caf::error& drop_reason) noexcept;

  // -- observers ------------------------------------------------------------------------------

  /// Python's `qsize()`: queued plus stashed messages (a snapshot). Lock-free.
  std::size_t qsize() const noexcept {
    return size_.load(std::memory_order_acquire) + stash_size_.load(std::memory_order_acquire);
  }

  /// Python's `empty()`: qsize() == 0 (a snapshot).
  bool empty() const noexcept { return qsize() == 0; }

  /// Python's `full()`: a bounded mailbox with maxsize() or more queued messages (a snapshot;
  /// stashed messages do not count). Never true for an unbounded mailbox.
  bool full() const noexcept {
    return maxsize_ != 0 && size_.load(std::memory_order_acquire) >= maxsize_;
  }

  /// The capacity given at construction; 0 when unbounded.
  std::size_t maxsize() const noexcept { return maxsize_; }

  /// True once shutdown() was called.
  bool is_shutdown() const noexcept { return shut_down_.load(std::memory_order_acquire); }

  /// Messages that arrived and were not yet reported done (a snapshot).
  std::size_t unfinished_tasks() const noexcept;

private:
  template <class... Ts>
  bool receive_args(std::stop_token st, Ts&&... xs) {
    constexpr std::size_t n = sizeof...(Ts);
    static_assert(n > 0, "receive() needs at least one handler");
    using last = std::tuple_element_t<n - 1, std::tuple<Ts...>>;
    if constexpr (detail::is_receive_timeout_v<last>) {
      static_assert(n > 1, "receive() needs at least one handler before its timeout");
      auto args = std::forward_as_tuple(std::forward<Ts>(xs)...);
      timeout t{std::get<n - 1>(args)};
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return receive_with(st, t, std::get<I>(std::move(args))...);
      }
      (std::make_index_sequence<n - 1>{});
    } else {
      return receive_with(st, forever, std::forward<Ts>(xs)...);
    }
  }

  template <class... Fs>
  bool receive_with(const std::stop_token& st, const timeout& t, Fs&&... fs) {
    // One handler that is a caf::behavior is copied (a reference count), not rebuilt.
    caf::behavior bhvr{std::forward<Fs>(fs)...};
    return receive_impl(bhvr, t, st);
  }

  bool receive_impl(caf::behavior& bhvr, const timeout& t, const std::stop_token& st);
  void put_element(caf::mailbox_element_ptr& x, const timeout& t, const std::stop_token* st,
                   bool nowait);
  bool put_envelope(envelope& e, const timeout& t, const std::stop_token* st, bool nowait);
  bool take(envelope& out, const timeout& t, const std::stop_token* st, bool nowait,
            bool include_stash);
  void push_element(caf::mailbox_element* x) noexcept;
  caf::mailbox_element* pop_element() noexcept;
  void stash(envelope&& e);
  void done(std::size_t n = 1);

  mutable detail::futex_mutex mtx_;
  caf::mailbox_element* head_ = nullptr;             // guarded by mtx_; oldest queued element
  caf::mailbox_element* tail_ = nullptr;             // guarded by mtx_
  std::atomic<std::size_t> size_{0};                 // queued elements; stored under mtx_
  std::atomic<std::size_t> stash_size_{0};           // stash_.size(); stored under mtx_
  std::atomic<bool> shut_down_{false};               // stored under mtx_
  std::size_t unfinished_ = 0;                       // guarded by mtx_
  std::atomic<std::int64_t> spin_budget_ns_{50'000}; // a receiver's spin before it sleeps
  std::unique_ptr<std::deque<envelope>> stash_;      // guarded by mtx_; allocated on first use
  const std::size_t maxsize_;
  detail::futex_condvar not_empty_;
  detail::futex_condvar not_full_;
  detail::futex_condvar all_done_;
};

/// One message in a mailbox: sender, message id and content, and the means to answer it.
///
/// States: *empty* (default-constructed or moved from) or *holding* a message; a holding
/// envelope is *answered* once a reply went out (or it needs none). Destroying (or assigning
/// over) a holding request that was never answered answers it with
/// sec::request_receiver_down, so its requester never waits forever.
///
/// Move-only. Not thread-safe: one thread uses an envelope at a time (it may be moved to another
/// thread, e.g. to answer later).
class mailbox::envelope {
public:
  // -- construction ---------------------------------------------------------------------------

  /// An empty envelope.
  envelope() noexcept = default;

  /// An async message from plain code (no sender). Implicit, so `mb.put(caf::make_message(1))`
  /// works.
  envelope(caf::message content); // NOLINT(google-explicit-constructor)

  /// A message with a given sender and id (e.g. a request forwarded by hand).
  envelope(caf::strong_actor_ptr sender, caf::message_id mid, caf::message content);

  /// Adopts a CAF mailbox element (sender, id, forwarding stages and content) without copying.
  explicit envelope(caf::mailbox_element_ptr element) noexcept
      : element_(std::move(element)), answered_(element_ && element_->mid.is_answered()) {}

  envelope(envelope&& other) noexcept
      : element_(std::move(other.element_)), content_(std::move(other.content_)),
        materialized_(std::exchange(other.materialized_, false)),
        answered_(std::exchange(other.answered_, false)) {}

  /// Discards what this envelope held (answering an unanswered request with an error), then
  /// takes over `other`.
  envelope& operator=(envelope&& other) noexcept;

  envelope(const envelope&) = delete;
  envelope& operator=(const envelope&) = delete;

  ~envelope() { discard(); }

  // -- observers ------------------------------------------------------------------------------

  /// True when the envelope holds a message.
  explicit operator bool() const noexcept { return element_ != nullptr; }

  /// The sender: the actor to answer; null for plain code. Requires: holding.
  const caf::strong_actor_ptr& sender() const noexcept { return element_->sender; }

  /// The message id: async, a request (answer with reply()), or a response. Requires: holding.
  caf::message_id mid() const noexcept { return element_->mid; }

  /// True for a request: its sender waits for exactly one response. Requires: holding.
  bool is_request() const noexcept { return element_->mid.is_request(); }

  /// True once a reply went out. Requires: holding.
  bool answered() const noexcept { return answered_; }

  /// The content. The first call turns CAF's typed storage into a caf::message (an allocation
  /// for messages from CAF actors); receive() matches without it. Requires: holding.
  caf::message& content();

  /// The underlying CAF mailbox element. Requires: holding.
  caf::mailbox_element& element() noexcept { return *element_; }

  // -- replying -------------------------------------------------------------------------------

  /// Answers the message with caf::make_message(xs...): a request gets it as its response; an
  /// async message gets a new message to its sender (through the forwarding stages, if any, as
  /// a caf::response_promise does). The reply's sender is the calling thread's actor, or none.
  /// Does nothing when there is no sender or a reply already went out (one reply per message).
  /// Never blocks. Requires: holding.
  ///
  ///   auto e = mb.get();
  ///   e.reply(caf::make_error(caf::sec::invalid_argument));   // an error response
  template <class... Ts>
  void reply(Ts&&... xs) {
    reply_message(caf::make_message(std::forward<Ts>(xs)...));
  }

  /// reply() with a ready message.
  void reply_message(caf::message msg);

  /// Empties the envelope, answering an unanswered request with `reason`. Never throws.
  void discard(const caf::error& reason) noexcept;

  /// discard() with sec::request_receiver_down.
  void discard() noexcept;

private:
  friend class mailbox;

  // Gives the element back (content restored if it was turned into a message). Requires:
  // holding. May allocate.
  caf::mailbox_element_ptr release();

  caf::mailbox_element_ptr element_;
  caf::message content_; // the content once content() turned it into a message
  bool materialized_ = false;
  bool answered_ = false;
};

} // namespace tandem
