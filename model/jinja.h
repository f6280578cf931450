// A Jinja subset, enough for the chat templates that HF checkpoints ship in
// tokenizer_config.json, rendered the way transformers' apply_chat_template
// renders them (trim_blocks and lstrip_blocks on, loop controls on).
//
// Supported:
//   {{ expr }}, {% stmt %}, {# comment #}, whitespace control with '-';
//   if / elif / else, for (with tuple targets, an `if` filter, else, loop.*,
//   break, continue), set (names and namespace attributes), generation
//   (a no-op block);
//   literals (strings, numbers, true/false/none in either case, lists,
//   tuples, dicts), attribute and item access, slices, calls, the ternary
//   `a if c else b`, and / or / not, in / not in, ==, !=, <, <=, >, >=,
//   + - * / // % **, ~;
//   filters: abs, capitalize, count, default (d), first, float, int, items,
//   join, last, length, list, lower, map(attribute=), rejectattr, replace,
//   reverse, safe, selectattr, string, title, tojson (indent=), trim, upper;
//   tests: boolean, defined, divisibleby, equalto (==), even, false, float,
//   integer, iterable, mapping, none, number, odd, sequence, string, true,
//   undefined;
//   globals: namespace(), range(), raise_exception(), dict();
//   string methods (capitalize, endswith, find, lower, lstrip, replace,
//   rstrip, split, startswith, strip, title, upper), dict methods (get,
//   items, keys, values).
// Anything else (macros, call blocks, includes, ...) is refused by Parse
// with the line and the construct. Values follow Python: truthiness,
// str() of lists and dicts, integer vs float arithmetic.
//
// Limits: templates nest at most kMaxNesting blocks or expressions deep
// (Parse refuses deeper ones; the parser's recursion is bounded by it);
// values nest at most kMaxValueDepth deep and a namespace never holds a
// namespace (no cycles); Render stops with ResourceExhausted past
// kMaxOutputBytes of output or kMaxLoopIterations iterations in all.
//
// Thread safety: a parsed Template is immutable; Render may be called from
// any number of threads.
#ifndef TESSERA_MODEL_JINJA_H_
#define TESSERA_MODEL_JINJA_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera::jinja {

inline constexpr int kMaxNesting = 64;
// Lists and dicts a template builds nest at most this deep (Render refuses
// deeper ones, so printing, comparing and freeing them stay shallow).
inline constexpr int kMaxValueDepth = 128;
inline constexpr int64_t kMaxOutputBytes = int64_t{64} << 20;
inline constexpr int64_t kMaxLoopIterations = 1000000;

struct Node;

class Template {
 public:
  // InvalidArgument naming the line and what is wrong or unsupported.
  static absl::StatusOr<Template> Parse(absl::string_view source);

  // Renders with `context`'s keys as variables (a JSON object). Errors:
  // InvalidArgument for a template error at render time (a type error, an
  // undefined attribute of an undefined value) and for raise_exception,
  // whose message is returned as is; ResourceExhausted past the limits.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;

  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

 private:
  Template();
  std::unique_ptr<Node> root_;
};

// The message of a raise_exception() call carries this prefix in the
// status Render returns, so callers can tell it from a template bug.
inline constexpr absl::string_view kRaisedPrefix = "template raised: ";

}  // namespace tessera::jinja

#endif  // TESSERA_MODEL_JINJA_H_
