// The stages of the log-analysis pipeline: generating, parsing and summarizing web-server logs.
#include "stages.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>

namespace pipeline {

namespace {

// -- a deterministic data set -----------------------------------------------------------------

// splitmix64: tiny, fast and well mixed. The standard library's distributions are not used on
// purpose: their output differs between implementations, and the data set must not.
class splitmix64 {
public:
  explicit splitmix64(std::uint64_t state) : state_(state) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }

  /// Uniform in [0, n) (the modulo bias is irrelevant here).
  std::uint64_t below(std::uint64_t n) { return next() % n; }

  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Roughly standard normal (Irwin-Hall with four terms): cheap and bounded.
  double normal() { return (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7320508; }

private:
  std::uint64_t state_;
};

struct endpoint {
  const char* method;
  const char* pattern; // "{id}" is replaced by a number
  int weight;
  double latency_us; // median latency
  double bytes;      // typical response size
};

constexpr endpoint endpoints[] = {
    {"GET", "/", 5, 800, 12'000},
    {"GET", "/static/app.js", 10, 300, 180'000},
    {"GET", "/static/style.css", 8, 250, 40'000},
    {"GET", "/health", 12, 100, 20},
    {"GET", "/api/products?page={id}", 14, 9'000, 24'000},
    {"GET", "/api/products/{id}", 16, 4'000, 3'500},
    {"GET", "/api/users/{id}", 10, 3'000, 1'200},
    {"GET", "/api/users/{id}/orders", 8, 15'000, 8'000},
    {"POST", "/api/orders", 5, 40'000, 600},
    {"GET", "/api/orders/{id}", 6, 6'000, 2'200},
    {"POST", "/api/login", 4, 25'000, 300},
    {"DELETE", "/api/sessions/{id}", 2, 2'000, 0},
};

constexpr int total_weight = [] {
  int sum = 0;
  for (const auto& e : endpoints) sum += e.weight;
  return sum;
}();

const endpoint& pick_endpoint(splitmix64& rng) {
  auto w = static_cast<int>(rng.below(total_weight));
  for (const auto& e : endpoints) {
    if (w < e.weight) return e;
    w -= e.weight;
  }
  return endpoints[0];
}

int pick_status(splitmix64& rng, const endpoint& e) {
  std::string_view path = e.pattern;
  double u = rng.uniform();
  if (path.starts_with("/static/")) return u < 0.3 ? 304 : 200;
  if (path == "/api/products/{id}" || path == "/api/users/{id}")
    return u < 0.04 ? 404 : (u < 0.043 ? 500 : 200);
  if (path == "/api/login") return u < 0.1 ? 401 : 200;
  if (path == "/api/orders" && std::string_view{e.method} == "POST")
    return u < 0.02 ? 500 : (u < 0.025 ? 503 : 201);
  if (std::string_view{e.method} == "DELETE") return 204;
  return u < 0.003 ? 500 : 200;
}

// Records are 43 ms apart on average, starting 2024-03-01T00:00:00Z.
constexpr std::uint64_t ms_per_record = 43;

// Appends `n` in decimal, zero-padded to at least `width` digits. (snprintf would do, at twice
// the cost: the source stage should be fast, as reading a log file is.)
void append_number(std::string& out, std::uint64_t n, std::ptrdiff_t width = 0) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  for (auto len = end - digits; len < width; ++len) out += '0';
  out.append(digits, end);
}

} // namespace

void append_record(std::uint64_t seed, std::uint64_t index, std::string& out) {
  // Each record has its own generator, seeded from (seed, index): any record can be made alone.
  splitmix64 rng{splitmix64{seed}.next() ^ (index * 0xd1342543de82ef95)};
  auto start = out.size();

  // The timestamp: 2024-03-01T00:00:01.720Z.
  using namespace std::chrono;
  auto ms = index * ms_per_record + rng.below(ms_per_record);
  auto ms_of_day = ms % 86'400'000;
  year_month_day date{sys_days{2024y / March / 1} + days{ms / 86'400'000}};
  append_number(out, static_cast<std::uint64_t>(static_cast<int>(date.year())), 4);
  out += '-';
  append_number(out, static_cast<unsigned>(date.month()), 2);
  out += '-';
  append_number(out, static_cast<unsigned>(date.day()), 2);
  out += 'T';
  append_number(out, ms_of_day / 3'600'000, 2);
  out += ':';
  append_number(out, ms_of_day / 60'000 % 60, 2);
  out += ':';
  append_number(out, ms_of_day / 1'000 % 60, 2);
  out += '.';
  append_number(out, ms_of_day % 1'000, 3);
  out += "Z 10.0.";

  // The client: a few clients send much more than the others.
  double u = rng.uniform();
  auto client = static_cast<unsigned>(2000 * u * u);
  append_number(out, client / 250);
  out += '.';
  append_number(out, client % 250 + 1);
  out += ' ';

  const auto& e = pick_endpoint(rng);
  out += e.method;
  out += ' ';
  std::string_view pattern = e.pattern;
  if (auto pos = pattern.find("{id}"); pos != std::string_view::npos) {
    out += pattern.substr(0, pos);
    append_number(out, 1 + rng.below(9999));
    out += pattern.substr(pos + 4);
  } else {
    out += pattern;
  }

  int status = pick_status(rng, e);
  double latency = e.latency_us * std::exp(0.6 * rng.normal());
  if (rng.below(200) == 0 || status >= 500)
    latency *= 20; // a slow outlier, or a timeout behind an error
  auto latency_us = static_cast<std::uint64_t>(latency) + 1;
  auto bytes = status == 200 || status == 201
                   ? static_cast<std::uint64_t>(e.bytes * (0.5 + rng.uniform()))
                   : 100 + rng.below(200);
  out += ' ';
  append_number(out, static_cast<std::uint64_t>(status));
  out += ' ';
  append_number(out, bytes);
  out += ' ';
  append_number(out, latency_us / 1000);
  out += '.';
  append_number(out, latency_us % 1000, 3);
  out += "ms";

  // About one line in a thousand is damaged: cut short (a crashed writer) or garbled.
  if (rng.below(1000) == 0) {
    auto length = out.size() - start;
    if (rng.below(2) == 0)
      out.resize(start + rng.below(length));
    else
      out[start + rng.below(length)] = ' ';
  }
}

batch read_batch(std::uint64_t seed, std::uint64_t first, std::size_t count) {
  batch b;
  b.first = first;
  b.count = count;
  b.text.reserve(count * 80);
  for (std::size_t i = 0; i < count; ++i) {
    append_record(seed, first + i, b.text);
    b.text += '\n';
  }
  return b;
}

// -- parsing ----------------------------------------------------------------------------------

namespace {

template <class T>
bool parse_number(std::string_view text, T& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "2024-03-01T00:00:01.720Z": checks the shape, returns the hour (or -1).
int parse_hour(std::string_view ts) {
  constexpr std::string_view shape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (ts.size() != shape.size()) return -1;
  for (std::size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == 'd' ? !is_digit(ts[i]) : ts[i] != shape[i]) return -1;
  int hour = (ts[11] - '0') * 10 + (ts[12] - '0');
  return hour < 24 ? hour : -1;
}

// "12.345ms" -> 12345.
bool parse_latency(std::string_view text, std::uint64_t& us) {
  if (!text.ends_with("ms") || text.size() < 7) return false;
  text.remove_suffix(2);
  auto dot = text.size() - 4;
  std::uint64_t whole = 0;
  std::uint64_t frac = 0;
  if (text[dot] != '.' || !parse_number(text.substr(0, dot), whole) ||
      !parse_number(text.substr(dot + 1), frac))
    return false;
  us = whole * 1000 + frac;
  return true;
}

void route_into(std::string_view path, std::string& out) {
  out.clear();
  path = path.substr(0, path.find('?'));
  while (!path.empty()) {
    // path starts with '/': copy the slash, then the segment or ":id".
    out += '/';
    path.remove_prefix(1);
    auto segment = path.substr(0, path.find('/'));
    path.remove_prefix(segment.size());
    if (!segment.empty() && std::all_of(segment.begin(), segment.end(), is_digit))
      out.append(std::string_view{":id"});
    else
      out += segment;
  }
  if (out.empty()) out.push_back('/');
}

} // namespace

std::optional<record> parse(std::string_view line) {
  std::array<std::string_view, 7> fields;
  std::size_t n = 0;
  while (!line.empty()) {
    auto space = line.find(' ');
    if (n == fields.size()) return std::nullopt; // too many fields
    fields[n++] = line.substr(0, space);
    if (fields[n - 1].empty()) return std::nullopt; // two spaces in a row
    line.remove_prefix(space == std::string_view::npos ? line.size() : space + 1);
  }
  if (n != fields.size()) return std::nullopt;

  record r;
  r.hour = parse_hour(fields[0]);
  r.client = fields[1];
  r.method = fields[2];
  r.path = fields[3];
  if (r.hour < 0 ||
      !std::all_of(r.method.begin(), r.method.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
    return std::nullopt;
  if (!r.path.starts_with('/') || !parse_number(fields[4], r.status) || r.status < 100 ||
      r.status > 599 || !parse_number(fields[5], r.bytes) ||
      !parse_latency(fields[6], r.latency_us))
    return std::nullopt;
  return r;
}

std::string route_of(std::string_view path) {
  std::string out;
  route_into(path, out);
  return out;
}

// -- statistics -------------------------------------------------------------------------------

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3;
  return h;
}

std::size_t latency_histogram::bucket_of(std::uint64_t us) {
  us = std::min<std::uint64_t>(us, (std::uint64_t{1} << 40) - 1);
  if (us < direct) return us;
  // The top 6 bits of the value: 32 buckets per power of two.
  auto shift = static_cast<std::size_t>(std::bit_width(us)) - 6;
  auto mantissa = static_cast<std::size_t>(us >> shift);
  return direct + (shift - 1) * 32 + (mantissa - 32);
}

std::uint64_t latency_histogram::upper_bound_of(std::size_t bucket) {
  if (bucket < direct) return bucket;
  auto k = bucket - direct;
  auto shift = k / 32 + 1;
  auto mantissa = std::uint64_t{k % 32 + 32};
  return ((mantissa + 1) << shift) - 1;
}

void latency_histogram::add(std::uint64_t us) {
  ++buckets_[bucket_of(us)];
  ++count_;
  max_ = std::max(max_, us);
}

void latency_histogram::merge(const latency_histogram& other) {
  for (std::size_t i = 0; i < n_buckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

std::uint64_t latency_histogram::percentile(double q) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < n_buckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(upper_bound_of(i), max_);
  }
  return max_;
}

void log_stats::add(std::string_view line) {
  ++lines;
  text_bytes += line.size();
  checksum += fnv1a(line);
  auto r = parse(line);
  if (!r) {
    ++malformed;
    return;
  }
  bytes += r->bytes;
  ++by_status[static_cast<std::size_t>(r->status)];
  ++by_hour[static_cast<std::size_t>(r->hour)];
  latency.add(r->latency_us);

  // Map keys are looked up as string_views (std::less<>): a string is built only for a new key.
  auto count = [](auto& map, std::string_view key) -> auto& {
    auto it = map.find(key);
    if (it == map.end())
      it = map.emplace(std::string{key}, typename std::decay_t<decltype(map)>::mapped_type{}).first;
    return it->second;
  };
  ++count(by_method, r->method);
  ++count(by_client, r->client);

  // One scratch string per thread, so that routing a path does not allocate for every line.
  thread_local std::string route;
  route_into(r->path, route);
  auto& rs = count(by_route, route);
  ++rs.requests;
  rs.server_errors += r->status >= 500 ? 1 : 0;
  rs.bytes += r->bytes;
  rs.latency_us += r->latency_us;
}

void log_stats::merge(const log_stats& other) {
  lines += other.lines;
  text_bytes += other.text_bytes;
  malformed += other.malformed;
  bytes += other.bytes;
  checksum += other.checksum;
  for (std::size_t i = 0; i < by_status.size(); ++i) by_status[i] += other.by_status[i];
  for (std::size_t i = 0; i < by_hour.size(); ++i) by_hour[i] += other.by_hour[i];
  for (const auto& [method, n] : other.by_method) by_method[method] += n;
  for (const auto& [client, n] : other.by_client) by_client[client] += n;
  for (const auto& [route, s] : other.by_route) {
    auto& mine = by_route[route];
    mine.requests += s.requests;
    mine.server_errors += s.server_errors;
    mine.bytes += s.bytes;
    mine.latency_us += s.latency_us;
  }
  latency.merge(other.latency);
}

log_stats analyze(const batch& b) {
  log_stats stats;
  std::string_view text = b.text;
  while (!text.empty()) {
    auto end = text.find('\n');
    stats.add(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  return stats;
}

} // namespace pipeline
