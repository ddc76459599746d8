#include "watchdog.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace tandem::test {

pid_t tid() noexcept {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

bool is_blocked(pid_t t) {
  std::ifstream in{"/proc/self/task/" + std::to_string(t) + "/stat"};
  std::string line;
  if (!std::getline(in, line))
    return false;
  // The state follows the parenthesised command name, which may itself contain spaces.
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size())
    return false;
  char state = line[close + 2];
  return state == 'S' || state == 'D';
}

bool wait_until_blocked(std::span<const pid_t> tids, std::chrono::steady_clock::duration limit) {
  return wait_until(
    [&] {
      for (auto t : tids)
        if (!is_blocked(t))
          return false;
      return true;
    },
    limit);
}

double stress_scale() {
  if (const char* s = std::getenv("TANDEM_STRESS_SCALE")) {
    try {
      auto v = std::stod(s);
      if (v > 0)
        return v;
    } catch (...) {
    }
  }
  return 1.0;
}

} // namespace tandem::test
