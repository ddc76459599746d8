// mp::manager: the named segment (create, attach, unlink and their errors), growth past the
// initial size, the directory of named objects, and the allocator's reuse of freed memory.
#include "manager/support.hpp"

#include <tandem/error.hpp>
#include <tandem/mp/manager.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace tandem::test::manager;
using namespace std::chrono_literals;
using tandem::mp::manager;
using tandem::mp::manager_options;

namespace {

int segment_errno(const std::function<void()>& f) {
  try {
    f();
  } catch (const tandem::segment_error& e) {
    return e.errno_value();
  }
  return 0;
}

bool shm_exists(const std::string& name) {
  struct stat st {};
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

// Writes `bytes` at `offset` of the segment file `name`.
void poke(const std::string& name, off_t offset, const void* bytes, std::size_t n) {
  int fd = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes, n, offset) == static_cast<ssize_t>(n));
  ::close(fd);
}

} // namespace

TEST_SUITE("manager segment") {

  TEST_CASE("a process that attaches by name sees the dict the creator made") {
    tandem::test::watchdog guard{10s};
    scoped_name n{"share"};
    auto sut = manager::create(n.name);
    auto d = sut.dict<std::string, std::int64_t>("scores");
    d.set("ada", 3);
    pid_t child = fork_child([&] {
      // Not the inherited handle: a fresh mapping found by name.
      auto m = manager::attach(n.name);
      auto c = m.dict<std::string, std::int64_t>("scores");
      if (c.get("ada") != 3) return 1;
      c.set("bob", 4);
      return 0;
    });
    REQUIRE(wait_child(child) == 0);
    CHECK(d.get("bob") == 4);
    CHECK(sut.creator_pid() == ::getpid());
    manager::unlink(n.name);
    CHECK_FALSE(shm_exists(n.name));
  }

  TEST_CASE("a creator killed by SIGKILL has its manager removed by its tracker") {
    tandem::test::watchdog guard{20s};
    for (bool track : {true, false}) {
      CAPTURE(track);
      scoped_name n{"tracked"};
      int ready[2];
      REQUIRE(::pipe(ready) == 0);
      pid_t creator = fork_child([&] {
        ::close(ready[0]);
        auto m = manager::create(n.name, tandem::mp::manager_options{.track = track});
        m.dict<std::int64_t, std::int64_t>("d").set(1, 2);
        char c = 1;
        if (::write(ready[1], &c, 1) != 1) return 2;
        for (;;) ::pause();
      });
      child_guard g{creator};
      ::close(ready[1]);
      char c = 0;
      REQUIRE(::read(ready[0], &c, 1) == 1);
      ::close(ready[0]);
      {
        // A process that only attaches never removes the segment.
        pid_t reader = fork_child([&] {
          auto m = manager::attach(n.name);
          return m.dict<std::int64_t, std::int64_t>("d").get(1) == 2 ? 0 : 1;
        });
        REQUIRE(wait_child(reader) == 0);
      }
      CHECK(shm_exists(n.name));
      ::kill(creator, SIGKILL);
      CHECK(g.wait() == 1000 + SIGKILL);
      auto deadline = std::chrono::steady_clock::now() + 5s;
      while (shm_exists(n.name) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
      CHECK(shm_exists(n.name) == !track);
    }
  }

  TEST_CASE("create refuses an existing name with EEXIST and leaves it intact") {
    scoped_name n{"exists"};
    auto sut = manager::create(n.name);
    sut.dict<int, int>("d").set(1, 2);
    CHECK(segment_errno([&] { (void)manager::create(n.name); }) == EEXIST);
    CHECK(manager::attach(n.name).dict<int, int>("d").get(1) == 2);
    sut.unlink();
  }

  TEST_CASE("attach of a missing name fails with ENOENT and so does a second unlink") {
    scoped_name n{"missing"};
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == ENOENT);
    auto sut = manager::create(n.name);
    manager::unlink(n.name);
    CHECK(segment_errno([&] { manager::unlink(n.name); }) == ENOENT);
    CHECK(segment_errno([&] { sut.unlink(); }) == ENOENT);
    // The mapping outlives the name.
    sut.dict<int, int>("still").set(1, 1);
    CHECK(sut.dict<int, int>("still").get(1) == 1);
  }

  TEST_CASE("invalid names are refused with EINVAL and create nothing") {
    std::string long_name(256, 'x');
    for (const std::string& bad :
         {std::string{}, std::string{"a/b"}, std::string{"/lead"}, std::string{"a\0b", 3},
          std::string{"."}, std::string{".."}, long_name}) {
      CHECK(segment_errno([&] { (void)manager::create(bad); }) == EINVAL);
      CHECK(segment_errno([&] { (void)manager::attach(bad); }) == EINVAL);
      CHECK(segment_errno([&] { manager::unlink(bad); }) == EINVAL);
    }
    CHECK(leftovers().empty());
  }

  TEST_CASE("the segment has mode 0600 whatever the umask") {
    scoped_name n{"mode"};
    mode_t old = ::umask(0);
    auto sut = manager::create(n.name);
    ::umask(old);
    struct stat st {};
    REQUIRE(::stat(("/dev/shm/" + n.name).c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_uid == ::geteuid());
    sut.unlink();
  }

  TEST_CASE("attach refuses a segment that group or others may write") {
    scoped_name n{"groupw"};
    auto sut = manager::create(n.name);
    REQUIRE(::chmod(("/dev/shm/" + n.name).c_str(), 0620) == 0);
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == EACCES);
    REQUIRE(::chmod(("/dev/shm/" + n.name).c_str(), 0602) == 0);
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == EACCES);
    REQUIRE(::chmod(("/dev/shm/" + n.name).c_str(), 0600) == 0);
    CHECK(manager::attach(n.name));
    sut.unlink();
  }

  TEST_CASE("attach refuses a file that is not a manager") {
    tandem::test::watchdog guard{10s};
    scoped_name n{"foreign"};
    int fd = ::shm_open(("/" + n.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    std::vector<char> junk(8192, 'x');
    REQUIRE(::write(fd, junk.data(), junk.size()) == static_cast<ssize_t>(junk.size()));
    ::close(fd);
    auto start = std::chrono::steady_clock::now();
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == EINVAL);
    CHECK(std::chrono::steady_clock::now() - start < 1s); // refused at once, no waiting
    manager::unlink(n.name);
  }

  TEST_CASE("attach refuses a manager of another layout version") {
    scoped_name n{"version"};
    auto sut = manager::create(n.name);
    // The version is the 32-bit field at byte 8 of the header (manager_core.cpp).
    std::uint32_t other = 99;
    poke(n.name, 8, &other, sizeof other);
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == EINVAL);
    sut.unlink();
  }

  TEST_CASE("attach gives up within about a second on a segment its creator never sized") {
    tandem::test::watchdog guard{10s};
    scoped_name n{"unsized"};
    int fd = ::shm_open(("/" + n.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    ::close(fd);
    auto start = std::chrono::steady_clock::now();
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == ETIMEDOUT);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 600ms);
    CHECK(took < 4s);
    manager::unlink(n.name);
  }

  TEST_CASE("attach fails fast when the creator died in the middle of initialising") {
    tandem::test::watchdog guard{10s};
    scoped_name n{"halfmade"};
    // What a creator killed after sizing the file and writing its identity leaves: a sized file
    // whose header has the creator's pid (the 32-bit field at byte 40) and no ready flag.
    pid_t dead = fork_child([] { return 0; });
    REQUIRE(wait_child(dead) == 0);
    int fd = ::shm_open(("/" + n.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 1 << 20) == 0);
    ::close(fd);
    std::int32_t pid = dead;
    poke(n.name, 40, &pid, sizeof pid);
    auto start = std::chrono::steady_clock::now();
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == ETIMEDOUT);
    // Well before init_wait (5 s): the creator was found dead, not waited for.
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    manager::unlink(n.name);
  }

  TEST_CASE("attach waits for a live creator that is still initialising and then gives up") {
    tandem::test::watchdog guard{20s};
    scoped_name n{"slow"};
    int fd = ::shm_open(("/" + n.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 1 << 20) == 0);
    ::close(fd);
    std::int32_t pid = ::getpid(); // alive: attach must wait the whole init_wait
    poke(n.name, 40, &pid, sizeof pid);
    auto start = std::chrono::steady_clock::now();
    CHECK(segment_errno([&] { (void)manager::attach(n.name); }) == ETIMEDOUT);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= manager::init_wait * 6 / 10);
    CHECK(took < manager::init_wait * 3);
    manager::unlink(n.name);
  }

  TEST_CASE("the segment grows past its initial size while another process uses it") {
    tandem::test::watchdog guard{30s};
    scoped_name n{"grow"};
    auto sut =
        manager::create(n.name, manager_options{.initial_size = 64 << 10, .max_size = 256 << 20});
    auto d = sut.dict<std::int64_t, std::string>("big");
    const auto committed0 = sut.committed_size();
    CHECK(sut.reserved_size() == std::size_t{256} << 20);
    // The child attaches while the segment is small, then reads what was added after growth.
    int go[2];
    REQUIRE(::pipe(go) == 0);
    pid_t child = fork_child([&] {
      ::close(go[1]);
      auto m = manager::attach(n.name);
      auto c = m.dict<std::int64_t, std::string>("big");
      char b;
      if (::read(go[0], &b, 1) != 1) return 2;
      if (c.size() != 20000) return 3;
      for (std::int64_t i = 0; i < 20000; i += 997)
        if (c.get(i) != std::string(100, static_cast<char>('a' + i % 26))) return 4;
      c.set(-1, "from the child");
      return 0;
    });
    ::close(go[0]);
    for (std::int64_t i = 0; i < 20000; ++i)
      d.set(i, std::string(100, static_cast<char>('a' + i % 26)));
    CHECK(sut.committed_size() > committed0);
    CHECK(sut.committed_size() >= sut.used_size());
    // Only committed memory is used in /dev/shm, not the reservation.
    struct stat st {};
    REQUIRE(::stat(("/dev/shm/" + n.name).c_str(), &st) == 0);
    CHECK(static_cast<std::size_t>(st.st_size) == sut.reserved_size());
    CHECK(static_cast<std::size_t>(st.st_blocks) * 512 <= sut.committed_size() + (64 << 10));
    REQUIRE(::write(go[1], "g", 1) == 1);
    ::close(go[1]);
    CHECK(wait_child(child) == 0);
    CHECK(d.get(-1) == "from the child");
    CHECK(sut.check_heap().empty());
    sut.unlink();
  }

  TEST_CASE("storing past the reservation throws ENOSPC and changes nothing") {
    scoped_name n{"full"};
    auto sut =
        manager::create(n.name, manager_options{.initial_size = 64 << 10, .max_size = 256 << 10});
    auto d = sut.dict<std::int64_t, std::string>("d");
    std::int64_t i = 0;
    int err = 0;
    std::size_t before = 0;
    for (; i < 100000 && err == 0; ++i) {
      before = d.size();
      err = segment_errno([&] { d.set(i, std::string(200, 'x')); });
    }
    CHECK(err == ENOSPC);
    CHECK(d.size() == before);
    CHECK_FALSE(d.contains(i - 1));
    // Still usable: the block an erase frees is reused by a replacement of the same size.
    d.erase(0);
    d.set(1, std::string(200, 'y'));
    CHECK(d.get(1) == std::string(200, 'y'));
    CHECK(sut.check_heap().empty());
    sut.unlink();
  }

  TEST_CASE("names lists the objects in creation order and contains finds them") {
    scoped_name n{"names"};
    auto sut = manager::create(n.name);
    (void)sut.dict<int, int>("b");
    (void)sut.dict<std::string, double>("a");
    (void)sut.dict<int, int>("b"); // found, not created again
    CHECK(sut.names() == std::vector<std::string>{"b", "a"});
    CHECK(sut.contains("a"));
    CHECK_FALSE(sut.contains("c"));
    CHECK_THROWS_AS(((void)sut.dict<int, int>("")), tandem::value_error);
    sut.unlink();
  }

  TEST_CASE("an object asked for with other types is refused with value_error") {
    scoped_name n{"types"};
    auto sut = manager::create(n.name);
    sut.dict<std::string, std::int64_t>("scores").set("a", 1);
    CHECK_THROWS_AS(((void)sut.dict<std::string, double>("scores")), tandem::value_error);
    CHECK_THROWS_AS(((void)sut.dict<std::int64_t, std::int64_t>("scores")), tandem::value_error);
    try {
      (void)sut.dict<std::string, double>("scores");
    } catch (const tandem::value_error& e) {
      CHECK(std::string{e.what()}.find("std::string") != std::string::npos);
    }
    CHECK(sut.dict<std::string, std::int64_t>("scores").get("a") == 1);
    sut.unlink();
  }

  TEST_CASE("freed memory is reused so repeated fill and clear do not grow the segment") {
    scoped_name n{"reuse"};
    auto sut = manager::create(n.name);
    auto d = sut.dict<std::int64_t, std::string>("d");
    std::size_t after_first = 0;
    for (int round = 0; round < 20; ++round) {
      for (std::int64_t i = 0; i < 2000; ++i)
        d.set(i, std::string(static_cast<std::size_t>(i % 300), 'v'));
      for (std::int64_t i = 0; i < 2000; i += 2) d.set(i, "replaced");
      d.clear();
      if (round == 0) after_first = sut.used_size();
    }
    CHECK(sut.used_size() == after_first);
    CHECK(sut.check_heap().empty());
    sut.unlink();
  }

  TEST_CASE("an empty manager handle throws usage_error") {
    manager sut;
    CHECK_FALSE(sut);
    CHECK(sut.name().empty());
    CHECK_THROWS_AS(((void)sut.dict<int, int>("x")), tandem::usage_error);
  }

} // TEST_SUITE
