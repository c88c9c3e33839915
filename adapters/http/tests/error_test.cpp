// ctxpp/http/error.hpp: the "ctxpp.http" category and the text of a 400 response.
#include "ctxpp/http/error.hpp"

#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "ctxpp/errc.hpp"

namespace {

namespace http = ctxpp::http;

TEST(HttpCategory, IsNamedAndSaysWhatWasWrongForEveryCode) {
  const std::error_code ec = http::errc::not_a_number;
  EXPECT_STREQ(ec.category().name(), "ctxpp.http");
  EXPECT_EQ(&ec.category(), &http::http_category());
  EXPECT_EQ(ec.value(), static_cast<int>(http::errc::not_a_number));
  for (int v = static_cast<int>(http::errc::too_long); v <= static_cast<int>(http::errc::zero_id);
       ++v) {
    const std::string message = http::make_error_code(static_cast<http::errc>(v)).message();
    EXPECT_FALSE(message.empty()) << v;
    EXPECT_NE(message, "unknown ctxpp.http error") << v;
  }
  EXPECT_EQ(std::error_code(999, http::http_category()).message(), "unknown ctxpp.http error");
  EXPECT_NE(http::make_error_code(http::errc::too_long).message().find("256"), std::string::npos);
}

TEST(HttpCategory, NeverEqualsAContextEnd) {
  const std::error_code range = http::errc::out_of_range;
  EXPECT_NE(range, std::error_code(ctxpp::errc::deadline_exceeded));
  EXPECT_FALSE(range == std::errc::timed_out);
  EXPECT_NE(range,
            std::error_code(static_cast<int>(http::errc::out_of_range), std::generic_category()));
}

TEST(BadRequestBody, NamesTheHeaderAndTheReasonOnOneLine) {
  EXPECT_EQ(http::bad_request_body("X-Request-Timeout-Ms", http::errc::empty),
            "invalid X-Request-Timeout-Ms header: the value is empty\n");
  const std::string body = http::bad_request_body("grpc-timeout", http::errc::bad_unit);
  EXPECT_EQ(body.rfind("invalid grpc-timeout header: ", 0), 0U);
  EXPECT_EQ(body.find('\n'), body.size() - 1);
}

}  // namespace
