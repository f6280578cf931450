// tessera-bench-adapters: CPU decode step time for a batch of 16 sequences
// with 0, 1, 4 and 16 distinct adapters of each kind (LoRA, RoAd, DiaBlo),
// reported as a ratio to the step without adapters. Adapters are random and
// built in memory. Prints a table and writes JSON. Not a test.
//
//   tessera-bench-adapters --model DIR [--quantize int4] [--lora-rank 16] [--diablo-blocks 64]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "adapters/adapter_pool.h"
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

ABSL_FLAG(std::string, model, "", "model folder");
ABSL_FLAG(std::string, quantize, "int4", "base quantization: int4, int8 or none");
ABSL_FLAG(int64_t, quant_group_size, 128, "int4 group size");
ABSL_FLAG(int, threads, 2, "engine threads");
ABSL_FLAG(int, batch, 16, "sequences decoded together");
ABSL_FLAG(int, lora_rank, 16, "rank of the random LoRA adapters");
ABSL_FLAG(int, road_group, 64, "RoAd group size");
ABSL_FLAG(int, diablo_blocks, 64, "DiaBlo num_blocks");
ABSL_FLAG(int, steps, 20, "timed decode steps per configuration; the median is reported");
ABSL_FLAG(std::string, output, "adapter_bench.json", "JSON output file");

namespace tessera {
namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tessera-bench-adapters: %s\n", msg.c_str());
  return 1;
}

std::vector<float> Random(Rng& rng, int64_t n, double scale) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>((2 * rng.Uniform() - 1) * scale);
  return v;
}

std::shared_ptr<const Adapter> RandomAdapter(const std::string& name, AdapterKind kind, const ModelConfig& c,
                                             Rng& rng) {
  auto a = std::make_shared<Adapter>();
  a->name = name;
  a->kind = kind;
  a->num_layers = c.num_hidden_layers;
  a->modules.resize(static_cast<size_t>(c.num_hidden_layers) * kNumLinearModules);
  const int64_t h = c.hidden_size, q = int64_t{c.num_attention_heads} * c.head_dim,
                kv = int64_t{c.num_key_value_heads} * c.head_dim, inter = c.intermediate_size;
  const std::pair<int64_t, int64_t> shapes[] = {{q, h},     {kv, h},    {kv, h},   {h, q},
                                                {inter, h}, {inter, h}, {h, inter}};
  for (int32_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      const auto [out, in] = shapes[m];
      AdapterModule& mod = a->modules[static_cast<size_t>(l) * kNumLinearModules + m];
      if (kind == AdapterKind::kLora) {
        const int r = absl::GetFlag(FLAGS_lora_rank);
        mod.lora =
            LoraModule{r, 2.0f, Random(rng, r * in, 1 / std::sqrt(double(in))), Random(rng, out * r, 0.01)};
      } else if (kind == AdapterKind::kRoad) {
        const int g = absl::GetFlag(FLAGS_road_group);
        if (out % g != 0) continue;
        mod.road = RoadModule{g, Random(rng, out, 1.0), Random(rng, out, 0.1)};
      } else {
        const int64_t nb = absl::GetFlag(FLAGS_diablo_blocks);
        const int64_t d1 = (in + nb - 1) / nb, d2 = (out + nb - 1) / nb;
        const int64_t n = std::max((in + d1 - 1) / d1, (out + d2 - 1) / d2);
        mod.diablo = DiabloModule{static_cast<int32_t>(n), static_cast<int32_t>(d1), static_cast<int32_t>(d2),
                                  Random(rng, n * d1 * d2, 0.01)};
      }
    }
  }
  return a;
}

int Run() {
  spdlog::set_level(spdlog::level::warn);
  auto model = LoadBenchModel(absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_quantize),
                              absl::GetFlag(FLAGS_quant_group_size));
  if (!model.ok()) return Fail(std::string(model.status().message()));
  const QuantOptions* quant = &(*model)->quant;
  const ModelConfig& c = (*model)->config;
  const int batch = absl::GetFlag(FLAGS_batch);
  const int32_t prompt = 16, steps = absl::GetFlag(FLAGS_steps);

  // Slot k * 16 + i holds adapter i of kind k.
  auto pool = AdapterPool::Create(c, {3 * 16, absl::GetFlag(FLAGS_lora_rank)});
  if (!pool.ok()) return Fail(std::string(pool.status().message()));
  Rng rng(7);
  const AdapterKind kinds[] = {AdapterKind::kLora, AdapterKind::kRoad, AdapterKind::kDiablo};
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 16; ++i) {
      const auto a = RandomAdapter(absl::StrCat(AdapterKindName(kinds[k]), i), kinds[k], c, rng);
      if (absl::Status s = (*pool)->Write(k * 16 + i, *a); !s.ok()) return Fail(std::string(s.message()));
    }
  }
  EngineOptions eo;
  eo.num_threads = absl::GetFlag(FLAGS_threads);
  eo.kv_cache_tokens = int64_t{batch} * ((prompt + steps + 1 + 15) / 16 * 16);  // whole blocks per sequence
  eo.max_step_tokens = batch * prompt;  // the prefill step
  eo.max_seqs = batch;
  eo.adapter_pool = pool->get();
  auto engine = Engine::Create(**model, eo);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));

  // Times `steps` decode steps of the whole batch; adapters[i] is the slot of
  // sequence i (-1 for none). Sequences are ordered by slot, as the
  // scheduler orders them.
  auto time_steps = [&](std::vector<int32_t> slots) -> absl::StatusOr<double> {
    std::sort(slots.begin(), slots.end());
    std::vector<std::vector<int32_t>> blocks;
    KvBlockManager kv((*engine)->plan_limits().num_blocks, (*engine)->plan_limits().block_size);
    for (int i = 0; i < batch; ++i) {
      if (absl::Status s = kv.Append(i, kv.BlocksFor(prompt + steps + 1)); !s.ok()) return s;
      blocks.emplace_back(kv.Table(i).begin(), kv.Table(i).end());
    }
    auto plan_for = [&](int32_t kv_len, int32_t len) {
      BatchPlan p;
      for (int i = 0; i < batch; ++i) {
        p.sequences.push_back({p.num_tokens(), len, kv_len, blocks[i], true});
        for (int t = 0; t < len; ++t) {
          p.token_ids.push_back(10 + (i * 7 + t) % 400);
          p.positions.push_back(kv_len + t);
        }
        if (slots[i] >= 0) {
          if (!p.adapter_segments.empty() && p.adapter_segments.back().slot == slots[i]) {
            p.adapter_segments.back().row_count += len;
          } else {
            p.adapter_segments.push_back({p.sequences.back().query_begin, len, slots[i]});
          }
        }
      }
      return p;
    };
    std::vector<float> logits;
    if (absl::Status s = (*engine)->Step(plan_for(0, prompt), &logits); !s.ok()) return s;
    std::vector<double> ms;
    for (int32_t step = 0; step < steps; ++step) {
      BatchPlan p = plan_for(prompt + step, 1);
      const absl::Time start = absl::Now();
      if (absl::Status s = (*engine)->Step(p, &logits); !s.ok()) return s;
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
    return Median(ms);
  };

  auto base = time_steps(std::vector<int32_t>(batch, -1));
  if (!base.ok()) return Fail(std::string(base.status().message()));
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  std::printf("%-8s %9s %12s %8s\n", "kind", "distinct", "step ms", "ratio");
  std::printf("%-8s %9d %12.3f %8.3f\n", "none", 0, *base, 1.0);
  results.push_back(
      {{"kind", "none"}, {"distinct_adapters", 0}, {"step_ms_median", *base}, {"ratio_to_base", 1.0}});
  for (int k = 0; k < 3; ++k) {
    for (int distinct : {1, 4, 16}) {
      std::vector<int32_t> slots(batch);
      for (int i = 0; i < batch; ++i) slots[i] = k * 16 + (i % distinct);
      auto t = time_steps(slots);
      if (!t.ok()) return Fail(std::string(t.status().message()));
      std::printf("%-8s %9d %12.3f %8.3f\n", AdapterKindName(kinds[k]), distinct, *t, *t / *base);
      std::fflush(stdout);
      results.push_back({{"kind", AdapterKindName(kinds[k])},
                         {"distinct_adapters", distinct},
                         {"step_ms_median", *t},
                         {"ratio_to_base", *t / *base}});
    }
  }
  nlohmann::ordered_json doc = {{"benchmark", "cpu_adapter_decode_step"},
                                {"version", Version()},
                                {"model", (*model)->name},
                                {"quantization", DescribeQuantization(*quant)},
                                {"batch", batch},
                                {"threads", eo.num_threads},
                                {"lora_rank", absl::GetFlag(FLAGS_lora_rank)},
                                {"road_group", absl::GetFlag(FLAGS_road_group)},
                                {"diablo_blocks", absl::GetFlag(FLAGS_diablo_blocks)},
                                {"cpu_isa", ActiveIsa().name},
                                {"results", results}};
  if (absl::Status s = WriteJsonReport(doc, absl::GetFlag(FLAGS_output)); !s.ok())
    return Fail(std::string(s.message()));
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(argc, argv,
                                      "CPU decode step time with mixed adapters.\n"
                                      "  tessera-bench-adapters --model DIR [--quantize int4] [--threads 2]");
  return tessera::Run();
}
