#include "tests/support/prometheus.h"

#include <charconv>
#include <cstdint>
#include <set>
#include <string_view>

#include "absl/status/status.h"

namespace tessera::testing {
namespace {

using Labels = std::map<std::string, std::string>;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

void SkipBlanks(std::string_view s, size_t* pos) {
  while (*pos < s.size() && IsBlank(s[*pos])) ++*pos;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// End of the name starting at pos ([a-zA-Z_:][a-zA-Z0-9_:]* for metrics,
// no ':' for labels); pos itself when there is none.
size_t ScanName(std::string_view s, size_t pos, bool metric) {
  size_t end = pos;
  while (end < s.size()) {
    const char c = s[end];
    const bool ok = IsAlpha(c) || (metric && c == ':') || (end > pos && IsDigit(c));
    if (!ok) break;
    ++end;
  }
  return end;
}

void AppendEscapedLabelValue(std::string* out, const std::string& value) {
  for (char c : value) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

std::string SeriesKey(const std::string& name, const Labels& labels) {
  if (labels.empty()) return name;
  std::string key = name + "{";
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) key.push_back(',');
    first = false;
    key.append(label).append("=\"");
    AppendEscapedLabelValue(&key, value);
    key.push_back('"');
  }
  key.push_back('}');
  return key;
}

// Parses {a="x",...} starting at s[*pos] == '{'; leaves *pos after '}'.
// Returns an error message, empty on success.
std::string ParseLabels(std::string_view s, size_t* pos, Labels* labels) {
  ++*pos;  // '{'
  while (true) {
    SkipBlanks(s, pos);
    if (*pos >= s.size()) return "unbalanced braces: missing '}'";
    if (s[*pos] == '}') {
      ++*pos;
      return "";
    }
    const size_t name_end = ScanName(s, *pos, /*metric=*/false);
    if (name_end == *pos) return "bad label name at column " + std::to_string(*pos + 1);
    std::string name(s.substr(*pos, name_end - *pos));
    *pos = name_end;
    SkipBlanks(s, pos);
    if (*pos >= s.size()) return "unbalanced braces: missing '}'";
    if (s[*pos] != '=') return "expected '=' after label " + name;
    ++*pos;
    SkipBlanks(s, pos);
    if (*pos >= s.size() || s[*pos] != '"') return "expected '\"' to open the value of label " + name;
    ++*pos;
    std::string value;
    bool closed = false;
    while (*pos < s.size()) {
      const char c = s[(*pos)++];
      if (c == '"') {
        closed = true;
        break;
      }
      if (c != '\\') {
        value.push_back(c);
        continue;
      }
      if (*pos >= s.size()) return "bad escape at the end of the value of label " + name;
      const char e = s[(*pos)++];
      if (e == '\\') {
        value.push_back('\\');
      } else if (e == '"') {
        value.push_back('"');
      } else if (e == 'n') {
        value.push_back('\n');
      } else {
        return std::string("bad escape '\\") + e + "' in the value of label " + name;
      }
    }
    if (!closed) return "unbalanced quotes in the value of label " + name;
    if (!labels->emplace(name, std::move(value)).second) return "duplicate label " + name;
    SkipBlanks(s, pos);
    if (*pos >= s.size()) return "unbalanced braces: missing '}'";
    if (s[*pos] == ',') {
      ++*pos;
    } else if (s[*pos] != '}') {
      return "unbalanced braces: expected ',' or '}' after the value of label " + name;
    }
  }
}

// A sample value: a decimal float, +Inf, -Inf or NaN.
bool ParseValue(std::string_view token, double* value) {
  if (token.empty()) return false;
  if (token[0] == '+') {
    token.remove_prefix(1);
    if (token.empty() || token[0] == '-' || token[0] == '+') return false;
  }
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), *value);
  return ec == std::errc() && end == token.data() + token.size();
}

bool ParseTimestamp(std::string_view token) {
  int64_t ts = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), ts);
  return !token.empty() && ec == std::errc() && end == token.data() + token.size();
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class Parser {
 public:
  absl::StatusOr<std::map<std::string, double>> Parse(const std::string& text) {
    std::string_view rest(text);
    int line_no = 0;
    while (!rest.empty()) {
      ++line_no;
      const size_t nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      const std::string error = ParseLine(line);
      if (!error.empty()) {
        return absl::InvalidArgumentError("line " + std::to_string(line_no) + ": " + error +
                                          " in: " + std::string(line));
      }
    }
    return std::move(samples_);
  }

 private:
  std::string ParseLine(std::string_view line) {
    size_t pos = 0;
    SkipBlanks(line, &pos);
    if (pos == line.size()) return "";  // empty line
    if (line[pos] == '#') return ParseComment(line, pos + 1);
    return ParseSample(line, pos);
  }

  std::string ParseComment(std::string_view line, size_t pos) {
    SkipBlanks(line, &pos);
    const size_t word_end = line.find_first_of(" \t", pos);
    const std::string_view word =
        line.substr(pos, word_end == std::string_view::npos ? line.npos : word_end - pos);
    if (word != "HELP" && word != "TYPE") return "";  // a plain comment
    if (word_end == std::string_view::npos) return std::string(word) + " line without a metric name";
    pos = word_end;
    SkipBlanks(line, &pos);
    const size_t name_end = ScanName(line, pos, /*metric=*/true);
    if (name_end == pos || (name_end < line.size() && !IsBlank(line[name_end]))) {
      return "bad metric name in " + std::string(word) + " line";
    }
    const std::string name(line.substr(pos, name_end - pos));
    pos = name_end;
    SkipBlanks(line, &pos);
    current_family_ = name;

    if (word == "HELP") {
      for (size_t i = pos; i < line.size(); ++i) {
        if (line[i] != '\\') continue;
        if (i + 1 >= line.size() || (line[i + 1] != '\\' && line[i + 1] != 'n')) {
          return "bad escape in the help text of " + name;
        }
        ++i;
      }
      if (!helped_.insert(name).second) return "second HELP line for " + name;
      return "";
    }

    size_t type_end = line.find_first_of(" \t", pos);
    if (type_end == std::string_view::npos) type_end = line.size();
    const std::string type(line.substr(pos, type_end - pos));
    pos = type_end;
    SkipBlanks(line, &pos);
    if (pos != line.size()) return "unexpected text after the type of " + name;
    if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
        type != "untyped") {
      return "unknown metric type '" + type + "' for " + name;
    }
    if (sampled_.count(name) > 0) return "TYPE line for " + name + " after its samples";
    if (!types_.emplace(name, type).second) return "second TYPE line for " + name;
    return "";
  }

  std::string ParseSample(std::string_view line, size_t pos) {
    const size_t name_end = ScanName(line, pos, /*metric=*/true);
    if (name_end == pos || (name_end < line.size() && line[name_end] != '{' && line[name_end] != '}' &&
                            !IsBlank(line[name_end]))) {
      return "bad metric name";
    }
    const std::string name(line.substr(pos, name_end - pos));
    pos = name_end;
    Labels labels;
    if (pos < line.size() && line[pos] == '{') {
      std::string error = ParseLabels(line, &pos, &labels);
      if (!error.empty()) return error;
    }
    if (pos < line.size() && line[pos] == '}') return "unbalanced braces: stray '}'";
    if (pos >= line.size() || !IsBlank(line[pos])) return "expected a blank and a value after " + name;
    SkipBlanks(line, &pos);
    size_t value_end = line.find_first_of(" \t", pos);
    if (value_end == std::string_view::npos) value_end = line.size();
    double value = 0;
    if (!ParseValue(line.substr(pos, value_end - pos), &value)) {
      return "non-numeric value '" + std::string(line.substr(pos, value_end - pos)) + "'";
    }
    pos = value_end;
    SkipBlanks(line, &pos);
    if (pos < line.size()) {
      size_t ts_end = line.find_first_of(" \t", pos);
      if (ts_end == std::string_view::npos) ts_end = line.size();
      if (!ParseTimestamp(line.substr(pos, ts_end - pos))) return "bad timestamp";
      pos = ts_end;
      SkipBlanks(line, &pos);
      if (pos < line.size()) return "unexpected text after the timestamp";
    }

    std::string family;
    std::string error = FamilyOf(name, labels, &family);
    if (!error.empty()) return error;
    if (family != current_family_ && sampled_.count(family) > 0) {
      return "samples of family " + family + " are not contiguous";
    }
    current_family_ = family;
    sampled_.insert(family);
    std::string key = SeriesKey(name, labels);
    if (!samples_.emplace(key, value).second) return "duplicate series " + key;
    return "";
  }

  std::string FamilyOf(const std::string& name, const Labels& labels, std::string* family) {
    if (auto it = types_.find(name); it != types_.end()) {
      if (it->second == "histogram") {
        return "histogram " + name + " samples must be " + name + "_bucket, _sum or _count";
      }
      *family = name;
      return "";
    }
    for (const std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!EndsWith(name, suffix)) continue;
      const std::string base = name.substr(0, name.size() - suffix.size());
      auto it = types_.find(base);
      if (it == types_.end()) break;
      if (suffix == "_bucket" && it->second != "histogram") break;
      if (suffix != "_bucket" && it->second != "histogram" && it->second != "summary") break;
      if (suffix == "_bucket" && labels.count("le") == 0)
        return "histogram bucket " + name + " without le label";
      *family = base;
      return "";
    }
    return "sample " + name + " has no preceding # TYPE line for its family";
  }

  std::map<std::string, double> samples_;
  std::map<std::string, std::string> types_;  // family -> type
  std::set<std::string> helped_;
  std::set<std::string> sampled_;  // families with samples
  std::string current_family_;
};

}  // namespace

absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(const std::string& text) {
  return Parser().Parse(text);
}

double SumSeries(const std::map<std::string, double>& series, const std::string& name,
                 const std::map<std::string, std::string>& label_subset) {
  double sum = 0;
  for (const auto& [key, value] : series) {
    if (key.compare(0, name.size(), name) != 0) continue;
    Labels labels;
    if (key.size() != name.size()) {
      if (key[name.size()] != '{') continue;
      size_t pos = name.size();
      if (!ParseLabels(key, &pos, &labels).empty()) continue;
    }
    bool match = true;
    for (const auto& [label, want] : label_subset) {
      auto it = labels.find(label);
      if (it == labels.end() || it->second != want) {
        match = false;
        break;
      }
    }
    if (match) sum += value;
  }
  return sum;
}

}  // namespace tessera::testing
