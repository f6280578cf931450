// A loaded adapter: per decoder linear layer, the weights of one adapter kind,
// converted to fp32 and validated against the base model.
//
//   LoRA (and SEAL-released LoRA): y += scale · B (A x),  A [r, in], B [out, r]
//   DiaBlo: y += concat_i(pad(x)[i·d1 : (i+1)·d1] · block[i])[:out],
//           block [n, d1, d2]
//   RoAd:   y'[i] = c[i]·y[i] + s[i]·y[partner(i)], after the base bias;
//           partner pairs element j with j + group/2 inside each group of
//           `group` outputs, s carries the sign (−sin for the first half).
//
// Thread safety: immutable after LoadAdapter; shared by any number of threads.
#ifndef TESSERA_ADAPTERS_ADAPTER_H_
#define TESSERA_ADAPTERS_ADAPTER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/plan_view.h"
#include "model/linear_modules.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace tessera {

enum class AdapterKind { kLora, kRoad, kDiablo };
const char* AdapterKindName(AdapterKind kind);  // "lora", "road", "diablo"
// The op family that applies an adapter of this kind.
inline AdapterOp AdapterOpOf(AdapterKind kind) {
  switch (kind) {
    case AdapterKind::kLora: return AdapterOp::kLowRank;
    case AdapterKind::kDiablo: return AdapterOp::kBlockDiagonal;
    case AdapterKind::kRoad: return AdapterOp::kRotation;
  }
  return AdapterOp::kLowRank;
}

// adapter_config.json files are a few KiB; larger ones are refused.
inline constexpr int64_t kMaxAdapterConfigBytes = 256 << 10;

struct LoraModule {
  int32_t rank = 0;
  float scale = 1.0f;    // alpha / r, or alpha / sqrt(r) with use_rslora
  std::vector<float> a;  // [rank, in]
  std::vector<float> b;  // [out, rank]
};

struct DiabloModule {
  int32_t blocks = 0;        // n
  int32_t d1 = 0;            // input block size
  int32_t d2 = 0;            // output block size
  std::vector<float> block;  // [n, d1, d2]
};

struct RoadModule {
  int32_t group = 0;
  std::vector<float> c;  // [out]
  std::vector<float> s;  // [out], signed
};

// What the adapter does to one linear layer (at most one member is set,
// matching the adapter's kind; none when the layer is not targeted).
struct AdapterModule {
  std::optional<LoraModule> lora;
  std::optional<DiabloModule> diablo;
  std::optional<RoadModule> road;
  bool targeted() const { return lora || diablo || road; }
};

struct AdapterLimits {
  // The adapter pool's Rmax (--max-lora-rank), never over kMaxLoraRank
  // (kernels/supported_shapes.h). It also caps DiaBlo: a module's blocks may
  // hold at most AdapterSlotFloats(in, out, max_rank) values.
  int32_t max_rank = 64;
  int64_t max_file_bytes = int64_t{1} << 30;
};

// The fp32 values one adapter-pool slot holds for a linear layer of shape
// [out, in]: a rank-max_rank LoRA (A [r, in] and B [out, r]). RoAd (2·out)
// always fits; DiaBlo fits when its blocks are no larger.
inline int64_t AdapterSlotFloats(int64_t in, int64_t out, int32_t max_rank) {
  return int64_t{max_rank} * (in + out);
}

struct Adapter {
  std::string name;
  std::string dir;
  AdapterKind kind = AdapterKind::kLora;
  std::string watermark;  // SEAL tag from adapter_config.json, if any
  int32_t num_layers = 0;
  // [num_layers * kNumLinearModules]; empty in the metadata copies that the
  // adapter cache keeps once the weights are in a pool slot.
  std::vector<AdapterModule> modules;
  int64_t parameter_bytes = 0;

  const AdapterModule& module(int32_t layer, LinearModule m) const {
    return modules[static_cast<size_t>(layer) * kNumLinearModules + static_cast<int>(m)];
  }
  // "lora", "seal" (LoRA with a watermark tag), "road" or "diablo".
  std::string DisplayKind() const;
  // This adapter without its weights (modules empty).
  std::shared_ptr<const Adapter> Metadata() const;
};

// One tensor of an adapter as it lies in its open safetensors file.
struct AdapterTensorSource {
  const TensorView* view = nullptr;
  std::string name;  // its key in the file, for errors
};

// One targeted linear layer as it lies in the file: names, shapes and the
// config are checked, the values not yet (ReadAdapterTensor checks them for
// finiteness as it copies them out). The fields of the adapter's kind are set.
struct AdapterModuleSource {
  int32_t layer = 0;
  LinearModule module = LinearModule::kQ;
  // LoRA: A [rank, in], B [out, rank].
  int32_t rank = 0;
  float scale = 1.0f;
  AdapterTensorSource a, b;
  // DiaBlo: block [blocks, d1, d2].
  int32_t blocks = 0, d1 = 0, d2 = 0;
  AdapterTensorSource block;
  // RoAd (c and s are computed from them): theta and alpha [n].
  int32_t group = 0;
  int32_t road_variant = 1;  // 1, 2 or 4
  AdapterTensorSource theta, alpha;
};

// An opened, checked adapter whose values have not been read: what a load
// copies into a pool slot (AdapterPool::WriteFrom) or into heap vectors
// (LoadAdapter). `adapter` is the metadata (modules empty, parameter_bytes
// set); the views point into `file`.
struct AdapterSource {
  std::shared_ptr<Adapter> adapter;
  std::unique_ptr<SafetensorsFile> file;
  std::vector<AdapterModuleSource> modules;
};

// OpenAdapter: every check of LoadAdapter that the header and the config
// allow; no tensor value is read.
absl::StatusOr<AdapterSource> OpenAdapter(const std::string& name, const std::string& dir, const ModelConfig& base,
                                          const AdapterLimits& limits);

// t's values as fp32 into out[numel]; InvalidArgument naming the adapter, the
// tensor and the index at the first NaN or Inf.
absl::Status ReadAdapterTensor(const std::string& adapter_name, const AdapterTensorSource& t, float* out);
// A RoAd module's c and s, each [out], from its theta and alpha.
absl::Status ReadRoadCoefficients(const std::string& adapter_name, const AdapterModuleSource& m, int64_t out,
                                  float* c, float* s);

// Reads DIR/adapter_config.json and DIR/adapter_model.safetensors and checks
// them against the base config. Errors name the adapter, the module and the
// shapes, with a hint: unknown module, shape mismatch, unsupported dtype or
// peft option, NaN/Inf, rank over the limit, file too large, bad header.
absl::StatusOr<std::shared_ptr<const Adapter>> LoadAdapter(const std::string& name, const std::string& dir,
                                                           const ModelConfig& base,
                                                           const AdapterLimits& limits);
// The same checks on the two files' bytes in memory (no folder).
absl::StatusOr<std::shared_ptr<const Adapter>> LoadAdapterFromBytes(const std::string& name,
                                                                    std::string_view config_json,
                                                                    std::string weights, const ModelConfig& base,
                                                                    const AdapterLimits& limits);

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_H_
