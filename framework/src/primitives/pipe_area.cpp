// tandem::mp::detail::pipe_area: the shared memory behind large pipe messages.
#include "internal/pipe_area.hpp"

#include <tandem/mp/connection.hpp>

#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>

#include <bit>

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace tandem::mp::detail {

namespace {

constexpr std::size_t total_size = pipe_area::header_size + pipe_area::capacity;
constexpr unsigned required_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw error(std::error_code(err, std::system_category()), what);
}

std::uint64_t run_mask(std::uint32_t first, std::uint32_t count) noexcept {
  std::uint64_t ones = count >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << count) - 1;
  return ones << first;
}

void* map(int fd) noexcept {
  void* base = ::mmap(nullptr, total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return base == MAP_FAILED ? nullptr : base;
}

} // namespace

std::unique_ptr<pipe_area> pipe_area::create() {
  int fd = ::memfd_create("tandem-pipe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw_errno(errno, "pipe: memfd_create for large messages failed");
  std::uint64_t id = 0;
  // A collision only matters between areas sent to the same receiver; 64 random bits suffice.
  if (::getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id))
    id = (static_cast<std::uint64_t>(::getpid()) << 32) ^ reinterpret_cast<std::uintptr_t>(&id);
  if (::ftruncate(fd, static_cast<off_t>(total_size)) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, required_seals) != 0) {
    int err = errno;
    ::close(fd);
    throw_errno(err, "pipe: sizing the shared memory for large messages failed");
  }
  void* base = map(fd);
  if (base == nullptr) {
    int err = errno;
    ::close(fd);
    throw_errno(err, "pipe: mapping the shared memory for large messages failed");
  }
  ::new (base) header{magic, version, chunk_count, chunk_size, id, {0}, {0}, {0}};
  return std::make_unique<pipe_area>(fd, base, id);
}

std::unique_ptr<pipe_area> pipe_area::attach(int fd) {
  auto refuse = [fd](const std::string& why) -> std::unique_ptr<pipe_area> {
    ::close(fd);
    throw bad_message_error("pipe: the peer sent a shared-memory area that " + why +
                            ": the stream was not written by a tandem connection");
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return refuse("is not a memory file");
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (static_cast<unsigned>(seals) & required_seals) != required_seals)
    return refuse("is not sealed against resizing");
  if (static_cast<std::size_t>(st.st_size) != total_size) return refuse("has the wrong size");
  void* base = map(fd);
  if (base == nullptr) return refuse("cannot be mapped");
  const auto& h = *static_cast<const header*>(base);
  if (h.magic != magic || h.version != version || h.chunk_count != chunk_count ||
      h.chunk_size != chunk_size) {
    ::munmap(base, total_size);
    return refuse("has a foreign header");
  }
  return std::make_unique<pipe_area>(fd, base, h.id);
}

pipe_area::~pipe_area() {
  ::munmap(base_, total_size);
  ::close(fd_);
}

std::optional<std::uint32_t> pipe_area::try_claim(std::size_t n) noexcept {
  std::uint32_t count = chunks_for(n);
  auto& used = head().used;
  // Acquire: the receiver's copy out of a chunk happens before this claim lets it be reused.
  std::uint64_t now = used.load(std::memory_order_acquire);
  for (;;) {
    std::optional<std::uint32_t> first;
    for (std::uint32_t i = 0; i + count <= chunk_count; ++i) {
      if ((now & run_mask(i, count)) == 0) {
        first = i;
        break;
      }
    }
    if (!first) return std::nullopt;
    if (now != 0 && static_cast<std::uint32_t>(std::popcount(now)) + count > budget_chunks)
      return std::nullopt;
    if (used.compare_exchange_weak(now, now | run_mask(*first, count), std::memory_order_acquire,
                                   std::memory_order_acquire))
      return first;
  }
}

void pipe_area::release(std::uint32_t first, std::size_t n) noexcept {
  auto& h = head();
  h.used.fetch_and(~run_mask(first, chunks_for(n)), std::memory_order_release);
  // Bump, then look for waiters; a waiter registers, then re-checks, then sleeps on the value it
  // saw before: one of the two sees the other (both sequentially consistent).
  h.frees.fetch_add(1, std::memory_order_seq_cst);
  if (h.waiters.load(std::memory_order_seq_cst) != 0) tandem::detail::futex_wake_all(h.frees, true);
}

std::optional<std::uint32_t> pipe_area::claim(std::size_t n,
                                              std::chrono::milliseconds slice) noexcept {
  auto& h = head();
  std::uint32_t seen = h.frees.load(std::memory_order_seq_cst);
  h.waiters.fetch_add(1, std::memory_order_seq_cst);
  auto first = try_claim(n);
  if (!first) {
    tandem::detail::futex_wait(h.frees, seen, slice, true);
    first = try_claim(n);
  }
  h.waiters.fetch_sub(1, std::memory_order_seq_cst);
  return first;
}

std::span<std::byte> pipe_area::bytes(std::uint32_t first, std::size_t n) const {
  if (n == 0 || n > capacity || first >= chunk_count || chunks_for(n) > chunk_count - first)
    throw bad_message_error("pipe: a shared-memory message of " + std::to_string(n) +
                            " bytes at chunk " + std::to_string(first) +
                            " lies outside its area: the stream is corrupt");
  return {static_cast<std::byte*>(base_) + header_size + std::size_t{first} * chunk_size, n};
}

pipe_area* pipe_areas::peer(std::uint64_t id) const noexcept {
  for (const auto& a : peers)
    if (a->id() == id) return a.get();
  return nullptr;
}

void pipe_areas::drop_pending() noexcept {
  for (int fd : pending_fds) ::close(fd);
  pending_fds.clear();
}

pipe_areas::~pipe_areas() {
  drop_pending();
}

void pipe_areas_deleter::operator()(pipe_areas* p) const noexcept {
  std::default_delete<pipe_areas>{}(p);
}

} // namespace tandem::mp::detail
