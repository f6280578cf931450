// The API layer's concurrency pieces without gRPC (so they also run under
// TSan): the in-flight request counter and the work queue.
#include <atomic>
#include <thread>
#include <vector>

#include "common/work_queue.h"
#include "gtest/gtest.h"
#include "server/api/inference_service.h"

namespace tessera {
namespace {

TEST(InflightCounterTest, CapsEachTenantAndTheTotalUnderConcurrency) {
  InflightCounter counter(/*per_tenant=*/3, /*total=*/5);
  std::vector<std::unique_ptr<InflightCounter::Slot>> held;
  for (int i = 0; i < 3; ++i) held.push_back(*counter.Acquire("a"));
  auto fourth = counter.Acquire("a");
  EXPECT_EQ(fourth.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(fourth.status().message().find("--max-requests-per-tenant"), std::string::npos);
  held.push_back(*counter.Acquire("b"));
  held.push_back(*counter.Acquire("b"));
  auto sixth = counter.Acquire("c");
  EXPECT_NE(sixth.status().message().find("--max-requests-total"), std::string::npos) << sixth.status();
  held.clear();
  // 16 threads race for 5 slots, over and over: never more than 5 at once.
  std::atomic<int> now{0}, peak{0}, granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto slot = counter.Acquire(t % 2 ? "a" : "b");
        if (!slot.ok()) continue;
        granted.fetch_add(1);
        const int n = now.fetch_add(1) + 1;
        for (int p = peak.load(); n > p && !peak.compare_exchange_weak(p, n);) {
        }
        now.fetch_sub(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 5);
  EXPECT_GT(granted.load(), 0);
}

TEST(WorkQueueTest, RunsEveryTaskPostedFromManyThreadsThenDrainsOnDestruction) {
  std::atomic<int> ran{0};
  {
    WorkQueue queue(2);
    std::vector<std::thread> posters;
    for (int t = 0; t < 8; ++t) {
      posters.emplace_back([&] {
        for (int i = 0; i < 250; ++i) queue.Post([&] { ran.fetch_add(1); });
      });
    }
    for (auto& t : posters) t.join();
  }
  EXPECT_EQ(ran.load(), 2000);
}

}  // namespace
}  // namespace tessera
