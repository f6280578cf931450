#include "server/serving/serving_stack.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "kernels/cuda/device_query.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace tessera {

std::vector<int32_t> CollectEosIds(const Model& model, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids = model.config.eos_token_ids;
  const std::string gen = (std::filesystem::path(model.dir) / "generation_config.json").string();
  if (std::filesystem::exists(gen)) {
    absl::StatusOr<nlohmann::json> parsed = ReadJsonFile(gen, 1 << 20);
    const nlohmann::json none;
    const nlohmann::json& j = parsed.ok() ? *parsed : none;
    if (!parsed.ok()) spdlog::warn("{}: ignored ({})", gen, parsed.status().ToString());
    if (j.is_object() && j.contains("eos_token_id")) {
      const auto& v = j["eos_token_id"];
      auto add = [&](const nlohmann::json& e) {
        if (e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() <= INT32_MAX) {
          ids.push_back(e.get<int32_t>());
        } else {
          spdlog::warn("{}: eos_token_id entry {} ignored (not a token id)", gen, JsonExcerpt(e));
        }
      };
      if (v.is_array()) {
        for (const auto& e : v) add(e);
      } else {
        add(v);
      }
    }
  }
  if (tokenizer.eos_id()) ids.push_back(*tokenizer.eos_id());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

namespace {

absl::StatusOr<std::unique_ptr<AdapterPool>> CreateAdapterPool(const ServingOptions& o, const ModelConfig& c) {
  const int32_t rank = o.adapter_limits.max_rank;
  const int64_t slot_bytes = AdapterPool::SlotBytes(c, rank);
  const int32_t startup = static_cast<int32_t>(o.adapters.size());
  int32_t slots = o.adapter_slots;
  if (slots < 0) return absl::InvalidArgumentError(absl::StrCat("--adapter-slots must be >= 0, got ", slots));
  if (slots == 0) {
    // Every start-up adapter, and with a store as many uploaded ones as the
    // memory budget holds (at least one, at most kMaxAutoSlots).
    constexpr int64_t kMaxAutoSlots = 512;
    const int64_t stored = o.data_dir.empty() ? 0 : std::clamp<int64_t>(o.adapter_cache_bytes / slot_bytes, 1, kMaxAutoSlots);
    slots = static_cast<int32_t>(std::max<int64_t>(1, startup + stored));
  } else if (!o.data_dir.empty() && slots <= startup) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--adapter-slots ", slots, " leaves no slot for uploaded adapters beside the ", startup,
        " start-up adapter(s); raise it to at least ", startup + 1, " (or 0 to size it from --adapter-cache-mb)"));
  }
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<AdapterPool> pool, AdapterPool::Create(c, {slots, rank}));
  spdlog::info("adapter pool: {} slot(s) of {:.1f} MiB (LoRA rank up to {}), {:.1f} MiB", slots,
               slot_bytes / 1048576.0, rank, pool->bytes() / 1048576.0);
  if (!o.data_dir.empty() && slots - startup < o.max_batch_size) {
    spdlog::warn("adapter pool: {} slot(s) for uploaded adapters, fewer than --max-batch-size {}: requests for "
                 "more distinct adapters than that wait for a slot (raise --adapter-slots or --adapter-cache-mb, "
                 "or lower --max-lora-rank)",
                 slots - startup, o.max_batch_size);
  }
  return pool;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServingStack>> BuildServingStack(const ServingOptions& o) {
  if (o.model_dir.empty()) {
    return absl::InvalidArgumentError("no model given: pass --model DIR (an HF model folder)");
  }
  if (o.max_batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--max_batch_size must be >= 1, got ", o.max_batch_size));
  }
  if (o.num_threads < 0) return absl::InvalidArgumentError("--threads must be >= 0 (0: every core)");
  auto stack = std::make_unique<ServingStack>();
  LoadOptions lo;
  lo.quant = o.quant;
  lo.num_threads = o.num_threads;
  absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(o.model_dir, lo);
  if (!model.ok()) return model.status();
  stack->model = *std::move(model);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromDir(o.model_dir);
  if (!tok.ok()) return tok.status();
  stack->tokenizer = *std::move(tok);
  absl::StatusOr<GenerationDefaults> defaults = ReadGenerationDefaults(o.model_dir);
  if (!defaults.ok()) return defaults.status();
  stack->generation_defaults = *std::move(defaults);
  // A template that does not parse disables chat requests, not the server.
  absl::StatusOr<std::optional<ChatTemplate>> chat = ChatTemplate::FromDir(o.model_dir);
  if (!chat.ok()) {
    spdlog::warn("chat requests are disabled: {}", std::string(chat.status().message()));
    stack->chat_template_source = absl::StrCat("none: ", chat.status().message());
  } else if (!chat->has_value()) {
    stack->chat_template_source = "none: the model folder has no chat template";
  } else {
    stack->chat_template = *std::move(*chat);
    stack->chat_template_source =
        std::filesystem::exists(std::filesystem::path(o.model_dir) / "chat_template.jinja")
            ? "chat_template.jinja"
            : "tokenizer_config.json";
  }
  const ModelConfig& c = stack->model->config;
  if (stack->tokenizer->vocab_size() > c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.model_dir, ": tokenizer.json has ", stack->tokenizer->vocab_size(),
        " tokens but config.json's vocab_size is ", c.vocab_size, " (tokenizer from another model?)"));
  }

  stack->adapter_limits = o.adapter_limits;
  if (!o.data_dir.empty()) {
    absl::StatusOr<std::unique_ptr<AdapterStore>> store = AdapterStore::Open(o.data_dir);
    if (!store.ok()) return store.status();
    stack->store = *std::move(store);
    absl::StatusOr<std::unique_ptr<WatermarkVault>> vault = WatermarkVault::Open(o.data_dir + "/vault", c);
    if (!vault.ok()) return vault.status();
    stack->vault = *std::move(vault);
    spdlog::info("adapter store {}: {} adapter(s), {} quarantined", o.data_dir, stack->store->List().size(),
                 stack->store->quarantined());
  }
  // Stored adapters load lazily through the cache: "@ID" keys, copied from
  // their files straight into a pool slot. Their sha256 is checked at upload
  // and by the scrubber, which drops a quarantined adapter from the cache.
  TESSERA_ASSIGN_OR_RETURN(stack->pool, CreateAdapterPool(o, c));
  stack->adapter_load_threads =
      o.adapter_load_threads > 0
          ? o.adapter_load_threads
          : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  const ServingStack* self = stack.get();
  stack->cache = std::make_unique<AdapterCache>(
      stack->pool.get(),
      [self](const std::string& key, AdapterPool& pool, int32_t slot) {
        return self->LoadAdapterIntoSlot(key, pool, slot);
      },
      o.adapter_cache_observer);
  if (stack->store && o.adapter_scrub_bytes_per_second > 0) {
    AdapterCache* cache = stack->cache.get();
    stack->scrubber = std::make_unique<AdapterScrubber>(
        stack->store.get(), AdapterScrubOptions{o.adapter_scrub_bytes_per_second, o.adapter_scrub_interval},
        [cache](const StoredAdapter& e) { cache->Erase(StoredAdapterKey(e.id)); });
  }
  stack->startup_adapters = std::make_unique<StartupAdapters>();
  for (const auto& [name, dir] : o.adapters) {
    absl::Status s = stack->startup_adapters->Load(name, dir, c, o.adapter_limits, *stack->cache);
    if (!s.ok() && (o.fail_on_bad_adapter || s.code() == absl::StatusCode::kAlreadyExists ||
                    s.code() == absl::StatusCode::kResourceExhausted)) {
      return s;
    }
  }

  // Effective context limit, and the KV cache that serves it.
  const int64_t trained = c.max_position_embeddings;
  int64_t context = o.max_context > 0 ? o.max_context : trained;
  if (c.rope_id) {
    stack->context_limit_reason = o.max_context > 0 ? "RoPE-ID model, --max-context" : "";
  } else if (context > trained) {
    if (!o.allow_context_extension) {
      return absl::InvalidArgumentError(
          absl::StrCat("--max-context ", context, " exceeds max_position_embeddings ", trained,
                       " of this plain RoPE model; add --allow-context-extension to serve it anyway (quality "
                       "degrades past the "
                       "trained length), or use a RoPE-ID model"));
    }
    spdlog::warn(
        "serving {} tokens with a plain RoPE model trained for {} (--allow-context-extension): expect "
        "quality to degrade past the trained length",
        context, trained);
    stack->context_limit_reason =
        absl::StrCat("--max-context with --allow-context-extension (trained for ", trained, ")");
  } else {
    stack->context_limit_reason =
        o.max_context > 0 ? "--max-context" : "max_position_embeddings in config.json";
  }
  const int64_t kv_bytes_per_token = int64_t{2} * c.num_hidden_layers * c.num_key_value_heads * c.head_dim *
                                     static_cast<int64_t>(sizeof(float));
  int64_t kv_tokens = o.kv_cache_tokens;
  int64_t kv_bytes = o.kv_cache_bytes;
  // More than max_batch_size full contexts is never used.
  const int64_t useful_tokens = std::max<int64_t>(1, o.max_batch_size) * std::max<int64_t>(context, 1);
  if (kv_tokens <= 0 && kv_bytes <= 0) {
    if (o.kv_cache_memory_fraction <= 0 || o.kv_cache_memory_fraction > 0.95) {
      return absl::InvalidArgumentError("--kv-cache-memory-fraction must be in (0, 0.95]");
    }
    const int64_t available = AvailableMemoryBytes();
    if (available <= 0) {
      return absl::FailedPreconditionError(
          "--kv-cache-memory-fraction: cannot read MemAvailable from /proc/meminfo; set --kv-cache-tokens or "
          "--kv-cache-bytes");
    }
    const int64_t share = static_cast<int64_t>(o.kv_cache_memory_fraction * static_cast<double>(available));
    const int64_t tokens = share / kv_bytes_per_token;
    if (tokens < context) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the KV cache cannot hold one full context: ", o.kv_cache_memory_fraction, " of the ",
          available / 1048576, " MiB available after loading is ", share / 1048576, " MiB = ", tokens,
          " tokens, and a context of ", context, " tokens needs ", context * kv_bytes_per_token / 1048576,
          " MiB; lower --max-context, raise --kv-cache-memory-fraction, or set --kv-cache-tokens"));
    }
    kv_tokens = std::min(tokens, useful_tokens);
    spdlog::info("KV cache: {} tokens ({:.0f} MiB): {} of {:.0f} MiB available{}", kv_tokens,
                 kv_tokens * kv_bytes_per_token / 1048576.0, o.kv_cache_memory_fraction, available / 1048576.0,
                 kv_tokens == useful_tokens ? ", capped at --max-batch-size full contexts" : "");
  }
  if (kv_tokens <= 0 && kv_bytes > 0) {
    kv_tokens = kv_bytes / kv_bytes_per_token;
    if (kv_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat("a KV cache of ", kv_bytes,
                                                     " bytes holds no token; one token needs ",
                                                     kv_bytes_per_token, " bytes with this model"));
    }
  }
  if (c.rope_id && o.max_context == 0) {
    context = kv_tokens;
    stack->context_limit_reason =
        absl::StrCat("RoPE-ID model, limited by the KV cache (", kv_tokens, " tokens)");
  }
  if (context > kv_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("a context of ", context,
                                                   " tokens needs a KV cache of at least ", context,
                                                   " tokens; raise --kv-cache-tokens (now ", kv_tokens, ")"));
  }
  if (context > std::numeric_limits<int32_t>::max() / 2) {
    return absl::InvalidArgumentError(absl::StrCat("--max-context ", context, " is too large"));
  }
  if (o.max_step_tokens < 1) return absl::InvalidArgumentError("--max-step-tokens must be >= 1");
  stack->context_length = static_cast<int32_t>(context);

  EngineOptions eo;
  eo.num_threads = o.num_threads > 0 ? o.num_threads : std::max(1u, std::thread::hardware_concurrency());
  eo.kv_block_size = o.kv_block_size;
  eo.kv_cache_tokens = kv_tokens;
  // A step holds up to max_step_tokens prompt rows, and at least one decode
  // row per running sequence.
  eo.max_step_tokens = std::max(o.max_step_tokens, o.max_batch_size);
  eo.max_seqs = o.max_batch_size;
  eo.adapter_pool = stack->pool.get();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*stack->model, eo);
  if (!engine.ok()) return engine.status();
  stack->engine = *std::move(engine);

  SchedulerOptions so;
  so.max_batch_size = o.max_batch_size;
  so.max_queue = o.max_queue;
  so.context_length = stack->context_length;
  so.max_step_tokens = o.max_step_tokens;
  so.testing_step_delay = o.testing_step_delay;
  so.max_new_tokens_limit = o.max_new_tokens_limit > 0 ? o.max_new_tokens_limit : stack->context_length;
  const std::vector<int32_t> eos = CollectEosIds(*stack->model, *stack->tokenizer);
  stack->scheduler =
      std::make_unique<Scheduler>(stack->engine.get(), stack->tokenizer.get(), eos, so, stack->cache.get());
  stack->scheduler->SetObserver(o.scheduler_observer);
  stack->scheduler->Start();
  spdlog::info(
      "engine: cpu backend, {} thread(s), KV cache {} tokens in blocks of {}, batch up to {}, {} tokens "
      "per step; context limit {} ({})",
      eo.num_threads, eo.kv_cache_tokens, eo.kv_block_size, so.max_batch_size, so.max_step_tokens,
      stack->context_length, stack->context_limit_reason);
  return stack;
}

std::string StoredAdapterKey(const std::string& id) { return "@" + id; }

absl::StatusOr<std::shared_ptr<const Adapter>> ServingStack::LoadAdapterByKey(const std::string& key) const {
  if (key.empty() || key[0] != '@') return startup_adapters->Reload(key, model->config, adapter_limits);
  std::optional<StoredAdapter> e = store ? store->FindById(key.substr(1)) : std::nullopt;
  if (!e)
    return absl::NotFoundError("the adapter was deleted before the request could start; upload it again");
  TESSERA_RETURN_IF_ERROR(store->Verify(*e));
  return LoadAdapter(e->reference(), store->PathOf(*e), model->config, adapter_limits);
}

absl::StatusOr<std::shared_ptr<const Adapter>> ServingStack::LoadAdapterIntoSlot(const std::string& key,
                                                                                AdapterPool& pool,
                                                                                int32_t slot) const {
  if (key.empty() || key[0] != '@') {
    TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<const Adapter> a,
                             startup_adapters->Reload(key, model->config, adapter_limits));
    TESSERA_RETURN_IF_ERROR(pool.Write(slot, *a));
    return a->Metadata();
  }
  std::optional<StoredAdapter> e = store ? store->FindById(key.substr(1)) : std::nullopt;
  if (!e)
    return absl::NotFoundError("the adapter was deleted before the request could start; upload it again");
  TESSERA_RETURN_IF_ERROR(store->Verify(*e, AdapterStore::VerifyMode::kSizes));
  absl::StatusOr<AdapterSource> source = OpenAdapter(e->reference(), store->PathOf(*e), model->config, adapter_limits);
  absl::Status written = source.ok() ? pool.WriteFrom(slot, *source, adapter_load_threads) : source.status();
  if (written.ok()) return std::shared_ptr<const Adapter>(std::move(source->adapter));
  // It loaded when it was uploaded: if its files changed since, say so (and
  // quarantine it) rather than report the symptom.
  if (absl::Status verified = store->Verify(*e); !verified.ok()) return verified;
  return written;
}

ServingStack::~ServingStack() {
  if (scheduler) scheduler->Stop();
  scheduler.reset();
}

v1::ServerInfoResponse ServingStack::Info() const {
  const ModelConfig& c = model->config;
  v1::ServerInfoResponse info;
  info.set_model(model->name);
  info.set_architecture(c.architecture);
  info.set_dtype(DTypeTorchName(model->checkpoint_dtype));
  info.set_compute_dtype("float32");
  info.set_context_length(context_length);
  info.set_context_limit_reason(context_limit_reason);
  info.set_vocab_size(c.vocab_size);
  for (const char* kind : {"lora", "seal", "road", "diablo"}) info.add_adapter_kinds(kind);
  for (const std::string& name : startup_adapters->Names()) info.add_loaded_adapters(name);
  info.set_version(Version());
  info.set_max_batch_size(scheduler->options().max_batch_size);
  info.set_max_new_tokens_limit(scheduler->options().max_new_tokens_limit);
  info.set_quantization(DescribeQuantization(model->quant));
  for (const char* w : {"embed_tokens", "lm_head", "norms"}) info.add_high_precision_weights(w);
  info.set_weight_bytes(model->stats.weight_bytes);
  info.set_load_peak_rss_bytes(model->stats.peak_rss_bytes);
  info.set_backend("cpu");
  v1::GenerationDefaults* d = info.mutable_generation_defaults();
  d->set_temperature(generation_defaults.temperature);
  d->set_top_k(static_cast<uint32_t>(generation_defaults.top_k));
  d->set_top_p(generation_defaults.top_p);
  d->set_source(generation_defaults.source);
  info.set_chat_template(chat_template_source);
  return info;
}

}  // namespace tessera
