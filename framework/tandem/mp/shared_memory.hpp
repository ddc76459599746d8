// tandem::mp::shared_memory: Python's multiprocessing.shared_memory.SharedMemory, a named block
// of memory that unrelated processes attach to by name.
//
// A segment is a POSIX shared-memory object (a file in /dev/shm) with a one-page tandem header in
// front of the user's bytes. Handles map it; the segment itself lives until it is unlinked (by
// any process) or its owner dies (see Tracking).
//
//   auto shm = tandem::mp::shared_memory::create(4096);     // a generated name, zero-filled
//   std::memcpy(shm.buf().data(), "howdy", 5);
//   std::string n = shm.name();                              // hand the name to another process...
//
//   auto other = tandem::mp::shared_memory::attach(n);       // ...which maps the same bytes
//   other.buf()[0] = std::byte{'H'};
//   other.close();                                           // unmaps; the segment stays
//
//   shm.unlink();                                            // the name is gone; mappings stay
//
// States of a handle: *open* (mapped: buf() is the segment's bytes) and *closed* (after close(),
// a move, or default construction: buf() is empty). name() and unlink() work in both states.
// A segment is *linked* (attachable by name) until some process unlinks it; its memory is freed
// when it is unlinked and no process maps it any more.
//
// Tracking: the process that creates a segment owns it. When the owner dies, even by SIGKILL,
// a tracker removes the segments it still owns (Python's resource tracker; see
// <tandem/mp/detail/shm_tracker.hpp>), within milliseconds. unlink() in the owning process
// (through any handle) ends the ownership; close() does not (as in Python, a closed segment is
// still removed when its owner dies, so a crash never leaks it). A process that only attached never
// removes a segment. A segment created with `track = false` has no owner as far as the tracker
// goes: it lives until someone unlinks it (or `tandem shm rm --stale` finds its creator dead).
//
// exec() ends the ownership as death does (the new program knows nothing of the segments): the
// tracker's connection is close-on-exec, so the segments are removed when the owner execs.
//
// Fork children: a fork child inherits its parent's handles (the same mappings), but not the
// ownership of its parent's segments: they are still removed when the parent dies, whether or
// not the child is alive, and the child's own creates are owned by the child (its own tracker).
// Python differs: there, a fork child shares its parent's tracker.
//
// Differences from Python's SharedMemory:
// - create and attach are separate factories (Python's `create=` flag); both are exact:
//   size() is the size asked for, never rounded up to a page, and attach() cannot resize.
// - Names have no leading '/'; a name containing '/' or NUL, empty, "." or "..", or longer than
//   255 bytes is a segment_error (EINVAL), before any system call.
// - The segment is created with mode 0600 whatever the umask, and attach() refuses a segment
//   owned by another user or writable by group or others (segment_error, EACCES), one whose
//   header is not tandem's (EINVAL: wrong magic number, another layout version, a size that does
//   not match), and one whose creator died before finishing it (ETIMEDOUT, after at most
//   init_wait). Segments made by Python or other programs cannot be attached.
// - close() does not end ownership and unlink() only unregisters in the owning process, as
//   explained above; the destructor closes and never unlinks.
//
// Thread- and process-safety: a handle is not synchronized (do not move, close or destroy it
// while another thread uses it). The segment's bytes are plain memory shared by every process:
// guard them with an mp::lock or use atomics.
//
// Lifetime hazards: buf() dangles after close(), a move, or destruction of the handle. unlink()
// does not invalidate any mapping.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace tandem::mp {

/// How shared_memory::create makes a segment.
struct shared_memory_options {
  /// Register the segment with this process's tracker, so that it is removed when this process
  /// dies (Python 3.13's `track`). With false, only unlink() removes it.
  bool track = true;
};

/// A named shared-memory segment. See the file comment.
class shared_memory {
public:
  /// How long attach() waits for a creator that has made the name but not yet finished the
  /// header. A creator finishes in microseconds; one that takes longer has died.
  static constexpr std::chrono::milliseconds init_wait{1000};

  // -- construction ---------------------------------------------------------------------------

  /// A closed handle with no name.
  shared_memory() noexcept = default;

  /// Creates a segment of `size` zero-filled bytes under a generated name ("tandem_" and 16 hex
  /// digits: 64 random bits), owned by this process. Does not block beyond system calls (the
  /// first tracked create in a process starts its tracker: one fork).
  /// Throws value_error when `size` is 0 or too large to map; segment_error (with errno) when
  /// the system refuses: ENOSPC/ENOMEM for a full /dev/shm, EMFILE, or the tracker cannot start.
  static shared_memory create(std::size_t size, const shared_memory_options& options = {});

  /// Creates a segment named `name` (without a leading '/'), with mode 0600, failing if the name
  /// exists (O_EXCL). Throws value_error when `size` is 0 or too large; segment_error with EINVAL
  /// for an invalid name (checked first, before any system call), EEXIST when the name exists,
  /// or the errno of a failed system call.
  static shared_memory create(std::string_view name, std::size_t size,
                              const shared_memory_options& options = {});

  /// Maps the existing segment `name`. Blocks at most init_wait, and only while the segment's
  /// creator has not finished initialising it (a futex wait on the header's ready flag, not a
  /// spin). Throws value_error for an empty name (Python's "no name"), and segment_error with
  /// EINVAL for an invalid name (before any system call), ENOENT when no segment has that name,
  /// EACCES when the segment belongs to another user or is writable by group or others, EINVAL
  /// when it is not a tandem segment of this layout version, ETIMEDOUT when its creator died
  /// before finishing it.
  static shared_memory attach(std::string_view name);

  shared_memory(shared_memory&& other) noexcept;
  shared_memory& operator=(shared_memory&& other) noexcept;
  shared_memory(const shared_memory&) = delete;
  shared_memory& operator=(const shared_memory&) = delete;

  /// Closes (unmaps). Never unlinks, never throws.
  ~shared_memory();

  // -- observers ------------------------------------------------------------------------------

  /// The segment's bytes: exactly size() bytes, page aligned. Empty once closed.
  std::span<std::byte> buf() const noexcept { return {data_, data_ == nullptr ? 0 : size_}; }

  /// The segment's name, without a leading '/'. Kept after close(); empty for a handle that was
  /// default-constructed or moved from.
  const std::string& name() const noexcept { return name_; }

  /// The size asked for at creation, in bytes (not rounded up); kept after close().
  std::size_t size() const noexcept { return size_; }

  /// True once close() has been called (or for a default-constructed or moved-from handle).
  bool closed() const noexcept { return data_ == nullptr; }

  /// The pid of the process that created the segment (as its header says).
  pid_t owner_pid() const noexcept { return owner_pid_; }

  /// True when this process owns the segment: it created it (through this handle) with
  /// tracking, and no handle of this process has unlinked it since. An owned segment is removed
  /// when this process dies. False for attached handles, and in a fork child for its parent's
  /// segments.
  bool owned() const noexcept;

  // -- closing and removing -------------------------------------------------------------------

  /// Unmaps the segment from this process; buf() becomes empty. The segment stays (and stays
  /// owned). Idempotent, never throws.
  void close() noexcept;

  /// Removes the segment's name, so that no process can attach to it any more; processes that
  /// have it mapped keep using it, and its memory is freed when the last one closes it. In the
  /// owning process (through any of its handles) this also ends the ownership, also when it
  /// throws because someone else unlinked the name first. Call it once per segment, from any one
  /// process.
  /// Throws segment_error with ENOENT when the name no longer exists (a second unlink) or now
  /// names another segment (unlinked and created again by someone), or the errno of shm_unlink.
  void unlink();

private:
  shared_memory(std::string name, std::byte* base, std::size_t size, std::uint64_t inode,
                std::uint64_t device, pid_t owner, bool tracked) noexcept;

  std::string name_;
  std::byte* base_ = nullptr; // the mapping, header included; nullptr when closed
  std::byte* data_ = nullptr; // base_ + header size
  std::size_t size_ = 0;      // the user's bytes
  std::uint64_t inode_ = 0;   // the file, to tell our segment from a later one of that name
  std::uint64_t device_ = 0;  // (with inode_)
  pid_t owner_pid_ = 0;       // from the header
  pid_t tracked_by_ = 0;      // the pid that registered it with its tracker, 0 if untracked
};

} // namespace tandem::mp
