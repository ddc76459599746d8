// detail: the segment tracker, which removes the named segments a process created when that
// process dies, however it dies (SIGKILL included).
//
// Model: Python's multiprocessing.resource_tracker, with one tracker per owning process.
//
// - The first tracked create in a process starts its tracker: a grandchild (double fork, so no
//   waitpid of this program ever sees it and nothing reaps or kills it as a child), connected to
//   the owner by a SOCK_SEQPACKET socket pair. The tracker closes every other descriptor it
//   inherited (so it never keeps a pipe or a socket of the program open), ignores SIGINT,
//   SIGTERM, SIGHUP, SIGQUIT and SIGPIPE, and makes only system calls (no allocation, no locks:
//   it was forked from a process that may have other threads).
// - The owner registers each segment it creates (name, inode, device) right after shm_open, and
//   unregisters it when it unlinks it.
// - When the owner's end of the socket reaches end of file (the owner exited, was killed, or
//   exec'd another program: the kernel closes the descriptor in each case), the tracker unlinks
//   every name still registered if the name still refers to the same file (same inode and
//   device: a name unlinked and reused by someone else is left alone), and exits. So a tracker
//   lives exactly as long as its owner.
// - The connection is close-on-exec, and a fork child closes its inherited copy right after fork
//   (pthread_atfork): a child never keeps its parent's tracker waiting, owns none of its parent's
//   segments, and starts its own tracker on its own first create.
// - When the tracker is gone (someone killed it), the next register starts a new one and
//   registers again every segment the process still owns.
//
// Limits: a creator killed between shm_open and its registration message (two system calls)
// leaves an empty file that carries no tandem header, so neither the tracker nor `tandem shm rm
// --stale` can tell it is tandem's. The removal checks the inode just before unlinking; a name
// unlinked and reused in between those two calls could still be removed.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace tandem::mp::detail {

/// Starts this process's tracker unless it is running. Create calls it before shm_open, so the
/// window between a name's creation and its registration holds no fork. Throws segment_error
/// when the tracker cannot be started: the errno of the failed call, ETIMEDOUT when it did not
/// answer within 5 s, ECHILD when it exited before answering.
void shm_tracker_start();

/// Registers the segment `name` (file `inode` on `device`) as owned by this process, starting
/// the tracker if needed. Throws segment_error when the tracker cannot be started.
void shm_tracker_register(std::string_view name, std::uint64_t inode, std::uint64_t device);

/// Forgets `name` if this process registered it for the file `inode` on `device`: the tracker
/// will not remove it. Never throws; anything else (a name this process does not own, or owns
/// for another file) is ignored.
void shm_tracker_unregister(std::string_view name, std::uint64_t inode,
                            std::uint64_t device) noexcept;

/// True when this process has `name` registered for the file `inode` on `device`.
bool shm_tracker_owns(std::string_view name, std::uint64_t inode, std::uint64_t device) noexcept;

/// The pid of this process's tracker, 0 when none was started (or it was found dead).
pid_t shm_tracker_pid() noexcept;

/// The names this process has registered and not unregistered.
std::vector<std::string> shm_tracker_owned();

} // namespace tandem::mp::detail
