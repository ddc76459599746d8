// tandem::mp::shareable_list<T>: Python's multiprocessing.shared_memory.ShareableList, a
// fixed-length list stored in an mp::shared_memory segment that other processes attach by name.
//
// T is a trivially copyable type (stored as its bytes) or std::string (each slot holds up to
// capacity() bytes).
//
//   auto sl = tandem::mp::shareable_list<double>::create({1.5, 2.5, 3.5});
//   sl[0] = 4.0;                                     // visible to every process at once
//   double last = sl[-1];                            // negative indices count from the end
//   auto other = tandem::mp::shareable_list<double>::attach(sl.shm().name());
//   std::span<double> all = other.span();            // no copy: the shared bytes themselves
//   sl.shm().unlink();                               // when every process is done
//
//   auto names = tandem::mp::shareable_list<std::string>::create({"howdy", "hi"},
//                                                                {.capacity = 16});
//   names[1] = "hello";                              // fits: up to 16 bytes per slot
//   names[1] = "far too many bytes here";            // value_error; names[1] is still "hello"
//
// States: the list has a fixed length from creation. Its handle is open until shm().close() (or
// a move, or destruction); reading or writing a closed handle's items is a usage_error.
//
// Layout: a 64-byte list header (magic number, element kind and size, length, capacity), then
// the slots, aligned to alignof(T) (at least 64 bytes from the page-aligned start). A string
// slot is a 4-byte length and capacity() bytes, rounded up to 8. attach() checks the header
// against T (kind, size and alignment of T; it cannot tell two types of one size apart).
//
// Differences from Python's ShareableList:
// - One element type per list, fixed at compile time, instead of a per-slot mix of int, float,
//   bool, str, bytes and None; a slot can never change type, so there is no `format`.
// - String slots share one capacity: options.capacity bytes, or by default the longest initial
//   value rounded up to 8 (at least 8); Python gives each slot the size of its initial value.
//   Writing a string longer than capacity() throws value_error ("exceeds available storage",
//   as Python) and leaves the slot unchanged. Strings are bytes: no encoding, NULs allowed.
// - An index out of range throws index_error (Python's IndexError; a value_error); negative indices
// count
//   from the end as in Python. index() of a missing value throws value_error as in Python.
// - The segment outlives the list handle as any mp::shared_memory does: unlink it through shm().
//
// Thread- and process-safety: none, as in Python. Reads and writes of different slots are
// independent; concurrent writes, or a write concurrent with a read, of one slot race (a string
// read may see a torn value; a length beyond capacity() is reported as segment_error). Guard
// such access with an mp::lock.
//
// Lifetime hazards: span() and iterators dangle once the handle is closed, moved or destroyed.
#pragma once

#include <tandem/error.hpp>
#include <tandem/mp/shared_memory.hpp>

#include <algorithm>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tandem::mp {

/// How shareable_list<T>::create makes a list.
struct shareable_list_options {
  /// The segment's name; empty: a generated one.
  std::string name{};
  /// std::string lists: bytes per slot; 0: the longest initial value rounded up to 8 (at least
  /// 8). Must be 0 for other types.
  std::size_t capacity = 0;
  /// As shared_memory_options::track.
  bool track = true;
};

/// A fixed-length list in shared memory. See the file comment.
template <class T>
class shareable_list {
  static_assert(std::is_trivially_copyable_v<T> || std::is_same_v<T, std::string>,
                "shareable_list<T> holds trivially copyable types or std::string");
  static_assert(alignof(T) <= 4096, "shareable_list<T> needs alignof(T) <= 4096");

public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  static constexpr bool holds_strings = std::is_same_v<T, std::string>;
  /// What set() and count() take: std::string_view for strings, const T& otherwise.
  using argument_type = std::conditional_t<holds_strings, std::string_view, const T&>;

  class reference;
  class const_iterator;

  // -- construction ---------------------------------------------------------------------------

  /// Creates a segment holding a copy of `values` (see shared_memory::create for the name, the
  /// tracking and the segment errors). Throws value_error when a string does not fit
  /// options.capacity, or when options.capacity is set for a list of another type than
  /// std::string. An empty list is allowed.
  static shareable_list create(std::span<const T> values,
                               const shareable_list_options& options = {}) {
    std::size_t cap = 0;
    if constexpr (holds_strings) {
      std::size_t longest = 0;
      for (const auto& v : values) longest = std::max(longest, v.size());
      if (options.capacity != 0 && longest > options.capacity)
        throw value_error("a value of " + std::to_string(longest) +
                          " bytes exceeds available storage of a shareable_list slot (" +
                          std::to_string(options.capacity) + " bytes); raise the capacity");
      cap = options.capacity != 0 ? options.capacity : std::max<std::size_t>(8, round8(longest));
      if (cap > max_capacity)
        throw value_error("a shareable_list slot of " + std::to_string(cap) +
                          " bytes is too large; at most " + std::to_string(max_capacity));
    } else if (options.capacity != 0) {
      throw value_error("capacity applies to shareable_list<std::string> only");
    }
    const std::size_t stride = stride_for(cap);
    if (values.size() > (max_bytes - data_offset) / stride)
      throw value_error("a shareable_list of " + std::to_string(values.size()) +
                        " items is too large to map");
    const std::size_t bytes = data_offset + values.size() * stride;
    shared_memory_options so{.track = options.track};
    shared_memory shm = options.name.empty() ? shared_memory::create(bytes, so)
                                             : shared_memory::create(options.name, bytes, so);
    auto* h = header_at(shm);
    h->kind = kind;
    h->element_size = static_cast<std::uint32_t>(sizeof(T));
    h->element_align = static_cast<std::uint32_t>(alignof(T));
    h->length = values.size();
    h->capacity = cap;
    shareable_list out{std::move(shm), values.size(), cap};
    for (std::size_t i = 0; i < values.size(); ++i) out.store(i, values[i]);
    h->magic = list_magic;
    return out;
  }

  /// As above, from a braced list: `create({1, 2, 3})`.
  static shareable_list create(std::initializer_list<T> values,
                               const shareable_list_options& options = {}) {
    return create(std::span<const T>{values.begin(), values.size()}, options);
  }

  /// Attaches the list in segment `name`, made by create() with the same T (after that create
  /// returned). Throws what shared_memory::attach throws, and segment_error (EINVAL) when the
  /// segment holds no shareable_list, or one of another element kind, size or alignment.
  static shareable_list attach(std::string_view name) {
    shared_memory shm = shared_memory::attach(name);
    auto fail = [&](const std::string& why) {
      throw segment_error(EINVAL, "cannot attach shared-memory segment \"" + std::string{name} +
                                      "\" as a shareable_list: " + why);
    };
    if (shm.size() < data_offset) fail("it is too small to hold one");
    const auto* h = header_at(shm);
    if (h->magic != list_magic)
      fail("it holds no shareable_list (or its creator is still "
           "filling it in)");
    if (h->kind != kind || h->element_size != sizeof(T) || h->element_align != alignof(T))
      fail("it holds elements of another type (kind " + std::to_string(h->kind) + ", " +
           std::to_string(h->element_size) + " bytes); attach it with the type that created it");
    if (h->capacity > max_capacity || (!holds_strings && h->capacity != 0))
      fail("its header is corrupt (capacity)");
    const std::size_t stride = stride_for(static_cast<std::size_t>(h->capacity));
    if (h->length > (shm.size() - data_offset) / stride) fail("its header is corrupt (length)");
    return shareable_list{std::move(shm), static_cast<std::size_t>(h->length),
                          static_cast<std::size_t>(h->capacity)};
  }

  shareable_list(shareable_list&&) noexcept = default;
  shareable_list& operator=(shareable_list&&) noexcept = default;
  shareable_list(const shareable_list&) = delete;
  shareable_list& operator=(const shareable_list&) = delete;
  /// Closes the segment's mapping in this process (never unlinks).
  ~shareable_list() = default;

  // -- observers ------------------------------------------------------------------------------

  /// The number of items (Python's len()); fixed at creation.
  std::size_t size() const noexcept { return length_; }

  /// Bytes each string slot holds; 0 for lists of other types.
  std::size_t capacity() const noexcept { return capacity_; }

  /// The segment behind the list: its name, and close() and unlink().
  shared_memory& shm() noexcept { return shm_; }
  const shared_memory& shm() const noexcept { return shm_; }

  /// The items themselves, in shared memory (trivially copyable T only). No copy.
  std::span<T> span() const requires(!holds_strings) {
    check_open();
    return {reinterpret_cast<T*>(slot(0)), length_};
  }

  // -- items ----------------------------------------------------------------------------------

  /// A copy of item `i` (i < 0 counts from the end). Throws value_error when out of range,
  /// usage_error when closed, segment_error for a string slot whose length is corrupt.
  T get(difference_type i) const { return load(position(i)); }

  /// Writes `v` into item `i`. Throws value_error when out of range or (strings) when `v` does
  /// not fit capacity(); then nothing changes.
  void set(difference_type i, argument_type v) { store(position(i), v); }

  /// Item `i` (Python's indexing): reads and assignments go to shared memory.
  reference operator[](difference_type i) { return reference{this, position(i)}; }
  T operator[](difference_type i) const { return get(i); }

  /// How many items equal `v`.
  std::size_t count(argument_type v) const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < length_; ++i)
      if (equal_at(i, v)) ++n;
    return n;
  }

  /// The position of the first item equal to `v`. Throws value_error when there is none.
  std::size_t index(argument_type v) const {
    for (std::size_t i = 0; i < length_; ++i)
      if (equal_at(i, v)) return i;
    throw value_error("the value is not in the shareable_list");
  }

  /// Iteration by value: `for (T v : sl)`.
  const_iterator begin() const { return const_iterator{this, 0}; }
  const_iterator end() const { return const_iterator{this, length_}; }

  /// A proxy for one item: converts to T (a read) and takes assignments (a write).
  class reference {
  public:
    operator T() const { return list_->load(i_); } // NOLINT(google-explicit-constructor)
    reference& operator=(argument_type v) {
      list_->store(i_, v);
      return *this;
    }
    reference& operator=(const reference& other) { return *this = static_cast<T>(other); }
    reference(const reference&) = default;
    friend bool operator==(const reference& r, argument_type v) { return r.equals(v); }

  private:
    friend class shareable_list;
    reference(shareable_list* list, std::size_t i) noexcept : list_(list), i_(i) {}
    bool equals(argument_type v) const { return list_->equal_at(i_, v); }
    shareable_list* list_;
    std::size_t i_;
  };

  /// A random-access iterator that yields copies of the items.
  class const_iterator {
  public:
    using iterator_category = std::random_access_iterator_tag;
    using iterator_concept = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = T;
    using pointer = void;

    const_iterator() noexcept = default;
    T operator*() const { return list_->load(i_); }
    T operator[](difference_type n) const { return list_->load(i_ + static_cast<std::size_t>(n)); }
    const_iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) noexcept {
      auto c = *this;
      ++i_;
      return c;
    }
    const_iterator& operator--() noexcept {
      --i_;
      return *this;
    }
    const_iterator operator--(int) noexcept {
      auto c = *this;
      --i_;
      return c;
    }
    const_iterator& operator+=(difference_type n) noexcept {
      i_ = static_cast<std::size_t>(static_cast<difference_type>(i_) + n);
      return *this;
    }
    const_iterator& operator-=(difference_type n) noexcept { return *this += -n; }
    friend const_iterator operator+(const_iterator it, difference_type n) noexcept {
      return it += n;
    }
    friend const_iterator operator+(difference_type n, const_iterator it) noexcept {
      return it += n;
    }
    friend const_iterator operator-(const_iterator it, difference_type n) noexcept {
      return it -= n;
    }
    friend difference_type operator-(const const_iterator& a, const const_iterator& b) noexcept {
      return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) noexcept {
      return a.i_ == b.i_;
    }
    friend auto operator<=>(const const_iterator& a, const const_iterator& b) noexcept {
      return a.i_ <=> b.i_;
    }

  private:
    friend class shareable_list;
    const_iterator(const shareable_list* list, std::size_t i) noexcept : list_(list), i_(i) {}
    const shareable_list* list_ = nullptr;
    std::size_t i_ = 0;
  };

private:
  struct list_header {
    std::uint64_t magic;
    std::uint32_t kind;
    std::uint32_t element_size;
    std::uint32_t element_align;
    std::uint32_t reserved;
    std::uint64_t length;
    std::uint64_t capacity;
  };
  static constexpr std::uint64_t list_magic = 0x5453'494c'5348'4454; // "TDHSLIST" little end.
  static constexpr std::uint32_t kind = holds_strings ? 2 : 1;
  static constexpr std::size_t data_offset = alignof(T) > 64 ? alignof(T) : 64;
  static constexpr std::size_t max_capacity = std::size_t{1} << 30;
  static constexpr std::size_t max_bytes = std::size_t{1} << 46;
  static_assert(sizeof(list_header) <= 64);

  static constexpr std::size_t round8(std::size_t n) noexcept { return (n + 7) / 8 * 8; }
  static constexpr std::size_t stride_for(std::size_t cap) noexcept {
    if constexpr (holds_strings)
      return round8(sizeof(std::uint32_t) + cap);
    else
      return sizeof(T);
  }
  static list_header* header_at(shared_memory& shm) noexcept {
    return reinterpret_cast<list_header*>(shm.buf().data());
  }
  static const list_header* header_at(const shared_memory& shm) noexcept {
    return reinterpret_cast<const list_header*>(shm.buf().data());
  }

  shareable_list(shared_memory shm, std::size_t length, std::size_t cap) noexcept
      : shm_(std::move(shm)), length_(length), capacity_(cap), stride_(stride_for(cap)) {}

  void check_open() const {
    if (shm_.closed())
      throw usage_error("the shareable_list's segment is closed in this process; attach it again");
  }

  std::byte* slot(std::size_t i) const noexcept {
    return shm_.buf().data() + data_offset + i * stride_;
  }

  std::size_t position(difference_type i) const {
    check_open();
    auto n = static_cast<difference_type>(length_);
    difference_type j = i < 0 ? i + n : i;
    if (j < 0 || j >= n)
      throw index_error("shareable_list index " + std::to_string(i) + " is out of range for " +
                        std::to_string(length_) + " items");
    return static_cast<std::size_t>(j);
  }

  T load(std::size_t i) const {
    check_open();
    const std::byte* p = slot(i);
    if constexpr (holds_strings) {
      std::uint32_t len = 0;
      std::memcpy(&len, p, sizeof len);
      if (len > capacity_)
        throw segment_error(EINVAL, "shareable_list slot " + std::to_string(i) + " holds " +
                                        std::to_string(len) + " bytes, more than its capacity (" +
                                        std::to_string(capacity_) +
                                        "): it is corrupt, or a write raced this read");
      return std::string{reinterpret_cast<const char*>(p + sizeof len), len};
    } else {
      T v;
      std::memcpy(static_cast<void*>(&v), p, sizeof(T));
      return v;
    }
  }

  void store(std::size_t i, argument_type v) {
    check_open();
    std::byte* p = slot(i);
    if constexpr (holds_strings) {
      if (v.size() > capacity_)
        throw value_error("a value of " + std::to_string(v.size()) +
                          " bytes exceeds available storage of a shareable_list slot (" +
                          std::to_string(capacity_) + " bytes)");
      auto len = static_cast<std::uint32_t>(v.size());
      if (!v.empty()) std::memcpy(p + sizeof len, v.data(), v.size());
      std::memcpy(p, &len, sizeof len);
    } else {
      std::memcpy(p, static_cast<const void*>(&v), sizeof(T));
    }
  }

  bool equal_at(std::size_t i, argument_type v) const {
    check_open();
    const std::byte* p = slot(i);
    if constexpr (holds_strings) {
      std::uint32_t len = 0;
      std::memcpy(&len, p, sizeof len);
      return len <= capacity_ && len == v.size() &&
             (v.empty() || std::memcmp(p + sizeof len, v.data(), v.size()) == 0);
    } else if constexpr (std::equality_comparable<T>) {
      return load(i) == v;
    } else {
      return std::memcmp(p, static_cast<const void*>(&v), sizeof(T)) == 0;
    }
  }

  shared_memory shm_;
  std::size_t length_ = 0;
  std::size_t capacity_ = 0;
  std::size_t stride_ = 0;
};

} // namespace tandem::mp
