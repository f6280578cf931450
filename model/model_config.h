// The subset of an HF config.json that a Llama-family decoder needs.
#ifndef TESSERA_MODEL_MODEL_CONFIG_H_
#define TESSERA_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

// RoPE-ID: only the first rotated_dims channels of each head are rotated
// (rotate-half pairing j <-> j + rotated_dims/2 inside them), with the highest
// frequencies of the standard ladder, inv_freq[i] = theta^(-2i/head_dim) for
// i < rotated_dims/2, unless config.json lists inv_freq explicitly. The other
// channels carry no position, so the model serves past its training length.
struct RopeId {
  double rotated_fraction = 0;
  int32_t rotated_dims = 0;
  std::vector<double> inv_freq;  // explicit ladder, or empty
};

struct ModelConfig {
  std::string architecture;  // LlamaForCausalLM | MistralForCausalLM | Qwen2ForCausalLM
  std::string model_type;
  std::string torch_dtype = "float32";
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_hidden_layers = 0;
  int32_t num_attention_heads = 0;
  int32_t num_key_value_heads = 0;
  int32_t head_dim = 0;
  int32_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  std::optional<RopeId> rope_id;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (always on for Qwen2)
  std::vector<int32_t> bos_token_ids;
  std::vector<int32_t> eos_token_ids;

  // Parses and validates; errors name the file and the key.
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);
  static absl::StatusOr<ModelConfig> FromJsonText(const std::string& text, const std::string& source);
};

// Channels each head rotates: head_dim, or rotated_dims under RoPE-ID.
int32_t RopeRotaryDims(const ModelConfig& config);

// inv_freq [RopeRotaryDims / 2] for the config's RoPE (scaling applied, or
// RoPE-ID's ladder). Computed in fp64 and rounded once to fp32, as HF stores it.
std::vector<float> ComputeRopeInvFreq(const ModelConfig& config);

}  // namespace tessera

#endif  // TESSERA_MODEL_MODEL_CONFIG_H_
