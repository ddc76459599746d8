// detail::shm_segment: an anonymous shared-memory segment (memfd + mmap), the storage of the
// cross-process queues.
//
// A segment is a memfd (memfd_create with MFD_CLOEXEC, sized with ftruncate) mapped MAP_SHARED.
// It has no name anywhere in the file system, so nothing is left behind when every process using
// it exits or is killed: the kernel frees the memory when the last descriptor and the last mapping
// are gone. A fork child inherits the mapping (and the descriptor); any other process maps it from
// a descriptor it received (SCM_RIGHTS, or inherited across exec) with attach().
//
// Layout: a 128-byte header, then the payload (aligned to 128 bytes, so objects that keep their
// hot fields on separate pairs of cache lines can live at its start). The header holds a magic number, a layout version,
// the kind of object that lives in the payload (chosen by the creator) and the size of the whole
// segment. attach() refuses a descriptor whose header does not match what the caller expects
// (segment_error, errno EINVAL), so a wrong descriptor is an error, never undefined behaviour.
//
//   auto seg = shm_segment::create(kind, 4096);      // a zeroed payload of 4096 bytes
//   int fd = seg.fd();                               // hand to another process...
//   auto same = shm_segment::attach(dup(fd), kind);  // ...which maps the same memory
//
// Thread-safety: a shm_segment handle is not synchronized (moves and destruction must not race
// other calls); the memory it maps is shared and synchronized by whatever lives in it.
//
// Lifetime: the destructor unmaps and closes the descriptor. The memory stays valid for other
// handles and processes mapping it. Move-only; a moved-from handle is empty.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::mp::detail {

class shm_segment {
public:
  /// The header at the start of every segment.
  struct header {
    std::uint64_t magic;       // shm_segment::magic once the creator has initialized it
    std::uint32_t version;     // shm_segment::version
    std::uint32_t kind;        // what the payload holds, chosen by the creator
    std::uint64_t total_size;  // header and payload, bytes
    std::uint64_t payload_off; // offset of the payload
  };

  static constexpr std::uint64_t magic = 0x5451'4e44'454d'5351; // "TANDEMSQ"-ish
  static constexpr std::uint32_t version = 1;
  static constexpr std::size_t header_size = 128;

  // -- construction ---------------------------------------------------------------------------

  /// An empty handle (no memory).
  shm_segment() noexcept = default;

  /// Creates a new segment whose zero-filled payload has `payload_size` bytes, tagged `kind`.
  /// `debug_name` names the memfd in /proc/<pid>/fd (it is never a file-system name). Throws
  /// segment_error (with errno) when memfd_create, ftruncate or mmap fail, e.g. ENOMEM, EMFILE.
  static shm_segment create(std::uint32_t kind, std::size_t payload_size,
                            const char* debug_name = "tandem-segment");

  /// Maps the segment behind descriptor `fd`, taking ownership of `fd` (it is closed when the
  /// handle is destroyed, and also when attach throws). Throws segment_error with errno EINVAL
  /// when the descriptor is not a segment of `kind` in this layout version (wrong magic, version,
  /// kind, or a size that differs from the header's), EBADF for a bad descriptor, or the errno of
  /// a failed fstat/mmap.
  static shm_segment attach(int fd, std::uint32_t kind);

  shm_segment(shm_segment&& other) noexcept;
  shm_segment& operator=(shm_segment&& other) noexcept;
  shm_segment(const shm_segment&) = delete;
  shm_segment& operator=(const shm_segment&) = delete;

  /// Unmaps and closes. Never throws.
  ~shm_segment();

  // -- observers ------------------------------------------------------------------------------

  /// False for an empty (default-constructed or moved-from) handle.
  explicit operator bool() const noexcept { return base_ != nullptr; }

  /// The payload: 128-byte aligned, payload_size() bytes.
  void* payload() const noexcept { return static_cast<std::byte*>(base_) + header_size; }

  /// The payload's size in bytes.
  std::size_t payload_size() const noexcept { return size_ - header_size; }

  /// The descriptor (owned by this handle; close-on-exec). -1 for an empty handle.
  int fd() const noexcept { return fd_; }

private:
  shm_segment(int fd, void* base, std::size_t size) noexcept : fd_(fd), base_(base), size_(size) {}
  void reset() noexcept;

  int fd_ = -1;
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

} // namespace tandem::mp::detail
