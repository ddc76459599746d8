// tandem::thread, the registry of alive threads, and the module-level functions of `threading`.
//
// Choices:
// - Threads are created detached with pthread_create (std::thread cannot take a stack size).
//   join() waits on the state's phase word, not on pthread_join, so any number of threads may
//   join, with timeouts, and handles may be dropped at any time.
// - start() sleeps on the phase word once; the new thread wakes it only if it really sleeps
//   (the `waiters` bit), so the start handshake costs at most one futex wake.
// - The registry (alive threads, for enumerate() and shutdown) is a mutex and an intrusive list;
//   the number of running non-daemon threads is a separate futex word, so shutdown waits without
//   polling and a finishing thread only wakes it when someone waits.
// - Nothing here is ever destroyed: threads may finish while static objects are being
//   destroyed, and daemon threads run past exit handling.

#include "internal/no_destroy.hpp"
#include <tandem/detail/futex.hpp>
#include <tandem/detail/futex_mutex.hpp>
#include <tandem/detail/local_storage.hpp>
#include <tandem/detail/thread_registry.hpp>
#include <tandem/error.hpp>
#include <tandem/thread.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <typeinfo>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace tandem {

namespace {

using detail::thread_access;
using detail::thread_kind;
using detail::thread_state;

using internal::no_destroy;

long gettid_now() noexcept {
  return static_cast<long>(::syscall(SYS_gettid));
}

bool on_initial_thread() noexcept {
  return gettid_now() == static_cast<long>(::getpid());
}

// The main thread's identity, noted while the program's static objects are initialized (which
// happens on the initial thread), in case main_thread() is first used by another thread.
std::thread::id noted_main_ident;
long noted_main_native = 0;
const bool main_noted = [] {
  if (!on_initial_thread()) return false;
  noted_main_ident = std::this_thread::get_id();
  noted_main_native = gettid_now();
  return true;
}();

// -- the registry -------------------------------------------------------------------------------

struct registry {
  detail::futex_mutex mtx;
  thread_state* head = nullptr; // guarded by mtx
  std::size_t size = 0;         // guarded by mtx

  // Started non-daemon threads that have not finished, plus `waiters_bit` while someone waits
  // for the count to drop.
  static constexpr std::uint32_t waiters_bit = 1u << 31;
  std::atomic<std::uint32_t> non_daemon{0};

  // The main thread's handle. In a fork child its state becomes the forking thread's (with mtx
  // held by the fork handlers); otherwise it never changes.
  thread main_handle;

  std::once_flag exit_handler_installed;

  registry();

  void link(thread_state& s) noexcept { // requires mtx
    s.prev = nullptr;
    s.next = head;
    if (head != nullptr) head->prev = &s;
    head = &s;
    s.registered = true;
    ++size;
  }

  void unlink(thread_state& s) noexcept { // requires mtx
    if (!s.registered) return;
    if (s.prev != nullptr)
      s.prev->next = s.next;
    else
      head = s.next;
    if (s.next != nullptr) s.next->prev = s.prev;
    s.prev = s.next = nullptr;
    s.registered = false;
    --size;
  }
};

registry& the_registry();

// The excepthook in effect; null means default_excepthook.
struct hook_store {
  detail::futex_mutex mtx;
  std::shared_ptr<const excepthook_function> hook; // guarded by mtx
};

hook_store& the_hooks() {
  static no_destroy<hook_store> store;
  return store.get();
}

std::atomic<std::size_t> configured_stack_size{0};
std::atomic<std::uint64_t> name_counter{0};

// The calling thread's handle, once known (set by bootstrap, current_thread()).
thread_local constinit thread* current_handle = nullptr;

std::string next_name(const char* prefix) {
  return prefix + std::to_string(name_counter.fetch_add(1, std::memory_order_relaxed) + 1);
}

// Sets the phase and wakes whoever sleeps on it.
void publish_phase(thread_state& s, std::uint32_t phase) noexcept {
  auto old = s.phase.exchange(phase, std::memory_order_acq_rel);
  if ((old & thread_state::waiters) != 0) detail::futex_wake_all(s.phase);
}

// Waits until the phase is at least `target`, `t` expires, or `st` stops. Returns whether the
// phase was reached.
bool await_phase(thread_state& s, std::uint32_t target, const timeout& t,
                 const std::stop_token* st) noexcept {
  for (;;) {
    auto p = s.phase.load(std::memory_order_acquire);
    if ((p & ~thread_state::waiters) >= target) return true;
    if (st != nullptr && st->stop_requested()) return false;
    if ((p & thread_state::waiters) == 0) {
      if (!s.phase.compare_exchange_weak(p, p | thread_state::waiters, std::memory_order_acquire))
        continue;
      p |= thread_state::waiters;
    }
    bool in_time =
        st != nullptr ? detail::futex_wait(s.phase, p, t, *st) : detail::futex_wait(s.phase, p, t);
    if (!in_time)
      return (s.phase.load(std::memory_order_acquire) & ~thread_state::waiters) >= target;
  }
}

// -- fork ---------------------------------------------------------------------------------------

void before_fork() noexcept {
  the_hooks().mtx.lock();
  the_registry().mtx.lock();
}

void after_fork_in_parent() noexcept {
  the_registry().mtx.unlock();
  the_hooks().mtx.unlock();
}

// Only the forking thread exists in the child: every other thread is finished there, and the
// forking thread becomes the main thread (as Python's _after_fork does).
void after_fork_in_child() noexcept {
  auto& reg = the_registry();
  thread_state* self =
      current_handle != nullptr ? thread_access::state(*current_handle).get() : nullptr;
  auto& main_state = thread_access::state(reg.main_handle);
  for (auto* s = reg.head; s != nullptr;) {
    auto* next = s->next;
    if (s != self && s != main_state.get()) {
      reg.unlink(*s);
      s->phase.store(thread_state::finished, std::memory_order_release);
    }
    s = next;
  }
  bool self_counts = self != nullptr && self->kind == thread_kind::started &&
                     !self->daemon.load(std::memory_order_relaxed) &&
                     (self->phase.load() & ~thread_state::waiters) == thread_state::running;
  reg.non_daemon.store(self_counts ? 1 : 0);
  if (self != nullptr && self != main_state.get()) {
    reg.unlink(*main_state);
    main_state->phase.store(thread_state::finished, std::memory_order_release);
    main_state = self->shared_from_this();
  } else if (self == nullptr) {
    main_state->ident = std::this_thread::get_id();
    main_state->native_id = gettid_now();
    current_handle = &reg.main_handle;
  }
  reg.mtx.unlock();
  the_hooks().mtx.unlock();
}

std::shared_ptr<thread_state> make_main_state() {
  auto state = std::make_shared<thread_state>(
      thread_kind::main, thread_options{.name = "MainThread", .daemon = false});
  if (on_initial_thread()) {
    state->ident = std::this_thread::get_id();
    state->native_id = gettid_now();
  } else if (main_noted) {
    state->ident = noted_main_ident;
    state->native_id = noted_main_native;
  }
  state->phase.store(thread_state::running, std::memory_order_release);
  return state;
}

registry::registry() : main_handle(thread_access::make(make_main_state())) {
  link(*thread_access::state(main_handle));
  pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

registry& the_registry() {
  static no_destroy<registry> reg;
  return reg.get();
}

// Waits until the started non-daemon threads other than the caller have finished, or `t`
// expires. Returns whether they have.
bool await_non_daemon(registry& reg, const timeout& t) noexcept {
  std::uint32_t allowed = 0;
  if (current_handle != nullptr) {
    auto& self = *thread_access::state(*current_handle);
    if (self.kind == thread_kind::started && !self.daemon.load(std::memory_order_relaxed) &&
        self.current_phase() == thread_state::running)
      allowed = 1;
  }
  for (;;) {
    auto v = reg.non_daemon.load(std::memory_order_acquire);
    if ((v & ~registry::waiters_bit) <= allowed) return true;
    if ((v & registry::waiters_bit) == 0) {
      if (!reg.non_daemon.compare_exchange_weak(v, v | registry::waiters_bit,
                                                std::memory_order_acquire))
        continue;
      v |= registry::waiters_bit;
    }
    if (!detail::futex_wait(reg.non_daemon, v, t))
      return (reg.non_daemon.load(std::memory_order_acquire) & ~registry::waiters_bit) <= allowed;
  }
}

// Requests a stop of every started thread that is a daemon (or every one, with `all`).
void stop_started_threads(registry& reg, bool all) noexcept {
  std::vector<std::shared_ptr<thread_state>> targets;
  {
    std::lock_guard guard{reg.mtx};
    try {
      targets.reserve(reg.size);
    } catch (...) {
    }
    for (auto* s = reg.head; s != nullptr; s = s->next)
      if (s->kind == thread_kind::started && (all || s->daemon.load(std::memory_order_relaxed)))
        if (targets.size() < targets.capacity()) targets.push_back(s->shared_from_this());
  }
  // Outside the lock: stop callbacks run arbitrary code.
  for (auto& s : targets) s->stop.request_stop();
}

// The main thread is done: at exit, before the other threads are joined (so that a thread
// joining the main thread does not hold up exit, as in Python).
void finish_main(registry& reg) noexcept {
  std::shared_ptr<thread_state> main_state;
  {
    std::lock_guard guard{reg.mtx};
    main_state = thread_access::state(reg.main_handle);
  }
  if (main_state->current_phase() != thread_state::running) return;
  main_state->tell_exit(nullptr);
  {
    std::lock_guard guard{reg.mtx};
    reg.unlink(*main_state);
  }
  publish_phase(*main_state, thread_state::finished);
}

// Python's threading._shutdown, for programs without a runtime: registered with atexit when the
// first thread starts, so it runs before the static objects built until then are destroyed.
void join_at_exit() noexcept {
  auto& reg = the_registry();
  finish_main(reg);
  await_non_daemon(reg, forever);
  stop_started_threads(reg, false);
}

// -- the excepthook ---------------------------------------------------------------------------

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name{
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free};
  return status == 0 && name ? std::string{name.get()} : std::string{mangled};
}

// "TYPE: what()" for a std::exception, "TYPE" otherwise.
std::string describe(const std::exception_ptr& exc) {
  if (!exc) return "(no exception)";
  try {
    std::rethrow_exception(exc);
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return type != nullptr ? demangle(type->name()) : std::string{"unknown exception"};
  }
}

void write_stderr(const std::string& text) noexcept {
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

// In the failing thread, inside the handler of the body's exception.
void invoke_excepthook(const std::exception_ptr& exc, thread* failing) {
  try {
    std::shared_ptr<const excepthook_function> hook;
    {
      auto& hooks = the_hooks();
      std::lock_guard guard{hooks.mtx};
      hook = hooks.hook;
    }
    excepthook_args args{exc, failing};
    if (hook && *hook)
      (*hook)(args);
    else
      default_excepthook(args);
  } catch (abi::__forced_unwind&) {
    throw; // pthread_exit or cancellation inside the hook: the thread ends
  } catch (...) {
    try {
      write_stderr("Exception in threading excepthook:\n" + describe(std::current_exception()) +
                   "\n");
    } catch (...) {
      // Out of memory while reporting: nothing left to do.
    }
  }
}

// -- the end of a started thread ----------------------------------------------------------------

// Runs when the body is done (or the thread is being unwound by pthread_exit): see the order in
// detail/thread_state.hpp.
class finisher {
public:
  finisher(std::shared_ptr<thread_state>& state, thread& self) noexcept
      : state_(state), self_(self) {}
  finisher(const finisher&) = delete;
  finisher& operator=(const finisher&) = delete;

  ~finisher() {
    auto& s = *state_;
    s.drop_target();
    detail::destroy_thread_locals();
    s.tell_exit(exc);
    bool counted = !s.daemon.load(std::memory_order_relaxed);
    auto& reg = the_registry();
    {
      std::lock_guard guard{reg.mtx};
      reg.unlink(s);
    }
    s.owner = nullptr;
    current_handle = nullptr;
    publish_phase(s, thread_state::finished);
    // Our references go before the count drops: if they are the last ones, the state (and the
    // mailbox and actor it holds) is destroyed before shutdown can return.
    thread_access::state(self_).reset();
    state_.reset();
    if (counted) {
      auto old = reg.non_daemon.fetch_sub(1, std::memory_order_acq_rel);
      if ((old & registry::waiters_bit) != 0) {
        reg.non_daemon.fetch_and(~registry::waiters_bit, std::memory_order_relaxed);
        detail::futex_wake_all(reg.non_daemon);
      }
    }
  }

  std::exception_ptr exc;

private:
  std::shared_ptr<thread_state>& state_;
  thread& self_;
};

// The OS-level name (ps, top, debuggers) holds 15 bytes.
void set_os_name(const thread_state& s) noexcept {
  try {
    auto n = s.name();
    if (n.size() > 15) n.resize(15);
    pthread_setname_np(pthread_self(), n.c_str());
  } catch (...) {
    // Out of memory: the thread keeps the OS's default name.
  }
}

} // namespace

// -- thread ---------------------------------------------------------------------------------------

void* thread::bootstrap(void* arg) {
  auto* raw = static_cast<thread_state*>(arg);
  std::shared_ptr<thread_state> state = std::move(raw->keep_alive);
  auto& s = *state;
  s.ident = std::this_thread::get_id();
  s.native_id = gettid_now();
  thread self{state};
  thread* me = s.owner != nullptr ? s.owner : &self;
  current_handle = me;
  set_os_name(s);
  auto& reg = the_registry();
  if (!s.daemon.load(std::memory_order_relaxed))
    reg.non_daemon.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard guard{reg.mtx};
    reg.link(s);
  }
  publish_phase(s, thread_state::running);

  finisher done{state, self};
  s.tell_start();
  try {
    if (s.has_target())
      s.run_target(s.stop.get_token());
    else if (s.owner != nullptr)
      s.owner->run();
  } catch (abi::__forced_unwind&) {
    throw; // pthread_exit or cancellation: `done` still finishes the thread
  } catch (...) {
    done.exc = std::current_exception();
    invoke_excepthook(done.exc, me);
  }
  return nullptr;
}

thread::thread(options opts) {
  state_ = std::make_shared<detail::thread_state>(thread_kind::started, resolve(std::move(opts)));
}

thread::~thread() = default;

thread::options thread::resolve(options opts) {
  if (opts.name.empty()) opts.name = next_name("Thread-");
  if (!opts.daemon) opts.daemon = current_thread().daemon();
  return opts;
}

detail::thread_state& thread::checked(const char* what) const {
  if (!state_)
    throw usage_error{std::string{"cannot "} + what +
                      " an empty thread handle (moved from): use the handle it was moved to"};
  return *state_;
}

void thread::run() {
  // A thread without target and without override: Python's Thread().run() does nothing.
}

void thread::start() {
  auto& s = checked("start");
  std::uint32_t expected = detail::thread_state::initial;
  if (!s.phase.compare_exchange_strong(expected, detail::thread_state::starting,
                                       std::memory_order_acq_rel))
    throw usage_error{"threads can only be started once: thread " + s.name() +
                      " was started before; create a new thread object"};
  auto& reg = the_registry();
  std::call_once(reg.exit_handler_installed, [] { std::atexit(join_at_exit); });
  if (!s.has_target() && typeid(*this) != typeid(thread)) s.owner = this;
  s.keep_alive = state_;

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (auto size = configured_stack_size.load(std::memory_order_relaxed); size != 0)
    pthread_attr_setstacksize(&attr, size);
  pthread_t handle;
  int rc = pthread_create(&handle, &attr, &thread::bootstrap, &s);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    s.keep_alive.reset();
    s.owner = nullptr;
    s.phase.store(detail::thread_state::initial, std::memory_order_release);
    throw error{std::error_code{rc, std::system_category()},
                "cannot start thread " + s.name() + ": the system refused a new thread"};
  }
  await_phase(s, detail::thread_state::running, forever, nullptr);
}

bool thread::join(timeout t) {
  return join(std::stop_token{}, t);
}

bool thread::join(std::stop_token st, timeout t) {
  auto& s = checked("join");
  auto phase = s.current_phase();
  if (phase == detail::thread_state::initial)
    throw usage_error{"cannot join thread " + s.name() +
                      " before it is started: call start() first"};
  if (s.kind == thread_kind::dummy)
    throw usage_error{"cannot join a dummy thread (" + s.name() +
                      "): tandem did not start it, so it cannot tell when it ends"};
  if (phase == detail::thread_state::running && s.ident == std::this_thread::get_id())
    throw usage_error{"cannot join current thread (" + s.name() + "): it would wait for itself"};
  return await_phase(s, detail::thread_state::finished, t, st.stop_possible() ? &st : nullptr);
}

bool thread::request_stop() noexcept {
  return state_ && state_->stop.request_stop();
}

std::stop_token thread::get_stop_token() const noexcept {
  return state_ ? state_->stop.get_token() : std::stop_token{};
}

std::string thread::name() const {
  return checked("name").name();
}

void thread::name(std::string new_name) {
  checked("rename").name(std::move(new_name));
}

std::optional<std::thread::id> thread::ident() const noexcept {
  if (!state_ || state_->current_phase() < detail::thread_state::running ||
      state_->ident == std::thread::id{})
    return std::nullopt;
  return state_->ident;
}

std::optional<long> thread::native_id() const noexcept {
  if (!state_ || state_->current_phase() < detail::thread_state::running || state_->native_id == 0)
    return std::nullopt;
  return state_->native_id;
}

bool thread::is_alive() const noexcept {
  return state_ && state_->current_phase() == detail::thread_state::running;
}

bool thread::daemon() const noexcept {
  return state_ && state_->daemon.load(std::memory_order_relaxed);
}

void thread::set_daemon(bool daemonic) {
  auto& s = checked("set the daemon flag of");
  if (s.current_phase() != detail::thread_state::initial)
    throw usage_error{"cannot set daemon status of active thread " + s.name() +
                      ": set it before start()"};
  s.daemon.store(daemonic, std::memory_order_relaxed);
}

// -- module-level functions -----------------------------------------------------------------------

namespace {

// The handle of a thread tandem did not start, alive as long as that thread.
class dummy_holder {
public:
  dummy_holder()
      : handle_(thread_access::make(std::make_shared<thread_state>(
            thread_kind::dummy, thread_options{.name = next_name("Dummy-"), .daemon = true}))) {
    auto& s = *thread_access::state(handle_);
    s.ident = std::this_thread::get_id();
    s.native_id = gettid_now();
    s.phase.store(thread_state::running, std::memory_order_release);
    auto& reg = the_registry();
    std::lock_guard guard{reg.mtx};
    reg.link(s);
  }
  dummy_holder(const dummy_holder&) = delete;
  dummy_holder& operator=(const dummy_holder&) = delete;

  ~dummy_holder() {
    auto& s = *thread_access::state(handle_);
    s.tell_exit(nullptr);
    auto& reg = the_registry();
    {
      std::lock_guard guard{reg.mtx};
      reg.unlink(s);
    }
    if (current_handle == &handle_) current_handle = nullptr;
    publish_phase(s, thread_state::finished);
  }

  thread& handle() noexcept { return handle_; }

private:
  thread handle_;
};

} // namespace

namespace detail {

thread_state* current_started_state() noexcept {
  if (current_handle == nullptr) return nullptr;
  auto* st = thread_access::state(*current_handle).get();
  return st != nullptr && st->kind == thread_kind::started ? st : nullptr;
}

} // namespace detail

thread& current_thread() {
  if (current_handle != nullptr) return *current_handle;
  auto& reg = the_registry();
  if (on_initial_thread()) {
    current_handle = &reg.main_handle;
    return reg.main_handle;
  }
  thread_local dummy_holder holder;
  current_handle = &holder.handle();
  return holder.handle();
}

thread& main_thread() {
  return the_registry().main_handle;
}

std::vector<thread> enumerate() {
  auto& reg = the_registry();
  std::vector<thread> result;
  std::lock_guard guard{reg.mtx};
  result.reserve(reg.size);
  for (auto* s = reg.head; s != nullptr; s = s->next)
    result.push_back(thread_access::make(s->shared_from_this()));
  return result;
}

std::size_t active_count() {
  auto& reg = the_registry();
  std::lock_guard guard{reg.mtx};
  return reg.size;
}

std::thread::id get_ident() noexcept {
  return std::this_thread::get_id();
}

long get_native_id() noexcept {
  return gettid_now();
}

void set_excepthook(excepthook_function hook) {
  std::shared_ptr<const excepthook_function> next;
  if (hook) next = std::make_shared<const excepthook_function>(std::move(hook));
  auto& hooks = the_hooks();
  std::lock_guard guard{hooks.mtx};
  hooks.hook.swap(next);
  // The previous hook is released after the lock (its destructor may run user code).
}

excepthook_function excepthook() {
  std::shared_ptr<const excepthook_function> hook;
  {
    auto& hooks = the_hooks();
    std::lock_guard guard{hooks.mtx};
    hook = hooks.hook;
  }
  if (hook) return *hook;
  return &default_excepthook;
}

void default_excepthook(const excepthook_args& args) {
  std::string who;
  if (args.thread != nullptr)
    who = args.thread->name();
  else {
    auto id = std::this_thread::get_id();
    who = std::to_string(std::hash<std::thread::id>{}(id));
  }
  write_stderr("Exception in thread " + who + ":\n" + describe(args.exc) + "\n");
}

std::size_t stack_size() noexcept {
  return configured_stack_size.load(std::memory_order_relaxed);
}

std::size_t stack_size(std::size_t size) {
  constexpr std::size_t minimum = 32 * 1024;
  if (size != 0 && size < minimum)
    throw value_error{"size not valid: " + std::to_string(size) +
                      " bytes; a thread stack needs at least 32 KiB (32768), or 0 for the "
                      "platform's default"};
  if (size != 0) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int rc = pthread_attr_setstacksize(&attr, size);
    pthread_attr_destroy(&attr);
    if (rc != 0)
      throw value_error{"size not valid: " + std::to_string(size) +
                        " bytes is refused by the platform as a thread stack size"};
  }
  return configured_stack_size.exchange(size, std::memory_order_relaxed);
}

// -- shutdown
// ---------------------------------------------------------------------------------------

bool detail::shutdown_threads(const timeout& t) noexcept {
  auto& reg = the_registry();
  bool joined = await_non_daemon(reg, t);
  stop_started_threads(reg, !joined);
  return joined;
}

} // namespace tandem
