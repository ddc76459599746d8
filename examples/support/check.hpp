// The examples check what they show. Each one is also a smoke test: when a claim it prints does not
// hold, it says so and exits with status 1.
//
//   example::check(total == 2000, "the locked transfers keep the total");
//   ...
//   return example::exit_status();
#pragma once

#include <atomic>
#include <cstdio>

namespace example {

inline std::atomic<int> failures{0};

/// Records a failed claim (from any thread) and prints it.
inline void check(bool ok, const char* claim) {
  if (!ok) {
    ++failures;
    std::printf("CHECK FAILED: %s\n", claim);
  }
}

/// 0 when every check held, else 1; main returns it.
inline int exit_status() {
  int n = failures.load();
  if (n == 0)
    std::printf("\nall checks passed\n");
  else
    std::printf("\n%d check%s FAILED\n", n, n == 1 ? "" : "s");
  return n == 0 ? 0 : 1;
}

} // namespace example
