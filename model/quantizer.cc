#include "model/quantizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace {

// torch.round semantics: nearest, ties to even (the default FP rounding mode).
inline float RoundHalfEven(float v) { return std::nearbyint(v); }

float SymmetricScale(const float* w, int64_t n, float qmax) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(w[i]));
  const float scale = m / qmax;
  return scale == 0.0f ? 1.0f : scale;
}

}  // namespace

absl::StatusOr<QuantOptions> ParseQuantOptions(const std::string& mode, int64_t group_size) {
  QuantOptions o;
  if (mode == "int4") {
    o.format = WeightFormat::kInt4;
  } else if (mode == "int8") {
    o.format = WeightFormat::kInt8;
  } else if (mode == "none") {
    o.format = WeightFormat::kF32;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --quantize value '", mode, "' (use int4, int8 or none)"));
  }
  if (group_size <= 0 || group_size % 8 != 0 || group_size > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--quant-group-size must be a positive multiple of 8 (e.g. 32, 64, 128), got ", group_size));
  }
  o.group_size = static_cast<int32_t>(group_size);
  return o;
}

std::string DescribeQuantization(const QuantOptions& o) {
  switch (o.format) {
    case WeightFormat::kF32: return "none";
    case WeightFormat::kInt8: return "int8 (per output channel)";
    case WeightFormat::kInt4: return absl::StrCat("int4 (group ", o.group_size, ")");
  }
  return "?";
}

void QuantizeRowInt8(const float* w, int64_t in, int8_t* q, float* scale) {
  const float s = SymmetricScale(w, in, 127.0f);
  for (int64_t i = 0; i < in; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(RoundHalfEven(w[i] / s), -127.0f, 127.0f));
  }
  *scale = s;
}

void QuantizeRowInt4(const float* w, int64_t in, int32_t group, uint8_t* packed, float* scales) {
  std::fill(packed, packed + (in + 1) / 2, 0);
  for (int64_t g = 0; g * group < in; ++g) {
    const int64_t begin = g * group;
    const int64_t end = std::min<int64_t>(in, begin + group);
    const float s = SymmetricScale(w + begin, end - begin, 7.0f);
    scales[g] = s;
    for (int64_t i = begin; i < end; ++i) {
      const int v = static_cast<int>(std::clamp(RoundHalfEven(w[i] / s), -8.0f, 7.0f));
      const uint8_t nibble = static_cast<uint8_t>(v & 0x0F);
      packed[i >> 1] |= (i & 1) ? static_cast<uint8_t>(nibble << 4) : nibble;
    }
  }
}

}  // namespace tessera
