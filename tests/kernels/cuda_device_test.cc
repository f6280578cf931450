// Runs only where a GPU is present; skips cleanly elsewhere (label: cuda).
#include "gtest/gtest.h"
#include "kernels/cuda/device_query.h"

namespace tessera {
namespace {

TEST(CudaDeviceTest, ReportsVisibleDevices) {
  if (!CudaCompiledIn()) GTEST_SKIP() << "built without CUDA (TESSERA_CUDA=OFF or no nvcc)";
  std::vector<CudaDeviceInfo> devices = QueryCudaDevices();
  if (devices.empty()) GTEST_SKIP() << "no CUDA device visible";
  for (const CudaDeviceInfo& d : devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GE(d.compute_major, 7);
    EXPECT_GT(d.total_memory_bytes, 0u);
  }
}

}  // namespace
}  // namespace tessera
