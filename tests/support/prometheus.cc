#include "tests/support/prometheus.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/subprocess.h"

namespace tessera::testing {
namespace {

// name{a="x",b="y"} -> name and labels (values unescaped).
void SplitSeries(const std::string& series, std::string* name, std::map<std::string, std::string>* labels) {
  const size_t brace = series.find('{');
  *name = series.substr(0, brace);
  if (brace == std::string::npos) return;
  size_t i = brace + 1;
  while (i < series.size() && series[i] != '}') {
    const size_t eq = series.find('=', i);
    if (eq == std::string::npos || eq + 1 >= series.size() || series[eq + 1] != '"') return;
    const std::string key = series.substr(i, eq - i);
    std::string value;
    size_t j = eq + 2;
    for (; j < series.size() && series[j] != '"'; ++j) {
      if (series[j] == '\\' && j + 1 < series.size()) {
        ++j;
        value.push_back(series[j] == 'n' ? '\n' : series[j]);
      } else {
        value.push_back(series[j]);
      }
    }
    (*labels)[key] = value;
    i = j + 1;
    if (i < series.size() && series[i] == ',') ++i;
  }
}

}  // namespace

absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(const std::string& text) {
  std::map<std::string, double> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    // The value follows the last space outside the labels (label values may
    // hold spaces); a timestamp, if any, is not written by prometheus-cpp.
    const size_t close = line.rfind('}');
    const size_t space = line.find(' ', close == absl::string_view::npos ? 0 : close);
    if (space == absl::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": no value"));
    double v = 0;
    const std::string value(line.substr(space + 1));
    if (value == "+Inf") {
      v = HUGE_VAL;
    } else if (value == "-Inf") {
      v = -HUGE_VAL;
    } else if (!absl::SimpleAtod(value, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": value '", value, "' is not a number"));
    }
    out[std::string(line.substr(0, space))] = v;
  }
  return out;
}

double SumSeries(const std::map<std::string, double>& series, const std::string& name,
                 const std::map<std::string, std::string>& label_subset) {
  double sum = 0;
  for (const auto& [key, value] : series) {
    std::string n;
    std::map<std::string, std::string> labels;
    SplitSeries(key, &n, &labels);
    if (n != name) continue;
    bool match = true;
    for (const auto& [k, v] : label_subset) {
      auto it = labels.find(k);
      if (it == labels.end() || it->second != v) match = false;
    }
    if (match) sum += value;
  }
  return sum;
}

absl::Status PromtoolCheck(const std::string& text) {
  char path[] = "/tmp/tessera-metrics-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return absl::InternalError("mkstemp failed");
  close(fd);
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const CommandResult r =
      RunCommand({"/bin/sh", "-c", absl::StrCat("promtool check metrics < '", path, "'")}, absl::Seconds(30));
  std::remove(path);
  if (r.exit_code != 0) {
    return absl::FailedPreconditionError(absl::StrCat("promtool check metrics exited ", r.exit_code, ":\n", r.output));
  }
  return absl::OkStatus();
}

}  // namespace tessera::testing
