// Uses a little of everything the umbrella headers export; exits 0 when it all works.
#include <tandem/actors.hpp>
#include <tandem/tandem.hpp>

#include <cstdio>

int main() {
  using namespace std::chrono_literals;
  tandem::queue<int> q{4};
  tandem::lock l;
  int sum = 0;
  tandem::thread consumer{[&] {
    for (int i = 0; i < 10; ++i) {
      auto x = q.get();
      std::scoped_lock guard{l};
      sum += x;
    }
  }};
  consumer.start();
  for (int i = 1; i <= 10; ++i)
    q.put(i);
  if (!consumer.join(10s))
    return 1;
  try {
    throw tandem::usage_error("consumer check");
  } catch (const tandem::error& e) {
    if (e.code() != tandem::errc::usage)
      return 2;
  }
  if (sum != 55)
    return 3;
  std::puts("tandem consumer: ok");
  return 0;
}
