// tandem::mp::detail codec: the serializer and the checking deserializer.
#include <tandem/mp/detail/codec.hpp>

#include <caf/error.hpp>

#include <cxxabi.h>

#include <cmath>
#include <cstdlib>
#include <memory>

namespace tandem::mp::detail {

namespace {

std::string demangle(const char* mangled) {
  // GCC marks the names of types with internal linkage with a leading '*'.
  if (*mangled == '*') ++mangled;
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name{
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free};
  return status == 0 && name ? std::string{name.get()} : std::string{mangled};
}

// The classes of a long double on the wire: 2 * kind + sign.
enum ld_kind : std::uint8_t { ld_zero = 0, ld_infinity = 1, ld_nan = 2, ld_finite = 3 };

std::uintptr_t frame_address() noexcept {
  // The real frame, also under AddressSanitizer's fake stacks.
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

} // namespace

std::string type_names(std::span<const std::type_info* const> types) {
  std::string out;
  for (const auto* t : types) {
    if (!out.empty()) out += ", ";
    out += demangle(t->name());
  }
  return out;
}

std::optional<std::uint64_t> message_tag(std::span<const std::byte> in) noexcept {
  if (in.size() < message_header_size || std::to_integer<std::uint8_t>(in[0]) != codec_version)
    return std::nullopt;
  std::uint64_t tag = 0;
  for (std::size_t i = 0; i < 8; ++i) tag |= std::to_integer<std::uint64_t>(in[1 + i]) << (8 * i);
  return tag;
}

void throw_encode_error(const caf::error& err, const std::type_info& type) {
  throw value_error("cannot encode a value of type " + demangle(type.name()) +
                    ": its inspect overload reported " + caf::to_string(err));
}

void throw_decode_error(const caf::error& err, const std::type_info& type) {
  throw bad_message_error("cannot decode a value of type " + demangle(type.name()) +
                          ": its inspect overload reported " + caf::to_string(err));
}

// -- codec_writer -----------------------------------------------------------------------------

codec_writer::codec_writer(std::vector<std::byte>& out) : out_(out) {}

codec_writer::~codec_writer() = default;

template <class T>
void codec_writer::write_fixed(T x) {
  static_assert(std::is_unsigned_v<T>);
  std::byte buf[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i)
    buf[i] = static_cast<std::byte>((x >> (8 * i)) & 0xffU);
  write_bytes(buf, sizeof(T));
}

void codec_writer::write_header(std::uint64_t tag) {
  out_.push_back(std::byte{codec_version});
  write_fixed(tag);
}

void codec_writer::write_varint(std::uint64_t x) {
  std::byte buf[10];
  std::size_t n = 0;
  while (x > 0x7f) {
    buf[n++] = static_cast<std::byte>((x & 0x7fU) | 0x80U);
    x >>= 7;
  }
  buf[n++] = static_cast<std::byte>(x);
  write_bytes(buf, n);
}

void codec_writer::write_bytes(const void* data, std::size_t n) {
  if (n == 0) return;
  const auto* p = static_cast<const std::byte*>(data);
  out_.insert(out_.end(), p, p + n);
}

caf::error codec_writer::begin_object(std::uint16_t& nr, std::string& name) {
  write_fixed(nr);
  if (nr == 0) return apply_impl(name);
  return caf::none;
}

caf::error codec_writer::end_object() {
  return caf::none;
}

caf::error codec_writer::begin_sequence(std::size_t& num) {
  write_varint(num);
  return caf::none;
}

caf::error codec_writer::end_sequence() {
  return caf::none;
}

caf::error codec_writer::apply_raw(std::size_t num_bytes, void* data) {
  write_bytes(data, num_bytes);
  return caf::none;
}

caf::error codec_writer::apply_impl(std::int8_t& x) {
  write_fixed(static_cast<std::uint8_t>(x));
  return caf::none;
}

caf::error codec_writer::apply_impl(std::uint8_t& x) {
  write_fixed(x);
  return caf::none;
}

caf::error codec_writer::apply_impl(std::int16_t& x) {
  write_fixed(static_cast<std::uint16_t>(x));
  return caf::none;
}

caf::error codec_writer::apply_impl(std::uint16_t& x) {
  write_fixed(x);
  return caf::none;
}

caf::error codec_writer::apply_impl(std::int32_t& x) {
  write_fixed(static_cast<std::uint32_t>(x));
  return caf::none;
}

caf::error codec_writer::apply_impl(std::uint32_t& x) {
  write_fixed(x);
  return caf::none;
}

caf::error codec_writer::apply_impl(std::int64_t& x) {
  write_fixed(static_cast<std::uint64_t>(x));
  return caf::none;
}

caf::error codec_writer::apply_impl(std::uint64_t& x) {
  write_fixed(x);
  return caf::none;
}

caf::error codec_writer::apply_impl(float& x) {
  write_fixed(std::bit_cast<std::uint32_t>(x));
  return caf::none;
}

caf::error codec_writer::apply_impl(double& x) {
  write_fixed(std::bit_cast<std::uint64_t>(x));
  return caf::none;
}

caf::error codec_writer::apply_impl(long double& x) {
  auto sign = static_cast<std::uint8_t>(std::signbit(x) ? 1 : 0);
  if (std::isnan(x)) {
    write_fixed(static_cast<std::uint8_t>(2 * ld_nan + sign));
  } else if (std::isinf(x)) {
    write_fixed(static_cast<std::uint8_t>(2 * ld_infinity + sign));
  } else if (x == 0) {
    write_fixed(static_cast<std::uint8_t>(2 * ld_zero + sign));
  } else {
    // |x| = m * 2^e with m in [0.5, 1): the first 64 bits of m go to hi, the next 64 to lo, which
    // holds every format up to IEEE quad (113 bits) exactly.
    int e = 0;
    long double m = std::frexp(std::fabs(x), &e);
    long double scaled = std::ldexp(m, 64);
    auto hi = static_cast<std::uint64_t>(scaled);
    auto lo = static_cast<std::uint64_t>(std::ldexp(scaled - static_cast<long double>(hi), 64));
    write_fixed(static_cast<std::uint8_t>(2 * ld_finite + sign));
    write_fixed(static_cast<std::uint32_t>(static_cast<std::int32_t>(e)));
    write_fixed(hi);
    write_fixed(lo);
  }
  return caf::none;
}

caf::error codec_writer::apply_impl(std::string& x) {
  write_varint(x.size());
  write_bytes(x.data(), x.size());
  return caf::none;
}

caf::error codec_writer::apply_impl(std::u16string& x) {
  write_varint(x.size());
  for (char16_t c : x) write_fixed(static_cast<std::uint16_t>(c));
  return caf::none;
}

caf::error codec_writer::apply_impl(std::u32string& x) {
  write_varint(x.size());
  for (char32_t c : x) write_fixed(static_cast<std::uint32_t>(c));
  return caf::none;
}

// -- codec_reader -----------------------------------------------------------------------------

codec_reader::codec_reader(std::span<const std::byte> in)
    : pos_(in.data()), end_(in.data() + in.size()), stack_base_(frame_address()) {}

codec_reader::~codec_reader() = default;

void codec_reader::fail(const std::string& what) {
  throw bad_message_error(what);
}

void codec_reader::read_bytes(void* data, std::size_t n, const char* what) {
  check_no_pending();
  if (n > remaining())
    fail(std::string{"message is truncated: "} + what + " needs " + std::to_string(n) +
         " bytes but only " + std::to_string(remaining()) + " are left");
  if (n != 0) std::memcpy(data, pos_, n);
  pos_ += n;
}

template <class T>
T codec_reader::read_fixed(const char* what) {
  static_assert(std::is_unsigned_v<T>);
  std::byte buf[sizeof(T)];
  read_bytes(buf, sizeof(T), what);
  T x = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    x = static_cast<T>(x | static_cast<T>(std::to_integer<T>(buf[i]) << (8 * i)));
  return x;
}

std::uint64_t codec_reader::read_varint(const char* what) {
  check_no_pending();
  std::uint64_t x = 0;
  for (unsigned shift = 0;; shift += 7) {
    if (pos_ == end_) fail(std::string{"message is truncated in the length of a "} + what);
    auto b = std::to_integer<std::uint64_t>(*pos_++);
    // The tenth byte holds bit 63 only.
    if (shift == 63 && b > 1) fail(std::string{"the length of a "} + what + " overflows 64 bits");
    x |= (b & 0x7fU) << shift;
    if ((b & 0x80U) == 0) return x;
  }
}

void codec_reader::fail_length(std::uint64_t n, const char* what) const {
  fail(std::string{"message declares a "} + what + " of " + std::to_string(n) +
       " elements but only " + std::to_string(remaining()) +
       " bytes are left: it is corrupt or truncated");
}

void codec_reader::check_no_pending() const {
  if (pending_bits_ != 0) fail_length(pending_bits_, "sequence");
}

std::size_t codec_reader::read_length(std::size_t min_element_size, const char* what) {
  auto n = read_varint(what);
  if (n > remaining() / min_element_size) fail_length(n, what);
  return static_cast<std::size_t>(n);
}

void codec_reader::read_header(std::uint64_t expected, std::string (*expected_names)()) {
  if (pos_ == end_) fail("message is empty: it holds no version and no type tag");
  auto version = read_fixed<std::uint8_t>("the version");
  if (version != codec_version)
    fail("message has format version " + std::to_string(version) + ", this program reads " +
         std::to_string(codec_version) + ": it is corrupt or was written by another tandem");
  auto tag = read_fixed<std::uint64_t>("the type tag");
  if (tag != expected)
    fail("message of another type: expected (" + expected_names() +
         "), but the message holds values of other types: receive it with the types it was sent "
         "with");
}

void codec_reader::finish() const {
  check_no_pending();
  if (pos_ != end_)
    fail("message has " + std::to_string(remaining()) +
         " trailing bytes after its values: it is corrupt or holds other types");
}

void codec_reader::check_stack() const {
  // The stack grows down on every platform tandem runs on.
  auto here = frame_address();
  if (stack_base_ > here && stack_base_ - here > max_decode_stack)
    fail("message nests too deeply to decode safely");
}

caf::error codec_reader::begin_object(std::uint16_t& nr, std::string& name) {
  check_stack();
  nr = read_fixed<std::uint16_t>("an object's type number");
  if (nr == 0) return apply_impl(name);
  return caf::none;
}

caf::error codec_reader::end_object() {
  check_no_pending();
  return caf::none;
}

caf::error codec_reader::begin_sequence(std::size_t& num) {
  check_stack();
  auto bits = std::exchange(pending_bits_, 0);
  if (bits != 0) {
    // CAF encodes a std::vector<bool> of n bits as the length n, then a sequence of its
    // (n - 1) / 8 + 1 bytes: this is that second sequence.
    num = read_length(1, "sequence");
    if (num != (bits - 1) / 8 + 1) fail_length(bits, "sequence");
    return caf::none;
  }
  auto n = read_varint("sequence");
  if (n > remaining()) {
    // Too long for a sequence of n elements, unless the next call reads the bytes of a vector of
    // n bits; every other call fails at once (see check_no_pending).
    if (n / 8 >= remaining()) fail_length(n, "sequence");
    pending_bits_ = n;
  }
  num = static_cast<std::size_t>(n);
  return caf::none;
}

caf::error codec_reader::end_sequence() {
  check_no_pending();
  return caf::none;
}

caf::error codec_reader::apply_raw(std::size_t num_bytes, void* data) {
  read_bytes(data, num_bytes, "a block of bytes");
  return caf::none;
}

caf::error codec_reader::apply_impl(std::int8_t& x) {
  x = static_cast<std::int8_t>(read_fixed<std::uint8_t>("an 8-bit integer"));
  return caf::none;
}

caf::error codec_reader::apply_impl(std::uint8_t& x) {
  x = read_fixed<std::uint8_t>("an 8-bit integer");
  return caf::none;
}

caf::error codec_reader::apply_impl(std::int16_t& x) {
  x = static_cast<std::int16_t>(read_fixed<std::uint16_t>("a 16-bit integer"));
  return caf::none;
}

caf::error codec_reader::apply_impl(std::uint16_t& x) {
  x = read_fixed<std::uint16_t>("a 16-bit integer");
  return caf::none;
}

caf::error codec_reader::apply_impl(std::int32_t& x) {
  x = static_cast<std::int32_t>(read_fixed<std::uint32_t>("a 32-bit integer"));
  return caf::none;
}

caf::error codec_reader::apply_impl(std::uint32_t& x) {
  x = read_fixed<std::uint32_t>("a 32-bit integer");
  return caf::none;
}

caf::error codec_reader::apply_impl(std::int64_t& x) {
  x = static_cast<std::int64_t>(read_fixed<std::uint64_t>("a 64-bit integer"));
  return caf::none;
}

caf::error codec_reader::apply_impl(std::uint64_t& x) {
  x = read_fixed<std::uint64_t>("a 64-bit integer");
  return caf::none;
}

caf::error codec_reader::apply_impl(float& x) {
  x = std::bit_cast<float>(read_fixed<std::uint32_t>("a float"));
  return caf::none;
}

caf::error codec_reader::apply_impl(double& x) {
  x = std::bit_cast<double>(read_fixed<std::uint64_t>("a double"));
  return caf::none;
}

caf::error codec_reader::apply_impl(long double& x) {
  auto cls = read_fixed<std::uint8_t>("a long double");
  bool negative = (cls & 1U) != 0;
  long double magnitude = 0;
  switch (cls >> 1) {
    case ld_zero:
      magnitude = 0;
      break;
    case ld_infinity:
      magnitude = std::numeric_limits<long double>::infinity();
      break;
    case ld_nan:
      magnitude = std::numeric_limits<long double>::quiet_NaN();
      break;
    case ld_finite: {
      auto e = static_cast<std::int32_t>(read_fixed<std::uint32_t>("a long double"));
      auto hi = read_fixed<std::uint64_t>("a long double");
      auto lo = read_fixed<std::uint64_t>("a long double");
      // Clamped so that the exponent arithmetic cannot overflow; ldexp saturates to infinity or
      // zero far inside this range.
      constexpr std::int64_t limit = 1 << 20;
      auto clamp = [](std::int64_t v) {
        return static_cast<int>(v < -limit ? -limit : (v > limit ? limit : v));
      };
      magnitude = std::ldexp(static_cast<long double>(hi), clamp(std::int64_t{e} - 64)) +
                  std::ldexp(static_cast<long double>(lo), clamp(std::int64_t{e} - 128));
      break;
    }
    default:
      fail("message holds a long double of unknown class " + std::to_string(cls));
  }
  x = negative ? -magnitude : magnitude;
  return caf::none;
}

caf::error codec_reader::apply_impl(std::string& x) {
  auto n = read_length(1, "string");
  x.resize(n);
  read_bytes(x.data(), n, "a string");
  return caf::none;
}

caf::error codec_reader::apply_impl(std::u16string& x) {
  auto n = read_length(2, "u16string");
  x.resize(n);
  for (auto& c : x) c = static_cast<char16_t>(read_fixed<std::uint16_t>("a u16string"));
  return caf::none;
}

caf::error codec_reader::apply_impl(std::u32string& x) {
  auto n = read_length(4, "u32string");
  x.resize(n);
  for (auto& c : x) c = static_cast<char32_t>(read_fixed<std::uint32_t>("a u32string"));
  return caf::none;
}

} // namespace tandem::mp::detail
