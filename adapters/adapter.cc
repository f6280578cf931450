#include "adapters/adapter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/numbers.h"
#include "common/exception_guard.h"
#include "common/json_util.h"
#include "kernels/supported_shapes.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "model/safetensors.h"
#include "spdlog/spdlog.h"

namespace tessera {

namespace fs = std::filesystem;
using nlohmann::json;

const char* AdapterKindName(AdapterKind kind) {
  switch (kind) {
    case AdapterKind::kLora:
      return "lora";
    case AdapterKind::kRoad:
      return "road";
    case AdapterKind::kDiablo:
      return "diablo";
  }
  return "?";
}

std::string Adapter::DisplayKind() const {
  if (kind == AdapterKind::kLora && !watermark.empty()) return "seal";
  return AdapterKindName(kind);
}

std::shared_ptr<const Adapter> Adapter::Metadata() const {
  auto copy = std::make_shared<Adapter>();
  copy->name = name;
  copy->dir = dir;
  copy->kind = kind;
  copy->watermark = watermark;
  copy->num_layers = num_layers;
  copy->parameter_bytes = parameter_bytes;
  return copy;
}

namespace {

// Python-re-compatible matching through PCRE2: fullmatch, or peft's
// pattern-key rule re.match(rf"(.*\.)?({k})$", key).
absl::StatusOr<bool> RegexMatches(const std::string& pattern, const std::string& text, bool full) {
  int err;
  PCRE2_SIZE off;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF,
                                 &err, &off, nullptr);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return absl::InvalidArgumentError(
        absl::StrCat("pattern '", Excerpt(pattern), "' does not compile: ", reinterpret_cast<char*>(msg)));
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  // Bounded backtracking: a pathological pattern fails instead of spinning.
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mc, 1'000'000);
  pcre2_set_depth_limit(mc, 10'000);
  const uint32_t opts = PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0);
  const int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, opts, md, mc);
  pcre2_match_context_free(mc);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    return absl::InvalidArgumentError(
        absl::StrCat("pattern '", Excerpt(pattern), "' is too expensive to match (backtracking limit)"));
  }
  return rc >= 0;
}

struct ModuleRef {
  int32_t layer;
  LinearModule module;
  std::string path;  // model.layers.N.self_attn.q_proj
};

// "model.layers.3.mlp.up_proj" -> its place in the base.
std::optional<ModuleRef> ParseModulePath(const std::string& path, int32_t num_layers) {
  std::optional<LinearModulePath> p = ParseLinearModulePath(path, num_layers);
  if (!p) return std::nullopt;
  return ModuleRef{p->layer, p->module, path};
}


// Loading context: the adapter's name prefixes every error.
class Loader {
 public:
  Loader(std::string name, std::string dir, const ModelConfig& base, const AdapterLimits& limits)
      : name_(std::move(name)), dir_(std::move(dir)), base_(base), limits_(limits) {}

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("adapter '", name_, "': ", what));
  }

  absl::StatusOr<AdapterSource> Open() {
    std::error_code ec;
    if (!fs::is_directory(dir_, ec)) {
      return absl::NotFoundError(absl::StrCat("adapter '", name_, "': folder '", dir_, "' does not exist"));
    }
    const fs::path config_path = fs::path(dir_) / "adapter_config.json";
    const fs::path weights_path = fs::path(dir_) / "adapter_model.safetensors";
    std::string config_text;
    {
      std::ifstream in(config_path, std::ios::binary);
      if (!in)
        return Error(absl::StrCat(config_path.string(), " is missing (is this a peft adapter folder?)"));
      char buf[4096];
      while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
        config_text.append(buf, static_cast<size_t>(in.gcount()));
        if (config_text.size() > static_cast<size_t>(kMaxAdapterConfigBytes)) break;
      }
    }
    if (!fs::exists(weights_path, ec)) {
      return Error(absl::StrCat(
          weights_path.string(),
          " is missing (adapter_model.bin is not supported; save with safe_serialization=True)"));
    }
    const int64_t size = static_cast<int64_t>(fs::file_size(weights_path, ec));
    if (size > limits_.max_file_bytes) {
      return Error(absl::StrCat(weights_path.string(), " is ", size, " bytes, over the limit of ",
                                limits_.max_file_bytes, " (raise --max-adapter-mb)"));
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(weights_path.string());
    if (!file.ok()) return Error(std::string(file.status().message()));
    return LoadParts(config_text, *std::move(file));
  }

  // The adapter from its config text and opened weights (any source).
  absl::StatusOr<AdapterSource> LoadParts(std::string_view config_text, std::unique_ptr<SafetensorsFile> file) {
    absl::StatusOr<json> parsed = ParseJson(config_text, "adapter_config.json", kMaxAdapterConfigBytes);
    if (!parsed.ok()) return Error(std::string(parsed.status().message()));
    config_ = *std::move(parsed);
    file_ = std::move(file);

    adapter_ = std::make_shared<Adapter>();
    adapter_->name = name_;
    adapter_->dir = dir_;
    adapter_->num_layers = base_.num_hidden_layers;
    if (!config_.is_object()) return Error("adapter_config.json is not an object");
    const std::string type = config_.value("peft_type", "");
    absl::Status s;
    try {
      TESSERA_RETURN_IF_ERROR(GroupTensors());
      if (type == "LORA") {
        s = LoadLora();
      } else if (type == "ROAD") {
        s = LoadRoad();
      } else if (type == "DIABLO") {
        s = LoadDiablo();
      } else {
        return Error(absl::StrCat("peft_type '", type, "' is not supported (LORA, ROAD, DIABLO)"));
      }
    } catch (const json::exception& e) {
      return Error(absl::StrCat("adapter_config.json has a field of the wrong type: ", e.what()));
    }
    TESSERA_RETURN_IF_ERROR(s);
    if (modules_.empty()) return Error("no module of the base model is targeted (empty adapter?)");
    spdlog::debug("adapter '{}': {} on {} linear layers, {:.2f} MiB, from {}", name_, adapter_->DisplayKind(),
                  modules_.size(), adapter_->parameter_bytes / 1048576.0, dir_);
    AdapterSource source;
    source.adapter = std::move(adapter_);
    source.file = std::move(file_);
    source.modules = std::move(modules_);
    return source;
  }

 private:
  // Maps every tensor "base_model.model.<module>.<param>" to its module.
  absl::Status GroupTensors() {
    const std::string kPrefix = "base_model.model.";
    for (const auto& [key, view] : file_->tensors()) {
      if (key.rfind(kPrefix, 0) != 0) {
        return Error(absl::StrCat("tensor '", Excerpt(key), "' does not start with '", kPrefix,
                                  "' (not a peft adapter?)"));
      }
      // The parameter is the suffix after the module path: lora_A.weight,
      // road_theta, block_A, ...
      const std::string rest = key.substr(kPrefix.size());
      // The module path ends at the first "_proj." followed by a parameter.
      const size_t split = rest.find("_proj.");
      std::optional<ModuleRef> ref;
      std::string param;
      if (split != std::string::npos && split + 6 < rest.size()) {
        ref = ParseModulePath(rest.substr(0, split + 5), base_.num_hidden_layers);
        param = rest.substr(split + 6);
      }
      if (!ref) {
        return Error(absl::StrCat("tensor '", Excerpt(key),
                                  "' targets a module the base model does not have (the base has ",
                                  base_.num_hidden_layers,
                                  " layers with self_attn.{q,k,v,o}_proj and "
                                  "mlp.{gate,up,down}_proj; trained for another base model?)"));
      }
      if (!IsFloatDType(view.dtype)) {
        return Error(absl::StrCat("tensor '", Excerpt(key), "' has dtype ", DTypeName(view.dtype),
                                  "; adapters must be F32, F16 or BF16"));
      }
      tensors_[ref->path][param] = &view;
      refs_.emplace(ref->path, *ref);
    }
    return absl::OkStatus();
  }

  // A tensor of one module, checked for shape (its values are read later).
  absl::StatusOr<AdapterTensorSource> Tensor(const ModuleRef& ref, const std::string& param,
                                             const std::vector<int64_t>& shape) {
    auto it = tensors_[ref.path].find(param);
    if (it == tensors_[ref.path].end()) {
      return Error(absl::StrCat(ref.path, ": '", param, "' is missing"));
    }
    const TensorView& v = *it->second;
    if (v.shape != shape) {
      const auto [out, in] = BaseLinearShape(base_, ref.module);
      return Error(absl::StrCat(ref.path, ".", param, " has shape ", ShapeString(v.shape), ", expected ",
                                ShapeString(shape), " for the base's ", ref.path, " [out=", out, ", in=", in,
                                "] (trained for another base model?)"));
    }
    adapter_->parameter_bytes += v.numel() * static_cast<int64_t>(sizeof(float));
    return AdapterTensorSource{&v, absl::StrCat(ref.path, ".", param)};
  }

  // An integer field of adapter_config.json in [lo, hi]; InvalidArgument
  // naming the adapter otherwise (floats and huge values included).
  absl::StatusOr<int64_t> ConfigInt(const char* key, int64_t fallback, int64_t lo, int64_t hi) const {
    absl::StatusOr<int64_t> v = JsonIntField(config_, key, fallback, lo, hi);
    if (!v.ok()) return Error(absl::StrCat("adapter_config.json: ", v.status().message()));
    return v;
  }

  absl::Status RejectUnknownParams(const ModuleRef& ref, std::initializer_list<const char*> known) {
    for (const auto& [param, view] : tensors_[ref.path]) {
      bool ok = false;
      for (const char* k : known) ok |= param == k;
      if (!ok) {
        return Error(absl::StrCat(ref.path, ": tensor '", Excerpt(param), "' is not supported for peft_type ",
                                  config_.value("peft_type", ""),
                                  " (DoRA, biases and embeddings are not supported)"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Targeted(const std::string& path) {
    const json& t = config_.contains("target_modules") ? config_["target_modules"] : json();
    if (t.is_string()) return RegexMatches(t.get<std::string>(), path, /*full=*/true);
    if (t.is_array()) {
      for (const json& e : t) {
        const std::string name = e.get<std::string>();
        if (path == name || (path.size() > name.size() && path.ends_with("." + name))) return true;
      }
      return false;
    }
    return true;  // absent: trust the tensors
  }

  // peft: the first key k of a pattern dict with re.match(rf"(.*\.)?({k})$", path).
  absl::StatusOr<std::optional<json>> PatternValue(const char* field, const std::string& path) {
    if (!config_.contains(field) || !config_[field].is_object()) return std::optional<json>();
    for (auto it = config_[field].begin(); it != config_[field].end(); ++it) {
      TESSERA_ASSIGN_OR_RETURN(bool hit,
                               RegexMatches(absl::StrCat("(.*\\.)?(", it.key(), ")$"), path, false));
      if (hit) return std::optional<json>(it.value());
    }
    return std::optional<json>();
  }

  absl::Status CheckTargeted(const ModuleRef& ref) {
    TESSERA_ASSIGN_OR_RETURN(bool targeted, Targeted(ref.path));
    if (!targeted) {
      return Error(absl::StrCat("has weights for ", ref.path, " but target_modules (",
                                JsonExcerpt(config_["target_modules"]),
                                ") does not name it; the config and the "
                                "weights disagree"));
    }
    return absl::OkStatus();
  }

  absl::Status LoadLora() {
    adapter_->kind = AdapterKind::kLora;
    const std::string bias = config_.value("bias", "none");
    if (bias != "none") {
      return Error(
          absl::StrCat("bias '", bias, "' is not supported; only bias='none' (re-train with bias='none')"));
    }
    if (config_.value("lora_bias", false)) return Error("lora_bias=true is not supported");
    if (config_.value("use_dora", false)) return Error("use_dora=true (DoRA) is not supported");
    if (config_.contains("modules_to_save") && !config_["modules_to_save"].is_null() &&
        !config_["modules_to_save"].empty()) {
      return Error(absl::StrCat("modules_to_save (", JsonExcerpt(config_["modules_to_save"]),
                                ") is not supported: Tessera serves one shared base model"));
    }
    if (config_.value("fan_in_fan_out", false)) {
      // peft applies lora_A/lora_B as nn.Linear either way; the flag only
      // changes how a delta is merged into Conv1D weights.
      spdlog::warn("adapter '{}': fan_in_fan_out=true has no effect on nn.Linear targets", name_);
    }
    if (config_.contains("watermark")) {
      adapter_->watermark = config_["watermark"].is_string() ? config_["watermark"].get<std::string>()
                                                             : config_["watermark"].dump();
    }
    TESSERA_ASSIGN_OR_RETURN(const int64_t r_default, ConfigInt("r", 8, 1, 1 << 20));
    const double alpha_default = config_.value("lora_alpha", 8.0);
    const bool rslora = config_.value("use_rslora", false);
    for (const auto& [path, ref] : refs_) {
      TESSERA_RETURN_IF_ERROR(CheckTargeted(ref));
      TESSERA_RETURN_IF_ERROR(RejectUnknownParams(ref, {"lora_A.weight", "lora_B.weight"}));
      TESSERA_ASSIGN_OR_RETURN(std::optional<json> r_pat, PatternValue("rank_pattern", path));
      TESSERA_ASSIGN_OR_RETURN(std::optional<json> a_pat, PatternValue("alpha_pattern", path));
      int64_t r = r_default;
      if (r_pat) {
        absl::StatusOr<int64_t> checked = JsonInt(*r_pat, "rank_pattern value", 1, 1 << 20);
        if (!checked.ok()) return Error(absl::StrCat(path, ": ", checked.status().message()));
        r = *checked;
      }
      const double alpha = a_pat ? a_pat->get<double>() : alpha_default;
      if (r < 1) return Error(absl::StrCat(path, ": rank ", r, " must be positive"));
      const int32_t max_rank = std::min(limits_.max_rank, kMaxLoraRank);
      if (r > max_rank) {
        return Error(absl::StrCat(path, ": rank ", r, " is over the limit of ", max_rank,
                                  max_rank < kMaxLoraRank ? " (raise --max-lora-rank)" : " (the kernels' largest)"));
      }
      const auto [out, in] = BaseLinearShape(base_, ref.module);
      AdapterModuleSource& m = Module(ref);
      m.rank = static_cast<int32_t>(r);
      m.scale = static_cast<float>(rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r);
      TESSERA_ASSIGN_OR_RETURN(m.a, Tensor(ref, "lora_A.weight", {r, in}));
      TESSERA_ASSIGN_OR_RETURN(m.b, Tensor(ref, "lora_B.weight", {out, r}));
    }
    return absl::OkStatus();
  }

  absl::Status LoadRoad() {
    adapter_->kind = AdapterKind::kRoad;
    const std::string variant = config_.value("variant", "road_1");
    TESSERA_ASSIGN_OR_RETURN(const int64_t group, ConfigInt("group_size", 64, 1, 1 << 20));
    if (variant != "road_1" && variant != "road_2" && variant != "road_4") {
      return Error(absl::StrCat("variant '", variant, "' is not supported (road_1, road_2, road_4)"));
    }
    if (group < 2 || group % 2 != 0)
      return Error(absl::StrCat("group_size ", group, " must be even and >= 2"));
    for (const auto& [path, ref] : refs_) {
      TESSERA_RETURN_IF_ERROR(CheckTargeted(ref));
      TESSERA_RETURN_IF_ERROR(RejectUnknownParams(ref, {"road_theta", "road_alpha"}));
      const int64_t out = BaseLinearShape(base_, ref.module).first;
      if (out % group != 0) {
        return Error(absl::StrCat(path, ": out=", out, " is not a multiple of group_size ", group));
      }
      const int64_t n = variant == "road_1" ? out / 2 : variant == "road_2" ? out : 2 * out;
      AdapterModuleSource& m = Module(ref);
      m.group = static_cast<int32_t>(group);
      m.road_variant = variant == "road_1" ? 1 : variant == "road_2" ? 2 : 4;
      TESSERA_ASSIGN_OR_RETURN(m.theta, Tensor(ref, "road_theta", {n}));
      TESSERA_ASSIGN_OR_RETURN(m.alpha, Tensor(ref, "road_alpha", {n}));
    }
    return absl::OkStatus();
  }

  absl::Status LoadDiablo() {
    adapter_->kind = AdapterKind::kDiablo;
    TESSERA_ASSIGN_OR_RETURN(const int64_t nb, ConfigInt("num_blocks", 0, 0, 1 << 20));
    if (nb < 1) return Error("num_blocks must be a positive integer");
    for (const auto& [path, ref] : refs_) {
      TESSERA_RETURN_IF_ERROR(CheckTargeted(ref));
      TESSERA_RETURN_IF_ERROR(RejectUnknownParams(ref, {"block_A"}));
      const auto [out, in] = BaseLinearShape(base_, ref.module);
      const int64_t d1 = (in + nb - 1) / nb, d2 = (out + nb - 1) / nb;
      const int64_t n = std::max((in + d1 - 1) / d1, (out + d2 - 1) / d2);
      AdapterModuleSource& d = Module(ref);
      d.blocks = static_cast<int32_t>(n);
      d.d1 = static_cast<int32_t>(d1);
      d.d2 = static_cast<int32_t>(d2);
      const int32_t max_rank = std::min(limits_.max_rank, kMaxLoraRank);
      if (n * d1 * d2 > AdapterSlotFloats(in, out, max_rank)) {
        return Error(absl::StrCat(path, ": ", n, " blocks of ", d1, "x", d2, " hold ", n * d1 * d2,
                                  " values; an adapter slot holds ", AdapterSlotFloats(in, out, max_rank),
                                  " for this module (a rank-", max_rank,
                                  " LoRA): use more num_blocks or raise --max-lora-rank"));
      }
      TESSERA_ASSIGN_OR_RETURN(d.block, Tensor(ref, "block_A", {n, d1, d2}));
    }
    return absl::OkStatus();
  }

  AdapterModuleSource& Module(const ModuleRef& ref) {
    AdapterModuleSource& m = modules_.emplace_back();
    m.layer = ref.layer;
    m.module = ref.module;
    return m;
  }

  const std::string name_, dir_;
  const ModelConfig& base_;
  const AdapterLimits limits_;
  json config_;
  std::unique_ptr<SafetensorsFile> file_;
  std::shared_ptr<Adapter> adapter_;
  std::map<std::string, std::map<std::string, const TensorView*>> tensors_;  // module path -> param -> view
  std::map<std::string, ModuleRef> refs_;
  std::vector<AdapterModuleSource> modules_;
};

// The heap form of an opened adapter: every module's values read (and
// checked) into its AdapterModule.
absl::StatusOr<std::shared_ptr<const Adapter>> Materialize(AdapterSource source, const ModelConfig& base) {
  std::shared_ptr<Adapter> adapter = std::move(source.adapter);
  const std::string& name = adapter->name;
  adapter->modules.resize(static_cast<size_t>(base.num_hidden_layers) * kNumLinearModules);
  for (const AdapterModuleSource& m : source.modules) {
    AdapterModule& into = adapter->modules[static_cast<size_t>(m.layer) * kNumLinearModules + static_cast<int>(m.module)];
    const auto [out, in] = BaseLinearShape(base, m.module);
    if (adapter->kind == AdapterKind::kLora) {
      LoraModule lora;
      lora.rank = m.rank;
      lora.scale = m.scale;
      lora.a.resize(static_cast<size_t>(m.a.view->numel()));
      lora.b.resize(static_cast<size_t>(m.b.view->numel()));
      TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(name, m.a, lora.a.data()));
      TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(name, m.b, lora.b.data()));
      into.lora = std::move(lora);
    } else if (adapter->kind == AdapterKind::kDiablo) {
      DiabloModule d;
      d.blocks = m.blocks;
      d.d1 = m.d1;
      d.d2 = m.d2;
      d.block.resize(static_cast<size_t>(m.block.view->numel()));
      TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(name, m.block, d.block.data()));
      into.diablo = std::move(d);
    } else {
      RoadModule road;
      road.group = m.group;
      road.c.resize(out);
      road.s.resize(out);
      TESSERA_RETURN_IF_ERROR(ReadRoadCoefficients(name, m, out, road.c.data(), road.s.data()));
      into.road = std::move(road);
    }
  }
  spdlog::info("adapter '{}': {} on {} linear layers, {:.2f} MiB, from {}", name, adapter->DisplayKind(),
               source.modules.size(), adapter->parameter_bytes / 1048576.0, adapter->dir);
  return std::shared_ptr<const Adapter>(std::move(adapter));
}

}  // namespace

absl::Status ReadAdapterTensor(const std::string& adapter_name, const AdapterTensorSource& t, float* out) {
  // In blocks that stay in cache between the copy and the check: one pass
  // over memory.
  constexpr int64_t kBlock = 16384;
  const int64_t n = t.view->numel();
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t count = std::min(kBlock, n - begin);
    float* block = out + begin;
    t.view->ToFloatRange(begin, count, block);
    bool finite = true;
    for (int64_t i = 0; i < count; ++i) finite &= std::isfinite(block[i]);
    if (finite) continue;
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(block[i])) {
        return absl::InvalidArgumentError(absl::StrCat("adapter '", adapter_name, "': ", t.name, " holds ",
                                                       block[i], " at index ", begin + i,
                                                       " (a diverged training run?)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReadRoadCoefficients(const std::string& adapter_name, const AdapterModuleSource& m, int64_t out,
                                  float* c, float* s) {
  const int64_t n = m.theta.view->numel();
  std::vector<float> theta(n), alpha(n);
  TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(adapter_name, m.theta, theta.data()));
  TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(adapter_name, m.alpha, alpha.data()));
  const int64_t group = m.group, h = group / 2;
  for (int64_t i = 0; i < out; ++i) {
    const int64_t g = i / group, k = i % group;
    int64_t ci, si;  // indices of the (alpha, theta) pair for cos and sin
    if (m.road_variant == 1) {
      ci = si = g * h + (k % h);
    } else if (m.road_variant == 2) {
      ci = si = i;
    } else {  // road_4: [out/group, 2, group]
      ci = (g * 2) * group + k;
      si = (g * 2 + 1) * group + k;
    }
    c[i] = static_cast<float>(alpha[ci] * std::cos(static_cast<double>(theta[ci])));
    const float sn = static_cast<float>(alpha[si] * std::sin(static_cast<double>(theta[si])));
    s[i] = k < h ? -sn : sn;
  }
  return absl::OkStatus();
}

absl::StatusOr<AdapterSource> OpenAdapter(const std::string& name, const std::string& dir, const ModelConfig& base,
                                          const AdapterLimits& limits) {
  return GuardExceptions(absl::StrCat("adapter '", Excerpt(name), "'"),
                         [&] { return Loader(name, dir, base, limits).Open(); });
}

absl::StatusOr<std::shared_ptr<const Adapter>> LoadAdapter(const std::string& name, const std::string& dir,
                                                           const ModelConfig& base,
                                                           const AdapterLimits& limits) {
  TESSERA_ASSIGN_OR_RETURN(AdapterSource source, OpenAdapter(name, dir, base, limits));
  return GuardExceptions(absl::StrCat("adapter '", Excerpt(name), "'"),
                         [&] { return Materialize(std::move(source), base); });
}

absl::StatusOr<std::shared_ptr<const Adapter>> LoadAdapterFromBytes(const std::string& name,
                                                                    std::string_view config_json,
                                                                    std::string weights, const ModelConfig& base,
                                                                    const AdapterLimits& limits) {
  absl::StatusOr<AdapterSource> source =
      GuardExceptions(absl::StrCat("adapter '", Excerpt(name), "'"), [&]() -> absl::StatusOr<AdapterSource> {
        Loader loader(name, "(memory)", base, limits);
        if (static_cast<int64_t>(weights.size()) > limits.max_file_bytes) {
          return loader.Error(absl::StrCat("adapter_model.safetensors is ", weights.size(),
                                           " bytes, over the limit of ", limits.max_file_bytes,
                                           " (raise --max-adapter-mb)"));
        }
        absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
            SafetensorsFile::FromBytes(std::move(weights), "adapter_model.safetensors");
        if (!file.ok()) return loader.Error(std::string(file.status().message()));
        return loader.LoadParts(config_json, *std::move(file));
      });
  if (!source.ok()) return source.status();
  return GuardExceptions(absl::StrCat("adapter '", Excerpt(name), "'"),
                         [&] { return Materialize(*std::move(source), base); });
}

}  // namespace tessera
