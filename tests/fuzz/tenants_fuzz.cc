// The --tenants file, and an authorization header checked against it.
#include "server/api/tenants.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const auto parts = tessera::fuzz::SplitParts(data, size, 2);
  auto dir = TenantDirectory::FromJson(std::string(parts[1]), "tenants.json");
  if (dir.ok()) (void)(*dir)->Authenticate(parts[0]);
  return 0;
}
