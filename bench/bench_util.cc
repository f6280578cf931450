#include "bench/bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "model/linear_modules.h"
#include "model/safetensors.h"

namespace tessera {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

absl::StatusOr<std::unique_ptr<Model>> LoadBenchModel(const std::string& dir, const std::string& quantize,
                                                      int64_t group_size) {
  absl::StatusOr<QuantOptions> quant = ParseQuantOptions(quantize, group_size);
  if (!quant.ok()) return quant.status();
  LoadOptions lo;
  lo.quant = *quant;
  return LoadModel(dir, lo);
}

absl::Status WriteJsonReport(const nlohmann::ordered_json& doc, const std::string& path) {
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  std::printf("wrote %s\n", path.c_str());
  return absl::OkStatus();
}

int EmitJsonReport(const nlohmann::ordered_json& doc, const std::string& path) {
  if (path.empty()) {
    std::printf("%s\n", doc.dump(2).c_str());
    return 0;
  }
  if (absl::Status s = WriteJsonReport(doc, path); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

absl::Status WriteRandomLora(const std::string& dir, const ModelConfig& c, int r, DType dtype, uint32_t seed,
                             float a_std, float b_std) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/adapter_config.json") << absl::StrCat(
      R"({"peft_type": "LORA", "r": )", r, R"(, "lora_alpha": )", 2 * r,
      R"(, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "bias": "none"})");
  std::mt19937 rng(static_cast<uint32_t>(r) + seed * 7919u);
  std::normal_distribution<float> normal_a(0, a_std), normal_b(0, b_std);
  std::vector<TensorToWrite> tensors;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      const auto [out, in] = BaseLinearShape(c, static_cast<LinearModule>(m));
      for (const auto& [ab, shape] :
           {std::pair<std::string, std::vector<int64_t>>{"A", {r, in}}, {"B", {out, r}}}) {
        TensorToWrite t;
        t.name = absl::StrCat("base_model.model.model.layers.", l, ".",
                              LinearModuleName(static_cast<LinearModule>(m)), ".lora_", ab, ".weight");
        t.shape = shape;
        t.dtype = dtype;
        std::vector<float> v(shape[0] * shape[1]);
        for (float& x : v) x = ab == "A" ? normal_a(rng) : normal_b(rng);
        if (dtype == DType::kBF16) {
          t.data.resize(v.size() * 2);
          for (size_t i = 0; i < v.size(); ++i) {
            const uint16_t b = FloatToBf16(v[i]);
            std::memcpy(t.data.data() + 2 * i, &b, 2);
          }
        } else {
          t.data.resize(v.size() * sizeof(float));
          std::memcpy(t.data.data(), v.data(), t.data.size());
        }
        tensors.push_back(std::move(t));
      }
    }
  }
  return WriteSafetensors(dir + "/adapter_model.safetensors", tensors);
}

}  // namespace tessera
