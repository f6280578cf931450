#include "model/generation_config.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json_util.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

constexpr size_t kMaxGenerationConfigBytes = 1 << 20;

}  // namespace

absl::StatusOr<GenerationDefaults> ParseGenerationDefaults(std::string_view text, const std::string& source) {
  auto fail = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(source, ": ", what)); };
  absl::StatusOr<nlohmann::json> parsed = ParseJson(text, "generation_config.json", kMaxGenerationConfigBytes);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  const nlohmann::json& j = *parsed;
  if (!j.is_object()) return fail("not a JSON object");
  GenerationDefaults d;
  const nlohmann::json& sample = j.contains("do_sample") ? j["do_sample"] : nlohmann::json(false);
  if (!sample.is_boolean()) return fail(absl::StrCat("'do_sample' must be true or false, got ", JsonExcerpt(sample)));
  if (!sample.get<bool>()) {
    d.source = "generation_config.json (do_sample false)";
    return d;
  }
  d.source = "generation_config.json";
  auto number = [&](const char* key, double fallback, double lo, double hi, bool lo_open,
                    double* out) -> absl::Status {
    if (!j.contains(key) || j[key].is_null()) {
      *out = fallback;
      return absl::OkStatus();
    }
    const nlohmann::json& v = j[key];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() > hi ||
        (lo_open ? v.get<double>() <= lo : v.get<double>() < lo)) {
      return fail(absl::StrCat("'", key, "' must be a number in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ",
                               JsonExcerpt(v)));
    }
    *out = v.get<double>();
    return absl::OkStatus();
  };
  double temperature = 1, top_p = 1;
  if (absl::Status s = number("temperature", 1.0, 0.0, 100.0, false, &temperature); !s.ok()) return s;
  if (absl::Status s = number("top_p", 1.0, 0.0, 1.0, true, &top_p); !s.ok()) return s;
  absl::StatusOr<int64_t> top_k = JsonIntField(j, "top_k", 50, 0, INT32_MAX);
  if (!top_k.ok()) return fail(std::string(top_k.status().message()));
  d.temperature = static_cast<float>(temperature);
  d.top_p = static_cast<float>(top_p);
  d.top_k = static_cast<int32_t>(*top_k);
  return d;
}

absl::StatusOr<GenerationDefaults> ReadGenerationDefaults(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return GenerationDefaults{};
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxGenerationConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", size, " bytes, over the limit of ",
                                                   kMaxGenerationConfigBytes));
  }
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseGenerationDefaults(*text, path);
}

}  // namespace tessera
