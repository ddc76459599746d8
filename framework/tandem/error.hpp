// tandem's errors: one enum, one category, one exception hierarchy.
//
// Every exception tandem throws derives from `tandem::error`, a std::system_error whose code is a
// `tandem::errc` in `tandem::error_category()`. Actors send the same `errc` values as CAF errors,
// so a failure reads the same whether it was thrown in-process or came back in a message.
//
// The Python equivalents:
//   usage_error             RuntimeError (misuse: release an unlocked lock, start a thread twice)
//   value_error             ValueError (over-release a bounded semaphore, task_done too often)
//   broken_barrier_error    threading.BrokenBarrierError
//   empty_error/full_error  queue.Empty / queue.Full
//   shut_down_error         queue.ShutDown (Python 3.13)
//   eof_error               EOFError
//   buffer_too_short_error  multiprocessing.BufferTooShort (carries the whole message)
//   timeout_error           TimeoutError
//   process_error           multiprocessing.ProcessError
//   broken_pool_error       concurrent.futures.process.BrokenProcessPool
//   authentication_error    multiprocessing.AuthenticationError
//   owner_died_error        (none: a robust lock's holder died; the state may be inconsistent)
//   segment_error           FileExistsError / FileNotFoundError / PermissionError on shared memory
#pragma once

#include <cstddef>
#include <string>
#include <system_error>
#include <vector>

namespace tandem {

/// Error codes of tandem. Zero is never used, so a default std::error_code means "no error".
enum class errc : int {
  usage = 1,
  value,
  broken_barrier,
  empty,
  full,
  shut_down,
  eof,
  buffer_too_short,
  timeout,
  process,
  broken_pool,
  authentication,
  owner_died,
  segment,
  /// A robust lock whose holder died was released without make_consistent(): it is unusable.
  not_recoverable,
  /// A message of another type than the one asked for, or bytes that do not decode.
  bad_message,
};

} // namespace tandem

template <>
struct std::is_error_code_enum<tandem::errc> : std::true_type {};

namespace tandem {

/// The category of tandem::errc; its name is "tandem".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The short, stable name of an error code ("usage", "shut_down", ...).
const char* to_string(errc e) noexcept;

/// Base of every exception tandem throws.
class error : public std::system_error {
public:
  error(errc code, const std::string& what) : std::system_error(make_error_code(code), what) {}
  error(std::error_code code, const std::string& what) : std::system_error(code, what) {}
};

#define TANDEM_DEFINE_ERROR(name, code)                                                            \
  class name : public error {                                                                      \
  public:                                                                                          \
    explicit name(const std::string& what) : error(errc::code, what) {}                            \
  }

TANDEM_DEFINE_ERROR(usage_error, usage);
TANDEM_DEFINE_ERROR(value_error, value);
TANDEM_DEFINE_ERROR(broken_barrier_error, broken_barrier);
TANDEM_DEFINE_ERROR(empty_error, empty);
TANDEM_DEFINE_ERROR(full_error, full);
TANDEM_DEFINE_ERROR(shut_down_error, shut_down);
TANDEM_DEFINE_ERROR(eof_error, eof);
TANDEM_DEFINE_ERROR(timeout_error, timeout);
TANDEM_DEFINE_ERROR(process_error, process);
TANDEM_DEFINE_ERROR(broken_pool_error, broken_pool);
TANDEM_DEFINE_ERROR(authentication_error, authentication);
TANDEM_DEFINE_ERROR(owner_died_error, owner_died);
TANDEM_DEFINE_ERROR(not_recoverable_error, not_recoverable);
TANDEM_DEFINE_ERROR(bad_message_error, bad_message);

#undef TANDEM_DEFINE_ERROR

/// Python's KeyError: a key that is not in a shared dict. A value_error (its code() is
/// errc::value), so code that catches value_error keeps working.
class key_error : public value_error {
public:
  using value_error::value_error;
};

/// Python's IndexError: an index out of range (mp::array, mp::shareable_list, a manager's list).
/// A value_error (its code() is errc::value), as key_error.
class index_error : public value_error {
public:
  using value_error::value_error;
};

/// A received message did not fit the buffer given to recv_bytes_into. The whole message is kept
/// here, so nothing is lost.
class buffer_too_short_error : public error {
public:
  buffer_too_short_error(const std::string& what, std::vector<std::byte> message)
      : error(errc::buffer_too_short, what), message_(std::move(message)) {}

  /// The complete message that did not fit.
  const std::vector<std::byte>& message() const noexcept { return message_; }

private:
  std::vector<std::byte> message_;
};

/// A shared-memory segment could not be created, attached or removed. Its code() is
/// errc::segment; errno_value() is the errno behind it: EEXIST for an existing name, ENOENT for a
/// missing one, EACCES/EPERM for a foreign owner or unsafe mode, EINVAL for a bad name or header.
class segment_error : public error {
public:
  segment_error(int errno_value, const std::string& what)
      : error(errc::segment, what), errno_value_(errno_value) {}

  /// The errno this error carries.
  int errno_value() const noexcept { return errno_value_; }

private:
  int errno_value_;
};

} // namespace tandem
