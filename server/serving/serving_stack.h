// The model, tokenizer, engine and scheduler of one process, built from a
// model folder. Shared by tessera-server and tessera-batch so both load,
// validate and schedule in exactly the same way.
#ifndef TESSERA_SERVER_SERVING_SERVING_STACK_H_
#define TESSERA_SERVER_SERVING_SERVING_STACK_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/adapter_cache.h"
#include "adapters/adapter_scrubber.h"
#include "adapters/adapter_pool.h"
#include "model/chat_template.h"
#include "model/generation_config.h"
#include "adapters/adapter_store.h"
#include "adapters/watermark_vault.h"
#include "server/engine/engine.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "server/scheduler/scheduler.h"
#include "server/serving/startup_adapters.h"
#include "tessera/v1/inference.pb.h"

namespace tessera {

struct ServingOptions {
  std::string model_dir;
  int num_threads = 0;  // 0: every core
  int32_t max_batch_size = 8;
  int32_t max_queue = 1024;
  int32_t max_new_tokens_limit = 0;     // 0: the context length
  int64_t kv_cache_tokens = 0;          // 0: see kv_cache_bytes
  int64_t kv_cache_bytes = 0;           // used when kv_cache_tokens is 0; 0: see the fraction
  // Of MemAvailable after loading, when neither of the two above is set;
  // capped at max_batch_size full contexts.
  double kv_cache_memory_fraction = 0.3;
  int32_t kv_block_size = 16;
  int32_t max_step_tokens = 512;
  absl::Duration testing_step_delay = absl::ZeroDuration();  // see SchedulerOptions
  // Longest sequence served. 0: a RoPE-ID model serves what the KV cache
  // holds, a plain RoPE model its max_position_embeddings.
  int64_t max_context = 0;
  // Lets a plain RoPE model serve past max_position_embeddings (warned).
  bool allow_context_extension = false;
  QuantOptions quant;                                         // default int4, group 128
  std::vector<std::pair<std::string, std::string>> adapters;  // NAME, DIR
  AdapterLimits adapter_limits;  // max_rank is the pool's Rmax (--max-lora-rank)
  // Adapter pool slots, start-up adapters included; 0: one per start-up
  // adapter, plus (with a data_dir) as many as adapter_cache_bytes holds.
  int32_t adapter_slots = 0;
  // A failed adapter is logged and requests for it get its error; with this
  // set, it fails the whole stack instead (offline batch).
  bool fail_on_bad_adapter = false;
  // Durable adapter store (uploads); empty: start-up adapters only.
  std::string data_dir;
  // Memory for the pool slots of stored adapters when adapter_slots is 0
  // (start-up ones are extra).
  int64_t adapter_cache_bytes = int64_t{1} << 30;
  // Threads that copy one adapter into its pool slot on a cache miss; 0: up
  // to 4, never more than the cores.
  int adapter_load_threads = 0;
  // The background re-check of stored adapters' sha256 (adapter_scrubber.h):
  // bytes read per second (0: no scrub) and the pause between passes.
  int64_t adapter_scrub_bytes_per_second = int64_t{32} << 20;
  absl::Duration adapter_scrub_interval = absl::Hours(1);
  // Metrics hooks (may be empty); they must outlive the stack.
  Scheduler::Observer scheduler_observer;
  AdapterCache::Observer adapter_cache_observer;
};

struct ServingStack {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<AdapterStore> store;     // null without data_dir
  std::unique_ptr<WatermarkVault> vault;   // null without data_dir
  std::unique_ptr<AdapterPool> pool;       // the slots the engine reads; before the cache and engine
  std::unique_ptr<AdapterCache> cache;     // start-up adapters are permanent entries keyed by name
  std::unique_ptr<AdapterScrubber> scrubber;  // with a store; drops quarantined adapters from the cache
  std::unique_ptr<StartupAdapters> startup_adapters;  // --adapter
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Scheduler> scheduler;  // started; destroyed before the cache (it holds pins)
  int32_t context_length = 0;
  std::string context_limit_reason;
  // What a request's unset sampling fields become (generation_config.json).
  GenerationDefaults generation_defaults;
  AdapterLimits adapter_limits;
  // The model's chat template; unset when it has none or it failed to parse
  // (chat_template_source says which).
  std::optional<ChatTemplate> chat_template;
  std::string chat_template_source;

  v1::ServerInfoResponse Info() const;
  // Reads an adapter by AdapterCache key into memory: a start-up adapter's
  // name, or a stored one ("@ID": sha256 re-checked first, so corruption is
  // quarantined, never used). For ownership checks.
  absl::StatusOr<std::shared_ptr<const Adapter>> LoadAdapterByKey(const std::string& key) const;
  // What the cache's loader runs on a miss: the adapter straight from its
  // files into `slot`, its metadata returned. A stored adapter's file sizes
  // are checked against the manifest (its sha256 was checked at upload, and
  // the scrubber re-checks it); when its files fail to load, its sha256 is
  // checked too, so a corrupted entry is quarantined instead of retried.
  absl::StatusOr<std::shared_ptr<const Adapter>> LoadAdapterIntoSlot(const std::string& key, AdapterPool& pool,
                                                                     int32_t slot) const;
  int adapter_load_threads = 1;
  ~ServingStack();  // stops the scheduler before the cache it pins from goes
};

// The AdapterCache key of stored adapter `id`.
std::string StoredAdapterKey(const std::string& id);

// Loads and validates everything; the scheduler is running on success.
absl::StatusOr<std::unique_ptr<ServingStack>> BuildServingStack(const ServingOptions& options);

// EOS ids: config.json's, generation_config.json's and the tokenizer's.
std::vector<int32_t> CollectEosIds(const Model& model, const Tokenizer& tokenizer);

}  // namespace tessera

#endif  // TESSERA_SERVER_SERVING_SERVING_STACK_H_
