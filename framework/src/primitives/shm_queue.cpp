// detail::shm_queue: a two-lock byte ring in shared memory. The header explains the design; the
// comments here explain the orderings that make it correct.
#include <tandem/detail/futex.hpp>
#include <tandem/detail/queue_sync.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_queue.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>

#include <pthread.h>

namespace tandem::mp::detail {

namespace {

constexpr unsigned pos_bits = 36;
constexpr std::uint64_t pos_mask = (std::uint64_t{1} << pos_bits) - 1;
constexpr std::uint64_t count_mask = (std::uint64_t{1} << (64 - pos_bits)) - 1;
constexpr std::size_t item_header = 8;

// A word packs a byte position (mod 2^36) and an item count (mod 2^28). The ring holds at most
// 2^30 / 8 = 2^27 items, so differences of positions and counts are exact.
constexpr std::uint64_t word_pos(std::uint64_t w) noexcept {
  return w & pos_mask;
}
constexpr std::uint64_t word_count(std::uint64_t w) noexcept {
  return w >> pos_bits;
}
constexpr std::uint64_t make_word(std::uint64_t pos, std::uint64_t count) noexcept {
  return (pos & pos_mask) | ((count & count_mask) << pos_bits);
}

constexpr std::size_t footprint(std::size_t n) noexcept {
  return item_header + ((n + 7) & ~std::size_t{7});
}

// How long a waiter polls its condition before it sleeps.
constexpr std::chrono::nanoseconds poll_window{20'000};

// The least time spent waiting for a producer or consumer mutex (see the header).
constexpr std::chrono::milliseconds mutex_grace{100};

} // namespace

// Every field a process writes is on a cache line of its own group, so producers and consumers
// do not invalidate each other's lines except by publishing.
struct shm_queue_state {
  // Immutable after creation.
  std::uint64_t capacity;
  std::uint64_t maxsize;

  alignas(128) pthread_mutex_t put_mtx;
  std::uint64_t cached_head; // guarded by put_mtx: a past value of head (never ahead of it)

  alignas(128) std::atomic<std::uint64_t> tail{0}; // stored under put_mtx, read by anyone

  alignas(128) pthread_mutex_t get_mtx;
  std::uint64_t cached_tail; // guarded by get_mtx: a past value of tail (never ahead of it)

  alignas(128) std::atomic<std::uint64_t> head{0}; // stored under get_mtx, read by anyone

  alignas(128) std::atomic<std::uint32_t> shut_down{0};
  std::atomic<std::uint32_t> done{0}; // tasks done (mod 2^32; compared mod 2^28)

  // Each condition: a futex word bumped when it may have changed, and whether a waiter may sleep
  // on it (see notify()).
  alignas(128) std::atomic<std::uint32_t> not_empty_seq{0};
  std::atomic<std::uint32_t> not_empty_armed{0};
  std::atomic<std::uint32_t> not_empty_watchers{0}; // mp::wait waiters (counted)

  alignas(128) std::atomic<std::uint32_t> not_full_seq{0};
  std::atomic<std::uint32_t> not_full_armed{0};

  alignas(128) std::atomic<std::uint32_t> all_done_seq{0};
  std::atomic<std::uint32_t> all_done_armed{0};
};

namespace {

constexpr std::size_t ring_offset = (sizeof(shm_queue_state) + 127) & ~std::size_t{127};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == 4);
static_assert(alignof(shm_queue_state) <= shm_segment::header_size,
              "the segment payload must be aligned for the queue state");

void init_mutex(pthread_mutex_t* m) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0)
    throw error(std::error_code(rc, std::system_category()),
                "cannot initialize a process-shared robust mutex");
}

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer (GCC 12) does not intercept pthread_mutex_clocklock, and would then see every
// unlock as an unlock of an unlocked mutex. Its builds poll with trylock instead, which it knows;
// the mutexes are held for one copy at a time, so polls are short.
int timed_lock(pthread_mutex_t* m, timeout::time_point deadline) noexcept {
  for (int i = 0;; ++i) {
    int rc = pthread_mutex_trylock(m);
    if (rc != EBUSY) return rc;
    if (timeout::clock::now() >= deadline) return ETIMEDOUT;
    if (i < 64)
      tandem::detail::cpu_relax();
    else
      std::this_thread::sleep_for(std::chrono::microseconds{20});
  }
}
#else
// A monotonic deadline, as every wait in tandem (pthread_mutex_timedlock would follow the wall
// clock).
int timed_lock(pthread_mutex_t* m, timeout::time_point deadline) noexcept {
  timespec ts = tandem::detail::monotonic_deadline(timeout{deadline});
  return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
}
#endif

// Holds a robust, process-shared mutex. A dead holder left the queue consistent (every change
// is one store), so EOWNERDEAD only needs pthread_mutex_consistent.
class robust_lock {
public:
  robust_lock(pthread_mutex_t* m, const timeout& t) : m_(m) {
    int rc = 0;
    if (t.is_forever()) {
      rc = pthread_mutex_lock(m);
    } else {
      auto deadline = std::max(t.deadline(), timeout::clock::now() + mutex_grace);
      rc = timed_lock(m, deadline);
    }
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(m);
      rc = 0;
    }
    if (rc == 0) {
      owned_ = true;
    } else if (rc != ETIMEDOUT) {
      throw not_recoverable_error("a cross-process queue's mutex is unusable (error " +
                                  std::to_string(rc) + "); create a new queue");
    }
  }
  robust_lock(const robust_lock&) = delete;
  robust_lock& operator=(const robust_lock&) = delete;
  ~robust_lock() { unlock(); }

  bool owns() const noexcept { return owned_; }

  void unlock() noexcept {
    if (owned_) pthread_mutex_unlock(m_);
    owned_ = false;
  }

private:
  pthread_mutex_t* m_;
  bool owned_ = false;
};

// Wakes every sleeper of a condition if one may sleep. A sleeper arms the condition (a seq_cst
// store of 1 to `armed`) and then re-checks it with seq_cst loads; the caller published its
// change with a seq_cst store and then reads `armed`. In the single total order of those
// operations either the sleeper's re-check comes after the change (it does not sleep) or its
// arming comes before this load (it is woken). The first notifier to see the condition armed
// disarms it (exchange) and wakes everyone, so a producer pays one wake system call per sleep of
// the consumer, not one per item until the woken consumer gets a CPU; whoever takes a sleeper's 1
// bumps `seq` after the sleeper read it, so no wake-up is lost. `watchers` (external waiters of
// mp::wait, which do not re-arm) make every notify wake.
void notify(std::atomic<std::uint32_t>& seq, std::atomic<std::uint32_t>& armed,
            const std::atomic<std::uint32_t>* watchers = nullptr) noexcept {
  bool watched = watchers != nullptr && watchers->load(std::memory_order_seq_cst) != 0;
  if (!watched) {
    if (armed.load(std::memory_order_seq_cst) == 0) return;
    if (armed.exchange(0, std::memory_order_seq_cst) == 0) return;
  } else {
    armed.store(0, std::memory_order_relaxed);
  }
  seq.fetch_add(1, std::memory_order_seq_cst);
  tandem::detail::futex_wake_all(seq, true);
}

// Wakes every sleeper unconditionally (shutdown: a counted sleeper may be dead, and shutdown is
// rare).
void notify_all(std::atomic<std::uint32_t>& seq) noexcept {
  seq.fetch_add(1, std::memory_order_seq_cst);
  tandem::detail::futex_wake_all(seq, true);
}

// Waits until ready() holds (true), `t` expires or `st` is stopped (false). Polls for
// poll_window first, then sleeps on `seq`.
template <class Ready>
bool wait_for(std::atomic<std::uint32_t>& seq, std::atomic<std::uint32_t>& armed, Ready ready,
              const timeout& t, const std::stop_token* st) {
  if (ready()) return true;
  if (st != nullptr && st->stop_requested()) return false;
  if (t.expired()) return false;
  auto poll_end = timeout::clock::now() + poll_window;
  for (int i = 0;; ++i) {
    for (int k = 0; k < 16; ++k) tandem::detail::cpu_relax();
    if (ready()) return true;
    if ((i & 15) == 15 && timeout::clock::now() >= poll_end) break;
  }
  for (;;) {
    auto s = seq.load(std::memory_order_seq_cst);
    armed.store(1, std::memory_order_seq_cst);
    if (ready()) return true;
    bool in_time = st != nullptr ? tandem::detail::futex_wait(seq, s, t, *st, true)
                                 : tandem::detail::futex_wait(seq, s, t, true);
    if (ready()) return true;
    if (st != nullptr && st->stop_requested()) return false;
    if (!in_time || t.expired()) return false;
  }
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_too_large(std::size_t size,
                                                            std::size_t capacity) {
  throw value_error("item of " + std::to_string(size) +
                    " bytes does not fit the queue's shared buffer of " + std::to_string(capacity) +
                    " bytes (the largest item is " + std::to_string(capacity - item_header) +
                    " bytes): create the queue with queue_options::buffer_bytes of at least " +
                    std::to_string(footprint(size)));
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_buffer_full(std::size_t maxsize) {
  if (maxsize != 0) tandem::detail::queue_throw_full(maxsize);
  throw full_error("put_nowait on a queue whose shared buffer is full: wait with put(item) or "
                   "put(item, timeout), retry later, or raise queue_options::buffer_bytes");
}

[[noreturn, gnu::cold, gnu::noinline]] void throw_corrupt() {
  throw bad_message_error("a cross-process queue holds a corrupt item header (its shared memory "
                          "was overwritten); the item was skipped");
}

std::size_t round_capacity(std::size_t requested) {
  if (requested > shm_queue::max_buffer_bytes)
    throw value_error("queue_options::buffer_bytes of " + std::to_string(requested) +
                      " is above the limit of 1 GiB: ask for less");
  std::size_t c = shm_queue::min_buffer_bytes;
  while (c < requested) c <<= 1;
  return c;
}

} // namespace

shm_queue::shm_queue(const queue_options& options)
    : shm_queue(shm_segment::create(
          segment_kind, ring_offset + round_capacity(options.buffer_bytes), "tandem-queue")) {
  // The segment is new and private to this process until the constructor returns.
  auto* s = state_;
  s->capacity = round_capacity(options.buffer_bytes);
  s->maxsize = options.maxsize;
  s->cached_head = 0;
  s->cached_tail = 0;
  init_mutex(&s->put_mtx);
  init_mutex(&s->get_mtx);
}

shm_queue::shm_queue(shm_segment segment) noexcept
    : segment_(std::move(segment)), state_(::new (segment_.payload()) shm_queue_state{}),
      ring_(static_cast<std::byte*>(segment_.payload()) + ring_offset) {}

shm_queue shm_queue::attach(int fd) {
  auto seg = shm_segment::attach(fd, segment_kind);
  if (seg.payload_size() < ring_offset + min_buffer_bytes)
    throw segment_error(EINVAL, "cannot attach: the queue segment is too small");
  auto* s = static_cast<shm_queue_state*>(seg.payload());
  if (s->capacity + ring_offset != seg.payload_size() || (s->capacity & (s->capacity - 1)) != 0)
    throw segment_error(EINVAL, "cannot attach: the queue segment's buffer size does not match "
                                "its header; pass the descriptor of a tandem queue");
  shm_queue q;
  q.segment_ = std::move(seg);
  q.state_ = s;
  q.ring_ = static_cast<std::byte*>(q.segment_.payload()) + ring_offset;
  return q;
}

bool shm_queue::put(std::span<const std::byte> item, const timeout& t, const std::stop_token* st,
                    bool nowait) {
  auto& s = *state_;
  const std::uint64_t cap = s.capacity;
  const std::size_t need = footprint(item.size());
  if (need > cap) throw_too_large(item.size(), cap);
  // Room for the item given tail word `tw` and head word `hw`.
  auto room = [&](std::uint64_t tw, std::uint64_t hw) {
    auto used = (word_pos(tw) - word_pos(hw)) & pos_mask;
    auto items = (word_count(tw) - word_count(hw)) & count_mask;
    return cap - used >= need && (s.maxsize == 0 || items < s.maxsize);
  };
  for (;;) {
    if (s.shut_down.load(std::memory_order_acquire) != 0)
      tandem::detail::queue_throw_put_shut_down();
    {
      robust_lock lk{&s.put_mtx, t};
      if (!lk.owns()) return false;
      // Checked again under the mutex: shutdown(true) takes this mutex after setting the flag,
      // so no put that missed the flag can publish after the drop.
      if (s.shut_down.load(std::memory_order_acquire) != 0)
        tandem::detail::queue_throw_put_shut_down();
      auto tw = s.tail.load(std::memory_order_relaxed);
      if (!room(tw, s.cached_head)) s.cached_head = s.head.load(std::memory_order_acquire);
      if (room(tw, s.cached_head)) {
        auto pos = word_pos(tw);
        auto at = static_cast<std::size_t>(pos & (cap - 1));
        std::uint32_t len = static_cast<std::uint32_t>(item.size());
        std::uint32_t hdr[2] = {len, ~len};
        std::memcpy(ring_ + at, hdr, item_header); // never wraps: positions are multiples of 8
        auto data_at = (at + item_header) & (cap - 1);
        auto first = std::min<std::size_t>(item.size(), cap - data_at);
        if (first != 0) std::memcpy(ring_ + data_at, item.data(), first); // data() may be null
        if (first < item.size()) std::memcpy(ring_, item.data() + first, item.size() - first);
        // The commit: one store publishes the item's bytes with it (seq_cst: see notify).
        s.tail.store(make_word(pos + need, word_count(tw) + 1), std::memory_order_seq_cst);
        lk.unlock();
        notify(s.not_empty_seq, s.not_empty_armed, &s.not_empty_watchers);
        return true;
      }
    }
    if (nowait) throw_buffer_full(s.maxsize);
    bool ready = wait_for(
        s.not_full_seq, s.not_full_armed,
        [&] {
          if (s.shut_down.load(std::memory_order_seq_cst) != 0) return true;
          auto tw = s.tail.load(std::memory_order_seq_cst);
          return room(tw, s.head.load(std::memory_order_seq_cst));
        },
        t, st);
    // Python checks for a shutdown after every wait, before it looks at the room.
    if (s.shut_down.load(std::memory_order_acquire) != 0)
      tandem::detail::queue_throw_put_shut_down();
    if (!ready) return false;
  }
}

bool shm_queue::get(sink_fn sink, void* ctx, const timeout& t, const std::stop_token* st,
                    bool nowait) {
  auto& s = *state_;
  const std::uint64_t cap = s.capacity;
  bool puts_drained = false;
  bool last_look = false;
  for (;;) {
    {
      robust_lock lk{&s.get_mtx, t};
      if (!lk.owns()) return false;
      auto hw = s.head.load(std::memory_order_relaxed);
      if (s.cached_tail == hw) s.cached_tail = s.tail.load(std::memory_order_acquire);
      if (s.cached_tail != hw) {
        auto pos = word_pos(hw);
        auto at = static_cast<std::size_t>(pos & (cap - 1));
        std::uint32_t hdr[2];
        std::memcpy(hdr, ring_ + at, item_header);
        auto available = (word_pos(s.cached_tail) - pos) & pos_mask;
        if (hdr[1] != ~hdr[0] || footprint(hdr[0]) > available) {
          // Cannot happen unless something else wrote the segment: skip everything published.
          s.head.store(s.cached_tail, std::memory_order_seq_cst);
          lk.unlock();
          notify(s.not_full_seq, s.not_full_armed);
          throw_corrupt();
        }
        std::size_t len = hdr[0];
        auto data_at = (at + item_header) & (cap - 1);
        auto first = std::min<std::size_t>(len, cap - data_at);
        sink(ctx, {ring_ + data_at, first}, {ring_, len - first});
        // The commit: one store frees the bytes, after they were copied out (seq_cst: see
        // notify).
        s.head.store(make_word(pos + footprint(len), word_count(hw) + 1),
                     std::memory_order_seq_cst);
        lk.unlock();
        notify(s.not_full_seq, s.not_full_armed);
        return true;
      }
    }
    if (s.shut_down.load(std::memory_order_acquire) != 0) {
      if (puts_drained) tandem::detail::queue_throw_get_shut_down();
      // A put that passed its shutdown check before the flag was set may still be copying:
      // once the producer mutex has been free, it published, so look once more.
      robust_lock{&s.put_mtx, forever};
      puts_drained = true;
      continue;
    }
    if (last_look) return false;
    if (nowait) tandem::detail::queue_throw_empty();
    bool ready = wait_for(
        s.not_empty_seq, s.not_empty_armed,
        [&] {
          return s.shut_down.load(std::memory_order_seq_cst) != 0 ||
                 s.tail.load(std::memory_order_seq_cst) != s.head.load(std::memory_order_seq_cst);
        },
        t, st);
    if (!ready) {
      // A last look, so an item that arrived as the wait ended is not reported missing, and a
      // shutdown is reported even then.
      if (s.shut_down.load(std::memory_order_acquire) == 0 &&
          s.tail.load(std::memory_order_acquire) == s.head.load(std::memory_order_acquire))
        return false;
      if (st != nullptr && st->stop_requested()) return false;
      last_look = true;
    }
  }
}

void shm_queue::task_done() {
  auto& s = *state_;
  std::uint32_t d = s.done.load(std::memory_order_seq_cst);
  std::uint64_t left = 0;
  for (;;) {
    auto put_count = word_count(s.tail.load(std::memory_order_seq_cst));
    left = (put_count - d) & count_mask;
    if (left == 0) tandem::detail::queue_throw_task_done();
    if (s.done.compare_exchange_weak(d, d + 1, std::memory_order_seq_cst)) break;
  }
  if (left == 1) notify(s.all_done_seq, s.all_done_armed);
}

bool shm_queue::join(const timeout& t, const std::stop_token* st) {
  auto& s = *state_;
  return wait_for(
      s.all_done_seq, s.all_done_armed, [&] { return unfinished_tasks() == 0; }, t, st);
}

void shm_queue::shutdown(bool immediate) noexcept {
  auto& s = *state_;
  s.shut_down.store(1, std::memory_order_seq_cst);
  if (immediate) {
    // Lock order: producers' mutex, then consumers'. With both held nothing moves.
    try {
      robust_lock p{&s.put_mtx, forever};
      robust_lock g{&s.get_mtx, forever};
      auto tw = s.tail.load(std::memory_order_relaxed);
      auto hw = s.head.load(std::memory_order_relaxed);
      auto dropped = static_cast<std::uint32_t>((word_count(tw) - word_count(hw)) & count_mask);
      // The drop is one store; the task count follows. A process killed between the two leaves
      // the dropped items counted as unfinished: join() then waits for tasks that never finish.
      s.head.store(tw, std::memory_order_seq_cst);
      s.cached_tail = tw;
      s.done.fetch_add(dropped, std::memory_order_seq_cst);
    } catch (const error&) {
      // Only a mutex made unrecoverable by foreign writes gets here; waking everyone below is
      // still right.
    }
  }
  notify_all(s.not_empty_seq);
  notify_all(s.not_full_seq);
  notify_all(s.all_done_seq);
}

const std::atomic<std::uint32_t>& shm_queue::not_empty_word() const noexcept {
  return state_->not_empty_seq;
}

void shm_queue::watch_not_empty(bool on) const noexcept {
  if (on)
    state_->not_empty_watchers.fetch_add(1, std::memory_order_seq_cst);
  else
    state_->not_empty_watchers.fetch_sub(1, std::memory_order_seq_cst);
}

bool shm_queue::get_ready() const noexcept {
  const auto& s = *state_;
  return s.shut_down.load(std::memory_order_seq_cst) != 0 ||
         s.tail.load(std::memory_order_seq_cst) != s.head.load(std::memory_order_seq_cst);
}

std::size_t shm_queue::qsize() const noexcept {
  // Head first: the tail read after it is never behind it.
  auto hw = state_->head.load(std::memory_order_acquire);
  auto tw = state_->tail.load(std::memory_order_acquire);
  return static_cast<std::size_t>((word_count(tw) - word_count(hw)) & count_mask);
}

bool shm_queue::full() const noexcept {
  return state_->maxsize != 0 && qsize() >= state_->maxsize;
}

std::size_t shm_queue::maxsize() const noexcept {
  return static_cast<std::size_t>(state_->maxsize);
}

bool shm_queue::is_shutdown() const noexcept {
  return state_->shut_down.load(std::memory_order_acquire) != 0;
}

std::size_t shm_queue::unfinished_tasks() const noexcept {
  auto d = state_->done.load(std::memory_order_seq_cst);
  auto put_count = word_count(state_->tail.load(std::memory_order_seq_cst));
  return static_cast<std::size_t>((put_count - d) & count_mask);
}

std::size_t shm_queue::capacity() const noexcept {
  return static_cast<std::size_t>(state_->capacity);
}

} // namespace tandem::mp::detail
