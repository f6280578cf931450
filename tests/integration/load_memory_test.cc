// Peak memory while quantizing a generated model of a few hundred MB: loading
// streams tensor by tensor (row by row), so the peak stays near the quantized
// model plus one tensor and never reaches a full fp32 copy. Each test runs in
// its own process (ctest), so VmHWM measures that load alone.
#include <filesystem>

#include "common/process_memory.h"
#include "gtest/gtest.h"
#include "model/model.h"
#include "tests/support/fixtures.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

void ExpectLoadPeakWithinBound(WeightFormat format) {
  testing::TempDir dir;
  testing::CommandResult gen = testing::RunCommand(
      {testing::BinaryPath("bench/tessera-genmodel"), "--output", dir.path(), "--preset", "memtest"});
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  const int64_t file_bytes = static_cast<int64_t>(std::filesystem::file_size(dir.Join("model.safetensors")));
  ASSERT_GT(file_bytes, 300 << 20);  // a few hundred MB of fp32

  const int64_t rss_before = CurrentRssBytes();
  LoadOptions options;
  options.quant = {format, 128};
  auto model = LoadModel(dir.path(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  const LoadStats& st = (*model)->stats;
  const double bound = 1.3 * static_cast<double>(st.weight_bytes + st.largest_tensor_bytes);
  ::testing::Test::RecordProperty("file_bytes", std::to_string(file_bytes));
  ::testing::Test::RecordProperty("weight_bytes", std::to_string(st.weight_bytes));
  ::testing::Test::RecordProperty("largest_tensor_bytes", std::to_string(st.largest_tensor_bytes));
  ::testing::Test::RecordProperty("peak_rss_bytes", std::to_string(st.peak_rss_bytes));
  ::testing::Test::RecordProperty("rss_before_load_bytes", std::to_string(rss_before));
  EXPECT_LT(static_cast<double>(st.peak_rss_bytes), bound)
      << "peak " << st.peak_rss_bytes / 1048576.0 << " MiB, weights " << st.weight_bytes / 1048576.0
      << " MiB, largest tensor " << st.largest_tensor_bytes / 1048576.0 << " MiB, before load "
      << rss_before / 1048576.0 << " MiB";
  EXPECT_LT(st.peak_rss_bytes, file_bytes / 2);  // nowhere near an fp32 copy
  EXPECT_GE(st.peak_rss_bytes, st.weight_bytes);
}

TEST(LoadMemoryTest, Int4PeakIsQuantizedSizePlusOneTensor) { ExpectLoadPeakWithinBound(WeightFormat::kInt4); }
TEST(LoadMemoryTest, Int8PeakIsQuantizedSizePlusOneTensor) { ExpectLoadPeakWithinBound(WeightFormat::kInt8); }

}  // namespace
}  // namespace tessera
