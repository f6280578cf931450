#include "bench/bench_util.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace tessera {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

absl::StatusOr<std::unique_ptr<Model>> LoadBenchModel(const std::string& dir, const std::string& quantize,
                                                      int64_t group_size) {
  absl::StatusOr<QuantOptions> quant = ParseQuantOptions(quantize, group_size);
  if (!quant.ok()) return quant.status();
  LoadOptions lo;
  lo.quant = *quant;
  return LoadModel(dir, lo);
}

absl::Status WriteJsonReport(const nlohmann::ordered_json& doc, const std::string& path) {
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  std::printf("wrote %s\n", path.c_str());
  return absl::OkStatus();
}

}  // namespace tessera
