// The seven linear layers of a Llama decoder layer: their names in HF and
// peft checkpoints, their shapes, and the one parser of module paths. Model
// loading, pre-quantized checkpoints, adapters, watermark credentials and
// the model generator all name and size linears through here.
#ifndef TESSERA_MODEL_LINEAR_MODULES_H_
#define TESSERA_MODEL_LINEAR_MODULES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "model/model_config.h"

namespace tessera {

// In execution order.
enum class LinearModule { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLinearModules = 7;
inline constexpr LinearModule kLinearModules[kNumLinearModules] = {
    LinearModule::kQ, LinearModule::kK, LinearModule::kV, LinearModule::kO,
    LinearModule::kGate, LinearModule::kUp, LinearModule::kDown};

// "self_attn.q_proj", "self_attn.k_proj", ..., "mlp.down_proj".
const char* LinearModuleName(LinearModule m);
// "model.layers.N." + LinearModuleName(m): the tensor prefix in a checkpoint.
std::string LinearModulePrefix(int32_t layer, LinearModule m);
// [out, in] of the base model's layer.
std::pair<int64_t, int64_t> BaseLinearShape(const ModelConfig& base, LinearModule m);
// q, k and v carry a bias when the config says attention_bias (Qwen2).
bool BaseLinearHasBias(const ModelConfig& base, LinearModule m);

struct LinearModulePath {
  int32_t layer = 0;
  LinearModule module = LinearModule::kQ;
};
// Parses exactly "model.layers.N.<module>" (N decimal without leading zeros,
// at most 9 digits, below num_layers; <module> one of LinearModuleName's).
// nullopt for anything else; never throws.
std::optional<LinearModulePath> ParseLinearModulePath(std::string_view path, int32_t num_layers);

}  // namespace tessera

#endif  // TESSERA_MODEL_LINEAR_MODULES_H_
