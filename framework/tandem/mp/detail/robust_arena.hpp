// The default arena of tandem::mp's synchronization primitives, and the handles that share
// objects built in it between processes.
//
// An arena is an anonymous shared-memory segment (detail::shm_segment: a memfd, so nothing is
// left in the file system) of 16 MiB of address space, of which only the pages used are ever
// allocated. It holds reference-counted blocks, each carrying one object (a lock, a condition,
// ...). Every process has one *default arena*, made at the first `create()` (mp::lock::create(),
// mp::semaphore::create(3), ...); a fork() child inherits its parent's, so the same objects are
// visible on both sides. A child started with spawn or forkserver receives the arena's descriptor
// and the block's offset as a process argument (process_arg<arena_handle<T>>) and maps the arena
// once, whatever the number of handles it receives.
//
// arena_handle<T> is a shared, copyable reference to one such object: a copy is one more
// reference, the last reference destroys the object and frees its block. References count in the
// process that took them: the handles a fork() child inherits through the fork are not references
// of their own (the child may copy them to take one), so the parent must keep a handle until the
// fork child is done with the object (join the child first). A handle passed to a spawn or
// forkserver child is a reference the parent took for the child when it started it. A process
// that dies keeps its references: the memory of such objects is returned only when the last
// process mapping the arena exits.
//
//   auto l = tandem::mp::lock::create();     // lock::handle = arena_handle<mp::lock>
//   tandem::mp::process p{worker, l};         // void worker(tandem::mp::lock::handle l);
//   p.start();
//   std::scoped_lock guard{*l};
//
// Thread-safety: arena operations may be called from any thread of any process mapping the
// arena; one handle object must not be used by several threads while one of them modifies it.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/process_arg.hpp>
#include <tandem/mp/detail/robust_word.hpp>
#include <tandem/mp/detail/shm_segment.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::mp::detail {

/// One arena mapped in this process (see the file comment). Arenas stay mapped until the process
/// exits.
class arena {
public:
  /// This process's default arena, made on first use. Throws segment_error when it cannot be.
  static arena& default_arena();

  /// The arena behind descriptor `fd`, taking ownership of `fd` (closed when the arena was mapped
  /// here already). Throws segment_error when `fd` is not an arena.
  static arena& attach(int fd);

  arena(const arena&) = delete;
  arena& operator=(const arena&) = delete;

  /// Allocates a block for an object of `size` bytes and `type_key`, with one reference; returns
  /// its offset. Throws segment_error (ENOMEM) when the arena is full or the object too large.
  std::uint64_t allocate(std::size_t size, std::uint64_t type_key);

  /// Frees the block at `offset` (its object already destroyed).
  void deallocate(std::uint64_t offset) noexcept;

  /// Takes one more reference to the block at `offset`.
  void add_ref(std::uint64_t offset) noexcept;

  /// Drops one reference; true when it was the last (the caller destroys the object, then calls
  /// deallocate()).
  bool drop_ref(std::uint64_t offset) noexcept;

  /// The object of the block at `offset`. Throws bad_message_error when `offset` is not a live
  /// block holding an object of `type_key`.
  void* object(std::uint64_t offset, std::uint64_t type_key) const;

  /// The object of a block known to be live.
  void* object_unchecked(std::uint64_t offset) const noexcept;

  /// The arena's descriptor (owned by the arena; close-on-exec).
  int fd() const noexcept { return seg_.fd(); }

  /// Maps `seg` as an arena; use default_arena() or attach().
  explicit arena(shm_segment seg) noexcept : seg_(std::move(seg)) {}

private:
  shm_segment seg_;
};

/// A key telling the object types in arena blocks apart: a hash of the type's name, size and
/// alignment (the same in every process running the same program).
template <class T>
constexpr std::uint64_t arena_type_key() noexcept {
  std::string_view name = __PRETTY_FUNCTION__;
  std::uint64_t h = 0xcbf2'9ce4'8422'2325ull;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100'0000'01b3ull;
  return h ^ (static_cast<std::uint64_t>(sizeof(T)) << 8) ^ alignof(T);
}

/// A shared reference to a T in an arena (see the file comment). Copyable and movable; a
/// moved-from handle is empty.
template <class T>
class arena_handle {
public:
  /// An empty handle.
  arena_handle() noexcept = default;

  /// Builds a T from `args` in the default arena. Throws segment_error when the arena cannot be
  /// made or is full, and whatever T's constructor throws. Objects are 16-byte aligned: a T with
  /// a stricter alignment does not compile.
  template <class... Args>
  static arena_handle make(Args&&... args) {
    static_assert(alignof(T) <= 16,
                  "tandem::mp: objects in the arena of synchronization primitives are aligned to "
                  "16 bytes; a type with a stricter alignment (alignas(32) or more) cannot live "
                  "there: wrap it in a type of alignment 16 or less, or use mp::shared_memory");
    auto& a = arena::default_arena();
    auto offset = a.allocate(sizeof(T), arena_type_key<T>());
    try {
      ::new (a.object_unchecked(offset)) T(std::forward<Args>(args)...);
    } catch (...) {
      a.deallocate(offset);
      throw;
    }
    return arena_handle{a, offset};
  }

  /// Adopts one reference to the T at `offset` of `a` (already taken for this process).
  static arena_handle adopt(arena& a, std::uint64_t offset) {
    a.object(offset, arena_type_key<T>()); // validates
    return arena_handle{a, offset};
  }

  arena_handle(const arena_handle& other) noexcept
      : arena_(other.arena_), offset_(other.offset_), pid_(self_pid()) {
    if (arena_ != nullptr) arena_->add_ref(offset_);
  }
  arena_handle& operator=(const arena_handle& other) noexcept {
    if (this != &other) {
      arena_handle copy{other};
      swap(copy);
    }
    return *this;
  }
  arena_handle(arena_handle&& other) noexcept
      : arena_(std::exchange(other.arena_, nullptr)), offset_(other.offset_), pid_(other.pid_) {}
  arena_handle& operator=(arena_handle&& other) noexcept {
    arena_handle moved{std::move(other)};
    swap(moved);
    return *this;
  }
  ~arena_handle() { reset(); }

  /// Drops this handle's reference (the last one destroys the object); the handle becomes empty.
  void reset() noexcept {
    auto* a = std::exchange(arena_, nullptr);
    // A handle this process inherited through fork() holds no reference of its own.
    if (a == nullptr || pid_ != self_pid()) return;
    if (a->drop_ref(offset_)) {
      static_cast<T*>(a->object_unchecked(offset_))->~T();
      a->deallocate(offset_);
    }
  }

  void swap(arena_handle& other) noexcept {
    std::swap(arena_, other.arena_);
    std::swap(offset_, other.offset_);
    std::swap(pid_, other.pid_);
  }

  // -- access ---------------------------------------------------------------------------------

  T* get() const noexcept {
    return arena_ == nullptr ? nullptr : static_cast<T*>(arena_->object_unchecked(offset_));
  }
  T* operator->() const noexcept { return get(); }
  T& operator*() const noexcept { return *get(); }
  explicit operator bool() const noexcept { return arena_ != nullptr; }

  /// The arena's descriptor and the object's offset in it (what a spawn child receives).
  int arena_fd() const noexcept { return arena_ == nullptr ? -1 : arena_->fd(); }
  std::uint64_t offset() const noexcept { return offset_; }

  /// Takes a reference on behalf of another process, which adopts it (process_arg::save).
  void add_ref_for_child() const noexcept {
    if (arena_ != nullptr) arena_->add_ref(offset_);
  }

private:
  arena_handle(arena& a, std::uint64_t offset) noexcept
      : arena_(&a), offset_(offset), pid_(self_pid()) {}

  arena* arena_ = nullptr;
  std::uint64_t offset_ = 0;
  pid_t pid_ = 0;
};

/// Reads the arena index and block offset that process_arg<arena_handle<T>>::save appended.
void read_arena_arg(std::span<const std::byte> bytes, std::uint32_t& fd_index,
                    std::uint64_t& offset);

/// Appends them.
void write_arena_arg(std::vector<std::byte>& bytes, std::uint32_t fd_index, std::uint64_t offset);

/// A spawn child receives the arena (its own descriptor) and the object's offset, and one
/// reference that the parent took for it. A child that never starts leaks that reference (the
/// memory returns when the arena is gone).
template <class T>
struct process_arg<arena_handle<T>> {
  static void save(arg_writer& w, const arena_handle<T>& h) {
    if (!h)
      throw usage_error("tandem::mp: an empty handle of a synchronization primitive cannot be "
                        "passed to a process");
    auto index = static_cast<std::uint32_t>(w.add_fd(h.arena_fd()));
    write_arena_arg(w.bytes, index, h.offset());
    h.add_ref_for_child();
  }
  static arena_handle<T> load(arg_reader& r) {
    std::uint32_t index = 0;
    std::uint64_t offset = 0;
    read_arena_arg(r.bytes, index, offset);
    auto& a = arena::attach(r.fd(index));
    return arena_handle<T>::adopt(a, offset);
  }
};

} // namespace tandem::mp::detail
