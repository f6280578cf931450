// A strict parser for the Prometheus text exposition format (0.0.4), for
// tests that check what /metrics serves.
#ifndef TESSERA_TESTS_SUPPORT_PROMETHEUS_H_
#define TESSERA_TESTS_SUPPORT_PROMETHEUS_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace tessera::testing {

// Every sample, keyed by its series written canonically: `name` without
// labels, else `name{a="x",b="y"}` with labels sorted by name, no spaces and
// values escaped as in the exposition format (\\, \", \n). Timestamps are
// accepted and dropped.
//
// Fails with InvalidArgument ("line N: ...") on any malformed line: a bad
// metric or label name, unbalanced quotes or braces, an unknown escape, a
// value that is not a number (+Inf, -Inf and NaN are numbers), a sample whose
// family has no earlier # TYPE line (histogram/summary samples belong to the
// family without their _bucket/_sum/_count suffix), a TYPE other than
// counter/gauge/histogram/summary/untyped, a second TYPE or HELP for one
// family, a TYPE after the family's samples, samples of one family that are
// not contiguous, a duplicate label in a sample, or a duplicate series.
absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(const std::string& text);

// Sum of the values of every series of exactly metric `name` (no suffix
// matching: pass "x_bucket" for histogram buckets) whose labels include all
// of `label_subset` (unescaped values). 0 when none match.
double SumSeries(const std::map<std::string, double>& series, const std::string& name,
                 const std::map<std::string, std::string>& label_subset = {});

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_PROMETHEUS_H_
