#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

namespace tandem {

namespace {

class category final : public std::error_category {
public:
  const char* name() const noexcept override { return "tandem"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::usage: return "usage error: the object is not in a state that allows this call";
      case errc::value: return "value error: an argument is out of range";
      case errc::broken_barrier: return "the barrier is broken";
      case errc::empty: return "the queue is empty";
      case errc::full: return "the queue is full";
      case errc::shut_down: return "the queue is shut down";
      case errc::eof: return "end of file: the peer closed the connection";
      case errc::buffer_too_short: return "the buffer is too short for the message";
      case errc::timeout: return "the operation timed out";
      case errc::process: return "process error";
      case errc::broken_pool: return "the pool is broken: a worker died";
      case errc::authentication: return "authentication failed";
      case errc::owner_died: return "the owner of a robust lock died while holding it";
      case errc::segment: return "shared-memory segment error";
      case errc::not_recoverable: return "the lock is not recoverable";
      case errc::bad_message: return "bad message";
    }
    return "unknown tandem error " + std::to_string(value);
  }
};

} // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

const char* to_string(errc e) noexcept {
  switch (e) {
    case errc::usage: return "usage";
    case errc::value: return "value";
    case errc::broken_barrier: return "broken_barrier";
    case errc::empty: return "empty";
    case errc::full: return "full";
    case errc::shut_down: return "shut_down";
    case errc::eof: return "eof";
    case errc::buffer_too_short: return "buffer_too_short";
    case errc::timeout: return "timeout";
    case errc::process: return "process";
    case errc::broken_pool: return "broken_pool";
    case errc::authentication: return "authentication";
    case errc::owner_died: return "owner_died";
    case errc::segment: return "segment";
    case errc::not_recoverable: return "not_recoverable";
    case errc::bad_message: return "bad_message";
  }
  return "unknown";
}

namespace detail {

void throw_nan_timeout() {
  throw value_error("timeout is NaN: pass a finite duration, or tandem::forever to wait forever");
}

} // namespace detail

} // namespace tandem
