#include "common/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/version.h"

namespace tessera {

std::vector<std::string> NormalizeFlagNames(int argc, char** argv, const std::vector<std::string>& repeatable) {
  std::vector<std::string> out;
  std::vector<std::pair<std::string, std::string>> joined;  // name -> values so far
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
        const std::string name = a.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (std::find(repeatable.begin(), repeatable.end(), name) != repeatable.end()) {
          std::string value;
          if (end != std::string::npos) {
            value = a.substr(end + 1);
          } else if (i + 1 < argc) {
            value = argv[++i];
          }
          auto it = std::find_if(joined.begin(), joined.end(), [&](const auto& p) { return p.first == name; });
          if (it == joined.end()) {
            joined.emplace_back(name, value);
          } else {
            it->second += "," + value;
          }
          continue;
        }
      }
    }
    out.push_back(std::move(a));
  }
  for (const auto& [name, values] : joined) out.insert(out.begin() + 1, "--" + name + "=" + values);
  return out;
}

namespace {

// absl's defaults list only flags defined in a file named after the program
// (none: ours live in main.cc and in libraries) and print absl's own build
// mode as the version. Every flag outside absl is the program's own.
void ConfigureUsage(const char* argv0) {
  static const std::string program = std::filesystem::path(argv0 ? argv0 : "tessera").filename().string();
  static const bool configured = [] {
    absl::FlagsUsageConfig config;
    const auto ours = [](absl::string_view file) { return !absl::StrContains(file, "absl/"); };
    config.contains_helpshort_flags = ours;
    config.contains_help_flags = ours;
    config.contains_helppackage_flags = ours;
    config.version_string = [] {
      return absl::StrCat(program, " ", Version(), "\n");
    };
    // Paths relative to the source tree, so flags group by file as
    // "server/main.cc" rather than by the build machine's path.
    config.normalize_filename = [](absl::string_view file) {
      absl::string_view root = TESSERA_SOURCE_DIR;
      if (absl::StartsWith(file, root)) file.remove_prefix(root.size());
      return std::string(file);
    };
    absl::SetFlagsUsageConfig(config);
    return true;
  }();
  (void)configured;
}

}  // namespace

std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage) {
  ConfigureUsage(argc > 0 ? argv[0] : nullptr);
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
