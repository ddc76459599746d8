// tandem::mp::manager: Python's multiprocessing.Manager as a named shared-memory segment holding
// typed shared containers (dict<K, V> and list<T>), found or created by name, usable by processes
// with no common ancestor, and robust against a process killed (SIGKILL) in the middle of any
// operation.
//
//   // process A
//   auto m = tandem::mp::manager::create("pipeline");          // /dev/shm/pipeline, mode 0600
//   auto done = m.dict<std::string, std::int64_t>("done");
//   done.set("parse", 1);
//
//   // process B (any process of the same user)
//   auto m = tandem::mp::manager::attach("pipeline");
//   auto done = m.dict<std::string, std::int64_t>("done");    // the same dict
//   done.get("parse");                                          // 1
//   ...
//   tandem::mp::manager::unlink("pipeline");                    // when everyone is done
//
// Differences from Python's Manager: there is no server process and no proxies. The containers
// live in the segment itself and every process operates on them directly (a call is a mutex and
// a copy, not a round trip through a socket). Objects are named (`m.dict<K, V>("name")` returns
// the same dict to every process that asks with the same types) and live as long as the segment.
// The segment lives until it is unlinked (any process may unlink it; processes that have it
// mapped keep using it), like a named mp::shared_memory, or until its creator dies: the creator's
// tracker removes it then, even after SIGKILL (manager_options::track, on by default), as
// Python's manager goes with its server process. A process that only attached never removes it.
//
// Growth: the segment's file is sized once to its reservation (manager_options::max_size,
// default 1 GiB) and mapped whole by every process; on tmpfs only the pages in use are memory.
// The allocator commits memory (fallocate) in steps of at least 1 MiB as the containers grow, so
// processes never remap and a full /dev/shm is a segment_error (ENOSPC) from the call that needs
// memory, never a SIGBUS. Storing past the reservation is a segment_error (ENOSPC) too.
//
// Robustness: see <tandem/mp/detail/manager_dict.hpp> for what a caller sees after a process
// died in the middle of an operation (the container is repaired by the next call, which throws
// owner_died_error without doing its own work: call it again), and
// <tandem/mp/detail/manager_core.hpp> for how.
//
// Security: the segment is created with O_EXCL and mode 0600 whatever the umask; attach()
// refuses a segment owned by another user or writable by group or others.
//
// Thread- and process-safety: a manager handle is not synchronized (do not move or destroy it
// while another thread uses it); the containers it returns may be used from any thread of any
// process. Handles are move-only; containers keep the mapping alive after their manager handle
// is gone.
#pragma once

#include <tandem/mp/detail/manager_codec.hpp>
#include <tandem/mp/detail/manager_core.hpp>
#include <tandem/mp/detail/manager_dict.hpp>
#include <tandem/mp/detail/manager_list.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::mp {

/// A named shared-memory segment of typed shared containers. See the file comment.
class manager {
public:
  /// How long attach() waits for a live creator that has not finished initialising the segment
  /// (a creator that died is noticed within check_slice, 20 ms).
  static constexpr std::chrono::milliseconds init_wait = detail::manager_core::init_wait;

  // -- construction ---------------------------------------------------------------------------

  /// An empty handle; only operator bool may be used on it.
  manager() noexcept = default;

  /// Creates the segment `name` (no leading '/') with mode 0600, failing if the name exists.
  /// Commits options.initial_size bytes and reserves options.max_size. Does not block beyond
  /// system calls.
  /// Throws segment_error with EINVAL for an invalid name (empty, '/' or NUL in it, "." or "..",
  /// longer than 255 bytes: checked before any system call), EEXIST when the name exists,
  /// ENOSPC when /dev/shm cannot hold initial_size, or the errno of a failed system call;
  /// value_error when options.max_size is above 64 TiB. A failed create leaves no name behind.
  static manager create(std::string_view name, const manager_options& options = {});

  /// Maps the existing segment `name`. Blocks only while its creator is still initialising it:
  /// a futex wait in slices of 20 ms that fails as soon as the creator is found dead, and after
  /// init_wait at the latest. Throws segment_error with EINVAL for an invalid name (before any
  /// system call) or a segment that is not a manager of this layout (wrong magic number, another
  /// version or memory layout, a size that differs from its header's), ENOENT when no segment
  /// has that name, EACCES when it belongs to another user or is writable by group or others,
  /// ETIMEDOUT when its creator died before finishing it (unlink it and create it again).
  static manager attach(std::string_view name);

  /// Removes the name `name`: no process can attach it any more; processes that have it mapped
  /// keep using it, and its memory is freed when the last one unmaps it. Throws segment_error
  /// with EINVAL for an invalid name, ENOENT when no segment has that name.
  static void unlink(std::string_view name) { detail::manager_core::unlink(name); }

  /// Removes this segment's name, as unlink(name()). Throws segment_error (ENOENT) when it was
  /// unlinked already, usage_error for an empty handle.
  void unlink() const { unlink(core().name()); }

  manager(manager&&) noexcept = default;
  manager& operator=(manager&&) noexcept = default;
  manager(const manager&) = delete;
  manager& operator=(const manager&) = delete;

  /// Unmaps this handle's view (containers taken from it keep theirs). Never unlinks.
  ~manager() = default;

  // -- objects --------------------------------------------------------------------------------

  /// The dict named `name`, created empty when there is none. Every process that asks for the
  /// same name with the same K and V gets the same dict.
  /// Throws value_error when `name` is empty or names an object of another kind or other types
  /// (the message says which), owner_died_error when a process died while creating an object
  /// (the manager's directory was repaired: call again), segment_error (ENOSPC) when the
  /// segment is full.
  template <class K, class V>
  mp::dict<K, V> dict(std::string_view name) const {
    static const std::string type_name =
        "K = " + detail::manager_type_name<K>() + ", V = " + detail::manager_type_name<V>();
    auto tag = detail::manager_type_tag(detail::manager_kind::dict, {&typeid(K), &typeid(V)});
    auto* state = core().find_or_create(name, detail::manager_kind::dict, tag, type_name);
    return mp::dict<K, V>{
        detail::manager_map{core_, static_cast<detail::manager_map_state*>(state)},
        std::string{name}};
  }

  /// The list named `name`, created empty when there is none; every process that asks for the
  /// same name with the same T gets the same list. Throws as dict<K, V>(name).
  template <class T>
  mp::list<T> list(std::string_view name) const {
    static const std::string type_name = "T = " + detail::manager_type_name<T>();
    auto tag = detail::manager_type_tag(detail::manager_kind::list, {&typeid(T)});
    auto* state = core().find_or_create(name, detail::manager_kind::list, tag, type_name);
    return mp::list<T>{detail::manager_list{core_, static_cast<detail::manager_list_state*>(state)},
                       std::string{name}};
  }

  /// True when an object named `name` exists.
  bool contains(std::string_view name) const { return core().contains(name); }

  /// The names of the objects, in creation order.
  std::vector<std::string> names() const { return core().names(); }

  // -- observers ------------------------------------------------------------------------------

  /// The segment's name (without a leading '/'); empty for an empty handle.
  const std::string& name() const noexcept {
    static const std::string none;
    return core_ ? core_->name() : none;
  }

  /// The reservation in bytes: the most the segment can hold, and its file's size.
  std::size_t reserved_size() const noexcept { return core_ ? core_->reserved_size() : 0; }

  /// Bytes of memory committed so far (what the segment costs in /dev/shm).
  std::size_t committed_size() const noexcept { return core_ ? core_->committed_size() : 0; }

  /// Bytes the allocator has handed out so far (its high-water mark; freed blocks are reused).
  std::size_t used_size() const noexcept { return core_ ? core_->used_size() : 0; }

  /// The pid of the process that created the segment.
  int creator_pid() const noexcept { return core_ ? core_->creator_pid() : 0; }

  /// Audits the segment's heap (for diagnostics and tests): returns the problems found, empty
  /// when every block is either free or owned by exactly one container structure. Call it while
  /// no process changes the manager. Throws owner_died_error when the manager's directory
  /// needed a repair (call again).
  std::vector<std::string> check_heap() const { return core().check_heap(); }

  explicit operator bool() const noexcept { return static_cast<bool>(core_); }

private:
  explicit manager(std::shared_ptr<detail::manager_core> core) noexcept : core_(std::move(core)) {}

  detail::manager_core& core() const {
    if (!core_) throw usage_error("an empty tandem::mp::manager handle was used");
    return *core_;
  }

  std::shared_ptr<detail::manager_core> core_;
};

inline manager manager::create(std::string_view name, const manager_options& options) {
  return manager{detail::manager_core::create(name, options)};
}

inline manager manager::attach(std::string_view name) {
  return manager{detail::manager_core::attach(name)};
}

} // namespace tandem::mp
