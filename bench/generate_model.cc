// tessera-genmodel: writes a random-weight Llama checkpoint in HF format
// (config.json, safetensors, tokenizer files copied from the bundled fixture)
// so that benchmarks and memory tests run on realistic shapes without any
// download. Tensors are generated and written in chunks: memory stays small
// whatever the model size.
//
//   tessera-genmodel --output DIR --preset 1.1b|8b|100m|memtest [--dtype bf16]
//   tessera-genmodel --output DIR --hidden 1024 --intermediate 4096 --layers 6 ...
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"
#include "server/engine/sampler.h"
#include "model/linear_modules.h"
#include "model/safetensors.h"

ABSL_FLAG(std::string, output, "", "folder to write (created)");
ABSL_FLAG(std::string, preset, "",
          "1.1b (TinyLlama dims), 8b (Llama-3-8B dims), 100m, memtest; flags below override");
ABSL_FLAG(int, hidden, 0, "hidden_size");
ABSL_FLAG(int, intermediate, 0, "intermediate_size");
ABSL_FLAG(int, layers, 0, "num_hidden_layers");
ABSL_FLAG(int, heads, 0, "num_attention_heads");
ABSL_FLAG(int, kv_heads, 0, "num_key_value_heads");
ABSL_FLAG(int, vocab, 0, "vocab_size (at least the fixture tokenizer's 512)");
ABSL_FLAG(int, max_position, 0, "max_position_embeddings");
ABSL_FLAG(double, rope_theta, 0, "rope_theta");
ABSL_FLAG(std::string, dtype, "f32", "f32, bf16 or f16");
ABSL_FLAG(double, rope_id_fraction, 0,
          "write a RoPE-ID config rotating this fraction of each head (0: plain RoPE)");
ABSL_FLAG(int64_t, shard_mb, 0, "split into shards of about this many MiB (with an index); 0: one file");
ABSL_FLAG(uint64_t, seed, 1, "random seed");
ABSL_FLAG(std::string, tokenizer_from, "",
          "folder to copy tokenizer files from (default: the bundled fixture)");

namespace tessera {
namespace {

struct Shape {
  int hidden, intermediate, layers, heads, kv_heads, vocab, max_position;
  double rope_theta;
};

const std::map<std::string, Shape>& Presets() {
  static const auto* presets = new std::map<std::string, Shape>{
      {"1.1b", {2048, 5632, 22, 32, 4, 32000, 2048, 10000.0}},
      {"8b", {4096, 14336, 32, 32, 8, 128256, 8192, 500000.0}},
      {"100m", {768, 2048, 12, 12, 12, 8192, 1024, 10000.0}},
      {"memtest", {1024, 4096, 6, 16, 16, 4096, 512, 10000.0}},
  };
  return *presets;
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tessera-genmodel: %s\n", msg.c_str());
  return 1;
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Init { kLinear, kEmbedding, kNorm } init;
};

int Run() {
  const std::string out_dir = absl::GetFlag(FLAGS_output);
  if (out_dir.empty()) return Fail("--output DIR is required");
  Shape s{};
  const std::string preset = absl::GetFlag(FLAGS_preset);
  if (!preset.empty()) {
    auto it = Presets().find(preset);
    if (it == Presets().end())
      return Fail(absl::StrCat("unknown --preset '", preset, "' (1.1b, 8b, 100m, memtest)"));
    s = it->second;
  }
  auto override_int = [](int flag, int* field) {
    if (flag > 0) *field = flag;
  };
  override_int(absl::GetFlag(FLAGS_hidden), &s.hidden);
  override_int(absl::GetFlag(FLAGS_intermediate), &s.intermediate);
  override_int(absl::GetFlag(FLAGS_layers), &s.layers);
  override_int(absl::GetFlag(FLAGS_heads), &s.heads);
  override_int(absl::GetFlag(FLAGS_kv_heads), &s.kv_heads);
  override_int(absl::GetFlag(FLAGS_vocab), &s.vocab);
  override_int(absl::GetFlag(FLAGS_max_position), &s.max_position);
  if (absl::GetFlag(FLAGS_rope_theta) > 0) s.rope_theta = absl::GetFlag(FLAGS_rope_theta);
  if (s.kv_heads == 0) s.kv_heads = s.heads;
  if (s.rope_theta == 0) s.rope_theta = 10000.0;
  if (s.hidden <= 0 || s.intermediate <= 0 || s.layers <= 0 || s.heads <= 0 || s.vocab < 512 ||
      s.max_position <= 0 || s.hidden % s.heads != 0 || s.heads % s.kv_heads != 0) {
    return Fail(
        "give a --preset or every shape flag: hidden (a multiple of heads), intermediate, layers, heads, "
        "kv-heads (dividing heads), vocab (>= 512, the tokenizer's size), max-position");
  }
  DType dtype;
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  if (dtype_name == "f32")
    dtype = DType::kF32;
  else if (dtype_name == "bf16")
    dtype = DType::kBF16;
  else if (dtype_name == "f16")
    dtype = DType::kF16;
  else
    return Fail(absl::StrCat("unknown --dtype '", dtype_name, "' (f32, bf16, f16)"));
  const int head_dim = s.hidden / s.heads;

  ModelConfig shape_config;
  shape_config.hidden_size = s.hidden;
  shape_config.intermediate_size = s.intermediate;
  shape_config.num_attention_heads = s.heads;
  shape_config.num_key_value_heads = s.kv_heads;
  shape_config.head_dim = head_dim;
  std::vector<Tensor> tensors;
  tensors.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, Tensor::kEmbedding});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    tensors.push_back({p + "input_layernorm.weight", {s.hidden}, Tensor::kNorm});
    for (const LinearModule m : kLinearModules) {
      if (m == LinearModule::kGate) tensors.push_back({p + "post_attention_layernorm.weight", {s.hidden}, Tensor::kNorm});
      const auto [out, in] = BaseLinearShape(shape_config, m);
      tensors.push_back({LinearModulePrefix(l, m) + ".weight", {out, in}, Tensor::kLinear});
    }
  }
  tensors.push_back({"model.norm.weight", {s.hidden}, Tensor::kNorm});
  tensors.push_back({"lm_head.weight", {s.vocab, s.hidden}, Tensor::kLinear});

  // Assign tensors to shards.
  const int64_t shard_bytes = absl::GetFlag(FLAGS_shard_mb) << 20;
  std::vector<std::vector<const Tensor*>> shards(1);
  int64_t in_shard = 0, total_bytes = 0, params = 0;
  for (const Tensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    const int64_t bytes = n * static_cast<int64_t>(DTypeSize(dtype));
    if (shard_bytes > 0 && in_shard > 0 && in_shard + bytes > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&t);
    in_shard += bytes;
    total_bytes += bytes;
    params += n;
  }

  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Fail(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  std::fprintf(stderr, "tessera-genmodel: %.1fM parameters, %.1f MiB of %s in %zu file(s) -> %s\n",
               params / 1e6, total_bytes / 1048576.0, DTypeName(dtype), shards.size(), out_dir.c_str());

  Rng rng(absl::GetFlag(FLAGS_seed));
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<float> chunk;
  std::vector<uint8_t> bytes;
  int64_t done_bytes = 0, last_report = 0;
  for (size_t si = 0; si < shards.size(); ++si) {
    const std::string file = shards.size() == 1
                                 ? "model.safetensors"
                                 : absl::StrFormat("model-%05d-of-%05d.safetensors", si + 1, shards.size());
    std::vector<SafetensorsWriter::Spec> specs;
    for (const Tensor* t : shards[si]) {
      specs.push_back({t->name, dtype, t->shape});
      weight_map[t->name] = file;
    }
    auto writer = SafetensorsWriter::Create((fs::path(out_dir) / file).string(), specs);
    if (!writer.ok()) return Fail(std::string(writer.status().message()));
    for (const Tensor* t : shards[si]) {
      int64_t n = 1;
      for (int64_t d : t->shape) n *= d;
      // Uniform with the variance of N(0, 1/in) for linear layers, N(0, 1)
      // for embeddings; norms in [0.5, 1.5).
      const double in = static_cast<double>(t->shape.back());
      const double half_width = t->init == Tensor::kLinear ? std::sqrt(3.0 / in) : std::sqrt(3.0);
      constexpr int64_t kChunk = 1 << 20;
      for (int64_t off = 0; off < n; off += kChunk) {
        const int64_t m = std::min(kChunk, n - off);
        chunk.resize(m);
        for (int64_t i = 0; i < m; ++i) {
          const double u = rng.Uniform();
          chunk[i] = static_cast<float>(t->init == Tensor::kNorm ? 0.5 + u : (2.0 * u - 1.0) * half_width);
        }
        bytes.resize(m * DTypeSize(dtype));
        if (dtype == DType::kF32) {
          std::memcpy(bytes.data(), chunk.data(), m * 4);
        } else {
          for (int64_t i = 0; i < m; ++i) {
            const uint16_t h = dtype == DType::kBF16 ? FloatToBf16(chunk[i]) : FloatToF16(chunk[i]);
            std::memcpy(bytes.data() + 2 * i, &h, 2);
          }
        }
        if (absl::Status st = (*writer)->Append(bytes.data(), bytes.size()); !st.ok()) {
          return Fail(std::string(st.message()));
        }
        done_bytes += static_cast<int64_t>(bytes.size());
        if (done_bytes - last_report >= (int64_t{1} << 30)) {
          last_report = done_bytes;
          std::fprintf(stderr, "tessera-genmodel: %.0f%%\n", 100.0 * done_bytes / total_bytes);
        }
      }
    }
    if (absl::Status st = (*writer)->Close(); !st.ok()) return Fail(std::string(st.message()));
  }
  if (shards.size() > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    std::ofstream((fs::path(out_dir) / "model.safetensors.index.json").string()) << index.dump(2);
  }

  const char* torch_dtype = DTypeTorchName(dtype);
  nlohmann::ordered_json config = {{"architectures", {"LlamaForCausalLM"}},
                                   {"model_type", "llama"},
                                   {"hidden_size", s.hidden},
                                   {"intermediate_size", s.intermediate},
                                   {"num_hidden_layers", s.layers},
                                   {"num_attention_heads", s.heads},
                                   {"num_key_value_heads", s.kv_heads},
                                   {"head_dim", head_dim},
                                   {"vocab_size", s.vocab},
                                   {"max_position_embeddings", s.max_position},
                                   {"rms_norm_eps", 1e-5},
                                   {"rope_theta", s.rope_theta},
                                   {"hidden_act", "silu"},
                                   {"tie_word_embeddings", false},
                                   {"bos_token_id", 0},
                                   {"eos_token_id", 1},
                                   {"torch_dtype", torch_dtype}};
  const double rope_id = absl::GetFlag(FLAGS_rope_id_fraction);
  if (rope_id != 0) {
    if (!(rope_id > 0 && rope_id <= 1)) return Fail("--rope-id-fraction must be in (0, 1]");
    config["rope_id"] = {{"rotated_fraction", rope_id}};
  }
  std::ofstream((fs::path(out_dir) / "config.json").string()) << config.dump(2) << "\n";
  std::string tok_dir = absl::GetFlag(FLAGS_tokenizer_from);
  if (tok_dir.empty()) tok_dir = TESSERA_DEFAULT_TOKENIZER_DIR;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(fs::path(tok_dir) / f, fs::path(out_dir) / f, fs::copy_options::overwrite_existing, ec);
    if (ec) return Fail(absl::StrCat("cannot copy ", (fs::path(tok_dir) / f).string(), ": ", ec.message()));
  }
  std::fprintf(stderr, "tessera-genmodel: done\n");
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "Writes a random-weight Llama checkpoint in HF format.\n"
      "  tessera-genmodel --output DIR --preset 1.1b|8b|100m|memtest [--dtype f32|bf16|f16] [--shard-mb N]");
  return tessera::Run();
}
