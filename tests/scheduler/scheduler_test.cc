#include "server/scheduler/scheduler.h"

#include <future>

#include "gtest/gtest.h"
#include "model/model.h"
#include "server/scheduler/output_text.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

using testing::Greedy;
using testing::PromptIds;

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = LoadModel(testing::TinyLlamaModelDir())->release();
    tokenizer_ = Tokenizer::FromDir(testing::TinyLlamaModelDir())->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }

  void StartScheduler(int32_t max_batch, int64_t kv_tokens = 8 * 256, int32_t max_step_tokens = 512,
                      bool start = true) {
    EngineOptions eo;
    eo.num_threads = 2;
    eo.kv_cache_tokens = kv_tokens;
    engine_ = *Engine::Create(*model_, eo);
    SchedulerOptions so;
    so.max_batch_size = max_batch;
    so.max_new_tokens_limit = 256;
    so.max_step_tokens = max_step_tokens;
    scheduler_ = std::make_unique<Scheduler>(engine_.get(), tokenizer_, std::vector<int32_t>{1}, so);
    if (start) scheduler_->Start();
  }
  void TearDown() override { scheduler_.reset(); }

  struct Outcome {
    GenerationResult result;
    std::vector<GenerationDelta> deltas;
  };

  // Submits and returns a future of the outcome.
  std::future<Outcome> Submit(GenerationParams p, absl::Status* submit_status = nullptr,
                              std::shared_ptr<RequestHandle>* handle_out = nullptr) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    auto outcome = std::make_shared<Outcome>();
    GenerationCallbacks cb;
    cb.on_delta = [outcome](const GenerationDelta& d) { outcome->deltas.push_back(d); };
    cb.on_finish = [outcome, promise](GenerationResult r) {
      outcome->result = std::move(r);
      promise->set_value(std::move(*outcome));
    };
    auto handle = scheduler_->NewHandle();
    absl::Status s = scheduler_->Submit(handle, std::move(p), std::move(cb));
    if (submit_status) *submit_status = s;
    if (handle_out) *handle_out = handle;
    return promise->get_future();
  }

  static GenerationParams Greedy16(int prompt) {
    GenerationParams p;
    p.prompt_ids = PromptIds(prompt);
    p.max_new_tokens = 16;
    p.ignore_eos = true;
    return p;
  }

  static Model* model_;
  static Tokenizer* tokenizer_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> scheduler_;
};
Model* SchedulerTest::model_ = nullptr;
Tokenizer* SchedulerTest::tokenizer_ = nullptr;

TEST_F(SchedulerTest, ConcurrentRequestsGetTheirOwnGreedyTokens) {
  StartScheduler(/*max_batch=*/4);  // 6 requests: some wait in the queue
  std::vector<std::future<Outcome>> futures;
  for (int p = 0; p < 6; ++p) futures.push_back(Submit(Greedy16(p)));
  for (int p = 0; p < 6; ++p) {
    Outcome o = futures[p].get();
    ASSERT_TRUE(o.result.status.ok());
    EXPECT_EQ(o.result.token_ids, Greedy("base", p)) << "prompt " << p;
    EXPECT_EQ(o.result.finish_reason, FinishReason::kLength);
    EXPECT_EQ(o.result.prompt_tokens, static_cast<int32_t>(PromptIds(p).size()));
    EXPECT_EQ(o.result.completion_tokens, 16);
    EXPECT_EQ(o.result.text, tokenizer_->Decode(Greedy("base", p), /*skip_special=*/true));
    std::string streamed;
    std::vector<int32_t> streamed_ids;
    for (const auto& d : o.deltas) {
      streamed += d.text;
      streamed_ids.insert(streamed_ids.end(), d.token_ids.begin(), d.token_ids.end());
    }
    EXPECT_EQ(streamed, o.result.text);
    EXPECT_EQ(streamed_ids, o.result.token_ids);
    EXPECT_GE(o.result.total_ms, o.result.time_to_first_token_ms);
  }
}

TEST_F(SchedulerTest, ChunkedPrefillGivesTheSameTokens) {
  // A 7-token step budget: prompts of up to 40 tokens are prefilled over many
  // steps, interleaved with the decode rows of the others.
  StartScheduler(/*max_batch=*/6, 8 * 256, /*max_step_tokens=*/7);
  std::vector<std::future<Outcome>> futures;
  for (int p = 0; p < 6; ++p) futures.push_back(Submit(Greedy16(p)));
  for (int p = 0; p < 6; ++p) {
    Outcome o = futures[p].get();
    EXPECT_EQ(o.result.token_ids, Greedy("base", p)) << "prompt " << p;
  }
}

TEST_F(SchedulerTest, SamplingDependsOnlyOnSeed) {
  StartScheduler(4);
  GenerationParams p = Greedy16(3);
  p.temperature = 1.0f;
  p.seed = 77;
  std::vector<int32_t> alone = Submit(p).get().result.token_ids;
  // Same seed, now batched with other traffic.
  std::vector<std::future<Outcome>> others;
  for (int i = 0; i < 3; ++i) {
    GenerationParams q = Greedy16(i);
    q.temperature = 0.8f;
    q.seed = 1000 + i;
    others.push_back(Submit(q));
  }
  auto batched = Submit(p);
  EXPECT_EQ(batched.get().result.token_ids, alone);
  for (auto& f : others) f.get();
  p.seed = 78;
  EXPECT_NE(Submit(p).get().result.token_ids, alone);
  // An unset seed is drawn and reported; reusing it reproduces the output.
  p.seed.reset();
  Outcome drawn = Submit(p).get();
  p.seed = drawn.result.seed;
  EXPECT_EQ(Submit(p).get().result.token_ids, drawn.result.token_ids);
}

TEST_F(SchedulerTest, StopsOnEosStopTokenAndStopString) {
  StartScheduler(4);
  // Base prompt 0 greedily produces 243 90 454 334 ...; stop on 454.
  GenerationParams p = Greedy16(0);
  p.stop_token_ids = {454};
  Outcome o = Submit(p).get();
  EXPECT_EQ(o.result.finish_reason, FinishReason::kStop);
  EXPECT_EQ(o.result.token_ids, (std::vector<int32_t>{243, 90, 454}));
  EXPECT_EQ(o.result.text, tokenizer_->Decode({243, 90}, true));

  // A stop string spanning token boundaries ends generation; the text stops
  // right before it.
  const std::string full = tokenizer_->Decode(Greedy("base", 0), true);
  const size_t at = full.find("ot#");
  ASSERT_NE(at, std::string::npos) << full;
  p = Greedy16(0);
  p.stop_strings = {"zzz", "ot#"};
  o = Submit(p).get();
  EXPECT_EQ(o.result.finish_reason, FinishReason::kStop);
  EXPECT_EQ(o.result.text, full.substr(0, at));
  std::string streamed;
  for (const auto& d : o.deltas) streamed += d.text;
  EXPECT_EQ(streamed, o.result.text);

  // Without ignore_eos, an output that never produces EOS runs to the length.
  p = Greedy16(0);
  p.ignore_eos = false;
  o = Submit(p).get();
  EXPECT_EQ(o.result.finish_reason, FinishReason::kLength);
}

TEST_F(SchedulerTest, EosEndsGenerationUnlessIgnored) {
  // Make token 334 (4th greedy token of prompt 0) the EOS id.
  EngineOptions eo;
  eo.kv_cache_tokens = 1024;
  engine_ = *Engine::Create(*model_, eo);
  scheduler_ =
      std::make_unique<Scheduler>(engine_.get(), tokenizer_, std::vector<int32_t>{334}, SchedulerOptions{});
  scheduler_->Start();
  GenerationParams p = Greedy16(0);
  p.ignore_eos = false;
  Outcome o = Submit(p).get();
  EXPECT_EQ(o.result.finish_reason, FinishReason::kEos);
  EXPECT_EQ(o.result.token_ids, (std::vector<int32_t>{243, 90, 454, 334}));
  p.ignore_eos = true;
  EXPECT_EQ(Submit(p).get().result.token_ids, Greedy("base", 0));
}

TEST_F(SchedulerTest, ContextLimitClipsMaxNewTokens) {
  StartScheduler(2);
  GenerationParams p;
  p.prompt_ids = testing::Expected()["position_tests"]["long"]["ids"].get<std::vector<int32_t>>();
  p.max_new_tokens = 200;  // 220 + 200 > 256
  p.ignore_eos = true;
  Outcome o = Submit(p).get();
  EXPECT_EQ(o.result.finish_reason, FinishReason::kLength);
  EXPECT_EQ(o.result.completion_tokens, 256 - 220);
}

TEST_F(SchedulerTest, RejectsBadParameters) {
  StartScheduler(2);
  auto expect_error = [&](GenerationParams p, absl::StatusCode code, const std::string& needle) {
    absl::Status s;
    Submit(std::move(p), &s);
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  GenerationParams p = Greedy16(0);
  p.prompt_ids.clear();
  expect_error(p, absl::StatusCode::kInvalidArgument, "prompt is empty");
  p = Greedy16(0);
  p.prompt_ids.push_back(512);
  expect_error(p, absl::StatusCode::kInvalidArgument, "outside the vocabulary");
  p = Greedy16(0);
  p.prompt_ids.assign(256, 5);
  expect_error(p, absl::StatusCode::kInvalidArgument, "context limit is 256");
  p = Greedy16(0);
  p.max_new_tokens = 0;
  expect_error(p, absl::StatusCode::kInvalidArgument, "max_new_tokens must be in [1, 256]");
  p.max_new_tokens = 257;
  expect_error(p, absl::StatusCode::kInvalidArgument, "max_new_tokens");
  p = Greedy16(0);
  p.top_p = 0.0f;
  expect_error(p, absl::StatusCode::kInvalidArgument, "top_p must be in (0, 1]");
  p.top_p = 1.5f;
  expect_error(p, absl::StatusCode::kInvalidArgument, "top_p");
  p = Greedy16(0);
  p.temperature = -1;
  expect_error(p, absl::StatusCode::kInvalidArgument, "temperature");
  p = Greedy16(0);
  p.adapter_id = "tenant-a/lora";
  expect_error(p, absl::StatusCode::kNotFound, "adapter 'tenant-a/lora'");
  p = Greedy16(0);
  p.stop_strings = {""};
  expect_error(p, absl::StatusCode::kInvalidArgument, "stop strings");
}

TEST_F(SchedulerTest, RequestLargerThanCacheIsRefused) {
  StartScheduler(2, /*kv_tokens=*/32);
  GenerationParams p = Greedy16(5);  // 40 + 16 tokens > 32
  absl::Status s;
  Submit(p, &s);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("kv_cache_tokens"), std::string::npos);
}

TEST_F(SchedulerTest, CancelAndShutdownFinishEveryRequestOnce) {
  StartScheduler(1);
  std::vector<std::future<Outcome>> futures;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (int i = 0; i < 4; ++i) {
    GenerationParams p = Greedy16(i);
    p.max_new_tokens = 200;
    std::shared_ptr<RequestHandle> h;
    futures.push_back(Submit(p, nullptr, &h));
    handles.push_back(h);
  }
  handles[2]->Cancel();  // queued behind the others
  scheduler_->StopAdmitting();
  absl::Status s;
  Submit(Greedy16(0), &s);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(futures[2].get().result.finish_reason, FinishReason::kCancelled);
  scheduler_->Stop();  // cancels whatever is still queued or running
  for (int i : {0, 1, 3}) {
    Outcome o = futures[i].get();  // each finished exactly once (a promise)
    EXPECT_TRUE(o.result.finish_reason == FinishReason::kCancelled ||
                o.result.finish_reason == FinishReason::kLength);
  }
  // All KV blocks are back.
  EXPECT_EQ(scheduler_->stats().kv_blocks_used, 0);
  EXPECT_EQ(scheduler_->stats().kv_blocks_total, engine_->plan_limits().num_blocks);
}

TEST_F(SchedulerTest, PreemptionByRecomputeKeepsEveryRequestsTokens) {
  // 6 blocks of 16 tokens; each request needs 2 blocks by its end, so six of
  // them admitted on their first block must preempt the youngest as they
  // grow, then recompute them.
  StartScheduler(/*max_batch=*/6, /*kv_tokens=*/6 * 16);
  std::vector<std::future<Outcome>> futures;
  for (int i = 0; i < 6; ++i) futures.push_back(Submit(Greedy16(i)));
  for (int i = 0; i < 6; ++i) {
    Outcome o = futures[i].get();
    ASSERT_TRUE(o.result.status.ok()) << o.result.status;
    EXPECT_EQ(o.result.token_ids, Greedy("base", i)) << "prompt " << i;
    std::vector<int32_t> streamed;
    for (const auto& d : o.deltas) streamed.insert(streamed.end(), d.token_ids.begin(), d.token_ids.end());
    EXPECT_EQ(streamed, o.result.token_ids) << "no token is streamed twice after a recompute";
  }
  EXPECT_GT(scheduler_->stats().preemptions, 0);
  ASSERT_TRUE(scheduler_->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(scheduler_->stats().kv_blocks_used, 0);
}

TEST_F(SchedulerTest, QueuedRequestPastItsDeadlineIsDropped) {
  StartScheduler(/*max_batch=*/1);
  GenerationParams longp = Greedy16(0);
  longp.max_new_tokens = 200;
  auto first = Submit(longp);
  GenerationParams late = Greedy16(1);
  late.deadline = absl::Now() + absl::Milliseconds(1);
  Outcome o = Submit(late).get();
  EXPECT_EQ(o.result.status.code(), absl::StatusCode::kDeadlineExceeded) << o.result.status;
  EXPECT_TRUE(o.result.token_ids.empty());
  EXPECT_TRUE(first.get().result.status.ok());
  ASSERT_TRUE(scheduler_->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(scheduler_->stats().kv_blocks_used, 0);
}

TEST_F(SchedulerTest, TenantsShareTheBatchFairly) {
  // One slot. Tenant A queues ten requests before B's single one arrives; B
  // must not wait for all of A's: it runs second, after A's first. All are
  // queued before the scheduler starts, so a slow machine cannot finish A's
  // first requests before B arrives.
  StartScheduler(/*max_batch=*/1, 8 * 256, 512, /*start=*/false);
  std::vector<std::pair<std::string, absl::Time>> finished;
  std::mutex mu;
  auto submit = [&](const std::string& tenant, int prompt) {
    GenerationParams p = Greedy16(prompt);
    p.tenant = tenant;
    GenerationCallbacks cb;
    cb.on_finish = [&, tenant](GenerationResult) {
      std::lock_guard<std::mutex> lock(mu);
      finished.push_back({tenant, absl::Now()});
    };
    ASSERT_TRUE(scheduler_->Submit(scheduler_->NewHandle(), std::move(p), std::move(cb)).ok());
  };
  for (int i = 0; i < 10; ++i) submit("a", i % 6);
  submit("b", 0);
  scheduler_->Start();
  ASSERT_TRUE(scheduler_->WaitIdle(absl::Seconds(30)));
  ASSERT_EQ(finished.size(), 11u);
  int b_position = 0;
  for (size_t i = 0; i < finished.size(); ++i) {
    if (finished[i].first == "b") b_position = static_cast<int>(i);
  }
  EXPECT_LE(b_position, 2) << "tenant b waited behind most of tenant a's burst";
}

TEST(OutputTextTest, HoldsBackPossibleStopPrefixes) {
  auto tok = Tokenizer::FromDir(testing::TinyLlamaModelDir());
  ASSERT_TRUE(tok.ok());
  auto ids = (*tok)->Encode("The quick brown fox jumps");
  ASSERT_TRUE(ids.ok());
  OutputText out(**tok, {"fox jumps over"});
  std::string released;
  for (int32_t id : *ids) released += out.Append(id);
  EXPECT_FALSE(out.stopped());
  // "fox jumps" could still become the stop string: held back.
  EXPECT_EQ(released, "The quick brown ");
  EXPECT_EQ(out.Flush(), "fox jumps");
}

}  // namespace
}  // namespace tessera
