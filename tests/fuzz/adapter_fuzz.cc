// An adapter: adapter_config.json (part 1) and adapter_model.safetensors (the
// rest), validated against the fixture base.
#include "adapters/adapter.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const ModelConfig& base = fuzz::FixtureBaseConfig();
  const auto parts = fuzz::SplitParts(data, size, 2);
  (void)LoadAdapterFromBytes("fuzz", parts[0], std::string(parts[1]), base, AdapterLimits{});
  return 0;
}
