#include "server/model/model.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "server/model/checkpoint.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

class WeightReader {
 public:
  explicit WeightReader(const Checkpoint& ckpt) : ckpt_(ckpt) {}

  absl::Status Read(const std::string& name, const std::vector<int64_t>& shape, std::vector<float>* out) {
    Checkpoint::Entry e = ckpt_.Find(name);
    if (!e.view) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' with shape ", ShapeString(shape),
                       " is missing from the checkpoint (config.json and the weights disagree)"));
    }
    if (e.view->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          *e.file, ": tensor '", name, "' has shape ", ShapeString(e.view->shape),
          " but config.json implies ", ShapeString(shape), " (config.json from another model size?)"));
    }
    if (!dtype_set_) {
      dtype_ = e.view->dtype;
      dtype_set_ = true;
    }
    *out = e.view->ToFloat();
    return absl::OkStatus();
  }

  absl::Status ReadLinear(const std::string& prefix, int64_t out, int64_t in, bool bias, LinearWeights* w) {
    w->out = out;
    w->in = in;
    if (absl::Status s = Read(prefix + ".weight", {out, in}, &w->weight); !s.ok()) return s;
    if (bias) return Read(prefix + ".bias", {out}, &w->bias);
    return absl::OkStatus();
  }

  DType dtype() const { return dtype_; }

 private:
  const Checkpoint& ckpt_;
  DType dtype_ = DType::kF32;
  bool dtype_set_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model folder '", dir, "' does not exist or is not a directory"));
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::FromFile((fs::path(dir) / "config.json").string());
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();

  auto model = std::make_unique<Model>();
  model->dir = dir;
  model->name = fs::path(dir).lexically_normal().filename().string();
  if (model->name.empty()) model->name = fs::path(dir).lexically_normal().parent_path().filename().string();
  model->config = *config;
  const ModelConfig& c = model->config;
  const int64_t hidden = c.hidden_size;
  const int64_t q_out = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_out = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;

  WeightReader r(**ckpt);
  if (absl::Status s = r.Read("model.embed_tokens.weight", {c.vocab_size, hidden}, &model->embed_tokens);
      !s.ok())
    return s;
  if (absl::Status s = r.Read("model.norm.weight", {hidden}, &model->final_norm); !s.ok()) return s;
  if (!c.tie_word_embeddings) {
    if (absl::Status s = r.Read("lm_head.weight", {c.vocab_size, hidden}, &model->lm_head); !s.ok()) return s;
  }
  model->layers.resize(c.num_hidden_layers);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& L = model->layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    absl::Status s;
    if (s = r.Read(p + "input_layernorm.weight", {hidden}, &L.input_norm); !s.ok()) return s;
    if (s = r.Read(p + "post_attention_layernorm.weight", {hidden}, &L.post_attention_norm); !s.ok())
      return s;
    if (s = r.ReadLinear(p + "self_attn.q_proj", q_out, hidden, c.attention_bias, &L.q_proj); !s.ok())
      return s;
    if (s = r.ReadLinear(p + "self_attn.k_proj", kv_out, hidden, c.attention_bias, &L.k_proj); !s.ok())
      return s;
    if (s = r.ReadLinear(p + "self_attn.v_proj", kv_out, hidden, c.attention_bias, &L.v_proj); !s.ok())
      return s;
    if (s = r.ReadLinear(p + "self_attn.o_proj", hidden, q_out, false, &L.o_proj); !s.ok()) return s;
    if (s = r.ReadLinear(p + "mlp.gate_proj", c.intermediate_size, hidden, false, &L.gate_proj); !s.ok())
      return s;
    if (s = r.ReadLinear(p + "mlp.up_proj", c.intermediate_size, hidden, false, &L.up_proj); !s.ok())
      return s;
    if (s = r.ReadLinear(p + "mlp.down_proj", hidden, c.intermediate_size, false, &L.down_proj); !s.ok())
      return s;
  }
  model->checkpoint_dtype = r.dtype();
  model->rope_inv_freq = ComputeRopeInvFreq(c);
  spdlog::info("loaded {} ({}, {} layers, hidden {}, vocab {}, {} tensors from {} file(s), {})", model->name,
               c.architecture, c.num_hidden_layers, c.hidden_size, c.vocab_size, (*ckpt)->num_tensors(),
               (*ckpt)->files().size(), DTypeTorchName(model->checkpoint_dtype));
  return model;
}

}  // namespace tessera
