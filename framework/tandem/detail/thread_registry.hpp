// The process-wide registry of alive threads (thread.cpp): what the runtime's shutdown and the
// exit handling of a program without a runtime use.
#pragma once

#include <tandem/timeout.hpp>

namespace tandem::detail {

/// Joins every non-daemon thread tandem started (also threads started meanwhile, by other
/// threads, and threads whose handle is gone), except the calling thread, until `t` expires.
/// Then sends a stop request to every daemon thread tandem started and, if the deadline passed,
/// to the non-daemon threads still running. Returns whether every non-daemon thread was joined.
/// Never waits past the deadline.
bool shutdown_threads(const timeout& t) noexcept;

} // namespace tandem::detail
