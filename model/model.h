// A loaded Llama-family model: config plus weights for the CPU backend. The
// decoder's linear layers are quantized while loading (see quantizer.h);
// embeddings, lm_head and norms stay fp32.
//
// Thread safety: immutable after LoadModel; shared read-only by engines.
#ifndef TESSERA_MODEL_MODEL_H_
#define TESSERA_MODEL_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/linear.h"
#include "model/linear_modules.h"
#include "model/model_config.h"
#include "model/quantizer.h"
#include "model/safetensors.h"

namespace tessera {

struct LinearWeights {
  int64_t out = 0;
  int64_t in = 0;
  WeightFormat format = WeightFormat::kF32;
  int32_t group_size = 0;          // kInt4
  std::vector<float> weight;       // kF32: [out, in]
  std::vector<uint8_t> qweight;    // kInt8: int8 [out, in]; kInt4: [out, ceil(in/2)]
  std::vector<float> scales;       // kInt8: [out]; kInt4: [out, ceil(in/group_size)]
  std::vector<float> bias;         // [out] or empty

  const void* data() const {
    return format == WeightFormat::kF32 ? static_cast<const void*>(weight.data()) : qweight.data();
  }
  int64_t bytes() const;
};

struct LayerWeights {
  std::vector<float> input_norm;           // [hidden]
  std::vector<float> post_attention_norm;  // [hidden]
  LinearWeights q_proj, k_proj, v_proj, o_proj;
  LinearWeights gate_proj, up_proj, down_proj;

  LinearWeights& linear(LinearModule m);
  const LinearWeights& linear(LinearModule m) const { return const_cast<LayerWeights*>(this)->linear(m); }
};

struct LoadOptions {
  QuantOptions quant{WeightFormat::kF32, 128};
  int num_threads = 0;  // for quantizing; 0: every core
};

// What loading cost, for logs and ServerInfo.
struct LoadStats {
  int64_t weight_bytes = 0;          // resident weights after loading
  int64_t largest_tensor_bytes = 0;  // largest tensor in the checkpoint, as stored
  int64_t peak_rss_bytes = 0;        // process peak RSS once loading finished
  double seconds = 0;
};

struct Model {
  std::string dir;
  std::string name;  // folder name
  ModelConfig config;
  DType checkpoint_dtype = DType::kF32;
  QuantOptions quant;
  bool prequantized = false;  // read from Tessera's quantized layout
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<float> final_norm;    // [hidden]
  std::vector<float> lm_head;       // [vocab, hidden]; empty when tied
  std::vector<LayerWeights> layers;
  std::vector<float> rope_inv_freq;  // [head_dim / 2]
  LoadStats stats;

  const float* lm_head_weight() const { return lm_head.empty() ? embed_tokens.data() : lm_head.data(); }
};

// Loads config.json and the safetensors weights of an HF folder, quantizing
// the linear layers tensor by tensor (row by row), so that peak memory is
// about the quantized model plus one tensor. Every failure names the file and
// the problem: missing folder or file, bad header, unknown dtype, a tensor
// missing or shaped unlike config.json.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir, const LoadOptions& options = {});

}  // namespace tessera

#endif  // TESSERA_MODEL_MODEL_H_
