// The last line of defence at library and RPC boundaries: no exception
// escapes into gRPC's threads or a caller that expects absl::Status.
//
//   return GuardExceptions("loading adapter 'x'", [&] { return Load(); });
//
// Thread safety: stateless.
#ifndef TESSERA_COMMON_EXCEPTION_GUARD_H_
#define TESSERA_COMMON_EXCEPTION_GUARD_H_

#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/json_util.h"

namespace tessera {

// Calls fn() (returning absl::Status or absl::StatusOr<T>); an exception
// becomes InternalError (ResourceExhausted for std::bad_alloc) naming `what`.
template <typename Fn>
auto GuardExceptions(std::string_view what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(std::string(what), ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(std::string(what), ": unexpected error (", Excerpt(e.what(), 200),
                                            "); this is a bug, please report it"));
  } catch (...) {
    return absl::InternalError(absl::StrCat(std::string(what), ": unexpected error; this is a bug, please report it"));
  }
}

}  // namespace tessera

#endif  // TESSERA_COMMON_EXCEPTION_GUARD_H_
