// Command-line helpers shared by Tessera's binaries.
#ifndef TESSERA_COMMON_FLAGS_H_
#define TESSERA_COMMON_FLAGS_H_

#include <string>
#include <vector>

namespace tessera {

// Rewrites "--max-batch-size=8" to "--max_batch_size=8" (flag names only, not
// values), so that both spellings work with absl flags. Arguments after a bare
// "--" are left alone. The returned strings back the argv.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

// Builds a char* array over args (valid while args lives).
std::vector<char*> ArgvPointers(std::vector<std::string>& args);

}  // namespace tessera

#endif  // TESSERA_COMMON_FLAGS_H_
