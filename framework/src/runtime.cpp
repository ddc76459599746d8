// tandem::runtime: the actor system and the program's shutdown.

#include <tandem/detail/caf.hpp>
#include <tandem/detail/thread_registry.hpp>
#include <tandem/error.hpp>
#include <tandem/mp/detail/process_registry.hpp>
#include <tandem/mp/process.hpp>
#include <tandem/runtime.hpp>

#include <memory>
#include <mutex>
#include <new>

namespace tandem {

namespace {

// The runtime the program constructed. `claimed` is taken before construction (so a second
// runtime is refused before it builds an actor system); `current` is published once the runtime
// is complete.
std::atomic<bool> claimed{false};
std::atomic<runtime*> current_runtime{nullptr};

} // namespace

// The default runtime, built on first use and never destroyed (see runtime.hpp).
class runtime_default_holder {
public:
  static runtime& get() {
    alignas(runtime) static std::byte storage[sizeof(runtime)];
    // Placement new into static storage (never destroyed); the constructor is private.
    static runtime* instance = ::new (static_cast<void*>(storage)) runtime(runtime::default_tag{});
    return *instance;
  }
};

runtime::runtime() : runtime(std::make_unique<caf::actor_system_config>()) {}

runtime::runtime(int argc, char** argv)
    : runtime(std::make_unique<caf::actor_system_config>(), argc, argv) {}

runtime::runtime(std::unique_ptr<caf::actor_system_config> cfg, int argc, char** argv)
    : cfg_(std::move(cfg)) {
  if (!cfg_)
    throw usage_error{"tandem::runtime needs a configuration: pass a caf::actor_system_config"};
  if (claimed.exchange(true, std::memory_order_acq_rel))
    throw usage_error{"a tandem::runtime already exists: construct one runtime, at the top of "
                      "main, and reach it with tandem::runtime::current()"};
  try {
    if (argc > 0 && argv != nullptr) parse(argc, argv);
    // A process child is about to become its target (below): it builds its actor system only
    // if the target uses one, so a child that never does starts as fast as a plain program.
    if (!mp::detail::child_pending()) build();
  } catch (...) {
    claimed.store(false, std::memory_order_release);
    throw;
  }
  current_runtime.store(this, std::memory_order_release);
  // A spawn child becomes its target here, with the runtime usable (and never returns).
  mp::freeze_support();
}

runtime::runtime(default_tag) : cfg_(std::make_unique<caf::actor_system_config>()) {
  is_default_ = true;
  build();
  mp::freeze_support();
}

void runtime::parse(int argc, char** argv) {
  if (auto err = cfg_->parse(argc, argv))
    throw value_error{
        "invalid CAF option or configuration file: " + caf::actor_system_config::render(err) +
        " (run the program with --help for CAF's options)"};
}

void runtime::build() {
  std::call_once(built_, [this] {
    detail::add_error_category(*cfg_);
    detail::apply_runtime_defaults(*cfg_);
    system_ = std::make_unique<caf::actor_system>(*cfg_);
    sys_.store(system_.get(), std::memory_order_release);
  });
}

caf::actor_system& runtime::build_lazily() noexcept {
  build();
  return *sys_.load(std::memory_order_acquire);
}

runtime::~runtime() {
  if (!shut_down_.load(std::memory_order_acquire)) shutdown(forever);
  auto* sys = sys_.load(std::memory_order_acquire);
  if (sys != nullptr && !all_joined_.load(std::memory_order_acquire))
    sys->await_actors_before_shutdown(false);
  // The runtime stays current until its actor system is gone: actors that look it up while the
  // system shuts down still find the system they live in.
  system_.reset();
  if (!is_default_) {
    current_runtime.store(nullptr, std::memory_order_release);
    claimed.store(false, std::memory_order_release);
  }
}

runtime& runtime::current() {
  if (auto* rt = current_runtime.load(std::memory_order_acquire)) return *rt;
  return runtime_default_holder::get();
}

bool runtime::shutdown(timeout deadline) {
  bool joined = detail::shutdown_threads(deadline);
  // Then the children: non-daemon ones joined, daemon ones terminated, all by the deadline.
  if (!mp::detail::shutdown_processes(deadline)) joined = false;
  if (!joined) all_joined_.store(false, std::memory_order_release);
  shut_down_.store(true, std::memory_order_release);
  return joined;
}

} // namespace tandem
