// The sampling defaults of a model folder's generation_config.json, used for
// the fields a request leaves unset. HF's rules: without `do_sample: true`
// decoding is greedy; with it, temperature, top_k and top_p default to 1.0,
// 50 and 1.0 when the file does not give them.
#ifndef TESSERA_MODEL_GENERATION_CONFIG_H_
#define TESSERA_MODEL_GENERATION_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tessera {

struct GenerationDefaults {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: all tokens
  float top_p = 1.0f;
  // "generation_config.json", "generation_config.json (do_sample false)" or
  // "built-in (greedy)".
  std::string source = "built-in (greedy)";
};

// Reads DIR/generation_config.json when it exists. InvalidArgument, naming
// the file and the key, for a value out of range (temperature < 0, top_k < 0,
// top_p outside (0, 1]) or a file that is not JSON.
absl::StatusOr<GenerationDefaults> ReadGenerationDefaults(const std::string& model_dir);
// The same on the file's text.
absl::StatusOr<GenerationDefaults> ParseGenerationDefaults(std::string_view text, const std::string& source);

}  // namespace tessera

#endif  // TESSERA_MODEL_GENERATION_CONFIG_H_
