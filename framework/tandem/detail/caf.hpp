// Every CAF 0.17-only spelling tandem uses lives here, so moving to CAF 1.x is a local change:
// atoms, error categories and the error renderer registration.
#pragma once

#include <tandem/error.hpp>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

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

namespace detail {

/// Registers the renderer of tandem's error category with a CAF config, so to_string of a tandem
/// caf::error reads "tandem::shut_down(...)".
void add_error_category(caf::actor_system_config& cfg);

/// True when `err` is a tandem error; then `code` receives its errc.
bool is_tandem_error(const caf::error& err, errc& code) noexcept;

} // namespace detail

} // namespace tandem
