// Shared-memory transfer of large messages between the two ends of an mp::pipe().
//
// A socket moves a message with two copies in the kernel (sender to socket buffer, socket buffer
// to receiver) in pieces no larger than the socket buffer, with a wake-up for each piece. For a
// large message it is cheaper to copy it once into memory both processes map and send only a
// small marker frame through the socket: the receiver copies it out and frees the space.
//
// Each sending end owns an *area*: a sealed memfd of `chunk_count` chunks of `chunk_size` bytes
// behind a header. A 64-bit bitmap in the header says which chunks hold a message in flight: the
// sender claims a run of free chunks with compare-and-swap, copies the message in and sends the
// marker; the receiver copies the message out and clears the bits. Claims and frees are lock-free
// and work in any order, so ends shared by forked processes, and markers that arrive in another
// order than their claims, are fine. Every marker carries the area's descriptor (SCM_RIGHTS):
// the receiver maps it the first time and knows it by the id in the header from then on, closing
// later copies, so any process reading an end can map any area.
//
// Nothing here trusts the peer: a received area must be a sealed memfd of the size its header
// declares, and every marker's chunk range and length are checked against the area before a byte
// is copied.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace tandem::mp::detail {

/// One mapped area: created by the sender, or attached by the receiver from a descriptor.
class pipe_area {
public:
  static constexpr std::uint64_t magic = 0x4550'4950'4d44'4e54; // "TNDMPIPE" little-endian
  static constexpr std::uint32_t version = 1;
  static constexpr std::size_t header_size = 4096;
  static constexpr std::uint32_t chunk_count = 64;
  static constexpr std::size_t chunk_size = std::size_t{256} << 10;
  /// The largest message an area carries; longer ones are streamed.
  static constexpr std::size_t capacity = chunk_count * chunk_size;
  /// Chunks in flight beyond which a sender waits (unless the area is empty): a sender that runs
  /// far ahead of its receiver would spread its copies over memory the caches no longer hold.
  static constexpr std::uint32_t budget_chunks = 16;

  struct header {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t chunk_count;
    std::uint64_t chunk_size;
    std::uint64_t id;
    std::atomic<std::uint64_t> used;    // bit i set: chunk i holds a message in flight
    std::atomic<std::uint32_t> frees;   // bumped by every release: the futex senders wait on
    std::atomic<std::uint32_t> waiters; // senders waiting for a release
  };

  /// Creates a fresh area with a random id. Throws tandem::error with the errno on failure.
  static std::unique_ptr<pipe_area> create();

  /// Maps the area behind `fd`, taking ownership of `fd` (closed in every case). Throws
  /// bad_message_error when it is not a sealed area of the expected geometry.
  static std::unique_ptr<pipe_area> attach(int fd);

  /// Adopts a mapping of the whole area and its descriptor; create() and attach() use it.
  pipe_area(int fd, void* base, std::uint64_t id) noexcept : fd_(fd), base_(base), id_(id) {}
  pipe_area(const pipe_area&) = delete;
  pipe_area& operator=(const pipe_area&) = delete;
  ~pipe_area();

  std::uint64_t id() const noexcept { return id_; }
  int fd() const noexcept { return fd_; }

  /// Claims room for `n` bytes (1 <= n <= capacity): the index of the first chunk, or nothing
  /// when no run of free chunks is long enough right now.
  std::optional<std::uint32_t> try_claim(std::size_t n) noexcept;

  /// Frees the chunks of a message of `n` bytes starting at chunk `first`, and wakes senders
  /// waiting for room.
  void release(std::uint32_t first, std::size_t n) noexcept;

  /// Claims room for `n` bytes, waiting up to `slice` for a release when there is none. Nothing
  /// when the slice passed without room: the caller checks that its peer lives and retries.
  std::optional<std::uint32_t> claim(std::size_t n, std::chrono::milliseconds slice) noexcept;

  /// The bytes of chunk `first` onwards, `n` of them. Checks the range; throws
  /// bad_message_error when it does not lie inside the area.
  std::span<std::byte> bytes(std::uint32_t first, std::size_t n) const;

  /// Chunks a message of `n` bytes occupies.
  static std::uint32_t chunks_for(std::size_t n) noexcept {
    return static_cast<std::uint32_t>((n + chunk_size - 1) / chunk_size);
  }

private:
  header& head() const noexcept { return *static_cast<header*>(base_); }

  int fd_ = -1;
  void* base_ = nullptr;
  std::uint64_t id_ = 0;
};

/// The shared-memory state of one connection end: its own area (made on the first large send)
/// and the peer areas it has been told about.
struct pipe_areas {
  /// Most peer areas one end accepts: a peer cannot make it map without bound.
  static constexpr std::size_t max_peer_areas = 16;

  std::unique_ptr<pipe_area> own;
  std::vector<std::unique_ptr<pipe_area>> peers;
  std::vector<int> pending_fds; // received with the current header, not yet claimed

  /// The peer area with this id, or null.
  pipe_area* peer(std::uint64_t id) const noexcept;
  /// Closes every descriptor in pending_fds.
  void drop_pending() noexcept;
  ~pipe_areas();
};

} // namespace tandem::mp::detail
