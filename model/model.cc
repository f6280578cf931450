#include "model/model.h"

#include <cmath>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/exception_guard.h"
#include "absl/time/clock.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "kernels/cpu/thread_pool.h"
#include "model/checkpoint.h"
#include "model/quantized_checkpoint.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

class WeightReader {
 public:
  // prequantized: the checkpoint is in Tessera's quantized layout (see
  // quantized_checkpoint.h) with the scheme in quant.
  WeightReader(const Checkpoint& ckpt, const QuantOptions& quant, bool prequantized, ThreadPool& pool)
      : ckpt_(ckpt), quant_(quant), prequantized_(prequantized), pool_(pool) {}

  absl::Status Read(const std::string& name, const std::vector<int64_t>& shape, std::vector<float>* out) {
    TESSERA_ASSIGN_OR_RETURN(Checkpoint::Entry e, Find(name, shape, kFloat));
    *out = e.view->ToFloat();
    e.file->ReleasePages(*e.view);
    return absl::OkStatus();
  }

  // Reads [out, in] and stores it in the configured format, one row at a
  // time: no fp32 copy of a quantized tensor ever exists.
  absl::Status ReadLinear(const std::string& prefix, int64_t out, int64_t in, bool bias, LinearWeights* w) {
    w->out = out;
    w->in = in;
    w->format = quant_.format;
    if (prequantized_) {
      TESSERA_RETURN_IF_ERROR(ReadPrequantized(prefix, w));
      if (bias) return Read(prefix + ".bias", {out}, &w->bias);
      return absl::OkStatus();
    }
    TESSERA_ASSIGN_OR_RETURN(Checkpoint::Entry e, Find(prefix + ".weight", {out, in}, kFloat));
    if (quant_.format == WeightFormat::kF32) {
      w->weight = e.view->ToFloat();
    } else {
      const int64_t groups = (in + quant_.group_size - 1) / quant_.group_size;
      if (quant_.format == WeightFormat::kInt8) {
        w->qweight.resize(out * in);
        w->scales.resize(out);
      } else {
        w->group_size = quant_.group_size;
        w->qweight.resize(out * ((in + 1) / 2));
        w->scales.resize(out * groups);
      }
      // Rows are independent: quantize them on every core.
      pool_.ParallelFor(out, std::max<int64_t>(1, 65536 / in), [&](int64_t begin, int64_t end) {
        std::vector<float> row(in);
        for (int64_t o = begin; o < end; ++o) {
          e.view->ToFloatRange(o * in, in, row.data());
          if (quant_.format == WeightFormat::kInt8) {
            QuantizeRowInt8(row.data(), in, reinterpret_cast<int8_t*>(w->qweight.data()) + o * in, &w->scales[o]);
          } else {
            QuantizeRowInt4(row.data(), in, quant_.group_size, w->qweight.data() + o * ((in + 1) / 2),
                            w->scales.data() + o * groups);
          }
        }
      });
    }
    e.file->ReleasePages(*e.view);
    if (bias) return Read(prefix + ".bias", {out}, &w->bias);
    return absl::OkStatus();
  }

  DType dtype() const { return dtype_; }
  int64_t largest_tensor_bytes() const { return largest_; }

 private:
  enum DTypeClass { kFloat, kInt8, kUInt8 };

  // int8 [out, in] or packed int4 [out, ceil(in/2)] plus fp32 scales, copied
  // as stored; scales must be finite and positive.
  absl::Status ReadPrequantized(const std::string& prefix, LinearWeights* w) {
    const bool int4 = quant_.format == WeightFormat::kInt4;
    const int64_t groups = int4 ? (w->in + quant_.group_size - 1) / quant_.group_size : 0;
    TESSERA_ASSIGN_OR_RETURN(
        Checkpoint::Entry q,
        Find(prefix + ".qweight", int4 ? std::vector<int64_t>{w->out, (w->in + 1) / 2} : std::vector<int64_t>{w->out, w->in},
             int4 ? kUInt8 : kInt8));
    TESSERA_ASSIGN_OR_RETURN(
        Checkpoint::Entry sc,
        Find(prefix + ".scales", int4 ? std::vector<int64_t>{w->out, groups} : std::vector<int64_t>{w->out}, kFloat));
    if (int4) w->group_size = quant_.group_size;
    w->qweight.assign(q.view->data, q.view->data + q.view->nbytes);
    w->scales = sc.view->ToFloat();
    for (float s : w->scales) {
      if (!std::isfinite(s) || s <= 0) {
        return absl::DataLossError(absl::StrCat(sc.file->path(), ": tensor '", prefix,
                                                ".scales' holds a non-positive or non-finite scale (", s,
                                                "); the pre-quantized file is corrupt, re-create it with "
                                                "tessera-quantize"));
      }
    }
    q.file->ReleasePages(*q.view);
    sc.file->ReleasePages(*sc.view);
    return absl::OkStatus();
  }

  absl::StatusOr<Checkpoint::Entry> Find(const std::string& name, const std::vector<int64_t>& shape,
                                         DTypeClass want) {
    Checkpoint::Entry e = ckpt_.Find(name);
    if (!e.view) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' with shape ", ShapeString(shape),
                                                     " is missing from the checkpoint (config.json and the "
                                                     "weights disagree)"));
    }
    if (e.view->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(e.file->path(), ": tensor '", name, "' has shape ",
                                                     ShapeString(e.view->shape), " but config.json implies ",
                                                     ShapeString(shape), " (config.json from another model size?)"));
    }
    const bool dtype_ok = want == kFloat   ? IsFloatDType(e.view->dtype)
                          : want == kInt8 ? e.view->dtype == DType::kI8
                                          : e.view->dtype == DType::kU8;
    if (!dtype_ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          e.file->path(), ": tensor '", name, "' has dtype ", DTypeName(e.view->dtype), "; expected ",
          want == kFloat ? "F32, F16 or BF16" : want == kInt8 ? "I8" : "U8"));
    }
    if (!dtype_set_ && want == kFloat) {
      dtype_ = e.view->dtype;
      dtype_set_ = true;
    }
    largest_ = std::max<int64_t>(largest_, static_cast<int64_t>(e.view->nbytes));
    return e;
  }

  const Checkpoint& ckpt_;
  const QuantOptions quant_;
  const bool prequantized_;
  ThreadPool& pool_;
  DType dtype_ = DType::kF32;
  bool dtype_set_ = false;
  int64_t largest_ = 0;
};

int64_t VectorBytes(const std::vector<float>& v) { return static_cast<int64_t>(v.size() * sizeof(float)); }

}  // namespace

LinearWeights& LayerWeights::linear(LinearModule m) {
  switch (m) {
    case LinearModule::kQ: return q_proj;
    case LinearModule::kK: return k_proj;
    case LinearModule::kV: return v_proj;
    case LinearModule::kO: return o_proj;
    case LinearModule::kGate: return gate_proj;
    case LinearModule::kUp: return up_proj;
    case LinearModule::kDown: return down_proj;
  }
  return q_proj;
}

int64_t LinearWeights::bytes() const {
  return VectorBytes(weight) + static_cast<int64_t>(qweight.size()) + VectorBytes(scales) + VectorBytes(bias);
}

namespace {
absl::StatusOr<std::unique_ptr<Model>> LoadModelUnguarded(const std::string& dir, const LoadOptions& options) {
  const absl::Time start = absl::Now();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model folder '", dir, "' does not exist or is not a directory"));
  }
  TESSERA_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromFile((fs::path(dir) / "config.json").string()));
  TESSERA_ASSIGN_OR_RETURN(std::optional<QuantizedMarker> marker, ReadQuantizedMarker(dir));
  if (marker && (marker->quant.format != options.quant.format ||
                 (marker->quant.format == WeightFormat::kInt4 && marker->quant.group_size != options.quant.group_size))) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " is pre-quantized as ", DescribeQuantization(marker->quant), " but ",
        DescribeQuantization(options.quant), " was asked for; pass --quantize ", WeightFormatName(marker->quant.format),
        marker->quant.format == WeightFormat::kInt4 ? absl::StrCat(" --quant-group-size ", marker->quant.group_size) : "",
        " or load the original checkpoint"));
  }
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));

  auto model = std::make_unique<Model>();
  model->dir = dir;
  model->name = fs::path(dir).lexically_normal().filename().string();
  if (model->name.empty()) model->name = fs::path(dir).lexically_normal().parent_path().filename().string();
  model->config = std::move(config);
  model->quant = options.quant;
  const ModelConfig& c = model->config;
  const int64_t hidden = c.hidden_size;

  ThreadPool pool(options.num_threads > 0 ? options.num_threads
                                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  WeightReader r(*ckpt, options.quant, marker.has_value(), pool);
  TESSERA_RETURN_IF_ERROR(r.Read("model.embed_tokens.weight", {c.vocab_size, hidden}, &model->embed_tokens));
  TESSERA_RETURN_IF_ERROR(r.Read("model.norm.weight", {hidden}, &model->final_norm));
  if (!c.tie_word_embeddings) {
    TESSERA_RETURN_IF_ERROR(r.Read("lm_head.weight", {c.vocab_size, hidden}, &model->lm_head));
  }
  int64_t weight_bytes = VectorBytes(model->embed_tokens) + VectorBytes(model->final_norm) + VectorBytes(model->lm_head);
  model->layers.resize(c.num_hidden_layers);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& L = model->layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    TESSERA_RETURN_IF_ERROR(r.Read(p + "input_layernorm.weight", {hidden}, &L.input_norm));
    TESSERA_RETURN_IF_ERROR(r.Read(p + "post_attention_layernorm.weight", {hidden}, &L.post_attention_norm));
    weight_bytes += VectorBytes(L.input_norm) + VectorBytes(L.post_attention_norm);
    for (const LinearModule m : kLinearModules) {
      const auto [out, in] = BaseLinearShape(c, m);
      TESSERA_RETURN_IF_ERROR(r.ReadLinear(LinearModulePrefix(i, m), out, in, BaseLinearHasBias(c, m), &L.linear(m)));
      weight_bytes += L.linear(m).bytes();
    }
    spdlog::debug("loaded layer {}/{}", i + 1, c.num_hidden_layers);
  }
  model->checkpoint_dtype = r.dtype();
  if (marker) {
    model->prequantized = true;
    if (marker->source_dtype == "bfloat16") model->checkpoint_dtype = DType::kBF16;
    if (marker->source_dtype == "float16") model->checkpoint_dtype = DType::kF16;
  }
  model->rope_inv_freq = ComputeRopeInvFreq(c);
  model->stats.weight_bytes = weight_bytes;
  model->stats.largest_tensor_bytes = r.largest_tensor_bytes();
  model->stats.peak_rss_bytes = PeakRssBytes();
  model->stats.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  spdlog::info(
      "loaded {} ({}, {} layers, hidden {}, vocab {}, {} tensors from {} file(s), {}) in {:.2f} s; "
      "quantization {}{}, weights {:.1f} MiB, largest tensor {:.1f} MiB, peak RSS {:.1f} MiB",
      model->name, c.architecture, c.num_hidden_layers, c.hidden_size, c.vocab_size, ckpt->num_tensors(),
      ckpt->files().size(), DTypeTorchName(model->checkpoint_dtype), model->stats.seconds,
      DescribeQuantization(model->quant), model->prequantized ? " (pre-quantized)" : "", weight_bytes / 1048576.0, model->stats.largest_tensor_bytes / 1048576.0,
      model->stats.peak_rss_bytes / 1048576.0);
  return model;
}
}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir, const LoadOptions& options) {
  return GuardExceptions(absl::StrCat("loading the model from ", dir),
                         [&] { return LoadModelUnguarded(dir, options); });
}

}  // namespace tessera
