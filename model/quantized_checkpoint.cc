#include "model/quantized_checkpoint.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "model/model.h"
#include "model/safetensors.h"

namespace tessera {

namespace fs = std::filesystem;

absl::StatusOr<std::optional<QuantizedMarker>> ReadQuantizedMarker(const std::string& dir) {
  const fs::path path = fs::path(dir) / kQuantizedMarkerFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<QuantizedMarker>();
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", what,
                                                   " (re-create the folder with tessera-quantize)"));
  };
  absl::StatusOr<nlohmann::json> parsed = ReadJsonFile(path.string(), 1 << 20);
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || j.value("format", "") != "tessera-quantized") return fail("not a Tessera quantization marker");
  if (!j.contains("format_version") || j["format_version"] != 1) {
    return fail("unsupported format_version (this build reads version 1)");
  }
  if (!j.contains("quantization") || !j["quantization"].is_string() || !j.contains("group_size") ||
      !j["group_size"].is_number_integer()) {
    return fail("needs 'quantization' and 'group_size'");
  }
  absl::StatusOr<QuantOptions> quant =
      ParseQuantOptions(j["quantization"].get<std::string>(), j["group_size"].get<int64_t>());
  if (!quant.ok() || quant->format == WeightFormat::kF32) {
    return fail(absl::StrCat("bad quantization '", JsonExcerpt(j["quantization"]), "' / group_size ",
                             JsonExcerpt(j["group_size"])));
  }
  QuantizedMarker m;
  m.quant = *quant;
  m.source_dtype = j.value("source_dtype", "float32");
  return std::optional<QuantizedMarker>(m);
}

namespace {

std::vector<uint8_t> FloatBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

void AddFloat(const std::string& name, const std::vector<float>& v, const std::vector<int64_t>& shape,
              std::vector<TensorToWrite>* out) {
  out->push_back({name, DType::kF32, shape, FloatBytes(v)});
}

void AddLinear(const std::string& prefix, const LinearWeights& w, std::vector<TensorToWrite>* out) {
  const bool int4 = w.format == WeightFormat::kInt4;
  const int64_t groups = int4 ? (w.in + w.group_size - 1) / w.group_size : 0;
  out->push_back({prefix + ".qweight", int4 ? DType::kU8 : DType::kI8,
                  int4 ? std::vector<int64_t>{w.out, (w.in + 1) / 2} : std::vector<int64_t>{w.out, w.in},
                  w.qweight});
  AddFloat(prefix + ".scales", w.scales, int4 ? std::vector<int64_t>{w.out, groups} : std::vector<int64_t>{w.out},
           out);
  if (!w.bias.empty()) AddFloat(prefix + ".bias", w.bias, {w.out}, out);
}

}  // namespace

absl::Status WriteQuantizedCheckpoint(const Model& model, const std::string& out_dir) {
  if (model.quant.format == WeightFormat::kF32) {
    return absl::InvalidArgumentError("the model is not quantized; load it with --quantize int4 or int8");
  }
  std::error_code ec;
  if (fs::exists(out_dir, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(out_dir, " already exists; choose a new folder"));
  }
  const fs::path tmp = out_dir + ".partial";
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", tmp.string(), ": ", ec.message()));

  const ModelConfig& c = model.config;
  std::vector<TensorToWrite> tensors;
  AddFloat("model.embed_tokens.weight", model.embed_tokens, {c.vocab_size, c.hidden_size}, &tensors);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerWeights& L = model.layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    AddFloat(p + "input_layernorm.weight", L.input_norm, {c.hidden_size}, &tensors);
    AddFloat(p + "post_attention_layernorm.weight", L.post_attention_norm, {c.hidden_size}, &tensors);
    for (const LinearModule m : kLinearModules) AddLinear(LinearModulePrefix(i, m), L.linear(m), &tensors);
  }
  AddFloat("model.norm.weight", model.final_norm, {c.hidden_size}, &tensors);
  if (!model.lm_head.empty()) AddFloat("lm_head.weight", model.lm_head, {c.vocab_size, c.hidden_size}, &tensors);
  TESSERA_RETURN_IF_ERROR(WriteSafetensors((tmp / "model.safetensors").string(), tensors));

  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    const fs::path src = fs::path(model.dir) / f;
    if (!fs::exists(src, ec)) continue;
    fs::copy_file(src, tmp / f, ec);
    if (ec) return absl::DataLossError(absl::StrCat("cannot copy ", src.string(), ": ", ec.message()));
  }
  nlohmann::ordered_json marker = {
      {"format", "tessera-quantized"},
      {"format_version", 1},
      {"quantization", WeightFormatName(model.quant.format)},
      {"group_size", model.quant.group_size},
      {"source_dtype", DTypeTorchName(model.checkpoint_dtype)}};
  {
    std::ofstream out(tmp / kQuantizedMarkerFile);
    out << marker.dump(2) << "\n";
    if (!out) return absl::DataLossError(absl::StrCat("cannot write ", (tmp / kQuantizedMarkerFile).string()));
  }
  fs::rename(tmp, out_dir, ec);
  if (ec) return absl::DataLossError(absl::StrCat("cannot rename ", tmp.string(), " to ", out_dir, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace tessera
