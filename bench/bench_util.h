// Pieces shared by the benchmark tools in bench/.
#ifndef TESSERA_BENCH_BENCH_UTIL_H_
#define TESSERA_BENCH_BENCH_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "model/model.h"

namespace tessera {

// Median of v (mean of the middle two for an even count); v must be non-empty.
double Median(std::vector<double> v);

// Loads dir with --quantize-style options ("int4", "int8", "none").
absl::StatusOr<std::unique_ptr<Model>> LoadBenchModel(const std::string& dir, const std::string& quantize,
                                                      int64_t group_size);

// Writes DIR/adapter_config.json and DIR/adapter_model.safetensors: a random
// rank-r peft LoRA (alpha 2r) on every linear module of every layer, in
// dtype (F32 or BF16), as peft saves it; A and B normal with standard
// deviation a_std and b_std. seed varies the values.
absl::Status WriteRandomLora(const std::string& dir, const ModelConfig& config, int r, DType dtype,
                             uint32_t seed = 0, float a_std = 0.01f, float b_std = 0.01f);

// Writes doc (indented) to path and prints "wrote PATH".
absl::Status WriteJsonReport(const nlohmann::ordered_json& doc, const std::string& path);
// WriteJsonReport when path is set, else doc on stdout; 0 or, after printing
// the error, 1: a benchmark's exit code.
int EmitJsonReport(const nlohmann::ordered_json& doc, const std::string& path);

}  // namespace tessera

#endif  // TESSERA_BENCH_BENCH_UTIL_H_
