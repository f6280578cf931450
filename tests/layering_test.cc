// The dependency graph has no upward edges: a file may include only files of
// its own layer or of layers below it, in the order
//   common < kernels < model < adapters < engine < scheduler < serving < api
//   < binaries
// (serving: the stack of model, engine, scheduler and adapters that the API
// and the offline tools share; binaries: the mains, client/, bench/). The test
// reads every #include "..." of the source tree.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace {

namespace fs = std::filesystem;

struct Layer {
  const char* prefix;  // path from the source root
  int rank;
  const char* name;
};
// Longest prefix first.
constexpr Layer kLayers[] = {
    {"server/engine/", 4, "engine"}, {"server/scheduler/", 5, "scheduler"}, {"server/serving/", 6, "serving"},
    {"server/api/", 7, "api"},       {"server/http/", 8, "http"},           {"common/", 0, "common"},
    {"kernels/", 1, "kernels"},      {"model/", 2, "model"},                {"adapters/", 3, "adapters"},
    {"server/", 9, "binaries"},      {"client/", 9, "binaries"},            {"bench/", 9, "binaries"},
};

const Layer* LayerOf(const std::string& path) {
  for (const Layer& l : kLayers) {
    if (path.rfind(l.prefix, 0) == 0) return &l;
  }
  return nullptr;
}

TEST(LayeringTest, NoFileIncludesALayerAboveItsOwn) {
  const fs::path root = TESSERA_SOURCE_DIR;
  int files = 0, edges = 0;
  std::vector<std::string> upward;
  for (const char* top : {"common", "kernels", "model", "adapters", "server", "client", "bench"}) {
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc" && ext != ".cu" && ext != ".cuh")) continue;
      const std::string rel = fs::relative(entry.path(), root).generic_string();
      const Layer* from = LayerOf(rel);
      ASSERT_NE(from, nullptr) << rel;
      ++files;
      std::ifstream in(entry.path());
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("#include \"", 0) != 0) continue;
        const std::string target = line.substr(10, line.find('"', 10) - 10);
        const Layer* to = LayerOf(target);
        if (to == nullptr) continue;  // generated protos, third-party headers
        ++edges;
        if (to->rank > from->rank) {
          upward.push_back(rel + " (" + from->name + ") includes " + target + " (" + to->name + ")");
        }
      }
    }
  }
  EXPECT_GT(files, 100);
  EXPECT_GT(edges, 300);
  std::string report;
  for (const std::string& u : upward) report += "\n  " + u;
  EXPECT_TRUE(upward.empty()) << upward.size() << " upward include(s):" << report;
}

}  // namespace
