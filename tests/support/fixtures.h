// Access to the reference fixtures in tests/fixtures (HF transformers + peft
// outputs) and small helpers shared by tests.
#ifndef TESSERA_TESTS_SUPPORT_FIXTURES_H_
#define TESSERA_TESTS_SUPPORT_FIXTURES_H_

#include <string>
#include <vector>

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
void WriteFileOrDie(const std::string& path, const std::string& content);

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_FIXTURES_H_
