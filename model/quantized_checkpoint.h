// Tessera's pre-quantized checkpoint layout, written once by tessera-quantize
// so that start-up does not quantize again.
//
// A folder like an HF one (config.json, tokenizer files, model.safetensors)
// plus tessera_quantization.json:
//   {"format": "tessera-quantized", "format_version": 1,
//    "quantization": "int4" | "int8", "group_size": 128, "source_dtype": "bfloat16"}
// In model.safetensors each decoder linear layer P is stored as
//   P.qweight  I8 [out, in] (int8) or U8 [out, ceil(in/2)] (int4, packed as in
//              kernels/linear.h), P.scales F32 [out] or [out, ceil(in/group)],
//   P.bias     F32 [out] where the architecture has one;
// embeddings, norms and lm_head are F32.
#ifndef TESSERA_MODEL_QUANTIZED_CHECKPOINT_H_
#define TESSERA_MODEL_QUANTIZED_CHECKPOINT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/quantizer.h"

namespace tessera {

struct Model;

inline constexpr char kQuantizedMarkerFile[] = "tessera_quantization.json";

struct QuantizedMarker {
  QuantOptions quant;
  std::string source_dtype;
};

// The marker of a pre-quantized folder; nullopt for a plain HF folder.
absl::StatusOr<std::optional<QuantizedMarker>> ReadQuantizedMarker(const std::string& dir);

// Writes a quantized model (int8 or int4) to out_dir in the layout above,
// copying config.json and the tokenizer files from model.dir. The folder is
// assembled as out_dir + ".partial" and renamed when complete, so a failure
// never leaves a folder that looks loadable. out_dir must not exist.
absl::Status WriteQuantizedCheckpoint(const Model& model, const std::string& out_dir);

}  // namespace tessera

#endif  // TESSERA_MODEL_QUANTIZED_CHECKPOINT_H_
