// Watermark credentials: the passport (part 1) and the raw factors (the
// rest), parsed and validated (pseudo-inverses, Cholesky factors). The null
// distribution of valid credentials is left out: it is fixed arithmetic on
// validated shapes (tests/adapters/watermark_test.cc covers it) and would cost a
// thousand trials per input.
#include "adapters/watermark.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const ModelConfig& base = fuzz::FixtureBaseConfig();
  const auto parts = fuzz::SplitParts(data, size, 2);
  (void)ParseWatermarkCredentials(std::string(parts[0]), std::string(parts[1]), base, /*compute_null=*/false);
  return 0;
}
