#include <tandem/detail/caf.hpp>

#include <caf/message.hpp>

namespace tandem::detail {

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(caf_error_category, [](std::uint8_t code, caf::atom_value,
                                                const caf::message& context) -> std::string {
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

bool is_tandem_error(const caf::error& err, errc& code) noexcept {
  if (!err || err.category() != caf_error_category)
    return false;
  code = static_cast<errc>(err.code());
  return true;
}

} // namespace tandem::detail
