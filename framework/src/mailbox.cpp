#include <tandem/mailbox.hpp>

#include <tandem/detail/caf.hpp>
#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/receive.hpp>

#include <caf/actor_control_block.hpp>
#include <caf/detail/invoke_result_visitor.hpp>
#include <caf/make_message.hpp>
#include <caf/none.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>

namespace tandem {

namespace {

// Holds the mailbox's futex_mutex for a scope; unlock() and lock() let a wait drop it to spin.
using box_lock = std::unique_lock<detail::futex_mutex>;

// Spinning before sleeping. A thread in a conversation with a CAF actor on another core gets
// the next message within a microsecond or two of its reply, but only while the actor's worker
// is still polling; once that worker has fallen asleep (with CAF's default settings its
// work-stealing workers sleep 50 us at a time after a short busy poll; tandem::runtime makes them
// sleep on a condition variable instead), the next message comes much later. A receiver that
// sleeps then is woken late too, replies late, finds the worker asleep again, and the
// conversation settles at one exchange per worker nap. So a receiver spins adaptively: the
// budget doubles whenever spinning that long (up to max_spin) would catch the message, and halves
// whenever the message comes later than that, so an idle thread soon spins only briefly.
constexpr std::int64_t min_spin_ns = 2'000;
constexpr std::int64_t max_spin_ns = 200'000;
constexpr std::int64_t fixed_spin_ns = 4'000; // senders waiting for room, joiners

enum class wait_status { ready, timed_out, stopped };

// Waits on `cv` (whose mutex `lk` holds) until `ready()`, `t` expires or `st` (if not null) is
// stopped; first spins, without the lock, while `hint()` (a lock-free guess at ready()) is false:
// for `*budget_ns` nanoseconds, adapted to how long the wait turned out to be (see above), or
// for fixed_spin_ns when `budget_ns` is null. Holds the lock on return. ready() is checked
// before every other outcome, so a notified waiter that can proceed always does.
template <class Ready, class Hint>
wait_status box_wait(detail::futex_condvar& cv, box_lock& lk, Ready ready, Hint hint,
                     const timeout& t, const std::stop_token* st,
                     std::atomic<std::int64_t>* budget_ns) {
  using clock = std::chrono::steady_clock;
  if (t.expired()) return wait_status::timed_out;
  auto budget = budget_ns != nullptr ? budget_ns->load(std::memory_order_relaxed) : fixed_spin_ns;
  auto start = clock::now();
  auto spin_end = start + std::chrono::nanoseconds{budget};
  if (!t.is_forever() && t.deadline() < spin_end) spin_end = t.deadline();
  lk.unlock();
  bool caught = false;
  while (!caught) {
    for (int i = 0; i < 32; ++i) {
      if (hint()) {
        caught = true;
        break;
      }
      detail::cpu_relax();
    }
    if (!caught && (clock::now() >= spin_end || (st != nullptr && st->stop_requested()))) break;
  }
  lk.lock();
  auto adapt = [&] {
    if (budget_ns == nullptr) return;
    auto waited = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - start);
    auto next = caught || waited.count() <= max_spin_ns ? std::min(budget * 2, max_spin_ns)
                                                        : std::max(budget / 2, min_spin_ns);
    budget_ns->store(next, std::memory_order_relaxed);
  };
  for (;;) {
    if (ready()) {
      adapt();
      return wait_status::ready;
    }
    if (st != nullptr && st->stop_requested()) return wait_status::stopped;
    bool in_time = st != nullptr ? cv.wait(*lk.mutex(), t, *st) : cv.wait(*lk.mutex(), t);
    if (!in_time && !ready()) return wait_status::timed_out;
  }
}

// The envelope whose handler runs in this thread's receive(), for tandem::reply and friends.
thread_local mailbox::envelope* current_envelope_ptr = nullptr;

[[noreturn, gnu::cold, gnu::noinline]] void throw_put_shut_down() {
  throw shut_down_error("send or put on a shut-down mailbox: shutdown() was called or its thread "
                        "ended, so it accepts no more messages; stop sending to it");
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_get_shut_down() {
  throw shut_down_error("get or receive on a shut-down mailbox with nothing left to take: "
                        "shutdown() was called and every message was taken (or dropped); stop "
                        "receiving");
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_full(std::size_t maxsize) {
  throw full_error("put_nowait on a full mailbox (maxsize " + std::to_string(maxsize) +
                   "): wait with put(e) or put(e, timeout), or retry later");
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_empty() {
  throw empty_error("get_nowait on an empty mailbox: wait with get() or get(timeout), or retry "
                    "later");
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_task_done() {
  throw value_error("task_done() called more times than messages arrived: call it once for each "
                    "message taken with get() (receive() reports its own messages)");
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_empty_envelope() {
  throw value_error("put of an empty envelope (default-constructed or moved from): put a message");
}

caf::error receiver_down() noexcept {
  try {
    return caf::make_error(caf::sec::request_receiver_down);
  } catch (...) {
    return caf::error{};
  }
}

caf::error dropped_by_shutdown() noexcept {
  try {
    return make_error(errc::shut_down, "the mailbox was shut down with shutdown(true) before "
                                       "the request was handled");
  } catch (...) {
    return receiver_down();
  }
}

// Answers requests from what a receive() handler returned, as CAF's default result visitor does
// for a behavior: a value answers, void answers a request with an empty message, caf::none
// answers with sec::unexpected_response, an error is the answer.
class reply_visitor final : public caf::detail::invoke_result_visitor {
public:
  using caf::detail::invoke_result_visitor::operator();

  explicit reply_visitor(mailbox::envelope& e) noexcept : e_(e) {}

  void operator()() override {
    // The handler produced no result (e.g. it returned a response promise): nothing to send.
  }

  void operator()(caf::error& x) override { deliver(caf::make_message(std::move(x))); }

  void operator()(caf::message& x) override {
    // An empty result answers a request; to an async message it is no reply at all (as CAF).
    if (x.empty() && !e_.is_request()) return;
    deliver(std::move(x));
  }

  void operator()(const caf::none_t&) override {
    deliver(caf::make_message(caf::make_error(caf::sec::unexpected_response)));
  }

private:
  void deliver(caf::message msg) {
    // The handler may have answered itself, or taken the envelope to answer later.
    if (e_ && !e_.answered()) e_.reply_message(std::move(msg));
  }

  mailbox::envelope& e_;
};

// Sets the envelope that tandem::reply and tandem::current_envelope see for a scope.
class current_envelope_scope {
public:
  explicit current_envelope_scope(mailbox::envelope& e) noexcept
      : previous_(std::exchange(current_envelope_ptr, &e)) {}
  current_envelope_scope(const current_envelope_scope&) = delete;
  current_envelope_scope& operator=(const current_envelope_scope&) = delete;
  ~current_envelope_scope() { current_envelope_ptr = previous_; }

private:
  mailbox::envelope* previous_;
};

} // namespace

// -- envelope -----------------------------------------------------------------------------------

mailbox::envelope::envelope(caf::message content)
    : element_(caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, std::move(content))) {
}

mailbox::envelope::envelope(caf::strong_actor_ptr sender, caf::message_id mid, caf::message content)
    : element_(caf::make_mailbox_element(std::move(sender), mid, {}, std::move(content))),
      answered_(mid.is_answered()) {}

mailbox::envelope& mailbox::envelope::operator=(envelope&& other) noexcept {
  if (this != &other) {
    discard();
    element_ = std::move(other.element_);
    content_ = std::move(other.content_);
    materialized_ = std::exchange(other.materialized_, false);
    answered_ = std::exchange(other.answered_, false);
  }
  return *this;
}

caf::message& mailbox::envelope::content() {
  if (!materialized_) {
    content_ = element_->move_content_to_message();
    materialized_ = true;
  }
  return content_;
}

void mailbox::envelope::reply_message(caf::message msg) {
  auto& x = *element_;
  // A response is never answered (CAF drops such promises), and one reply per message.
  if (answered_ || x.mid.is_response()) return;
  answered_ = true;
  auto* unit = detail::current_execution_unit();
  if (!x.stages.empty()) {
    // Forwarding chain: the next stage gets the answer as its request, as a
    // caf::response_promise delivers it.
    auto next = std::move(x.stages.back());
    x.stages.pop_back();
    next->enqueue(
        caf::make_mailbox_element(std::move(x.sender), x.mid, std::move(x.stages), std::move(msg)),
        unit);
    return;
  }
  if (x.sender)
    x.sender->enqueue(caf::make_mailbox_element(detail::current_actor_ptr_for_actors(),
                                                x.mid.response_id(), {}, std::move(msg)),
                      unit);
}

void mailbox::envelope::discard(const caf::error& reason) noexcept {
  if (!element_) return;
  auto element = std::move(element_);
  content_ = caf::message{};
  materialized_ = false;
  bool answered = std::exchange(answered_, false);
  if (answered || !element->mid.is_request() || !element->sender) return;
  try {
    element->sender->enqueue(caf::make_mailbox_element(detail::current_actor_ptr_for_actors(),
                                                       element->mid.response_id(), {},
                                                       caf::make_message(reason)),
                             detail::current_execution_unit());
  } catch (...) { // NOLINT(bugprone-empty-catch): out of memory; the requester's timeout remains
  }
}

void mailbox::envelope::discard() noexcept {
  if (element_) discard(receiver_down());
}

caf::mailbox_element_ptr mailbox::envelope::release() {
  caf::mailbox_element_ptr result;
  if (materialized_) {
    auto& x = *element_;
    result = caf::make_mailbox_element(x.sender, x.mid, x.stages, content_);
    element_.reset();
    content_ = caf::message{};
    materialized_ = false;
  } else {
    result = std::move(element_);
  }
  // The answered state travels in the id, so an envelope rebuilt from the element keeps it.
  if (std::exchange(answered_, false)) result->mid.mark_as_answered();
  return result;
}

// -- mailbox: construction ----------------------------------------------------------------------

mailbox::~mailbox() {
  while (auto* x = pop_element()) envelope{caf::mailbox_element_ptr{x}}.discard();
  // stash_ (if any) destroys its envelopes, which answer unanswered requests.
}

// -- mailbox: intrusive queue (mtx_ held) -------------------------------------------------------

void mailbox::push_element(caf::mailbox_element* x) noexcept {
  x->next = nullptr;
  if (tail_ != nullptr)
    tail_->next = x;
  else
    head_ = x;
  tail_ = x;
  size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

caf::mailbox_element* mailbox::pop_element() noexcept {
  auto* x = head_;
  if (x == nullptr) return nullptr;
  // mailbox_element's first base is intrusive::singly_linked<mailbox_element>.
  head_ = static_cast<caf::mailbox_element*>(x->next);
  if (head_ == nullptr) tail_ = nullptr;
  x->next = nullptr;
  size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  return x;
}

// -- mailbox: sending ---------------------------------------------------------------------------

void mailbox::put_element(caf::mailbox_element_ptr& x, const timeout& t, const std::stop_token* st,
                          bool nowait) {
  // Reports timeout and stop through x: still set when it was not queued.
  box_lock lk{mtx_};
  if (shut_down_.load(std::memory_order_relaxed)) throw_put_shut_down();
  if (maxsize_ != 0 && size_.load(std::memory_order_relaxed) >= maxsize_) {
    if (nowait) throw_full(maxsize_);
    auto room = [this] {
      return size_.load(std::memory_order_relaxed) < maxsize_ ||
             shut_down_.load(std::memory_order_relaxed);
    };
    auto status = box_wait(not_full_, lk, room, room, t, st, nullptr);
    // Python checks for a shutdown after every wait, before it looks at the room.
    if (shut_down_.load(std::memory_order_relaxed)) throw_put_shut_down();
    if (status != wait_status::ready) return;
  }
  push_element(x.release());
  ++unfinished_;
  // Under the lock: once a receiver can see the message, this call touches the mailbox no more.
  not_empty_.notify_one();
}

bool mailbox::put_envelope(envelope& e, const timeout& t, const std::stop_token* st, bool nowait) {
  if (!e) throw_empty_envelope();
  if (st != nullptr && st->stop_requested()) return false;
  auto x = e.release();
  try {
    put_element(x, t, st, nowait);
  } catch (...) {
    e = envelope{std::move(x)};
    throw;
  }
  if (x == nullptr) return true;
  e = envelope{std::move(x)};
  return false;
}

void mailbox::put(envelope&& e) {
  put_envelope(e, forever, nullptr, false);
}

bool mailbox::put(envelope&& e, timeout t) {
  return put_envelope(e, t, nullptr, false);
}

bool mailbox::put(std::stop_token st, envelope&& e, timeout t) {
  return put_envelope(e, t, st.stop_possible() ? &st : nullptr, false);
}

void mailbox::put_nowait(envelope&& e) {
  put_envelope(e, forever, nullptr, true);
}

bool mailbox::deliver(caf::mailbox_element_ptr& x) noexcept {
  box_lock lk{mtx_};
  if (shut_down_.load(std::memory_order_relaxed)) return false;
  push_element(x.release());
  ++unfinished_;
  not_empty_.notify_one();
  return true;
}

// -- mailbox: receiving -------------------------------------------------------------------------

bool mailbox::take(envelope& out, const timeout& t, const std::stop_token* st, bool nowait,
                   bool include_stash) {
  box_lock lk{mtx_};
  auto stashed = [&] { return include_stash && stash_ != nullptr && !stash_->empty(); };
  auto available = [&] { return head_ != nullptr || stashed(); };
  if (!available()) {
    if (shut_down_.load(std::memory_order_relaxed)) throw_get_shut_down();
    if (nowait) throw_empty();
    box_wait(
        not_empty_, lk, [&] { return available() || shut_down_.load(std::memory_order_relaxed); },
        [&] {
          return size_.load(std::memory_order_relaxed) != 0 ||
                 (include_stash && stash_size_.load(std::memory_order_relaxed) != 0) ||
                 shut_down_.load(std::memory_order_relaxed);
        },
        t, st, &spin_budget_ns_);
    if (!available()) {
      if (shut_down_.load(std::memory_order_relaxed)) throw_get_shut_down();
      return false;
    }
  }
  if (stashed()) {
    out = std::move(stash_->front());
    stash_->pop_front();
    stash_size_.store(stash_->size(), std::memory_order_release);
    return true;
  }
  auto* x = pop_element();
  if (maxsize_ != 0) not_full_.notify_one();
  lk.unlock();
  out = envelope{caf::mailbox_element_ptr{x}};
  return true;
}

mailbox::envelope mailbox::get() {
  envelope result;
  take(result, forever, nullptr, false, true);
  return result;
}

std::optional<mailbox::envelope> mailbox::get(timeout t) {
  envelope result;
  if (!take(result, t, nullptr, false, true)) return std::nullopt;
  return result;
}

std::optional<mailbox::envelope> mailbox::get(std::stop_token st, timeout t) {
  if (st.stop_requested()) return std::nullopt;
  envelope result;
  if (!take(result, t, st.stop_possible() ? &st : nullptr, false, true)) return std::nullopt;
  return result;
}

mailbox::envelope mailbox::get_nowait() {
  envelope result;
  take(result, forever, nullptr, true, true);
  return result;
}

void mailbox::stash(envelope&& e) {
  box_lock lk{mtx_};
  if (stash_ == nullptr) stash_ = std::make_unique<std::deque<envelope>>();
  stash_->push_back(std::move(e));
  stash_size_.store(stash_->size(), std::memory_order_release);
}

namespace {

// Runs `bhvr` on `e` the way a CAF actor runs its behavior on a mailbox element: on the typed
// storage as it arrived, or on the message once content() made one.
caf::match_case::result invoke(caf::behavior& bhvr, mailbox::envelope& e, caf::message* content,
                               caf::mailbox_element& element) {
  reply_visitor visitor{e};
  current_envelope_scope scope{e};
  if (content != nullptr) return bhvr(visitor, *content);
  return bhvr(visitor, element.content());
}

} // namespace

bool mailbox::receive_impl(caf::behavior& bhvr, const timeout& t_in, const std::stop_token& st_in) {
  const std::stop_token* st = st_in.stop_possible() ? &st_in : nullptr;
  if (st != nullptr && st->stop_requested()) return false;
  // A behavior built with caf::after(d) >> f: the earlier of the two deadlines applies, and f runs
  // when it is the behavior's that expires.
  timeout t = t_in;
  bool behavior_deadline = false;
  if (bhvr.timeout().valid()) {
    auto deadline = std::chrono::steady_clock::now();
    deadline += bhvr.timeout();
    if (t.is_forever() || deadline < t.deadline()) {
      t = deadline;
      behavior_deadline = true;
    }
  }
  auto try_one = [&](envelope& e) {
    auto* content = e.materialized_ ? &e.content_ : nullptr;
    return invoke(bhvr, e, content, *e.element_) == caf::match_case::match;
  };
  // Whatever happens in a handler (a return or an exception), the message it ran on is done.
  struct done_guard {
    mailbox* self;
    bool armed = false;
    ~done_guard() {
      if (armed) self->done();
    }
  };

  // 1. The stash, oldest first. It is taken out whole so handlers run without the lock, and put
  //    back in front of anything stashed meanwhile, so its order is kept.
  if (stash_size_.load(std::memory_order_acquire) != 0) {
    std::deque<envelope> snapshot;
    {
      box_lock lk{mtx_};
      if (stash_ != nullptr) snapshot.swap(*stash_);
    }
    struct put_back {
      mailbox* self;
      std::deque<envelope>& rest;
      ~put_back() {
        box_lock lk{self->mtx_};
        if (self->stash_ == nullptr || self->stash_->empty()) {
          if (self->stash_ == nullptr) self->stash_ = std::make_unique<std::deque<envelope>>();
          self->stash_->swap(rest);
        } else {
          // Only another receiver stashes concurrently; keep ours in front.
          for (auto i = rest.rbegin(); i != rest.rend(); ++i)
            self->stash_->push_front(std::move(*i));
          rest.clear();
        }
        self->stash_size_.store(self->stash_->size(), std::memory_order_release);
      }
    };
    put_back guard{this, snapshot};
    for (std::size_t i = 0; i < snapshot.size(); ++i) {
      bool matched = false;
      try {
        matched = try_one(snapshot[i]);
      } catch (...) {
        // The handler ran: the message is consumed (an unanswered request gets an error).
        snapshot.erase(snapshot.begin() + static_cast<std::ptrdiff_t>(i));
        done();
        throw;
      }
      if (matched || !snapshot[i]) {
        // Handled (or given away by its handler): out of the stash, and done.
        snapshot.erase(snapshot.begin() + static_cast<std::ptrdiff_t>(i));
        done();
        return true;
      }
    }
  }

  // 2. The queue, as messages come.
  for (;;) {
    envelope e;
    if (!take(e, t, st, false, false)) {
      if (behavior_deadline && (st == nullptr || !st->stop_requested())) bhvr.handle_timeout();
      return false;
    }
    if (e.mid().is_response()) {
      // A response nobody waits for any more (its request timed out): CAF drops these.
      done();
      continue;
    }
    done_guard done{this, true};
    if (try_one(e)) return true;
    done.armed = false;
    if (e) stash(std::move(e));
  }
}

// -- mailbox: tasks -----------------------------------------------------------------------------

void mailbox::done(std::size_t n) {
  box_lock lk{mtx_};
  unfinished_ -= std::min(n, unfinished_);
  if (unfinished_ == 0) all_done_.notify_all();
}

void mailbox::task_done() {
  box_lock lk{mtx_};
  if (unfinished_ == 0) throw_task_done();
  if (--unfinished_ == 0) all_done_.notify_all();
}

bool mailbox::join(timeout t) {
  box_lock lk{mtx_};
  if (unfinished_ == 0) return true;
  return box_wait(
             all_done_, lk, [this] { return unfinished_ == 0; }, [] { return true; }, t, nullptr,
             nullptr) == wait_status::ready;
}

bool mailbox::join(std::stop_token st, timeout t) {
  if (st.stop_requested()) return false;
  box_lock lk{mtx_};
  if (unfinished_ == 0) return true;
  return box_wait(
             all_done_, lk, [this] { return unfinished_ == 0; }, [] { return true; }, t,
             st.stop_possible() ? &st : nullptr, nullptr) == wait_status::ready;
}

std::size_t mailbox::unfinished_tasks() const noexcept {
  box_lock lk{mtx_};
  return unfinished_;
}

// -- mailbox: shutdown --------------------------------------------------------------------------

void mailbox::shutdown(bool immediate) noexcept {
  shutdown(immediate, dropped_by_shutdown());
}

void mailbox::shutdown(bool immediate, const caf::error& drop_reason) noexcept {
  // Taken out under the lock, destroyed after it: answering a request enqueues into its sender,
  // which may be this very mailbox's actor.
  caf::mailbox_element* dropped = nullptr;
  std::unique_ptr<std::deque<envelope>> dropped_stash;
  {
    box_lock lk{mtx_};
    shut_down_.store(true, std::memory_order_release);
    if (immediate) {
      auto n = size_.load(std::memory_order_relaxed);
      dropped = head_;
      head_ = tail_ = nullptr;
      size_.store(0, std::memory_order_release);
      if (stash_ != nullptr) {
        n += stash_->size();
        dropped_stash = std::move(stash_);
      }
      stash_size_.store(0, std::memory_order_release);
      unfinished_ -= std::min(n, unfinished_);
      all_done_.notify_all();
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }
  while (dropped != nullptr) {
    auto* next = static_cast<caf::mailbox_element*>(dropped->next);
    dropped->next = nullptr;
    envelope{caf::mailbox_element_ptr{dropped}}.discard(drop_reason);
    dropped = next;
  }
  if (dropped_stash != nullptr)
    for (auto& e : *dropped_stash) e.discard(drop_reason);
}

// -- receive.hpp --------------------------------------------------------------------------------

mailbox::envelope* current_envelope() noexcept {
  return current_envelope_ptr;
}

namespace detail {

mailbox::envelope& current_envelope_or_throw() {
  if (current_envelope_ptr == nullptr || !*current_envelope_ptr)
    throw usage_error("reply() outside a receive() handler (or after the handler gave its "
                      "envelope away): call it from a handler, or keep the envelope and call "
                      "envelope::reply()");
  return *current_envelope_ptr;
}

} // namespace detail

} // namespace tandem
