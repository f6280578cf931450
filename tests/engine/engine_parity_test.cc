// CPU engine parity with the HF transformers references in the fixtures.
#include <cstring>
#include <map>
#include <memory>
#include <numeric>

#include "gtest/gtest.h"
#include "server/engine/engine.h"
#include "server/engine/sampler.h"
#include "model/model.h"
#include "tests/support/fixtures.h"
#include "tests/support/kv_pages.h"

namespace tessera {
namespace {

using testing::ExpectedTensor;
using testing::Greedy;
using testing::MaxAbsDiff;
using testing::PromptIds;

constexpr float kFp32Atol = 1e-4f;
constexpr int kNumPrompts = 6;

class EngineParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LoadModel(testing::TinyLlamaModelDir());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
  }
  static void TearDownTestSuite() { delete model_; }

  void SetUp() override { engine_ = MakeEngine(*model_, 2); }

  static std::unique_ptr<Engine> MakeEngine(const Model& model, int threads) {
    EngineOptions opts;
    opts.num_threads = threads;
    opts.kv_block_size = 16;
    opts.kv_cache_tokens = 16 * 256;
    auto e = Engine::Create(model, opts);
    EXPECT_TRUE(e.ok()) << e.status();
    return *std::move(e);
  }

  // One sequence in the cache: its blocks and how many slots it fills.
  struct Seq {
    std::vector<int32_t> blocks;
    int32_t kv_len = 0;
  };

  testing::KvPages& Pages(const Engine& engine) {
    auto& p = pages_[&engine];
    if (!p) p = std::make_unique<testing::KvPages>(engine);
    return *p;
  }
  void TearDown() override { pages_.clear(); }
  std::map<const Engine*, std::unique_ptr<testing::KvPages>> pages_;

  Seq NewSeq(Engine& engine, int32_t capacity) {
    auto blocks = Pages(engine).Take(capacity);
    EXPECT_TRUE(blocks.ok()) << blocks.status();
    return {*blocks, 0};
  }

  // Runs the tokens of one sequence at the given positions; returns the
  // last-row logits.
  std::vector<float> Run(Engine& engine, Seq& seq, const std::vector<int32_t>& ids,
                         const std::vector<int32_t>& positions) {
    BatchPlan plan;
    plan.token_ids = ids;
    plan.positions = positions;
    SequencePlan sp;
    sp.query_begin = 0;
    sp.query_len = static_cast<int32_t>(ids.size());
    sp.kv_len = seq.kv_len;
    sp.block_table = seq.blocks;
    sp.needs_logits = true;
    plan.sequences.push_back(sp);
    std::vector<float> logits;
    absl::Status s = engine.Step(plan, &logits);
    EXPECT_TRUE(s.ok()) << s;
    seq.kv_len += sp.query_len;
    return logits;
  }

  static std::vector<int32_t> Iota(int32_t n, int32_t start = 0) {
    std::vector<int32_t> v(n);
    std::iota(v.begin(), v.end(), start);
    return v;
  }

  static Model* model_;
  std::unique_ptr<Engine> engine_;
};

Model* EngineParityTest::model_ = nullptr;

TEST_F(EngineParityTest, RopeInvFreqMatchesHf) {
  std::vector<float> expected = ExpectedTensor("debug/inv_freq");
  EXPECT_LE(MaxAbsDiff(model_->rope_inv_freq, expected), 1e-7f);
}

TEST_F(EngineParityTest, LastPositionLogitsMatchFp32Reference) {
  for (int p = 0; p < kNumPrompts; ++p) {
    std::vector<int32_t> ids = PromptIds(p);
    Seq seq = NewSeq(*engine_, 64);
    std::vector<float> logits = Run(*engine_, seq, ids, Iota(ids.size()));
    EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor("base/" + std::to_string(p))), kFp32Atol) << "prompt " << p;
    Pages(*engine_).Give(seq.blocks);
  }
}

TEST_F(EngineParityTest, GreedyContinuationsMatchHfGenerate) {
  for (int p = 0; p < kNumPrompts; ++p) {
    std::vector<int32_t> ids = PromptIds(p);
    Seq seq = NewSeq(*engine_, 64);
    std::vector<float> logits = Run(*engine_, seq, ids, Iota(ids.size()));
    std::vector<int32_t> out;
    for (int step = 0; step < 16; ++step) {
      const int32_t next = ArgMax(logits.data(), model_->config.vocab_size);
      out.push_back(next);
      if (step < 15) logits = Run(*engine_, seq, {next}, {seq.kv_len});
    }
    EXPECT_EQ(out, Greedy("base", p)) << "prompt " << p;
    Pages(*engine_).Give(seq.blocks);
  }
}

TEST_F(EngineParityTest, Bf16CheckpointMatchesItsReference) {
  auto bf16 = LoadModel(testing::TinyLlamaDir() + "/model-bf16");
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ((*bf16)->checkpoint_dtype, DType::kBF16);
  auto engine = MakeEngine(**bf16, 1);
  for (int p = 0; p < kNumPrompts; ++p) {
    std::vector<int32_t> ids = PromptIds(p);
    Seq seq = NewSeq(*engine, 64);
    std::vector<float> logits = Run(*engine, seq, ids, Iota(ids.size()));
    // Computing in fp32 on the bf16-rounded weights reproduces HF's
    // base_bf16w reference exactly up to summation order.
    EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor("base_bf16w/" + std::to_string(p))), kFp32Atol);
    // And stays within bf16 tolerance of the fp32 model.
    EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor("base/" + std::to_string(p))), 5e-2f);
    Pages(*engine).Give(seq.blocks);
  }
}

TEST_F(EngineParityTest, Fp16CheckpointStaysCloseToFp32) {
  // No HF fp16 reference exists; fp16 weights (11-bit significand) must stay
  // within a loose bound of the fp32 model and keep its greedy choice.
  testing::TempDir dir;
  testing::CopyModelTo(dir.path());
  auto src = SafetensorsFile::Open(testing::TinyLlamaModelDir() + "/model.safetensors");
  ASSERT_TRUE(src.ok());
  std::vector<TensorToWrite> half;
  for (const auto& [name, view] : (*src)->tensors()) {
    TensorToWrite t{name, DType::kF16, view.shape, std::vector<uint8_t>(view.numel() * 2)};
    std::vector<float> f = view.ToFloat();
    for (size_t i = 0; i < f.size(); ++i) {
      const uint16_t h = FloatToF16(f[i]);
      std::memcpy(t.data.data() + 2 * i, &h, 2);
    }
    half.push_back(std::move(t));
  }
  ASSERT_TRUE(WriteSafetensors(dir.Join("model.safetensors"), half).ok());
  auto fp16 = LoadModel(dir.path());
  ASSERT_TRUE(fp16.ok()) << fp16.status();
  EXPECT_EQ((*fp16)->checkpoint_dtype, DType::kF16);
  auto engine = MakeEngine(**fp16, 1);
  for (int p = 0; p < kNumPrompts; ++p) {
    std::vector<int32_t> ids = PromptIds(p);
    Seq seq = NewSeq(*engine, 64);
    std::vector<float> logits = Run(*engine, seq, ids, Iota(ids.size()));
    std::vector<float> ref = ExpectedTensor("base/" + std::to_string(p));
    EXPECT_LE(MaxAbsDiff(logits, ref), 2e-2f) << p;
    EXPECT_EQ(ArgMax(logits.data(), 512), ArgMax(ref.data(), 512)) << p;
    Pages(*engine).Give(seq.blocks);
  }
}

TEST_F(EngineParityTest, PositionOffset200) {
  const auto& t = testing::Expected()["position_tests"]["offset"];
  std::vector<int32_t> ids = PromptIds(t["prompt_index"].get<int>());
  Seq seq = NewSeq(*engine_, 64);
  std::vector<float> logits = Run(*engine_, seq, ids, t["position_ids"].get<std::vector<int32_t>>());
  EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor("offset200/3")), kFp32Atol);
}

TEST_F(EngineParityTest, NonContiguousPositions) {
  // HF builds posgap/3 without an attention mask, so transformers' packed-
  // sequence detection treats the jump 16 -> 217 as the start of a second,
  // separate sequence (block-diagonal attention). Reproduce that reference
  // exactly: the second half alone, at positions 217.., as its own sequence.
  const auto& t = testing::Expected()["position_tests"]["posgap"];
  const std::vector<int32_t> ids = PromptIds(t["prompt_index"].get<int>());
  const std::vector<int32_t> pos = t["position_ids"].get<std::vector<int32_t>>();
  size_t cut = 1;
  while (cut < pos.size() && pos[cut] == pos[cut - 1] + 1) ++cut;
  ASSERT_LT(cut, pos.size());
  Seq second = NewSeq(*engine_, 64);
  std::vector<float> logits = Run(*engine_, second, std::vector<int32_t>(ids.begin() + cut, ids.end()),
                                  std::vector<int32_t>(pos.begin() + cut, pos.end()));
  EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor("posgap/3")), kFp32Atol);

  // Within one sequence, a gap keeps full causal attention and only moves the
  // RoPE angles: the result must differ from contiguous positions.
  Seq whole = NewSeq(*engine_, 64);
  std::vector<float> gap = Run(*engine_, whole, ids, pos);
  EXPECT_GT(MaxAbsDiff(gap, ExpectedTensor("base/3")), 0.1f);
  EXPECT_GT(MaxAbsDiff(gap, ExpectedTensor("posgap/3")), 0.1f);
}

TEST_F(EngineParityTest, LongPromptAndGreedy) {
  const auto& t = testing::Expected()["position_tests"]["long"];
  std::vector<int32_t> ids = t["ids"].get<std::vector<int32_t>>();
  Seq seq = NewSeq(*engine_, 256);
  std::vector<float> logits = Run(*engine_, seq, ids, Iota(ids.size()));
  EXPECT_LE(MaxAbsDiff(logits, ExpectedTensor("long/0")), kFp32Atol);
  if (t.contains("greedy")) {
    std::vector<int32_t> expected = t["greedy"].get<std::vector<int32_t>>();
    std::vector<int32_t> out;
    for (size_t step = 0; step < expected.size(); ++step) {
      out.push_back(ArgMax(logits.data(), model_->config.vocab_size));
      if (step + 1 < expected.size()) logits = Run(*engine_, seq, {out.back()}, {seq.kv_len});
    }
    EXPECT_EQ(out, expected);
  }
}

TEST_F(EngineParityTest, AllPositionsViaChunkedPrefill) {
  // Feeding prompt 5 one token at a time gives every position's logits;
  // compare them with the reference's full-sequence logits.
  std::vector<int32_t> ids = PromptIds(5);
  std::vector<float> all = ExpectedTensor("base_allpos/5");
  const int32_t vocab = model_->config.vocab_size;
  Seq seq = NewSeq(*engine_, 64);
  for (size_t i = 0; i < ids.size(); ++i) {
    std::vector<float> logits = Run(*engine_, seq, {ids[i]}, {static_cast<int32_t>(i)});
    std::vector<float> ref(all.begin() + i * vocab, all.begin() + (i + 1) * vocab);
    ASSERT_LE(MaxAbsDiff(logits, ref), kFp32Atol) << "position " << i;
  }
}

TEST_F(EngineParityTest, BatchedForwardEqualsEachPromptAlone) {
  // All prompts in one step, each with its own blocks.
  BatchPlan plan;
  std::vector<Seq> seqs;
  for (int p = 0; p < kNumPrompts; ++p) {
    std::vector<int32_t> ids = PromptIds(p);
    seqs.push_back(NewSeq(*engine_, 64));
    SequencePlan sp;
    sp.query_begin = plan.num_tokens();
    sp.query_len = static_cast<int32_t>(ids.size());
    sp.block_table = seqs.back().blocks;
    sp.needs_logits = true;
    plan.sequences.push_back(sp);
    plan.token_ids.insert(plan.token_ids.end(), ids.begin(), ids.end());
    for (size_t i = 0; i < ids.size(); ++i) plan.positions.push_back(static_cast<int32_t>(i));
  }
  std::vector<float> batched;
  ASSERT_TRUE(engine_->Step(plan, &batched).ok());
  const int32_t vocab = model_->config.vocab_size;
  ASSERT_EQ(batched.size(), static_cast<size_t>(kNumPrompts) * vocab);

  auto alone_engine = MakeEngine(*model_, 1);
  for (int p = 0; p < kNumPrompts; ++p) {
    std::vector<int32_t> ids = PromptIds(p);
    Seq seq = NewSeq(*alone_engine, 64);
    std::vector<float> alone = Run(*alone_engine, seq, ids, Iota(ids.size()));
    std::vector<float> row(batched.begin() + p * vocab, batched.begin() + (p + 1) * vocab);
    // Same kernels, same summation order: identical, not just close.
    EXPECT_EQ(row, alone) << "prompt " << p;
    Pages(*alone_engine).Give(seq.blocks);
  }

  // A mixed decode step: every sequence advances by one token together.
  BatchPlan decode;
  for (int p = 0; p < kNumPrompts; ++p) {
    SequencePlan sp = plan.sequences[p];
    sp.kv_len = sp.query_len;
    sp.query_begin = p;
    sp.query_len = 1;
    decode.sequences.push_back(sp);
    decode.token_ids.push_back(Greedy("base", p)[0]);
    decode.positions.push_back(plan.sequences[p].query_len);
  }
  std::vector<float> step2;
  ASSERT_TRUE(engine_->Step(decode, &step2).ok());
  for (int p = 0; p < kNumPrompts; ++p) {
    EXPECT_EQ(ArgMax(step2.data() + p * vocab, vocab), Greedy("base", p)[1]) << "prompt " << p;
  }
}

TEST_F(EngineParityTest, MalformedPlansAreRejected) {
  Seq seq = NewSeq(*engine_, 16);
  BatchPlan plan;
  plan.token_ids = {model_->config.vocab_size};
  plan.positions = {0};
  SequencePlan sp;
  sp.query_len = 1;
  sp.block_table = seq.blocks;
  sp.needs_logits = true;
  plan.sequences.push_back(sp);
  std::vector<float> logits;
  absl::Status s = engine_->Step(plan, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s;

  plan.token_ids = {5};
  plan.sequences[0].block_table.clear();
  s = engine_->Step(plan, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block table"), std::string::npos) << s;
}

}  // namespace
}  // namespace tessera
