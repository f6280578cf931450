// Helpers shared by the libFuzzer harnesses in this folder.
//
// Every harness defines LLVMFuzzerTestOneInput. Built with clang and
// -DTESSERA_FUZZ=ON it links libFuzzer (scripts/fuzz runs it); in the normal
// build it links fuzz_main.cc, which replays the seed corpus and the crash
// reproducers under ctest.
#ifndef TESSERA_TESTS_FUZZ_FUZZ_UTIL_H_
#define TESSERA_TESTS_FUZZ_FUZZ_UTIL_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "model/model_config.h"
#include "spdlog/spdlog.h"

namespace tessera::fuzz {

// The fixture base model's config.json; spdlog is silenced on first use (a
// log line per input would dominate the run time).
inline const ModelConfig& FixtureBaseConfig() {
  static const ModelConfig* base = [] {
    spdlog::set_level(spdlog::level::off);
    return new ModelConfig(*ModelConfig::FromFile(TESSERA_FIXTURES_DIR "/tiny-llama/model/config.json"));
  }();
  return *base;
}

// A private scratch folder for this process, on tmpfs when there is one.
inline const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/tessera-fuzz-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) std::abort();
    static std::string* made = new std::string(buf.data());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(*made, ec);
    });
    return made;
  }();
  return *dir;
}

inline std::string WriteScratchFile(const std::string& name, std::string_view bytes) {
  const std::string path = ScratchDir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
  return path;
}

// Splits an input into parts: each part is a 4-byte little-endian length and
// that many bytes; the last part is whatever remains.
inline std::vector<std::string_view> SplitParts(const uint8_t* data, size_t size, size_t parts) {
  std::vector<std::string_view> out;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (out.size() + 1 < parts) {
    if (rest.size() < 4) {
      out.push_back({});
      continue;
    }
    uint32_t n = 0;
    for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(rest[i]);
    rest.remove_prefix(4);
    if (n > rest.size()) n = static_cast<uint32_t>(rest.size());
    out.push_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  out.push_back(rest);
  return out;
}

}  // namespace tessera::fuzz

#endif  // TESSERA_TESTS_FUZZ_FUZZ_UTIL_H_
