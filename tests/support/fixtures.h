// Access to the reference fixtures in tests/fixtures (HF transformers + peft
// outputs) and small helpers shared by tests.
#ifndef TESSERA_TESTS_SUPPORT_FIXTURES_H_
#define TESSERA_TESTS_SUPPORT_FIXTURES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace tessera::testing {

// tests/fixtures/tiny-llama
std::string TinyLlamaDir();
std::string TinyLlamaModelDir();  // .../model
// expected.json, parsed once.
const nlohmann::json& Expected();
// A float32 tensor of expected_logits.safetensors, flattened.
std::vector<float> ExpectedTensor(const std::string& key);
std::vector<int32_t> PromptIds(int index);
std::vector<int32_t> Greedy(const std::string& variant, int index);

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b);

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Copies the fixture model folder into dir (so a test may corrupt the copy).
void CopyModelTo(const std::string& dir);
std::string ReadFileOrDie(const std::string& path);

// The tokenizer parity fixtures (tests/fixtures/tokenizers/NAME), sorted:
// real files, and variants (variant.json: a base fixture with some pipeline
// stages replaced).
std::vector<std::string> TokenizerFixtureNames();
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFixture(const std::string& name);
void WriteFileOrDie(const std::string& path, const std::string& content);

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_FIXTURES_H_
