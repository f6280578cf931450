#include "server/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/float_env.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model& model, const EngineOptions& options) {
  if (options.num_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be >= 1, got ", options.num_threads));
  }
  if (options.kv_block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block size must be >= 1, got ", options.kv_block_size));
  }
  if (options.kv_cache_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache must hold at least one token, got ", options.kv_cache_tokens));
  }
  if (options.adapter_pool && !options.adapter_pool->MadeFor(model.config)) {
    return absl::InvalidArgumentError("the adapter pool was made for a model of another shape");
  }
  if (options.max_step_tokens < 1 || options.max_seqs < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max step tokens must be >= 1 (got ", options.max_step_tokens,
                                                   ") and max sequences >= 0 (got ", options.max_seqs, ")"));
  }
  const int64_t blocks = (options.kv_cache_tokens + options.kv_block_size - 1) / options.kv_block_size;
  if (blocks > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache of ", options.kv_cache_tokens, " tokens is too large"));
  }
  const ModelConfig& c = model.config;
  KvShape shape{c.num_hidden_layers, static_cast<int32_t>(blocks), options.kv_block_size, c.num_key_value_heads,
                c.head_dim, options.kv_dtype};
  TESSERA_ASSIGN_OR_RETURN(KvStorage kv, KvStorage::Create(shape, HostAllocator()));
  std::unique_ptr<Engine> engine(new Engine(model, options, std::move(kv)));
  TESSERA_RETURN_IF_ERROR(engine->AllocateArena());
  return engine;
}

Engine::Engine(const Model& model, const EngineOptions& options, KvStorage kv)
    : model_(model),
      ops_(options.ops != nullptr ? *options.ops : CpuOps()),
      max_tokens_(options.max_step_tokens),
      max_seqs_(options.max_seqs > 0 ? std::min(options.max_seqs, options.max_step_tokens)
                                     : options.max_step_tokens),
      pool_(options.num_threads),
      kv_(std::move(kv)),
      adapter_pool_(options.adapter_pool),
      builder_(PlanLimits{max_tokens_, max_seqs_, model.config.vocab_size, kv_.shape().num_blocks,
                          kv_.shape().block_size}) {
  ctx_.device = ops_.device;
  ctx_.pool = &pool_;
}

PlanLimits Engine::plan_limits() const { return builder_.limits(); }

absl::Span<const AdapterOp> Engine::slot_ops() const {
  return adapter_pool_ ? adapter_pool_->slot_ops() : absl::Span<const AdapterOp>();
}

absl::Status Engine::AllocateArena() {
  const ModelConfig& c = model_.config;
  const int64_t t = max_tokens_;
  const int64_t q_width = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_width = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  // Each activation starts on a 64-byte boundary.
  auto padded = [](int64_t floats) { return (floats + 15) / 16 * 16; };
  const int64_t sizes[] = {t * c.hidden_size,        t * c.hidden_size,        t * q_width, t * kv_width,
                           t * kv_width,             t * q_width,              t * c.hidden_size,
                           t * c.intermediate_size,  t * c.intermediate_size,  int64_t{max_seqs_} * c.hidden_size,
                           int64_t{max_seqs_} * c.vocab_size};
  int64_t total = 0;
  for (int64_t n : sizes) total += padded(n);
  TESSERA_ASSIGN_OR_RETURN(arena_, DeviceBuffer::Allocate(HostAllocator(), static_cast<size_t>(total) * 4));
  float* p = arena_.as<float>();
  float** slots[] = {&x_, &h_, &q_, &k_, &v_, &attn_, &proj_, &gate_, &up_, &last_hidden_, &logits_};
  for (size_t i = 0; i < std::size(slots); ++i) {
    *slots[i] = p;
    p += padded(sizes[i]);
  }
  return absl::OkStatus();
}

absl::Status Engine::Linear(const LinearWeights& w, const float* x, int64_t rows, float* y, const PlanView& plan,
                            int32_t layer, LinearModule module) {
  LinearArgs a;
  a.x = x;
  a.format = w.format;
  a.weight = w.data();
  a.scales = w.scales.empty() ? nullptr : w.scales.data();
  a.group_size = w.group_size;
  a.bias = w.bias.empty() ? nullptr : w.bias.data();
  a.y = y;
  a.rows = rows;
  a.in = w.in;
  a.out = w.out;
  TESSERA_RETURN_IF_ERROR(ops_.linear(a, ctx_));
  if (adapter_pool_ == nullptr) return absl::OkStatus();
  const int32_t n = adapter_pool_->num_slots();
  const AdapterSegments& low_rank = plan.segments_of(AdapterOp::kLowRank);
  const AdapterSegments& block_diagonal = plan.segments_of(AdapterOp::kBlockDiagonal);
  const AdapterSegments& rotation = plan.segments_of(AdapterOp::kRotation);
  if (low_rank.count > 0) {
    TESSERA_RETURN_IF_ERROR(
        ops_.lora_apply({x, y, DType::kF32, w.in, w.out, &low_rank, adapter_pool_->lora(layer, module), n}, ctx_));
  }
  if (block_diagonal.count > 0) {
    TESSERA_RETURN_IF_ERROR(ops_.diablo_apply(
        {x, y, DType::kF32, w.in, w.out, &block_diagonal, adapter_pool_->diablo(layer, module), n}, ctx_));
  }
  if (rotation.count > 0) {
    TESSERA_RETURN_IF_ERROR(
        ops_.road_apply({y, DType::kF32, w.out, &rotation, adapter_pool_->road(layer, module), n}, ctx_));
  }
  return absl::OkStatus();
}

absl::Status Engine::Step(const BatchPlan& plan, std::vector<float>* logits) {
  TESSERA_ASSIGN_OR_RETURN(const PlanView view, builder_.Build(plan, slot_ops()));
  TESSERA_ASSIGN_OR_RETURN(const absl::Span<const float> out, Step(view));
  logits->assign(out.begin(), out.end());
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const float>> Engine::Step(const PlanView& plan) {
  FlushDenormalsOnThisThread();  // the calling thread runs ops too (kernels/cpu/float_env.h)
  const ModelConfig& c = model_.config;
  if (plan.num_tokens < 1 || plan.num_tokens > max_tokens_ || plan.num_seqs < 1 || plan.num_seqs > max_seqs_ ||
      plan.num_logit_rows > plan.num_seqs || plan.block_size != kv_.shape().block_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plan of ", plan.num_tokens, " rows, ", plan.num_seqs, " sequences and ", plan.num_logit_rows,
        " logit rows in blocks of ", plan.block_size, " does not fit this engine (", max_tokens_, " rows, ",
        max_seqs_, " sequences, blocks of ", kv_.shape().block_size, ")"));
  }
  for (int k = 0; k < kNumAdapterOps; ++k) {
    const AdapterSegments& segs = plan.segments[k];
    for (int32_t i = 0; i < segs.count; ++i) {
      const int32_t slot = segs.slot[i];
      const std::optional<AdapterOp> op = adapter_pool_ ? adapter_pool_->op_of(slot) : std::nullopt;
      if (!op) {
        return absl::InvalidArgumentError(absl::StrCat("adapter segment names slot ", slot, ", which holds no adapter (",
                                                       adapter_pool_ ? adapter_pool_->num_slots() : 0, " slots)"));
      }
      if (static_cast<int>(*op) != k) {
        return absl::InvalidArgumentError(
            absl::StrCat("adapter segment of slot ", slot, " is filed under the wrong op kind"));
      }
    }
  }
  const int64_t rows = plan.num_tokens;
  const int64_t hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  TESSERA_RETURN_IF_ERROR(
      ops_.embedding({model_.embed_tokens.data(), plan.tokens, x_, DType::kF32, rows, c.vocab_size, hidden}, ctx_));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (int32_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = model_.layers[l];
    TESSERA_RETURN_IF_ERROR(ops_.rms_norm({x_, L.input_norm.data(), h_, DType::kF32, rows, hidden, eps}, ctx_));
    TESSERA_RETURN_IF_ERROR(Linear(L.q_proj, h_, rows, q_, plan, l, LinearModule::kQ));
    TESSERA_RETURN_IF_ERROR(Linear(L.k_proj, h_, rows, k_, plan, l, LinearModule::kK));
    TESSERA_RETURN_IF_ERROR(Linear(L.v_proj, h_, rows, v_, plan, l, LinearModule::kV));
    RopeArgs rope;
    rope.q = q_;
    rope.k = k_;
    rope.positions = plan.positions;
    rope.inv_freq = model_.rope_inv_freq.data();
    rope.rows = rows;
    rope.num_q_heads = c.num_attention_heads;
    rope.num_kv_heads = c.num_key_value_heads;
    rope.head_dim = c.head_dim;
    rope.rotary_dims = RopeRotaryDims(c);
    TESSERA_RETURN_IF_ERROR(ops_.rope(rope, ctx_));
    KvCacheWriteArgs kvw;
    kvw.k = k_;
    kvw.v = v_;
    kvw.k_cache = kv_.k(l);
    kvw.v_cache = kv_.v(l);
    kvw.dtype = kv_.shape().dtype;
    kvw.plan = &plan;
    kvw.num_blocks = kv_.shape().num_blocks;
    kvw.num_kv_heads = c.num_key_value_heads;
    kvw.head_dim = c.head_dim;
    TESSERA_RETURN_IF_ERROR(ops_.kv_write(kvw, ctx_));
    AttentionArgs at;
    at.q = q_;
    at.k_cache = kv_.k(l);
    at.v_cache = kv_.v(l);
    at.dtype = kv_.shape().dtype;
    at.out = attn_;
    at.plan = &plan;
    at.num_q_heads = c.num_attention_heads;
    at.num_kv_heads = c.num_key_value_heads;
    at.head_dim = c.head_dim;
    at.scale = scale;
    TESSERA_RETURN_IF_ERROR(ops_.attention(at, ctx_));
    TESSERA_RETURN_IF_ERROR(Linear(L.o_proj, attn_, rows, proj_, plan, l, LinearModule::kO));
    TESSERA_RETURN_IF_ERROR(ops_.residual_add({x_, proj_, DType::kF32, rows * hidden}, ctx_));

    TESSERA_RETURN_IF_ERROR(
        ops_.rms_norm({x_, L.post_attention_norm.data(), h_, DType::kF32, rows, hidden, eps}, ctx_));
    TESSERA_RETURN_IF_ERROR(Linear(L.gate_proj, h_, rows, gate_, plan, l, LinearModule::kGate));
    TESSERA_RETURN_IF_ERROR(Linear(L.up_proj, h_, rows, up_, plan, l, LinearModule::kUp));
    TESSERA_RETURN_IF_ERROR(ops_.swiglu({gate_, up_, gate_, DType::kF32, rows * c.intermediate_size}, ctx_));
    TESSERA_RETURN_IF_ERROR(Linear(L.down_proj, gate_, rows, proj_, plan, l, LinearModule::kDown));
    TESSERA_RETURN_IF_ERROR(ops_.residual_add({x_, proj_, DType::kF32, rows * hidden}, ctx_));
  }

  // Final norm and lm_head only for the rows that need logits.
  const int32_t n_out = plan.num_logit_rows;
  if (n_out == 0) return absl::Span<const float>();
  for (int32_t o = 0; o < n_out; ++o) {
    std::memcpy(last_hidden_ + o * hidden, x_ + int64_t{plan.logit_rows[o]} * hidden, hidden * sizeof(float));
  }
  TESSERA_RETURN_IF_ERROR(
      ops_.rms_norm({last_hidden_, model_.final_norm.data(), last_hidden_, DType::kF32, n_out, hidden, eps}, ctx_));
  LinearArgs head;
  head.x = last_hidden_;
  head.weight = model_.lm_head_weight();
  head.y = logits_;
  head.rows = n_out;
  head.in = hidden;
  head.out = c.vocab_size;
  TESSERA_RETURN_IF_ERROR(ops_.linear(head, ctx_));
  return absl::Span<const float>(logits_, static_cast<size_t>(n_out) * c.vocab_size);
}

}  // namespace tessera
