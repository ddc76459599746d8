// tandem::thread as an actor: its mailbox and its caf::actor, made on first use and kept in the
// thread's state (detail/thread_state.hpp), and the identity a started thread adopts when it
// first talks to actors (detail/thread_actor.hpp).

#include <tandem/detail/thread_actor.hpp>
#include <tandem/mailbox.hpp>
#include <tandem/runtime.hpp>
#include <tandem/thread.hpp>

#include <caf/actor.hpp>

#include <mutex>

namespace tandem {

namespace {

// Holds the mailbox in the thread's `mailbox` slot and shuts it down when the thread ends, so
// nobody waits on a mailbox that nobody reads any more.
class mailbox_attachment final : public detail::thread_attachment {
public:
  explicit mailbox_attachment(std::shared_ptr<tandem::mailbox> box) noexcept
      : box_(std::move(box)) {}

  void on_exit(detail::thread_state& s, const std::exception_ptr&) noexcept override {
    // With an actor, its termination (told right after this) shuts the mailbox down and answers
    // pending requests with request_receiver_down, as CAF does for a dead actor.
    bool has_actor = false;
    {
      std::lock_guard guard{s.mtx};
      has_actor = static_cast<bool>(s.actor);
    }
    if (!has_actor) box_->shutdown(true);
  }

  const std::shared_ptr<tandem::mailbox>& box() const noexcept { return box_; }

private:
  std::shared_ptr<tandem::mailbox> box_;
};

// The thread's mailbox; makes it on first use. Requires: s.mtx held.
const std::shared_ptr<tandem::mailbox>& ensure_mailbox(detail::thread_state& s) {
  if (!s.mailbox) {
    auto box = std::make_shared<tandem::mailbox>(s.options.mailbox_capacity);
    if (s.exited) box->shutdown(true);
    s.mailbox = std::make_shared<mailbox_attachment>(std::move(box));
  }
  // Only this file fills the slot.
  return static_cast<const mailbox_attachment&>(*s.mailbox).box();
}

// The thread's actor; makes it on first use, named `name` (read before taking s.mtx, which
// thread_state::name() takes too). Requires: s.mtx held.
caf::actor ensure_actor(detail::thread_state& s, std::string name) {
  if (auto self = detail::thread_actor_of(s.actor.get())) return self;
  auto box = ensure_mailbox(s);
  auto self = detail::make_thread_actor(runtime::current().system(), box, std::move(name), s.stop);
  s.actor = detail::make_thread_actor_attachment(self);
  if (s.exited) detail::terminate_thread_actor(self, s.exit_exception);
  return self;
}

} // namespace

tandem::mailbox& thread::mailbox() {
  auto& s = checked("mailbox()");
  std::lock_guard guard{s.mtx};
  return *ensure_mailbox(s);
}

caf::actor thread::actor() const {
  auto& s = checked("actor()");
  auto name = s.name();
  std::lock_guard guard{s.mtx};
  return ensure_actor(s, std::move(name));
}

namespace detail {

namespace {

// The state of the calling thread when tandem started it; null otherwise (without registering
// CAF workers or other foreign threads as Dummy threads).
thread_state* started_state() noexcept {
  return current_started_state();
}

} // namespace

bool adopt_thread_identity() noexcept {
  auto* s = started_state();
  if (s == nullptr) return false;
  try {
    caf::actor self;
    auto name = s->name();
    {
      std::lock_guard guard{s->mtx};
      if (s->exited) return false;
      self = ensure_actor(*s, std::move(name));
    }
    set_thread_identity(self);
    return true;
  } catch (...) {
    return false;
  }
}

mailbox* current_thread_mailbox() noexcept {
  auto* s = started_state();
  if (s == nullptr) return nullptr;
  try {
    std::lock_guard guard{s->mtx};
    return ensure_mailbox(*s).get();
  } catch (...) {
    return nullptr;
  }
}

} // namespace detail

} // namespace tandem
