// detail::manager_core, manager_map and manager_list: a named segment with a crash-consistent
// allocator, hash maps of bytes and lists of bytes. The header states the contract; this file
// explains the steps that make every operation survive SIGKILL at any instruction.
//
// The rule everywhere: a structure changes only while its robust mutex is held, and every block
// in flight is first recorded in an intent slot (a word in shared memory) of the structure whose
// mutex is held. Stores that others depend on are release stores, made in the order written
// here, so whatever prefix of them a killed process completed is what the next locker sees.
//
// The allocator. Blocks have a 16-byte header (next link, state, size class) and come in size
// classes four per power of two (64, 80, 96, 112, 128, 160, ... bytes), so a request wastes at
// most a quarter. Freed blocks go onto their class's free list (LIFO); new blocks come from the
// free list or from the bump pointer `top`. Each of the three steps (pop a free block, bump,
// push a freed block) writes a complete intent record (op, block, class, aux, slot) and then
// applies it; the apply is idempotent, and its last store clears `op`. A locker that finds `op`
// set (its holder died) applies the recorded step again. The step also stores the block into,
// or clears it from, the caller's intent slot, so a block is always reachable from either a free
// list, a structure, or an intent slot: a kill never leaks or double-frees one.
//
// The maps. A map is an open-addressing table (linear probing) of entry offsets: 0 is an empty
// slot, 1 a tombstone. An entry holds its key's hash, an insertion sequence number, the key and
// the value. Insert: allocate the entry into `pending_entry_new`, fill it, store it into a free
// slot (the publication), clear the intent. Replace: the new entry as above, the old one into
// `pending_entry_old`, one store swaps them in the slot, then the old one is freed from its
// intent slot. Erase: the old entry into `pending_entry_old`, a tombstone into its slot, free.
// Rehash: a new table into `pending_table_new`, filled with the same entry offsets, the old table
// into `pending_table_old`, one store of the map's `table` word switches, then the old table is
// freed. Clear: the table into `pending_table_old`, `table` = 0, then the old table's entries and
// the table are freed one by one (each freed entry's slot cleared by the allocator step, so a
// repeated cleanup frees nothing twice). Update: the pairs are first written to a log block,
// armed by one store; the next locker replays an armed log (setting a pair twice is harmless).
//
// The lists. A list is an array block (capacity, length word, element offsets) published by the
// list's `array` word. Append that fits: the new elements are allocated straight into the slots
// above the length, and one store of the length publishes them. Anything else (insert, append
// that does not fit, pop of another than the last element, remove, sort) builds a new array in
// `pending_array_new` (marked usable by `pending_array_init` once zeroed), with new elements
// allocated straight into its slots, then the old array goes to `pending_array_old`, one store
// of `array` switches, and the old array is freed with the elements only it held. Set: the new
// element in `pending_item_new`, the old one in `pending_item_old`, one store swaps them. Pop of
// the last element: one store of the length, then the element is freed from its slot. Clear:
// `array` = 0, then the old array is freed with its elements. A repair frees every slot above
// the length, and every element of a dead array that the published array does not hold.
//
// Repair (the next locker after EOWNERDEAD, and any locker that finds `needs_recovery` set): a
// pending block that is reachable from the map was published: forget it; one that is not was
// never published (free it) or was unpublished (free it). Counts and the next sequence number
// are recomputed from the table. The repair is idempotent, so a process killed while repairing
// leaves the work to the next locker.
#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/manager_core.hpp>
#include <tandem/mp/detail/shm_named.hpp>
#include <tandem/mp/detail/shm_tracker.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tandem::mp::detail {

namespace {

using u64 = std::uint64_t;
using u32 = std::uint32_t;
using word = std::atomic<u64>;

constexpr u64 manager_magic = 0x3152'474d'4d44'4e54; // "TNDMMGR1" in memory
constexpr u32 manager_version = 1;
constexpr u32 ready_value = 0x5245'4144;
constexpr std::size_t page = 4096;
constexpr std::size_t min_initial = std::size_t{64} << 10;
constexpr u64 min_commit_step = u64{1} << 20;

constexpr unsigned num_classes = 160;
constexpr u64 block_header_size = 16;
constexpr u32 block_used = 0x5553'4544; // "DESU"
constexpr u32 block_free = 0x4652'4545; // "EERF"

constexpr u64 tombstone = 1;

// -- shared-memory structures -------------------------------------------------------------------

struct block_header {
  word next;              // free-list link while free; 0 while in use
  std::atomic<u32> state; // block_used or block_free
  u32 cls;                // size class
};
static_assert(sizeof(block_header) == block_header_size);

enum : u64 { op_none = 0, op_pop = 1, op_bump = 2, op_push = 3 };

struct alloc_state {
  pthread_mutex_t mtx;
  word top;       // guarded by mtx: the first byte never handed out
  word committed; // guarded by mtx: the end of the fallocated range
  // The intent record (guarded by mtx): op last, so a set op means a complete record.
  word op;
  word block; // the block's header offset
  word cls;
  word aux;  // pop: the next free block; bump: the block's size; push: the old free-list head
  word slot; // the caller's intent slot (offset) that receives or gives the block
  word free_heads[num_classes];
};

} // namespace

struct manager_map_state {
  pthread_mutex_t mtx;
  word table;    // the table block (payload offset), 0 for none: the published root
  word live;     // entries (recomputed by a repair)
  word used;     // entries and tombstones (recomputed by a repair)
  word next_seq; // the next insertion sequence number
  word repairs;  // repairs made after dead writers
  word needs_recovery;
  // Intent slots: blocks in flight (payload offsets), or 0.
  word pending_entry_new;
  word pending_entry_old;
  word pending_table_new;
  word pending_table_old;
  word pending_log;
  word log_armed; // == pending_log once the log is complete
};

struct manager_list_state {
  pthread_mutex_t mtx;
  word array;   // the array block (payload offset), 0 for an empty list: the published root
  word repairs; // repairs made after dead writers
  word needs_recovery;
  // Intent slots: blocks in flight (payload offsets), or 0.
  word pending_item_new;
  word pending_item_old;
  word pending_array_new;
  word pending_array_init; // == pending_array_new once that array is initialised
  word pending_array_old;
};

namespace {

constexpr std::size_t object_state_size =
    std::max(sizeof(manager_map_state), sizeof(manager_list_state));

struct object_record {
  u64 type_tag;
  u32 kind;
  u32 type_name_len;                              // the type's name follows the record
  alignas(16) std::byte state[object_state_size]; // a manager_map_state or manager_list_state
};

struct manager_header {
  u64 magic;
  u32 version;
  std::atomic<u32> ready;
  u64 layout;
  u64 reserved;   // the file's size
  u64 heap_start; // the first heap byte
  std::int32_t creator_pid;
  u32 creator_uid;
  u64 creator_start; // the creator's start time (clock ticks since boot)
  alloc_state alloc;
  manager_map_state directory;
};

constexpr u64 layout_fingerprint = (u64{sizeof(pthread_mutex_t)} << 48) ^
                                   (u64{sizeof(manager_map_state)} << 32) ^
                                   (u64{sizeof(object_record)} << 16) ^ sizeof(manager_header);
constexpr u64 heap_start = (sizeof(manager_header) + page - 1) / page * page;

struct entry_header {
  u64 hash;
  u64 seq;
  u32 klen;
  u32 vlen;
  u64 pad;
};
static_assert(sizeof(entry_header) == 32);

constexpr u64 align16(u64 n) noexcept {
  return (n + 15) & ~u64{15};
}

static_assert(std::atomic<u64>::is_always_lock_free && std::atomic<u32>::is_always_lock_free);

// -- small helpers ------------------------------------------------------------------------------

[[noreturn, gnu::cold]] void throw_corrupt(const char* what) {
  throw bad_message_error(std::string{"the manager's shared memory is corrupt ("} + what +
                          "): something other than tandem wrote into it; create a new manager");
}

std::size_t round_page(std::size_t n) {
  return (n + page - 1) / page * page;
}

// False when the process `pid` that started at `start` is gone (or a zombie, or the pid reused);
// true while the header does not name a creator yet.
bool creator_alive(pid_t pid, u64 start) {
  return pid <= 0 || process_alive(pid, start);
}

void init_robust_mutex(pthread_mutex_t* m) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  int rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0)
    throw error(std::error_code(rc, std::system_category()),
                "cannot initialize a process-shared robust mutex in a manager segment");
}

// Locks a robust mutex; true when its previous holder died (the mutex is then held and already
// marked consistent: the caller repairs what it guards, flagging the repair first).
bool lock_robust(pthread_mutex_t* m, word* needs_recovery) {
  int rc = ::pthread_mutex_lock(m);
  if (rc == EOWNERDEAD) {
    if (needs_recovery != nullptr) needs_recovery->store(1, std::memory_order_release);
    ::pthread_mutex_consistent(m);
    return true;
  }
  if (rc == EDEADLK)
    throw usage_error("a manager container was used from inside one of its own callbacks");
  if (rc != 0)
    throw not_recoverable_error("a manager's mutex is unusable (error " + std::to_string(rc) +
                                "): its shared memory was damaged; create a new manager");
  return false;
}

// 64-bit hash of bytes (stable across processes and builds: it is part of the layout).
u64 hash_bytes(manager_bytes b) noexcept {
  constexpr u64 m = 0x9e37'79b9'7f4a'7c15ull;
  u64 h = 0x2545'f491'4f6c'dd1dull ^ (b.size() * m);
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  std::size_t n = b.size();
  while (n >= 8) {
    u64 k;
    std::memcpy(&k, p, 8);
    h = (h ^ (k * m)) * 0xbf58'476d'1ce4'e5b9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  u64 k = 0;
  for (std::size_t i = 0; i < n; ++i) k |= u64{p[i]} << (8 * i);
  h = (h ^ (k * m)) * 0x94d0'49bb'1331'11ebull;
  h ^= h >> 29;
  h *= 0xbf58'476d'1ce4'e5b9ull;
  h ^= h >> 32;
  return h;
}

// -- size classes -------------------------------------------------------------------------------

constexpr u64 class_size(unsigned c) noexcept {
  unsigned k = 6 + c / 4;
  return (u64{1} << k) + (c % 4) * (u64{1} << (k - 2));
}

constexpr unsigned class_of(u64 n) noexcept {
  if (n <= 64) return 0;
  auto k = static_cast<unsigned>(63 - std::countl_zero(n));
  if ((n & (n - 1)) == 0) return 4 * (k - 6);
  u64 q = (n - (u64{1} << k) + (u64{1} << (k - 2)) - 1) >> (k - 2);
  if (q == 4) return 4 * (k + 1 - 6);
  return 4 * (k - 6) + static_cast<unsigned>(q);
}

static_assert(class_of(64) == 0 && class_of(65) == 1 && class_of(80) == 1 && class_of(81) == 2);
static_assert(class_of(127) == 4 && class_of(128) == 4 && class_of(129) == 5);
static_assert(class_size(class_of(1000)) >= 1000 && class_size(class_of(1000)) < 1250);

// -- the segment as seen by one process ---------------------------------------------------------

struct seg {
  std::byte* base;
  u64 size;
  int fd;

  manager_header* header() const noexcept { return reinterpret_cast<manager_header*>(base); }

  // The object of type T at `off`, checked to lie inside the segment.
  template <class T>
  T* at(u64 off) const {
    if (off < sizeof(u64) || off > size || size - off < sizeof(T) || off % alignof(T) != 0)
      throw_corrupt("an offset points outside the segment");
    return std::launder(reinterpret_cast<T*>(base + off));
  }

  u64 offset_of(const void* p) const noexcept {
    return static_cast<u64>(static_cast<const std::byte*>(p) - base);
  }

  block_header* block_of(u64 payload) const {
    if (payload < heap_start + block_header_size) throw_corrupt("a block precedes the heap");
    return at<block_header>(payload - block_header_size);
  }

  // The usable bytes of the block whose payload is at `payload`.
  u64 capacity_of(u64 payload) const {
    auto* b = block_of(payload);
    if (b->cls >= num_classes) throw_corrupt("a block has a bad size class");
    return class_size(b->cls) - block_header_size;
  }
};

// -- fault injection (tests) ----------------------------------------------------------------------

// The critical points left before this process kills itself (0: never). Process-local on
// purpose: a fault test sets it in a forked child only.
std::atomic<u64> fault_countdown{0};

// A release store that is also a critical point: the state between two of them is what a
// process killed there leaves behind.
template <class T, class V>
void put(std::atomic<T>& w, V v) noexcept {
  w.store(static_cast<T>(v), std::memory_order_release);
  if (fault_countdown.load(std::memory_order_relaxed) != 0 &&
      fault_countdown.fetch_sub(1, std::memory_order_relaxed) == 1)
    ::raise(SIGKILL);
}

// -- the allocator ------------------------------------------------------------------------------

// Applies the recorded allocator step (idempotent), then clears it.
void alloc_roll_forward(const seg& s) {
  auto& a = s.header()->alloc;
  u64 op = a.op.load(std::memory_order_acquire);
  if (op == op_none) return;
  u64 b = a.block.load(std::memory_order_relaxed);
  u64 cls = a.cls.load(std::memory_order_relaxed);
  u64 aux = a.aux.load(std::memory_order_relaxed);
  auto* slot = s.at<word>(a.slot.load(std::memory_order_relaxed));
  auto* h = s.at<block_header>(b);
  if (cls >= num_classes) throw_corrupt("the allocator's intent record is damaged");
  switch (op) {
    case op_pop:
      put(a.free_heads[cls], aux);
      h->next.store(0, std::memory_order_relaxed);
      put(h->state, block_used);
      put(*slot, b + block_header_size);
      break;
    case op_bump:
      h->cls = static_cast<u32>(cls);
      h->next.store(0, std::memory_order_relaxed);
      put(h->state, block_used);
      if (a.top.load(std::memory_order_relaxed) < b + aux) put(a.top, b + aux);
      put(*slot, b + block_header_size);
      break;
    case op_push:
      h->next.store(aux, std::memory_order_relaxed);
      put(h->state, block_free);
      put(a.free_heads[cls], b);
      put(*slot, 0);
      break;
    default:
      throw_corrupt("the allocator's intent record has an unknown step");
  }
  put(a.op, op_none);
}

class alloc_guard {
public:
  explicit alloc_guard(const seg& s) : m_(&s.header()->alloc.mtx) {
    lock_robust(m_, nullptr);
    // A recorded step means its process died before finishing it (a live holder always clears
    // it before unlocking), also when that process died repairing.
    try {
      alloc_roll_forward(s);
    } catch (...) {
      ::pthread_mutex_unlock(m_);
      throw;
    }
  }
  alloc_guard(const alloc_guard&) = delete;
  alloc_guard& operator=(const alloc_guard&) = delete;
  ~alloc_guard() { ::pthread_mutex_unlock(m_); }

private:
  pthread_mutex_t* m_;
};

[[noreturn]] void throw_full(const seg& s, u64 need) {
  throw segment_error(ENOSPC, "the manager's segment is full: " + std::to_string(need) +
                                  " more bytes do not fit its reservation of " +
                                  std::to_string(s.size) +
                                  " bytes; create the manager with a larger "
                                  "manager_options::max_size, or store less");
}

// Raises the committed mark to at least `end` (fallocate, so /dev/shm's limit is an error here
// and never a SIGBUS later).
void commit(const seg& s, u64 end) {
  auto& a = s.header()->alloc;
  u64 cur = a.committed.load(std::memory_order_relaxed);
  u64 want =
      std::min<u64>(s.size, round_page(std::max(end, cur + std::max(min_commit_step, cur / 4))));
  for (u64 target : {want, std::min<u64>(s.size, round_page(end))}) {
    if (::fallocate(s.fd, 0, static_cast<off_t>(cur), static_cast<off_t>(target - cur)) == 0 ||
        errno == EOPNOTSUPP) {
      put(a.committed, target);
      return;
    }
    if (errno != ENOSPC) break;
  }
  int err = errno;
  throw_shm_error(err, "the manager's segment cannot grow to " + std::to_string(end) +
                           " bytes (fallocate): /dev/shm is full; free memory there or store less");
}

// Allocates a block of at least `bytes` usable bytes; the allocator stores its payload offset
// into the word at `slot` (an intent slot of a structure whose mutex the caller holds) as part
// of the same step. Returns that offset.
u64 allocate(const seg& s, u64 bytes, u64 slot) {
  if (bytes > s.size) throw_full(s, bytes);
  u64 need = bytes + block_header_size;
  unsigned c = class_of(need);
  if (c >= num_classes) throw_full(s, bytes);
  u64 bsize = class_size(c);
  alloc_guard g{s};
  auto& a = s.header()->alloc;
  u64 head = a.free_heads[c].load(std::memory_order_relaxed);
  if (head != 0) {
    auto* h = s.at<block_header>(head);
    if (h->state.load(std::memory_order_relaxed) != block_free || h->cls != c)
      throw_corrupt("a free list holds a block in use");
    a.block.store(head, std::memory_order_relaxed);
    a.aux.store(h->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    a.cls.store(c, std::memory_order_relaxed);
    a.slot.store(slot, std::memory_order_relaxed);
    put(a.op, op_pop);
  } else {
    u64 b = a.top.load(std::memory_order_relaxed);
    if (b + bsize > s.size) throw_full(s, bsize);
    if (b + bsize > a.committed.load(std::memory_order_relaxed)) commit(s, b + bsize);
    a.block.store(b, std::memory_order_relaxed);
    a.aux.store(bsize, std::memory_order_relaxed);
    a.cls.store(c, std::memory_order_relaxed);
    a.slot.store(slot, std::memory_order_relaxed);
    put(a.op, op_bump);
  }
  alloc_roll_forward(s);
  return s.at<word>(slot)->load(std::memory_order_relaxed);
}

// Frees the block whose payload offset is in the word at `slot`, clearing the word in the same
// step. Nothing when the word is 0. A block that is not in use (damaged memory) is dropped from
// the slot and not freed.
void free_from(const seg& s, u64 slot) {
  alloc_guard g{s};
  auto* w = s.at<word>(slot);
  u64 p = w->load(std::memory_order_relaxed);
  if (p == 0) return;
  auto& a = s.header()->alloc;
  auto* h = s.block_of(p);
  if (h->state.load(std::memory_order_relaxed) != block_used || h->cls >= num_classes) {
    put(*w, 0);
    return;
  }
  a.block.store(p - block_header_size, std::memory_order_relaxed);
  a.aux.store(a.free_heads[h->cls].load(std::memory_order_relaxed), std::memory_order_relaxed);
  a.cls.store(h->cls, std::memory_order_relaxed);
  a.slot.store(slot, std::memory_order_relaxed);
  put(a.op, op_push);
  alloc_roll_forward(s);
}

// -- tables and entries -------------------------------------------------------------------------

struct table_view {
  u64 cap = 0;
  word* slots = nullptr;
};

table_view table_at(const seg& s, u64 off) {
  if (off == 0) return {};
  auto* cap = s.at<u64>(off);
  if (*cap == 0 || *cap > (s.capacity_of(off) - 16) / 8) throw_corrupt("a table's size is wrong");
  return {*cap, s.at<word>(off + 16)};
}

__extension__ using u128 = unsigned __int128;

// The home slot of `hash`: the high half of hash * cap (any cap, no division).
u64 home_of(u64 hash, u64 cap) noexcept {
  return static_cast<u64>((static_cast<u128>(hash) * cap) >> 64);
}

struct entry_view {
  entry_header* h;
  manager_bytes key;
  manager_bytes value;
  std::byte* value_ptr;
};

entry_view entry_at(const seg& s, u64 off) {
  auto* h = s.at<entry_header>(off);
  u64 cap = s.capacity_of(off);
  if (sizeof(entry_header) + align16(h->klen) + h->vlen > cap)
    throw_corrupt("an entry's lengths exceed its block");
  auto* k = s.base + off + sizeof(entry_header);
  auto* v = k + align16(h->klen);
  return {h, {k, h->klen}, {v, h->vlen}, v};
}

struct probe_result {
  u64 found = 0;      // the entry, 0 when missing
  u64 index = 0;      // its slot, or where an insert goes
  bool empty = false; // the insert slot is empty (not a tombstone)
};

probe_result probe(const seg& s, table_view t, u64 hash, manager_bytes key) {
  probe_result r;
  if (t.cap == 0) return r;
  u64 i = home_of(hash, t.cap);
  bool have_tomb = false;
  for (u64 n = 0; n < t.cap; ++n) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v == 0) {
      if (!have_tomb) {
        r.index = i;
        r.empty = true;
      }
      return r;
    }
    if (v == tombstone) {
      if (!have_tomb) {
        have_tomb = true;
        r.index = i;
      }
    } else {
      auto e = entry_at(s, v);
      if (e.h->hash == hash && e.key.size() == key.size() &&
          (key.empty() || std::memcmp(e.key.data(), key.data(), key.size()) == 0)) {
        r.found = v;
        r.index = i;
        return r;
      }
    }
    if (++i == t.cap) i = 0;
  }
  if (!have_tomb) throw_corrupt("a table has no free slot");
  return r;
}

// True when entry `off` is in the table at `table_off`. Reads only the entry's hash, which may
// be garbage for an entry that was never filled: such an entry is never found.
bool reachable(const seg& s, u64 table_off, u64 off) {
  if (table_off == 0) return false;
  auto t = table_at(s, table_off);
  u64 hash = s.at<entry_header>(off)->hash;
  u64 i = home_of(hash, t.cap);
  for (u64 n = 0; n < t.cap; ++n) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v == off) return true;
    if (v == 0) return false;
    if (++i == t.cap) i = 0;
  }
  return false;
}

// Frees the table in intent slot `slot` (not the published one): first each of its entries that
// the published table does not hold, then the table.
void free_dead_table(const seg& s, manager_map_state& st, word& slot) {
  u64 off = slot.load(std::memory_order_acquire);
  if (off == 0) return;
  u64 cur = st.table.load(std::memory_order_relaxed);
  if (off == cur) { // never unpublished: the operation did not happen
    put(slot, 0);
    return;
  }
  auto t = table_at(s, off);
  for (u64 i = 0; i < t.cap; ++i) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v <= tombstone) continue;
    if (reachable(s, cur, v))
      put(t.slots[i], 0);
    else
      free_from(s, s.offset_of(&t.slots[i]));
  }
  free_from(s, s.offset_of(&slot));
}

// Fills a new entry's header and key; the value is written by the caller.
entry_view fill_entry(const seg& s, u64 off, u64 hash, u64 seq, manager_bytes key, u64 vlen) {
  auto* h = s.at<entry_header>(off);
  h->hash = hash;
  h->seq = seq;
  h->klen = static_cast<u32>(key.size());
  h->vlen = static_cast<u32>(vlen);
  h->pad = 0;
  if (!key.empty()) std::memcpy(s.base + off + sizeof(entry_header), key.data(), key.size());
  return entry_at(s, off);
}

u64 entry_bytes(manager_bytes key, u64 vlen) {
  if (key.size() > std::numeric_limits<u32>::max() || vlen > std::numeric_limits<u32>::max())
    throw value_error("a manager key or value larger than 4 GiB cannot be stored");
  return sizeof(entry_header) + align16(key.size()) + vlen;
}

// Builds a new table of at least `want` slots holding the live entries and publishes it.
void rehash(const seg& s, manager_map_state& st, u64 want) {
  u64 old = st.table.load(std::memory_order_relaxed);
  u64 off = allocate(s, 16 + 8 * want, s.offset_of(&st.pending_table_new));
  u64 cap = (s.capacity_of(off) - 16) / 8;
  *s.at<u64>(off) = cap;
  *s.at<u64>(off + 8) = 0;
  auto* slots = s.at<word>(off + 16);
  for (u64 i = 0; i < cap; ++i) slots[i].store(0, std::memory_order_relaxed);
  u64 live = 0;
  if (old != 0) {
    auto t = table_at(s, old);
    for (u64 i = 0; i < t.cap; ++i) {
      u64 v = t.slots[i].load(std::memory_order_relaxed);
      if (v <= tombstone) continue;
      u64 j = home_of(s.at<entry_header>(v)->hash, cap);
      while (slots[j].load(std::memory_order_relaxed) != 0)
        if (++j == cap) j = 0;
      slots[j].store(v, std::memory_order_relaxed);
      ++live;
    }
  }
  put(st.pending_table_old, old);
  put(st.table, off); // the publication
  put(st.pending_table_new, 0);
  put(st.live, live);
  put(st.used, live);
  free_dead_table(s, st, st.pending_table_old);
}

// Makes room for one more entry: a table exists, and after the insert at most 70% of its slots
// are used (entries and tombstones).
void reserve_one(const seg& s, manager_map_state& st) {
  u64 off = st.table.load(std::memory_order_relaxed);
  u64 cap = off == 0 ? 0 : table_at(s, off).cap;
  u64 used = st.used.load(std::memory_order_relaxed);
  if (off != 0 && (used + 1) * 10 <= cap * 7) return;
  u64 live = st.live.load(std::memory_order_relaxed);
  rehash(s, st, std::max<u64>(16, (live + 1) * 2));
}

using value_writer = void (*)(void* ctx, const seg& s, std::byte* dst);

// Inserts a key known to be missing, with a value of `vlen` bytes written by `write` into the
// new entry before it is published. Returns the entry.
u64 insert_new(const seg& s, manager_map_state& st, u64 hash, manager_bytes key, u64 vlen,
               value_writer write, void* ctx) {
  u64 bytes = entry_bytes(key, vlen);
  reserve_one(s, st);
  auto t = table_at(s, st.table.load(std::memory_order_relaxed));
  auto r = probe(s, t, hash, key);
  u64 seq = st.next_seq.load(std::memory_order_relaxed);
  put(st.next_seq, seq + 1);
  u64 off = allocate(s, bytes, s.offset_of(&st.pending_entry_new));
  auto e = fill_entry(s, off, hash, seq, key, vlen);
  write(ctx, s, e.value_ptr);
  put(t.slots[r.index], off); // the publication
  put(st.pending_entry_new, 0);
  put(st.live, st.live.load(std::memory_order_relaxed) + 1);
  if (r.empty) put(st.used, st.used.load(std::memory_order_relaxed) + 1);
  return off;
}

void write_bytes(void* ctx, const seg&, std::byte* dst) {
  auto* v = static_cast<manager_bytes*>(ctx);
  if (!v->empty()) std::memcpy(dst, v->data(), v->size());
}

// Sets `key` to `value` with the map's mutex held.
void set_locked(const seg& s, manager_map_state& st, manager_bytes key, manager_bytes value) {
  u64 hash = hash_bytes(key);
  auto t = table_at(s, st.table.load(std::memory_order_relaxed));
  auto r = probe(s, t, hash, key);
  if (r.found == 0) {
    insert_new(s, st, hash, key, value.size(), &write_bytes, &value);
    return;
  }
  u64 bytes = entry_bytes(key, value.size());
  u64 seq = s.at<entry_header>(r.found)->seq; // a replaced value keeps its key's place
  u64 off = allocate(s, bytes, s.offset_of(&st.pending_entry_new));
  auto e = fill_entry(s, off, hash, seq, key, value.size());
  if (!value.empty()) std::memcpy(e.value_ptr, value.data(), value.size());
  put(st.pending_entry_old, r.found);
  put(t.slots[r.index], off); // the publication
  put(st.pending_entry_new, 0);
  free_from(s, s.offset_of(&st.pending_entry_old));
}

// Erases the entry found by `r` with the map's mutex held.
void erase_locked(const seg& s, manager_map_state& st, const probe_result& r) {
  auto t = table_at(s, st.table.load(std::memory_order_relaxed));
  put(st.pending_entry_old, r.found);
  put(t.slots[r.index], tombstone); // the publication
  put(st.live, st.live.load(std::memory_order_relaxed) - 1);
  free_from(s, s.offset_of(&st.pending_entry_old));
}

// Applies the update log at `log` (its pairs, in order).
void replay_log(const seg& s, manager_map_state& st, u64 log) {
  u64 cap = s.capacity_of(log);
  u64 count = *s.at<u64>(log);
  u64 pos = 8;
  for (u64 i = 0; i < count; ++i) {
    if (pos + 8 > cap) throw_corrupt("an update log is truncated");
    u32 lens[2];
    std::memcpy(lens, s.base + log + pos, 8);
    pos += 8;
    if (u64{lens[0]} + lens[1] > cap - pos) throw_corrupt("an update log is truncated");
    manager_bytes key{s.base + log + pos, lens[0]};
    manager_bytes value{s.base + log + pos + lens[0], lens[1]};
    pos += u64{lens[0]} + lens[1];
    set_locked(s, st, key, value);
  }
}

// Recomputes the counts and the next sequence number from the published table.
void recount(const seg& s, manager_map_state& st) {
  auto t = table_at(s, st.table.load(std::memory_order_relaxed));
  u64 live = 0;
  u64 used = 0;
  u64 next = st.next_seq.load(std::memory_order_relaxed);
  for (u64 i = 0; i < t.cap; ++i) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v == 0) continue;
    ++used;
    if (v == tombstone) continue;
    ++live;
    next = std::max(next, s.at<entry_header>(v)->seq + 1);
  }
  put(st.live, live);
  put(st.used, used);
  put(st.next_seq, next);
}

// The repair after a dead writer (see the file comment). Idempotent.
void repair(const seg& s, manager_map_state& st) {
  { alloc_guard g{s}; } // finishes a step the dead process left in the allocator
  // A new table is never the only holder of an entry: free the block alone.
  u64 nt = st.pending_table_new.load(std::memory_order_acquire);
  if (nt != 0) {
    if (nt == st.table.load(std::memory_order_relaxed))
      put(st.pending_table_new, 0);
    else
      free_from(s, s.offset_of(&st.pending_table_new));
  }
  free_dead_table(s, st, st.pending_table_old);
  u64 table = st.table.load(std::memory_order_relaxed);
  for (word* slot : {&st.pending_entry_new, &st.pending_entry_old}) {
    u64 e = slot->load(std::memory_order_acquire);
    if (e == 0) continue;
    if (reachable(s, table, e))
      put(*slot, 0);
    else
      free_from(s, s.offset_of(slot));
  }
  recount(s, st);
  u64 log = st.pending_log.load(std::memory_order_acquire);
  if (log != 0) {
    if (st.log_armed.load(std::memory_order_acquire) == log) {
      try {
        replay_log(s, st, log);
      } catch (const segment_error&) {
        // Out of space: the update stays partly applied, as the dead process left it.
      }
    }
    put(st.log_armed, 0);
    free_from(s, s.offset_of(&st.pending_log));
  }
}

// Holds a map's mutex; after a dead writer it repairs the map and throws owner_died_error.
class map_guard {
public:
  map_guard(const seg& s, manager_map_state& st) : m_(&st.mtx) {
    lock_robust(m_, &st.needs_recovery);
    if (st.needs_recovery.load(std::memory_order_acquire) == 0) return;
    try {
      repair(s, st);
      st.repairs.fetch_add(1, std::memory_order_relaxed);
      put(st.needs_recovery, 0);
    } catch (...) {
      ::pthread_mutex_unlock(m_);
      throw;
    }
    ::pthread_mutex_unlock(m_);
    throw owner_died_error(
        "a process died while changing this shared container; it was repaired and holds what "
        "it held before or after that process's last operation, and this call did nothing: "
        "call it again");
  }
  map_guard(const map_guard&) = delete;
  map_guard& operator=(const map_guard&) = delete;
  ~map_guard() { ::pthread_mutex_unlock(m_); }

private:
  pthread_mutex_t* m_;
};

void init_map_state(manager_map_state* st) {
  init_robust_mutex(&st->mtx);
}

seg seg_of(const manager_core& c) noexcept {
  return {c.base(), c.reserved_size(), c.fd()};
}

} // namespace

// -- manager_map --------------------------------------------------------------------------------

bool manager_map::get(manager_bytes key, manager_value_fn fn, void* ctx) const {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  auto r =
      probe(s, table_at(s, state_->table.load(std::memory_order_relaxed)), hash_bytes(key), key);
  if (r.found == 0) return false;
  fn(ctx, entry_at(s, r.found).value);
  return true;
}

bool manager_map::contains(manager_bytes key) const {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  return probe(s, table_at(s, state_->table.load(std::memory_order_relaxed)), hash_bytes(key), key)
             .found != 0;
}

std::size_t manager_map::size() const {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  return static_cast<std::size_t>(state_->live.load(std::memory_order_relaxed));
}

void manager_map::set(manager_bytes key, manager_bytes value) {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  set_locked(s, *state_, key, value);
}

void manager_map::update(std::span<const std::pair<manager_bytes, manager_bytes>> pairs) {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  auto& st = *state_;
  if (pairs.size() <= 1) {
    for (auto& [k, v] : pairs) set_locked(s, st, k, v);
    return;
  }
  u64 bytes = 8;
  for (auto& [k, v] : pairs) {
    (void)entry_bytes(k, v.size());
    bytes += 8 + k.size() + v.size();
  }
  u64 log = allocate(s, bytes, s.offset_of(&st.pending_log));
  *s.at<u64>(log) = pairs.size();
  u64 pos = 8;
  for (auto& [k, v] : pairs) {
    u32 lens[2] = {static_cast<u32>(k.size()), static_cast<u32>(v.size())};
    std::memcpy(s.base + log + pos, lens, 8);
    pos += 8;
    if (!k.empty()) std::memcpy(s.base + log + pos, k.data(), k.size());
    pos += k.size();
    if (!v.empty()) std::memcpy(s.base + log + pos, v.data(), v.size());
    pos += v.size();
  }
  put(st.log_armed, log); // from here on, the update happens
  try {
    for (auto& [k, v] : pairs) set_locked(s, st, k, v);
  } catch (...) {
    put(st.log_armed, 0);
    free_from(s, s.offset_of(&st.pending_log));
    throw;
  }
  put(st.log_armed, 0);
  free_from(s, s.offset_of(&st.pending_log));
}

bool manager_map::erase(manager_bytes key, manager_value_fn fn, void* ctx) {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  auto r =
      probe(s, table_at(s, state_->table.load(std::memory_order_relaxed)), hash_bytes(key), key);
  if (r.found == 0) return false;
  if (fn != nullptr) fn(ctx, entry_at(s, r.found).value);
  erase_locked(s, *state_, r);
  return true;
}

bool manager_map::setdefault(manager_bytes key, manager_bytes value, manager_value_fn fn,
                             void* ctx) {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  u64 hash = hash_bytes(key);
  auto r = probe(s, table_at(s, state_->table.load(std::memory_order_relaxed)), hash, key);
  if (r.found != 0) {
    fn(ctx, entry_at(s, r.found).value);
    return false;
  }
  fn(ctx, value); // before the insert: if it throws, nothing changed
  insert_new(s, *state_, hash, key, value.size(), &write_bytes, &value);
  return true;
}

bool manager_map::popitem(manager_item_fn fn, void* ctx) {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  auto t = table_at(s, state_->table.load(std::memory_order_relaxed));
  probe_result last;
  u64 last_seq = 0;
  for (u64 i = 0; i < t.cap; ++i) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v <= tombstone) continue;
    u64 seq = s.at<entry_header>(v)->seq;
    if (last.found == 0 || seq > last_seq) {
      last.found = v;
      last.index = i;
      last_seq = seq;
    }
  }
  if (last.found == 0) return false;
  auto e = entry_at(s, last.found);
  fn(ctx, e.key, e.value);
  erase_locked(s, *state_, last);
  return true;
}

void manager_map::clear() {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  auto& st = *state_;
  u64 t = st.table.load(std::memory_order_relaxed);
  if (t == 0) return;
  put(st.pending_table_old, t);
  put(st.table, 0); // the publication
  put(st.live, 0);
  put(st.used, 0);
  free_dead_table(s, st, st.pending_table_old);
}

void manager_map::items(manager_item_fn fn, void* ctx) const {
  auto s = seg_of(*core_);
  map_guard g{s, *state_};
  auto t = table_at(s, state_->table.load(std::memory_order_relaxed));
  std::vector<std::pair<u64, u64>> order; // (seq, entry)
  order.reserve(static_cast<std::size_t>(state_->live.load(std::memory_order_relaxed)));
  for (u64 i = 0; i < t.cap; ++i) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v > tombstone) order.emplace_back(s.at<entry_header>(v)->seq, v);
  }
  std::sort(order.begin(), order.end());
  for (auto& [seq, v] : order) {
    auto e = entry_at(s, v);
    fn(ctx, e.key, e.value);
  }
}

std::uint64_t manager_map::repairs() const {
  return state_->repairs.load(std::memory_order_relaxed);
}

// -- lists ----------------------------------------------------------------------------------------

namespace {

// An array block: capacity (immutable), the length word (the publication of an append that
// fits), then `cap` slots: element offsets below the length, 0 (or an element in flight) above.
struct list_array_view {
  u64 cap = 0;
  word* len = nullptr;
  word* slots = nullptr;
};

list_array_view list_array_at(const seg& s, u64 off) {
  if (off == 0) return {};
  auto* cap = s.at<u64>(off);
  if (*cap == 0 || *cap > (s.capacity_of(off) - 16) / 8)
    throw_corrupt("a list array's size is wrong");
  auto* len = s.at<word>(off + 8);
  if (len->load(std::memory_order_relaxed) > *cap) throw_corrupt("a list's length is wrong");
  return {*cap, len, s.at<word>(off + 16)};
}

manager_bytes element_at(const seg& s, u64 off) {
  u64 n = *s.at<u64>(off);
  if (n > s.capacity_of(off) - 8) throw_corrupt("an element's length exceeds its block");
  return {s.base + off + 8, static_cast<std::size_t>(n)};
}

// Allocates an element holding `bytes` straight into the word at `slot`.
void put_element(const seg& s, u64 slot, manager_bytes bytes) {
  u64 off = allocate(s, 8 + bytes.size(), slot);
  *s.at<u64>(off) = bytes.size();
  if (!bytes.empty()) std::memcpy(s.base + off + 8, bytes.data(), bytes.size());
}

// A new, empty array of at least `want` slots, in intent slot pending_array_new.
list_array_view new_array(const seg& s, manager_list_state& st, u64 want) {
  u64 off = allocate(s, 16 + 8 * want, s.offset_of(&st.pending_array_new));
  u64 cap = (s.capacity_of(off) - 16) / 8;
  *s.at<u64>(off) = cap;
  auto v = list_array_at(s, off);
  v.len->store(0, std::memory_order_relaxed);
  for (u64 i = 0; i < cap; ++i) v.slots[i].store(0, std::memory_order_relaxed);
  // From here on a repair may read the array (until now it holds whatever the block held).
  put(st.pending_array_init, off);
  return v;
}

// Publishes the array in pending_array_new, whose elements include every element of the
// current array except `dropped` (an index of the current array, or -1 for none); frees the old
// array and the dropped element.
void publish_array(const seg& s, manager_list_state& st, u64 dropped) {
  u64 old = st.array.load(std::memory_order_relaxed);
  put(st.pending_array_old, old);
  put(st.array, st.pending_array_new.load(std::memory_order_relaxed)); // the publication
  put(st.pending_array_new, 0);
  put(st.pending_array_init, 0);
  if (old != 0) {
    auto v = list_array_at(s, old);
    if (dropped != ~u64{0}) free_from(s, s.offset_of(&v.slots[dropped]));
  }
  free_from(s, s.offset_of(&st.pending_array_old));
}

// Frees a dead array in `slot` with the elements of it that the published array does not hold.
void free_dead_array(const seg& s, manager_list_state& st, word& slot,
                     const std::vector<u64>& live_sorted) {
  u64 off = slot.load(std::memory_order_acquire);
  if (off == 0) return;
  if (off == st.array.load(std::memory_order_relaxed)) {
    put(slot, 0);
    return;
  }
  auto v = list_array_at(s, off);
  for (u64 i = 0; i < v.cap; ++i) {
    u64 x = v.slots[i].load(std::memory_order_relaxed);
    if (x == 0) continue;
    if (std::binary_search(live_sorted.begin(), live_sorted.end(), x))
      put(v.slots[i], 0);
    else
      free_from(s, s.offset_of(&v.slots[i]));
  }
  free_from(s, s.offset_of(&slot));
}

void repair_list(const seg& s, manager_list_state& st) {
  { alloc_guard g{s}; } // finishes a step the dead process left in the allocator
  auto cur = list_array_at(s, st.array.load(std::memory_order_relaxed));
  std::vector<u64> live;
  u64 len = cur.cap == 0 ? 0 : cur.len->load(std::memory_order_relaxed);
  for (u64 i = 0; i < len; ++i) live.push_back(cur.slots[i].load(std::memory_order_relaxed));
  std::sort(live.begin(), live.end());
  auto holds = [&](u64 x) { return std::binary_search(live.begin(), live.end(), x); };
  u64 fresh = st.pending_array_new.load(std::memory_order_acquire);
  if (fresh != 0 && fresh != st.array.load(std::memory_order_relaxed) &&
      st.pending_array_init.load(std::memory_order_acquire) != fresh)
    free_from(s, s.offset_of(&st.pending_array_new)); // never initialised: the block alone
  free_dead_array(s, st, st.pending_array_new, live);
  put(st.pending_array_init, 0);
  free_dead_array(s, st, st.pending_array_old, live);
  // Elements in flight above the length (an append that was not published, or a pop of the
  // last element that was).
  for (u64 i = len; i < cur.cap; ++i)
    if (cur.slots[i].load(std::memory_order_relaxed) != 0) free_from(s, s.offset_of(&cur.slots[i]));
  for (word* w : {&st.pending_item_new, &st.pending_item_old}) {
    u64 x = w->load(std::memory_order_acquire);
    if (x == 0) continue;
    if (holds(x))
      put(*w, 0);
    else
      free_from(s, s.offset_of(w));
  }
}

class list_guard {
public:
  list_guard(const seg& s, manager_list_state& st) : m_(&st.mtx) {
    lock_robust(m_, &st.needs_recovery);
    if (st.needs_recovery.load(std::memory_order_acquire) == 0) return;
    try {
      repair_list(s, st);
      st.repairs.fetch_add(1, std::memory_order_relaxed);
      st.needs_recovery.store(0, std::memory_order_release);
    } catch (...) {
      ::pthread_mutex_unlock(m_);
      throw;
    }
    ::pthread_mutex_unlock(m_);
    throw owner_died_error(
        "a process died while changing this shared list; it was repaired and holds what it "
        "held before or after that process's last operation, and this call did nothing: call "
        "it again");
  }
  list_guard(const list_guard&) = delete;
  list_guard& operator=(const list_guard&) = delete;
  ~list_guard() { ::pthread_mutex_unlock(m_); }

private:
  pthread_mutex_t* m_;
};

u64 list_len(const list_array_view& v) {
  return v.cap == 0 ? 0 : v.len->load(std::memory_order_relaxed);
}

[[noreturn]] void throw_index(std::int64_t index, u64 len) {
  throw index_error("list index " + std::to_string(index) + " is out of range for a list of " +
                    std::to_string(len) + " elements (Python's IndexError)");
}

// Python's index rules for get, set and pop: negative counts from the end; out of range throws.
u64 element_index(std::int64_t index, u64 len) {
  auto n = static_cast<std::int64_t>(len);
  std::int64_t i = index < 0 ? index + n : index;
  if (i < 0 || i >= n) throw_index(index, len);
  return static_cast<u64>(i);
}

// Python's clamping for insert and for index(x, start, stop).
u64 clamp_index(std::int64_t index, u64 len) {
  auto n = static_cast<std::int64_t>(len);
  std::int64_t i = index < 0 ? std::max<std::int64_t>(index + n, 0) : std::min(index, n);
  return static_cast<u64>(i);
}

// Removes element `i` of the list with its mutex held.
void pop_locked(const seg& s, manager_list_state& st, list_array_view cur, u64 len, u64 i) {
  if (i + 1 == len) {
    put(*cur.len, len - 1); // the publication
    free_from(s, s.offset_of(&cur.slots[i]));
    return;
  }
  auto n = new_array(s, st, std::max<u64>(16, len * 2));
  for (u64 j = 0, k = 0; j < len; ++j)
    if (j != i)
      n.slots[k++].store(cur.slots[j].load(std::memory_order_relaxed), std::memory_order_relaxed);
  n.len->store(len - 1, std::memory_order_relaxed);
  publish_array(s, st, i);
}

} // namespace

std::size_t manager_list::size() const {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  return static_cast<std::size_t>(
      list_len(list_array_at(s, state_->array.load(std::memory_order_relaxed))));
}

void manager_list::get(std::int64_t index, manager_value_fn fn, void* ctx) const {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto cur = list_array_at(s, state_->array.load(std::memory_order_relaxed));
  u64 i = element_index(index, list_len(cur));
  fn(ctx, element_at(s, cur.slots[i].load(std::memory_order_relaxed)));
}

void manager_list::set(std::int64_t index, manager_bytes element) {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto& st = *state_;
  auto cur = list_array_at(s, st.array.load(std::memory_order_relaxed));
  u64 i = element_index(index, list_len(cur));
  put_element(s, s.offset_of(&st.pending_item_new), element);
  put(st.pending_item_old, cur.slots[i].load(std::memory_order_relaxed));
  put(cur.slots[i], st.pending_item_new.load(std::memory_order_relaxed)); // the publication
  put(st.pending_item_new, 0);
  free_from(s, s.offset_of(&st.pending_item_old));
}

void manager_list::insert(std::int64_t index, std::span<const manager_bytes> elements) {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto& st = *state_;
  if (elements.empty()) return;
  auto cur = list_array_at(s, st.array.load(std::memory_order_relaxed));
  u64 len = list_len(cur);
  u64 at = clamp_index(index, len);
  u64 k = elements.size();
  if (cur.cap != 0 && at == len && len + k <= cur.cap) {
    // An append that fits: the elements go above the length, one store of the length
    // publishes them all.
    for (u64 j = 0; j < k; ++j) put_element(s, s.offset_of(&cur.slots[len + j]), elements[j]);
    put(*cur.len, len + k); // the publication
    return;
  }
  auto n = new_array(s, st, std::max<u64>(16, (len + k) * 2));
  for (u64 j = 0; j < at; ++j)
    n.slots[j].store(cur.slots[j].load(std::memory_order_relaxed), std::memory_order_relaxed);
  for (u64 j = at; j < len; ++j)
    n.slots[j + k].store(cur.slots[j].load(std::memory_order_relaxed), std::memory_order_relaxed);
  for (u64 j = 0; j < k; ++j) put_element(s, s.offset_of(&n.slots[at + j]), elements[j]);
  n.len->store(len + k, std::memory_order_relaxed);
  publish_array(s, st, ~u64{0});
}

void manager_list::pop(std::int64_t index, manager_value_fn fn, void* ctx) {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto& st = *state_;
  auto cur = list_array_at(s, st.array.load(std::memory_order_relaxed));
  u64 len = list_len(cur);
  if (len == 0) throw index_error("pop from an empty list (Python's IndexError)");
  u64 i = element_index(index, len);
  fn(ctx, element_at(s, cur.slots[i].load(std::memory_order_relaxed)));
  pop_locked(s, st, cur, len, i);
}

std::int64_t manager_list::find(manager_match_fn match, void* ctx, std::int64_t start,
                                std::int64_t stop) const {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto cur = list_array_at(s, state_->array.load(std::memory_order_relaxed));
  u64 len = list_len(cur);
  for (u64 i = clamp_index(start, len), end = clamp_index(stop, len); i < end; ++i)
    if (match(ctx, element_at(s, cur.slots[i].load(std::memory_order_relaxed))))
      return static_cast<std::int64_t>(i);
  return -1;
}

std::size_t manager_list::count(manager_match_fn match, void* ctx) const {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto cur = list_array_at(s, state_->array.load(std::memory_order_relaxed));
  std::size_t n = 0;
  for (u64 i = 0, len = list_len(cur); i < len; ++i)
    if (match(ctx, element_at(s, cur.slots[i].load(std::memory_order_relaxed)))) ++n;
  return n;
}

bool manager_list::remove(manager_match_fn match, void* ctx) {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto& st = *state_;
  auto cur = list_array_at(s, st.array.load(std::memory_order_relaxed));
  u64 len = list_len(cur);
  for (u64 i = 0; i < len; ++i) {
    if (match(ctx, element_at(s, cur.slots[i].load(std::memory_order_relaxed)))) {
      pop_locked(s, st, cur, len, i);
      return true;
    }
  }
  return false;
}

void manager_list::slice(std::int64_t start, std::int64_t stop, std::int64_t step,
                         manager_item_fn fn, void* ctx) const {
  if (step == 0) throw value_error("slice step cannot be zero (Python's ValueError)");
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto cur = list_array_at(s, state_->array.load(std::memory_order_relaxed));
  auto n = static_cast<std::int64_t>(list_len(cur));
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::int64_t i) {
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  std::int64_t a = adjust(start);
  std::int64_t b = adjust(stop);
  for (std::int64_t i = a; step > 0 ? i < b : i > b; i += step)
    fn(ctx, {}, element_at(s, cur.slots[static_cast<u64>(i)].load(std::memory_order_relaxed)));
}

void manager_list::sort(manager_less_fn less, void* ctx) {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto& st = *state_;
  auto cur = list_array_at(s, st.array.load(std::memory_order_relaxed));
  u64 len = list_len(cur);
  if (len < 2) return;
  std::vector<u64> order(len);
  for (u64 i = 0; i < len; ++i) order[i] = cur.slots[i].load(std::memory_order_relaxed);
  // Sorted before anything is allocated: a comparison that throws changes nothing.
  std::stable_sort(order.begin(), order.end(),
                   [&](u64 x, u64 y) { return less(ctx, element_at(s, x), element_at(s, y)); });
  auto n = new_array(s, st, std::max<u64>(16, len * 2));
  for (u64 i = 0; i < len; ++i) n.slots[i].store(order[i], std::memory_order_relaxed);
  n.len->store(len, std::memory_order_relaxed);
  publish_array(s, st, ~u64{0});
}

void manager_list::clear() {
  auto s = seg_of(*core_);
  list_guard g{s, *state_};
  auto& st = *state_;
  u64 old = st.array.load(std::memory_order_relaxed);
  if (old == 0) return;
  put(st.pending_array_old, old);
  put(st.array, 0); // the publication
  free_dead_array(s, st, st.pending_array_old, {});
}

std::uint64_t manager_list::repairs() const {
  return state_->repairs.load(std::memory_order_relaxed);
}

// -- manager_core: named objects ----------------------------------------------------------------

namespace {

struct new_object {
  manager_kind kind;
  u64 type_tag;
  std::string_view type_name;
};

void write_object(void* ctx, const seg&, std::byte* dst) {
  auto* o = static_cast<new_object*>(ctx);
  auto* rec = ::new (dst) object_record{};
  rec->type_tag = o->type_tag;
  rec->kind = static_cast<u32>(o->kind);
  rec->type_name_len = static_cast<u32>(o->type_name.size());
  if (o->kind == manager_kind::list) {
    auto* st = ::new (rec->state) manager_list_state{};
    init_robust_mutex(&st->mtx);
  } else {
    init_map_state(::new (rec->state) manager_map_state{});
  }
  if (!o->type_name.empty())
    std::memcpy(dst + sizeof(object_record), o->type_name.data(), o->type_name.size());
}

const char* kind_name(u32 kind) {
  if (kind == static_cast<u32>(manager_kind::dict)) return "dict";
  if (kind == static_cast<u32>(manager_kind::list)) return "list";
  return "object of an unknown kind";
}

} // namespace

void* manager_core::find_or_create(std::string_view name, manager_kind kind, std::uint64_t type_tag,
                                   std::string_view type_name) {
  if (name.empty())
    throw value_error("a manager object needs a name that is not empty; name it, as in "
                      "m.dict<std::string, int>(\"scores\")");
  auto s = seg_of(*this);
  auto& dir = s.header()->directory;
  map_guard g{s, dir};
  manager_bytes key{reinterpret_cast<const std::byte*>(name.data()), name.size()};
  u64 hash = hash_bytes(key);
  auto r = probe(s, table_at(s, dir.table.load(std::memory_order_relaxed)), hash, key);
  u64 off = r.found;
  if (off == 0) {
    new_object o{kind, type_tag, type_name};
    off =
        insert_new(s, dir, hash, key, sizeof(object_record) + type_name.size(), &write_object, &o);
  }
  auto e = entry_at(s, off);
  if (e.value.size() < sizeof(object_record)) throw_corrupt("an object record is too short");
  auto* rec = std::launder(reinterpret_cast<object_record*>(e.value_ptr));
  if (rec->kind != static_cast<u32>(kind) || rec->type_tag != type_tag) {
    std::string have{
        reinterpret_cast<const char*>(e.value_ptr + sizeof(object_record)),
        std::min<std::size_t>(rec->type_name_len, e.value.size() - sizeof(object_record))};
    throw value_error("manager " + shm_quoted(name_) + " holds " + shm_quoted(name) + " as a " +
                      kind_name(rec->kind) + " of " + (have.empty() ? "another type" : have) +
                      ", not as a " + kind_name(static_cast<u32>(kind)) + " of " +
                      std::string{type_name} +
                      ": ask for it with the types it was created with, or use another name");
  }
  return rec->state;
}

std::vector<std::string> manager_core::names() {
  auto s = seg_of(*this);
  auto& dir = s.header()->directory;
  std::vector<std::string> out;
  map_guard g{s, dir};
  auto t = table_at(s, dir.table.load(std::memory_order_relaxed));
  std::vector<std::pair<u64, u64>> order;
  for (u64 i = 0; i < t.cap; ++i) {
    u64 v = t.slots[i].load(std::memory_order_relaxed);
    if (v > tombstone) order.emplace_back(s.at<entry_header>(v)->seq, v);
  }
  std::sort(order.begin(), order.end());
  for (auto& [seq, v] : order) {
    auto e = entry_at(s, v);
    out.emplace_back(reinterpret_cast<const char*>(e.key.data()), e.key.size());
  }
  return out;
}

bool manager_core::contains(std::string_view name) {
  auto s = seg_of(*this);
  auto& dir = s.header()->directory;
  map_guard g{s, dir};
  manager_bytes key{reinterpret_cast<const std::byte*>(name.data()), name.size()};
  return probe(s, table_at(s, dir.table.load(std::memory_order_relaxed)), hash_bytes(key), key)
             .found != 0;
}

std::size_t manager_core::committed_size() const noexcept {
  return static_cast<std::size_t>(
      reinterpret_cast<manager_header*>(base_)->alloc.committed.load(std::memory_order_relaxed));
}

std::size_t manager_core::used_size() const noexcept {
  return static_cast<std::size_t>(
      reinterpret_cast<manager_header*>(base_)->alloc.top.load(std::memory_order_relaxed));
}

int manager_core::creator_pid() const noexcept {
  return reinterpret_cast<manager_header*>(base_)->creator_pid;
}

// -- manager_core: the heap audit ---------------------------------------------------------------

std::vector<std::string> manager_core::check_heap() {
  auto s = seg_of(*this);
  auto* hdr = s.header();
  std::vector<std::string> problems;
  auto problem = [&](std::string what) {
    if (problems.size() < 20) problems.push_back(std::move(what));
  };
  map_guard dg{s, hdr->directory};
  alloc_guard ag{s};
  auto& a = hdr->alloc;
  // Every block, by payload offset: 0 unseen, 1 on a free list, 2 owned.
  struct info {
    u32 state;
    u32 cls;
    int mark;
  };
  std::vector<std::pair<u64, info>> blocks;
  u64 top = a.top.load(std::memory_order_relaxed);
  for (u64 b = heap_start; b < top;) {
    auto* h = s.at<block_header>(b);
    if (h->cls >= num_classes) {
      problem("block at " + std::to_string(b) + " has a bad size class");
      break;
    }
    blocks.push_back({b + block_header_size, {h->state.load(), h->cls, 0}});
    b += class_size(h->cls);
  }
  auto find = [&](u64 payload) -> info* {
    auto it = std::lower_bound(blocks.begin(), blocks.end(), payload,
                               [](const auto& x, u64 p) { return x.first < p; });
    return it != blocks.end() && it->first == payload ? &it->second : nullptr;
  };
  for (unsigned c = 0; c < num_classes; ++c) {
    std::size_t n = 0;
    for (u64 b = a.free_heads[c].load(); b != 0; b = s.at<block_header>(b)->next.load()) {
      auto* i = find(b + block_header_size);
      if (i == nullptr || i->state != block_free || i->cls != c || i->mark != 0 ||
          ++n > blocks.size()) {
        problem("free list " + std::to_string(c) + " holds a bad block at " + std::to_string(b));
        break;
      }
      i->mark = 1;
    }
  }
  // `shared`: the block may also be owned elsewhere (an entry of a table in flight).
  auto own = [&](u64 payload, const char* what, bool shared) {
    auto* i = find(payload);
    if (i == nullptr || i->state != block_used) {
      problem(std::string{what} + " at " + std::to_string(payload) + " is not a block in use");
      return false;
    }
    if (i->mark == 2 && shared) return false;
    if (i->mark != 0)
      problem(std::string{what} + " at " + std::to_string(payload) + " is owned twice");
    i->mark = 2;
    return true;
  };
  auto own_table = [&](u64 t, bool shared_entries, auto&& each_entry) {
    if (t == 0 || !own(t, "a table", false)) return;
    auto v = table_at(s, t);
    for (u64 i = 0; i < v.cap; ++i) {
      u64 e = v.slots[i].load();
      if (e > tombstone && own(e, "an entry", shared_entries)) each_entry(e);
    }
  };
  auto own_map = [&](manager_map_state& st, auto&& each_entry) {
    own_table(st.table.load(), false, each_entry);
    for (word* w : {&st.pending_entry_new, &st.pending_entry_old, &st.pending_log})
      if (u64 p = w->load(); p != 0) own(p, "a block in an intent slot", true);
    u64 nt = st.pending_table_new.load();
    if (nt != 0 && nt != st.table.load()) own(nt, "a new table in an intent slot", false);
    u64 ot = st.pending_table_old.load();
    if (ot != 0 && ot != st.table.load()) own_table(ot, true, [](u64) {});
  };
  own_map(hdr->directory, [&](u64 e) {
    auto ev = entry_at(s, e);
    auto* rec = std::launder(reinterpret_cast<object_record*>(ev.value_ptr));
    if (rec->kind == static_cast<u32>(manager_kind::list)) {
      auto& ls = *std::launder(reinterpret_cast<manager_list_state*>(rec->state));
      u64 cur = ls.array.load();
      // The published array owns its slots below the length; slots above it and the other
      // arrays hold either shared elements or elements in flight.
      auto own_array = [&](u64 arr, bool current) {
        if (arr == 0 || !own(arr, "a list array", false)) return;
        auto v = list_array_at(s, arr);
        u64 len = v.len->load();
        for (u64 i = 0; i < v.cap; ++i)
          if (u64 x = v.slots[i].load(); x != 0) own(x, "a list element", !current || i >= len);
      };
      own_array(cur, true);
      if (u64 arr = ls.pending_array_new.load(); arr != 0 && arr != cur) {
        if (ls.pending_array_init.load() == arr)
          own_array(arr, false);
        else
          own(arr, "a new list array in an intent slot", false);
      }
      if (u64 arr = ls.pending_array_old.load(); arr != 0 && arr != cur) own_array(arr, false);
      for (word* w : {&ls.pending_item_new, &ls.pending_item_old})
        if (u64 x = w->load(); x != 0) own(x, "a list element in an intent slot", true);
    } else {
      own_map(*std::launder(reinterpret_cast<manager_map_state*>(rec->state)), [](u64) {});
    }
  });
  for (auto& [p, i] : blocks) {
    if (i.state == block_free && i.mark != 1)
      problem("free block at " + std::to_string(p) + " is on no free list (leaked)");
    if (i.state == block_used && i.mark != 2)
      problem("block in use at " + std::to_string(p) + " is owned by nothing (leaked)");
    if (i.state != block_free && i.state != block_used)
      problem("block at " + std::to_string(p) + " has a bad state");
  }
  return problems;
}

// -- manager_core: the segment ------------------------------------------------------------------

void manager_fault_after(std::uint64_t points) noexcept {
  fault_countdown.store(points, std::memory_order_relaxed);
}

void manager_core::check_name(std::string_view name) {
  auto bad = [&](const std::string& why) {
    throw segment_error(EINVAL, "invalid manager name " + shm_quoted(name) + ": " + why);
  };
  if (name.empty()) bad("it is empty; give the manager a name");
  if (name.size() > 255)
    bad("it has " + std::to_string(name.size()) + " bytes, at most 255 are allowed");
  if (name.find('/') != std::string_view::npos)
    bad("it contains '/'; give the name without a leading slash");
  if (name.find('\0') != std::string_view::npos) bad("it contains a NUL character");
  if (name == "." || name == "..") bad("\".\" and \"..\" are not names");
}

std::shared_ptr<manager_core> manager_core::create(std::string_view name,
                                                   const manager_options& options) {
  check_name(name);
  std::size_t initial = round_page(
      std::max({options.initial_size, min_initial, static_cast<std::size_t>(heap_start) + page}));
  if (options.max_size > (std::size_t{1} << 46))
    throw value_error("manager_options::max_size of " + std::to_string(options.max_size) +
                      " bytes is above the limit of 64 TiB; ask for less");
  std::size_t reserved = std::max(initial, round_page(options.max_size));
  std::string path = shm_path(name);
  // The tracker starts before the name exists, so no fork falls between creating the name and
  // registering it.
  if (options.track) shm_tracker_start();
  // O_EXCL: never adopt an existing segment. glibc adds O_NOFOLLOW and O_CLOEXEC.
  int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST)
      throw_shm_error(err, "cannot create manager " + shm_quoted(name) +
                               ": a segment of that name exists; attach to it, choose another "
                               "name, or unlink it");
    throw_shm_error(err, "cannot create manager " + shm_quoted(name) + " (shm_open)");
  }
  struct stat st {};
  bool registered = false;
  auto fail = [&](int err, const std::string& what) {
    if (registered)
      shm_tracker_unregister(name, static_cast<std::uint64_t>(st.st_ino),
                             static_cast<std::uint64_t>(st.st_dev));
    ::shm_unlink(path.c_str());
    ::close(fd);
    throw_shm_error(err, "cannot create manager " + shm_quoted(name) + ": " + what);
  };
  if (::fstat(fd, &st) != 0) fail(errno, "fstat failed");
  if (options.track) {
    try {
      shm_tracker_register(name, static_cast<std::uint64_t>(st.st_ino),
                           static_cast<std::uint64_t>(st.st_dev));
      registered = true;
    } catch (const segment_error& e) {
      fail(e.errno_value(), e.what());
    }
  }
  // The umask may have taken bits from the mode, never added any; set exactly 0600 anyway.
  if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) fail(errno, "fchmod failed");
  if (::ftruncate(fd, static_cast<off_t>(reserved)) != 0)
    fail(errno, "cannot reserve " + std::to_string(reserved) + " bytes (ftruncate)");
  if (::fallocate(fd, 0, 0, static_cast<off_t>(initial)) != 0 && errno != EOPNOTSUPP)
    fail(errno, "cannot commit " + std::to_string(initial) +
                    " bytes (fallocate): /dev/shm is full; free memory there or ask for a "
                    "smaller manager_options::initial_size");
  void* mem = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) fail(errno, "cannot map " + std::to_string(reserved) + " bytes (mmap)");
  auto* base = static_cast<std::byte*>(mem);
  auto* h = reinterpret_cast<manager_header*>(base);
  // The creator's identity first, so an attacher can tell a slow creator from a dead one.
  h->creator_pid = ::getpid();
  h->creator_start = process_start_time(::getpid()).value_or(0);
  h->creator_uid = ::geteuid();
  h->magic = manager_magic;
  h->version = manager_version;
  h->layout = layout_fingerprint;
  h->reserved = reserved;
  h->heap_start = heap_start;
  try {
    init_robust_mutex(&h->alloc.mtx);
    init_map_state(::new (&h->directory) manager_map_state{});
  } catch (const error& e) {
    ::munmap(mem, reserved);
    fail(EINVAL, e.what());
  }
  h->alloc.top.store(heap_start, std::memory_order_relaxed);
  h->alloc.committed.store(initial, std::memory_order_relaxed);
  h->ready.store(ready_value, std::memory_order_release);
  tandem::detail::futex_wake_all(h->ready, true);
  return std::make_shared<manager_core>(std::string{name}, fd, base, reserved);
}

std::shared_ptr<manager_core> manager_core::attach(std::string_view name) {
  check_name(name);
  std::string path = shm_path(name);
  int fd = ::shm_open(path.c_str(), O_RDWR, 0);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT)
      throw_shm_error(err,
                      "cannot attach manager " + shm_quoted(name) +
                          ": no segment has that name (it was never created, or was unlinked)");
    throw_shm_error(err, "cannot attach manager " + shm_quoted(name) + " (shm_open)");
  }
  const std::string what = "cannot attach manager " + shm_quoted(name) + ": ";
  std::byte* base = nullptr;
  std::size_t total = 0;
  auto refuse = [&](int err, const std::string& why) {
    if (base != nullptr) ::munmap(base, total);
    ::close(fd);
    throw_shm_error(err, what + why);
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) refuse(errno, "fstat failed");
  if (st.st_uid != ::geteuid())
    refuse(EACCES, "it belongs to user " + std::to_string(st.st_uid) + ", not to this user (" +
                       std::to_string(::geteuid()) +
                       "); only segments of one's own user are attached");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    refuse(EACCES, std::string{"other users may write to it (mode "} + mode +
                       "); managers are created with mode 0600 and no other is attached");
  }
  if (!S_ISREG(st.st_mode)) refuse(EINVAL, "it is not a regular file");
  const tandem::timeout deadline{init_wait};
  // A creator sizes the file right after creating it, before it can say who it is; the kernel
  // cannot wait for a file's size, so poll it with a growing back-off, bounded.
  const tandem::timeout size_deadline{std::chrono::milliseconds{1000}};
  auto backoff = std::chrono::microseconds{50};
  while (static_cast<std::size_t>(st.st_size) < heap_start) {
    if (size_deadline.expired())
      refuse(ETIMEDOUT, "it has " + std::to_string(st.st_size) +
                            " bytes, too few for a manager, and did not grow within 1 s: its "
                            "creator died while making it, or it is not a manager; unlink it");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds{10'000});
    if (::fstat(fd, &st) != 0) refuse(errno, "fstat failed");
  }
  total = static_cast<std::size_t>(st.st_size);
  void* mem = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) refuse(errno, "mmap of " + std::to_string(total) + " bytes failed");
  base = static_cast<std::byte*>(mem);
  auto* h = reinterpret_cast<manager_header*>(base);
  // Wait (futex, in slices) for the creator to finish; a dead creator fails at once.
  for (;;) {
    u32 r = h->ready.load(std::memory_order_acquire);
    if (r == ready_value) break;
    if (h->magic != 0 && h->magic != manager_magic)
      refuse(EINVAL, "it is not a tandem manager (wrong magic number)");
    if (!creator_alive(h->creator_pid, h->creator_start))
      refuse(ETIMEDOUT, "its creator (pid " + std::to_string(h->creator_pid) +
                            ") died before finishing it; unlink it and create it again");
    if (deadline.expired())
      refuse(ETIMEDOUT, "its creator did not finish initialising it within " +
                            std::to_string(init_wait.count()) + " ms; unlink it if it is stale");
    tandem::timeout::time_point slice_end = tandem::timeout::clock::now() + check_slice;
    tandem::timeout slice{std::min(deadline.deadline(), slice_end)};
    tandem::detail::futex_wait(h->ready, r, slice, true);
  }
  if (h->magic != manager_magic) refuse(EINVAL, "it is not a tandem manager (wrong magic number)");
  if (h->version != manager_version)
    refuse(EINVAL, "it has layout version " + std::to_string(h->version) +
                       ", this program reads version " + std::to_string(manager_version) +
                       "; build both programs with one tandem");
  if (h->layout != layout_fingerprint || h->heap_start != heap_start)
    refuse(EINVAL, "it was made by a program with another memory layout (another C library or "
                   "architecture); attach it from programs built alike");
  if (h->reserved != total)
    refuse(EINVAL, "its header says " + std::to_string(h->reserved) + " bytes but the file has " +
                       std::to_string(total) + ": it is corrupt");
  return std::make_shared<manager_core>(std::string{name}, fd, base, total);
}

void manager_core::unlink(std::string_view name) {
  check_name(name);
  std::string path = shm_path(name);
  // Unlinking ends this process's ownership, if it has any (the tracker would otherwise remove a
  // later segment of the same name only if it were the same file, which it checks).
  struct stat st {};
  if (::stat(("/dev/shm" + path).c_str(), &st) == 0)
    shm_tracker_unregister(name, static_cast<std::uint64_t>(st.st_ino),
                           static_cast<std::uint64_t>(st.st_dev));
  if (::shm_unlink(path.c_str()) != 0) {
    int err = errno;
    if (err == ENOENT)
      throw_shm_error(err, "cannot unlink manager " + shm_quoted(name) +
                               ": no segment has that name (already unlinked?)");
    throw_shm_error(err, "cannot unlink manager " + shm_quoted(name) + " (shm_unlink)");
  }
}

manager_core::~manager_core() {
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
}

} // namespace tandem::mp::detail
