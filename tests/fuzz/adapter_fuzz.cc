// An adapter folder: adapter_config.json (part 1) and
// adapter_model.safetensors (the rest), loaded against the fixture base.
#include "adapters/adapter.h"
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
  fuzz::WriteScratchFile("adapter_config.json", parts[0]);
  fuzz::WriteScratchFile("adapter_model.safetensors", parts[1]);
  (void)LoadAdapter("fuzz", fuzz::ScratchDir(), *base, AdapterLimits{});
  return 0;
}
