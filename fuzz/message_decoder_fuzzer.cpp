// libFuzzer target: message deserialization (tandem::mp::detail::decode).
//
// Random bytes are decoded as one of several types; decoding may only succeed or throw
// tandem::bad_message_error. Whatever decodes is encoded again, decoded again and encoded a third
// time: the two encodings must be equal (the decoder and the encoder agree on every value,
// including NaNs and non-canonical inputs), and values with a meaningful == must compare equal.
//
// Input layout: byte 0 selects the type (bits 0-2) and whether the target prepends the correct
// version and type tag (bit 7), so most runs exercise the values rather than the tag check; the
// rest is the message (or its body).
#include <tandem/error.hpp>
#include <tandem/mp/detail/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace {

namespace codec = tandem::mp::detail;

struct record {
  std::int16_t id = 0;
  bool flag = false;
  double ratio = 0;
  long double precise = 0;
  std::u16string name;
  std::u32string wide;
  std::vector<bool> bits;
  std::vector<std::pair<std::string, float>> pairs;
  std::vector<std::vector<std::uint8_t>> blobs;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, record& x) {
  return f(caf::meta::type_name("record"), x.id, x.flag, x.ratio, x.precise, x.name, x.wide, x.bits,
           x.pairs, x.blobs);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "message_decoder_fuzzer: %s\n", what);
  std::abort();
}

template <class... Ts>
void check(std::span<const std::byte> in, bool with_header, bool comparable) {
  std::vector<std::byte> message;
  if (with_header) {
    auto tag = codec::type_tag<Ts...>();
    message.push_back(std::byte{codec::codec_version});
    for (int i = 0; i < 8; ++i) message.push_back(static_cast<std::byte>((tag >> (8 * i)) & 0xffU));
    message.insert(message.end(), in.begin(), in.end());
    in = message;
  }
  std::tuple<Ts...> first;
  try {
    first = codec::decode<Ts...>(in);
  } catch (const tandem::bad_message_error&) {
    return;
  }
  std::vector<std::byte> once;
  std::apply([&once](const auto&... xs) { codec::encode(once, xs...); }, first);
  auto second = codec::decode<Ts...>(once); // must not throw: it was just encoded
  std::vector<std::byte> twice;
  std::apply([&twice](const auto&... xs) { codec::encode(twice, xs...); }, second);
  if (once != twice) die("encode(decode(encode(x))) differs from encode(x)");
  if constexpr ((std::equality_comparable<Ts> && ...)) {
    if (comparable && first != second) die("a decoded value differs after a round trip");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const bool with_header = (mode & 0x80U) != 0;
  std::span<const std::byte> in{reinterpret_cast<const std::byte*>(data + 1), size - 1};
  switch (mode & 7U) {
    case 0:
      check<std::int32_t>(in, with_header, true);
      break;
    case 1:
      check<std::string>(in, with_header, true);
      break;
    case 2:
      check<std::vector<std::string>>(in, with_header, true);
      break;
    case 3:
      check<std::map<std::string, std::vector<std::int64_t>>>(in, with_header, true);
      break;
    case 4:
      check<record>(in, with_header, false);
      break;
    case 5:
      check<std::int64_t, std::string, std::vector<double>>(in, with_header, false);
      break;
    case 6:
      check<std::vector<std::uint16_t>, std::u16string>(in, with_header, true);
      break;
    default:
      check<std::map<std::int32_t, std::vector<bool>>>(in, with_header, true);
      break;
  }
  return 0;
}
