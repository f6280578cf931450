// tessera-quantize: quantizes an HF checkpoint once into Tessera's
// pre-quantized layout (see model/quantized_checkpoint.h), which
// tessera-server then loads without quantizing again.
//
//   tessera-quantize --model SRC --output DST [--quantize int4|int8] [--quant-group-size N]
#include <cstdio>
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "model/model.h"
#include "model/quantized_checkpoint.h"
#include "server/serving/serving_flags.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, output, "", "folder to create");

namespace tessera {
namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tessera-quantize: %s\n", msg.c_str());
  return 1;
}

int Run() {
  absl::StatusOr<ServingOptions> so = ServingOptionsFromFlags();
  if (!so.ok()) return Fail(std::string(so.status().message()));
  if (so->model_dir.empty() || absl::GetFlag(FLAGS_output).empty()) {
    return Fail("--model SRC and --output DST are required");
  }
  if (so->quant.format == WeightFormat::kF32) return Fail("--quantize must be int4 or int8");
  std::error_code ec;
  if (std::filesystem::exists(absl::GetFlag(FLAGS_output), ec)) {
    return Fail(absl::StrCat(absl::GetFlag(FLAGS_output), " already exists; choose a new folder"));
  }
  LoadOptions lo;
  lo.quant = so->quant;
  absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(so->model_dir, lo);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  if (absl::Status s = WriteQuantizedCheckpoint(**model, absl::GetFlag(FLAGS_output)); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  spdlog::info("wrote {} ({}, {:.1f} MiB of weights)", absl::GetFlag(FLAGS_output),
               DescribeQuantization((*model)->quant), (*model)->stats.weight_bytes / 1048576.0);
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "Writes a pre-quantized copy of a checkpoint.\n"
      "  tessera-quantize --model SRC --output DST [--quantize int4|int8] [--quant-group-size N]");
  return tessera::Run();
}
