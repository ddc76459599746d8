// tandem::mp::wait: ppoll over descriptors, futex waits over words, slices over a mix.
#include <tandem/detail/futex.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/wait.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>

namespace tandem::mp {

// -- waitable ---------------------------------------------------------------------------------

waitable::waitable(const connection& conn) : fd_(conn.fileno()), object_(&conn) {
  if (!conn.readable())
    throw usage_error("wait: the connection is write-only and can never become ready: wait on "
                      "the other end of the pipe");
}

waitable::waitable(int fd) : fd_(fd) {
  if (fd < 0) throw value_error("wait: invalid file descriptor " + std::to_string(fd));
}

waitable waitable::on_word(const std::atomic<std::uint32_t>& word, std::function<bool()> ready,
                           bool shared, const void* object) {
  if (!ready) throw value_error("wait: a word-based waitable needs a readiness predicate");
  waitable w;
  w.word_ = &word;
  w.ready_ = std::move(ready);
  w.shared_ = shared;
  w.object_ = object;
  return w;
}

// -- wait -------------------------------------------------------------------------------------

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw error(std::error_code(err, std::system_category()), what);
}

// How long one slice of a mixed wait (descriptors and words) may sleep before the words are
// checked again: short at first, so a word that changes at once is seen at once.
constexpr std::chrono::milliseconds first_slice{1};
constexpr std::chrono::milliseconds max_slice{4};

// ppoll until `t`; returns false on timeout, true when some descriptor has events (the caller
// re-checks everything either way).
bool ppoll_until(std::vector<pollfd>& pfds, const timeout& t) {
  int rc = tandem::detail::ppoll_until(pfds.data(), pfds.size(), t);
  if (rc < 0) throw_errno(errno, "wait: ppoll failed");
  return rc != 0;
}

// A slice of `slice` that ends no later than `t`.
timeout slice_of(const timeout& t, std::chrono::milliseconds slice) {
  auto end = timeout::clock::now() + slice;
  return timeout{t.is_forever() ? end : std::min(end, t.deadline())};
}

} // namespace

struct wait_access {
  static std::vector<std::size_t> run(std::span<const waitable> objects, const std::stop_token* st,
                                      const timeout& t) {
    if (st != nullptr && st->stop_requested()) return {};

    std::vector<pollfd> pfds;
    std::vector<std::size_t> fd_owner;
    std::vector<std::size_t> words;
    for (std::size_t i = 0; i < objects.size(); ++i) {
      if (objects[i].word_ != nullptr) {
        words.push_back(i);
      } else {
        pfds.push_back({objects[i].fd_, POLLIN, 0});
        fd_owner.push_back(i);
      }
    }
    const std::size_t n_fds = pfds.size();

    // A stop request wakes ppoll through an eventfd; a word-only wait is woken by futex_wait's
    // own stop support.
    int efd = -1;
    struct fd_closer {
      int& fd;
      ~fd_closer() {
        if (fd >= 0) ::close(fd);
      }
    } closer{efd};
    std::optional<std::stop_callback<std::function<void()>>> on_stop;
    const bool single_word = n_fds == 0 && words.size() == 1;
    if (st != nullptr && st->stop_possible() && !single_word) {
      efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (efd < 0) throw_errno(errno, "wait: eventfd failed");
      pfds.push_back({efd, POLLIN, 0});
      on_stop.emplace(*st, [fd = efd] {
        std::uint64_t one = 1;
        [[maybe_unused]] auto rc = ::write(fd, &one, sizeof one);
      });
    }

    std::vector<std::uint32_t> seen(words.size());
    std::vector<bool> ready(objects.size());
    auto slice = first_slice;
    for (;;) {
      // Read the words before their predicates, so a change after a predicate said "not ready"
      // makes the futex wait below return at once.
      for (std::size_t k = 0; k < words.size(); ++k)
        seen[k] = objects[words[k]].word_->load(std::memory_order_acquire);

      bool any = false;
      if (n_fds != 0) {
        std::vector<pollfd> once(pfds.begin(), pfds.begin() + static_cast<std::ptrdiff_t>(n_fds));
        int rc = 0;
        do {
          rc = ::ppoll(once.data(), once.size(), &zero_, nullptr);
        } while (rc < 0 && errno == EINTR);
        if (rc < 0) throw_errno(errno, "wait: ppoll failed");
        for (std::size_t k = 0; k < n_fds; ++k) {
          if ((once[k].revents & POLLNVAL) != 0)
            throw value_error("wait: file descriptor " + std::to_string(once[k].fd) +
                              " is not open");
          if ((once[k].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            ready[fd_owner[k]] = true;
            any = true;
          }
        }
      }
      for (std::size_t i : words) {
        if (objects[i].ready_()) {
          ready[i] = true;
          any = true;
        }
      }

      if (st != nullptr && st->stop_requested()) return {};
      if (any) {
        std::vector<std::size_t> out;
        for (std::size_t i = 0; i < ready.size(); ++i)
          if (ready[i]) out.push_back(i);
        return out;
      }
      if (t.expired()) return {};

      if (words.empty()) {
        ppoll_until(pfds, t);
      } else if (single_word) {
        const auto& w = objects[words[0]];
        if (st != nullptr)
          tandem::detail::futex_wait(*w.word_, seen[0], t, *st, w.shared_);
        else
          tandem::detail::futex_wait(*w.word_, seen[0], t, w.shared_);
      } else {
        timeout part = slice_of(t, slice);
        slice = std::min(slice * 2, max_slice);
        if (!pfds.empty()) {
          ppoll_until(pfds, part);
        } else {
          // Several words and no stop token: sleep on the first, re-check all each slice.
          const auto& w = objects[words[0]];
          tandem::detail::futex_wait(*w.word_, seen[0], part, w.shared_);
        }
      }
    }
  }

  static constexpr timespec zero_{0, 0};
};

std::vector<std::size_t> wait(std::span<const waitable> objects, timeout t) {
  return wait_access::run(objects, nullptr, t);
}

std::vector<std::size_t> wait(std::span<const waitable> objects, std::stop_token st, timeout t) {
  return wait_access::run(objects, &st, t);
}

} // namespace tandem::mp
