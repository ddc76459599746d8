// A descriptor goes into a wait list as it is, as a sentinel does in Python's wait([...]).
#include <tandem/mp/pipe.hpp>
#include <tandem/mp/wait.hpp>

#include <doctest/doctest.h>
#include <support/watchdog.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("wait takes a bare descriptor beside a connection in a braced list") {
  tandem::test::watchdog guard{10s};
  auto [reader, writer] = tandem::mp::pipe(false);
  int efd = ::eventfd(0, EFD_CLOEXEC);
  REQUIRE(efd >= 0);
  CHECK(tandem::mp::wait({reader, efd}, 0s).empty());
  std::uint64_t one = 1;
  REQUIRE(::write(efd, &one, sizeof one) == sizeof one);
  CHECK(tandem::mp::wait({reader, efd}, 5s) == std::vector<std::size_t>{1});
  ::close(efd);
}
