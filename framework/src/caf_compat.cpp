#include <tandem/detail/caf.hpp>

#include <caf/exit_reason.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/settings.hpp>
#include <caf/timespan.hpp>

#include <stdexcept>

namespace tandem::detail {

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(
      caf_error_category,
      [](std::uint8_t code, caf::atom_value, const caf::message& context) -> std::string {
        std::string result = "tandem::";
        result += to_string(static_cast<errc>(code));
        if (!context.empty()) {
          result += '(';
          result += to_string(context);
          result += ')';
        }
        return result;
      });
}

void apply_runtime_defaults(caf::actor_system_config& cfg) {
  const caf::string_view moderate_sleep{"work-stealing.moderate-sleep-duration"};
  if (!caf::holds_alternative<caf::timespan>(cfg.content, moderate_sleep))
    cfg.set(moderate_sleep, caf::timespan{0});
}

bool is_tandem_error(const caf::error& err, errc& code) noexcept {
  if (!err || err.category() != caf_error_category) return false;
  code = static_cast<errc>(err.code());
  return true;
}

caf::error make_exit_error(const std::exception_ptr& eptr) noexcept {
  if (!eptr) return caf::make_error(caf::exit_reason::normal);
  auto code = static_cast<std::uint8_t>(caf::exit_reason::unhandled_exception);
  auto category = caf::atom("exit");
  try {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) { // NOLINT(bugprone-empty-catch): anything else keeps the generic text
    }
    return caf::error{code, category, caf::make_message(std::move(what))};
  } catch (...) {
    // Allocating the text failed: report the reason without it rather than not at all.
    return caf::error{code, category};
  }
}

std::string error_text(const caf::error& err) {
  const auto& context = err.context();
  if (!context.empty() && context.match_element<std::string>(0))
    return context.get_as<std::string>(0);
  return {};
}

} // namespace tandem::detail
