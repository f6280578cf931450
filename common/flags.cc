#include "common/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

namespace tessera {

std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> out;
  bool rest = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i > 0 && !rest) {
      if (a == "--") {
        rest = true;
      } else if (a.size() > 2 && a[0] == '-') {
        const size_t start = a[1] == '-' ? 2 : 1;
        const size_t end = a.find('=');
        for (size_t k = start; k < std::min(end, a.size()); ++k) {
          if (a[k] == '-') a[k] = '_';
        }
      }
    }
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> args = NormalizeFlagNames(argc, argv);
  std::vector<char*> ptrs;
  for (std::string& a : args) ptrs.push_back(a.data());
  ptrs.push_back(nullptr);
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), ptrs.data());
  return std::vector<std::string>(rest.begin(), rest.end());
}

void ParseFlagsWithoutArguments(int argc, char** argv, const char* usage) {
  const std::vector<std::string> rest = ParseFlags(argc, argv, usage);
  if (rest.size() > 1) {
    const std::string program = std::filesystem::path(rest[0]).filename().string();
    std::fprintf(stderr, "%s: unexpected argument '%s' (flags start with --; see --help)\n", program.c_str(),
                 rest[1].c_str());
    std::exit(2);
  }
}

}  // namespace tessera
