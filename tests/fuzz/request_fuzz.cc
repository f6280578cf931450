// A GenerateRequest from bytes, through the server's conversion and checks.
#include "server/api/request_conversion.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  static const Tokenizer* tokenizer = Tokenizer::FromDir(TESSERA_FIXTURES_DIR "/tiny-llama/model")->release();
  v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  RequestLimits limits;
  limits.context_length = 256;
  (void)ToGenerationParams(request, *tokenizer, limits);
  return 0;
}
