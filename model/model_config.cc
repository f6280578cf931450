#include "model/model_config.h"

#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_util.h"
#include "kernels/supported_shapes.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

using nlohmann::json;

constexpr const char* kSupportedArchitectures[] = {"LlamaForCausalLM", "MistralForCausalLM",
                                                   "Qwen2ForCausalLM"};

std::vector<int32_t> IdList(const json& v) {
  std::vector<int32_t> ids;
  if (absl::StatusOr<int64_t> id = JsonInt(v, "token id", 0, INT32_MAX); id.ok()) ids.push_back(static_cast<int32_t>(*id));
  if (v.is_array()) {
    for (const auto& e : v) {
      if (absl::StatusOr<int64_t> id = JsonInt(e, "token id", 0, INT32_MAX); id.ok()) {
        ids.push_back(static_cast<int32_t>(*id));
      }
    }
  }
  return ids;
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open (is this an HF model folder?)"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return FromJsonText(ss.str(), path);
}

absl::StatusOr<ModelConfig> ModelConfig::FromJsonText(const std::string& text, const std::string& source) {
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  absl::StatusOr<json> parsed = ParseJson(text, "config.json", kMaxModelJsonBytes);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  const json& j = *parsed;
  if (!j.is_object()) return fail("not a JSON object");
  ModelConfig c;
  try {
    if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty()) {
      return fail("missing 'architectures'");
    }
    c.architecture = j["architectures"][0].get<std::string>();
    bool supported = false;
    for (const char* a : kSupportedArchitectures) supported |= c.architecture == a;
    if (!supported) {
      return fail(absl::StrCat("architecture '", c.architecture,
                               "' is not supported; Tessera serves Llama-family decoders: ",
                               absl::StrJoin(kSupportedArchitectures, ", ")));
    }
    c.model_type = j.value("model_type", "");
    if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) {
      c.torch_dtype = j["torch_dtype"].get<std::string>();
    } else if (j.contains("dtype") && j["dtype"].is_string()) {
      c.torch_dtype = j["dtype"].get<std::string>();
    }
    auto require_int = [&](const char* key, int32_t* out) -> absl::Status {
      if (!j.contains(key) || !JsonInt(j[key], key, 1, INT32_MAX).ok()) {
        return fail(absl::StrCat("'", key, "' must be a positive integer"));
      }
      *out = static_cast<int32_t>(j[key].get<int64_t>());
      return absl::OkStatus();
    };
    for (auto [key, out] : {std::pair{"vocab_size", &c.vocab_size},
                            {"hidden_size", &c.hidden_size},
                            {"intermediate_size", &c.intermediate_size},
                            {"num_hidden_layers", &c.num_hidden_layers},
                            {"num_attention_heads", &c.num_attention_heads},
                            {"max_position_embeddings", &c.max_position_embeddings}}) {
      if (absl::Status s = require_int(key, out); !s.ok()) return s;
    }
    absl::StatusOr<int64_t> kv_heads = JsonIntField(j, "num_key_value_heads", c.num_attention_heads, 1, INT32_MAX);
    if (!kv_heads.ok()) return fail(std::string(kv_heads.status().message()));
    c.num_key_value_heads = static_cast<int32_t>(*kv_heads);
    absl::StatusOr<int64_t> head_dim = JsonIntField(j, "head_dim", c.hidden_size / c.num_attention_heads, 1, 4096);
    if (!head_dim.ok()) return fail(std::string(head_dim.status().message()));
    c.head_dim = static_cast<int32_t>(*head_dim);
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
    c.tie_word_embeddings = j.value("tie_word_embeddings", false);
    // Qwen2 always has q/k/v biases; its configs do not say so.
    c.attention_bias = c.architecture == "Qwen2ForCausalLM" || j.value("attention_bias", false);
    if (j.value("mlp_bias", false)) return fail("'mlp_bias': true is not supported");
    const std::string act = j.value("hidden_act", "silu");
    if (act != "silu") {
      return fail(absl::StrCat("hidden_act '", act, "' is not supported (only silu)"));
    }
    if (j.contains("bos_token_id")) c.bos_token_ids = IdList(j["bos_token_id"]);
    if (j.contains("eos_token_id")) c.eos_token_ids = IdList(j["eos_token_id"]);

    // RoPE: transformers 5 writes rope_parameters, transformers 4 rope_theta +
    // rope_scaling. Either is accepted; rope_parameters wins when both exist.
    c.rope_theta = j.value("rope_theta", 10000.0);
    const json* scaling = nullptr;
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
      scaling = &j["rope_parameters"];
      c.rope_theta = scaling->value("rope_theta", c.rope_theta);
    } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
      scaling = &j["rope_scaling"];
    }
    if (scaling) {
      std::string type = scaling->value("rope_type", scaling->value("type", "default"));
      c.rope_scaling.type = type;
      if (type == "linear" || type == "llama3") {
        c.rope_scaling.factor = scaling->value("factor", 1.0);
        if (c.rope_scaling.factor <= 0) return fail("rope scaling 'factor' must be positive");
      }
      if (type == "llama3") {
        c.rope_scaling.low_freq_factor = scaling->value("low_freq_factor", 1.0);
        c.rope_scaling.high_freq_factor = scaling->value("high_freq_factor", 4.0);
        c.rope_scaling.original_max_position_embeddings =
            JsonIntField(*scaling, "original_max_position_embeddings", 8192, 1, INT32_MAX).value_or(-1);
        if (c.rope_scaling.original_max_position_embeddings < 1) {
          return fail("llama3 rope scaling 'original_max_position_embeddings' must be a positive integer");
        }
        if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor) {
          return fail("llama3 rope scaling needs high_freq_factor > low_freq_factor");
        }
      } else if (type != "default" && type != "linear") {
        return fail(
            absl::StrCat("rope scaling type '", type, "' is not supported (default, linear, llama3)"));
      }
    }
    if (c.rope_theta <= 0) return fail("'rope_theta' must be positive");
    if (j.contains("rope_id") && !j["rope_id"].is_null()) {
      const json& r = j["rope_id"];
      if (!r.is_object()) return fail("'rope_id' must be an object {rotated_fraction, rotated_dims?, inv_freq?}");
      if (c.rope_scaling.type != "default") {
        return fail(absl::StrCat("'rope_id' cannot be combined with rope scaling '", c.rope_scaling.type, "'"));
      }
      RopeId id;
      id.rotated_fraction = r.value("rotated_fraction", 0.0);
      if (!(id.rotated_fraction > 0 && id.rotated_fraction <= 1)) {
        return fail(absl::StrCat("rope_id.rotated_fraction must be in (0, 1], got ", JsonExcerpt(r.value("rotated_fraction", json()))));
      }
      const int32_t head_dim = j.contains("head_dim") && !j["head_dim"].is_null()
                                   ? static_cast<int32_t>(JsonIntField(j, "head_dim", 0, 1, 4096).value_or(0))
                                   : c.hidden_size / c.num_attention_heads;
      const int32_t derived = 2 * static_cast<int32_t>(std::lround(id.rotated_fraction * head_dim / 2));
      id.rotated_dims = r.contains("rotated_dims")
                            ? static_cast<int32_t>(JsonIntField(r, "rotated_dims", -1, 0, 4096).value_or(-1))
                            : derived;
      if (id.rotated_dims < 2 || id.rotated_dims % 2 != 0 || id.rotated_dims > head_dim) {
        return fail(absl::StrCat("rope_id.rotated_dims must be even and in [2, head_dim=", head_dim, "], got ",
                                 id.rotated_dims));
      }
      if (r.contains("rotated_dims") && id.rotated_dims != derived) {
        return fail(absl::StrCat("rope_id.rotated_dims ", id.rotated_dims, " disagrees with rotated_fraction ",
                                 id.rotated_fraction, " x head_dim ", head_dim, " = ", derived));
      }
      if (r.contains("inv_freq") && !r["inv_freq"].is_null()) {
        id.inv_freq = r["inv_freq"].get<std::vector<double>>();
        if (static_cast<int32_t>(id.inv_freq.size()) != id.rotated_dims / 2) {
          return fail(absl::StrCat("rope_id.inv_freq has ", id.inv_freq.size(), " entries, rotated_dims/2 = ",
                                   id.rotated_dims / 2, " expected"));
        }
        for (double f : id.inv_freq) {
          if (!(std::isfinite(f) && f > 0)) return fail("rope_id.inv_freq entries must be positive and finite");
        }
      }
      c.rope_id = std::move(id);
    }

    // Mistral's sliding window changes the math only beyond the window; the
    // context limit is capped there instead of refusing the model.
    if (j.contains("sliding_window") && j["sliding_window"].is_number_integer() &&
        j.value("use_sliding_window", c.architecture == "MistralForCausalLM")) {
      const int32_t window = static_cast<int32_t>(JsonIntField(j, "sliding_window", 0, 0, INT32_MAX).value_or(0));
      if (window > 0 && window < c.max_position_embeddings) c.max_position_embeddings = window;
    }
  } catch (const json::exception& e) {
    return fail(absl::StrCat("unexpected value type: ", e.what()));
  }
  if (absl::Status s = CheckAttentionShapes(c.num_attention_heads, c.num_key_value_heads, c.head_dim); !s.ok()) {
    return fail(std::string(s.message()));
  }
  return c;
}

int32_t RopeRotaryDims(const ModelConfig& c) { return c.rope_id ? c.rope_id->rotated_dims : c.head_dim; }

std::vector<float> ComputeRopeInvFreq(const ModelConfig& c) {
  const int half = RopeRotaryDims(c) / 2;
  std::vector<float> inv(half);
  if (c.rope_id && !c.rope_id->inv_freq.empty()) {
    for (int i = 0; i < half; ++i) inv[i] = static_cast<float>(c.rope_id->inv_freq[i]);
    return inv;
  }
  const RopeScaling& rs = c.rope_scaling;
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, (2.0 * i) / c.head_dim);
    if (rs.type == "linear") {
      f /= rs.factor;
    } else if (rs.type == "llama3") {
      const double old_ctx = static_cast<double>(rs.original_max_position_embeddings);
      const double low_wavelen = old_ctx / rs.low_freq_factor;
      const double high_wavelen = old_ctx / rs.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv[i] = static_cast<float>(f);
  }
  return inv;
}

}  // namespace tessera
