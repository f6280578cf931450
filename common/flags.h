// Command-line helpers shared by Tessera's binaries.
#ifndef TESSERA_COMMON_FLAGS_H_
#define TESSERA_COMMON_FLAGS_H_

#include <string>
#include <vector>

namespace tessera {

// Rewrites "--max-batch-size=8" to "--max_batch_size=8" (flag names only, not
// values), so that both spellings work with absl flags. Arguments after a bare
// "--" are left alone. The returned strings back the argv.
// Flags listed in `repeatable` may be given several times ("--adapter a=x
// --adapter b=y"); their values are joined into one comma-separated value,
// which a std::vector<std::string> absl flag then splits again.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv,
                                            const std::vector<std::string>& repeatable = {"adapter"});

// Sets the usage text, accepts dashed flag names, parses absl flags (exiting
// on --help or an unknown flag) and returns the positional arguments, the
// program name first.
std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage);

// ParseFlags for programs that take no positional arguments: exits with
// status 2 and a hint when one is given.
void ParseFlagsWithoutArguments(int argc, char** argv, const char* usage);

}  // namespace tessera

#endif  // TESSERA_COMMON_FLAGS_H_
