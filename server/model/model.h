// A loaded Llama-family model: config plus fp32 weights for the CPU backend.
//
// Thread safety: immutable after LoadModel; shared read-only by engines.
#ifndef TESSERA_SERVER_MODEL_MODEL_H_
#define TESSERA_SERVER_MODEL_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/model_config.h"
#include "server/model/safetensors.h"

namespace tessera {

struct LinearWeights {
  int64_t out = 0;
  int64_t in = 0;
  std::vector<float> weight;  // [out, in]
  std::vector<float> bias;    // [out] or empty
};

struct LayerWeights {
  std::vector<float> input_norm;           // [hidden]
  std::vector<float> post_attention_norm;  // [hidden]
  LinearWeights q_proj, k_proj, v_proj, o_proj;
  LinearWeights gate_proj, up_proj, down_proj;
};

struct Model {
  std::string dir;
  std::string name;  // folder name
  ModelConfig config;
  DType checkpoint_dtype = DType::kF32;
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<float> final_norm;    // [hidden]
  std::vector<float> lm_head;       // [vocab, hidden]; empty when tied
  std::vector<LayerWeights> layers;
  std::vector<float> rope_inv_freq;  // [head_dim / 2]

  const float* lm_head_weight() const { return lm_head.empty() ? embed_tokens.data() : lm_head.data(); }
};

// Loads config.json and the safetensors weights of an HF folder. Every failure
// names the file and the problem: missing folder or file, bad header, unknown
// dtype, a tensor missing or shaped unlike config.json.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir);

}  // namespace tessera

#endif  // TESSERA_SERVER_MODEL_MODEL_H_
