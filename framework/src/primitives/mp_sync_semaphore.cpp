// tandem::mp::semaphore (tandem/mp/semaphore.hpp).
//
// The count is the futex word, as in tandem::semaphore, with process-shared waits. With
// return_on_death, every change of the count goes through mtx_ together with the change of the
// holdings table, and is written as: fill the undo record, set it active, change the count and
// the holding, clear the record. A holder of mtx_ that dies leaves either no active record (its
// change is complete, or not begun) or an active one, which the next holder undoes. Waiters sleep
// in slices so that they look for dead holders every detail::check_interval.

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
  for (;;) {
    if (count_.load(std::memory_order_seq_cst) != 0 && take()) {
      ok = true;
      break;
    }
    if (st != nullptr && st->stop_requested()) break;
    auto limit = tracking ? detail::check_slice(t) : t;
    bool in_time = st != nullptr ? tandem::detail::futex_wait(count_, 0, limit, *st, true)
                                 : tandem::detail::futex_wait(count_, 0, limit, true);
    if (!in_time) {
      if (tracking) reclaim_dead();
      if (!t.is_forever() && t.expired()) {
        ok = take();
        break;
      }
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
  if (mtx_.lock(forever) != detail::lock_result::owner_died) return;
  if (undo_.active.load(std::memory_order_acquire) != 0) {
    auto& h = holdings_[undo_.index];
    h.tag.store(undo_.tag, std::memory_order_release);
    h.units.store(undo_.units, std::memory_order_release);
    count_.store(undo_.count, std::memory_order_seq_cst);
    undo_.active.store(0, std::memory_order_release);
  }
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

semaphore::holding* semaphore::my_holding() noexcept {
  auto me = detail::self_tag();
  holding* free_entry = nullptr;
  for (auto& h : holdings_) {
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag == me) return &h;
    if (tag == 0 && free_entry == nullptr) free_entry = &h;
  }
  return free_entry;
}

bool semaphore::tracked_take() noexcept {
  if (count_.load(std::memory_order_relaxed) == 0) return false;
  lock_table();
  auto c = count_.load(std::memory_order_relaxed);
  if (c == 0) {
    mtx_.unlock();
    return false;
  }
  if (auto* h = my_holding()) {
    begin_change(static_cast<std::size_t>(h - holdings_));
    count_.store(c - 1, std::memory_order_seq_cst);
    h->tag.store(detail::self_tag(), std::memory_order_release);
    h->units.store(h->units.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    end_change();
  } else {
    // The table is full of live processes: this unit is not tracked (see the header).
    count_.store(c - 1, std::memory_order_seq_cst);
  }
  mtx_.unlock();
  return true;
}

bool semaphore::tracked_release(std::size_t n, std::uint32_t limit) noexcept {
  lock_table();
  auto c = count_.load(std::memory_order_relaxed);
  if (c > limit || n > limit - c) {
    mtx_.unlock();
    return false;
  }
  auto me = detail::self_tag();
  holding* mine = nullptr;
  for (auto& h : holdings_)
    if (h.tag.load(std::memory_order_relaxed) == me && h.units.load(std::memory_order_relaxed) != 0)
      mine = &h;
  if (mine != nullptr) {
    begin_change(static_cast<std::size_t>(mine - holdings_));
    count_.store(c + static_cast<std::uint32_t>(n), std::memory_order_seq_cst);
    auto held = mine->units.load(std::memory_order_relaxed);
    auto dropped = static_cast<std::uint32_t>(std::min<std::size_t>(held, n));
    mine->units.store(held - dropped, std::memory_order_release);
    end_change();
  } else {
    count_.store(c + static_cast<std::uint32_t>(n), std::memory_order_seq_cst);
  }
  mtx_.unlock();
  wake(n);
  return true;
}

bool semaphore::reclaim_dead() noexcept {
  // Liveness checks cost system calls: look for candidates before taking the lock.
  auto me = detail::self_tag();
  bool any = false;
  for (auto& h : holdings_) {
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag != 0 && tag != me && !detail::process_alive(tag)) any = true;
  }
  if (!any) return false;
  std::uint32_t returned = 0;
  lock_table();
  for (std::size_t i = 0; i < max_tracked_processes; ++i) {
    auto& h = holdings_[i];
    auto tag = h.tag.load(std::memory_order_relaxed);
    if (tag == 0 || tag == me || detail::process_alive(tag)) continue;
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
  mtx_.unlock();
  if (returned != 0) wake(returned);
  return returned != 0;
}

void semaphore::throw_overflow(std::size_t n) const {
  throw value_error("tandem::mp::semaphore::release: releasing " + std::to_string(n) +
                    " units on top of " + std::to_string(count()) + " would exceed " +
                    std::to_string(max()));
}

} // namespace tandem::mp
