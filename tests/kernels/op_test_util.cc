#include "tests/kernels/op_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "gtest/gtest.h"

namespace tessera::testing {

TestBackend::TestBackend(const OpTable& ops) : ops_(ops) {
  ctx_.device = ops.device;
  ctx_.pool = &pool_;
}

void* TestBackend::UploadBytes(const void* host, size_t bytes) {
  // The CPU backend reads host memory; a device backend copies to it here.
  host_copies_.emplace_back(bytes / 8 + 1);
  if (bytes > 0) std::memcpy(host_copies_.back().data(), host, bytes);
  return host_copies_.back().data();
}

void TestBackend::DownloadBytes(const void* device, void* host, size_t bytes) const {
  if (bytes > 0) std::memcpy(host, device, bytes);
}

std::vector<std::string> BackendNames() {
  std::vector<std::string> names = {"cpu"};
  if (CudaOps() != nullptr) names.push_back("cuda");
  return names;
}

std::unique_ptr<TestBackend> MakeBackend(const std::string& name) {
  if (name == "cuda" && CudaOps() != nullptr) return std::make_unique<TestBackend>(*CudaOps());
  return std::make_unique<TestBackend>(CpuOps());
}

double Nmse(const std::vector<float>& a, const std::vector<double>& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), ref.size()); ++i) {
    const double d = double{a[i]} - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den == 0 ? num : num / den;
}

double NmseTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF16: return 1e-5;
    case DType::kBF16: return 1e-4;
    default: return 1e-8;  // f32: an RMS error of 1e-4 of the signal, even after cancellation
  }
}

std::vector<float> RandomVector(std::mt19937& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

const char* AdapterMixName(AdapterMix mix) {
  switch (mix) {
    case AdapterMix::kIdentical: return "identical";
    case AdapterMix::kDistinct: return "distinct";
    case AdapterMix::kZipf: return "zipf";
    case AdapterMix::kSkewed: return "skewed";
  }
  return "?";
}

std::vector<AdapterSegment> MixSegments(std::mt19937& rng, AdapterMix mix, int32_t rows, int32_t slots) {
  std::vector<double> weights(slots);
  for (int32_t k = 0; k < slots; ++k) weights[k] = 1.0 / std::pow(k + 1.0, 1.1);
  std::discrete_distribution<int32_t> zipf(weights.begin(), weights.end());
  std::uniform_int_distribution<int32_t> len(1, 6);
  std::vector<AdapterSegment> segs;
  int32_t r = 0, n = 0;
  while (r < rows) {
    if (n % 4 == 3) {  // a base-model row
      ++r;
      ++n;
      continue;
    }
    int32_t count = len(rng), slot = 0;
    switch (mix) {
      case AdapterMix::kIdentical: slot = 0; break;
      case AdapterMix::kDistinct:
        count = 1;
        slot = static_cast<int32_t>(segs.size()) % slots;
        break;
      case AdapterMix::kZipf: slot = zipf(rng); break;
      case AdapterMix::kSkewed:
        count = segs.empty() ? std::max(1, rows / 2) : 1;
        slot = static_cast<int32_t>(segs.size()) % slots;
        break;
    }
    count = std::min(count, rows - r);
    segs.push_back({r, count, slot});
    r += count;
    ++n;
  }
  return segs;
}

TestPlan MakePlan(std::mt19937& rng, const std::vector<TestSeq>& seqs, int32_t block_size, int32_t num_blocks,
                  const std::vector<AdapterSegment>& segments, const std::vector<AdapterOp>& slot_ops) {
  TestPlan t;
  std::vector<int32_t> pages(num_blocks);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng);
  size_t next_page = 0;
  for (const TestSeq& s : seqs) {
    SequencePlan sp;
    sp.query_begin = t.plan.num_tokens();
    sp.query_len = s.query_len;
    sp.kv_len = s.kv_len;
    sp.needs_logits = true;
    const int32_t n = (s.kv_len + s.query_len + block_size - 1) / block_size;
    for (int32_t p = 0; p < n; ++p) sp.block_table.push_back(pages.at(next_page++));
    for (int32_t i = 0; i < s.query_len; ++i) {
      t.plan.token_ids.push_back(0);
      t.plan.positions.push_back(s.kv_len + i);
    }
    t.plan.sequences.push_back(std::move(sp));
  }
  t.plan.adapter_segments = segments;
  PlanLimits limits;
  limits.max_tokens = std::max(1, t.plan.num_tokens());
  limits.max_seqs = std::max<int32_t>(1, static_cast<int32_t>(seqs.size()));
  limits.vocab_size = 1;
  limits.num_blocks = num_blocks;
  limits.block_size = block_size;
  t.builder = std::make_unique<PlanBuilder>(limits);
  absl::StatusOr<PlanView> v = t.builder->Build(t.plan, slot_ops);
  EXPECT_TRUE(v.ok()) << v.status();
  if (v.ok()) t.view = *v;
  return t;
}

}  // namespace tessera::testing
