// Uses a little of everything the umbrella headers export; exits 0 when it all works.
#include <tandem/actors.hpp>
#include <tandem/tandem.hpp>

#include <cstdio>

int main() {
  using namespace std::chrono_literals;
  tandem::timeout t{10ms};
  if (t.is_forever())
    return 1;
  try {
    throw tandem::usage_error("consumer check");
  } catch (const tandem::error& e) {
    if (e.code() != tandem::errc::usage)
      return 2;
  }
  std::puts("tandem consumer: ok");
  return 0;
}
