// tessera-bench-long: CPU prefill and decode throughput of one sequence at
// long contexts (default 1k, 4k and 16k tokens) on a RoPE-ID model.
//
// Method: the KV cache of the first C - chunk positions is allocated but not
// computed (its values do not change the cost of attention), then
//   prefill tokens/s = chunk / time of one prefill step of `chunk` tokens at
//                      positions C - chunk .. C - 1;
//   decode tokens/s  = 1 / median time of a decode step at position C.
// This measures the marginal cost at context C without spending an hour
// prefilling 16k tokens on two cores. Writes JSON; not a test.
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

ABSL_FLAG(std::string, model, "",
          "model folder (a RoPE-ID model, e.g. tessera-genmodel --rope-id-fraction 0.5)");
ABSL_FLAG(std::string, quantize, "int4", "int4, int8 or none");
ABSL_FLAG(int64_t, quant_group_size, 128, "int4 group size");
ABSL_FLAG(std::vector<std::string>, contexts, std::vector<std::string>({"1024", "4096", "16384"}),
          "contexts");
ABSL_FLAG(int, chunk, 128, "prefill chunk timed at each context");
ABSL_FLAG(int, decode_steps, 5, "decode steps timed at each context (median)");
ABSL_FLAG(int, threads, 2, "engine threads");
ABSL_FLAG(std::string, output, "long_context_bench.json", "JSON output file");

namespace tessera {
namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tessera-bench-long: %s\n", msg.c_str());
  return 1;
}

int Run() {
  spdlog::set_level(spdlog::level::warn);
  auto model = LoadBenchModel(absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_quantize),
                              absl::GetFlag(FLAGS_quant_group_size));
  if (!model.ok()) return Fail(std::string(model.status().message()));
  const QuantOptions* quant = &(*model)->quant;
  if (!(*model)->config.rope_id) std::fprintf(stderr, "tessera-bench-long: note: not a RoPE-ID model\n");
  const int chunk = absl::GetFlag(FLAGS_chunk);
  std::vector<int64_t> contexts;
  for (const std::string& c : absl::GetFlag(FLAGS_contexts)) {
    int64_t v;
    if (!absl::SimpleAtoi(c, &v) || v <= chunk) return Fail(absl::StrCat("bad context '", c, "'"));
    contexts.push_back(v);
  }
  const int64_t max_context = *std::max_element(contexts.begin(), contexts.end());
  EngineOptions eo;
  eo.num_threads = absl::GetFlag(FLAGS_threads);
  eo.kv_cache_tokens = max_context + 64;
  eo.max_step_tokens = chunk;
  auto engine = Engine::Create(**model, eo);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));
  const int64_t kv_bytes_per_token = int64_t{2} * (*model)->config.num_hidden_layers *
                                     (*model)->config.num_key_value_heads * (*model)->config.head_dim * 4;

  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  std::printf("%9s %16s %15s %10s\n", "context", "prefill tok/s", "decode tok/s", "KV MiB");
  for (int64_t context : contexts) {
    KvBlockManager kv((*engine)->plan_limits().num_blocks, (*engine)->plan_limits().block_size);
    if (absl::Status s = kv.Append(1, kv.BlocksFor(context + 8)); !s.ok()) return Fail(std::string(s.message()));
    const std::vector<int32_t> blocks(kv.Table(1).begin(), kv.Table(1).end());
    std::vector<float> logits;
    BatchPlan prefill;
    const int32_t start = static_cast<int32_t>(context - chunk);
    for (int i = 0; i < chunk; ++i) {
      prefill.token_ids.push_back(10 + i % 400);
      prefill.positions.push_back(start + i);
    }
    prefill.sequences.push_back({0, chunk, start, blocks, true});
    absl::Time t0 = absl::Now();
    if (absl::Status s = (*engine)->Step(prefill, &logits); !s.ok()) return Fail(std::string(s.message()));
    const double prefill_tps = chunk / absl::ToDoubleSeconds(absl::Now() - t0);
    std::vector<double> decode_s;
    for (int step = 0; step < absl::GetFlag(FLAGS_decode_steps); ++step) {
      BatchPlan d;
      d.token_ids = {ArgMax(logits.data(), (*model)->config.vocab_size)};
      d.positions = {static_cast<int32_t>(context + step)};
      d.sequences.push_back({0, 1, static_cast<int32_t>(context + step), blocks, true});
      t0 = absl::Now();
      if (absl::Status s = (*engine)->Step(d, &logits); !s.ok()) return Fail(std::string(s.message()));
      decode_s.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
    }
    const double decode_tps = 1.0 / Median(decode_s);
    const double kv_mib = context * kv_bytes_per_token / 1048576.0;
    std::printf("%9lld %16.1f %15.2f %10.1f\n", static_cast<long long>(context), prefill_tps, decode_tps,
                kv_mib);
    std::fflush(stdout);
    results.push_back({{"context", context},
                       {"prefill_chunk", chunk},
                       {"prefill_tokens_per_s", prefill_tps},
                       {"decode_tokens_per_s_median", decode_tps},
                       {"kv_cache_mib", kv_mib}});
  }
  nlohmann::ordered_json doc = {{"benchmark", "cpu_long_context"},
                                {"version", Version()},
                                {"model", (*model)->name},
                                {"rope_id", (*model)->config.rope_id.has_value()},
                                {"quantization", DescribeQuantization(*quant)},
                                {"threads", eo.num_threads},
                                {"cpu_isa", ActiveIsa().name},
                                {"method",
                                 "KV of the first C-chunk positions allocated, not computed; prefill = one "
                                 "chunk at positions C-chunk..C-1; decode = median step at position C"},
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
      "CPU long-context throughput.\n"
      "  tessera-bench-long --model DIR [--contexts 1024,4096,16384] [--chunk 128]");
  return tessera::Run();
}
