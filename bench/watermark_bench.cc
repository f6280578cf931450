// tessera-bench-watermark: measures the null distribution of the SEAL
// ownership score for the fixture's owner secret (random Gaussian adapters of
// the same shapes against the true passport and against random passports),
// counts empirical exceedances of the threshold, fits a normal to get the
// extrapolated false-positive rate, and scores the genuine adapter and every
// other fixture adapter. Writes a JSON report.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "adapters/watermark.h"
#include "bench/bench_util.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, fixture, "tests/fixtures/tiny-llama",
          "fixture folder: model/, adapters/, owner_secret/");
ABSL_FLAG(int64_t, trials, 3000000,
          "null trials (3e6 bounds the empirical FPR near 1e-6 with 95% confidence)");
ABSL_FLAG(std::string, out, "", "write the JSON report here (default: stdout only)");

namespace tessera {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tessera-bench-watermark: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_fixture);
  absl::StatusOr<ModelConfig> base = ModelConfig::FromFile(dir + "/model/config.json");
  if (!base.ok()) return Fail(base.status());
  absl::StatusOr<WatermarkCredentials> cred = LoadWatermarkCredentials(
      dir + "/owner_secret/passport.safetensors", dir + "/owner_secret/original_lora.safetensors", *base);
  if (!cred.ok()) return Fail(cred.status());
  const VerifyOptions options;
  const int64_t trials = absl::GetFlag(FLAGS_trials);

  const absl::Time start = absl::Now();
  std::vector<double> null = WatermarkNullScores(*cred, trials, 20261122);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  double mean = 0, var = 0;
  for (double s : null) mean += s / static_cast<double>(null.size());
  for (double s : null) var += (s - mean) * (s - mean) / static_cast<double>(null.size() - 1);
  const double sd = std::sqrt(var);
  const double max = *std::max_element(null.begin(), null.end());
  nlohmann::ordered_json exceed = nlohmann::ordered_json::object();
  for (double t : {0.1, 0.15, 0.2, 0.3, options.threshold}) {
    const int64_t n = std::count_if(null.begin(), null.end(), [t](double s) { return s >= t; });
    exceed[absl::StrCat(t)] = {{"count", n},
                               {"empirical_rate", static_cast<double>(n) / static_cast<double>(trials)},
                               {"fitted_normal_tail", 0.5 * std::erfc((t - mean) / (sd * std::sqrt(2.0)))}};
  }
  nlohmann::ordered_json adapters = nlohmann::ordered_json::object();
  for (const char* kind : {"seal", "lora", "lora2", "road", "diablo"}) {
    absl::StatusOr<std::shared_ptr<const Adapter>> a =
        LoadAdapter(kind, dir + "/adapters/" + kind, *base, AdapterLimits{});
    if (!a.ok()) return Fail(a.status());
    const WatermarkVerdict v = VerifyWatermark(**a, *cred, options);
    adapters[kind] = {{"score", v.score}, {"owned", v.owned}, {"false_positive_rate", v.false_positive_rate}};
  }
  nlohmann::ordered_json report = {
      {"benchmark", "watermark_null"},
      {"modules", cred->modules.size()},
      {"rank", cred->rank},
      {"threshold", options.threshold},
      {"null", {{"trials", trials}, {"mean", mean}, {"std", sd}, {"max", max}, {"seconds", seconds}}},
      {"exceedances", exceed},
      // Rule of three: with 0 exceedances in n trials, the rate is below 3/n
      // with 95% confidence.
      {"empirical_fpr_bound_95",
       exceed[absl::StrCat(options.threshold)]["count"] == 0 ? 3.0 / static_cast<double>(trials) : 1.0},
      {"fixture_adapters", adapters}};
  std::printf("%s\n", report.dump(2).c_str());
  if (!absl::GetFlag(FLAGS_out).empty()) {
    if (absl::Status s = WriteJsonReport(report, absl::GetFlag(FLAGS_out)); !s.ok()) return Fail(s);
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "Measures the SEAL ownership score's null distribution and false-positive "
      "rate.\n  tessera-bench-watermark [--trials N] [--out FILE]");
  return tessera::Run();
}
