#include "server/engine/engine.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/kv_cache_write.h"
#include "kernels/linear.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

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
  const int64_t blocks = (options.kv_cache_tokens + options.kv_block_size - 1) / options.kv_block_size;
  return std::unique_ptr<Engine>(new Engine(model, options, static_cast<int32_t>(blocks)));
}

Engine::Engine(const Model& model, const EngineOptions& options, int32_t num_blocks)
    : model_(model),
      pool_(options.num_threads),
      kv_cache_(model.config.num_hidden_layers, num_blocks, options.kv_block_size,
                model.config.num_key_value_heads, model.config.head_dim) {}

void Engine::Reserve(int64_t rows) {
  if (rows <= reserved_rows_) return;
  const ModelConfig& c = model_.config;
  const int64_t q_width = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_width = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  x_.resize(rows * c.hidden_size);
  h_.resize(rows * c.hidden_size);
  proj_.resize(rows * c.hidden_size);
  q_.resize(rows * q_width);
  attn_.resize(rows * q_width);
  k_.resize(rows * kv_width);
  v_.resize(rows * kv_width);
  gate_.resize(rows * c.intermediate_size);
  up_.resize(rows * c.intermediate_size);
  reserved_rows_ = rows;
}

absl::Status Engine::ValidatePlan(const BatchPlan& plan, AdapterSlots adapters) const {
  const int32_t rows = plan.num_tokens();
  if (rows == 0) return absl::InvalidArgumentError("plan has no tokens");
  if (plan.positions.size() != plan.token_ids.size()) {
    return absl::InvalidArgumentError("plan positions and token ids differ in length");
  }
  for (int32_t r = 0; r < rows; ++r) {
    if (plan.token_ids[r] < 0 || plan.token_ids[r] >= model_.config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", plan.token_ids[r], " is outside the vocabulary [0, ", model_.config.vocab_size, ")"));
    }
    if (plan.positions[r] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("position ", plan.positions[r], " is negative"));
    }
  }
  int32_t next_row = 0;
  for (const SequencePlan& s : plan.sequences) {
    if (s.query_begin != next_row || s.query_len < 1) {
      return absl::InvalidArgumentError("plan sequences must cover the rows contiguously, in order");
    }
    next_row += s.query_len;
    const int64_t needed = kv_cache_.BlocksFor(static_cast<int64_t>(s.kv_len) + s.query_len);
    if (static_cast<int64_t>(s.block_table.size()) < needed) {
      return absl::InvalidArgumentError(
          absl::StrCat("block table has ", s.block_table.size(), " blocks, ", needed, " needed"));
    }
    for (int32_t b : s.block_table) {
      if (b < 0 || b >= kv_cache_.num_blocks()) {
        return absl::InvalidArgumentError(absl::StrCat("block ", b, " is out of range"));
      }
    }
  }
  if (next_row != rows) return absl::InvalidArgumentError("plan sequences do not cover every row");
  for (const AdapterSegment& seg : plan.adapter_segments) {
    if (seg.row_begin < 0 || seg.row_count < 1 || seg.row_begin + seg.row_count > rows) {
      return absl::InvalidArgumentError(absl::StrCat("adapter segment rows [", seg.row_begin, ", +",
                                                     seg.row_count, ") fall outside the ", rows,
                                                     " rows of the step"));
    }
    const int32_t slots = static_cast<int32_t>(adapters.size());
    if (seg.slot < 0 || seg.slot >= slots || adapters[seg.slot] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter segment names slot ", seg.slot, " but ", slots, " adapters are loaded"));
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::Linear(const LinearWeights& w, const float* x, int64_t rows, float* y,
                            const BatchPlan& plan, int32_t layer, LinearModule module) {
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
  TESSERA_RETURN_IF_ERROR(LinearCpu(a, pool_));
  if (plan.adapter_segments.empty()) return absl::OkStatus();

  lora_segments_.clear();
  diablo_segments_.clear();
  road_segments_.clear();
  for (const AdapterSegment& seg : plan.adapter_segments) {
    const AdapterModule& m = adapters_[seg.slot]->module(layer, module);
    if (m.lora) {
      lora_segments_.push_back(
          {seg.row_begin, seg.row_count, m.lora->a.data(), m.lora->b.data(), m.lora->rank, m.lora->scale});
    } else if (m.diablo) {
      diablo_segments_.push_back({seg.row_begin, seg.row_count, m.diablo->block.data(), m.diablo->blocks,
                                  m.diablo->d1, m.diablo->d2});
    } else if (m.road) {
      road_segments_.push_back(
          {seg.row_begin, seg.row_count, m.road->c.data(), m.road->s.data(), m.road->group});
    }
  }
  if (!lora_segments_.empty()) {
    TESSERA_RETURN_IF_ERROR(LoraApplyCpu(
        {x, y, w.in, w.out, lora_segments_.data(), static_cast<int32_t>(lora_segments_.size())}, pool_));
  }
  if (!diablo_segments_.empty()) {
    TESSERA_RETURN_IF_ERROR(DiabloApplyCpu(
        {x, y, w.in, w.out, diablo_segments_.data(), static_cast<int32_t>(diablo_segments_.size())}, pool_));
  }
  if (!road_segments_.empty()) {
    TESSERA_RETURN_IF_ERROR(
        RoadApplyCpu({y, w.out, road_segments_.data(), static_cast<int32_t>(road_segments_.size())}));
  }
  return absl::OkStatus();
}

absl::Status Engine::Step(const BatchPlan& plan, std::vector<float>* logits, AdapterSlots adapters) {
  TESSERA_RETURN_IF_ERROR(ValidatePlan(plan, adapters));
  adapters_ = adapters;
  const ModelConfig& c = model_.config;
  const int64_t rows = plan.num_tokens();
  const int64_t hidden = c.hidden_size;
  Reserve(rows);

  TESSERA_RETURN_IF_ERROR(EmbeddingCpu(
      {model_.embed_tokens.data(), plan.token_ids.data(), x_.data(), rows, c.vocab_size, hidden}));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (int32_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = model_.layers[l];
    TESSERA_RETURN_IF_ERROR(RmsNormCpu(
        {x_.data(), L.input_norm.data(), h_.data(), rows, hidden, static_cast<float>(c.rms_norm_eps)},
        pool_));
    TESSERA_RETURN_IF_ERROR(Linear(L.q_proj, h_.data(), rows, q_.data(), plan, l, LinearModule::kQ));
    TESSERA_RETURN_IF_ERROR(Linear(L.k_proj, h_.data(), rows, k_.data(), plan, l, LinearModule::kK));
    TESSERA_RETURN_IF_ERROR(Linear(L.v_proj, h_.data(), rows, v_.data(), plan, l, LinearModule::kV));
    RopeArgs rope;
    rope.q = q_.data();
    rope.k = k_.data();
    rope.positions = plan.positions.data();
    rope.inv_freq = model_.rope_inv_freq.data();
    rope.rows = rows;
    rope.num_q_heads = c.num_attention_heads;
    rope.num_kv_heads = c.num_key_value_heads;
    rope.head_dim = c.head_dim;
    rope.rotary_dims = RopeRotaryDims(c);
    TESSERA_RETURN_IF_ERROR(RopeCpu(rope, pool_));
    KvCacheWriteArgs kvw;
    kvw.k = k_.data();
    kvw.v = v_.data();
    kvw.k_cache = kv_cache_.k(l);
    kvw.v_cache = kv_cache_.v(l);
    kvw.plan = &plan;
    kvw.num_blocks = kv_cache_.num_blocks();
    kvw.block_size = kv_cache_.block_size();
    kvw.num_kv_heads = c.num_key_value_heads;
    kvw.head_dim = c.head_dim;
    TESSERA_RETURN_IF_ERROR(KvCacheWriteCpu(kvw));
    AttentionArgs at;
    at.q = q_.data();
    at.k_cache = kv_cache_.k(l);
    at.v_cache = kv_cache_.v(l);
    at.out = attn_.data();
    at.plan = &plan;
    at.block_size = kv_cache_.block_size();
    at.num_q_heads = c.num_attention_heads;
    at.num_kv_heads = c.num_key_value_heads;
    at.head_dim = c.head_dim;
    at.scale = scale;
    TESSERA_RETURN_IF_ERROR(AttentionCpu(at, pool_));
    TESSERA_RETURN_IF_ERROR(Linear(L.o_proj, attn_.data(), rows, proj_.data(), plan, l, LinearModule::kO));
    TESSERA_RETURN_IF_ERROR(ResidualAddCpu({x_.data(), proj_.data(), rows * hidden}, pool_));

    TESSERA_RETURN_IF_ERROR(RmsNormCpu({x_.data(), L.post_attention_norm.data(), h_.data(), rows, hidden,
                                        static_cast<float>(c.rms_norm_eps)},
                                       pool_));
    TESSERA_RETURN_IF_ERROR(Linear(L.gate_proj, h_.data(), rows, gate_.data(), plan, l, LinearModule::kGate));
    TESSERA_RETURN_IF_ERROR(Linear(L.up_proj, h_.data(), rows, up_.data(), plan, l, LinearModule::kUp));
    TESSERA_RETURN_IF_ERROR(
        SwiGluCpu({gate_.data(), up_.data(), gate_.data(), rows * c.intermediate_size}, pool_));
    TESSERA_RETURN_IF_ERROR(
        Linear(L.down_proj, gate_.data(), rows, proj_.data(), plan, l, LinearModule::kDown));
    TESSERA_RETURN_IF_ERROR(ResidualAddCpu({x_.data(), proj_.data(), rows * hidden}, pool_));
  }

  // Final norm and lm_head only for the rows that need logits.
  const int32_t n_out = plan.num_logit_rows();
  last_hidden_.resize(static_cast<size_t>(n_out) * hidden);
  int32_t o = 0;
  for (const SequencePlan& s : plan.sequences) {
    if (!s.needs_logits) continue;
    const int64_t row = s.query_begin + s.query_len - 1;
    std::memcpy(last_hidden_.data() + o * hidden, x_.data() + row * hidden, hidden * sizeof(float));
    ++o;
  }
  logits->resize(static_cast<size_t>(n_out) * c.vocab_size);
  if (n_out == 0) return absl::OkStatus();
  TESSERA_RETURN_IF_ERROR(RmsNormCpu({last_hidden_.data(), model_.final_norm.data(), last_hidden_.data(),
                                      n_out, hidden, static_cast<float>(c.rms_norm_eps)},
                                     pool_));
  LinearArgs head;
  head.x = last_hidden_.data();
  head.weight = model_.lm_head_weight();
  head.y = logits->data();
  head.rows = n_out;
  head.in = hidden;
  head.out = c.vocab_size;
  return LinearCpu(head, pool_);
}

}  // namespace tessera
