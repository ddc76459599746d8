// The default arena of the mp synchronization primitives (tandem/mp/detail/robust_arena.hpp).
//
// Allocation is by power-of-two size classes (64 B to 64 KiB) with one free list per class and a
// bump pointer, under a robust_word. Every change to the allocator's state is committed by one
// store (a pop sets the head, a push links the block, then sets the head), so a process killed
// while holding the word leaves a valid state: the next process takes the word over and carries on
// (at worst one block is lost).

#include <tandem/mp/detail/robust_arena.hpp>

#include <tandem/error.hpp>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <mutex>
#include <vector>

namespace tandem::mp::detail {

namespace {

constexpr std::uint32_t arena_kind = 0x4152'4e41; // "ANRA"
constexpr std::size_t arena_bytes = std::size_t{16} << 20;
constexpr std::size_t min_class_shift = 6;  // 64 B
constexpr std::size_t max_class_shift = 16; // 64 KiB
constexpr std::size_t class_count = max_class_shift - min_class_shift + 1;
constexpr std::uint64_t no_block = 0;

struct arena_state {
  robust_word mtx;
  std::uint64_t bump;                   // guarded by mtx: the first never-used byte
  std::uint64_t free_head[class_count]; // guarded by mtx: offsets of free blocks, or no_block
};

struct block_header {
  std::atomic<std::uint32_t> refs; // 0 while free
  std::uint32_t size_class;
  std::uint64_t type_key;
  // While free, the first 8 bytes of the payload link the next free block.
};

constexpr std::size_t block_header_size = 16;
static_assert(sizeof(block_header) == block_header_size);
constexpr std::uint64_t first_block = (sizeof(arena_state) + 63) / 64 * 64;

// Every arena mapped in this process, found again by the memfd's inode. Arenas are never unmapped
// before exit: handles in any thread may point into them.
struct registry {
  std::mutex mtx;
  std::vector<std::unique_ptr<arena>> arenas; // guarded by mtx
  std::vector<ino_t> inodes;                  // guarded by mtx, parallel to arenas
  arena* default_arena = nullptr;             // guarded by mtx
};

registry& the_registry();

// fork() while another thread holds the registry's mutex would leave it locked for good in the
// child: hold it across fork(), and release it on both sides.
void registry_before_fork() noexcept {
  the_registry().mtx.lock();
}
void registry_after_fork() noexcept {
  the_registry().mtx.unlock();
}

registry& the_registry() {
  static registry r;
  static const bool installed = [] {
    ::pthread_atfork(registry_before_fork, registry_after_fork, registry_after_fork);
    return true;
  }();
  (void)installed;
  return r;
}

struct held_word {
  robust_word& w;
  explicit held_word(robust_word& word) : w(word) {
    // A dead holder left a valid state (see the file comment): take over and continue.
    auto r = w.lock(forever);
    (void)r;
  }
  ~held_word() { w.unlock(); }
  held_word(const held_word&) = delete;
  held_word& operator=(const held_word&) = delete;
};

std::byte* base_of(const shm_segment& seg) noexcept {
  return static_cast<std::byte*>(seg.payload());
}

} // namespace

arena& arena::default_arena() {
  auto& r = the_registry();
  std::scoped_lock guard{r.mtx};
  if (r.default_arena != nullptr) return *r.default_arena;
  auto seg = shm_segment::create(arena_kind, arena_bytes, "tandem-arena");
  auto* state = ::new (seg.payload()) arena_state{};
  state->bump = first_block;
  struct stat st {};
  if (::fstat(seg.fd(), &st) != 0)
    throw segment_error(errno, "tandem::mp: cannot inspect the arena's descriptor");
  r.arenas.push_back(std::make_unique<arena>(std::move(seg)));
  r.inodes.push_back(st.st_ino);
  r.default_arena = r.arenas.back().get();
  return *r.default_arena;
}

arena& arena::attach(int fd) {
  auto& r = the_registry();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw segment_error(err, "tandem::mp: the descriptor of a synchronization primitive's arena "
                             "is not valid");
  }
  std::scoped_lock guard{r.mtx};
  for (std::size_t i = 0; i < r.inodes.size(); ++i) {
    if (r.inodes[i] == st.st_ino) {
      ::close(fd);
      return *r.arenas[i];
    }
  }
  auto seg = shm_segment::attach(fd, arena_kind);
  r.arenas.push_back(std::make_unique<arena>(std::move(seg)));
  r.inodes.push_back(st.st_ino);
  return *r.arenas.back();
}

std::uint64_t arena::allocate(std::size_t size, std::uint64_t type_key) {
  std::size_t need = size + block_header_size;
  std::size_t cls = 0;
  while ((std::size_t{1} << (min_class_shift + cls)) < need) {
    if (++cls == class_count)
      throw segment_error(ENOMEM, "tandem::mp: an object of " + std::to_string(size) +
                                      " bytes does not fit an arena block (at most 64 KiB)");
  }
  std::uint64_t block_size = std::uint64_t{1} << (min_class_shift + cls);
  auto* base = base_of(seg_);
  auto* state = reinterpret_cast<arena_state*>(base);
  std::uint64_t offset = no_block;
  {
    held_word guard{state->mtx};
    offset = state->free_head[cls];
    if (offset != no_block) {
      std::uint64_t next = 0;
      std::memcpy(&next, base + offset + block_header_size, sizeof next);
      state->free_head[cls] = next;
    } else {
      // Blocks are aligned to their size (up to a page), so no object straddles more pages than
      // it must.
      auto align = block_size < 4096 ? block_size : 4096;
      auto start = (state->bump + align - 1) / align * align;
      if (start + block_size > seg_.payload_size())
        throw segment_error(ENOMEM, "tandem::mp: the arena of synchronization primitives is full "
                                    "(16 MiB); destroy unused primitives");
      state->bump = start + block_size;
      offset = start;
    }
  }
  auto* header = ::new (base + offset) block_header{};
  header->size_class = static_cast<std::uint32_t>(cls);
  header->type_key = type_key;
  std::memset(base + offset + block_header_size, 0, block_size - block_header_size);
  header->refs.store(1, std::memory_order_release);
  return offset;
}

void arena::deallocate(std::uint64_t offset) noexcept {
  auto* base = base_of(seg_);
  auto* state = reinterpret_cast<arena_state*>(base);
  auto* header = reinterpret_cast<block_header*>(base + offset);
  header->refs.store(0, std::memory_order_relaxed);
  header->type_key = 0;
  auto cls = header->size_class;
  if (cls >= class_count) return;
  held_word guard{state->mtx};
  std::uint64_t next = state->free_head[cls];
  std::memcpy(base + offset + block_header_size, &next, sizeof next);
  state->free_head[cls] = offset;
}

void arena::add_ref(std::uint64_t offset) noexcept {
  auto* header = reinterpret_cast<block_header*>(base_of(seg_) + offset);
  header->refs.fetch_add(1, std::memory_order_relaxed);
}

bool arena::drop_ref(std::uint64_t offset) noexcept {
  auto* header = reinterpret_cast<block_header*>(base_of(seg_) + offset);
  return header->refs.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

void* arena::object(std::uint64_t offset, std::uint64_t type_key) const {
  if (offset < first_block || offset % 64 != 0 || offset + block_header_size > seg_.payload_size())
    throw bad_message_error("tandem::mp: a synchronization primitive's offset " +
                            std::to_string(offset) + " is outside its arena");
  auto* header = reinterpret_cast<block_header*>(base_of(seg_) + offset);
  if (header->refs.load(std::memory_order_acquire) == 0 || header->type_key != type_key)
    throw bad_message_error("tandem::mp: the arena block at offset " + std::to_string(offset) +
                            " does not hold a live object of the expected type");
  return base_of(seg_) + offset + block_header_size;
}

void* arena::object_unchecked(std::uint64_t offset) const noexcept {
  return base_of(seg_) + offset + block_header_size;
}

void read_arena_arg(std::span<const std::byte> bytes, std::uint32_t& fd_index,
                    std::uint64_t& offset) {
  if (bytes.size() != sizeof fd_index + sizeof offset)
    throw bad_message_error("a synchronization primitive argument has " +
                            std::to_string(bytes.size()) + " bytes, expected " +
                            std::to_string(sizeof fd_index + sizeof offset));
  std::memcpy(&fd_index, bytes.data(), sizeof fd_index);
  std::memcpy(&offset, bytes.data() + sizeof fd_index, sizeof offset);
}

void write_arena_arg(std::vector<std::byte>& bytes, std::uint32_t fd_index, std::uint64_t offset) {
  auto old = bytes.size();
  bytes.resize(old + sizeof fd_index + sizeof offset);
  std::memcpy(bytes.data() + old, &fd_index, sizeof fd_index);
  std::memcpy(bytes.data() + old + sizeof fd_index, &offset, sizeof offset);
}

} // namespace tandem::mp::detail
