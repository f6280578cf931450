// Engine::Step performs no heap allocation: every global operator new is
// counted while steps of varying shape (prefill chunks, decode batches,
// mixed adapters of every kind) run on a two-thread pool.
#include <atomic>
#include <cstdlib>
#include <new>

#include "adapters/adapter_pool.h"
#include "gtest/gtest.h"
#include "server/engine/engine.h"
#include "model/model.h"
#include "tests/support/fixtures.h"
#include "tests/support/kv_pages.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(size_t n, std::align_val_t a) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  const size_t al = static_cast<size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace tessera {
namespace {

TEST(EngineAllocTest, StepAllocatesNothingAfterCreate) {
  auto model = LoadModel(testing::TinyLlamaModelDir());
  ASSERT_TRUE(model.ok()) << model.status();
  auto pool = AdapterPool::Create((*model)->config, {4, 64});
  ASSERT_TRUE(pool.ok()) << pool.status();
  int32_t slot = 0;
  for (const char* kind : {"lora", "road", "diablo", "seal"}) {
    auto a = LoadAdapter(kind, testing::TinyLlamaDir() + "/adapters/" + kind, (*model)->config, AdapterLimits{});
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE((*pool)->Write(slot++, **a).ok());
  }

  EngineOptions eo;
  eo.num_threads = 2;
  eo.kv_cache_tokens = 16 * 64;
  eo.max_step_tokens = 64;
  eo.max_seqs = 8;
  eo.adapter_pool = pool->get();
  auto engine = Engine::Create(**model, eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  PlanBuilder builder((*engine)->plan_limits());

  // Eight sequences; sequence i uses adapter slot i % 5 (4 = the base model).
  constexpr int kSeqs = 8;
  std::vector<std::vector<int32_t>> blocks;
  testing::KvPages pages(**engine);
  for (int i = 0; i < kSeqs; ++i) blocks.push_back(*pages.Take(8 * 16));
  std::vector<int32_t> kv_len(kSeqs, 0);
  // The plans are built before counting: the scheduler's BatchPlan is not
  // the engine's business.
  std::vector<BatchPlan> plans;
  for (int step = 0; step < 24; ++step) {
    BatchPlan p;
    const int active = 1 + step % kSeqs;
    for (int i = 0; i < active; ++i) {
      const int32_t len = step < kSeqs ? 1 + (step + i) % 7 : 1;  // prefill chunks, then decode
      SequencePlan s;
      s.query_begin = p.num_tokens();
      s.query_len = len;
      s.kv_len = kv_len[i];
      s.block_table = blocks[i];
      s.needs_logits = (step + i) % 3 != 0;
      for (int32_t t = 0; t < len; ++t) {
        p.token_ids.push_back((7 * step + 11 * i + t) % 512);
        p.positions.push_back(kv_len[i] + t);
      }
      if (i % 5 != 4) p.adapter_segments.push_back({s.query_begin, len, i % 5});
      kv_len[i] += len;
      p.sequences.push_back(std::move(s));
    }
    plans.push_back(std::move(p));
  }

  int64_t logit_values = 0;
  g_allocations = 0;
  g_counting = true;
  for (const BatchPlan& p : plans) {
    absl::StatusOr<PlanView> view = builder.Build(p, (*engine)->slot_ops());
    if (!view.ok()) break;
    absl::StatusOr<absl::Span<const float>> logits = (*engine)->Step(*view);
    if (!logits.ok()) break;
    logit_values += static_cast<int64_t>(logits->size());
  }
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);

  // The same plans did run (the count above is of real work).
  int64_t expected = 0;
  for (const BatchPlan& p : plans) expected += int64_t{p.num_logit_rows()} * (*model)->config.vocab_size;
  EXPECT_EQ(logit_values, expected);
  EXPECT_GT(expected, 0);

  // The hook itself counts: a vector outside the engine allocates.
  g_counting = true;
  std::vector<int>* v = new std::vector<int>(3);
  g_counting = false;
  EXPECT_GT(g_allocations.load(), 0);
  delete v;
}

}  // namespace
}  // namespace tessera
