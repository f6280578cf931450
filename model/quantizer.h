// Weight-only quantization of the decoder's linear layers, as recorded in the
// fixtures' expected.json ("quantized"):
//   int8: symmetric per output channel. scale[o] = max_i |W[o,i]| / 127 (fp32
//         division); q = clamp(round_half_even(W / scale), -127, 127).
//   int4: symmetric per group of group_size consecutive input columns (the
//         last group of a row may be partial). scale[o,g] = max |W| / 7;
//         q = clamp(round_half_even(W / scale), -8, 7).
//   A zero scale is replaced by 1. Dequantized weight: q * scale (fp32).
// Embeddings, lm_head and norms are never quantized.
#ifndef TESSERA_MODEL_QUANTIZER_H_
#define TESSERA_MODEL_QUANTIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/linear.h"

namespace tessera {

struct QuantOptions {
  WeightFormat format = WeightFormat::kInt4;
  int32_t group_size = 128;  // int4 only
};

// Parses --quantize (int4 | int8 | none) and --quant-group-size; errors say
// which values are accepted.
absl::StatusOr<QuantOptions> ParseQuantOptions(const std::string& mode, int64_t group_size);

// "none", "int8 (per output channel)", "int4 (group 128)".
std::string DescribeQuantization(const QuantOptions& options);

// One row w[in] -> q[in], *scale.
void QuantizeRowInt8(const float* w, int64_t in, int8_t* q, float* scale);
// One row w[in] -> packed[ceil(in/2)] (even column in the low nibble),
// scales[ceil(in/group)].
void QuantizeRowInt4(const float* w, int64_t in, int32_t group, uint8_t* packed, float* scales);

}  // namespace tessera

#endif  // TESSERA_MODEL_QUANTIZER_H_
