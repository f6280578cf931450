// tessera-bench-decode: CPU decode throughput of the engine for each model,
// quantization and thread count asked for. Prints a table and writes JSON.
// Not a test: figures depend on the machine; compare ratios within one run.
//
//   tessera-bench-decode --models DIR[,DIR] --quantize none,int8,int4 --threads 1,2
//                        [--prompt-tokens 16] [--decode-tokens 64] [--runs 5] [--output FILE]
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "common/flags.h"
#include "common/version.h"
#include "kernels/cpu/vector_isa.h"
#include "nlohmann/json.hpp"
#include "server/engine/engine.h"
#include "server/scheduler/kv_block_manager.h"
#include "server/engine/sampler.h"
#include "model/model.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::vector<std::string>, models, {}, "model folders, comma-separated");
ABSL_FLAG(std::vector<std::string>, quantize, std::vector<std::string>({"none", "int8", "int4"}), "modes");
ABSL_FLAG(std::vector<std::string>, threads, std::vector<std::string>({"1", "2"}), "thread counts");
ABSL_FLAG(int64_t, quant_group_size, 128, "int4 group size");
ABSL_FLAG(int, prompt_tokens, 16, "prompt length before decoding");
ABSL_FLAG(int, decode_tokens, 64, "decode steps timed per run");
ABSL_FLAG(int, runs, 5, "runs per configuration; the median is reported");
ABSL_FLAG(std::string, output, "decode_bench.json", "JSON output file");

namespace tessera {
namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tessera-bench-decode: %s\n", msg.c_str());
  return 1;
}

int64_t Parameters(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = int64_t{c.num_attention_heads} * c.head_dim,
                kv = int64_t{c.num_key_value_heads} * c.head_dim, i = c.intermediate_size;
  const int64_t layer = h * q * 2 + h * kv * 2 + 3 * h * i + 2 * h;
  return c.num_hidden_layers * layer + int64_t{c.vocab_size} * h * (c.tie_word_embeddings ? 1 : 2) + h;
}

// Prefills prompt_tokens, then times decode_tokens greedy steps.
absl::StatusOr<double> DecodeTokensPerSecond(Engine& engine, int prompt_tokens, int decode_tokens) {
  const ModelConfig& c = engine.model().config;
  const int32_t total = prompt_tokens + decode_tokens;
  KvBlockManager kv(engine.plan_limits().num_blocks, engine.plan_limits().block_size);
  if (absl::Status s = kv.Append(1, kv.BlocksFor(total)); !s.ok()) return s;
  const std::vector<int32_t> blocks(kv.Table(1).begin(), kv.Table(1).end());
  std::vector<float> logits;
  BatchPlan plan;
  for (int i = 0; i < prompt_tokens; ++i) {
    plan.token_ids.push_back(5 + i % 200);
    plan.positions.push_back(i);
  }
  plan.sequences.push_back({0, prompt_tokens, 0, blocks, true});
  if (absl::Status s = engine.Step(plan, &logits); !s.ok()) return s;
  int32_t kv_len = prompt_tokens;
  const absl::Time start = absl::Now();
  for (int step = 0; step < decode_tokens; ++step) {
    BatchPlan d;
    d.token_ids = {ArgMax(logits.data(), c.vocab_size)};
    d.positions = {kv_len};
    d.sequences.push_back({0, 1, kv_len, blocks, true});
    if (absl::Status s = engine.Step(d, &logits); !s.ok()) return s;
    ++kv_len;
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  return decode_tokens / secs;
}

int Run() {
  spdlog::set_level(spdlog::level::warn);
  const auto models = absl::GetFlag(FLAGS_models);
  if (models.empty()) return Fail("--models DIR[,DIR...] is required");
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens),
            decode_tokens = absl::GetFlag(FLAGS_decode_tokens);
  const int runs = std::max(1, absl::GetFlag(FLAGS_runs));
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  std::printf("%-28s %-6s %7s %9s %12s %14s\n", "model", "quant", "threads", "params", "weights MiB",
              "decode tok/s");
  for (const std::string& dir : models) {
    for (const std::string& mode : absl::GetFlag(FLAGS_quantize)) {
      absl::StatusOr<QuantOptions> quant = ParseQuantOptions(mode, absl::GetFlag(FLAGS_quant_group_size));
      if (!quant.ok()) return Fail(std::string(quant.status().message()));
      LoadOptions lo;
      lo.quant = *quant;
      absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(dir, lo);
      if (!model.ok()) return Fail(std::string(model.status().message()));
      if (prompt_tokens + decode_tokens > (*model)->config.max_position_embeddings) {
        return Fail(absl::StrCat(dir, ": prompt + decode tokens exceed the context length"));
      }
      for (const std::string& t : absl::GetFlag(FLAGS_threads)) {
        int threads = 0;
        if (!absl::SimpleAtoi(t, &threads) || threads < 1)
          return Fail(absl::StrCat("bad thread count '", t, "'"));
        EngineOptions eo;
        eo.num_threads = threads;
        eo.kv_cache_tokens = prompt_tokens + decode_tokens;
        eo.max_step_tokens = std::max(1, prompt_tokens);
        auto engine = Engine::Create(**model, eo);
        if (!engine.ok()) return Fail(std::string(engine.status().message()));
        if (auto warm = DecodeTokensPerSecond(**engine, prompt_tokens, std::min(8, decode_tokens));
            !warm.ok()) {
          return Fail(std::string(warm.status().message()));
        }
        std::vector<double> samples;
        for (int r = 0; r < runs; ++r) {
          absl::StatusOr<double> tps = DecodeTokensPerSecond(**engine, prompt_tokens, decode_tokens);
          if (!tps.ok()) return Fail(std::string(tps.status().message()));
          samples.push_back(*tps);
        }
        const double median = Median(samples);
        std::printf("%-28s %-6s %7d %8.1fM %12.1f %14.1f\n", (*model)->name.c_str(), mode.c_str(), threads,
                    Parameters((*model)->config) / 1e6, (*model)->stats.weight_bytes / 1048576.0, median);
        std::fflush(stdout);
        results.push_back({{"model", (*model)->name},
                           {"model_dir", dir},
                           {"parameters", Parameters((*model)->config)},
                           {"quantization", DescribeQuantization(*quant)},
                           {"threads", threads},
                           {"weight_bytes", (*model)->stats.weight_bytes},
                           {"prompt_tokens", prompt_tokens},
                           {"decode_tokens", decode_tokens},
                           {"decode_tokens_per_s_median", median},
                           {"decode_tokens_per_s_runs", samples}});
      }
    }
  }
  nlohmann::ordered_json doc = {{"benchmark", "cpu_decode"},
                                {"version", Version()},
                                {"cpu_isa", ActiveIsa().name},
                                {"hardware_threads", std::thread::hardware_concurrency()},
                                {"batch_size", 1},
                                {"results", results}};
  if (absl::Status s = WriteJsonReport(doc, absl::GetFlag(FLAGS_output)); !s.ok())
    return Fail(std::string(s.message()));
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "CPU decode throughput.\n  tessera-bench-decode --models DIR[,DIR] [--quantize none,int8,int4] "
      "[--threads 1,2] [--output FILE]");
  return tessera::Run();
}
