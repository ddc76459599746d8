// The actor of a child process (tandem/mp/detail/process_actor.hpp).
//
// Choices:
// - Like a thread's actor, it is a monitorable_actor without behavior or scheduler slot: its
//   enqueue encodes the message and writes it to the child's actor channel at once, so the
//   actor system never runs it and never waits for it.
// - One polling thread per actor waits on the child's pidfd, the actor channel and a stop
//   eventfd. The pidfd is checked before the stop event, and the channel is drained before the
//   actor quits, so replies the child sent before it ended still reach their requesters and a
//   shutdown that ended the child reports its exit code.
// - The element types of a caf::message are named by their std::type_info, as the codec's type
//   tag does; CAF's builtin types only carry a type number, mapped back to the std::type_info of
//   the types the codec carries.

#include <tandem/mp/detail/process_actor.hpp>

#include <tandem/detail/caf.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/connection.hpp>
#include <tandem/mp/detail/process_actor_message.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/runtime.hpp>

#include <caf/actor_cast.hpp>
#include <caf/actor_config.hpp>
#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/make_actor.hpp>
#include <caf/monitorable_actor.hpp>
#include <caf/sec.hpp>
#include <caf/system_messages.hpp>
#include <caf/type_nr.hpp>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <vector>

namespace tandem::mp {

namespace {

// -- element types --------------------------------------------------------------------------------

template <class... Ts>
std::map<std::uint16_t, const std::type_info*> builtin_table() {
  return {{caf::type_nr<Ts>::value, &typeid(Ts)}...};
}

// The std::type_info of CAF's builtin type number `nr`, for the builtin types the codec carries.
const std::type_info* builtin_type(std::uint16_t nr) {
  static const auto table =
      builtin_table<std::int8_t, std::int16_t, std::int32_t, std::int64_t, std::uint8_t,
                    std::uint16_t, std::uint32_t, std::uint64_t, bool, float, double, long double,
                    std::string, std::u16string, std::u32string, caf::atom_value, std::vector<char>,
                    std::vector<std::string>, std::set<std::string>,
                    std::map<std::string, std::string>, caf::timespan, caf::timestamp>();
  auto it = table.find(nr);
  return it == table.end() ? nullptr : it->second;
}

// Encodes the elements of `content` as one codec message. Throws value_error for an element
// whose type cannot travel (see the header's limits) or whose inspect overload fails.
std::vector<std::byte> encode_content(const caf::type_erased_tuple& content) {
  if (content.empty())
    throw value_error{"an empty message cannot be sent to a process: a message holds at least "
                      "one value"};
  std::uint64_t tag = 0xcbf29ce484222325ULL;
  std::vector<const std::type_info*> types;
  for (std::size_t i = 0; i < content.size(); ++i) {
    auto [nr, rtti] = content.type(i);
    const std::type_info* type = rtti != nullptr ? rtti : builtin_type(nr);
    if (type == nullptr)
      throw value_error{"element " + std::to_string(i) + " of the message (CAF type number " +
                        std::to_string(nr) +
                        ") cannot be sent to a process: send numbers, "
                        "strings, std containers or user types with an inspect overload"};
    tag = detail::fnv1a(detail::fnv1a(tag, type->name()), ";");
    types.push_back(type);
  }
  std::vector<std::byte> out;
  detail::put_request_id(out, 0); // overwritten by the caller
  detail::codec_writer w{out};
  w.write_header(tag);
  for (std::size_t i = 0; i < content.size(); ++i)
    if (auto err = content.save(i, w)) detail::throw_encode_error(err, *types[i]);
  return out;
}

// -- reply decoders -------------------------------------------------------------------------------

struct decoder_registry {
  std::mutex mtx;
  std::unordered_map<std::uint64_t, detail::reply_decoder> decoders; // guarded by mtx
};

decoder_registry& the_decoders() {
  // Never destroyed: process actors may decode while static objects are destroyed.
  static auto* reg = [] {
    auto* r = std::make_unique<decoder_registry>().release();
    auto add = [r]<class T>(T*) {
      r->decoders.emplace(detail::type_tag<T>(), &detail::decode_to_caf_message<T>);
    };
    add(static_cast<std::int8_t*>(nullptr));
    add(static_cast<std::int16_t*>(nullptr));
    add(static_cast<std::int32_t*>(nullptr));
    add(static_cast<std::int64_t*>(nullptr));
    add(static_cast<std::uint8_t*>(nullptr));
    add(static_cast<std::uint16_t*>(nullptr));
    add(static_cast<std::uint32_t*>(nullptr));
    add(static_cast<std::uint64_t*>(nullptr));
    add(static_cast<bool*>(nullptr));
    add(static_cast<float*>(nullptr));
    add(static_cast<double*>(nullptr));
    add(static_cast<long double*>(nullptr));
    add(static_cast<std::string*>(nullptr));
    add(static_cast<std::u16string*>(nullptr));
    add(static_cast<std::u32string*>(nullptr));
    add(static_cast<caf::atom_value*>(nullptr));
    add(static_cast<std::vector<char>*>(nullptr));
    add(static_cast<std::vector<std::string>*>(nullptr));
    add(static_cast<std::set<std::string>*>(nullptr));
    add(static_cast<std::map<std::string, std::string>*>(nullptr));
    add(static_cast<caf::timespan*>(nullptr));
    add(static_cast<caf::timestamp*>(nullptr));
    return r;
  }();
  return *reg;
}

detail::reply_decoder find_decoder(std::uint64_t tag) {
  auto& reg = the_decoders();
  std::lock_guard guard{reg.mtx};
  auto it = reg.decoders.find(tag);
  return it == reg.decoders.end() ? nullptr : it->second;
}

// -- exit reasons ---------------------------------------------------------------------------------

caf::error exit_reason_for(const std::string& name, std::optional<int> code) {
  if (!code)
    return tandem::make_error(errc::process, "process " + name +
                                                 " ended but its exit status was lost: its exit "
                                                 "code is unknown");
  if (*code == 0) return caf::make_error(caf::exit_reason::normal);
  auto what = *code < 0 ? "process " + name + " was killed by signal " + std::to_string(-*code)
                        : "process " + name + " exited with code " + std::to_string(*code);
  return tandem::make_error(errc::process,
                            caf::make_message(std::move(what), static_cast<std::int32_t>(*code)));
}

caf::error receiver_down() noexcept {
  try {
    return caf::make_error(caf::sec::request_receiver_down);
  } catch (...) {
    return caf::error{};
  }
}

// -- the actor ------------------------------------------------------------------------------------

class process_actor final : public caf::monitorable_actor {
public:
  process_actor(caf::actor_config& cfg, std::string name, connection requests)
      : caf::monitorable_actor(cfg), name_(std::move(name)), requests_(std::move(requests)) {}

  const char* name() const override { return name_.c_str(); }

  void enqueue(caf::mailbox_element_ptr ptr, caf::execution_unit* host) override {
    auto& content = ptr->content();
    if (content.size() > 1 && handle_system_message(*ptr, host, true))
      return; // a sys_atom query, answered by monitorable_actor
    auto token = content.type_token();
    if (token == caf::make_type_token<caf::exit_msg>() ||
        token == caf::make_type_token<caf::down_msg>())
      return; // a process traps exits; these never travel
    std::vector<std::byte> frame;
    try {
      frame = encode_content(content);
    } catch (const std::exception& e) {
      answer(ptr->sender, ptr->mid, host, caf::make_message(make_error(errc::value, e.what())));
      return;
    }
    std::uint64_t id = 0;
    {
      std::lock_guard guard{mtx_};
      if (ended_) {
        answer(ptr->sender, ptr->mid, host, caf::make_message(receiver_down()));
        return;
      }
      if (ptr->sender) {
        id = ++last_id_;
        pending_.emplace(id, pending_t{ptr->sender, ptr->mid});
      }
    }
    for (std::size_t i = 0; i < detail::request_id_size; ++i)
      frame[i] = static_cast<std::byte>((id >> (8 * i)) & 0xff);
    bool sent = false;
    {
      // Not under mtx_: a sender blocked on a full channel must not keep the polling thread
      // from delivering the replies that the child is blocked writing.
      std::lock_guard guard{send_mtx_};
      try {
        if (!requests_.closed()) {
          requests_.send_bytes(frame);
          sent = true;
        }
      } catch (const std::exception&) { // NOLINT(bugprone-empty-catch): handled below
      }
    }
    if (sent) return;
    // The child has ended (the polling thread ends the actor) or the actor has already ended.
    bool was_pending = false;
    if (id != 0) {
      std::lock_guard guard{mtx_};
      was_pending = pending_.erase(id) == 1;
    }
    if (id == 0 || was_pending)
      answer(ptr->sender, ptr->mid, host, caf::make_message(receiver_down()));
  }

  // The polling thread's loop; ends when the actor quit.
  void run(process p, int sentinel, int stop_fd,
           const std::shared_ptr<detail::process_actor_link>& link) {
    int requests_fd = requests_.fileno();
    bool requests_open = true;
    for (;;) {
      pollfd pfds[3] = {{sentinel, POLLIN, 0},
                        {requests_open ? requests_fd : -1, POLLIN, 0},
                        {stop_fd, POLLIN, 0}};
      int rc = ::poll(pfds, 3, -1);
      if (rc < 0) {
        if (errno == EINTR) continue;
        finish(caf::make_error(caf::exit_reason::unknown), link);
        break;
      }
      if (pfds[1].revents != 0) requests_open = read_replies(false);
      if (pfds[0].revents != 0) {
        if (requests_open) read_replies(true);
        finish(exit_reason_for(name_, detail::collected_exit_code(p)), link);
        break;
      }
      if (pfds[2].revents != 0) {
        finish(caf::make_error(caf::exit_reason::user_shutdown), link);
        break;
      }
    }
    ::close(sentinel);
  }

  // Quits with `reason` at once (an actor of a process that ended long ago).
  void quit(caf::error reason) { finish(std::move(reason), nullptr); }

  void on_destroy() override {
    cleanup(caf::make_error(caf::exit_reason::unreachable), nullptr);
    caf::monitorable_actor::on_destroy();
  }

private:
  struct pending_t {
    caf::strong_actor_ptr sender;
    caf::message_id mid;
  };

  // Delivers `msg` to `sender` as the answer to a message with id `mid`: the response of a
  // request, a plain message otherwise. Never throws.
  void answer(const caf::strong_actor_ptr& sender, caf::message_id mid, caf::execution_unit* host,
              caf::message msg) noexcept {
    if (!sender) return;
    try {
      auto id = mid.is_request() ? mid.response_id() : caf::make_message_id();
      sender->enqueue(
          caf::make_mailbox_element(caf::strong_actor_ptr{ctrl()}, id, {}, std::move(msg)), host);
    } catch (...) { // NOLINT(bugprone-empty-catch): out of memory; the requester's timeout remains
    }
  }

  // Reads the replies that are ready (all of them, when `drain`); returns false at end of file.
  bool read_replies(bool drain) {
    for (;;) {
      std::optional<std::vector<std::byte>> bytes;
      try {
        bytes = requests_.recv_bytes(timeout{std::chrono::seconds{0}});
      } catch (const eof_error&) {
        return false;
      } catch (const std::exception&) {
        return false; // a broken channel: nothing more can be read from it
      }
      if (!bytes) return true;
      deliver(*bytes);
      if (!drain) return true;
    }
  }

  void deliver(std::span<const std::byte> frame) {
    std::uint64_t id = 0;
    try {
      id = detail::get_request_id(frame);
    } catch (const std::exception&) {
      return;
    }
    pending_t to;
    {
      std::lock_guard guard{mtx_};
      auto it = pending_.find(id);
      if (it == pending_.end()) return;
      to = std::move(it->second);
      pending_.erase(it);
    }
    auto body = frame.subspan(detail::request_id_size);
    caf::message msg;
    auto tag = detail::message_tag(body);
    auto decoder = tag ? find_decoder(*tag) : nullptr;
    if (decoder == nullptr) {
      msg = caf::make_message(make_error(
          errc::bad_message, "process " + name_ +
                                 " replied with a message of types this program did not "
                                 "register: call tandem::mp::register_message_types<...>() with "
                                 "the reply's types"));
    } else {
      try {
        msg = decoder(body);
      } catch (const std::exception& e) {
        msg = caf::make_message(make_error(errc::bad_message, e.what()));
      }
    }
    answer(to.sender, to.mid, nullptr, std::move(msg));
  }

  void finish(caf::error reason, const std::shared_ptr<detail::process_actor_link>& link) {
    std::unordered_map<std::uint64_t, pending_t> left;
    {
      std::lock_guard guard{mtx_};
      if (ended_) return;
      ended_ = true;
      left.swap(pending_);
    }
    {
      std::lock_guard guard{send_mtx_};
      if (!requests_.closed()) {
        detail::forget_parent_end(requests_.fileno());
        requests_.close();
      }
    }
    if (link) {
      std::lock_guard guard{link->mtx};
      link->reason = reason;
    }
    cleanup(std::move(reason), nullptr);
    for (auto& [id, to] : left)
      answer(to.sender, to.mid, nullptr, caf::make_message(receiver_down()));
  }

  std::string name_;
  std::mutex mtx_;
  std::mutex send_mtx_;
  connection requests_;       // guarded by send_mtx_ for sending and closing; read by the polling
                              // thread only
  bool ended_ = false;        // guarded by mtx_
  std::uint64_t last_id_ = 0; // guarded by mtx_
  std::unordered_map<std::uint64_t, pending_t> pending_; // guarded by mtx_
};

// -- the polling threads --------------------------------------------------------------------------

struct poller_registry {
  std::mutex mtx;
  std::condition_variable cv;
  pid_t owner = 0;        // guarded by mtx: the process the entries below belong to
  std::set<int> stop_fds; // guarded by mtx: one eventfd per running polling thread
};

poller_registry& the_pollers() {
  // Never destroyed: polling threads may end while static objects are destroyed.
  static auto* reg = std::make_unique<poller_registry>().release();
  return *reg;
}

// Forgets the entries a forking parent left (their threads do not exist here). Requires mtx.
void adopt(poller_registry& reg) {
  if (reg.owner == ::getpid()) return;
  reg.owner = ::getpid();
  reg.stop_fds.clear();
}

caf::actor make_actor(caf::actor_system& sys, std::string name, connection requests) {
  caf::actor_config cfg;
  auto ptr = caf::make_actor<process_actor, caf::strong_actor_ptr>(
      sys.next_actor_id(), sys.node(), &sys, cfg, std::move(name), std::move(requests));
  return caf::actor_cast<caf::actor>(std::move(ptr));
}

process_actor* impl_of(const caf::actor& x) noexcept {
  return x ? dynamic_cast<process_actor*>(caf::actor_cast<caf::abstract_actor*>(x)) : nullptr;
}

} // namespace

std::optional<int> exit_code_of(const caf::error& reason) {
  if (!reason) return 0;
  errc code{};
  if (!tandem::detail::is_tandem_error(reason, code) || code != errc::process) return std::nullopt;
  const auto& ctx = reason.context();
  if (ctx.size() != 2 || !ctx.match_element<std::int32_t>(1)) return std::nullopt;
  return ctx.get_as<std::int32_t>(1);
}

void detail::register_reply_decoder(std::uint64_t tag, reply_decoder decoder) {
  auto& reg = the_decoders();
  std::lock_guard guard{reg.mtx};
  reg.decoders.emplace(tag, decoder);
}

caf::actor detail::make_process_actor(process p, connection requests, int sentinel,
                                      const std::shared_ptr<process_actor_link>& link) {
  int stop_fd = ::eventfd(0, EFD_CLOEXEC);
  if (stop_fd < 0) {
    int err = errno;
    ::close(sentinel);
    throw error(std::error_code(err, std::system_category()),
                "cannot make the actor of a process: eventfd failed");
  }
  caf::actor self;
  try {
    auto& sys = tandem::runtime::current().system();
    auto name = p.name();
    self = make_actor(sys, std::move(name), std::move(requests));
    {
      std::lock_guard guard{link->mtx};
      link->actor = caf::actor_cast<caf::weak_actor_ptr>(self);
    }
    auto& reg = the_pollers();
    std::lock_guard guard{reg.mtx};
    adopt(reg);
    std::thread{[self, p = std::move(p), sentinel, stop_fd, link]() mutable {
      impl_of(self)->run(std::move(p), sentinel, stop_fd, link);
      auto& pollers = the_pollers();
      std::lock_guard lk{pollers.mtx};
      pollers.stop_fds.erase(stop_fd);
      ::close(stop_fd);
      self = caf::actor{}; // before the registry wakes the shutdown: the system may go next
      pollers.cv.notify_all();
    }}.detach();
    reg.stop_fds.insert(stop_fd);
  } catch (...) {
    ::close(stop_fd);
    ::close(sentinel);
    throw;
  }
  return self;
}

caf::actor detail::ended_process_actor(std::string name, const caf::error& reason) {
  auto self = make_actor(tandem::runtime::current().system(), std::move(name), connection{});
  impl_of(self)->quit(reason);
  return self;
}

void detail::stop_process_actors() noexcept {
  auto& reg = the_pollers();
  std::unique_lock lk{reg.mtx};
  adopt(reg);
  for (int fd : reg.stop_fds) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
  }
  reg.cv.wait(lk, [&] { return reg.stop_fds.empty(); });
}

} // namespace tandem::mp
