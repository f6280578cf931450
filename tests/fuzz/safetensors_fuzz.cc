// safetensors header and tensor table: Open, then read every small tensor.
#include "server/model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const std::string path = fuzz::WriteScratchFile("t.safetensors", {reinterpret_cast<const char*>(data), size});
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  for (const auto& [name, view] : (*file)->tensors()) {
    if (view.numel() <= (1 << 16)) (void)view.ToFloat();
  }
  return 0;
}
