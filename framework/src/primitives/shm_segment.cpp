// detail::shm_segment: memfd + mmap(MAP_SHARED). See the header for the contract.
#include <tandem/error.hpp>
#include <tandem/mp/detail/shm_segment.hpp>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tandem::mp::detail {

namespace {

[[noreturn]] void throw_segment(int err, const std::string& what) {
  throw segment_error(err, what + ": " + std::strerror(err));
}

class fd_guard {
public:
  explicit fd_guard(int fd) noexcept : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int release() noexcept { return std::exchange(fd_, -1); }
  int get() const noexcept { return fd_; }

private:
  int fd_;
};

static_assert(sizeof(shm_segment::header) <= shm_segment::header_size);

} // namespace

shm_segment shm_segment::create(std::uint32_t kind, std::size_t payload_size,
                                const char* debug_name) {
  std::size_t total = header_size + payload_size;
  fd_guard fd{::memfd_create(debug_name, MFD_CLOEXEC)};
  if (fd.get() < 0) throw_segment(errno, "cannot create a shared-memory segment (memfd_create)");
  if (::ftruncate(fd.get(), static_cast<off_t>(total)) != 0)
    throw_segment(errno, "cannot size a shared-memory segment of " + std::to_string(total) +
                             " bytes (ftruncate); ask for a smaller buffer");
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED)
    throw_segment(errno, "cannot map a shared-memory segment of " + std::to_string(total) +
                             " bytes (mmap); ask for a smaller buffer");
  // ftruncate zero-fills, so only the header needs writing.
  auto* h = static_cast<header*>(base);
  h->version = version;
  h->kind = kind;
  h->total_size = total;
  h->payload_off = header_size;
  h->magic = magic;
  return shm_segment{fd.release(), base, total};
}

shm_segment shm_segment::attach(int raw_fd, std::uint32_t kind) {
  fd_guard fd{raw_fd};
  if (raw_fd < 0) throw_segment(EBADF, "cannot attach a shared-memory segment");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw_segment(errno, "cannot attach a shared-memory segment (fstat)");
  auto total = static_cast<std::size_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || total < header_size)
    throw_segment(EINVAL, "cannot attach: the descriptor is not a tandem shared-memory segment");
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED)
    throw_segment(errno, "cannot map a shared-memory segment of " + std::to_string(total) +
                             " bytes (mmap)");
  shm_segment seg{fd.release(), base, total};
  const auto* h = static_cast<const header*>(base);
  if (h->magic != magic || h->payload_off != header_size)
    throw_segment(EINVAL, "cannot attach: the descriptor is not a tandem shared-memory segment "
                          "(bad magic number); pass the descriptor of a tandem queue");
  if (h->version != version)
    throw_segment(EINVAL, "cannot attach: the segment has layout version " +
                              std::to_string(h->version) + ", this program expects " +
                              std::to_string(version) + "; build both programs from one tandem");
  if (h->kind != kind)
    throw_segment(EINVAL, "cannot attach: the segment holds another kind of object (" +
                              std::to_string(h->kind) + ", expected " + std::to_string(kind) +
                              "); attach it with the type that created it");
  if (h->total_size != total)
    throw_segment(EINVAL, "cannot attach: the segment's size (" + std::to_string(total) +
                              " bytes) differs from its header's (" +
                              std::to_string(h->total_size) + " bytes)");
  return seg;
}

shm_segment::shm_segment(shm_segment&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

shm_segment& shm_segment::operator=(shm_segment&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

shm_segment::~shm_segment() {
  reset();
}

void shm_segment::reset() noexcept {
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  base_ = nullptr;
  fd_ = -1;
  size_ = 0;
}

} // namespace tandem::mp::detail
