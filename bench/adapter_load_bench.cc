// tessera-bench-adapter-load: how long a cold adapter takes to become
// resident, i.e. what the resident cache's loader does on a miss: check the
// stored files' sizes, open the adapter (config and header checks) and copy
// it straight into an adapter-pool slot (dtype conversion and finiteness
// check in the same pass), with 1 and with --threads threads. For comparison
// it also times the heap path (sha256 of the files, LoadAdapter into vectors,
// AdapterPool::Write), which is what a miss cost before. Random peft-format
// LoRA adapters (all 7 linear modules of every layer) are written for Llama
// shapes (TinyLlama 1.1B and Llama-3 8B dims) at several ranks, in fp32 and
// bf16; each is loaded `--repeats` times (page cache warm, as right after an
// upload) and the median is reported. Writes JSON.
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
#include "adapters/adapter_pool.h"
#include "bench/bench_util.h"
#include "common/flags.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "kernels/supported_shapes.h"
#include "model/model_config.h"
#include "model/safetensors.h"

ABSL_FLAG(std::vector<std::string>, shapes, std::vector<std::string>({"1.1b", "8b"}),
          "model shapes: 1.1b, 8b");
ABSL_FLAG(std::vector<std::string>, ranks, std::vector<std::string>({"8", "16", "64"}), "LoRA ranks");
ABSL_FLAG(int, repeats, 5, "loads per adapter (median reported)");
ABSL_FLAG(int, threads, 2, "threads of the multi-threaded slot copy");
ABSL_FLAG(std::vector<std::string>, dtypes, std::vector<std::string>({"f32", "bf16"}), "adapter file dtypes");
ABSL_FLAG(bool, heap_path, true, "also time the heap path (sha256 + LoadAdapter + AdapterPool::Write)");
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
      if (!absl::SimpleAtoi(rank_text, &r) || r < 1 || r > kMaxLoraRank) {
        std::fprintf(stderr, "--ranks: '%s' is not a rank (1 to %d)\n", rank_text.c_str(), kMaxLoraRank);
        return 1;
      }
      absl::StatusOr<std::unique_ptr<AdapterPool>> pool = AdapterPool::Create(*c, {1, r});
      if (!pool.ok()) {
        std::fprintf(stderr, "%s\n", std::string(pool.status().message()).c_str());
        return 1;
      }
      for (const std::string& dtype_name : absl::GetFlag(FLAGS_dtypes)) {
        if (dtype_name != "f32" && dtype_name != "bf16") {
          std::fprintf(stderr, "--dtypes: '%s' is not f32 or bf16\n", dtype_name.c_str());
          return 1;
        }
        const DType dtype = dtype_name == "bf16" ? DType::kBF16 : DType::kF32;
        const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_work_dir), "/", name, "-r", r, "-", dtype_name);
        if (absl::Status s = WriteRandomLora(dir, *c, r, dtype); !s.ok()) {
          std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
          return 1;
        }
        const int64_t bytes = static_cast<int64_t>(fs::file_size(dir + "/adapter_model.safetensors"));
        AdapterLimits limits;
        limits.max_rank = r;
        limits.max_file_bytes = int64_t{8} << 30;
        auto fail = [](const absl::Status& s) {
          std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
          return 1;
        };
        // A miss: sizes, open, copy into the slot.
        auto miss = [&](int threads) -> absl::StatusOr<double> {
          const absl::Time t0 = absl::Now();
          std::error_code ec;
          for (const char* f : {"/adapter_config.json", "/adapter_model.safetensors"}) {
            (void)fs::file_size(dir + f, ec);
          }
          TESSERA_ASSIGN_OR_RETURN(AdapterSource source, OpenAdapter(name, dir, *c, limits));
          TESSERA_RETURN_IF_ERROR((*pool)->WriteFrom(0, source, threads));
          return absl::ToDoubleMilliseconds(absl::Now() - t0);
        };
        std::vector<double> miss1_ms, missn_ms, hash_ms, heap_ms;
        for (int i = 0; i < absl::GetFlag(FLAGS_repeats); ++i) {
          absl::StatusOr<double> one = miss(1);
          if (!one.ok()) return fail(one.status());
          miss1_ms.push_back(*one);
          absl::StatusOr<double> many = miss(absl::GetFlag(FLAGS_threads));
          if (!many.ok()) return fail(many.status());
          missn_ms.push_back(*many);
          if (!absl::GetFlag(FLAGS_heap_path)) continue;
          absl::Time t0 = absl::Now();
          Sha256 sha;
          for (const char* f : {"/adapter_config.json", "/adapter_model.safetensors"}) {
            if (absl::StatusOr<int64_t> n = HashFileInto(dir + f, &sha); !n.ok()) return fail(n.status());
          }
          (void)sha.HexDigest();
          absl::Time t1 = absl::Now();
          absl::StatusOr<std::shared_ptr<const Adapter>> a = LoadAdapter(name, dir, *c, limits);
          if (!a.ok()) return fail(a.status());
          if (absl::Status s = (*pool)->Write(0, **a); !s.ok()) return fail(s);
          absl::Time t2 = absl::Now();
          hash_ms.push_back(absl::ToDoubleMilliseconds(t1 - t0));
          heap_ms.push_back(absl::ToDoubleMilliseconds(t2 - t1));
        }
        const double mib = bytes / 1048576.0;
        nlohmann::ordered_json row = {{"shape", name},
                                      {"rank", r},
                                      {"dtype", dtype_name},
                                      {"file_mib", mib},
                                      {"miss_ms_median_1_thread", Median(miss1_ms)},
                                      {"miss_ms_median", Median(missn_ms)},
                                      {"threads", absl::GetFlag(FLAGS_threads)},
                                      {"miss_gb_per_s", bytes / 1e9 / (Median(missn_ms) / 1000.0)}};
        std::printf("%-5s rank %-3d %-4s %8.1f MiB  miss %7.1f ms (1 thread %7.1f ms, %5.2f GB/s)", name.c_str(), r,
                    dtype_name.c_str(), mib, Median(missn_ms), Median(miss1_ms),
                    bytes / 1e9 / (Median(missn_ms) / 1000.0));
        if (!hash_ms.empty()) {
          row["heap_path_sha256_ms_median"] = Median(hash_ms);
          row["heap_path_load_ms_median"] = Median(heap_ms);
          row["heap_path_ms"] = Median(hash_ms) + Median(heap_ms);
          std::printf("  heap path %7.1f ms (sha256 %6.1f)", Median(hash_ms) + Median(heap_ms), Median(hash_ms));
        }
        std::printf("\n");
        results.push_back(std::move(row));
        fs::remove_all(dir);
      }
    }
  }
  nlohmann::ordered_json report = {
      {"benchmark", "adapter_cold_load"}, {"repeats", absl::GetFlag(FLAGS_repeats)}, {"results", results}};
  return EmitJsonReport(report, absl::GetFlag(FLAGS_out));
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(argc, argv,
                                      "Measures cold adapter loads: a cache miss's copy into a pool slot, and the\n"
                                      "heap path (sha256 + load + convert + copy) it replaced.\n"
                                      "  tessera-bench-adapter-load [--shapes 1.1b,8b] [--ranks 8,16,64] [--dtypes f32,bf16]");
  return tessera::Run();
}
