// The engine: runs one step of a Llama-family model. The forward pass is
// written once, here, against an OpTable (kernels/ops.h); the table decides
// the backend (today the CPU's). Activations live in one arena allocated at
// Create for the largest step, so Step allocates nothing.
//
// Thread safety: not thread-safe. One thread (the scheduler's) owns an Engine.
#ifndef TESSERA_SERVER_ENGINE_ENGINE_H_
#define TESSERA_SERVER_ENGINE_ENGINE_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "adapters/adapter_pool.h"
#include "common/device_buffer.h"
#include "kernels/batch_plan.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "kernels/plan_builder.h"
#include "kernels/plan_view.h"
#include "server/engine/kv_storage.h"
#include "model/model.h"

namespace tessera {

struct EngineOptions {
  int num_threads = 1;
  int32_t kv_block_size = 16;
  int64_t kv_cache_tokens = 0;  // total cache capacity in tokens; > 0
  DType kv_dtype = DType::kF32;  // what the backend's attention supports (CPU: f32)
  // Rows per step (prompt chunk plus decode rows): sizes the activation
  // arena. Sequences per step (and so logit rows) are at most max_seqs, 0
  // meaning max_step_tokens.
  int32_t max_step_tokens = 512;
  int32_t max_seqs = 0;
  // The slots that plan adapter segments name; null: the base model only.
  // Must outlive the engine. The caller keeps every slot a plan names
  // pinned until Step returns.
  const AdapterPool* adapter_pool = nullptr;
  const OpTable* ops = nullptr;  // null: CpuOps()
};

class Engine {
 public:
  // model must outlive the engine. InvalidArgument for bad options;
  // ResourceExhausted when the arena or the cache cannot be allocated.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Model& model, const EngineOptions& options);

  // Runs a plan built by a PlanBuilder with plan_limits() and returns the
  // logits [plan.num_logit_rows, vocab], one row per plan.logit_rows entry,
  // in engine memory that stays valid until the next Step. Allocates
  // nothing. InvalidArgument when the view is larger than the engine's
  // limits, or names a pool slot that is empty or of another op family.
  absl::StatusOr<absl::Span<const float>> Step(const PlanView& plan);

  // Builds the view of `plan` (validating it: see PlanBuilder::Build), runs
  // it and copies the logits into *logits, resized to [num_logit_rows,
  // vocab]. Fails before touching the cache on a malformed plan.
  absl::Status Step(const BatchPlan& plan, std::vector<float>* logits);

  // Rows, sequences, vocabulary and KV pages a plan may use; the scheduler's
  // PlanBuilder and KvBlockManager are sized from these.
  PlanLimits plan_limits() const;
  const KvStorage& kv_storage() const { return kv_; }
  const Model& model() const { return model_; }
  // The op family of every pool slot, for PlanBuilder::Build (empty
  // without a pool).
  absl::Span<const AdapterOp> slot_ops() const;
  const OpTable& ops() const { return ops_; }
  int num_threads() const { return pool_.num_threads(); }

 private:
  Engine(const Model& model, const EngineOptions& options, KvStorage kv);
  absl::Status AllocateArena();
  // y = x·Wᵀ (+ bias), then each adapter segment's update for this layer and
  // module: low-rank (LoRA, SEAL), then block-diagonal (DiaBlo), then
  // rotation (RoAd).
  absl::Status Linear(const LinearWeights& w, const float* x, int64_t rows, float* y, const PlanView& plan,
                      int32_t layer, LinearModule module);

  const Model& model_;
  const OpTable& ops_;
  const int32_t max_tokens_;
  const int32_t max_seqs_;
  ThreadPool pool_;
  ExecContext ctx_;
  KvStorage kv_;
  const AdapterPool* const adapter_pool_;
  PlanBuilder builder_;  // for Step(BatchPlan)

  // The arena and its activations: [max_tokens_, width] each, and
  // [max_seqs_, hidden] / [max_seqs_, vocab] for the output rows.
  DeviceBuffer arena_;
  float *x_ = nullptr, *h_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr;
  float *proj_ = nullptr, *gate_ = nullptr, *up_ = nullptr, *last_hidden_ = nullptr, *logits_ = nullptr;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_ENGINE_ENGINE_H_
