// Watermark credentials: the passport (part 1) and the raw factors (rest).
#include "adapters/watermark.h"
#include "server/model/model_config.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  static const bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  static const ModelConfig* base =
      new ModelConfig(*ModelConfig::FromFile(TESSERA_FIXTURES_DIR "/tiny-llama/model/config.json"));
  const auto parts = fuzz::SplitParts(data, size, 2);
  const std::string passport = fuzz::WriteScratchFile("passport.safetensors", parts[0]);
  const std::string raw = fuzz::WriteScratchFile("raw.safetensors", parts[1]);
  (void)LoadWatermarkCredentials(passport, raw, *base);
  return 0;
}
