// detail: the on-disk layout of tandem's named shared-memory segments, and the helpers that
// mp::shared_memory, the segment tracker and the `tandem shm` command share.
//
// A named segment is a file in /dev/shm (POSIX shm_open). Its first `header_size` bytes are a
// tandem header; the user's bytes follow, so mp::shared_memory::buf() starts page aligned. The
// file is exactly header_size + user_size bytes long.
//
// The creator writes the header in two steps: first every field except `ready` (right after
// sizing the file), then `ready = ready_value` with release ordering and a futex wake. An
// attacher waits (futex, bounded) for `ready` before it trusts any other field.
//
// Liveness: a process is identified by its pid and its start time (field 22 of /proc/<pid>/stat,
// clock ticks since boot), so a pid reused by an unrelated process is not mistaken for the owner.
// /dev/shm is a tmpfs, emptied at boot, so a start time never outlives the boot it belongs to.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace tandem::mp::detail {

/// The directory where the kernel keeps POSIX shared-memory names (glibc's shm_open uses it).
inline constexpr const char* shm_directory = "/dev/shm/";

/// The header in front of every segment mp::shared_memory creates.
struct shm_named_header {
  std::uint64_t magic;              // shm_named_magic once the creator has written the header
  std::uint32_t version;            // shm_named_version
  std::atomic<std::uint32_t> ready; // futex word: shm_named_ready once the header is complete
  std::uint64_t user_size;          // the size the creator asked for, in bytes
  std::int32_t owner_pid;           // the creating process
  std::uint32_t owner_uid;          // its effective user id
  std::uint64_t owner_start_time;   // its start time (clock ticks since boot), against pid reuse
  std::uint64_t created_boot_ns;    // creation time on CLOCK_BOOTTIME (/dev/shm lives one boot)
};

/// The magic number: the bytes "DTANDMSH" in memory (little endian).
inline constexpr std::uint64_t shm_named_magic = 0x4853'4d44'4e41'5444;
/// The layout version; attach() refuses any other.
inline constexpr std::uint32_t shm_named_version = 1;
/// The value of `ready` once the header is complete (not 1, so stray bytes rarely match it).
inline constexpr std::uint32_t shm_named_ready = 0x5245'4144;
/// The header's size: one page, so the user's bytes are page aligned.
inline constexpr std::size_t shm_named_header_size = 4096;
/// The longest name: a file name in /dev/shm (NAME_MAX).
inline constexpr std::size_t shm_name_max = 255;
/// The prefix of generated names.
inline constexpr std::string_view shm_generated_prefix = "tandem_";

static_assert(sizeof(shm_named_header) <= shm_named_header_size);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// "/" + `name`: the path shm_open and shm_unlink take for a segment name.
std::string shm_path(std::string_view name);

/// `name` in double quotes, for messages.
std::string shm_quoted(std::string_view name);

/// Throws segment_error(err, ...) whose message is `what` followed by strerror(err).
[[noreturn]] void throw_shm_error(int err, const std::string& what);

/// Throws segment_error (EINVAL) when `name` cannot name a segment: empty, longer than
/// shm_name_max bytes, containing '/' or NUL, or "." / "..". Makes no system call.
void check_shm_name(std::string_view name);

/// A name for a new segment: shm_generated_prefix followed by 16 hex digits (64 bits from
/// getrandom). Throws segment_error when the kernel gives no random bytes.
std::string generate_shm_name();

/// The start time of process `pid` (field 22 of /proc/<pid>/stat), or nullopt when there is no
/// such process, it is a zombie, or its stat file cannot be read.
std::optional<std::uint64_t> process_start_time(pid_t pid);

/// True when the process `pid` that started at `start_time` is still running (not a zombie, and
/// its pid not reused). A process this user may not inspect counts as alive.
bool process_alive(pid_t pid, std::uint64_t start_time);

/// What `tandem shm ls` shows about one segment: its header's fields and the file's identity.
struct shm_segment_info {
  std::string name;                   // without the leading '/'
  pid_t owner_pid = 0;                // the creating process
  std::uint64_t owner_start_time = 0; // its start time, as in the header
  uid_t file_uid = 0;                 // the file's owner
  std::uint64_t user_size = 0;        // bytes the creator asked for
  std::uint64_t created_boot_ns = 0;  // creation time on CLOCK_BOOTTIME
  std::uint32_t version = 0;          // the header's layout version
  bool ready = false;                 // the creator finished initialising it
  bool owner_alive = false;           // process_alive(owner_pid, owner_start_time)
  std::uint64_t inode = 0;            // the file, so a removal can check it is still the same
  std::uint64_t device = 0;           // (inode and device together)
};

/// Reads the header of /dev/shm/`name` without changing anything. Returns nullopt for a file that
/// is not a tandem segment (not a regular file, too short, wrong magic number) or cannot be read.
std::optional<shm_segment_info> inspect_shm_segment(std::string_view name);

/// Every tandem segment in /dev/shm whose name starts with `prefix`, sorted by name. Files that
/// are not tandem segments are skipped without being opened for writing.
std::vector<shm_segment_info> list_shm_segments(std::string_view prefix = {});

/// Removes the segment `info` describes, if /dev/shm/`info.name` is still the same file (inode
/// and device) and a tandem segment whose owner is dead. Returns 0 on success or when there was
/// nothing to do (*removed says which), or an errno.
int remove_stale_shm_segment(const shm_segment_info& info, bool* removed);

} // namespace tandem::mp::detail
