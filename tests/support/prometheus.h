// Reading sample values out of a Prometheus text exposition, for tests that
// check what /metrics serves. The format itself is checked by promtool
// (PromtoolCheck), not here.
#ifndef TESSERA_TESTS_SUPPORT_PROMETHEUS_H_
#define TESSERA_TESTS_SUPPORT_PROMETHEUS_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera::testing {

// Every sample, keyed by its series as written (`name` or `name{a="x",...}`).
// InvalidArgument on a sample line without a value or with a value that is
// not a number.
absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(const std::string& text);

// Sum of the values of every series of exactly metric `name` (pass
// "x_bucket" for histogram buckets) whose labels include all of
// `label_subset`. 0 when none match.
double SumSeries(const std::map<std::string, double>& series, const std::string& name,
                 const std::map<std::string, std::string>& label_subset = {});

// `promtool check metrics` (Debian's prometheus package) on `text`: OK, or
// the tool's complaints.
absl::Status PromtoolCheck(const std::string& text);

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_PROMETHEUS_H_
