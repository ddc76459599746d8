// The registry of this process's children (process.cpp): what the runtime's shutdown and the
// exit handling of a program without a runtime use.
#pragma once

#include <tandem/timeout.hpp>

namespace tandem::mp::detail {

/// Joins this process's non-daemon children until `t` expires, then terminates (SIGTERM) its
/// daemon children and the non-daemon ones still running, waits for them a short grace period
/// (at most 1 s, never past `t` unless `t` has already passed), kills (SIGKILL) those still
/// running and collects them. Returns whether every non-daemon child had exited by itself.
bool shutdown_processes(const timeout& t) noexcept;

/// True when this process is a spawn or forkserver child that freeze_support() will turn into
/// its target (it has not done so yet).
bool child_pending() noexcept;

} // namespace tandem::mp::detail
