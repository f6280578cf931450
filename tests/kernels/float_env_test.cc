#include "kernels/cpu/float_env.h"

#include <atomic>
#include <cfloat>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"

namespace tessera {
namespace {

// A product on a denormal, computed where the compiler cannot fold it.
float TimesOne(float x) {
  volatile float v = x;
  volatile float one = 1.0f;
  return v * one;
}

TEST(FloatEnvTest, DenormalsFlushToZeroOnTheCallingThreadAndThePoolsWorkers) {
  const float denormal = FLT_MIN / 4;
  ASSERT_GT(denormal, 0.0f);
  // A fresh thread keeps IEEE behaviour until it asks.
  std::thread([&] {
    EXPECT_EQ(TimesOne(denormal), denormal);
    FlushDenormalsOnThisThread();
    EXPECT_EQ(TimesOne(denormal), 0.0f);
    EXPECT_EQ(TimesOne(FLT_MIN), FLT_MIN);  // normal numbers are untouched
  }).join();
  // Every worker of an ops thread pool flushes.
  ThreadPool pool(3);
  std::atomic<int> flushed{0}, chunks{0};
  pool.ParallelFor(3, 1, [&](int64_t, int64_t) {
    ++chunks;
    if (TimesOne(denormal) == 0.0f) ++flushed;
  });
  // Chunk i runs on worker i, chunk 0 on the caller, which (this test's main
  // thread) has not asked; Engine::Step asks on its caller.
  EXPECT_EQ(chunks.load(), 3);
  EXPECT_EQ(flushed.load(), 2);
}

}  // namespace
}  // namespace tessera
