// The stages of the log-analysis pipeline, as plain functions over plain data.
//
//   source      read_batch(seed, first, count)  -> batch        (generates web-server log lines)
//   worker      analyze(batch)                  -> log_stats    (parses lines, computes statistics)
//   aggregator  log_stats::merge(part)                          (adds partial results together)
//
// Nothing here knows how it is run. pipeline.cpp runs the stages in tandem::thread workers
// connected by bounded tandem::queue's, or in worker processes connected by cross-process
// tandem::mp::queue's (--mode=processes); the self-check runs the very same functions in one
// thread. That is why the data types are plain values (vectors, maps and arrays of numbers and
// strings): they move through an in-process queue cheaply, and their CAF `inspect` overloads
// (below each type) let them be serialized into a cross-process queue's shared memory.
//
// The data set depends only on the seed: record i is a pure function of (seed, i), so batches can
// be generated in any order, by any worker, and the result is always the same.
#pragma once

#include <caf/meta/type_name.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipeline {

// -- the source stage -------------------------------------------------------------------------

/// A chunk of a log file: records `first` to `first + count - 1`, one per line, each line ended by
/// a newline.
struct batch {
  std::uint64_t first = 0;
  std::size_t count = 0;
  std::string text;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch& x) {
  return f(caf::meta::type_name("batch"), x.first, x.count, x.text);
}

/// Appends the log line of record `index` of the data set `seed` to `out` (no newline), e.g.
///   2024-03-01T00:00:01.720Z 10.0.18.77 GET /api/users/4182/orders 200 5321 12.345ms
/// About one line in a thousand is damaged (cut short or garbled), as in real logs.
void append_record(std::uint64_t seed, std::uint64_t index, std::string& out);

/// Records `first` to `first + count - 1` of the data set `seed`: the source stage.
batch read_batch(std::uint64_t seed, std::uint64_t first, std::size_t count);

// -- the data set's shape ---------------------------------------------------------------------

// Upper bounds of what the data set holds, for sizing buffers that carry batches and statistics
// (the cross-process queues' shared memory). The generator stays within them by construction.

/// The longest line, its newline included (by construction at most 89 bytes).
inline constexpr std::size_t max_line_bytes = 128;
/// Distinct clients: the generator picks them from 2000 addresses.
inline constexpr std::size_t max_clients = 2000;
/// Distinct routes (12 endpoints) and methods (3) of parsed lines; damaged lines add none.
inline constexpr std::size_t max_routes = 16;
inline constexpr std::size_t max_methods = 8;
/// The longest client address (10 bytes), route (21) or method (6).
inline constexpr std::size_t max_key_bytes = 32;

// -- the worker stage -------------------------------------------------------------------------

/// One parsed log line. The string views point into the line.
struct record {
  int hour = 0; // hour of the day, 0 to 23
  std::string_view client;
  std::string_view method;
  std::string_view path;
  int status = 0;
  std::uint64_t bytes = 0;
  std::uint64_t latency_us = 0;
};

/// Parses one log line; nullopt when it is malformed.
std::optional<record> parse(std::string_view line);

/// The route of a request path: query string removed, numeric segments replaced by ":id"
/// ("/api/users/4182/orders?page=2" -> "/api/users/:id/orders").
std::string route_of(std::string_view path);

/// Request latencies in logarithmic buckets (32 per power of two, so a bucket is at most about
/// 3% wide): mergeable, and percentiles without keeping every sample.
class latency_histogram {
public:
  /// Values below `direct` have a bucket each; above, 32 buckets per power of two up to 2^40 us.
  static constexpr std::size_t direct = 64;
  static constexpr std::size_t n_buckets = direct + 40 * 32;

  void add(std::uint64_t us);
  void merge(const latency_histogram& other);

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }

  /// An upper bound of the q-quantile (0 < q <= 1), exact to the bucket width.
  std::uint64_t percentile(double q) const;

  friend bool operator==(const latency_histogram&, const latency_histogram&) = default;

  /// Serializes every bucket (a fixed-size array: n_buckets numbers) and the totals.
  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, latency_histogram& x) {
    return f(caf::meta::type_name("latency_histogram"), x.buckets_, x.count_, x.max_);
  }

private:
  static std::size_t bucket_of(std::uint64_t us);
  static std::uint64_t upper_bound_of(std::size_t bucket);

  std::array<std::uint64_t, n_buckets> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

/// What the analysis knows about one route.
struct route_stats {
  std::uint64_t requests = 0;
  std::uint64_t server_errors = 0; // status 5xx
  std::uint64_t bytes = 0;
  std::uint64_t latency_us = 0; // sum, for the mean

  friend bool operator==(const route_stats&, const route_stats&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, route_stats& x) {
  return f(caf::meta::type_name("route_stats"), x.requests, x.server_errors, x.bytes, x.latency_us);
}

/// The statistics of any number of log lines. Merging is associative and commutative, so partial
/// results may be merged in any order: the total is always the same.
struct log_stats {
  std::uint64_t lines = 0;
  std::uint64_t text_bytes = 0; // size of the log text, newlines excluded
  std::uint64_t malformed = 0;
  std::uint64_t bytes = 0;
  /// Sum of the FNV-1a hashes of every line: independent of the order, and it changes when a line
  /// is lost, duplicated or altered on its way through the pipeline.
  std::uint64_t checksum = 0;
  std::array<std::uint64_t, 600> by_status{}; // index = HTTP status
  std::array<std::uint64_t, 24> by_hour{};
  std::map<std::string, std::uint64_t, std::less<>> by_method;
  std::map<std::string, route_stats, std::less<>> by_route;
  std::map<std::string, std::uint64_t, std::less<>> by_client;
  latency_histogram latency;

  /// Adds one line (parsed or malformed).
  void add(std::string_view line);

  /// Adds the statistics of other lines.
  void merge(const log_stats& other);

  friend bool operator==(const log_stats&, const log_stats&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, log_stats& x) {
  return f(caf::meta::type_name("log_stats"), x.lines, x.text_bytes, x.malformed, x.bytes,
           x.checksum, x.by_status, x.by_hour, x.by_method, x.by_route, x.by_client, x.latency);
}

/// The worker stage: the statistics of every line of one batch.
log_stats analyze(const batch& b);

/// FNV-1a, 64 bits.
std::uint64_t fnv1a(std::string_view bytes);

} // namespace pipeline
