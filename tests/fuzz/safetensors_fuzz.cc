// safetensors header and tensor table: parsed from the bytes, then every
// small tensor is read.
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  auto file = SafetensorsFile::FromBytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) return 0;
  for (const auto& [name, view] : (*file)->tensors()) {
    if (view.numel() <= (1 << 16)) (void)view.ToFloat();
  }
  return 0;
}
