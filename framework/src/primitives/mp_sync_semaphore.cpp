// tandem::mp::semaphore (tandem/mp/semaphore.hpp).
//
// The count is the futex word, as in tandem::semaphore, with process-shared waits. With
// return_on_death, every change of the count goes through mtx_ together with the change of the
// holdings table, and is written as: fill the undo record, set it active, change the count and
// the holding, clear the record. A holder of mtx_ that dies leaves either no active record (its
// change is complete, or not begun) or an active one, which the next holder undoes. Waiters sleep
// in slices so that they look for dead holders every detail::check_interval, and also repair
// mtx_ when its holder died (the count it left may be 0, so nobody else would take mtx_).

#include <tandem/mp/semaphore.hpp>

#include <algorithm>

namespace tandem::mp {

bool semaphore::release_within(std::size_t n, std::uint32_t limit) noexcept {
  if (n == 0) return true;
  if (return_on_death_ != 0) return tracked_release(n, limit);
  auto c = count_.load(std::memory_order_relaxed);
  do {
    if (c > limit || n > limit - c) return false;
  } while (!count_.compare_exchange_weak(c, c + static_cast<std::uint32_t>(n),
                                         std::memory_order_seq_cst, std::memory_order_relaxed));
  wake(n);
  return true;
}

bool semaphore::acquire_slow(const timeout& t, const std::stop_token* st) noexcept {
  bool tracking = return_on_death_ != 0;
  if (!t.is_forever() && t.expired()) return tracking && reclaim_dead() && take();
  for (int i = 0; i < 100; ++i) {
    if (count_.load(std::memory_order_relaxed) != 0 && take()) return true;
    tandem::detail::cpu_relax();
  }
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  bool ok = false;
  auto last_check = timeout::clock::now();
  for (;;) {
    if (count_.load(std::memory_order_seq_cst) != 0 && take()) {
      ok = true;
      break;
    }
    if (st != nullptr && st->stop_requested()) break;
    auto limit = tracking ? detail::check_slice(t) : t;
    bool in_time = st != nullptr ? tandem::detail::futex_wait(count_, 0, limit, *st, true)
                                 : tandem::detail::futex_wait(count_, 0, limit, true);
    if (tracking) {
      // Every slice's worth of time, however the wait ended (a polling fallback never reports a
      // timeout before `t`).
      auto now = timeout::clock::now();
      if (!in_time || now - last_check >= detail::check_interval) {
        last_check = now;
        reclaim_dead();
      }
    }
    if (!t.is_forever() && t.expired()) {
      ok = take();
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_seq_cst);
  // A release may have woken this thread for a unit it leaves behind (stopped): pass it on.
  if (!ok && count_.load(std::memory_order_seq_cst) != 0 &&
      waiters_.load(std::memory_order_seq_cst) != 0)
    tandem::detail::futex_wake(count_, 1, true);
  return ok;
}

void semaphore::lock_table() noexcept {
  if (mtx_.lock(forever) == detail::lock_result::owner_died) undo_dead_change();
}

void semaphore::undo_dead_change() noexcept {
  if (undo_.active.load(std::memory_order_acquire) == 0) return;
  auto& h = holdings_[undo_.index];
  h.tag.store(undo_.tag, std::memory_order_release);
  h.units.store(undo_.units, std::memory_order_release);
  auto before = count_.load(std::memory_order_relaxed);
  count_.store(undo_.count, std::memory_order_seq_cst);
  undo_.active.store(0, std::memory_order_release);
  // The dead holder may have taken the last unit: acquirers sleep until someone wakes them.
  if (undo_.count > before) wake(undo_.count - before);
}

void semaphore::repair_dead_table_holder() noexcept {
  if (!mtx_.holder_died()) return;
  auto r = mtx_.try_lock();
  if (r == detail::lock_result::owner_died) undo_dead_change();
  if (r == detail::lock_result::owner_died || r == detail::lock_result::acquired) mtx_.unlock();
}

void semaphore::begin_change(std::size_t index) noexcept {
  undo_.count = count_.load(std::memory_order_relaxed);
  undo_.index = index;
  undo_.tag = holdings_[index].tag.load(std::memory_order_relaxed);
  undo_.units = holdings_[index].units.load(std::memory_order_relaxed);
  // The record is complete before it is active (release), and every change it undoes is a release
  // store too, so none becomes visible to another process before the record is active.
  undo_.active.store(1, std::memory_order_release);
}

semaphore::holding* semaphore::find_holding() noexcept {
  holding* free_entry = nullptr;
  for (auto& h : holdings_) {
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag != 0 && detail::is_self(tag)) return &h;
    if (tag == 0 && free_entry == nullptr) free_entry = &h;
  }
  return free_entry;
}

semaphore::holding* semaphore::my_holding(std::uint32_t& returned) noexcept {
  if (auto* h = find_holding()) return h;
  // Full: entries of dead processes are freed (their units come back) before giving up.
  returned += reclaim_locked();
  return find_holding();
}

bool semaphore::tracked_take() noexcept {
  if (count_.load(std::memory_order_relaxed) == 0) return false;
  lock_table();
  std::uint32_t returned = 0;
  auto* h = my_holding(returned);
  auto c = count_.load(std::memory_order_relaxed);
  if (c == 0) {
    mtx_.unlock();
    return false;
  }
  if (h != nullptr) {
    begin_change(static_cast<std::size_t>(h - holdings_));
    count_.store(c - 1, std::memory_order_seq_cst);
    detail::at_fault_point(detail::fault_point::semaphore_take_counted);
    h->tag.store(detail::self_tag(), std::memory_order_release);
    h->units.store(h->units.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    end_change();
  } else {
    // The table is full of live processes: this unit is not tracked (see the header).
    count_.store(c - 1, std::memory_order_seq_cst);
  }
  mtx_.unlock();
  // Units of dead processes came back beyond the one taken here: others may use them.
  if (returned > 1) wake(returned - 1);
  return true;
}

bool semaphore::tracked_release(std::size_t n, std::uint32_t limit) noexcept {
  lock_table();
  auto c = count_.load(std::memory_order_relaxed);
  if (c > limit || n > limit - c) {
    mtx_.unlock();
    return false;
  }
  holding* mine = nullptr;
  for (auto& h : holdings_) {
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag != 0 && detail::is_self(tag) && h.units.load(std::memory_order_relaxed) != 0) mine = &h;
  }
  if (mine != nullptr) {
    begin_change(static_cast<std::size_t>(mine - holdings_));
    count_.store(c + static_cast<std::uint32_t>(n), std::memory_order_seq_cst);
    auto held = mine->units.load(std::memory_order_relaxed);
    auto dropped = static_cast<std::uint32_t>(std::min<std::size_t>(held, n));
    mine->units.store(held - dropped, std::memory_order_release);
    // An entry with no units left is free for another process (undone with the rest).
    if (held == dropped) mine->tag.store(0, std::memory_order_release);
    end_change();
  } else {
    count_.store(c + static_cast<std::uint32_t>(n), std::memory_order_seq_cst);
  }
  mtx_.unlock();
  wake(n);
  return true;
}

bool semaphore::reclaim_dead() noexcept {
  // A process that died holding mtx_ may have left the count at 0 with its change half done:
  // nobody would take mtx_ to undo it.
  repair_dead_table_holder();
  // Liveness checks cost system calls: look for candidates before taking the lock.
  bool any = false;
  for (auto& h : holdings_) {
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag != 0 && !detail::process_alive(tag)) any = true;
  }
  if (!any) return false;
  lock_table();
  auto returned = reclaim_locked();
  mtx_.unlock();
  if (returned != 0) wake(returned);
  return returned != 0;
}

std::uint32_t semaphore::reclaim_locked() noexcept {
  std::uint32_t returned = 0;
  for (std::size_t i = 0; i < max_tracked_processes; ++i) {
    auto& h = holdings_[i];
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag == 0 || detail::process_alive(tag)) continue;
    begin_change(i);
    auto c = count_.load(std::memory_order_relaxed);
    auto held = h.units.load(std::memory_order_relaxed);
    std::uint32_t back = c >= return_limit_ ? 0u : std::min(held, return_limit_ - c);
    count_.store(c + back, std::memory_order_seq_cst);
    returned += back;
    h.units.store(0, std::memory_order_release);
    h.tag.store(0, std::memory_order_release);
    end_change();
  }
  return returned;
}

void semaphore::throw_overflow(std::size_t n) const {
  throw value_error("tandem::mp::semaphore::release: releasing " + std::to_string(n) +
                    " units on top of " + std::to_string(count()) + " would exceed " +
                    std::to_string(max()));
}

} // namespace tandem::mp
