// ctxpp/stop_token.hpp — both directions between contexts and std::stop_token.
// Context::stop_token() hands a context's end to std::jthread,
// std::condition_variable_any and any library that speaks std::stop_token;
// with_stop_token() makes a child context that a std::stop_source can cancel
// (e.g. a std::jthread's request_stop()).
// Example:
//   std::jthread worker([parent](std::stop_token st) {
//     auto [ctx, cancel] = ctxpp::with_stop_token(parent, st);
//     serve(ctx);
//   });
#pragma once

#include <stop_token>

#include "ctxpp/context.hpp"

namespace ctxpp {

/// A child of parent that also ends, with errc::canceled, when token is
/// stop-requested (at once if it already is). It ends with parent as usual.
/// Where the cancel runs: inline in the thread that calls request_stop().
/// Cost: one allocation (the std::stop_callback lives inside the node).
/// Errors: std::bad_alloc. A token with stop_possible() == false gives a plain
/// with_cancel child.
WithCancel<Context, CancelFunc> with_stop_token(const Context& parent, std::stop_token token,
                                                SourceLocation where = SourceLocation::current());

}  // namespace ctxpp
