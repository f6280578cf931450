// Bounded JSON parsing and short excerpts for untrusted text.
//
// Every JSON document a client or a file on disk can supply goes through
// ParseJson: its size and nesting depth are checked by a linear scan before
// nlohmann parses it, so no input reaches a recursive code path deeper than
// kMaxJsonDepth. Error messages quote at most a short prefix of any input
// (Excerpt), so a client can always read them.
//
// Thread safety: stateless; safe from any thread.
#ifndef TESSERA_COMMON_JSON_UTIL_H_
#define TESSERA_COMMON_JSON_UTIL_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera {

inline constexpr int kMaxJsonDepth = 64;
inline constexpr size_t kMaxExcerptBytes = 64;
// config.json, tokenizer.json and friends of a model folder (a large
// vocabulary's tokenizer.json is ~10 MB).
inline constexpr size_t kMaxModelJsonBytes = 256 << 20;

// Parses `text` as one JSON value. InvalidArgument, naming `what`, when the
// text is over max_bytes, nests deeper than max_depth, or is not JSON.
absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, std::string_view what, size_t max_bytes,
                                         int max_depth = kMaxJsonDepth);

// `value` as an integer in [lo, hi]. InvalidArgument naming `what` when it is
// a float, a string, or out of range: nlohmann's get<int>() on a float out of
// the int range is undefined behaviour, so untrusted numbers go through here.
absl::StatusOr<int64_t> JsonInt(const nlohmann::json& value, std::string_view what, int64_t lo, int64_t hi);
// object[key] through JsonInt, or `fallback` when the key is absent or null.
absl::StatusOr<int64_t> JsonIntField(const nlohmann::json& object, const char* key, int64_t fallback, int64_t lo,
                                     int64_t hi);

// Reads and parses a JSON file; errors name the path.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, size_t max_bytes = kMaxModelJsonBytes);

// The deepest nesting of arrays and objects in `text`, scanning at most until
// it exceeds `stop_at` (strings and escapes are skipped correctly).
int JsonNestingDepth(std::string_view text, int stop_at);

// "abc..." : at most max_bytes of text (cut at a UTF-8 boundary), with
// " (N bytes)" appended when it was cut. Safe to put in any error message.
std::string Excerpt(std::string_view text, size_t max_bytes = kMaxExcerptBytes);

// Excerpt of a parsed value's compact JSON form.
std::string JsonExcerpt(const nlohmann::json& value, size_t max_bytes = kMaxExcerptBytes);

}  // namespace tessera

#endif  // TESSERA_COMMON_JSON_UTIL_H_
