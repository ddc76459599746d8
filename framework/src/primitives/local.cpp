// The per-thread tables behind tandem::local<T> (see detail/local_storage.hpp).

#include <tandem/detail/futex_mutex.hpp>
#include <tandem/detail/local_storage.hpp>

#include <algorithm>
#include <list>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <utility>
#include <vector>

#include <pthread.h>

namespace tandem::detail {

thread_local constinit local_view current_local_view{};

namespace {

struct local_table;

// A table of one thread. `values` is written by its thread (under mtx) and, for one slot at a
// time, by a thread destroying a local (under mtx); its thread reads it without the lock, through
// current_local_view, which only that thread changes. The pointers own their values: they are
// raw so that the lock-free reader sees plain pointers; every value leaves a table through
// take(), which hands it to a unique_ptr.
struct local_table {
  futex_mutex mtx;
  std::vector<local_value_base*> values; // guarded by mtx
  std::list<local_table>::iterator self; // guarded by the registry's mutex
};

// Every table, and the free slots. Never destroyed: threads may end (and empty their tables)
// while the program's static objects are being destroyed.
struct local_registry {
  futex_mutex mtx;
  std::list<local_table> tables; // guarded by mtx
  std::vector<std::size_t> free; // guarded by mtx
  std::size_t next_slot = 0;     // guarded by mtx
  pthread_key_t key{};           // its destructor empties a thread's table at thread exit

  local_registry();
};

void destroy_table_at_exit(void* p) noexcept;

// fork(): every table is locked around it, so the child sees consistent tables; the other
// threads' tables stay in the child (their values die with their locals).
void before_fork() noexcept;
void after_fork() noexcept;

local_registry::local_registry() {
  if (int rc = pthread_key_create(&key, destroy_table_at_exit); rc != 0)
    throw std::system_error{rc, std::system_category(), "tandem::local: pthread_key_create"};
  pthread_atfork(before_fork, after_fork, after_fork);
}

local_registry& registry() {
  // Placement into static storage: the registry outlives every other static object.
  alignas(local_registry) static std::byte storage[sizeof(local_registry)];
  static local_registry* instance = std::construct_at(reinterpret_cast<local_registry*>(storage));
  return *instance;
}

// The calling thread's table: a thread_local pointer with no destructor of its own (the key's
// destructor does the work, after the thread's C++ thread_local objects are gone).
thread_local constinit local_table* current_table = nullptr;

local_table& table_of_this_thread() {
  if (current_table != nullptr) return *current_table;
  auto& reg = registry();
  local_table* t = nullptr;
  {
    std::lock_guard guard{reg.mtx};
    t = &reg.tables.emplace_back();
    t->self = std::prev(reg.tables.end());
  }
  pthread_setspecific(reg.key, t);
  current_table = t;
  return *t;
}

std::unique_ptr<local_value_base> take(local_value_base*& slot) noexcept {
  return std::unique_ptr<local_value_base>{std::exchange(slot, nullptr)};
}

// Takes every value out of the calling thread's table and destroys them, until the table stays
// empty (a destructor may create values again).
void empty_table(local_table& t) noexcept {
  for (;;) {
    std::vector<local_value_base*> doomed;
    {
      std::lock_guard guard{t.mtx};
      doomed.swap(t.values);
      current_local_view = {};
    }
    if (std::all_of(doomed.begin(), doomed.end(), [](auto* v) { return v == nullptr; })) return;
    // Destroyed outside the lock, in reverse order of slots.
    for (auto i = doomed.rbegin(); i != doomed.rend(); ++i) take(*i).reset();
  }
}

void destroy_table_at_exit(void* p) noexcept {
  auto* t = static_cast<local_table*>(p);
  empty_table(*t);
  current_table = nullptr;
  current_local_view = {};
  auto& reg = registry();
  std::lock_guard guard{reg.mtx};
  reg.tables.erase(t->self);
}

// Same order as local_release_slot: the registry, then each table.
void before_fork() noexcept {
  auto& reg = registry();
  reg.mtx.lock();
  for (auto& t : reg.tables) t.mtx.lock();
}

// In the parent and in the child alike; futex_mutex may be unlocked by any thread.
void after_fork() noexcept {
  auto& reg = registry();
  for (auto& t : reg.tables) t.mtx.unlock();
  reg.mtx.unlock();
}

} // namespace

local_value_base* local_create(std::size_t slot, const local_factory& factory) {
  // Build first, without any lock: T's constructor may use other locals.
  auto value = factory.make();
  auto& t = table_of_this_thread();
  std::lock_guard guard{t.mtx};
  if (slot >= t.values.size()) t.values.resize(std::max(slot + 1, t.values.size() * 2), nullptr);
  // A value left in this slot by a local that died without reaching this table cannot exist:
  // local_release_slot empties the slot in every table before the slot is reused.
  t.values[slot] = value.release();
  current_local_view = {t.values.data(), t.values.size()};
  return t.values[slot];
}

std::size_t local_acquire_slot() {
  auto& reg = registry();
  std::lock_guard guard{reg.mtx};
  if (!reg.free.empty()) {
    auto slot = reg.free.back();
    reg.free.pop_back();
    return slot;
  }
  // Reserve room in `free` now, so releasing the slot later never allocates.
  reg.free.reserve(reg.next_slot + 1);
  return reg.next_slot++;
}

void local_release_slot(std::size_t slot) noexcept {
  auto& reg = registry();
  std::vector<std::unique_ptr<local_value_base>> doomed;
  {
    std::lock_guard guard{reg.mtx};
    for (auto& t : reg.tables) {
      std::lock_guard table_guard{t.mtx};
      if (slot < t.values.size() && t.values[slot] != nullptr) {
        auto value = take(t.values[slot]);
        // push_back may throw bad_alloc; then the value is destroyed right here instead, under
        // the locks, which only matters if its destructor uses a local.
        try {
          doomed.push_back(std::move(value));
        } catch (...) {
        }
      }
    }
    reg.free.push_back(slot); // capacity reserved by local_acquire_slot
  }
  // Destroyed here, outside every lock: a destructor may use other locals.
}

void destroy_thread_locals() noexcept {
  if (current_table != nullptr) empty_table(*current_table);
}

} // namespace tandem::detail
