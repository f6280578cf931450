// config.json of a model folder.
#include "model/model_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tessera::ModelConfig::FromJsonText(std::string(reinterpret_cast<const char*>(data), size), "config.json");
  return 0;
}
