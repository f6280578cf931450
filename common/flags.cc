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
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
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

[[noreturn]] void ConfigError(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(2);
}

// --config FILE (or --flagfile FILE, = forms too): the file's lines in place
// of the flag, one flag per line ("--max-batch-size=8"; dashes or
// underscores), blank lines and lines starting with # skipped. Flags after
// it on the command line override it. A config file may not name another.
std::vector<std::string> ExpandConfigFiles(int argc, char** argv) {
  constexpr size_t kMaxConfigBytes = 1 << 20;
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    std::string path;
    bool is_config = false;
    for (const char* name : {"--config", "-config", "--flagfile", "-flagfile"}) {
      if (a == name) {
        if (i + 1 >= argc) ConfigError(absl::StrCat(name, " needs a FILE"));
        path = argv[++i];
        is_config = true;
      } else if (absl::StartsWith(a, absl::StrCat(name, "="))) {
        path = a.substr(std::string(name).size() + 1);
        is_config = true;
      }
      if (is_config) break;
    }
    if (!is_config || i == 0) {
      out.push_back(std::move(a));
      continue;
    }
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) ConfigError(absl::StrCat("cannot read config file '", path, "'"));
    std::string text(kMaxConfigBytes + 1, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), f));
    std::fclose(f);
    if (text.size() > kMaxConfigBytes) ConfigError(absl::StrCat("config file '", path, "' is over 1 MiB"));
    int line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      ++line_no;
      line = absl::StripAsciiWhitespace(line);
      if (line.empty() || line[0] == '#') continue;
      if (line[0] != '-') {
        ConfigError(absl::StrCat(path, ":", line_no, ": expected one flag per line, like --max-batch-size=8"));
      }
      for (const char* name : {"-config", "-flagfile"}) {
        if (absl::StartsWith(absl::StripPrefix(line, "-"), name)) {
          ConfigError(absl::StrCat(path, ":", line_no, ": a config file cannot name another"));
        }
      }
      out.emplace_back(line);
    }
  }
  return out;
}

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
  std::vector<std::string> expanded = ExpandConfigFiles(argc, argv);
  std::vector<char*> expanded_ptrs;
  for (std::string& a : expanded) expanded_ptrs.push_back(a.data());
  std::vector<std::string> args = NormalizeFlagNames(static_cast<int>(expanded_ptrs.size()), expanded_ptrs.data());
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
