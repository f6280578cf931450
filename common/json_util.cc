#include "common/json_util.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace tessera {

int JsonNestingDepth(std::string_view text, int stop_at) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) deepest = depth;
        if (deepest > stop_at) return deepest;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, std::string_view what, size_t max_bytes,
                                         int max_depth) {
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " is ", text.size(), " bytes, over the limit of ", max_bytes, " bytes"));
  }
  if (JsonNestingDepth(text, max_depth) > max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " nests arrays or objects more than ", max_depth, " levels deep"));
  }
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Find the failing byte without the library's message, which quotes the
    // last token read (of any length).
    size_t at = text.size();
    try {
      (void)nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::parse_error& e) {
      at = e.byte;
    } catch (...) {
    }
    const size_t from = at > 0 ? at - 1 : 0;
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": not valid JSON (near byte ", at, ": '",
                                                   Excerpt(text.substr(std::min(from, text.size())), 24),
                                                   "')"));
  }
  return j;
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, size_t max_bytes) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", st.st_size, " bytes, over the limit of ", max_bytes, " bytes"));
  }
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseJson(*text, path, max_bytes);
}

absl::StatusOr<int64_t> JsonInt(const nlohmann::json& value, std::string_view what, int64_t lo, int64_t hi) {
  bool ok = value.is_number_integer();
  int64_t v = 0;
  if (ok && value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    ok = u <= static_cast<uint64_t>(INT64_MAX);
    v = static_cast<int64_t>(u);
  } else if (ok) {
    v = value.get<int64_t>();
  }
  if (!ok || v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(what), "' must be an integer in [", lo, ", ",
                                                   hi, "], got ", JsonExcerpt(value)));
  }
  return v;
}

absl::StatusOr<int64_t> JsonIntField(const nlohmann::json& object, const char* key, int64_t fallback, int64_t lo,
                                     int64_t hi) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  return JsonInt(*it, key, lo, hi);
}

std::string Excerpt(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  // Step back over UTF-8 continuation bytes so the excerpt stays well formed.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(std::string(text.substr(0, cut)), "... (", text.size(), " bytes)");
}

std::string JsonExcerpt(const nlohmann::json& value, size_t max_bytes) {
  return Excerpt(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max_bytes);
}

}  // namespace tessera
