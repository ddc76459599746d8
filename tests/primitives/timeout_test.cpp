#include <tandem/error.hpp>
#include <tandem/timeout.hpp>

#include <doctest/doctest.h>

#include <limits>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

TEST_SUITE("timeout") {

TEST_CASE("the default timeout is forever") {
  tandem::timeout sut;
  CHECK(sut.is_forever());
  CHECK(sut == tandem::forever);
  CHECK_FALSE(sut.expired());
  CHECK(sut.remaining() == clock_type::duration::max());
}

TEST_CASE("a relative timeout becomes a deadline from now") {
  auto before = clock_type::now();
  tandem::timeout sut{250ms};
  auto after = clock_type::now();
  CHECK_FALSE(sut.is_forever());
  CHECK(sut.deadline() >= before + 250ms);
  CHECK(sut.deadline() <= after + 250ms);
  CHECK(sut.remaining() <= 250ms);
  CHECK(sut.remaining() > 0ms);
}

TEST_CASE("negative and zero timeouts are an immediate deadline") {
  for (tandem::timeout sut : {tandem::timeout{-5s}, tandem::timeout{0s}, tandem::timeout{-1ns}}) {
    CHECK_FALSE(sut.is_forever());
    CHECK(sut.expired());
    CHECK(sut.remaining() == 0ns);
  }
}

TEST_CASE("a deadline in the past is an immediate deadline") {
  tandem::timeout sut{clock_type::now() - 1h};
  CHECK(sut.expired());
  CHECK(sut.remaining() == 0ns);
}

TEST_CASE("an absolute deadline is kept as given") {
  auto tp = clock_type::now() + 3s;
  tandem::timeout sut{tp};
  CHECK(sut.deadline() == tp);
}

TEST_CASE("durations past timeout_max or the clock's range mean forever and never wrap") {
  CHECK(tandem::timeout{tandem::timeout_max}.is_forever());
  CHECK(tandem::timeout{std::chrono::hours::max()}.is_forever());
  CHECK(tandem::timeout{std::chrono::nanoseconds::max()}.is_forever());
  CHECK(tandem::timeout{std::chrono::duration<double>(1e300)}.is_forever());
  CHECK(tandem::timeout{std::chrono::duration<double>(std::numeric_limits<double>::infinity())}
          .is_forever());
  CHECK_FALSE(tandem::timeout{tandem::timeout_max - 1s}.expired());
}

TEST_CASE("floating-point durations round up and NaN is a value_error") {
  auto before = clock_type::now();
  tandem::timeout sut{std::chrono::duration<double>(0.5)};
  CHECK(sut.deadline() >= before + 500ms);
  CHECK(tandem::timeout{std::chrono::duration<double>(-0.5)}.expired());
  CHECK_THROWS_AS(tandem::timeout{std::chrono::duration<double>(std::nan(""))},
                  tandem::value_error);
}

TEST_CASE("a timeout expires once its deadline passes") {
  tandem::timeout sut{20ms};
  CHECK_FALSE(sut.expired());
  while (!sut.expired()) {
  }
  CHECK(clock_type::now() >= sut.deadline());
}

}

TEST_SUITE("error") {

TEST_CASE("every tandem error is a system_error in the tandem category") {
  try {
    throw tandem::shut_down_error("the queue is shut down");
  } catch (const tandem::error& e) {
    CHECK(e.code() == tandem::errc::shut_down);
    CHECK(std::string{e.code().category().name()} == "tandem");
    CHECK(std::string{e.what()}.find("the queue is shut down") != std::string::npos);
  }
  CHECK(std::string{tandem::to_string(tandem::errc::broken_barrier)} == "broken_barrier");
}

TEST_CASE("buffer_too_short_error keeps the whole message and segment_error the errno") {
  std::vector<std::byte> msg(10, std::byte{7});
  tandem::buffer_too_short_error sut{"too short", msg};
  CHECK(sut.message() == msg);
  CHECK(sut.code() == tandem::errc::buffer_too_short);
  tandem::segment_error seg{EEXIST, "exists"};
  CHECK(seg.errno_value() == EEXIST);
  CHECK(seg.code() == tandem::errc::segment);
}

}

TEST_SUITE("timeout") {

TEST_CASE("deadlines in coarse units saturate instead of wrapping") {
  using hours_tp = std::chrono::time_point<clock_type, std::chrono::hours>;
  CHECK(tandem::timeout{hours_tp::max()}.is_forever());
  CHECK(tandem::timeout{hours_tp::min()}.expired());
  auto soon = std::chrono::time_point_cast<std::chrono::seconds>(clock_type::now()) + 3600s;
  tandem::timeout sut{soon};
  CHECK_FALSE(sut.expired());
  CHECK(sut.deadline() == soon);
}

TEST_CASE("until converts another clock's deadline without overflow") {
  auto sut = tandem::timeout::until(std::chrono::system_clock::now() + 1h);
  CHECK(sut.remaining() > 59min);
  CHECK(sut.remaining() <= 1h);
  // system_clock's end is about 236 years away: a far deadline, not a wrapped one.
  auto far = tandem::timeout::until(std::chrono::system_clock::time_point::max());
  CHECK(far.remaining() > std::chrono::hours{24 * 365 * 200});
  CHECK(tandem::timeout::until(std::chrono::system_clock::time_point::min()).expired());
  CHECK(tandem::timeout::until(std::chrono::system_clock::now() - 1s).expired());
}

}
