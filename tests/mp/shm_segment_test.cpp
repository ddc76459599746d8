// tandem::mp::detail::shm_segment: anonymous shared memory and its header checks, in one process.
#include "support/watchdog.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_segment.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

using tandem::mp::detail::shm_segment;

namespace {

constexpr std::uint32_t test_kind = 0x7465'7374;

int attach_errno(int fd, std::uint32_t kind) {
  try {
    (void)shm_segment::attach(fd, kind);
  } catch (const tandem::segment_error& e) {
    return e.errno_value();
  }
  return 0;
}

} // namespace

TEST_SUITE("mp shared memory segment") {

  TEST_CASE("a new segment is zeroed and attaching its descriptor maps the same memory") {
    auto sut = shm_segment::create(test_kind, 4096);
    REQUIRE(sut);
    CHECK(sut.payload_size() == 4096);
    auto* p = static_cast<unsigned char*>(sut.payload());
    bool zero = true;
    for (std::size_t i = 0; i < 4096; ++i) zero = zero && p[i] == 0;
    CHECK(zero);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 128 == 0);

    auto other = shm_segment::attach(::dup(sut.fd()), test_kind);
    std::memcpy(p + 100, "hello", 5);
    CHECK(std::memcmp(static_cast<unsigned char*>(other.payload()) + 100, "hello", 5) == 0);
    CHECK(other.payload_size() == 4096);
    CHECK(other.fd() != sut.fd());
  }

  TEST_CASE("the memory outlives the handle that created it") {
    auto creator = shm_segment::create(test_kind, 128);
    std::memcpy(creator.payload(), "kept", 4);
    auto other = shm_segment::attach(::dup(creator.fd()), test_kind);
    { auto gone = std::move(creator); }
    CHECK_FALSE(creator); // NOLINT(bugprone-use-after-move): a moved-from handle is empty
    CHECK(std::memcmp(other.payload(), "kept", 4) == 0);
  }

  TEST_CASE("the descriptor is close-on-exec") {
    auto sut = shm_segment::create(test_kind, 64);
    CHECK((::fcntl(sut.fd(), F_GETFD) & FD_CLOEXEC) != 0);
  }

  TEST_CASE("attach refuses a segment of another kind") {
    auto sut = shm_segment::create(test_kind, 64);
    CHECK(attach_errno(::dup(sut.fd()), test_kind + 1) == EINVAL);
  }

  TEST_CASE("attach refuses memory without a tandem header") {
    int fd = ::memfd_create("not-a-segment", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    CHECK(attach_errno(fd, test_kind) == EINVAL);
  }

  TEST_CASE("attach refuses a segment whose size differs from its header") {
    auto sut = shm_segment::create(test_kind, 4096);
    int fd = ::dup(sut.fd());
    REQUIRE(::ftruncate(fd, 8192) == 0);
    CHECK(attach_errno(fd, test_kind) == EINVAL);
  }

  TEST_CASE("attach refuses a segment of another layout version") {
    auto sut = shm_segment::create(test_kind, 64);
    auto* h = reinterpret_cast<shm_segment::header*>(static_cast<std::byte*>(sut.payload()) -
                                                     shm_segment::header_size);
    h->version = shm_segment::version + 1;
    CHECK(attach_errno(::dup(sut.fd()), test_kind) == EINVAL);
  }

  TEST_CASE("attach refuses a bad or tiny descriptor") {
    CHECK(attach_errno(-1, test_kind) == EBADF);
    int fd = ::memfd_create("tiny", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(attach_errno(fd, test_kind) == EINVAL);
    int pipes[2];
    REQUIRE(::pipe(pipes) == 0);
    ::close(pipes[1]);
    CHECK(attach_errno(pipes[0], test_kind) == EINVAL);
  }
}
