// tandem::mp::condition (tandem/mp/condition.hpp).
//
// Each waiter owns a slot while it waits: the slot's state word is its private futex, so notify
// wakes exactly the waiters it chooses, and nothing a waiter does outside the lock touches shared
// state other than sleeping on its own word. A killed waiter leaves its slot behind; notify and
// the slot allocator free slots whose process is gone.

#include <tandem/mp/condition.hpp>

#include <tandem/detail/futex.hpp>

#include <string>

namespace tandem::mp {

namespace {

[[noreturn, gnu::cold]] void throw_not_held(const char* what) {
  throw usage_error(std::string{"tandem::mp::condition::"} + what +
                    ": the calling thread does not hold the condition's lock; acquire it first "
                    "(e.g. std::scoped_lock guard{cond};)");
}

bool waiter_alive(std::uint64_t tag) noexcept {
  return detail::process_alive(tag); // the calling process by pid and start time, as any other
}

} // namespace

// waiting_ is only a hint that lets notify() skip the scan: every update orders its writes so
// that a process killed in between leaves it too high (which notify() corrects), never too low
// (which would hide a waiter).
void condition::free_slot(slot& s) noexcept {
  bool was_waiting = s.state.load(std::memory_order_relaxed) == slot_waiting;
  s.tag = 0;
  s.state.store(slot_free, std::memory_order_relaxed);
  if (was_waiting) --waiting_;
}

std::size_t condition::claim_slot() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (std::size_t i = 0; i < max_waiters; ++i) {
      auto& s = slots_[i];
      if (s.state.load(std::memory_order_relaxed) != slot_free) continue;
      ++waiting_;
      s.ticket = next_ticket_++;
      s.tag = detail::self_tag();
      s.state.store(slot_waiting, std::memory_order_relaxed);
      return i;
    }
    // Full: free the slots of waiters whose process died, then look again.
    for (auto& s : slots_)
      if (s.state.load(std::memory_order_relaxed) != slot_free && !waiter_alive(s.tag))
        free_slot(s);
  }
  throw usage_error("tandem::mp::condition::wait: " + std::to_string(max_waiters) +
                    " threads wait on this condition already, the most it can hold; wake some "
                    "or use more conditions");
}

bool condition::wait_impl(const timeout& t, const std::stop_token* st) {
  if (!is_owned()) throw_not_held("wait");
  auto& s = slots_[claim_slot()];

  // Release the lock completely; nothing may throw until it is re-acquired.
  std::size_t level = 0;
  basic_lock* l = plain();
  if (l != nullptr)
    l->unlock();
  else
    level = recursive()->release_save();

  // Slices of check_interval: a notifier killed between choosing this slot and waking it leaves
  // the slot chosen without a wake-up, which the next look at the state finds.
  while (s.state.load(std::memory_order_acquire) == slot_waiting) {
    if (st != nullptr && st->stop_requested()) break;
    if (!t.is_forever() && t.expired()) break;
    auto slice = detail::check_slice(t);
    if (st != nullptr)
      tandem::detail::futex_wait(s.state, slot_waiting, slice, *st, true);
    else
      tandem::detail::futex_wait(s.state, slot_waiting, slice, true);
  }

  detail::lock_result r;
  if (l != nullptr) {
    r = l->acquire_result(forever, nullptr);
  } else {
    auto* rl = recursive();
    r = rl->settle(rl->take(forever, nullptr), level);
  }
  // With the lock held `state` is stable: a notify chose this slot before we got the lock, or
  // will not see it any more once it is free. (Without the lock, for not_recoverable, nobody can
  // hold the lock to notify any more.)
  bool chosen = s.state.load(std::memory_order_relaxed) == slot_chosen;
  // Not recoverable: the lock is not held and never will be; the slot stays as it is (freeing it
  // would race with the other waiters that leave now).
  if (r != detail::lock_result::not_recoverable) free_slot(s);
  switch (r) {
    case detail::lock_result::acquired:
    case detail::lock_result::timed_out:
      return chosen;
    case detail::lock_result::owner_died:
      throw owner_died_error("tandem::mp::condition::wait: the process holding the condition's "
                             "lock died; the calling thread holds it now: repair the shared state, "
                             "call make_consistent(), then release it");
    case detail::lock_result::not_recoverable:
      break;
  }
  throw not_recoverable_error("tandem::mp::condition::wait: the condition's lock became not "
                              "recoverable while this thread waited; create a new condition");
}

void condition::notify(std::size_t n) {
  if (!is_owned()) throw_not_held("notify");
  while (n > 0 && waiting_ > 0) {
    slot* oldest = nullptr;
    for (auto& s : slots_) {
      if (s.state.load(std::memory_order_relaxed) != slot_waiting) continue;
      if (oldest == nullptr || s.ticket < oldest->ticket) oldest = &s;
    }
    if (oldest == nullptr) {
      waiting_ = 0; // too high: a holder of the lock died in the middle of an update
      break;
    }
    if (!waiter_alive(oldest->tag)) {
      free_slot(*oldest);
      continue;
    }
    // The waiter cannot free its slot before it re-acquires the lock, which we hold.
    oldest->state.store(slot_chosen, std::memory_order_release);
    --waiting_;
    detail::at_fault_point(detail::fault_point::condition_waiter_chosen);
    tandem::detail::futex_wake(oldest->state, 1, true);
    --n;
  }
}

} // namespace tandem::mp
