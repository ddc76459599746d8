// tandem::mp::barrier (tandem/mp/barrier.hpp).
//
// Python's Barrier state machine under a robust_word, with a sequence word as the condition
// variable: every state change bumps seq_ under the lock, and a waiter reads seq_ under the lock
// before it sleeps on it, so no change between its check and its sleep is missed. Waiters sleep at
// most one check interval at a time and then look for dead parties in inside_; a holder of the
// internal lock that died is found by robust_word, and the next holder repairs the state.

#include <tandem/mp/barrier.hpp>

#include <tandem/detail/futex.hpp>

namespace tandem::mp {

namespace {

[[noreturn, gnu::cold]] void throw_broken(const char* why) {
  throw broken_barrier_error(std::string{"tandem::mp::barrier::wait: "} + why);
}

} // namespace

barrier::barrier(std::size_t parties, action_type action, std::int64_t default_timeout_ns)
    : parties_(static_cast<std::uint32_t>(parties)), default_timeout_ns_(default_timeout_ns) {
  if (action) {
    ::new (static_cast<void*>(action_)) action_type(std::move(action));
    action_image_ = detail::image_cookie();
  }
}

barrier::~barrier() {
  if (action_image_ != 0 && action_image_ == detail::image_cookie()) std::destroy_at(action());
}

void barrier::notify_all() noexcept {
  seq_.fetch_add(1, std::memory_order_release);
  tandem::detail::futex_wake_all(seq_, true);
}

bool barrier::prune_dead() noexcept {
  bool found = false;
  for (auto& tag : inside_) {
    if (tag == 0 || detail::process_alive(tag)) continue;
    tag = 0;
    count_.fetch_sub(1, std::memory_order_relaxed);
    found = true;
  }
  // Processes that died inside wait() before they arrived (waiting for the internal lock or for
  // the previous cycle to drain) would have been parties too.
  for (auto& entry : entering_) {
    auto tag = entry.load(std::memory_order_acquire);
    if (tag == 0 || detail::process_alive(tag)) continue;
    if (entry.compare_exchange_strong(tag, 0, std::memory_order_acq_rel)) found = true;
  }
  if (!found) return false;
  auto s = state();
  if (s == state_filling) {
    set_state(state_broken); // a party will never come back: nobody may wait for it
  } else if (s == state_draining) {
    // It arrived, so its cycle completed; but the next cycle would wait for it forever.
    lost_party_ = 1;
    if (count_.load(std::memory_order_relaxed) == 0) finish_drain();
  } else if (s == state_resetting && count_.load(std::memory_order_relaxed) == 0) {
    set_state(state_filling);
  }
  notify_all();
  return true;
}

void barrier::finish_drain() noexcept {
  set_state(lost_party_ != 0 ? state_broken : state_filling);
  lost_party_ = 0;
}

void barrier::repair() noexcept {
  // The dead holder may have been anywhere in an update: recount the parties from inside_, then
  // treat it as a party that died.
  std::size_t live = 0;
  for (auto tag : inside_)
    if (tag != 0) ++live;
  count_.store(live, std::memory_order_relaxed);
  prune_dead();
  if (state() == state_filling && count_.load(std::memory_order_relaxed) > 0)
    set_state(state_broken);
  notify_all();
}

void barrier::lock_internal() noexcept {
  if (mtx_.lock(forever) == detail::lock_result::owner_died) repair();
}

void barrier::wait_change(const timeout& t, const std::stop_token* st,
                          timeout::time_point& last_check) noexcept {
  auto seq = seq_.load(std::memory_order_relaxed);
  mtx_.unlock();
  auto slice = detail::check_slice(t);
  bool woken = st != nullptr ? tandem::detail::futex_wait(seq_, seq, slice, *st, true)
                             : tandem::detail::futex_wait(seq_, seq, slice, true);
  lock_internal();
  // A slice's worth of time since the last look, however the wait ended (a polling fallback
  // never reports a timeout before `t`).
  auto now = timeout::clock::now();
  if (!woken || now - last_check >= detail::check_interval) {
    last_check = now;
    prune_dead();
  }
}

void barrier::reset() noexcept {
  lock_internal();
  lost_party_ = 0;
  if (count_.load(std::memory_order_relaxed) > 0) {
    auto s = state();
    if (s == state_filling || s == state_broken) set_state(state_resetting);
    // draining: the leaving threads finish the cycle, then the barrier fills again.
  } else {
    set_state(state_filling);
  }
  notify_all();
  mtx_.unlock();
}

void barrier::abort() noexcept {
  lock_internal();
  set_state(state_broken);
  notify_all();
  mtx_.unlock();
}

std::optional<std::size_t> barrier::wait_impl(const timeout& t, const std::stop_token* st) {
  // Announce this process in entering_ until wait() returns (past max_parties callers at once,
  // the others are not announced: only their arrival is recorded).
  struct announce {
    std::atomic<std::uint64_t>* entry = nullptr;
    explicit announce(barrier& b) {
      auto me = detail::self_tag();
      for (auto& e : b.entering_) {
        std::uint64_t expected = 0;
        if (e.compare_exchange_strong(expected, me, std::memory_order_acq_rel)) {
          entry = &e;
          break;
        }
      }
    }
    ~announce() {
      if (entry != nullptr) entry->store(0, std::memory_order_release);
    }
    announce(const announce&) = delete;
    announce& operator=(const announce&) = delete;
  } announced{*this};
  auto last_check = timeout::clock::now();
  lock_internal();
  struct unlock_at_exit {
    detail::robust_word& w;
    ~unlock_at_exit() { w.unlock(); }
  } unlocker{mtx_};

  // Python's _enter: wait while the previous cycle drains or a reset completes.
  while (state() == state_draining || state() == state_resetting) {
    if (st != nullptr && st->stop_requested()) return std::nullopt;
    wait_change(forever, st, last_check);
  }
  if (state() == state_broken)
    throw_broken("the barrier is broken; reset() it before using it again");
  if (st != nullptr && st->stop_requested()) return std::nullopt;

  auto index = count_.load(std::memory_order_relaxed);
  count_.store(index + 1, std::memory_order_relaxed);
  std::size_t slot = 0;
  while (slot < max_parties && inside_[slot] != 0) ++slot;
  if (slot < max_parties) inside_[slot] = detail::self_tag();

  // Python's _exit, on every way out (destroyed before the unlocker).
  struct leave {
    barrier& b;
    std::size_t slot;
    ~leave() {
      if (slot < max_parties) b.inside_[slot] = 0;
      auto left = b.count_.load(std::memory_order_relaxed) - 1;
      b.count_.store(left, std::memory_order_relaxed);
      if (left == 0 && b.state() == state_draining) {
        b.finish_drain();
        b.notify_all();
      } else if (left == 0 && b.state() == state_resetting) {
        b.set_state(state_filling);
        b.notify_all();
      }
    }
  } on_exit{*this, slot};

  if (index + 1 == parties_) {
    // Python's _release: the last arriver runs the action, then lets everyone go.
    if (action_image_ != 0) {
      if (action_image_ != detail::image_cookie()) {
        set_state(state_broken);
        notify_all();
        throw usage_error("tandem::mp::barrier::wait: the barrier's action belongs to the program "
                          "image that created the barrier and cannot run in this process; the "
                          "barrier is now broken (give barriers shared with spawn children no "
                          "action)");
      }
      try {
        (*action())();
      } catch (...) {
        set_state(state_broken);
        notify_all();
        throw;
      }
    }
    set_state(state_draining);
    notify_all();
    return index;
  }

  // Python's _wait.
  while (state() == state_filling) {
    if (st != nullptr && st->stop_requested()) {
      set_state(state_broken);
      notify_all();
      return std::nullopt;
    }
    if (!t.is_forever() && t.expired()) {
      set_state(state_broken);
      notify_all();
      throw_broken("timed out waiting for the other parties; the barrier is now broken");
    }
    wait_change(t, st, last_check);
  }
  if (state() == state_broken)
    throw_broken("the barrier was broken (aborted, timed out, a party died, or the action failed) "
                 "while this thread waited");
  if (state() == state_resetting) throw_broken("the barrier was reset while this thread waited");
  return index;
}

} // namespace tandem::mp
