// The child's end of a process mailbox (tandem/mp/process_mailbox.hpp).
//
// Choices:
// - Both channels are read only after ppoll says they are readable, and then one whole message
//   is read with a zero timeout (its sender writes it whole), so a receive with a timeout never
//   blocks past it for a message that has not begun.
// - The inbox is created once per process image and never destroyed: a target's threads may still
//   use it while the child ends with _exit. A fork child replaces its parent's inbox (whose
//   descriptors are the parent's own channels to its parent) with its own.
#include <array>
#include <functional>
#include <optional>
#include <stop_token>
#include <sys/eventfd.h>
#include <tandem/detail/futex.hpp>
#include <tandem/mp/process_mailbox.hpp>

#include <poll.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <system_error>

namespace tandem::mp::detail {

namespace {

// The current inbox; never destroyed (see the file comment). An atomic rather than a lock: a
// fork child replaces it while a thread that does not exist there might have held a lock.
std::atomic<parent_inbox*> current_inbox{nullptr};

// Waits until one of `a` and `b` (-1 entries ignored) is readable or `t` expires; returns the
// index of a readable one (the first), or -1 on timeout or when a stop is requested on `st`.
int wait_any(int a, int b, const timeout& t, const std::stop_token* st = nullptr) {
  std::array<pollfd, 2> pfds{{{a, POLLIN, 0}, {b, POLLIN, 0}}};
  int rc = st != nullptr ? tandem::detail::ppoll_until(pfds.data(), pfds.size(), t, *st)
                         : tandem::detail::ppoll_until(pfds.data(), pfds.size(), t);
  if (rc < 0)
    throw error(std::error_code(errno, std::system_category()),
                "poll on the mailbox to the parent failed");
  if (rc == 0) return -1;
  if (a >= 0 && pfds[0].revents != 0) return 0;
  return 1;
}

} // namespace

void set_parent_mailbox(child_channels channels) noexcept {
  parent_inbox* fresh = nullptr;
  try {
    fresh = std::make_unique<parent_inbox>(std::move(channels)).release();
  } catch (...) { // NOLINT(bugprone-empty-catch): out of memory: the child has no mailbox
  }
  // The forking parent's channels to its own parent: close them here (the parent's copies stay
  // open), so its parent sees end of file when the forking parent ends.
  if (auto* old = current_inbox.exchange(fresh)) old->close();
}

parent_inbox& parent_inbox_or_throw() {
  auto* inbox = current_inbox.load(std::memory_order_acquire);
  if (inbox == nullptr)
    throw usage_error{"this process has no parent mailbox: only a process target started by "
                      "tandem::mp::process can receive from or send to its parent"};
  return *inbox;
}

parent_inbox::parent_inbox(child_channels channels) noexcept : channels_(std::move(channels)) {
  box_eof_ = channels_.box.closed();
  requests_eof_ = channels_.requests.closed();
}

bool parent_inbox::read_one(connection& c, bool from_actor) {
  std::optional<std::vector<std::byte>> bytes;
  try {
    bytes = c.recv_bytes(timeout{std::chrono::seconds{0}});
  } catch (const eof_error&) {
    return false;
  }
  if (!bytes) return true; // a spurious wake-up: nothing began
  inbound m;
  if (from_actor) {
    m.id = get_request_id(*bytes);
    m.bytes.assign(bytes->begin() + request_id_size, bytes->end());
    m.from_actor = true;
  } else {
    m.bytes = std::move(*bytes);
  }
  stash_.push_back(std::move(m));
  return true;
}

bool parent_inbox::fetch(std::size_t i, bool with_requests, const timeout& t,
                         const std::stop_token* st) {
  while (stash_.size() <= i) {
    bool use_requests = with_requests && !requests_eof_;
    if (box_eof_ && !use_requests)
      throw eof_error{"the parent process is gone and every message it sent was read"};
    int a = box_eof_ ? -1 : channels_.box.fileno();
    int b = use_requests ? channels_.requests.fileno() : -1;
    int ready = wait_any(a, b, t, st);
    if (ready < 0) return false;
    if (ready == 0) {
      if (!read_one(channels_.box, false)) box_eof_ = true;
    } else if (!read_one(channels_.requests, true)) {
      requests_eof_ = true;
    }
  }
  return true;
}

inbound parent_inbox::take(std::size_t i) {
  auto it = stash_.begin() + static_cast<std::ptrdiff_t>(i);
  inbound m = std::move(*it);
  stash_.erase(it);
  return m;
}

std::optional<inbound> parent_inbox::take_plain(const timeout& t, const std::stop_token* st) {
  auto lk = lock();
  if (st != nullptr && st->stop_requested()) return std::nullopt;
  for (std::size_t i = 0; i < stash_.size(); ++i)
    if (!stash_[i].from_actor) return take(i);
  if (!fetch(stash_.size(), false, t, st)) return std::nullopt;
  return take(stash_.size() - 1);
}

bool parent_inbox::poll(const timeout& t, const std::stop_token* st) {
  auto lk = lock();
  if (st != nullptr && st->stop_requested()) return false;
  for (const auto& m : stash_)
    if (!m.from_actor) return true;
  if (box_eof_) return true;
  return wait_any(channels_.box.fileno(), -1, t, st) == 0;
}

void parent_inbox::send(std::span<const std::byte> bytes) {
  std::lock_guard guard{send_mtx_};
  channels_.box.send_bytes(bytes);
}

void parent_inbox::reply(const inbound& m, std::span<const std::byte> bytes) {
  if (!m.from_actor) {
    send(bytes);
    return;
  }
  if (m.id == 0) return; // nobody to answer
  std::vector<std::byte> frame;
  frame.reserve(request_id_size + bytes.size());
  put_request_id(frame, m.id);
  frame.insert(frame.end(), bytes.begin(), bytes.end());
  std::lock_guard guard{send_mtx_};
  channels_.requests.send_bytes(frame);
}

} // namespace tandem::mp::detail
