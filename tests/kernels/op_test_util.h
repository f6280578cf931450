// Shared pieces of the per-op parity tables (tests/kernels/<op>_test.cc):
// the backends present, deterministic random tensors, NMSE with a tolerance
// per dtype, and plans built through PlanBuilder.
//
// Every op test runs each case on every backend of BackendNames() and
// compares with the scalar fp64 reference written in the test itself. A
// backend reads and writes its own memory: tensors go through
// TestBackend::Upload and Download, so a device backend joins the tables by
// implementing those two.
#ifndef TESSERA_TESTS_KERNELS_OP_TEST_UTIL_H_
#define TESSERA_TESTS_KERNELS_OP_TEST_UTIL_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/batch_plan.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "kernels/plan_builder.h"

namespace tessera::testing {

class TestBackend {
 public:
  explicit TestBackend(const OpTable& ops);
  const OpTable& ops() const { return ops_; }
  const ExecContext& ctx() const { return ctx_; }

  // Backend memory holding a copy of host (kept until the backend goes).
  template <typename T>
  T* Upload(const std::vector<T>& host) {
    return static_cast<T*>(UploadBytes(host.data(), host.size() * sizeof(T)));
  }
  template <typename T>
  std::vector<T> Download(const T* device, size_t n) const {
    std::vector<T> out(n);
    DownloadBytes(device, out.data(), n * sizeof(T));
    return out;
  }

 private:
  void* UploadBytes(const void* host, size_t bytes);
  void DownloadBytes(const void* device, void* host, size_t bytes) const;

  const OpTable& ops_;
  ThreadPool pool_{2};
  ExecContext ctx_;
  std::deque<std::vector<uint64_t>> host_copies_;  // uint64_t: 8-byte aligned
};

// The backends of this binary: "cpu", and "cuda" when CudaOps() has a table.
std::vector<std::string> BackendNames();
std::unique_ptr<TestBackend> MakeBackend(const std::string& name);

// Normalized mean squared error: Σ(a - ref)² / Σ ref² (Σ(a - ref)² when ref
// is all zeros).
double Nmse(const std::vector<float>& a, const std::vector<double>& ref);
// The largest NMSE accepted for results computed in dtype against the fp64
// reference (f32: 1e-8; f16/bf16 for the GPU tables to come).
double NmseTolerance(DType dtype);

std::vector<float> RandomVector(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f);

// A step of sequences (query_len rows each, kv_len entries already cached)
// over shuffled pages of a cache of num_blocks pages, with adapter segments
// (row_begin, row_count, slot) whose slots have slot_ops. The view points
// into the builder.
struct TestSeq {
  int32_t query_len = 1;
  int32_t kv_len = 0;
};
struct TestPlan {
  BatchPlan plan;
  std::unique_ptr<PlanBuilder> builder;
  PlanView view;
};
TestPlan MakePlan(std::mt19937& rng, const std::vector<TestSeq>& seqs, int32_t block_size, int32_t num_blocks,
                  const std::vector<AdapterSegment>& segments = {}, const std::vector<AdapterOp>& slot_ops = {});

// Adapter segments over `rows` rows for a mix of `slots` adapters, with some
// base-model rows between segments:
//   identical: one adapter for every segment; distinct: a different adapter
//   per row; zipf: adapter k with weight 1/(k+1)^1.1; skewed: one long
//   segment and many one-row ones.
enum class AdapterMix { kIdentical, kDistinct, kZipf, kSkewed };
const char* AdapterMixName(AdapterMix mix);
inline constexpr AdapterMix kAllMixes[] = {AdapterMix::kIdentical, AdapterMix::kDistinct, AdapterMix::kZipf,
                                           AdapterMix::kSkewed};
std::vector<AdapterSegment> MixSegments(std::mt19937& rng, AdapterMix mix, int32_t rows, int32_t slots);

// Backend-parameterized fixture: GetParam() is a name from BackendNames().
class OpTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { backend_ = MakeBackend(GetParam()); }
  TestBackend& backend() { return *backend_; }
  std::mt19937 rng_{20261201};

 private:
  std::unique_ptr<TestBackend> backend_;
};

}  // namespace tessera::testing

#define TESSERA_INSTANTIATE_OP_TEST(suite)                                                    \
  INSTANTIATE_TEST_SUITE_P(Backends, suite, ::testing::ValuesIn(::tessera::testing::BackendNames()), \
                           [](const auto& info) { return info.param; })

#endif  // TESSERA_TESTS_KERNELS_OP_TEST_UTIL_H_
