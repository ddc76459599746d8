#include <tandem/detail/thread_actor.hpp>

#include <tandem/detail/caf.hpp>
#include <tandem/detail/thread_state.hpp>
#include <tandem/error.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/receive.hpp>

#include <caf/actor_cast.hpp>
#include <caf/actor_config.hpp>
#include <caf/actor_system.hpp>
#include <caf/default_attachable.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_actor.hpp>
#include <caf/monitorable_actor.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>
#include <caf/scheduler/worker.hpp>
#include <caf/sec.hpp>
#include <caf/system_messages.hpp>

#include <atomic>
#include <utility>

namespace tandem::detail {

namespace {

using stealing_worker = caf::scheduler::worker<caf::policy::work_stealing>;

// The execution unit a thread passes along with the messages it sends. When the receiving actor
// is idle, CAF schedules it through the sender's unit (exec_later). CAF's own fallback for
// senders outside the scheduler picks workers round-robin, often one that is asleep: a wake-up
// and a cross-core hop per message. This unit hands the actor to the worker that last delivered
// a message to the thread instead: in a conversation, that worker has just run the peer and is
// still polling its queue, so the hand-over needs no system call. Its external_enqueue is the
// one CAF uses for foreign threads (thread-safe, wakes the worker if it sleeps).
class routing_unit final : public caf::execution_unit {
public:
  explicit routing_unit(caf::actor_system* sys) noexcept : caf::execution_unit(sys) {}

  void exec_later(caf::resumable* job) override {
    if (auto* worker = preferred_.load(std::memory_order_acquire))
      worker->external_enqueue(job);
    else
      system().scheduler().enqueue(job);
  }

  // Called for every message that arrives; `host` ran its sender. Cheap when it did not change.
  void observe(caf::execution_unit* host) noexcept {
    if (host == nullptr || host == this || host == last_.load(std::memory_order_relaxed)) return;
    last_.store(host, std::memory_order_relaxed);
    // Only work-stealing workers (CAF's default scheduler) are used; other units (the io
    // multiplexer, the testing coordinator's) leave the choice to the scheduler. Workers live
    // as long as the actor system.
    if (auto* worker = dynamic_cast<stealing_worker*>(host))
      preferred_.store(worker, std::memory_order_release);
  }

private:
  std::atomic<caf::execution_unit*> last_{nullptr};
  std::atomic<stealing_worker*> preferred_{nullptr};
};

class thread_actor final : public caf::monitorable_actor {
public:
  thread_actor(caf::actor_config& cfg, std::shared_ptr<mailbox> mb, std::string name,
               std::stop_source stop)
      : caf::monitorable_actor(cfg), mailbox_(std::move(mb)), name_(std::move(name)),
        stop_(std::move(stop)), unit_(&home_system()) {}

  const char* name() const override { return name_.c_str(); }

  void enqueue(caf::mailbox_element_ptr ptr, caf::execution_unit* host) override {
    unit_.observe(host);
    auto& content = ptr->content();
    if (content.size() > 1 && handle_system_message(*ptr, host, true))
      return; // a sys_atom query, answered by monitorable_actor
    if (content.type_token() == caf::make_type_token<caf::exit_msg>()) {
      // A linked actor ended. Delivered like any message (threads trap exits); a failure also
      // asks the thread to stop, when it has a stop_source.
      if (content.get_as<caf::exit_msg>(0).reason && stop_.stop_possible()) stop_.request_stop();
    }
    if (!mailbox_->deliver(ptr)) refuse(ptr, host);
  }

  void terminate(caf::error reason) noexcept {
    terminated_.store(true, std::memory_order_release);
    cleanup(std::move(reason), nullptr);
    mailbox_->shutdown(true, receiver_down());
  }

  mailbox& box() noexcept { return *mailbox_; }

  const std::shared_ptr<mailbox>& box_ptr() noexcept { return mailbox_; }

  routing_unit& unit() noexcept { return unit_; }

  void on_destroy() override {
    // Never terminated, and no handle is left: report it as CAF does for an actor nobody can
    // reach any more.
    cleanup(caf::make_error(caf::exit_reason::unreachable), nullptr);
    caf::monitorable_actor::on_destroy();
  }

  void link_to_actor(abstract_actor* other) { add_link(other); }

  void unlink_from_actor(abstract_actor* other) { remove_link(other); }

private:
  static caf::error receiver_down() noexcept {
    try {
      return caf::make_error(caf::sec::request_receiver_down);
    } catch (...) {
      return caf::error{};
    }
  }

  // Answers a request that the mailbox refused (shut down, or the thread ended).
  void refuse(caf::mailbox_element_ptr& ptr, caf::execution_unit* host) noexcept {
    if (!ptr->mid.is_request() || !ptr->sender) return;
    try {
      caf::error reason =
          terminated_.load(std::memory_order_acquire)
              ? receiver_down()
              : make_error(errc::shut_down, "the thread's mailbox is shut down: it takes no "
                                            "more messages");
      ptr->sender->enqueue(caf::make_mailbox_element(caf::strong_actor_ptr{ctrl()},
                                                     ptr->mid.response_id(), {},
                                                     caf::make_message(std::move(reason))),
                           host);
    } catch (...) { // NOLINT(bugprone-empty-catch): out of memory; the requester's timeout remains
    }
  }

  std::shared_ptr<mailbox> mailbox_;
  std::string name_;
  std::stop_source stop_;
  routing_unit unit_;
  std::atomic<bool> terminated_{false};
};

thread_actor* impl_of(const caf::actor& x) noexcept {
  if (!x) return nullptr;
  return dynamic_cast<thread_actor*>(caf::actor_cast<caf::abstract_actor*>(x));
}

// The identity a thread_actor_scope gave the calling thread.
thread_local caf::strong_actor_ptr current_actor;
thread_local thread_actor* current_impl = nullptr;

// Makes sure a started tandem thread has its identity (see adopt_thread_identity).
void ensure_identity() noexcept {
  if (current_impl == nullptr)
    adopt_thread_identity();
}

thread_actor& current_impl_or_throw(const char* what) {
  ensure_identity();
  if (current_impl == nullptr)
    throw usage_error(std::string{what} +
                      " outside a tandem thread: call it from a thread's target (or inside a "
                      "detail::thread_actor_scope)");
  return *current_impl;
}

} // namespace

// -- construction -------------------------------------------------------------------------------

caf::actor make_thread_actor(caf::actor_system& sys, std::shared_ptr<mailbox> mb, std::string name,
                             std::stop_source stop) {
  caf::actor_config cfg;
  auto ptr = caf::make_actor<thread_actor, caf::strong_actor_ptr>(
      sys.next_actor_id(), sys.node(), &sys, cfg, std::move(mb), std::move(name), std::move(stop));
  return caf::actor_cast<caf::actor>(std::move(ptr));
}

bool is_thread_actor(const caf::actor& x) noexcept {
  return impl_of(x) != nullptr;
}

std::shared_ptr<mailbox> thread_actor_mailbox(const caf::actor& x) noexcept {
  auto* impl = impl_of(x);
  return impl != nullptr ? impl->box_ptr() : nullptr;
}

// -- termination --------------------------------------------------------------------------------

void terminate_thread_actor(const caf::actor& self, const std::exception_ptr& eptr) noexcept {
  terminate_thread_actor(self, make_exit_error(eptr));
}

void terminate_thread_actor(const caf::actor& self, caf::error reason) noexcept {
  if (auto* impl = impl_of(self)) impl->terminate(std::move(reason));
}

namespace {

class thread_actor_attachment final : public thread_attachment {
public:
  explicit thread_actor_attachment(caf::actor self) noexcept : self_(std::move(self)) {}

  void on_exit(thread_state&, const std::exception_ptr& exc) noexcept override {
    // on_exit runs in the finishing thread: drop the identity it adopted, so the thread-local
    // reference does not outlive the thread's use of the actor.
    if (current_impl != nullptr && current_impl == impl_of(self_))
      set_thread_identity(caf::actor{});
    terminate_thread_actor(self_, exc);
  }

  const caf::actor& self() const noexcept { return self_; }

private:
  caf::actor self_;
};

} // namespace

std::shared_ptr<thread_attachment> make_thread_actor_attachment(caf::actor self) {
  return std::make_shared<thread_actor_attachment>(std::move(self));
}

caf::actor thread_actor_of(const thread_attachment* a) noexcept {
  if (auto* x = dynamic_cast<const thread_actor_attachment*>(a))
    return x->self();
  return caf::actor{};
}

void set_thread_identity(const caf::actor& self) noexcept {
  auto* impl = impl_of(self);
  current_actor = impl != nullptr ? caf::actor_cast<caf::strong_actor_ptr>(self) : nullptr;
  current_impl = impl;
}

// -- the calling thread's identity ---------------------------------------------------------------

thread_actor_scope::thread_actor_scope(const caf::actor& self)
    : previous_actor_(std::move(current_actor)), previous_impl_(current_impl) {
  auto* impl = impl_of(self);
  if (impl == nullptr) {
    current_actor = std::move(previous_actor_);
    throw usage_error("thread_actor_scope needs an actor made by detail::make_thread_actor");
  }
  current_actor = caf::actor_cast<caf::strong_actor_ptr>(self);
  current_impl = impl;
}

thread_actor_scope::~thread_actor_scope() {
  current_actor = std::move(previous_actor_);
  current_impl = static_cast<thread_actor*>(previous_impl_);
}

const caf::strong_actor_ptr& current_actor_ptr() noexcept {
  return current_actor;
}

const caf::strong_actor_ptr& current_actor_ptr_for_actors() noexcept {
  ensure_identity();
  return current_actor;
}

mailbox* current_mailbox() noexcept {
  if (current_impl != nullptr)
    return &current_impl->box();
  return current_thread_mailbox();
}

caf::execution_unit* current_execution_unit() noexcept {
  return current_impl != nullptr ? &current_impl->unit() : nullptr;
}

mailbox& current_mailbox_or_throw() {
  if (auto* box = current_mailbox())
    return *box;
  return current_impl_or_throw("receive()").box();
}

} // namespace tandem::detail

namespace tandem {

// -- monitoring and linking (receive.hpp) --------------------------------------------------------

void monitor(const caf::actor& whom) {
  auto& self = detail::current_impl_or_throw("monitor()");
  if (!whom) return;
  auto* other = caf::actor_cast<caf::abstract_actor*>(whom);
  other->attach(caf::default_attachable::make_monitor(other->address(), self.address()));
}

void demonitor(const caf::actor& whom) {
  auto& self = detail::current_impl_or_throw("demonitor()");
  if (!whom) return;
  caf::default_attachable::observe_token token{self.address(), caf::default_attachable::monitor};
  caf::actor_cast<caf::abstract_actor*>(whom)->detach(token);
}

void link_to(const caf::actor& other) {
  auto& self = detail::current_impl_or_throw("link_to()");
  auto* ptr = caf::actor_cast<caf::abstract_actor*>(other);
  if (ptr != nullptr && ptr != &self) self.link_to_actor(ptr);
}

void unlink_from(const caf::actor& other) {
  auto& self = detail::current_impl_or_throw("unlink_from()");
  auto* ptr = caf::actor_cast<caf::abstract_actor*>(other);
  if (ptr != nullptr && ptr != &self) self.unlink_from_actor(ptr);
}

} // namespace tandem
