// detail::manager_core, detail::manager_map and detail::manager_list: the byte-level core of
// tandem::mp::manager (no CAF). The typed containers (<tandem/mp/detail/manager_dict.hpp>,
// <tandem/mp/detail/manager_list.hpp>) turn their keys, values and elements into bytes and call
// these.
//
// The segment. A manager is one named POSIX shared-memory object (/dev/shm/<name>), created with
// O_CREAT | O_EXCL and mode 0600 whatever the umask. It is sized once, at creation, to its whole
// *reservation* (manager_options::max_size) with ftruncate, and every process maps all of it; on
// tmpfs a file's size costs nothing, only the pages written are memory. The allocator hands out
// memory below a *committed* mark and raises that mark with fallocate() in steps (at least 1 MiB
// or a quarter of what is committed), so running out of memory in /dev/shm is an error
// (segment_error, ENOSPC) at the allocation that needs the memory, never a SIGBUS later. Offsets
// in the segment never change, so the segment grows while processes use it without any of them
// remapping anything.
//
// Layout: the first page holds the header (magic number, layout version, a `ready` futex word,
// the reservation, the creator's identity), the allocator's state and the directory of named
// objects; the heap follows. Every reference inside the segment is an offset from its start.
//
// Robustness. Each structure has a robust, process-shared pthread mutex (PTHREAD_MUTEX_ROBUST):
// when a process dies holding one, the kernel releases it and the next locker is told
// (EOWNERDEAD). Every change is published by a single 8-byte store (a new entry is built off to
// the side, then linked; an old entry is unlinked, then freed), and every block in flight is
// recorded first in an *intent slot* of the structure, so the next locker can tell what the dead
// process was doing and roll it back (the block was never linked: free it) or forward (the block
// was unlinked: free it; the allocator's own step: finish it). See manager_core.cpp for each
// operation's steps.
//
// Thread- and process-safety: every manager_map member may be called concurrently from any thread
// of any process mapping the segment. A manager_core is shared (std::shared_ptr) by the handles
// of one process.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::mp {

/// How mp::manager::create sizes a manager's segment.
struct manager_options {
  /// Memory committed at creation (fallocate), in bytes; rounded up to a page, at least 64 KiB.
  std::size_t initial_size = std::size_t{1} << 20;

  /// The reservation: the size of the segment's file and of every process's mapping, the most
  /// the manager can ever hold. Only what is used costs memory. Rounded up to a page, at least
  /// initial_size.
  std::size_t max_size = std::size_t{1} << 30;

  /// Register the segment with this process's tracker (as mp::shared_memory does): when the
  /// creating process dies, even by SIGKILL, before unlinking it, the tracker removes its name,
  /// as Python's manager goes with its server process. With false, only unlink() removes it.
  bool track = true;
};

} // namespace tandem::mp

namespace tandem::mp::detail {

/// The kinds of objects a manager holds.
enum class manager_kind : std::uint32_t { dict = 1, list = 2 };

/// Bytes: a key or a value.
using manager_bytes = std::span<const std::byte>;

/// Receives one value (or key and value) under the structure's mutex. May throw: the operation
/// then changes nothing.
using manager_value_fn = void (*)(void* ctx, manager_bytes value);
using manager_item_fn = void (*)(void* ctx, manager_bytes key, manager_bytes value);
/// A predicate on one stored element (equality for index, count, remove).
using manager_match_fn = bool (*)(void* ctx, manager_bytes element);
/// A strict weak order on stored elements (sort).
using manager_less_fn = bool (*)(void* ctx, manager_bytes a, manager_bytes b);

struct manager_map_state;
struct manager_list_state;

/// One mapped manager segment (see the file comment).
class manager_core {
public:
  /// How long attach() waits for a live creator to finish initialising the segment. A dead
  /// creator is noticed within check_slice.
  static constexpr std::chrono::milliseconds init_wait{5000};
  static constexpr std::chrono::milliseconds check_slice{20};

  /// Creates the segment `name` (see mp::manager::create for the contract).
  static std::shared_ptr<manager_core> create(std::string_view name,
                                              const manager_options& options);

  /// Maps the existing segment `name` (see mp::manager::attach).
  static std::shared_ptr<manager_core> attach(std::string_view name);

  /// Removes the name `name` (see mp::manager::unlink).
  static void unlink(std::string_view name);

  /// Throws segment_error (EINVAL) for a name that cannot name a segment. No system call.
  static void check_name(std::string_view name);

  manager_core(const manager_core&) = delete;
  manager_core& operator=(const manager_core&) = delete;
  /// Unmaps and closes; never unlinks, never throws.
  ~manager_core();

  // -- named objects --------------------------------------------------------------------------

  /// The state of the object `name`, created (empty) when there is none. Throws value_error when
  /// an object of that name exists with another kind or type tag, owner_died_error when a
  /// process died while changing the directory (it was repaired; call again), segment_error
  /// (ENOSPC) when the segment is full.
  /// The result is a manager_map_state* for a dict, a manager_list_state* for a list.
  void* find_or_create(std::string_view name, manager_kind kind, std::uint64_t type_tag,
                       std::string_view type_name);

  /// The names of the objects, in creation order.
  std::vector<std::string> names();

  /// True when an object `name` exists.
  bool contains(std::string_view name);

  // -- observers ------------------------------------------------------------------------------

  const std::string& name() const noexcept { return name_; }
  /// The reservation (the file's size).
  std::size_t reserved_size() const noexcept { return size_; }
  /// Bytes committed (fallocated) so far.
  std::size_t committed_size() const noexcept;
  /// Bytes handed out by the allocator so far (the heap's high-water mark).
  std::size_t used_size() const noexcept;
  /// The creator's pid.
  int creator_pid() const noexcept;

  /// Audits the heap: every block is on a free list or owned by exactly one structure (a
  /// table, an entry, or an intent slot), and every structure's blocks are in use. Returns the
  /// problems found (empty when consistent). Holds the directory's and the allocator's mutexes,
  /// but not the containers': call it while no process changes the manager. Throws
  /// owner_died_error when the directory needed a repair (call again).
  std::vector<std::string> check_heap();

  // -- internals used by manager_map (manager_core.cpp) ---------------------------------------

  std::byte* base() const noexcept { return base_; }
  int fd() const noexcept { return fd_; }

  manager_core(std::string name, int fd, std::byte* base, std::size_t size) noexcept
      : name_(std::move(name)), fd_(fd), base_(base), size_(size) {}

private:
  std::string name_;
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

/// For fault tests: the calling process kills itself with SIGKILL at the `points`-th critical
/// point (a store of a change to a structure) it reaches from now on; 0 turns this off.
void manager_fault_after(std::uint64_t points) noexcept;

/// A handle of one hash map of bytes in a manager segment: the engine of mp::dict. Keys are
/// compared by their bytes. Iteration order is insertion order (a replaced value keeps its key's
/// place; a key erased and set again goes last), as Python's dict.
///
/// Every member takes the map's mutex for its whole duration; callbacks run under it. Every
/// member throws owner_died_error, without doing anything, when it found that a process died
/// while changing this map: the map was repaired first (it holds what it held before or after
/// that process's last operation), and the call may simply be repeated. Members that store
/// throw segment_error (ENOSPC) when the segment is full, and then change nothing.
class manager_map {
public:
  manager_map() noexcept = default;
  manager_map(std::shared_ptr<manager_core> core, manager_map_state* state) noexcept
      : core_(std::move(core)), state_(state) {}

  /// Calls `fn(ctx, value)` with the value of `key`; false (and no call) when it is missing.
  bool get(manager_bytes key, manager_value_fn fn, void* ctx) const;
  bool contains(manager_bytes key) const;
  std::size_t size() const;
  /// Sets `key` to `value`.
  void set(manager_bytes key, manager_bytes value);
  /// Sets every pair, in order, as one operation: a process killed in the middle leaves the map
  /// with all pairs set or none (the next locker finishes the update).
  void update(std::span<const std::pair<manager_bytes, manager_bytes>> pairs);
  /// Erases `key`; false when it is missing. With `fn`, first calls it with the value.
  bool erase(manager_bytes key, manager_value_fn fn = nullptr, void* ctx = nullptr);
  /// Sets `key` to `value` unless it is there; then calls `fn` with the value it now has.
  /// Returns true when it inserted.
  bool setdefault(manager_bytes key, manager_bytes value, manager_value_fn fn, void* ctx);
  /// Calls `fn` with the last inserted item, then erases it; false when the map is empty.
  bool popitem(manager_item_fn fn, void* ctx);
  /// Erases every item (one store publishes the empty map).
  void clear();
  /// Calls `fn` for each item, in insertion order, all under the mutex: a consistent snapshot.
  void items(manager_item_fn fn, void* ctx) const;

  /// How many times a process died while changing this map (repairs made).
  std::uint64_t repairs() const;

  explicit operator bool() const noexcept { return state_ != nullptr; }

private:
  std::shared_ptr<manager_core> core_;
  manager_map_state* state_ = nullptr;
};

/// A handle of one list of byte strings in a manager segment: the engine of mp::list. The
/// elements live in an array of offsets that is published by one store: the length word for an
/// append that fits, or the array's root word for anything else (a new array, copied on write).
///
/// Indexes follow Python: a negative index counts from the end. Every member takes the list's
/// mutex for its whole duration; callbacks run under it. Like manager_map, every member throws
/// owner_died_error without doing anything after it repaired the list from a dead writer, and
/// members that store throw segment_error (ENOSPC) when the segment is full, changing nothing.
class manager_list {
public:
  manager_list() noexcept = default;
  manager_list(std::shared_ptr<manager_core> core, manager_list_state* state) noexcept
      : core_(std::move(core)), state_(state) {}

  std::size_t size() const;
  /// Calls `fn` with element `index`. Throws value_error when it is out of range.
  void get(std::int64_t index, manager_value_fn fn, void* ctx) const;
  /// Replaces element `index`. Throws value_error when it is out of range.
  void set(std::int64_t index, manager_bytes element);
  /// Inserts `elements` before `index` (clamped to [0, size], as Python's insert), as one
  /// operation. Appending is insert(size(), ...).
  void insert(std::int64_t index, std::span<const manager_bytes> elements);
  /// Calls `fn` with element `index`, then removes it. Throws value_error when the list is
  /// empty or `index` is out of range.
  void pop(std::int64_t index, manager_value_fn fn, void* ctx);
  /// The first index in [start, stop) (Python's clamped bounds) whose element matches, or -1.
  std::int64_t find(manager_match_fn match, void* ctx, std::int64_t start, std::int64_t stop) const;
  /// How many elements match.
  std::size_t count(manager_match_fn match, void* ctx) const;
  /// Removes the first matching element; false when none matches.
  bool remove(manager_match_fn match, void* ctx);
  /// Calls `fn(ctx, {}, element)` for each element of the slice [start:stop:step] (Python's
  /// rules, step != 0), under the mutex: a consistent snapshot. Throws value_error for step 0.
  void slice(std::int64_t start, std::int64_t stop, std::int64_t step, manager_item_fn fn,
             void* ctx) const;
  /// Sorts the list (stable) by `less`, as one operation. If `less` throws, nothing changed.
  void sort(manager_less_fn less, void* ctx);
  /// Removes every element (one store publishes the empty list).
  void clear();
  std::uint64_t repairs() const;

  explicit operator bool() const noexcept { return state_ != nullptr; }

private:
  std::shared_ptr<manager_core> core_;
  manager_list_state* state_ = nullptr;
};

} // namespace tandem::mp::detail
