// tokenizer.json (part 1) and tokenizer_config.json (the rest) loaded; a
// tokenizer that loads then encodes and decodes a fixed text.
#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const auto parts = fuzz::SplitParts(data, size, 2);
  auto t = Tokenizer::FromJson(parts[0], parts[1], "fuzz");
  if (t.ok()) {
    auto ids = (*t)->Encode("Once upon a time, 12 robots <s> h\xc3\xa9llo", true);
    if (ids.ok()) (void)(*t)->Decode(*ids, false);
  }
  return 0;
}
