// The fixture tokenizer on arbitrary bytes: the input (after a flags byte) is
// encoded as text, which must round-trip through decode when it is valid
// UTF-8, and decoded as token ids, whole and token by token.
#include <cstring>

#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  static const Tokenizer* fixture = Tokenizer::FromDir(TESSERA_FIXTURES_DIR "/tiny-llama/model")->release();
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto ids = fixture->Encode(text, data[0] & 1);
  if (ids.ok()) {
    const std::string round = fixture->Decode(*ids, false);
    if (round != text) std::abort();  // byte-level BPE round-trips valid UTF-8 exactly
  }
  std::vector<int32_t> raw((size - 1) / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data + 1, raw.size() * 4);
  (void)fixture->Decode(raw, true);
  for (int32_t id : raw) (void)fixture->TokenBytes(id, false);
  return 0;
}
