// The target and arguments of a tandem::mp::process, held by the parent until start(): what the
// fork start method calls in the child, and what the spawn start method serializes and finds
// again in the re-executed program.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/detail/process_arg.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace tandem::mp::detail {

/// The function pointer a target F converts to: F itself for a function or function pointer, the
/// conversion of a captureless, non-generic lambda. Ill-formed for anything else.
template <class F>
using target_pointer_t = decltype(+std::declval<std::decay_t<F>&>());

template <class Fp>
struct target_traits : std::false_type {};

template <class R, class... Ps>
struct target_traits<R (*)(Ps...)> : std::true_type {
  using args_tuple = std::tuple<std::decay_t<Ps>...>;
  template <class... Args>
  static constexpr bool accepts() {
    if constexpr (sizeof...(Args) != sizeof...(Ps))
      return false;
    else
      return (std::is_constructible_v<std::decay_t<Ps>, Args> && ...);
  }
  template <std::size_t... I, class Tuple>
  static void call(R (*fn)(Ps...), Tuple& xs, std::index_sequence<I...>) {
    fn(static_cast<Ps&&>(std::get<I>(xs))...);
  }
};

template <class R, class... Ps>
struct target_traits<R (*)(Ps...) noexcept> : std::true_type {
  using args_tuple = std::tuple<std::decay_t<Ps>...>;
  template <class... Args>
  static constexpr bool accepts() {
    return target_traits<R (*)(Ps...)>::template accepts<Args...>();
  }
  template <std::size_t... I, class Tuple>
  static void call(R (*fn)(Ps...) noexcept, Tuple& xs, std::index_sequence<I...>) {
    fn(static_cast<Ps&&>(std::get<I>(xs))...);
  }
};

template <class F, class = void>
struct is_process_target : std::false_type {};

template <class F>
struct is_process_target<F, std::void_t<target_pointer_t<F>>>
    : std::bool_constant<target_traits<target_pointer_t<F>>::value> {};

/// True when F is a plain function (or function pointer, or captureless non-generic lambda) whose
/// parameters can be built from Args.
template <class F, class... Args>
concept process_target = is_process_target<F>::value &&
    target_traits<target_pointer_t<F>>::template accepts<Args...>();

/// The entry point a spawn child calls: loads the arguments and calls the target.
using spawn_entry_fn = void (*)(std::uintptr_t target, std::span<arg_reader> args);

template <class Fp>
void spawn_entry(std::uintptr_t target, std::span<arg_reader> args) {
  using traits = target_traits<Fp>;
  using tuple = typename traits::args_tuple;
  constexpr std::size_t n = std::tuple_size_v<tuple>;
  if (args.size() != n)
    throw bad_message_error{"the process target takes " + std::to_string(n) +
                            " arguments but the parent sent " + std::to_string(args.size())};
  auto fn = reinterpret_cast<Fp>(target);
  [&]<std::size_t... I>(std::index_sequence<I...> seq) {
    // Braced initialization loads the arguments in order.
    tuple xs{process_arg<std::tuple_element_t<I, tuple>>::load(args[I])...};
    traits::call(fn, xs, seq);
  }
  (std::make_index_sequence<n>{});
}

/// A target with its arguments, type-erased.
class process_launch {
public:
  process_launch(std::uintptr_t target, std::uintptr_t entry) noexcept
      : target_(target), entry_(entry) {}
  process_launch(const process_launch&) = delete;
  process_launch& operator=(const process_launch&) = delete;
  virtual ~process_launch() = default;

  /// Calls the target with the stored arguments (the fork child).
  virtual void run() = 0;

  /// Saves each argument into its own byte vector of `args`, registering descriptors in `fds`.
  virtual void save(std::vector<std::vector<std::byte>>& args, std::vector<int>& fds) const = 0;

  /// The target's address.
  std::uintptr_t target() const noexcept { return target_; }

  /// spawn_entry's address for this target type.
  std::uintptr_t entry() const noexcept { return entry_; }

private:
  std::uintptr_t target_;
  std::uintptr_t entry_;
};

template <class Fp>
class process_launch_of final : public process_launch {
public:
  using traits = target_traits<Fp>;
  using tuple = typename traits::args_tuple;

  template <class... Args>
  explicit process_launch_of(Fp fn, Args&&... args)
      : process_launch(reinterpret_cast<std::uintptr_t>(fn),
                       reinterpret_cast<std::uintptr_t>(&spawn_entry<Fp>)),
        fn_(fn), args_(std::forward<Args>(args)...) {}

  void run() override {
    traits::call(fn_, args_, std::make_index_sequence<std::tuple_size_v<tuple>>{});
  }

  void save(std::vector<std::vector<std::byte>>& out, std::vector<int>& fds) const override {
    out.clear();
    out.resize(std::tuple_size_v<tuple>);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (save_one<I>(out[I], fds), ...);
    }
    (std::make_index_sequence<std::tuple_size_v<tuple>>{});
  }

private:
  template <std::size_t I>
  void save_one(std::vector<std::byte>& bytes, std::vector<int>& fds) const {
    arg_writer w{bytes, fds};
    process_arg<std::tuple_element_t<I, tuple>>::save(w, std::get<I>(args_));
  }

  Fp fn_;
  tuple args_;
};

} // namespace tandem::mp::detail
