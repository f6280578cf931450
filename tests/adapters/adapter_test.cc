// Adapters (LoRA, SEAL-released LoRA, RoAd, DiaBlo) against the fixtures'
// peft / own-math references, alone and mixed in one batch, on the fp32 and
// the quantized base.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "adapters/adapter_pool.h"
#include "gtest/gtest.h"
#include "kernels/cpu/vector_isa.h"
#include "server/engine/engine.h"
#include "server/engine/sampler.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tests/support/fixtures.h"
#include "tests/support/kv_pages.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::ExpectedTensor;
using testing::MaxAbsDiff;
using testing::PromptIds;
using testing::TempDir;

const char* kAdapters[] = {"lora", "lora2", "road", "diablo", "seal"};

std::string AdapterDir(const std::string& name) { return testing::TinyLlamaDir() + "/adapters/" + name; }

std::unique_ptr<Model> LoadBase(WeightFormat format = WeightFormat::kF32, int32_t group = 128) {
  LoadOptions o;
  o.quant = {format, group};
  return *LoadModel(testing::TinyLlamaModelDir(), o);
}

// The fixture's dequantized reference: fp32 weights replaced by q·scale.
std::unique_ptr<Model> DequantizedReference(WeightFormat format, int32_t group) {
  auto model = LoadBase();
  for (LayerWeights& L : model->layers) {
    for (LinearWeights* w :
         {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj}) {
      const int64_t groups = (w->in + group - 1) / group;
      std::vector<uint8_t> q(w->in);
      std::vector<float> scales(groups);
      for (int64_t o = 0; o < w->out; ++o) {
        float* row = w->weight.data() + o * w->in;
        if (format == WeightFormat::kInt8) {
          QuantizeRowInt8(row, w->in, reinterpret_cast<int8_t*>(q.data()), scales.data());
          PortableIsa().dequant_int8(reinterpret_cast<int8_t*>(q.data()), scales[0], row, w->in);
        } else {
          QuantizeRowInt4(row, w->in, group, q.data(), scales.data());
          PortableIsa().dequant_int4(q.data(), scales.data(), group, row, w->in);
        }
      }
    }
  }
  return model;
}

class AdapterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = LoadBase().release();
    // Slots in reverse order of kAdapters, so no adapter sits in slot 0.
    pool_ = AdapterPool::Create(base_->config, {static_cast<int32_t>(std::size(kAdapters)) + 1, 64})->release();
    // The slots are written the way a cache miss writes them: straight from
    // the files (OpenAdapter + WriteFrom), so the reference tests below check
    // that path; HeapAndDirectWritesFillTheSameSlot checks Write against it.
    for (const char* name : kAdapters) {
      absl::StatusOr<AdapterSource> source = OpenAdapter(name, AdapterDir(name), base_->config, {});
      ASSERT_TRUE(source.ok()) << source.status();
      ASSERT_TRUE(pool_->WriteFrom(Slot(name), *source, /*threads=*/3).ok()) << name;
      absl::StatusOr<std::shared_ptr<const Adapter>> a = LoadAdapter(name, AdapterDir(name), base_->config, {});
      ASSERT_TRUE(a.ok()) << a.status();
      adapters_[name] = *a;
    }
  }
  static void TearDownTestSuite() {
    delete pool_;
    delete base_;
    adapters_.clear();
  }

  static std::unique_ptr<Engine> MakeEngine(const Model& model) {
    EngineOptions eo;
    eo.num_threads = 2;
    eo.kv_cache_tokens = 16 * 64;
    eo.adapter_pool = pool_;
    return *Engine::Create(model, eo);
  }

  static int32_t Slot(const std::string& name) {
    for (size_t i = 0; i < std::size(kAdapters); ++i) {
      if (name == kAdapters[i]) return static_cast<int32_t>(std::size(kAdapters) - i);
    }
    return -1;
  }

  // Prompt p with adapter (or none): last-position logits and 16 greedy tokens.
  static std::pair<std::vector<float>, std::vector<int32_t>> Run(Engine& engine, int p,
                                                                 const std::string& adapter) {
    testing::KvPages pages(engine);
    std::vector<int32_t> blocks = *pages.Take(64);
    std::vector<float> logits, first;
    std::vector<int32_t> greedy;
    int32_t kv_len = 0;
    for (int step = 0; step <= 15; ++step) {
      BatchPlan plan;
      plan.token_ids = step == 0 ? PromptIds(p) : std::vector<int32_t>{greedy.back()};
      for (int32_t i = 0; i < plan.num_tokens(); ++i) plan.positions.push_back(kv_len + i);
      plan.sequences.push_back({0, plan.num_tokens(), kv_len, blocks, true});
      if (!adapter.empty()) plan.adapter_segments.push_back({0, plan.num_tokens(), Slot(adapter)});
      EXPECT_TRUE(engine.Step(plan, &logits).ok());
      kv_len += plan.num_tokens();
      if (step == 0) first = logits;
      greedy.push_back(ArgMax(logits.data(), 512));
    }
    return {first, greedy};
  }

  static Model* base_;
  static AdapterPool* pool_;
  static std::map<std::string, std::shared_ptr<const Adapter>> adapters_;
};
Model* AdapterTest::base_ = nullptr;
AdapterPool* AdapterTest::pool_ = nullptr;
std::map<std::string, std::shared_ptr<const Adapter>> AdapterTest::adapters_;

TEST_F(AdapterTest, EachAdapterMatchesItsReference) {
  auto engine = MakeEngine(*base_);
  for (const char* name : kAdapters) {
    const auto& expected = testing::Expected()["results"][name];
    for (int p = 0; p < 6; ++p) {
      auto [logits, greedy] = Run(*engine, p, name);
      EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor(std::string(name) + "/" + std::to_string(p))), 1e-4f)
          << name << " prompt " << p;
      EXPECT_EQ(greedy, expected["greedy"][p].get<std::vector<int32_t>>()) << name << " prompt " << p;
    }
  }
}

TEST_F(AdapterTest, LoadedMetadata) {
  EXPECT_EQ(adapters_["road"]->DisplayKind(), "road");
  EXPECT_EQ(adapters_["diablo"]->DisplayKind(), "diablo");
  EXPECT_EQ(pool_->op_of(Slot("diablo")), AdapterOp::kBlockDiagonal);
  EXPECT_EQ(pool_->op_of(Slot("road")), AdapterOp::kRotation);
  EXPECT_EQ(pool_->op_of(Slot("seal")), AdapterOp::kLowRank);
  EXPECT_FALSE(pool_->op_of(0));
  const Adapter& lora = *adapters_["lora"];
  EXPECT_EQ(lora.kind, AdapterKind::kLora);
  const auto& modules = testing::Expected()["adapters"]["lora"]["modules"];
  for (int layer = 0; layer < 2; ++layer) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      const std::string path =
          "model.layers." + std::to_string(layer) + "." + LinearModuleName(static_cast<LinearModule>(m));
      const AdapterModule& mod = lora.module(layer, static_cast<LinearModule>(m));
      ASSERT_TRUE(mod.lora) << path;
      EXPECT_EQ(mod.lora->rank, modules[path]["r"].get<int>());
      EXPECT_FLOAT_EQ(mod.lora->scale, modules[path]["scaling"].get<float>());
    }
  }
  // lora2 targets only q and v.
  const Adapter& lora2 = *adapters_["lora2"];
  EXPECT_TRUE(lora2.module(0, LinearModule::kQ).lora);
  EXPECT_FALSE(lora2.module(0, LinearModule::kK).targeted());
  EXPECT_EQ(adapters_["diablo"]->module(1, LinearModule::kDown).diablo->d1, 30);
  // The pool's copy of lora2: q targeted, k not.
  EXPECT_EQ(pool_->lora(0, LinearModule::kQ)[Slot("lora2")].rank, lora2.module(0, LinearModule::kQ).lora->rank);
  EXPECT_EQ(pool_->lora(0, LinearModule::kK)[Slot("lora2")].a, nullptr);
}

// Write (start-up adapters: heap vectors) and WriteFrom (cache misses:
// straight from the file) leave the same tables and the same values.
TEST_F(AdapterTest, HeapAndDirectWritesFillTheSameSlot) {
  auto heap = *AdapterPool::Create(base_->config, {static_cast<int32_t>(std::size(kAdapters)) + 1, 64});
  for (const char* name : kAdapters) {
    const int32_t slot = Slot(name);
    ASSERT_TRUE(heap->Write(slot, *adapters_[name]).ok()) << name;
    EXPECT_EQ(heap->op_of(slot), pool_->op_of(slot)) << name;
    int compared = 0;
    for (int32_t l = 0; l < base_->config.num_hidden_layers; ++l) {
      for (LinearModule m : kLinearModules) {
        const auto [out, in] = BaseLinearShape(base_->config, m);
        const LoraSlotWeights& x = heap->lora(l, m)[slot];
        const LoraSlotWeights& y = pool_->lora(l, m)[slot];
        ASSERT_EQ(x.a == nullptr, y.a == nullptr) << name;
        if (x.a) {
          EXPECT_EQ(x.rank, y.rank);
          EXPECT_EQ(x.scale, y.scale);
          EXPECT_EQ(std::memcmp(x.a, y.a, sizeof(float) * x.rank * in), 0) << name;
          EXPECT_EQ(std::memcmp(x.b, y.b, sizeof(float) * x.rank * out), 0) << name;
          ++compared;
        }
        const DiabloSlotWeights& dx = heap->diablo(l, m)[slot];
        const DiabloSlotWeights& dy = pool_->diablo(l, m)[slot];
        ASSERT_EQ(dx.block == nullptr, dy.block == nullptr) << name;
        if (dx.block) {
          EXPECT_EQ(dx.blocks, dy.blocks);
          EXPECT_EQ(std::memcmp(dx.block, dy.block, sizeof(float) * dx.blocks * dx.d1 * dx.d2), 0) << name;
          ++compared;
        }
        const RoadSlotWeights& rx = heap->road(l, m)[slot];
        const RoadSlotWeights& ry = pool_->road(l, m)[slot];
        ASSERT_EQ(rx.c == nullptr, ry.c == nullptr) << name;
        if (rx.c) {
          EXPECT_EQ(std::memcmp(rx.c, ry.c, sizeof(float) * out), 0) << name;
          EXPECT_EQ(std::memcmp(rx.s, ry.s, sizeof(float) * out), 0) << name;
          ++compared;
        }
      }
    }
    EXPECT_GT(compared, 0) << name;
  }
}

// A NaN found while copying into the slot fails the write with the tensor
// and index named, and leaves the slot empty.
TEST_F(AdapterTest, ANanFoundDuringTheDirectWriteLeavesTheSlotEmpty) {
  TempDir tmp;
  const std::string d = tmp.Join("lora");
  fs::create_directories(d);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    fs::copy_file(AdapterDir("lora") + "/" + f, d + "/" + f);
    fs::permissions(d + "/" + f, fs::perms::owner_write, fs::perm_options::add);
  }
  std::vector<TensorToWrite> tensors;
  {
    auto f = *SafetensorsFile::Open(d + "/adapter_model.safetensors");
    for (const auto& [name, view] : f->tensors()) {
      TensorToWrite t{name, view.dtype, view.shape, std::vector<uint8_t>(view.data, view.data + view.nbytes)};
      if (name == "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight") {
        const float inf = INFINITY;
        std::memcpy(t.data.data() + 4 * 7, &inf, 4);
      }
      tensors.push_back(std::move(t));
    }
  }
  ASSERT_TRUE(WriteSafetensors(d + "/adapter_model.safetensors", tensors).ok());
  absl::StatusOr<AdapterSource> source = OpenAdapter("tenant-x", d, base_->config, {});
  ASSERT_TRUE(source.ok()) << source.status();  // the header is fine
  auto pool = *AdapterPool::Create(base_->config, {2, 64});
  for (int threads : {1, 4}) {
    absl::Status s = pool->WriteFrom(1, *source, threads);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("adapter 'tenant-x': model.layers.1.mlp.up_proj.lora_B.weight holds inf at index 7"),
              std::string::npos)
        << s;
    EXPECT_FALSE(pool->op_of(1));
    EXPECT_EQ(pool->lora(0, LinearModule::kQ)[1].a, nullptr);
  }
}

TEST_F(AdapterTest, APlanNamingAnEmptySlotOrTheWrongKindIsRefused) {
  auto engine = MakeEngine(*base_);
  testing::KvPages pages(*engine);
  BatchPlan plan;
  plan.token_ids = PromptIds(0);
  for (int32_t i = 0; i < plan.num_tokens(); ++i) plan.positions.push_back(i);
  plan.sequences.push_back({0, plan.num_tokens(), 0, *pages.Take(64), true});
  plan.adapter_segments.push_back({0, plan.num_tokens(), 0});  // slot 0 is empty
  std::vector<float> logits;
  absl::Status s = engine->Step(plan, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("names slot 0, which holds no adapter"), std::string::npos) << s;
  // The builder files a segment under its slot's op family; a view that
  // files a RoAd slot under low-rank is refused by the engine.
  PlanBuilder builder(engine->plan_limits());
  plan.adapter_segments[0].slot = Slot("road");
  std::vector<AdapterOp> wrong(pool_->slot_ops().begin(), pool_->slot_ops().end());
  wrong[Slot("road")] = AdapterOp::kLowRank;
  absl::StatusOr<PlanView> view = builder.Build(plan, wrong);
  ASSERT_TRUE(view.ok()) << view.status();
  absl::StatusOr<absl::Span<const float>> out = engine->Step(*view);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("wrong op kind"), std::string::npos) << out.status();
  // An engine without a pool runs no adapter at all.
  EngineOptions eo;
  eo.kv_cache_tokens = 16 * 64;
  auto bare = *Engine::Create(*base_, eo);
  s = bare->Step(plan, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST_F(AdapterTest, MixedBatchIsOneStepAndEveryRowMatchesItsSingleRequest) {
  auto engine = MakeEngine(*base_);
  const auto& rows = testing::Expected()["mixed_batch"]["rows"];
  ASSERT_EQ(rows.size(), 12u);
  BatchPlan plan;
  std::vector<std::vector<int32_t>> blocks;
  testing::KvPages pages(*engine);
  for (const auto& row : rows) {
    std::vector<int32_t> ids = PromptIds(row["prompt"].get<int>());
    blocks.push_back(*pages.Take(64));
    const int32_t begin = plan.num_tokens();
    plan.sequences.push_back({begin, static_cast<int32_t>(ids.size()), 0, blocks.back(), true});
    plan.token_ids.insert(plan.token_ids.end(), ids.begin(), ids.end());
    for (size_t i = 0; i < ids.size(); ++i) plan.positions.push_back(static_cast<int32_t>(i));
    if (!row["adapter"].is_null()) {
      plan.adapter_segments.push_back({begin, static_cast<int32_t>(ids.size()), Slot(row["adapter"])});
    }
  }
  std::vector<float> logits;
  ASSERT_TRUE(engine->Step(plan, &logits).ok());
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<float> row(logits.begin() + r * 512, logits.begin() + (r + 1) * 512);
    EXPECT_LE(MaxAbsDiff(row, ExpectedTensor(rows[r]["logits_key"].get<std::string>())), 1e-4f)
        << "row " << r;
    EXPECT_EQ(ArgMax(row.data(), 512), rows[r]["argmax"].get<int32_t>()) << "row " << r;
  }
}

TEST_F(AdapterTest, QuantizedBaseAgreesWithTheDequantizedReference) {
  for (auto [format, group] : {std::pair{WeightFormat::kInt8, 128}, std::pair{WeightFormat::kInt4, 32}}) {
    auto quantized = LoadBase(format, group);
    auto reference = DequantizedReference(format, group);
    auto q_engine = MakeEngine(*quantized);
    auto r_engine = MakeEngine(*reference);
    for (const char* name : kAdapters) {
      for (int p = 0; p < 6; ++p) {
        auto [q_logits, q_greedy] = Run(*q_engine, p, name);
        auto [r_logits, r_greedy] = Run(*r_engine, p, name);
        EXPECT_EQ(q_greedy, r_greedy) << WeightFormatName(format) << " " << name << " prompt " << p;
        EXPECT_LE(MaxAbsDiff(q_logits, r_logits), 1e-3f) << WeightFormatName(format) << " " << name;
      }
    }
    // Sanity: the reference helper reproduces HF's quantized logits.
    auto [base_logits, base_greedy] = Run(*r_engine, 3, "");
    EXPECT_LE(MaxAbsDiff(base_logits, ExpectedTensor(std::string(
                                          format == WeightFormat::kInt8 ? "quant_int8/3" : "quant_int4/3"))),
              1e-4f);
  }
}

// --- Config variants and bad adapters -------------------------------------

void CopyAdapter(const std::string& name, const std::string& to) {
  fs::create_directories(to);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    fs::copy_file(AdapterDir(name) + "/" + f, to + "/" + f, fs::copy_options::overwrite_existing);
    fs::permissions(to + "/" + f, fs::perms::owner_write, fs::perm_options::add);
  }
}

void EditConfig(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(testing::ReadFileOrDie(dir + "/adapter_config.json"));
  edit(j);
  testing::WriteFileOrDie(dir + "/adapter_config.json", j.dump());
}

// Rewrites adapter_model.safetensors through edit(name, view) -> replacement.
void EditTensors(
    const std::string& dir,
    const std::function<std::optional<TensorToWrite>(const std::string&, const TensorView&)>& edit) {
  std::vector<TensorToWrite> out;
  {
    auto f = *SafetensorsFile::Open(dir + "/adapter_model.safetensors");
    for (const auto& [name, view] : f->tensors()) {
      std::optional<TensorToWrite> t = edit(name, view);
      if (!t)
        t = TensorToWrite{name, view.dtype, view.shape,
                          std::vector<uint8_t>(view.data, view.data + view.nbytes)};
      out.push_back(*std::move(t));
    }
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/adapter_model.safetensors", out).ok());
}

std::string LoadError(const std::string& dir, AdapterLimits limits = {}) {
  auto base = LoadBase();
  auto a = LoadAdapter("tenant-x", dir, base->config, limits);
  EXPECT_FALSE(a.ok());
  return a.ok() ? "" : std::string(a.status().message());
}

TEST(AdapterConfigTest, PatternsRsloraAndRegexTargets) {
  TempDir dir;
  CopyAdapter("lora", dir.path());
  EditConfig(dir.path(), [](nlohmann::json& j) {
    j["alpha_pattern"] = {{"q_proj", 32}, {"layers\\.1\\.mlp\\.down_proj", 4}};
    j["use_rslora"] = true;
    j["target_modules"] = "model\\.layers\\.\\d+\\.(self_attn|mlp)\\.\\w+_proj";
  });
  auto base = LoadBase();
  auto a = LoadAdapter("x", dir.path(), base->config, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FLOAT_EQ((*a)->module(0, LinearModule::kQ).lora->scale, 32 / std::sqrt(8.0f));
  EXPECT_FLOAT_EQ((*a)->module(0, LinearModule::kK).lora->scale, 16 / std::sqrt(8.0f));
  EXPECT_FLOAT_EQ((*a)->module(1, LinearModule::kDown).lora->scale, 4 / std::sqrt(8.0f));
  EXPECT_FLOAT_EQ((*a)->module(0, LinearModule::kDown).lora->scale, 16 / std::sqrt(8.0f));

  // A rank_pattern that disagrees with the stored tensors is a shape error.
  EditConfig(dir.path(), [](nlohmann::json& j) { j["rank_pattern"] = {{"v_proj", 4}}; });
  std::string msg = LoadError(dir.path());
  EXPECT_NE(msg.find("self_attn.v_proj.lora_A.weight has shape [8, 64], expected [4, 64]"), std::string::npos)
      << msg;

  // A regex that does not name a module with weights.
  EditConfig(dir.path(), [](nlohmann::json& j) {
    j.erase("rank_pattern");
    j["target_modules"] = ".*q_proj";
  });
  msg = LoadError(dir.path());
  EXPECT_NE(msg.find("target_modules"), std::string::npos) << msg;
}

TEST(AdapterConfigTest, SealWatermarkTagIsRecorded) {
  TempDir dir;
  CopyAdapter("seal", dir.path());
  EditConfig(dir.path(), [](nlohmann::json& j) { j["watermark"] = "seal:v1:tenant-42"; });
  auto base = LoadBase();
  auto a = LoadAdapter("s", dir.path(), base->config, {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->watermark, "seal:v1:tenant-42");
  EXPECT_EQ((*a)->DisplayKind(), "seal");
}

TEST(BadAdapterTest, EachGivesAClearError) {
  TempDir dir;
  const std::string d = dir.Join("a");

  // Wrong shape (trained for another base).
  CopyAdapter("lora", d);
  EditTensors(d, [](const std::string& name, const TensorView& v) -> std::optional<TensorToWrite> {
    if (name != "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight") return std::nullopt;
    return TensorToWrite{name, DType::kF32, {8, 96}, std::vector<uint8_t>(8 * 96 * 4)};
  });
  std::string msg = LoadError(d);
  EXPECT_NE(msg.find("adapter 'tenant-x'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.layers.0.mlp.up_proj.lora_A.weight has shape [8, 96], expected [8, 64]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("[out=176, in=64]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("another base model"), std::string::npos) << msg;

  // Unknown module (layer 7 of a 2-layer base).
  CopyAdapter("lora", d);
  EditTensors(d, [](const std::string& name, const TensorView& v) -> std::optional<TensorToWrite> {
    if (name != "base_model.model.model.layers.1.mlp.up_proj.lora_A.weight") return std::nullopt;
    return TensorToWrite{"base_model.model.model.layers.7.mlp.up_proj.lora_A.weight", v.dtype, v.shape,
                         std::vector<uint8_t>(v.data, v.data + v.nbytes)};
  });
  msg = LoadError(d);
  EXPECT_NE(msg.find("model.layers.7.mlp.up_proj"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not have"), std::string::npos) << msg;

  // Truncated safetensors.
  CopyAdapter("lora", d);
  const std::string w = testing::ReadFileOrDie(d + "/adapter_model.safetensors");
  testing::WriteFileOrDie(d + "/adapter_model.safetensors", w.substr(0, w.size() - 512));
  msg = LoadError(d);
  EXPECT_NE(msg.find("adapter_model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end of the data"), std::string::npos) << msg;

  // NaN weights.
  CopyAdapter("road", d);
  EditTensors(d, [](const std::string& name, const TensorView& v) -> std::optional<TensorToWrite> {
    if (name != "base_model.model.model.layers.1.self_attn.k_proj.road_theta") return std::nullopt;
    TensorToWrite t{name, v.dtype, v.shape, std::vector<uint8_t>(v.data, v.data + v.nbytes)};
    const float nan = std::nanf("");
    std::memcpy(t.data.data() + 12, &nan, 4);
    return t;
  });
  msg = LoadError(d);
  EXPECT_NE(msg.find("model.layers.1.self_attn.k_proj.road_theta holds nan at index 3"), std::string::npos)
      << msg;

  // Rank over the limit.
  CopyAdapter("lora2", d);
  msg = LoadError(d, AdapterLimits{8, int64_t{1} << 30});
  EXPECT_NE(msg.find("rank 16 is over the limit of 8 (raise --max-lora-rank)"), std::string::npos) << msg;

  // File over the size limit.
  msg = LoadError(d, AdapterLimits{64, 1000});
  EXPECT_NE(msg.find("over the limit of 1000 (raise --max-adapter-mb)"), std::string::npos) << msg;

  // Unsupported bias modes and options.
  CopyAdapter("lora", d);
  EditConfig(d, [](nlohmann::json& j) { j["bias"] = "all"; });
  msg = LoadError(d);
  EXPECT_NE(msg.find("bias 'all' is not supported; only bias='none'"), std::string::npos) << msg;
  EditConfig(d, [](nlohmann::json& j) {
    j["bias"] = "none";
    j["use_dora"] = true;
  });
  EXPECT_NE(LoadError(d).find("DoRA"), std::string::npos);
  EditConfig(d, [](nlohmann::json& j) {
    j["use_dora"] = false;
    j["peft_type"] = "IA3";
  });
  EXPECT_NE(LoadError(d).find("peft_type 'IA3' is not supported"), std::string::npos);

  // Missing config, missing folder.
  fs::remove(d + "/adapter_config.json");
  EXPECT_NE(LoadError(d).find("adapter_config.json is missing"), std::string::npos);
  EXPECT_NE(LoadError(dir.Join("nope")).find("does not exist"), std::string::npos);

  // Integer dtype.
  CopyAdapter("diablo", d);
  EditTensors(d, [](const std::string& name, const TensorView& v) -> std::optional<TensorToWrite> {
    if (name != "base_model.model.model.layers.0.mlp.down_proj.block_A") return std::nullopt;
    return TensorToWrite{name, DType::kI8, v.shape, std::vector<uint8_t>(v.numel())};
  });
  msg = LoadError(d);
  EXPECT_NE(msg.find("has dtype I8; adapters must be F32, F16 or BF16"), std::string::npos) << msg;
}

TEST(LinearModulePathTest, ParsesOnlyWellFormedPathsAndNeverThrows) {
  auto p = ParseLinearModulePath("model.layers.1.mlp.up_proj", 2);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->layer, 1);
  EXPECT_EQ(p->module, LinearModule::kUp);
  EXPECT_EQ(ParseLinearModulePath("model.layers.7.self_attn.o_proj", 8)->layer, 7);
  EXPECT_FALSE(ParseLinearModulePath("model.layers.07.self_attn.o_proj", 8));  // one spelling per layer
  for (const char* bad : {"model.layers.2.mlp.up_proj", "model.layers.99999999999999999999.mlp.up_proj",
                          "model.layers.-1.mlp.up_proj", "model.layers.+1.mlp.up_proj", "model.layers..mlp.up_proj",
                          "model.layers.1.mlp.up_proj.x", "model.layers.1", "layers.1.mlp.up_proj", ""}) {
    EXPECT_FALSE(ParseLinearModulePath(bad, 2)) << bad;
  }
  EXPECT_FALSE(ParseLinearModulePath("model.layers.0." + std::string(100000, 'x'), 2));
}

}  // namespace
}  // namespace tessera
