#include "model/linear_modules.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera {

const char* LinearModuleName(LinearModule m) {
  static const char* kNames[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                 "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return kNames[static_cast<int>(m)];
}

std::string LinearModulePrefix(int32_t layer, LinearModule m) {
  return absl::StrCat("model.layers.", layer, ".", LinearModuleName(m));
}

std::pair<int64_t, int64_t> BaseLinearShape(const ModelConfig& c, LinearModule m) {
  const int64_t h = c.hidden_size, q = int64_t{c.num_attention_heads} * c.head_dim,
                kv = int64_t{c.num_key_value_heads} * c.head_dim, i = c.intermediate_size;
  switch (m) {
    case LinearModule::kQ: return {q, h};
    case LinearModule::kK:
    case LinearModule::kV: return {kv, h};
    case LinearModule::kO: return {h, q};
    case LinearModule::kGate:
    case LinearModule::kUp: return {i, h};
    case LinearModule::kDown: return {h, i};
  }
  return {0, 0};
}

bool BaseLinearHasBias(const ModelConfig& c, LinearModule m) {
  return c.attention_bias && (m == LinearModule::kQ || m == LinearModule::kK || m == LinearModule::kV);
}

std::optional<LinearModulePath> ParseLinearModulePath(std::string_view path, int32_t num_layers) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (!path.starts_with(kPrefix)) return std::nullopt;
  path.remove_prefix(kPrefix.size());
  const size_t dot = path.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 9) return std::nullopt;  // at most 9 digits
  const std::string_view digits = path.substr(0, dot);
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;  // one spelling per layer
  int64_t layer = 0;
  if (!absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &layer) || layer < 0 ||
      layer >= num_layers) {
    return std::nullopt;
  }
  const std::string_view module = path.substr(dot + 1);
  for (const LinearModule m : kLinearModules) {
    if (module == LinearModuleName(m)) return LinearModulePath{static_cast<int32_t>(layer), m};
  }
  return std::nullopt;
}

}  // namespace tessera
