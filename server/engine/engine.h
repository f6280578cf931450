// The CPU backend: runs one BatchPlan step of a Llama-family model through the
// kernels in kernels/cpu and returns the logits the plan asks for.
//
// Thread safety: not thread-safe. One thread (the scheduler's) owns an Engine.
#ifndef TESSERA_SERVER_ENGINE_ENGINE_H_
#define TESSERA_SERVER_ENGINE_ENGINE_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/adapter.h"
#include "kernels/batch_plan.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/diablo_apply.h"
#include "kernels/lora_apply.h"
#include "kernels/road_apply.h"
#include "server/engine/kv_cache.h"
#include "server/model/model.h"

namespace tessera {

struct EngineOptions {
  int num_threads = 1;
  int32_t kv_block_size = 16;
  int64_t kv_cache_tokens = 0;  // total cache capacity in tokens; > 0
};

// The adapters one step may apply: plan adapter segments name an index
// (slot) into this table. The caller keeps every entry alive (pinned) until
// Step returns.
using AdapterSlots = std::span<const Adapter* const>;

class Engine {
 public:
  // model must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Model& model, const EngineOptions& options);

  // Runs the plan. logits is resized to [plan.num_logit_rows(), vocab]: one row
  // per sequence with needs_logits, in plan order, for its last row. Fails with
  // InvalidArgument on a malformed plan (ids outside the vocabulary, block
  // tables too short, rows not covered, adapter slots outside `adapters`)
  // before touching the cache.
  absl::Status Step(const BatchPlan& plan, std::vector<float>* logits, AdapterSlots adapters = {});

  KvCache& kv_cache() { return kv_cache_; }
  const Model& model() const { return model_; }
  int num_threads() const { return pool_.num_threads(); }

 private:
  Engine(const Model& model, const EngineOptions& options, int32_t num_blocks);
  absl::Status ValidatePlan(const BatchPlan& plan, AdapterSlots adapters) const;
  // y = x·Wᵀ (+ bias), then each adapter segment's update for this layer and
  // module: LoRA family, then DiaBlo, then RoAd.
  absl::Status Linear(const LinearWeights& w, const float* x, int64_t rows, float* y, const BatchPlan& plan,
                      int32_t layer, LinearModule module);
  void Reserve(int64_t rows);

  const Model& model_;
  AdapterSlots adapters_;  // of the step running
  ThreadPool pool_;
  // Per-call segment lists, reused across calls.
  std::vector<LoraSegment> lora_segments_;
  std::vector<DiabloSegment> diablo_segments_;
  std::vector<RoadSegment> road_segments_;
  KvCache kv_cache_;

  // Activations, grown to the largest step seen: [rows, width].
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_;
  std::vector<float> last_hidden_;
  int64_t reserved_rows_ = 0;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_ENGINE_ENGINE_H_
