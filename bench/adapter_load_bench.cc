// tessera-bench-adapter-load: how long a cold adapter takes to become
// resident, i.e. what the resident cache's loader does on a miss: hash the
// stored files (sha256 check) and load + validate + convert the LoRA. Random
// peft-format LoRA adapters (all 7 linear modules of every layer) are written
// for Llama shapes (TinyLlama 1.1B and Llama-3 8B dims) at several ranks;
// each is loaded `--repeats` times and the median is reported. Writes JSON.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "adapters/adapter.h"
#include "bench/bench_util.h"
#include "common/flags.h"
#include "common/sha256.h"
#include "model/model_config.h"
#include "model/safetensors.h"

ABSL_FLAG(std::vector<std::string>, shapes, std::vector<std::string>({"1.1b", "8b"}),
          "model shapes: 1.1b, 8b");
ABSL_FLAG(std::vector<std::string>, ranks, std::vector<std::string>({"8", "16", "64"}), "LoRA ranks");
ABSL_FLAG(int, repeats, 5, "loads per adapter (median reported)");
ABSL_FLAG(std::string, work_dir, "/tmp/tessera-adapter-load-bench", "where the adapters are written");
ABSL_FLAG(std::string, out, "", "write the JSON report here");

namespace tessera {
namespace {

namespace fs = std::filesystem;

struct Shape {
  int hidden, intermediate, layers, heads, kv_heads;
};

std::string ConfigJson(const Shape& s) {
  return absl::StrCat(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": )",
                      s.hidden, R"(, "intermediate_size": )", s.intermediate, R"(, "num_hidden_layers": )",
                      s.layers, R"(, "num_attention_heads": )", s.heads, R"(, "num_key_value_heads": )",
                      s.kv_heads,
                      R"(, "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5})");
}

// Writes a random rank-r LoRA on every linear module, fp32 as peft saves it.
absl::Status WriteAdapter(const std::string& dir, const ModelConfig& c, int r) {
  fs::create_directories(dir);
  std::ofstream(dir + "/adapter_config.json") << absl::StrCat(
      R"({"peft_type": "LORA", "r": )", r, R"(, "lora_alpha": )", 2 * r,
      R"(, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "bias": "none"})");
  std::mt19937 rng(r);
  std::normal_distribution<float> normal(0, 0.01f);
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
        std::vector<float> v(shape[0] * shape[1]);
        for (float& x : v) x = normal(rng);
        t.data.resize(v.size() * sizeof(float));
        std::memcpy(t.data.data(), v.data(), t.data.size());
        tensors.push_back(std::move(t));
      }
    }
  }
  return WriteSafetensors(dir + "/adapter_model.safetensors", tensors);
}

int Run() {
  const std::map<std::string, Shape> shapes = {{"1.1b", {2048, 5632, 22, 32, 4}},
                                               {"8b", {4096, 14336, 32, 32, 8}}};
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const std::string& name : absl::GetFlag(FLAGS_shapes)) {
    auto it = shapes.find(name);
    if (it == shapes.end()) {
      std::fprintf(stderr, "unknown shape %s (1.1b, 8b)\n", name.c_str());
      return 1;
    }
    absl::StatusOr<ModelConfig> c = ModelConfig::FromJsonText(ConfigJson(it->second), name);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", std::string(c.status().message()).c_str());
      return 1;
    }
    for (const std::string& rank_text : absl::GetFlag(FLAGS_ranks)) {
      int r = 0;
      if (!absl::SimpleAtoi(rank_text, &r) || r < 1 || r > 4096) {
        std::fprintf(stderr, "--ranks: '%s' is not a rank (1 to 4096)\n", rank_text.c_str());
        return 1;
      }
      const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_work_dir), "/", name, "-r", r);
      if (absl::Status s = WriteAdapter(dir, *c, r); !s.ok()) {
        std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
        return 1;
      }
      const int64_t bytes = static_cast<int64_t>(fs::file_size(dir + "/adapter_model.safetensors"));
      std::vector<double> hash_ms, load_ms;
      AdapterLimits limits;
      limits.max_rank = 1024;
      limits.max_file_bytes = int64_t{8} << 30;
      for (int i = 0; i < absl::GetFlag(FLAGS_repeats); ++i) {
        absl::Time t0 = absl::Now();
        Sha256 sha;
        for (const char* f : {"/adapter_config.json", "/adapter_model.safetensors"}) {
          if (absl::StatusOr<int64_t> n = HashFileInto(dir + f, &sha); !n.ok()) {
            std::fprintf(stderr, "%s\n", std::string(n.status().message()).c_str());
            return 1;
          }
        }
        (void)sha.HexDigest();
        absl::Time t1 = absl::Now();
        absl::StatusOr<std::shared_ptr<const Adapter>> a = LoadAdapter(name, dir, *c, limits);
        absl::Time t2 = absl::Now();
        if (!a.ok()) {
          std::fprintf(stderr, "%s\n", std::string(a.status().message()).c_str());
          return 1;
        }
        hash_ms.push_back(absl::ToDoubleMilliseconds(t1 - t0));
        load_ms.push_back(absl::ToDoubleMilliseconds(t2 - t1));
      }
      const double total = Median(hash_ms) + Median(load_ms);
      results.push_back({{"shape", name},
                         {"rank", r},
                         {"file_mib", bytes / 1048576.0},
                         {"sha256_ms_median", Median(hash_ms)},
                         {"load_ms_median", Median(load_ms)},
                         {"cold_load_ms", total},
                         {"mib_per_s", bytes / 1048576.0 / (total / 1000.0)}});
      std::printf("%-5s rank %-3d %8.1f MiB  sha256 %7.1f ms  load %7.1f ms  -> %7.1f ms\n", name.c_str(), r,
                  bytes / 1048576.0, Median(hash_ms), Median(load_ms), total);
      fs::remove_all(dir);
    }
  }
  nlohmann::ordered_json report = {
      {"benchmark", "adapter_cold_load"}, {"repeats", absl::GetFlag(FLAGS_repeats)}, {"results", results}};
  if (!absl::GetFlag(FLAGS_out).empty()) {
    if (absl::Status s = WriteJsonReport(report, absl::GetFlag(FLAGS_out)); !s.ok()) return 1;
  } else {
    std::printf("%s\n", report.dump(2).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(argc, argv,
                                      "Measures cold adapter loads (sha256 check + load and convert).\n"
                                      "  tessera-bench-adapter-load [--shapes 1.1b,8b] [--ranks 8,16,64]");
  return tessera::Run();
}
