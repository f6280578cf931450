#include "model/jinja.h"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "model/utf8.h"

namespace tessera::jinja {
namespace {

// ---------------------------------------------------------------- values

struct Value;
using List = std::vector<Value>;
struct Dict;
struct Args;
struct Function {
  std::string name;
  std::function<absl::StatusOr<Value>(Args&)> call;
};

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // kString; kUndefined: what was looked up, for errors
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<const Function> fn;
  bool is_namespace = false;  // a namespace() dict: `set ns.x = ...` may assign to it
  int depth = 0;              // 1 + the deepest element's, for lists and dicts

  static Value Undefined(std::string what) {
    Value v;
    v.s = std::move(what);
    return v;
  }
  static Value None() {
    Value v;
    v.kind = Kind::kNone;
    return v;
  }
  static Value Bool(bool x) {
    Value v;
    v.kind = Kind::kBool;
    v.b = x;
    return v;
  }
  static Value Int(int64_t x) {
    Value v;
    v.kind = Kind::kInt;
    v.i = x;
    return v;
  }
  static Value Float(double x) {
    Value v;
    v.kind = Kind::kFloat;
    v.f = x;
    return v;
  }
  static Value String(std::string x) {
    Value v;
    v.kind = Kind::kString;
    v.s = std::move(x);
    return v;
  }
  static Value MakeList(List items);
  static Value MakeDict(Dict d);
  static Value MakeFunction(std::string name, std::function<absl::StatusOr<Value>(Args&)> call) {
    Value v;
    v.kind = Kind::kFunction;
    v.fn = std::make_shared<const Function>(Function{std::move(name), std::move(call)});
    return v;
  }
  bool undefined() const { return kind == Kind::kUndefined; }
  bool numeric() const { return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool; }
  double as_double() const { return kind == Kind::kFloat ? f : static_cast<double>(kind == Kind::kBool ? b : i); }
  int64_t as_int() const { return kind == Kind::kBool ? b : i; }
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* Find(absl::string_view key) const {
    for (const auto& [k, v] : items) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  void Set(const std::string& key, Value v) {
    for (auto& [k, old] : items) {
      if (k == key) {
        old = std::move(v);
        return;
      }
    }
    items.emplace_back(key, std::move(v));
  }
};

Value Value::MakeList(List items) {
  Value v;
  v.kind = Kind::kList;
  for (const Value& e : items) v.depth = std::max(v.depth, e.depth + 1);
  v.depth = std::max(v.depth, 1);
  v.list = std::make_shared<List>(std::move(items));
  return v;
}
Value Value::MakeDict(Dict d) {
  Value v;
  v.kind = Kind::kDict;
  for (const auto& [k, e] : d.items) v.depth = std::max(v.depth, e.depth + 1);
  v.depth = std::max(v.depth, 1);
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}

// True when v is or holds a namespace (bounded by the value depth limit).
bool HoldsNamespace(const Value& v) {
  if (v.kind == Value::Kind::kDict) {
    if (v.is_namespace) return true;
    for (const auto& [k, e] : v.dict->items) {
      if (HoldsNamespace(e)) return true;
    }
  } else if (v.kind == Value::Kind::kList) {
    for (const Value& e : *v.list) {
      if (HoldsNamespace(e)) return true;
    }
  }
  return false;
}

struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
  // The argument at `index` or named `name`; nullptr when absent.
  const Value* Get(size_t index, absl::string_view name) const {
    for (const auto& [n, v] : named) {
      if (n == name) return &v;
    }
    return index < positional.size() ? &positional[index] : nullptr;
  }
};

const char* KindName(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "undefined";
    case Value::Kind::kNone: return "none";
    case Value::Kind::kBool: return "boolean";
    case Value::Kind::kInt: return "integer";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kString: return "string";
    case Value::Kind::kList: return "list";
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kFunction: return "function";
  }
  return "value";
}

Value FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::None();
    case nlohmann::json::value_t::boolean: return Value::Bool(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::Int(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      return u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? Value::Int(static_cast<int64_t>(u))
                                                                             : Value::Float(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::Float(j.get<double>());
    case nlohmann::json::value_t::string: return Value::String(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List items;
      for (const auto& e : j) items.push_back(FromJson(e));
      return Value::MakeList(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (const auto& [k, e] : j.items()) d.items.emplace_back(k, FromJson(e));
      return Value::MakeDict(std::move(d));
    }
    default: return Value::None();
  }
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i != 0;
    case Value::Kind::kFloat: return v.f != 0;
    case Value::Kind::kString: return !v.s.empty();
    case Value::Kind::kList: return !v.list->empty();
    case Value::Kind::kDict: return !v.dict->items.empty();
    case Value::Kind::kFunction: return true;
  }
  return false;
}

// Python's repr() of a float: the shortest text that reads back, with ".0"
// on integral values.
std::string FloatRepr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x);
  std::string s(buf, end);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string StrOf(const Value& v);

std::string Repr(const Value& v) {
  if (v.kind != Value::Kind::kString) return StrOf(v);
  const bool dq = v.s.find('\'') != std::string::npos && v.s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (char c : v.s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  out += q;
  return out;
}

// Python's str().
std::string StrOf(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.b ? "True" : "False";
    case Value::Kind::kInt: return absl::StrCat(v.i);
    case Value::Kind::kFloat: return FloatRepr(v.f);
    case Value::Kind::kString: return v.s;
    case Value::Kind::kList: {
      std::vector<std::string> parts;
      for (const Value& e : *v.list) parts.push_back(Repr(e));
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
    case Value::Kind::kDict: {
      std::vector<std::string> parts;
      for (const auto& [k, e] : v.dict->items) parts.push_back(absl::StrCat(Repr(Value::String(k)), ": ", Repr(e)));
      return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
    }
    case Value::Kind::kFunction: return absl::StrCat("<function ", v.fn->name, ">");
  }
  return "";
}

void JsonString(absl::string_view s, std::string* out) {
  *out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          *out += static_cast<char>(c);
        }
    }
  }
  *out += '"';
}

// Python's json.dumps(v, ensure_ascii=False, indent=indent), which is what
// transformers' tojson filter runs. Iterative depth is bounded by the
// value's own nesting, which comes from JSON the server parsed with limits.
absl::Status ToJson(const Value& v, int indent, int depth, std::string* out) {
  if (depth > 2 * kMaxNesting) return absl::InvalidArgumentError("tojson: value nested too deeply");
  auto newline = [&](int d) {
    if (indent < 0) return;
    *out += '\n';
    out->append(static_cast<size_t>(indent) * d, ' ');
  };
  switch (v.kind) {
    case Value::Kind::kNone: *out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: *out += v.b ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: *out += absl::StrCat(v.i); return absl::OkStatus();
    case Value::Kind::kFloat: *out += FloatRepr(v.f); return absl::OkStatus();
    case Value::Kind::kString: JsonString(v.s, out); return absl::OkStatus();
    case Value::Kind::kList: {
      if (v.list->empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      *out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k > 0) *out += indent < 0 ? ", " : ",";
        newline(depth + 1);
        if (absl::Status s = ToJson((*v.list)[k], indent, depth + 1, out); !s.ok()) return s;
      }
      newline(depth);
      *out += ']';
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      if (v.dict->items.empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      *out += '{';
      bool first = true;
      for (const auto& [k, e] : v.dict->items) {
        if (!first) *out += indent < 0 ? ", " : ",";
        first = false;
        newline(depth + 1);
        JsonString(k, out);
        *out += ": ";
        if (absl::Status s = ToJson(e, indent, depth + 1, out); !s.ok()) return s;
      }
      newline(depth);
      *out += '}';
      return absl::OkStatus();
    }
    default: return absl::InvalidArgumentError(absl::StrCat("tojson: a ", KindName(v), " is not JSON"));
  }
}

bool Equal(const Value& a, const Value& b) {
  if (a.numeric() && b.numeric()) {
    if (a.kind != Value::Kind::kFloat && b.kind != Value::Kind::kFloat) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.s == b.s;
    case Value::Kind::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k) {
        if (!Equal((*a.list)[k], (*b.list)[k])) return false;
      }
      return true;
    case Value::Kind::kDict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, e] : a.dict->items) {
        const Value* other = b.dict->Find(k);
        if (!other || !Equal(e, *other)) return false;
      }
      return true;
    case Value::Kind::kFunction: return a.fn == b.fn;
    default: return false;
  }
}

// ------------------------------------------------------------ unicode text

std::u32string Decode(absl::string_view s) {
  std::u32string out;
  utf8proc_ssize_t pos = 0;
  const auto n = static_cast<utf8proc_ssize_t>(s.size());
  while (pos < n) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len =
        utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + pos, n - pos, &cp);
    if (len <= 0) {
      out.push_back(0xFFFD);
      ++pos;
    } else {
      out.push_back(static_cast<char32_t>(cp));
      pos += len;
    }
  }
  return out;
}

std::string Encode(std::u32string_view cps) {
  std::string out;
  for (char32_t c : cps) AppendUtf8(c, &out);
  return out;
}

// Python's str.isspace().
bool IsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

enum class StripSide { kBoth, kLeft, kRight };

std::string Strip(absl::string_view s, const Value* chars, StripSide side) {
  const std::u32string cps = Decode(s);
  std::u32string set;
  if (chars && chars->kind == Value::Kind::kString) set = Decode(chars->s);
  auto strip = [&](char32_t c) {
    return chars && chars->kind == Value::Kind::kString ? set.find(c) != std::u32string::npos : IsSpace(c);
  };
  size_t b = 0, e = cps.size();
  if (side != StripSide::kRight) {
    while (b < e && strip(cps[b])) ++b;
  }
  if (side != StripSide::kLeft) {
    while (e > b && strip(cps[e - 1])) --e;
  }
  return Encode(std::u32string_view(cps).substr(b, e - b));
}

enum class Case { kUpper, kLower, kTitle, kCapitalize };

std::string ChangeCase(absl::string_view s, Case how) {
  std::u32string cps = Decode(s);
  bool word_start = true;
  for (size_t k = 0; k < cps.size(); ++k) {
    const auto c = static_cast<utf8proc_int32_t>(cps[k]);
    const bool letter = utf8proc_category(c) >= UTF8PROC_CATEGORY_LU && utf8proc_category(c) <= UTF8PROC_CATEGORY_LO;
    bool upper = false;
    switch (how) {
      case Case::kUpper: upper = true; break;
      case Case::kLower: upper = false; break;
      case Case::kTitle: upper = word_start; break;
      case Case::kCapitalize: upper = k == 0; break;
    }
    cps[k] = static_cast<char32_t>(upper ? utf8proc_toupper(c) : utf8proc_tolower(c));
    word_start = !letter;
  }
  return Encode(cps);
}

// ------------------------------------------------------------------ lexer

enum class Tok { kName, kString, kInt, kFloat, kOp };

struct Token {
  Tok type = Tok::kOp;
  std::string text;  // name, operator, or the decoded string
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

struct Segment {
  enum class Kind { kText, kOutput, kStatement };
  Kind kind = Kind::kText;
  std::string text;
  std::vector<Token> tokens;
  int line = 0;
};

absl::Status SyntaxError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", what));
}

class Lexer {
 public:
  explicit Lexer(absl::string_view src) : src_(src) {}

  absl::StatusOr<std::vector<Segment>> Run() {
    std::vector<Segment> out;
    size_t pos = 0;
    bool strip_next = false;  // the previous tag ended with '-'
    while (pos < src_.size()) {
      size_t open = pos;
      while (true) {
        open = src_.find('{', open);
        if (open == absl::string_view::npos || open + 1 >= src_.size()) {
          open = absl::string_view::npos;
          break;
        }
        const char c = src_[open + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++open;
      }
      std::string text(src_.substr(pos, open == absl::string_view::npos ? absl::string_view::npos : open - pos));
      const int text_line = line_;
      line_ += static_cast<int>(std::count(text.begin(), text.end(), '\n'));
      if (strip_next) text = LeftStripAll(text);
      if (open == absl::string_view::npos) {
        Emit(std::move(text), text_line, &out);
        break;
      }
      const char kind = src_[open + 1];
      const char modifier = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (modifier == '-') {
        text = RightStripAll(text);
      } else if (kind != '{' && modifier != '+') {
        // lstrip_blocks: spaces and tabs between the line start and a block
        // or comment tag go.
        const size_t nl = text.rfind('\n');
        const size_t line_begin = nl == std::string::npos ? 0 : nl + 1;
        const bool at_line_start = nl != std::string::npos || pos == 0 || src_[pos - 1] == '\n';
        if (at_line_start && text.find_first_not_of(" \t", line_begin) == std::string::npos) {
          text.resize(line_begin);
        }
      }
      Emit(std::move(text), text_line, &out);
      size_t p = open + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
      bool trim_after = false;
      if (kind == '#') {
        const size_t close = src_.find("#}", p);
        if (close == absl::string_view::npos) return SyntaxError(line_, "unclosed comment {#");
        line_ += static_cast<int>(std::count(src_.begin() + p, src_.begin() + close, '\n'));
        strip_next = close > p && src_[close - 1] == '-';
        trim_after = !strip_next;
        p = close + 2;
      } else {
        Segment seg;
        seg.kind = kind == '{' ? Segment::Kind::kOutput : Segment::Kind::kStatement;
        seg.line = line_;
        char close_mod = '\0';
        if (absl::Status s = Tokens(kind == '{' ? '}' : '%', &p, &seg.tokens, &close_mod); !s.ok()) return s;
        strip_next = close_mod == '-';
        trim_after = kind == '%' && close_mod == '\0';
        if (seg.kind == Segment::Kind::kStatement && !seg.tokens.empty() && seg.tokens[0].type == Tok::kName &&
            seg.tokens[0].text == "raw") {
          return SyntaxError(seg.line, "{% raw %} is not supported");
        }
        out.push_back(std::move(seg));
      }
      // trim_blocks: the first newline after a block or comment tag goes.
      if (trim_after && p < src_.size() && src_[p] == '\n') {
        ++p;
        ++line_;
      } else if (trim_after && p + 1 < src_.size() && src_[p] == '\r' && src_[p + 1] == '\n') {
        p += 2;
        ++line_;
      }
      pos = p;
    }
    return out;
  }

 private:
  static std::string LeftStripAll(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\r\n\f\v");
    return b == std::string::npos ? "" : s.substr(b);
  }
  static std::string RightStripAll(const std::string& s) {
    const size_t e = s.find_last_not_of(" \t\r\n\f\v");
    return e == std::string::npos ? "" : s.substr(0, e + 1);
  }
  static void Emit(std::string text, int line, std::vector<Segment>* out) {
    if (text.empty()) return;
    Segment seg;
    seg.text = std::move(text);
    seg.line = line;
    out->push_back(std::move(seg));
  }

  // Tokens of a tag from *p up to its closing "}}" or "%}" (close is '}'
  // or '%'); *close_mod gets '-' or '+' when the closer had one.
  absl::Status Tokens(char close, size_t* p, std::vector<Token>* out, char* close_mod) {
    int depth = 0;
    size_t q = *p;
    while (true) {
      while (q < src_.size() && (src_[q] == ' ' || src_[q] == '\t' || src_[q] == '\n' || src_[q] == '\r')) {
        if (src_[q] == '\n') ++line_;
        ++q;
      }
      if (q >= src_.size()) return SyntaxError(line_, close == '}' ? "unclosed {{" : "unclosed {%");
      auto closes_at = [&](size_t at) { return at + 1 < src_.size() && src_[at] == close && src_[at + 1] == '}'; };
      if (depth == 0 && (src_[q] == '-' || src_[q] == '+') && closes_at(q + 1)) {
        *close_mod = src_[q];
        *p = q + 3;
        return absl::OkStatus();
      }
      if (depth == 0 && closes_at(q)) {
        *p = q + 2;
        return absl::OkStatus();
      }
      Token t;
      t.line = line_;
      const char c = src_[q];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = q;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        t.type = Tok::kName;
        t.text = std::string(src_.substr(q, e - q));
        q = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = q;
        while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        bool is_float = false;
        if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        }
        if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
          size_t x = e + 1;
          if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
          if (x < src_.size() && std::isdigit(static_cast<unsigned char>(src_[x]))) {
            is_float = true;
            e = x;
            while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          }
        }
        const absl::string_view num = src_.substr(q, e - q);
        if (is_float) {
          t.type = Tok::kFloat;
          auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), t.f);
          if (ec != std::errc()) return SyntaxError(line_, absl::StrCat("bad number ", num));
        } else {
          t.type = Tok::kInt;
          auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), t.i);
          if (ec != std::errc()) return SyntaxError(line_, absl::StrCat("integer ", num, " is too large"));
        }
        q = e;
      } else if (c == '\'' || c == '"') {
        t.type = Tok::kString;
        size_t e = q + 1;
        while (true) {
          if (e >= src_.size()) return SyntaxError(t.line, "unterminated string");
          const char d = src_[e];
          if (d == c) break;
          if (d == '\n') ++line_;
          if (d == '\\' && e + 1 < src_.size()) {
            const char x = src_[e + 1];
            e += 2;
            switch (x) {
              case 'n': t.text += '\n'; break;
              case 't': t.text += '\t'; break;
              case 'r': t.text += '\r'; break;
              case 'b': t.text += '\b'; break;
              case 'f': t.text += '\f'; break;
              case 'v': t.text += '\v'; break;
              case '0': t.text += '\0'; break;
              case '\\': t.text += '\\'; break;
              case '\'': t.text += '\''; break;
              case '"': t.text += '"'; break;
              case '\n': break;
              case 'x':
              case 'u':
              case 'U': {
                const size_t digits = x == 'x' ? 2 : x == 'u' ? 4 : 8;
                uint32_t cp = 0;
                if (e + digits > src_.size()) return SyntaxError(t.line, "truncated escape in a string");
                for (size_t k = 0; k < digits; ++k) {
                  const char h = src_[e + k];
                  const int v = std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                                : (h >= 'a' && h <= 'f')                  ? h - 'a' + 10
                                : (h >= 'A' && h <= 'F')                  ? h - 'A' + 10
                                                                          : -1;
                  if (v < 0) return SyntaxError(t.line, "bad escape in a string");
                  cp = cp * 16 + static_cast<uint32_t>(v);
                }
                if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
                AppendUtf8(static_cast<char32_t>(cp), &t.text);
                e += digits;
                break;
              }
              default:
                t.text += '\\';
                t.text += x;
            }
            continue;
          }
          t.text += d;
          ++e;
        }
        q = e + 1;
      } else {
        static constexpr absl::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
        t.type = Tok::kOp;
        for (absl::string_view op : kTwo) {
          if (src_.substr(q, 2) == op) t.text = std::string(op);
        }
        if (t.text.empty()) {
          if (absl::string_view("()[]{},:.|~+-*/%<>=").find(c) == absl::string_view::npos) {
            return SyntaxError(line_, absl::StrCat("unexpected character '", std::string(1, c), "'"));
          }
          t.text = std::string(1, c);
        }
        if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
        if ((t.text == ")" || t.text == "]" || t.text == "}") && depth > 0) --depth;
        q += t.text.size();
      }
      out->push_back(std::move(t));
    }
  }

  absl::string_view src_;
  int line_ = 1;
};

// ------------------------------------------------------------------- AST

struct Expr {
  enum class Kind {
    kLiteral, kName, kList, kTuple, kDict, kAttr, kItem, kSlice, kCall, kFilter, kTest, kNot, kNeg, kPos,
    kBinary, kAnd, kOr, kCond
  };
  Kind kind = Kind::kLiteral;
  int line = 0;
  Value literal;
  std::string name;  // name, attribute, filter, test, operator
  bool negated = false;
  // Operands; for calls, filters and tests: the callee or operand, then the
  // positional arguments, then the named ones (named.size() at the end).
  std::vector<std::unique_ptr<Expr>> kids;
  std::vector<std::string> named;
  bool has[3] = {false, false, false};  // kSlice: start, stop, step present
};

}  // namespace

struct Node {
  enum class Kind { kBody, kText, kOutput, kIf, kFor, kSet, kBreak, kContinue };
  Kind kind = Kind::kBody;
  int line = 0;
  std::string text;
  // kIf: one condition per branch; kFor: the iterable, then the filter if
  // any; kOutput, kSet: the value.
  std::vector<std::unique_ptr<Expr>> exprs;
  // kIf: the branch bodies, then the else body if any; kFor: the body, then
  // the else body if any; kBody: its statements.
  std::vector<std::unique_ptr<Node>> kids;
  std::vector<std::string> targets;  // kFor: loop variables; kSet: name, or namespace and attribute
  bool has_else = false;
  bool has_filter = false;
};

namespace {

// --------------------------------------------------------------- parser

#define TESSERA_JINJA_ASSIGN(var, expr)   \
  auto var##_or = (expr);                 \
  if (!var##_or.ok()) return var##_or.status(); \
  auto var = *std::move(var##_or)

class ExprParser {
 public:
  ExprParser(const std::vector<Token>& tokens, size_t pos, int line) : t_(tokens), pos_(pos), line_(line) {}

  size_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= t_.size(); }
  bool PeekName(absl::string_view name, size_t ahead = 0) const {
    return pos_ + ahead < t_.size() && t_[pos_ + ahead].type == Tok::kName && t_[pos_ + ahead].text == name;
  }
  bool PeekOp(absl::string_view op) const {
    return pos_ < t_.size() && t_[pos_].type == Tok::kOp && t_[pos_].text == op;
  }
  bool AcceptName(absl::string_view name) {
    if (!PeekName(name)) return false;
    ++pos_;
    return true;
  }
  bool AcceptOp(absl::string_view op) {
    if (!PeekOp(op)) return false;
    ++pos_;
    return true;
  }
  absl::Status ExpectOp(absl::string_view op) {
    if (AcceptOp(op)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", op, "'"));
  }
  absl::StatusOr<std::string> ExpectName() {
    if (pos_ < t_.size() && t_[pos_].type == Tok::kName) return t_[pos_++].text;
    return Error("expected a name");
  }
  absl::Status Error(absl::string_view what) const {
    const std::string at = AtEnd() ? "the end of the tag" : absl::StrCat("'", t_[pos_].text, "'");
    return SyntaxError(Line(), absl::StrCat(what, " at ", at));
  }
  int Line() const { return pos_ < t_.size() ? t_[pos_].line : line_; }

  // A full expression; with_cond: a trailing `if ... else ...` is a
  // conditional expression (not in `for x in xs if cond`).
  absl::StatusOr<std::unique_ptr<Expr>> Parse(bool with_cond = true) {
    if (++depth_ > kMaxNesting) return Error("expression nested too deeply");
    absl::StatusOr<std::unique_ptr<Expr>> e = ParseOr();
    if (e.ok() && with_cond && PeekName("if")) {
      ++pos_;
      auto node = Make(Expr::Kind::kCond);
      TESSERA_JINJA_ASSIGN(cond, ParseOr());
      node->kids.push_back(std::move(cond));
      node->kids.push_back(*std::move(e));
      if (AcceptName("else")) {
        TESSERA_JINJA_ASSIGN(other, Parse());
        node->kids.push_back(std::move(other));
      }
      --depth_;
      return node;
    }
    --depth_;
    return e;
  }

 private:
  std::unique_ptr<Expr> Make(Expr::Kind kind) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = Line();
    return e;
  }

  using Sub = absl::StatusOr<std::unique_ptr<Expr>> (ExprParser::*)();

  absl::StatusOr<std::unique_ptr<Expr>> Binary(Sub next, std::initializer_list<absl::string_view> ops,
                                               Expr::Kind kind = Expr::Kind::kBinary) {
    TESSERA_JINJA_ASSIGN(left, (this->*next)());
    while (true) {
      std::string op;
      for (absl::string_view o : ops) {
        if ((kind == Expr::Kind::kBinary && PeekOp(o)) || (kind != Expr::Kind::kBinary && PeekName(o))) {
          op = std::string(o);
        }
      }
      if (op.empty()) return left;
      ++pos_;
      auto node = Make(kind);
      node->name = op;
      TESSERA_JINJA_ASSIGN(right, (this->*next)());
      node->kids.push_back(std::move(left));
      node->kids.push_back(std::move(right));
      left = std::move(node);
    }
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseOr() { return Binary(&ExprParser::ParseAnd, {"or"}, Expr::Kind::kOr); }
  absl::StatusOr<std::unique_ptr<Expr>> ParseAnd() {
    return Binary(&ExprParser::ParseNot, {"and"}, Expr::Kind::kAnd);
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseNot() {
    if (PeekName("not")) {
      ++pos_;
      if (++depth_ > kMaxNesting) return Error("expression nested too deeply");
      auto node = Make(Expr::Kind::kNot);
      TESSERA_JINJA_ASSIGN(operand, ParseNot());
      node->kids.push_back(std::move(operand));
      --depth_;
      return node;
    }
    return ParseCompare();
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseCompare() {
    TESSERA_JINJA_ASSIGN(left, ParseMath1());
    while (true) {
      std::string op;
      for (absl::string_view o : {"==", "!=", "<", "<=", ">", ">="}) {
        if (PeekOp(o)) op = std::string(o);
      }
      if (op.empty() && PeekName("in")) op = "in";
      if (op.empty() && PeekName("not") && PeekName("in", 1)) op = "not in";
      if (op.empty()) return left;
      pos_ += op == "not in" ? 2 : 1;
      auto node = Make(Expr::Kind::kBinary);
      node->name = op;
      TESSERA_JINJA_ASSIGN(right, ParseMath1());
      node->kids.push_back(std::move(left));
      node->kids.push_back(std::move(right));
      left = std::move(node);
    }
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParseMath1() { return Binary(&ExprParser::ParseConcat, {"+", "-"}); }
  absl::StatusOr<std::unique_ptr<Expr>> ParseConcat() { return Binary(&ExprParser::ParseMath2, {"~"}); }
  absl::StatusOr<std::unique_ptr<Expr>> ParseMath2() {
    return Binary(&ExprParser::ParsePow, {"*", "/", "//", "%"});
  }
  absl::StatusOr<std::unique_ptr<Expr>> ParsePow() { return Binary(&ExprParser::ParseUnaryFiltered, {"**"}); }
  absl::StatusOr<std::unique_ptr<Expr>> ParseUnaryFiltered() { return ParseUnary(true); }

  absl::StatusOr<std::unique_ptr<Expr>> ParseUnary(bool with_filter) {
    if (++depth_ > kMaxNesting) return Error("expression nested too deeply");
    std::unique_ptr<Expr> node;
    if (PeekOp("-") || PeekOp("+")) {
      node = Make(PeekOp("-") ? Expr::Kind::kNeg : Expr::Kind::kPos);
      ++pos_;
      TESSERA_JINJA_ASSIGN(operand, ParseUnary(false));
      node->kids.push_back(std::move(operand));
    } else {
      TESSERA_JINJA_ASSIGN(primary, ParsePrimary());
      node = std::move(primary);
    }
    TESSERA_JINJA_ASSIGN(post, ParsePostfix(std::move(node)));
    node = std::move(post);
    if (with_filter) {
      TESSERA_JINJA_ASSIGN(filtered, ParseFilters(std::move(node)));
      node = std::move(filtered);
    }
    --depth_;
    return node;
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParsePrimary() {
    if (AtEnd()) return Error("expected a value");
    const Token& t = t_[pos_];
    if (t.type == Tok::kName) {
      ++pos_;
      auto e = Make(Expr::Kind::kLiteral);
      if (t.text == "true" || t.text == "True") {
        e->literal = Value::Bool(true);
      } else if (t.text == "false" || t.text == "False") {
        e->literal = Value::Bool(false);
      } else if (t.text == "none" || t.text == "None") {
        e->literal = Value::None();
      } else {
        e->kind = Expr::Kind::kName;
        e->name = t.text;
      }
      return e;
    }
    if (t.type == Tok::kString) {
      auto e = Make(Expr::Kind::kLiteral);
      std::string s;
      while (!AtEnd() && t_[pos_].type == Tok::kString) s += t_[pos_++].text;  // adjacent literals concatenate
      e->literal = Value::String(std::move(s));
      return e;
    }
    if (t.type == Tok::kInt || t.type == Tok::kFloat) {
      auto e = Make(Expr::Kind::kLiteral);
      e->literal = t.type == Tok::kInt ? Value::Int(t.i) : Value::Float(t.f);
      ++pos_;
      return e;
    }
    if (AcceptOp("(")) {
      if (AcceptOp(")")) return Make(Expr::Kind::kTuple);
      TESSERA_JINJA_ASSIGN(first, Parse());
      if (!PeekOp(",")) {
        if (absl::Status s = ExpectOp(")"); !s.ok()) return s;
        return first;
      }
      auto tuple = Make(Expr::Kind::kTuple);
      tuple->kids.push_back(std::move(first));
      while (AcceptOp(",")) {
        if (PeekOp(")")) break;
        TESSERA_JINJA_ASSIGN(item, Parse());
        tuple->kids.push_back(std::move(item));
      }
      if (absl::Status s = ExpectOp(")"); !s.ok()) return s;
      return tuple;
    }
    if (AcceptOp("[")) {
      auto list = Make(Expr::Kind::kList);
      while (!PeekOp("]")) {
        TESSERA_JINJA_ASSIGN(item, Parse());
        list->kids.push_back(std::move(item));
        if (!AcceptOp(",")) break;
      }
      if (absl::Status s = ExpectOp("]"); !s.ok()) return s;
      return list;
    }
    if (AcceptOp("{")) {
      auto dict = Make(Expr::Kind::kDict);
      while (!PeekOp("}")) {
        TESSERA_JINJA_ASSIGN(key, Parse());
        if (absl::Status s = ExpectOp(":"); !s.ok()) return s;
        TESSERA_JINJA_ASSIGN(value, Parse());
        dict->kids.push_back(std::move(key));
        dict->kids.push_back(std::move(value));
        if (!AcceptOp(",")) break;
      }
      if (absl::Status s = ExpectOp("}"); !s.ok()) return s;
      return dict;
    }
    return Error("expected a value");
  }

  // Arguments up to the closing ')' (the '(' is consumed): positional ones
  // into e->kids, then named ones, their names in e->named.
  absl::Status ParseArgs(Expr* e) {
    std::vector<std::unique_ptr<Expr>> named_values;
    while (!PeekOp(")")) {
      if (pos_ + 1 < t_.size() && t_[pos_].type == Tok::kName && t_[pos_ + 1].type == Tok::kOp &&
          t_[pos_ + 1].text == "=") {
        e->named.push_back(t_[pos_].text);
        pos_ += 2;
        TESSERA_JINJA_ASSIGN(value, Parse());
        named_values.push_back(std::move(value));
      } else {
        if (!named_values.empty()) return Error("positional argument after a named one");
        TESSERA_JINJA_ASSIGN(value, Parse());
        e->kids.push_back(std::move(value));
      }
      if (!AcceptOp(",")) break;
    }
    for (auto& v : named_values) e->kids.push_back(std::move(v));
    return ExpectOp(")");
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParsePostfix(std::unique_ptr<Expr> node) {
    while (true) {
      if (AcceptOp(".")) {
        auto attr = Make(Expr::Kind::kAttr);
        if (!AtEnd() && t_[pos_].type == Tok::kInt) {  // x.0 is x[0]
          attr->kind = Expr::Kind::kItem;
          auto index = Make(Expr::Kind::kLiteral);
          index->literal = Value::Int(t_[pos_++].i);
          attr->kids.push_back(std::move(node));
          attr->kids.push_back(std::move(index));
        } else {
          TESSERA_JINJA_ASSIGN(name, ExpectName());
          attr->name = name;
          attr->kids.push_back(std::move(node));
        }
        node = std::move(attr);
      } else if (AcceptOp("[")) {
        auto item = Make(Expr::Kind::kItem);
        item->kids.push_back(std::move(node));
        std::unique_ptr<Expr> parts[3];
        bool colon = false;
        for (int k = 0; k < 3; ++k) {
          if (!PeekOp(":") && !PeekOp("]")) {
            TESSERA_JINJA_ASSIGN(part, Parse());
            parts[k] = std::move(part);
            item->has[k] = true;
          }
          if (k < 2 && AcceptOp(":")) {
            colon = true;
            continue;
          }
          break;
        }
        if (absl::Status s = ExpectOp("]"); !s.ok()) return s;
        if (colon) {
          item->kind = Expr::Kind::kSlice;
          for (auto& p : parts) item->kids.push_back(p ? std::move(p) : Make(Expr::Kind::kLiteral));
        } else {
          if (!parts[0]) return Error("empty subscript");
          item->kids.push_back(std::move(parts[0]));
        }
        node = std::move(item);
      } else if (AcceptOp("(")) {
        auto call = Make(Expr::Kind::kCall);
        call->kids.push_back(std::move(node));
        if (absl::Status s = ParseArgs(call.get()); !s.ok()) return s;
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<std::unique_ptr<Expr>> ParseFilters(std::unique_ptr<Expr> node) {
    while (true) {
      if (AcceptOp("|")) {
        auto f = Make(Expr::Kind::kFilter);
        TESSERA_JINJA_ASSIGN(name, ExpectName());
        f->name = name;
        f->kids.push_back(std::move(node));
        if (AcceptOp("(")) {
          if (absl::Status s = ParseArgs(f.get()); !s.ok()) return s;
        }
        node = std::move(f);
      } else if (PeekName("is")) {
        ++pos_;
        auto t = Make(Expr::Kind::kTest);
        t->negated = AcceptName("not");
        if (!AtEnd() && t_[pos_].type == Tok::kOp && (t_[pos_].text == "==" || t_[pos_].text == "!=")) {
          t->name = t_[pos_++].text;
        } else if (PeekName("none") || PeekName("true") || PeekName("false")) {
          t->name = t_[pos_++].text;
        } else {
          TESSERA_JINJA_ASSIGN(name, ExpectName());
          t->name = name;
        }
        t->kids.push_back(std::move(node));
        if (AcceptOp("(")) {
          if (absl::Status s = ParseArgs(t.get()); !s.ok()) return s;
        } else if (!AtEnd() && (t_[pos_].type == Tok::kString || t_[pos_].type == Tok::kInt ||
                                t_[pos_].type == Tok::kFloat ||
                                (t_[pos_].type == Tok::kName && t_[pos_].text != "and" && t_[pos_].text != "or" &&
                                 t_[pos_].text != "else" && t_[pos_].text != "if"))) {
          // `x is divisibleby 3`, `x is equalto y`: one argument without parentheses.
          TESSERA_JINJA_ASSIGN(arg, ParsePrimary());
          t->kids.push_back(std::move(arg));
        }
        node = std::move(t);
      } else {
        return node;
      }
    }
  }
#undef TESSERA_JINJA_ASSIGN

  const std::vector<Token>& t_;
  size_t pos_;
  int line_;
  int depth_ = 0;
};

class Parser {
 public:
  explicit Parser(std::vector<Segment> segments) : segs_(std::move(segments)) {}

  absl::StatusOr<std::unique_ptr<Node>> Run() {
    auto root = std::make_unique<Node>();
    std::string end;
    if (absl::Status s = ParseBody(root.get(), {}, &end, 0); !s.ok()) return s;
    return root;
  }

 private:
  static bool Keyword(const Segment& seg, absl::string_view word) {
    return seg.kind == Segment::Kind::kStatement && !seg.tokens.empty() && seg.tokens[0].type == Tok::kName &&
           seg.tokens[0].text == word;
  }

  absl::Status Finish(ExprParser& p) { return p.AtEnd() ? absl::OkStatus() : p.Error("unexpected text"); }

  // Statements into body until one of `enders` (left unconsumed, its word in
  // *end); the top level (no enders) runs to the end of the template.
  absl::Status ParseBody(Node* body, std::initializer_list<absl::string_view> enders, std::string* end, int depth) {
    if (depth > kMaxNesting) return SyntaxError(Line(), "blocks nested too deeply");
    body->kind = Node::Kind::kBody;
    while (i_ < segs_.size()) {
      const Segment& seg = segs_[i_];
      for (absl::string_view e : enders) {
        if (Keyword(seg, e)) {
          *end = std::string(e);
          return absl::OkStatus();
        }
      }
      auto node = std::make_unique<Node>();
      node->line = seg.line;
      if (seg.kind == Segment::Kind::kText) {
        node->kind = Node::Kind::kText;
        node->text = seg.text;
        ++i_;
      } else if (seg.kind == Segment::Kind::kOutput) {
        node->kind = Node::Kind::kOutput;
        ExprParser p(seg.tokens, 0, seg.line);
        absl::StatusOr<std::unique_ptr<Expr>> e = p.Parse();
        if (!e.ok()) return e.status();
        if (absl::Status s = Finish(p); !s.ok()) return s;
        node->exprs.push_back(*std::move(e));
        ++i_;
      } else {
        if (absl::Status s = ParseStatement(node.get(), depth); !s.ok()) return s;
      }
      body->kids.push_back(std::move(node));
    }
    if (enders.size() > 0) {
      return SyntaxError(Line(), absl::StrCat("missing {% ", *enders.begin() == "endif" || *enders.begin() == "elif"
                                                                 ? "endif"
                                                             : *enders.begin() == "endfor" || *enders.begin() == "else"
                                                                 ? "endfor"
                                                                 : *enders.begin(),
                                              " %}"));
    }
    return absl::OkStatus();
  }

  int Line() const { return i_ < segs_.size() ? segs_[i_].line : (segs_.empty() ? 1 : segs_.back().line); }

  absl::Status ParseStatement(Node* node, int depth) {
    const Segment& seg = segs_[i_];
    if (seg.tokens.empty() || seg.tokens[0].type != Tok::kName) return SyntaxError(seg.line, "empty {% %} tag");
    const std::string word = seg.tokens[0].text;
    ExprParser p(seg.tokens, 1, seg.line);
    if (word == "if") {
      node->kind = Node::Kind::kIf;
      std::optional<ExprParser> branch;
      branch.emplace(seg.tokens, 1, seg.line);
      while (true) {
        absl::StatusOr<std::unique_ptr<Expr>> cond = branch->Parse();
        if (!cond.ok()) return cond.status();
        if (absl::Status s = Finish(*branch); !s.ok()) return s;
        node->exprs.push_back(*std::move(cond));
        ++i_;
        auto body = std::make_unique<Node>();
        std::string end;
        if (absl::Status s = ParseBody(body.get(), {"elif", "else", "endif"}, &end, depth + 1); !s.ok()) return s;
        node->kids.push_back(std::move(body));
        if (end == "elif") {
          branch.emplace(segs_[i_].tokens, 1, segs_[i_].line);
          continue;
        }
        if (end == "else") {
          ExprParser rest(segs_[i_].tokens, 1, segs_[i_].line);
          if (absl::Status s = Finish(rest); !s.ok()) return s;
          ++i_;
          auto other = std::make_unique<Node>();
          if (absl::Status s = ParseBody(other.get(), {"endif"}, &end, depth + 1); !s.ok()) return s;
          node->kids.push_back(std::move(other));
          node->has_else = true;
        }
        break;
      }
      return EndTag();
    }
    if (word == "for") {
      node->kind = Node::Kind::kFor;
      while (true) {
        absl::StatusOr<std::string> target = p.ExpectName();
        if (!target.ok()) return target.status();
        node->targets.push_back(*target);
        if (!p.AcceptOp(",")) break;
      }
      if (!p.AcceptName("in")) return p.Error("expected 'in'");
      absl::StatusOr<std::unique_ptr<Expr>> iter = p.Parse(/*with_cond=*/false);
      if (!iter.ok()) return iter.status();
      node->exprs.push_back(*std::move(iter));
      if (p.AcceptName("if")) {
        absl::StatusOr<std::unique_ptr<Expr>> filter = p.Parse(/*with_cond=*/false);
        if (!filter.ok()) return filter.status();
        node->exprs.push_back(*std::move(filter));
        node->has_filter = true;
      }
      if (p.PeekName("recursive")) return p.Error("recursive loops are not supported");
      if (absl::Status s = Finish(p); !s.ok()) return s;
      ++i_;
      auto body = std::make_unique<Node>();
      std::string end;
      if (absl::Status s = ParseBody(body.get(), {"else", "endfor"}, &end, depth + 1); !s.ok()) return s;
      node->kids.push_back(std::move(body));
      if (end == "else") {
        ++i_;
        auto other = std::make_unique<Node>();
        if (absl::Status s = ParseBody(other.get(), {"endfor"}, &end, depth + 1); !s.ok()) return s;
        node->kids.push_back(std::move(other));
        node->has_else = true;
      }
      return EndTag();
    }
    if (word == "set") {
      node->kind = Node::Kind::kSet;
      absl::StatusOr<std::string> name = p.ExpectName();
      if (!name.ok()) return name.status();
      node->targets.push_back(*name);
      if (p.AcceptOp(".")) {
        absl::StatusOr<std::string> attr = p.ExpectName();
        if (!attr.ok()) return attr.status();
        node->targets.push_back(*attr);
      }
      if (!p.AcceptOp("=")) return p.Error("expected '=' ({% set %} blocks are not supported)");
      absl::StatusOr<std::unique_ptr<Expr>> value = p.Parse();
      if (!value.ok()) return value.status();
      if (p.PeekOp(",")) {  // {% set a = x, y %} is a tuple
        auto tuple = std::make_unique<Expr>();
        tuple->kind = Expr::Kind::kTuple;
        tuple->kids.push_back(*std::move(value));
        while (p.AcceptOp(",")) {
          absl::StatusOr<std::unique_ptr<Expr>> item = p.Parse();
          if (!item.ok()) return item.status();
          tuple->kids.push_back(*std::move(item));
        }
        value = std::move(tuple);
      }
      if (absl::Status s = Finish(p); !s.ok()) return s;
      node->exprs.push_back(*std::move(value));
      ++i_;
      return absl::OkStatus();
    }
    if (word == "break" || word == "continue") {
      node->kind = word == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      if (absl::Status s = Finish(p); !s.ok()) return s;
      ++i_;
      return absl::OkStatus();
    }
    if (word == "generation") {  // transformers' assistant-mask marker: renders its body
      if (absl::Status s = Finish(p); !s.ok()) return s;
      ++i_;
      std::string end;
      if (absl::Status s = ParseBody(node, {"endgeneration"}, &end, depth + 1); !s.ok()) return s;
      return EndTag();
    }
    return SyntaxError(seg.line, absl::StrCat("{% ", word, " %} is not supported"));
  }

  // Consumes the end tag ParseBody stopped at, which takes no arguments.
  absl::Status EndTag() {
    ExprParser rest(segs_[i_].tokens, 1, segs_[i_].line);
    if (absl::Status s = Finish(rest); !s.ok()) return s;
    ++i_;
    return absl::OkStatus();
  }

  std::vector<Segment> segs_;
  size_t i_ = 0;
};

// ---------------------------------------------------------------- render

absl::Status RenderError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", what));
}

#define TESSERA_JINJA_TRY(var, expr)          \
  auto var##_or = (expr);                     \
  if (!var##_or.ok()) return var##_or.status(); \
  auto var = *std::move(var##_or)

class Renderer {
 public:
  explicit Renderer(const nlohmann::ordered_json& context) {
    scopes_.emplace_back();
    if (context.is_object()) {
      for (const auto& [k, v] : context.items()) scopes_[0][k] = FromJson(v);
    }
  }

  absl::StatusOr<std::string> Run(const Node& root) {
    TESSERA_JINJA_TRY(flow, Exec(root));
    (void)flow;
    return std::move(out_);
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::Status Append(absl::string_view s) {
    if (static_cast<int64_t>(out_.size() + s.size()) > kMaxOutputBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the chat template's output is over ", kMaxOutputBytes >> 20, " MiB"));
    }
    out_.append(s.data(), s.size());
    return absl::OkStatus();
  }

  absl::StatusOr<Flow> Exec(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kBody:
        for (const auto& kid : n.kids) {
          TESSERA_JINJA_TRY(flow, Exec(*kid));
          if (flow != Flow::kNormal) return flow;
        }
        return Flow::kNormal;
      case Node::Kind::kText:
        if (absl::Status s = Append(n.text); !s.ok()) return s;
        return Flow::kNormal;
      case Node::Kind::kOutput: {
        TESSERA_JINJA_TRY(v, Eval(*n.exprs[0]));
        if (absl::Status s = Append(StrOf(v)); !s.ok()) return s;
        return Flow::kNormal;
      }
      case Node::Kind::kIf:
        for (size_t b = 0; b < n.exprs.size(); ++b) {
          TESSERA_JINJA_TRY(cond, Eval(*n.exprs[b]));
          if (Truthy(cond)) return Exec(*n.kids[b]);
        }
        if (n.has_else) return Exec(*n.kids.back());
        return Flow::kNormal;
      case Node::Kind::kFor: return ExecFor(n);
      case Node::Kind::kSet: {
        TESSERA_JINJA_TRY(v, Eval(*n.exprs[0]));
        if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = std::move(v);
          return Flow::kNormal;
        }
        const Value ns = Lookup(n.targets[0]);
        if (ns.kind != Value::Kind::kDict || !ns.is_namespace) {
          return RenderError(n.line, absl::StrCat("cannot set an attribute of '", n.targets[0],
                                                  "', which is not a namespace()"));
        }
        if (HoldsNamespace(v)) return RenderError(n.line, "a namespace() cannot hold a namespace()");
        ns.dict->Set(n.targets[1], std::move(v));
        return Flow::kNormal;
      }
      case Node::Kind::kBreak: return Flow::kBreak;
      case Node::Kind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> ExecFor(const Node& n) {
    TESSERA_JINJA_TRY(iterable, Eval(*n.exprs[0]));
    TESSERA_JINJA_TRY(items, Items(iterable, n.line));
    scopes_.emplace_back();
    std::vector<Value> kept;
    if (n.has_filter) {
      for (Value& item : items) {
        if (absl::Status s = Bind(n, item); !s.ok()) return Pop(s);
        absl::StatusOr<Value> keep = Eval(*n.exprs[1]);
        if (!keep.ok()) return Pop(keep.status());
        if (Truthy(*keep)) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < length; ++k) {
      if (++iterations_ > kMaxLoopIterations) {
        return Pop(absl::ResourceExhaustedError(
            absl::StrCat("the chat template ran over ", kMaxLoopIterations, " loop iterations")));
      }
      if (absl::Status s = Bind(n, items[k]); !s.ok()) return Pop(s);
      Dict loop;
      loop.Set("index", Value::Int(k + 1));
      loop.Set("index0", Value::Int(k));
      loop.Set("revindex", Value::Int(length - k));
      loop.Set("revindex0", Value::Int(length - k - 1));
      loop.Set("first", Value::Bool(k == 0));
      loop.Set("last", Value::Bool(k == length - 1));
      loop.Set("length", Value::Int(length));
      loop.Set("depth", Value::Int(1));
      loop.Set("depth0", Value::Int(0));
      loop.Set("previtem", k > 0 ? items[k - 1] : Value::Undefined("loop.previtem"));
      loop.Set("nextitem", k + 1 < length ? items[k + 1] : Value::Undefined("loop.nextitem"));
      scopes_.back()["loop"] = Value::MakeDict(std::move(loop));
      absl::StatusOr<Flow> flow = Exec(*n.kids[0]);
      if (!flow.ok()) return Pop(flow.status());
      if (*flow == Flow::kBreak) break;
    }
    scopes_.pop_back();
    if (length == 0 && n.has_else) return Exec(*n.kids[1]);
    return Flow::kNormal;
  }

  absl::Status Pop(absl::Status s) {
    scopes_.pop_back();
    return s;
  }

  absl::Status Bind(const Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = item;
      return absl::OkStatus();
    }
    if (item.kind != Value::Kind::kList || item.list->size() != n.targets.size()) {
      return RenderError(n.line, absl::StrCat("cannot unpack a ", KindName(item), " into ", n.targets.size(),
                                              " loop variables"));
    }
    for (size_t k = 0; k < n.targets.size(); ++k) scopes_.back()[n.targets[k]] = (*item.list)[k];
    return absl::OkStatus();
  }

  // What a for loop or a filter iterates: list items, dict keys, string
  // characters; nothing for undefined.
  absl::StatusOr<List> Items(const Value& v, int line) {
    switch (v.kind) {
      case Value::Kind::kUndefined: return List();
      case Value::Kind::kList: return *v.list;
      case Value::Kind::kDict: {
        List keys;
        for (const auto& [k, e] : v.dict->items) keys.push_back(Value::String(k));
        return keys;
      }
      case Value::Kind::kString: {
        List chars;
        for (char32_t c : Decode(v.s)) chars.push_back(Value::String(Encode(std::u32string(1, c))));
        return chars;
      }
      default: return RenderError(line, absl::StrCat("a ", KindName(v), " is not iterable"));
    }
  }

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Global(name);
  }

  static Value Global(const std::string& name) {
    if (name == "raise_exception") {
      return Value::MakeFunction(name, [](Args& a) -> absl::StatusOr<Value> {
        const Value* msg = a.Get(0, "message");
        return absl::InvalidArgumentError(absl::StrCat(kRaisedPrefix, msg ? StrOf(*msg) : ""));
      });
    }
    if (name == "namespace" || name == "dict") {
      const bool ns = name == "namespace";
      return Value::MakeFunction(name, [ns](Args& a) -> absl::StatusOr<Value> {
        Dict d;
        for (auto& [k, v] : a.named) {
          if (ns && HoldsNamespace(v)) return absl::InvalidArgumentError("a namespace() cannot hold a namespace()");
          d.Set(k, v);
        }
        Value out = Value::MakeDict(std::move(d));
        out.is_namespace = ns;
        return out;
      });
    }
    if (name == "range") {
      return Value::MakeFunction(name, [](Args& a) -> absl::StatusOr<Value> {
        int64_t start = 0, stop = 0, step = 1;
        for (const Value& v : a.positional) {
          if (v.kind != Value::Kind::kInt) return absl::InvalidArgumentError("range() takes integers");
        }
        if (a.positional.size() == 1) {
          stop = a.positional[0].i;
        } else if (a.positional.size() == 2 || a.positional.size() == 3) {
          start = a.positional[0].i;
          stop = a.positional[1].i;
          if (a.positional.size() == 3) step = a.positional[2].i;
        } else {
          return absl::InvalidArgumentError("range() takes 1 to 3 arguments");
        }
        if (step == 0) return absl::InvalidArgumentError("range() step must not be zero");
        List items;
        for (int64_t x = start; step > 0 ? x < stop : x > stop; x += step) {
          if (static_cast<int64_t>(items.size()) >= kMaxLoopIterations) {
            return absl::ResourceExhaustedError("range() is too long");
          }
          items.push_back(Value::Int(x));
        }
        return Value::MakeList(std::move(items));
      });
    }
    return Value::Undefined(name);
  }

  // v, or an error when it nests deeper than kMaxValueDepth.
  static absl::StatusOr<Value> Bounded(Value v, int line) {
    if (v.depth > kMaxValueDepth) {
      return RenderError(line, absl::StrCat("values nest more than ", kMaxValueDepth, " deep"));
    }
    return v;
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.literal;
      case Expr::Kind::kName: return Lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        List items;
        for (const auto& kid : e.kids) {
          TESSERA_JINJA_TRY(v, Eval(*kid));
          items.push_back(std::move(v));
        }
        return Bounded(Value::MakeList(std::move(items)), e.line);
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.kids.size(); k += 2) {
          TESSERA_JINJA_TRY(key, Eval(*e.kids[k]));
          if (key.kind != Value::Kind::kString) return RenderError(e.line, "dict keys must be strings");
          TESSERA_JINJA_TRY(v, Eval(*e.kids[k + 1]));
          d.Set(key.s, std::move(v));
        }
        return Bounded(Value::MakeDict(std::move(d)), e.line);
      }
      case Expr::Kind::kAttr: {
        TESSERA_JINJA_TRY(obj, Eval(*e.kids[0]));
        return Attribute(obj, e.name, e.line);
      }
      case Expr::Kind::kItem: {
        TESSERA_JINJA_TRY(obj, Eval(*e.kids[0]));
        TESSERA_JINJA_TRY(key, Eval(*e.kids[1]));
        return Item(obj, key, e.line);
      }
      case Expr::Kind::kSlice: return EvalSlice(e);
      case Expr::Kind::kCall: {
        TESSERA_JINJA_TRY(callee, Eval(*e.kids[0]));
        if (callee.kind != Value::Kind::kFunction) {
          return RenderError(e.line, absl::StrCat("a ", KindName(callee),
                                                  callee.undefined() ? absl::StrCat(" ('", callee.s, "')") : "",
                                                  " is not callable"));
        }
        TESSERA_JINJA_TRY(args, EvalArgs(e, 1));
        absl::StatusOr<Value> r = callee.fn->call(args);
        if (!r.ok() && !absl::StartsWith(r.status().message(), kRaisedPrefix)) {
          return RenderError(e.line, absl::StrCat(callee.fn->name, ": ", r.status().message()));
        }
        if (r.ok()) return Bounded(*std::move(r), e.line);
        return r;
      }
      case Expr::Kind::kFilter: {
        TESSERA_JINJA_TRY(operand, Eval(*e.kids[0]));
        TESSERA_JINJA_TRY(args, EvalArgs(e, 1));
        absl::StatusOr<Value> r = Filter(e.name, operand, args, e.line);
        if (!r.ok() && r.status().code() == absl::StatusCode::kInvalidArgument &&
            !absl::StartsWith(r.status().message(), "chat template line")) {
          return RenderError(e.line, absl::StrCat("filter ", e.name, ": ", r.status().message()));
        }
        if (r.ok()) return Bounded(*std::move(r), e.line);
        return r;
      }
      case Expr::Kind::kTest: {
        TESSERA_JINJA_TRY(operand, Eval(*e.kids[0]));
        TESSERA_JINJA_TRY(args, EvalArgs(e, 1));
        TESSERA_JINJA_TRY(result, Test(e.name, operand, args, e.line));
        return Value::Bool(result != e.negated);
      }
      case Expr::Kind::kNot: {
        TESSERA_JINJA_TRY(v, Eval(*e.kids[0]));
        return Value::Bool(!Truthy(v));
      }
      case Expr::Kind::kNeg:
      case Expr::Kind::kPos: {
        TESSERA_JINJA_TRY(v, Eval(*e.kids[0]));
        if (!v.numeric()) return RenderError(e.line, absl::StrCat("unary minus of a ", KindName(v)));
        if (e.kind == Expr::Kind::kPos) return v;
        if (v.kind == Value::Kind::kFloat) return Value::Float(-v.f);
        if (v.as_int() == std::numeric_limits<int64_t>::min()) return RenderError(e.line, "integer overflow");
        return Value::Int(-v.as_int());
      }
      case Expr::Kind::kAnd: {
        TESSERA_JINJA_TRY(left, Eval(*e.kids[0]));
        if (!Truthy(left)) return left;
        return Eval(*e.kids[1]);
      }
      case Expr::Kind::kOr: {
        TESSERA_JINJA_TRY(left, Eval(*e.kids[0]));
        if (Truthy(left)) return left;
        return Eval(*e.kids[1]);
      }
      case Expr::Kind::kCond: {
        TESSERA_JINJA_TRY(cond, Eval(*e.kids[0]));
        if (Truthy(cond)) return Eval(*e.kids[1]);
        if (e.kids.size() > 2) return Eval(*e.kids[2]);
        return Value::Undefined("the else branch");
      }
      case Expr::Kind::kBinary: {
        TESSERA_JINJA_TRY(left, Eval(*e.kids[0]));
        TESSERA_JINJA_TRY(right, Eval(*e.kids[1]));
        return BinaryOp(e.name, left, right, e.line);
      }
    }
    return RenderError(e.line, "unknown expression");
  }

  absl::StatusOr<Args> EvalArgs(const Expr& e, size_t first) {
    Args a;
    const size_t positional_end = e.kids.size() - e.named.size();
    for (size_t k = first; k < e.kids.size(); ++k) {
      TESSERA_JINJA_TRY(v, Eval(*e.kids[k]));
      if (k < positional_end) {
        a.positional.push_back(std::move(v));
      } else {
        a.named.emplace_back(e.named[k - positional_end], std::move(v));
      }
    }
    return a;
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    TESSERA_JINJA_TRY(obj, Eval(*e.kids[0]));
    int64_t parts[3] = {0, 0, 1};
    for (int k = 0; k < 3; ++k) {
      if (!e.has[k]) continue;
      TESSERA_JINJA_TRY(v, Eval(*e.kids[k + 1]));
      if (v.kind == Value::Kind::kNone) continue;
      if (v.kind != Value::Kind::kInt) return RenderError(e.line, "slice bounds must be integers");
      parts[k] = v.i;
    }
    const int64_t step = e.has[2] ? parts[2] : 1;
    if (step == 0) return RenderError(e.line, "slice step must not be zero");
    std::u32string cps;
    int64_t n = 0;
    if (obj.kind == Value::Kind::kList) {
      n = static_cast<int64_t>(obj.list->size());
    } else if (obj.kind == Value::Kind::kString) {
      cps = Decode(obj.s);
      n = static_cast<int64_t>(cps.size());
    } else {
      return RenderError(e.line, absl::StrCat("cannot slice a ", KindName(obj)));
    }
    // Python's slice.indices().
    auto clamp = [&](int64_t x, bool present, int64_t dflt) {
      if (!present) return dflt;
      if (x < 0) x += n;
      if (step > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t start = clamp(parts[0], e.has[0], step > 0 ? 0 : n - 1);
    const int64_t stop = clamp(parts[1], e.has[1], step > 0 ? n : -1);
    List items;
    std::u32string chars;
    for (int64_t x = start; step > 0 ? x < stop : x > stop; x += step) {
      if (obj.kind == Value::Kind::kList) {
        items.push_back((*obj.list)[x]);
      } else {
        chars.push_back(cps[x]);
      }
    }
    if (obj.kind == Value::Kind::kList) return Value::MakeList(std::move(items));
    return Value::String(Encode(chars));
  }

  absl::StatusOr<Value> Attribute(const Value& obj, const std::string& name, int line) {
    if (obj.kind == Value::Kind::kDict) {
      if (!obj.is_namespace) {
        if (std::optional<Value> m = Method(obj, name)) return *m;
      }
      const Value* v = obj.dict->Find(name);
      return v ? *v : Value::Undefined(name);
    }
    if (obj.kind == Value::Kind::kString || obj.kind == Value::Kind::kList) {
      if (std::optional<Value> m = Method(obj, name)) return *m;
      return Value::Undefined(name);
    }
    if (obj.undefined()) {
      return RenderError(line, absl::StrCat("'", obj.s, "' is undefined (reading its attribute '", name, "')"));
    }
    return Value::Undefined(name);
  }

  absl::StatusOr<Value> Item(const Value& obj, const Value& key, int line) {
    if (obj.kind == Value::Kind::kDict) {
      if (key.kind == Value::Kind::kString) {
        if (const Value* v = obj.dict->Find(key.s)) return *v;
        if (std::optional<Value> m = Method(obj, key.s)) return *m;
        return Value::Undefined(key.s);
      }
      return Value::Undefined(StrOf(key));
    }
    if (obj.kind == Value::Kind::kList || obj.kind == Value::Kind::kString) {
      if (key.kind == Value::Kind::kString) return Attribute(obj, key.s, line);
      if (key.kind != Value::Kind::kInt && key.kind != Value::Kind::kBool) {
        return RenderError(line, absl::StrCat("indices must be integers, not ", KindName(key)));
      }
      std::u32string cps;
      if (obj.kind == Value::Kind::kString) cps = Decode(obj.s);
      const int64_t n = obj.kind == Value::Kind::kList ? static_cast<int64_t>(obj.list->size())
                                                        : static_cast<int64_t>(cps.size());
      int64_t k = key.as_int();
      if (k < 0) k += n;
      if (k < 0 || k >= n) return Value::Undefined(absl::StrCat("item ", key.as_int()));
      if (obj.kind == Value::Kind::kList) return (*obj.list)[k];
      return Value::String(Encode(std::u32string(1, cps[k])));
    }
    if (obj.undefined()) {
      return RenderError(line, absl::StrCat("'", obj.s, "' is undefined (reading its item ", Repr(key), ")"));
    }
    return Value::Undefined(StrOf(key));
  }

  // Methods of strings, lists and dicts, bound to `obj`.
  static std::optional<Value> Method(const Value& obj, const std::string& name) {
    using F = std::function<absl::StatusOr<Value>(Args&)>;
    F f;
    if (obj.kind == Value::Kind::kString) {
      const std::string s = obj.s;
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const StripSide side = name == "strip" ? StripSide::kBoth : name == "lstrip" ? StripSide::kLeft
                                                                                     : StripSide::kRight;
        f = [s, side](Args& a) -> absl::StatusOr<Value> { return Value::String(Strip(s, a.Get(0, "chars"), side)); };
      } else if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
        const Case c = name == "upper" ? Case::kUpper : name == "lower" ? Case::kLower
                       : name == "title" ? Case::kTitle : Case::kCapitalize;
        f = [s, c](Args&) -> absl::StatusOr<Value> { return Value::String(ChangeCase(s, c)); };
      } else if (name == "startswith" || name == "endswith") {
        const bool starts = name == "startswith";
        f = [s, starts](Args& a) -> absl::StatusOr<Value> {
          const Value* p = a.Get(0, "prefix");
          if (!p) return absl::InvalidArgumentError("needs an argument");
          List options = p->kind == Value::Kind::kList ? *p->list : List{*p};
          for (const Value& o : options) {
            if (o.kind != Value::Kind::kString) return absl::InvalidArgumentError("takes strings");
            if (starts ? absl::StartsWith(s, o.s) : absl::EndsWith(s, o.s)) return Value::Bool(true);
          }
          return Value::Bool(false);
        };
      } else if (name == "split") {
        f = [s](Args& a) -> absl::StatusOr<Value> {
          const Value* sep = a.Get(0, "sep");
          const Value* max = a.Get(1, "maxsplit");
          int64_t limit = max && max->kind == Value::Kind::kInt ? max->i : -1;
          List parts;
          if (!sep || sep->kind == Value::Kind::kNone) {
            // Runs of whitespace, no empty parts.
            const std::u32string cps = Decode(s);
            size_t k = 0;
            while (k < cps.size()) {
              while (k < cps.size() && IsSpace(cps[k])) ++k;
              if (k >= cps.size()) break;
              if (limit == 0) {
                size_t end = cps.size();
                while (end > k && IsSpace(cps[end - 1])) --end;
                parts.push_back(Value::String(Encode(std::u32string_view(cps).substr(k, end - k))));
                break;
              }
              size_t e = k;
              while (e < cps.size() && !IsSpace(cps[e])) ++e;
              parts.push_back(Value::String(Encode(std::u32string_view(cps).substr(k, e - k))));
              if (limit > 0) --limit;
              k = e;
            }
            return Value::MakeList(std::move(parts));
          }
          if (sep->kind != Value::Kind::kString || sep->s.empty()) {
            return absl::InvalidArgumentError("split() separator must be a non-empty string");
          }
          size_t start = 0;
          while (true) {
            const size_t at = limit == 0 ? std::string::npos : s.find(sep->s, start);
            if (at == std::string::npos) {
              parts.push_back(Value::String(s.substr(start)));
              break;
            }
            parts.push_back(Value::String(s.substr(start, at - start)));
            start = at + sep->s.size();
            if (limit > 0) --limit;
          }
          return Value::MakeList(std::move(parts));
        };
      } else if (name == "replace") {
        f = [s](Args& a) -> absl::StatusOr<Value> { return ReplaceIn(s, a); };
      } else if (name == "find") {
        f = [s](Args& a) -> absl::StatusOr<Value> {
          const Value* sub = a.Get(0, "sub");
          if (!sub || sub->kind != Value::Kind::kString) return absl::InvalidArgumentError("find() takes a string");
          const size_t at = s.find(sub->s);
          if (at == std::string::npos) return Value::Int(-1);
          return Value::Int(static_cast<int64_t>(Decode(absl::string_view(s).substr(0, at)).size()));
        };
      } else if (name == "join") {
        f = [s](Args& a) -> absl::StatusOr<Value> {
          const Value* items = a.Get(0, "iterable");
          if (!items || items->kind != Value::Kind::kList) return absl::InvalidArgumentError("join() takes a list");
          std::vector<std::string> parts;
          for (const Value& v : *items->list) parts.push_back(StrOf(v));
          return Value::String(absl::StrJoin(parts, s));
        };
      }
    } else if (obj.kind == Value::Kind::kDict) {
      const std::shared_ptr<Dict> d = obj.dict;
      if (name == "get") {
        f = [d](Args& a) -> absl::StatusOr<Value> {
          const Value* key = a.Get(0, "key");
          const Value* dflt = a.Get(1, "default");
          if (key && key->kind == Value::Kind::kString) {
            if (const Value* v = d->Find(key->s)) return *v;
          }
          return dflt ? *dflt : Value::None();
        };
      } else if (name == "items" || name == "keys" || name == "values") {
        const int which = name == "items" ? 0 : name == "keys" ? 1 : 2;
        f = [d, which](Args&) -> absl::StatusOr<Value> {
          List out;
          for (const auto& [k, v] : d->items) {
            if (which == 0) out.push_back(Value::MakeList({Value::String(k), v}));
            if (which == 1) out.push_back(Value::String(k));
            if (which == 2) out.push_back(v);
          }
          return Value::MakeList(std::move(out));
        };
      }
    }
    if (!f) return std::nullopt;
    return Value::MakeFunction(name, std::move(f));
  }

  static absl::StatusOr<Value> ReplaceIn(const std::string& s, const Args& a) {
    const Value* from = a.Get(0, "old");
    const Value* to = a.Get(1, "new");
    const Value* count = a.Get(2, "count");
    if (!from || !to || from->kind != Value::Kind::kString || to->kind != Value::Kind::kString) {
      return absl::InvalidArgumentError("replace() takes two strings");
    }
    int64_t limit = count && count->kind == Value::Kind::kInt ? count->i : -1;
    if (from->s.empty()) return Value::String(s);
    std::string out;
    size_t start = 0;
    while (limit != 0) {
      const size_t at = s.find(from->s, start);
      if (at == std::string::npos) break;
      out.append(s, start, at - start);
      out += to->s;
      start = at + from->s.size();
      if (limit > 0) --limit;
    }
    out.append(s, start, std::string::npos);
    return Value::String(std::move(out));
  }

  absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return Value::Bool(Equal(a, b));
    if (op == "!=") return Value::Bool(!Equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == Value::Kind::kString && a.kind == Value::Kind::kString) {
        found = b.s.find(a.s) != std::string::npos;
      } else if (b.kind == Value::Kind::kList) {
        for (const Value& v : *b.list) found = found || Equal(a, v);
      } else if (b.kind == Value::Kind::kDict) {
        found = a.kind == Value::Kind::kString && b.dict->Find(a.s) != nullptr;
      } else if (!b.undefined()) {
        return RenderError(line, absl::StrCat("'in' needs a string, list or dict, not a ", KindName(b)));
      }
      return Value::Bool(found == (op == "in"));
    }
    if (op == "~") return Value::String(StrOf(a) + StrOf(b));
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      int cmp = 0;
      if (a.numeric() && b.numeric()) {
        const double x = a.as_double(), y = b.as_double();
        cmp = x < y ? -1 : x > y ? 1 : 0;
      } else if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
        cmp = a.s.compare(b.s);
        cmp = cmp < 0 ? -1 : cmp > 0 ? 1 : 0;
      } else {
        return RenderError(line, absl::StrCat("cannot compare a ", KindName(a), " with a ", KindName(b)));
      }
      if (op == "<") return Value::Bool(cmp < 0);
      if (op == "<=") return Value::Bool(cmp <= 0);
      if (op == ">") return Value::Bool(cmp > 0);
      return Value::Bool(cmp >= 0);
    }
    if (op == "+") {
      if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) return Value::String(a.s + b.s);
      if (a.kind == Value::Kind::kList && b.kind == Value::Kind::kList) {
        List items = *a.list;
        items.insert(items.end(), b.list->begin(), b.list->end());
        return Value::MakeList(std::move(items));
      }
    }
    if (op == "*" && ((a.kind == Value::Kind::kString && b.kind == Value::Kind::kInt) ||
                      (a.kind == Value::Kind::kInt && b.kind == Value::Kind::kString))) {
      const Value& s = a.kind == Value::Kind::kString ? a : b;
      const int64_t times = a.kind == Value::Kind::kInt ? a.i : b.i;
      if (times > 0 && static_cast<int64_t>(s.s.size()) * times > kMaxOutputBytes) {
        return absl::ResourceExhaustedError("string repetition is too long");
      }
      std::string out;
      for (int64_t k = 0; k < times; ++k) out += s.s;
      return Value::String(std::move(out));
    }
    if (!a.numeric() || !b.numeric()) {
      return RenderError(line, absl::StrCat("unsupported operand types for ", op, ": ", KindName(a),
                                            a.undefined() ? absl::StrCat(" ('", a.s, "')") : "", " and ",
                                            KindName(b), b.undefined() ? absl::StrCat(" ('", b.s, "')") : ""));
    }
    const bool ints = a.kind != Value::Kind::kFloat && b.kind != Value::Kind::kFloat;
    if (op == "/") {
      if (b.as_double() == 0) return RenderError(line, "division by zero");
      return Value::Float(a.as_double() / b.as_double());
    }
    if (ints) {
      const int64_t x = a.as_int(), y = b.as_int();
      int64_t r = 0;
      if (op == "+" && !__builtin_add_overflow(x, y, &r)) return Value::Int(r);
      if (op == "-" && !__builtin_sub_overflow(x, y, &r)) return Value::Int(r);
      if (op == "*" && !__builtin_mul_overflow(x, y, &r)) return Value::Int(r);
      if (op == "//" || op == "%") {
        if (y == 0) return RenderError(line, "division by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) return RenderError(line, "integer overflow");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors
          --q;
          m += y;
        }
        return Value::Int(op == "//" ? q : m);
      }
      if (op == "**" && y >= 0) {
        int64_t p = 1;
        for (int64_t k = 0; k < y; ++k) {
          if (__builtin_mul_overflow(p, x, &p)) return RenderError(line, "integer overflow");
        }
        return Value::Int(p);
      }
      if (op == "+" || op == "-" || op == "*") return RenderError(line, "integer overflow");
    }
    const double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value::Float(x + y);
    if (op == "-") return Value::Float(x - y);
    if (op == "*") return Value::Float(x * y);
    if (op == "**") return Value::Float(std::pow(x, y));
    if (op == "//" || op == "%") {
      if (y == 0) return RenderError(line, "division by zero");
      const double q = std::floor(x / y);
      return Value::Float(op == "//" ? q : x - q * y);
    }
    return RenderError(line, absl::StrCat("unknown operator ", op));
  }

  absl::StatusOr<bool> Test(const std::string& name, const Value& v, const Args& a, int line) {
    const Value* arg = a.Get(0, "value");
    if (name == "defined") return !v.undefined();
    if (name == "undefined") return v.undefined();
    if (name == "none") return v.kind == Value::Kind::kNone;
    if (name == "boolean") return v.kind == Value::Kind::kBool;
    if (name == "true") return v.kind == Value::Kind::kBool && v.b;
    if (name == "false") return v.kind == Value::Kind::kBool && !v.b;
    if (name == "integer") return v.kind == Value::Kind::kInt;
    if (name == "float") return v.kind == Value::Kind::kFloat;
    if (name == "number") return v.numeric();
    if (name == "string") return v.kind == Value::Kind::kString;
    if (name == "mapping") return v.kind == Value::Kind::kDict;
    if (name == "iterable") {
      return v.kind == Value::Kind::kList || v.kind == Value::Kind::kDict || v.kind == Value::Kind::kString ||
             v.undefined();
    }
    if (name == "sequence") {
      return v.kind == Value::Kind::kList || v.kind == Value::Kind::kDict || v.kind == Value::Kind::kString;
    }
    if (name == "callable") return v.kind == Value::Kind::kFunction;
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (v.kind != Value::Kind::kInt) return RenderError(line, absl::StrCat("test ", name, " needs an integer"));
      if (name == "odd") return v.i % 2 != 0;
      if (name == "even") return v.i % 2 == 0;
      if (!arg || arg->kind != Value::Kind::kInt || arg->i == 0) {
        return RenderError(line, "divisibleby needs a non-zero integer");
      }
      return v.i % arg->i == 0;
    }
    if (name == "lower" || name == "upper") {
      return v.kind == Value::Kind::kString && ChangeCase(v.s, name == "lower" ? Case::kLower : Case::kUpper) == v.s;
    }
    if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return arg && Equal(v, *arg);
    if (name == "ne" || name == "!=") return !arg || !Equal(v, *arg);
    if (name == "in") {
      if (!arg) return RenderError(line, "test in needs a value");
      TESSERA_JINJA_TRY(r, BinaryOp("in", v, *arg, line));
      return r.b;
    }
    if (name == "gt" || name == "ge" || name == "lt" || name == "le" || name == "greaterthan" ||
        name == "lessthan") {
      if (!arg) return RenderError(line, absl::StrCat("test ", name, " needs a value"));
      const std::string op = name == "gt" || name == "greaterthan" ? ">" : name == "ge" ? ">="
                             : name == "lt" || name == "lessthan"  ? "<" : "<=";
      TESSERA_JINJA_TRY(r, BinaryOp(op, v, *arg, line));
      return r.b;
    }
    return RenderError(line, absl::StrCat("unknown test '", name, "'"));
  }

  absl::StatusOr<Value> Filter(const std::string& name, const Value& v, const Args& a, int line) {
    if (name == "safe" || name == "e" || name == "escape" || name == "forceescape") {
      if (name == "safe") return v;
      return RenderError(line, "HTML escaping is not supported");
    }
    if (name == "default" || name == "d") {
      const Value* dflt = a.Get(0, "default_value");
      const Value* boolean = a.Get(1, "boolean");
      const bool use = v.undefined() || (boolean && Truthy(*boolean) && !Truthy(v));
      if (!use) return v;
      return dflt ? *dflt : Value::String("");
    }
    if (name == "tojson") {
      const Value* indent = a.Get(0, "indent");
      std::string out;
      const int n = indent && indent->kind == Value::Kind::kInt ? static_cast<int>(std::clamp<int64_t>(indent->i, 0, 16))
                                                                 : -1;
      if (absl::Status s = ToJson(v, n, 0, &out); !s.ok()) return RenderError(line, s.message());
      return Value::String(std::move(out));
    }
    if (name == "string") return Value::String(StrOf(v));
    if (name == "length" || name == "count") {
      if (v.kind == Value::Kind::kString) return Value::Int(static_cast<int64_t>(Decode(v.s).size()));
      if (v.kind == Value::Kind::kList) return Value::Int(static_cast<int64_t>(v.list->size()));
      if (v.kind == Value::Kind::kDict) return Value::Int(static_cast<int64_t>(v.dict->items.size()));
      if (v.undefined()) return Value::Int(0);
      return RenderError(line, absl::StrCat("a ", KindName(v), " has no length"));
    }
    if (name == "list") {
      TESSERA_JINJA_TRY(items, Items(v, line));
      return Value::MakeList(std::move(items));
    }
    if (name == "first" || name == "last") {
      TESSERA_JINJA_TRY(items, Items(v, line));
      if (items.empty()) return Value::Undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "reverse") {
      if (v.kind == Value::Kind::kString) {
        std::u32string cps = Decode(v.s);
        std::reverse(cps.begin(), cps.end());
        return Value::String(Encode(cps));
      }
      TESSERA_JINJA_TRY(items, Items(v, line));
      std::reverse(items.begin(), items.end());
      return Value::MakeList(std::move(items));
    }
    if (name == "items") {
      if (v.kind != Value::Kind::kDict) return RenderError(line, "items needs a dict");
      return Method(v, "items")->fn->call(const_cast<Args&>(a));
    }
    if (name == "join") {
      TESSERA_JINJA_TRY(items, Items(v, line));
      const Value* sep = a.Get(0, "d");
      const Value* attr = a.Get(1, "attribute");
      std::vector<std::string> parts;
      for (const Value& item : items) {
        if (attr && attr->kind == Value::Kind::kString) {
          TESSERA_JINJA_TRY(field, Attribute(item, attr->s, line));
          parts.push_back(StrOf(field));
        } else {
          parts.push_back(StrOf(item));
        }
      }
      return Value::String(absl::StrJoin(parts, sep && sep->kind == Value::Kind::kString ? sep->s : ""));
    }
    if (name == "selectattr" || name == "rejectattr") {
      TESSERA_JINJA_TRY(items, Items(v, line));
      if (a.positional.empty() || a.positional[0].kind != Value::Kind::kString) {
        return RenderError(line, absl::StrCat(name, " needs an attribute name"));
      }
      Args test_args;
      test_args.positional.assign(a.positional.begin() + std::min<size_t>(2, a.positional.size()),
                                  a.positional.end());
      List out;
      for (const Value& item : items) {
        TESSERA_JINJA_TRY(field, Attribute(item, a.positional[0].s, line));
        bool pass = Truthy(field);
        if (a.positional.size() > 1) {
          if (a.positional[1].kind != Value::Kind::kString) return RenderError(line, "the test name must be a string");
          TESSERA_JINJA_TRY(r, Test(a.positional[1].s, field, test_args, line));
          pass = r;
        }
        if (pass == (name == "selectattr")) out.push_back(item);
      }
      return Value::MakeList(std::move(out));
    }
    if (name == "map") {
      TESSERA_JINJA_TRY(items, Items(v, line));
      const Value* attr = a.Get(99, "attribute");
      List out;
      for (const Value& item : items) {
        if (attr && attr->kind == Value::Kind::kString) {
          TESSERA_JINJA_TRY(field, Attribute(item, attr->s, line));
          out.push_back(std::move(field));
        } else if (!a.positional.empty() && a.positional[0].kind == Value::Kind::kString) {
          Args rest;
          rest.positional.assign(a.positional.begin() + 1, a.positional.end());
          TESSERA_JINJA_TRY(mapped, Filter(a.positional[0].s, item, rest, line));
          out.push_back(std::move(mapped));
        } else {
          return RenderError(line, "map needs attribute= or a filter name");
        }
      }
      return Value::MakeList(std::move(out));
    }
    if (name == "int" || name == "float" || name == "abs") {
      if (name == "abs") {
        if (v.kind == Value::Kind::kFloat) return Value::Float(std::fabs(v.f));
        if (v.numeric()) {
          if (v.as_int() == std::numeric_limits<int64_t>::min()) return RenderError(line, "integer overflow");
          return Value::Int(v.as_int() < 0 ? -v.as_int() : v.as_int());
        }
        return RenderError(line, absl::StrCat("abs of a ", KindName(v)));
      }
      double x = 0;
      bool ok = v.numeric();
      if (ok) x = v.as_double();
      if (v.kind == Value::Kind::kString) {
        const std::string t = Strip(v.s, nullptr, StripSide::kBoth);
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
        ok = ec == std::errc() && p == t.data() + t.size();
      }
      const Value* dflt = a.Get(0, "default");
      if (!ok) return dflt ? *dflt : (name == "int" ? Value::Int(0) : Value::Float(0));
      if (name == "float") return Value::Float(x);
      if (!(std::fabs(x) < 9.2e18)) return RenderError(line, "integer overflow");
      return Value::Int(static_cast<int64_t>(x));
    }
    if (name == "trim" || name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
        name == "replace") {
      if (v.kind != Value::Kind::kString) {
        if (!v.undefined() && v.kind != Value::Kind::kNone && !v.numeric()) {
          return RenderError(line, absl::StrCat("filter ", name, " needs a string, not a ", KindName(v)));
        }
      }
      const std::string s = StrOf(v);
      if (name == "trim") return Value::String(Strip(s, a.Get(0, "chars"), StripSide::kBoth));
      if (name == "replace") return ReplaceIn(s, a);
      const Case c = name == "upper" ? Case::kUpper : name == "lower" ? Case::kLower
                     : name == "title" ? Case::kTitle : Case::kCapitalize;
      return Value::String(ChangeCase(s, c));
    }
    return RenderError(line, absl::StrCat("unknown filter '", name, "'"));
  }

  std::vector<std::map<std::string, Value>> scopes_;
  std::string out_;
  int64_t iterations_ = 0;
};

#undef TESSERA_JINJA_TRY

}  // namespace

Template::Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

absl::StatusOr<Template> Template::Parse(absl::string_view source) {
  absl::StatusOr<std::vector<Segment>> segments = Lexer(source).Run();
  if (!segments.ok()) return segments.status();
  absl::StatusOr<std::unique_ptr<Node>> root = Parser(*std::move(segments)).Run();
  if (!root.ok()) return root.status();
  Template t;
  t.root_ = *std::move(root);
  return t;
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& context) const {
  return Renderer(context).Run(*root_);
}

}  // namespace tessera::jinja
