#include "server/serving/serving_flags.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "server/serving/startup_adapters.h"
#include "kernels/supported_shapes.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "HF model folder (config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(int, threads, 0, "CPU threads for the engine; 0 uses every core");
ABSL_FLAG(int, max_batch_size, 8, "most requests decoded together in one step");
ABSL_FLAG(int, max_queue, 1024, "most requests waiting for admission; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_new_tokens_limit, 0, "largest max_new_tokens a request may ask; 0: the context length");
ABSL_FLAG(int64_t, kv_cache_tokens, 0, "KV cache capacity in tokens; 0: from --kv-cache-bytes");
ABSL_FLAG(int64_t, kv_cache_bytes, 0,
          "KV cache capacity in bytes, when --kv-cache-tokens is 0; 0: see --kv-cache-memory-fraction");
ABSL_FLAG(double, kv_cache_memory_fraction, 0.3,
          "KV cache capacity as this fraction of the memory available after loading the model, when "
          "--kv-cache-tokens and --kv-cache-bytes are 0 (never more than max_batch_size full contexts)");
ABSL_FLAG(int, kv_block_size, 16, "tokens per KV cache block");
ABSL_FLAG(int, max_step_tokens, 512, "tokens per engine step; longer prompts are prefilled in chunks");
ABSL_FLAG(
    int64_t, max_context, 0,
    "longest sequence served; 0: what the KV cache holds (RoPE-ID) or max_position_embeddings (plain RoPE)");
ABSL_FLAG(bool, allow_context_extension, false,
          "let a plain RoPE model serve past max_position_embeddings (quality degrades)");
ABSL_FLAG(std::string, quantize, "int4", "weight quantization of the linear layers: int4, int8 or none");
ABSL_FLAG(int64_t, quant_group_size, 128,
          "int4 group size along the input dimension; a positive multiple of 8");
ABSL_FLAG(
    std::vector<std::string>, adapter, {},
    "NAME=DIR of a peft adapter folder to serve as NAME; repeat the flag (or separate with commas) for more");
ABSL_FLAG(int, max_lora_rank, 64,
          "largest LoRA rank accepted: the adapter pool's Rmax (every slot holds a LoRA of this rank, and DiaBlo "
          "blocks of at most that size)");
ABSL_FLAG(std::optional<int>, max_adapter_rank, std::nullopt, "deprecated name of --max-lora-rank");
ABSL_FLAG(int, adapter_slots, 0,
          "adapter pool slots (adapters resident at once), start-up adapters included; 0: one per --adapter, "
          "plus as many uploaded ones as --adapter-cache-mb holds");
ABSL_FLAG(int64_t, max_adapter_mb, 1024, "largest adapter_model.safetensors accepted, in MiB");

namespace tessera {

absl::StatusOr<ServingOptions> ServingOptionsFromFlags() {
  ServingOptions so;
  so.model_dir = absl::GetFlag(FLAGS_model);
  so.num_threads = absl::GetFlag(FLAGS_threads);
  so.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  so.max_queue = absl::GetFlag(FLAGS_max_queue);
  so.max_new_tokens_limit = absl::GetFlag(FLAGS_max_new_tokens_limit);
  so.kv_cache_tokens = absl::GetFlag(FLAGS_kv_cache_tokens);
  so.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  so.kv_cache_memory_fraction = absl::GetFlag(FLAGS_kv_cache_memory_fraction);
  if (so.kv_cache_bytes < 0 || !(so.kv_cache_memory_fraction > 0) || so.kv_cache_memory_fraction > 0.95) {
    return absl::InvalidArgumentError(
        "--kv-cache-bytes must be >= 0 and --kv-cache-memory-fraction in (0, 0.95]");
  }
  so.kv_block_size = absl::GetFlag(FLAGS_kv_block_size);
  so.max_step_tokens = absl::GetFlag(FLAGS_max_step_tokens);
  so.max_context = absl::GetFlag(FLAGS_max_context);
  so.allow_context_extension = absl::GetFlag(FLAGS_allow_context_extension);
  absl::StatusOr<QuantOptions> quant =
      ParseQuantOptions(absl::GetFlag(FLAGS_quantize), absl::GetFlag(FLAGS_quant_group_size));
  if (!quant.ok()) return quant.status();
  so.quant = *quant;
  for (const std::string& spec : absl::GetFlag(FLAGS_adapter)) {
    absl::StatusOr<std::pair<std::string, std::string>> a = ParseAdapterSpec(spec);
    if (!a.ok()) return a.status();
    so.adapters.push_back(*a);
  }
  int max_rank = absl::GetFlag(FLAGS_max_lora_rank);
  if (const std::optional<int> old = absl::GetFlag(FLAGS_max_adapter_rank)) {
    spdlog::warn("--max-adapter-rank is deprecated; use --max-lora-rank");
    max_rank = *old;
  }
  if (max_rank < 1 || absl::GetFlag(FLAGS_max_adapter_mb) < 1) {
    return absl::InvalidArgumentError("--max-lora-rank and --max-adapter-mb must be positive");
  }
  if (max_rank > kMaxLoraRank) {
    return absl::InvalidArgumentError(absl::StrCat("--max-lora-rank ", max_rank, " is over ", kMaxLoraRank,
                                                   ", the largest rank the kernels support"));
  }
  if (absl::GetFlag(FLAGS_adapter_slots) < 0) {
    return absl::InvalidArgumentError("--adapter-slots must be >= 0 (0: sized from --adapter-cache-mb)");
  }
  so.adapter_limits.max_rank = max_rank;
  so.adapter_slots = absl::GetFlag(FLAGS_adapter_slots);
  so.adapter_limits.max_file_bytes = absl::GetFlag(FLAGS_max_adapter_mb) << 20;
  return so;
}

}  // namespace tessera
