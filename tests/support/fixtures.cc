#include "tests/support/fixtures.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "model/safetensors.h"

namespace tessera::testing {

namespace fs = std::filesystem;

std::string TinyLlamaDir() { return std::string(TESSERA_FIXTURES_DIR) + "/tiny-llama"; }
std::string TinyLlamaModelDir() { return TinyLlamaDir() + "/model"; }

const nlohmann::json& Expected() {
  static const nlohmann::json* j = [] {
    std::ifstream in(TinyLlamaDir() + "/expected.json");
    auto* parsed = new nlohmann::json(nlohmann::json::parse(in));
    return parsed;
  }();
  return *j;
}

std::vector<float> ExpectedTensor(const std::string& key) {
  static const SafetensorsFile* file = [] {
    auto f = SafetensorsFile::Open(TinyLlamaDir() + "/expected_logits.safetensors");
    if (!f.ok()) {
      ADD_FAILURE() << f.status();
      std::abort();
    }
    return f->release();
  }();
  const TensorView* view = file->Find(key);
  if (!view) {
    ADD_FAILURE() << "no expected tensor " << key;
    return {};
  }
  return view->ToFloat();
}

std::vector<int32_t> PromptIds(int index) {
  return Expected()["prompts"][index]["ids"].get<std::vector<int32_t>>();
}

std::vector<int32_t> Greedy(const std::string& variant, int index) {
  return Expected()["results"][variant]["greedy"][index].get<std::vector<int32_t>>();
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "tessera-test-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (!p) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void CopyModelTo(const std::string& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(TinyLlamaModelDir())) {
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename(),
                  fs::copy_options::overwrite_existing);
    fs::permissions(fs::path(dir) / e.path().filename(), fs::perms::owner_write, fs::perm_options::add);
  }
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) std::abort();
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) std::abort();
}

std::vector<std::string> TokenizerFixtureNames() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(std::string(TESSERA_FIXTURES_DIR) + "/tokenizers")) {
    if (e.is_directory() && std::filesystem::exists(e.path() / "expected.json")) {
      names.push_back(e.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFixture(const std::string& name) {
  const std::string dir = std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/" + name;
  if (!std::filesystem::exists(dir + "/variant.json")) return Tokenizer::FromDir(dir);
  const nlohmann::json variant = nlohmann::json::parse(ReadFileOrDie(dir + "/variant.json"));
  const std::string base = std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/" + variant.at("base").get<std::string>();
  nlohmann::json j = nlohmann::json::parse(ReadFileOrDie(base + "/tokenizer.json"));
  for (const auto& [key, value] : variant.at("override").items()) j[key] = value;
  return Tokenizer::FromJson(j.dump(), ReadFileOrDie(base + "/tokenizer_config.json"), dir);
}

}  // namespace tessera::testing
