// Every CAF 0.17-only spelling tandem uses lives here, so moving to CAF 1.x is a local change:
// atoms, error categories, the error renderer registration and the exit reasons tandem threads
// report to the actors that monitor or link to them.
#pragma once

#include <tandem/error.hpp>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <exception>
#include <string>

namespace tandem {

/// The CAF error category of tandem::errc.
inline constexpr caf::atom_value caf_error_category = caf::atom("tandem");

/// Converts a tandem error code to a CAF error, so actors send the same codes tandem throws. Found
/// by ADL: `caf::error e = tandem::errc::shut_down;` works.
inline caf::error make_error(errc code) {
  return caf::error{static_cast<std::uint8_t>(code), caf_error_category};
}

/// As above, with a context message (the exception's what()).
inline caf::error make_error(errc code, std::string what) {
  return caf::error{static_cast<std::uint8_t>(code), caf_error_category,
                    caf::make_message(std::move(what))};
}

/// As above, with a context of several values (e.g. a description and an exit code).
inline caf::error make_error(errc code, caf::message context) {
  return caf::error{static_cast<std::uint8_t>(code), caf_error_category, std::move(context)};
}

namespace detail {

/// Registers the renderer of tandem's error category with a CAF config, so to_string of a tandem
/// caf::error reads "tandem::shut_down(...)".
void add_error_category(caf::actor_system_config& cfg);

/// The scheduler settings tandem's runtime starts CAF with, unless the configuration (code,
/// command line or caf-application.ini) already sets them:
///   work-stealing.moderate-sleep-duration = 0
/// CAF 0.17's idle worker otherwise sleeps in blind 50 us steps for its first ~25 ms of idleness,
/// so every message from a tandem thread to an actor waits for the next step. Without them an
/// idle worker polls a few hundred times and then sleeps on a condition variable that a message
/// from outside the scheduler wakes at once.
void apply_runtime_defaults(caf::actor_system_config& cfg);

/// True when `err` is a tandem error; then `code` receives its errc.
bool is_tandem_error(const caf::error& err, errc& code) noexcept;

/// The exit reason of a thread whose target ended with the exception `eptr`:
/// `caf::exit_reason::unhandled_exception` (category "exit", as CAF's own actors report an
/// escaped exception) whose context is a message holding one std::string: the what() of a
/// std::exception, "unknown exception" for anything else. A null `eptr` means a clean end and
/// gives `caf::exit_reason::normal` (an error that converts to false, as CAF reports a normal
/// exit). Never throws: a what() that throws is reported as "unknown exception".
///
///   catch (...) { reason = detail::make_exit_error(std::current_exception()); }
caf::error make_exit_error(const std::exception_ptr& eptr) noexcept;

/// The text an error carries: the first element of its context when that is a std::string (the
/// what() put there by make_exit_error or make_error(errc, what)), empty otherwise.
std::string error_text(const caf::error& err);

} // namespace detail

} // namespace tandem
