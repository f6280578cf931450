// The Jinja subset (model/jinja.h): each construct against what Python's
// jinja2 renders with trim_blocks and lstrip_blocks (as transformers sets
// them), and the errors and limits.
#include "model/jinja.h"

#include "gtest/gtest.h"

namespace tessera::jinja {
namespace {

std::string Render(absl::string_view source, const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  absl::StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) return "PARSE: " + std::string(t.status().message());
  absl::StatusOr<std::string> out = t->Render(context);
  if (!out.ok()) return "RENDER: " + std::string(out.status().message());
  return *out;
}

TEST(JinjaTest, ExpressionsFollowPython) {
  EXPECT_EQ(Render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
            "7 3 -4 2 3.5 1024");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }}"), "a1None ababab [1, 2, 3]");
  EXPECT_EQ(Render("{{ {'k': 'v', 'n': 1} }} {{ ['x', true] }} {{ 1.0 }} {{ 0.1 + 0.2 }}"),
            "{'k': 'v', 'n': 1} ['x', True] 1.0 0.30000000000000004");
  EXPECT_EQ(Render("{{ 'yes' if 1 < 2 else 'no' }}{{ 'x' if false }}|{{ not 0 and 'b' or 'c' }}"), "yes|b");
  EXPECT_EQ(Render("{{ 'ell' in 'hello' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }}"),
            "True True True True");
  EXPECT_EQ(Render("{{ 'héllo'[1] }}{{ 'abcdef'[1:4] }}{{ 'abc'[::-1] }}{{ [1, 2, 3][-1] }}{{ [1,2,3][:-1] }}"),
            "ébcdcba3[1, 2]");
  EXPECT_EQ(Render("{{ d.missing }}|{{ d['k'] }}|{{ l[5] }}|", {{"d", {{"k", 2}}}, {"l", {1}}}), "|2||");
}

TEST(JinjaTest, StatementsAndLoops) {
  EXPECT_EQ(Render("{% for m in ms %}{{ loop.index0 }}{{ m }}{{ ',' if not loop.last }}{% endfor %}",
                   {{"ms", {"a", "b", "c"}}}),
            "0a,1b,2c");
  EXPECT_EQ(Render("{% for x in xs if x % 2 %}{{ x }}/{{ loop.length }} {% else %}none{% endfor %}",
                   {{"xs", {1, 2, 3, 4, 5}}}),
            "1/3 3/3 5/3 ");
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}),
            "a=1;b=2;");
  EXPECT_EQ(Render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}"
                   "{% endif %}{{ x }}{% endfor %}"),
            "0134");
  // A set inside a loop stays inside it; a namespace carries values out.
  EXPECT_EQ(Render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set n = n + x %}"
                   "{% set ns.n = ns.n + x %}{% endfor %}{{ n }} {{ ns.n }}"),
            "0 6");
  EXPECT_EQ(Render("{% if a %}A{% elif b %}B{% else %}C{% endif %}", {{"b", true}}), "B");
}

TEST(JinjaTest, WhitespaceControlAndTrimBlocks) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the
  // indentation before one; '-' strips all whitespace on its side.
  EXPECT_EQ(Render("{% if true %}\n    yes\n{% endif %}\nafter"), "    yes\nafter");
  EXPECT_EQ(Render("<ul>\n    {% for x in [1, 2] %}\n    <li>{{ x }}</li>\n    {% endfor %}\n</ul>"),
            "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>");
  EXPECT_EQ(Render("a   {{- 'b' -}}   c {{ 'd' }}\n  {%- if true %} e{% endif %}"), "abc d e");
  EXPECT_EQ(Render("x {# a comment #}\ny"), "x y");
  EXPECT_EQ(Render("{{ 'keep' }}\n{{ 'newline' }}"), "keep\nnewline");
}

TEST(JinjaTest, FiltersTestsAndMethods) {
  EXPECT_EQ(Render("{{ '  pad  ' | trim }}|{{ 'ab' | upper }}|{{ 'hello world' | title }}|{{ 'hI' | capitalize }}"),
            "pad|AB|Hello World|Hi");
  EXPECT_EQ(Render("{{ [1, 2, 3] | length }} {{ 'ünï' | length }} {{ [3, 4] | first }} {{ [3, 4] | last }}"),
            "3 3 3 4");
  EXPECT_EQ(Render("{{ ['a', 'b'] | join(', ') }} {{ x | default('dflt') }} {{ '' | default('e', true) }}"),
            "a, b dflt e");
  EXPECT_EQ(Render("{{ {'b': [1, 'é'], 'a': none} | tojson }}"), "{\"b\": [1, \"é\"], \"a\": null}");
  EXPECT_EQ(Render("{{ {'a': [1]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(Render("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join }}",
                   {{"ms", {{{"role", "user"}, {"content", "a"}}, {{"role", "bot"}, {"content", "b"}},
                            {{"role", "user"}, {"content", "c"}}}}}),
            "ac");
  EXPECT_EQ(Render("{{ x is defined }} {{ y is not defined }} {{ none is none }} {{ 'a' is string }} "
                   "{{ 4 is divisibleby 2 }} {{ 3 is odd }} {{ {} is mapping }}",
                   {{"x", 1}}),
            "True True True True True True True");
  EXPECT_EQ(Render("{{ ' a b '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}"
                   "|{{ 'x-y'.replace('-', '+') }}|{{ d.get('k', 'none') }}|{{ 'Hi'.lower() }}",
                   {{"d", nlohmann::ordered_json::object()}}),
            "a b|['a', 'b', '', 'c']|['a', 'b']|True|x+y|none|hi");
  EXPECT_EQ(Render("{{ 'ab'|reverse }}{{ [1,2]|reverse|list }}{{ '5'|int + 1 }}{{ 'x'|int }}{{ -3|abs }}"), "ba[2, 1]603");
}

TEST(JinjaTest, ErrorsNameTheLineAndTheProblem) {
  EXPECT_EQ(Render("ok\n{% macro m() %}{% endmacro %}"), "PARSE: chat template line 2: {% macro %} is not supported");
  EXPECT_EQ(Render("{% if x %}never closed"), "PARSE: chat template line 1: missing {% endif %}");
  EXPECT_EQ(Render("{{ 1 + }}"), "PARSE: chat template line 1: expected a value at the end of the tag");
  EXPECT_EQ(Render("{{ 'unterminated }}"), "PARSE: chat template line 1: unterminated string");
  EXPECT_EQ(Render("\n\n{{ nothing.attr }}"),
            "RENDER: chat template line 3: 'nothing' is undefined (reading its attribute 'attr')");
  EXPECT_EQ(Render("{{ 1 + 'a' }}"), "RENDER: chat template line 1: unsupported operand types for +: integer and string");
  EXPECT_EQ(Render("{{ raise_exception('Roles must alternate') }}"), "RENDER: template raised: Roles must alternate");
  EXPECT_EQ(Render("{{ x | nosuchfilter }}"), "RENDER: chat template line 1: unknown filter 'nosuchfilter'");
  EXPECT_EQ(Render("{% set x.y = 1 %}", {{"x", nlohmann::ordered_json::object()}}),
            "RENDER: chat template line 1: cannot set an attribute of 'x', which is not a namespace()");
}

TEST(JinjaTest, LimitsHold) {
  // Nesting past the limit is refused by the parser (no deep recursion).
  std::string deep = "{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}";
  EXPECT_NE(Render(deep).find("nested too deeply"), std::string::npos) << Render(deep).substr(0, 200);
  std::string blocks;
  for (int i = 0; i < 100; ++i) blocks += "{% if true %}";
  EXPECT_NE(Render(blocks).find("nested too deeply"), std::string::npos);
  EXPECT_NE(Render("{{ 'x' * 100000000 }}").find("too long"), std::string::npos);
  EXPECT_NE(Render("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(2) %}{% endfor %}"
                   "{% endfor %}{% endfor %}")
                .find("loop iterations"),
            std::string::npos);
  EXPECT_NE(Render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}").find("MiB"), std::string::npos);
  // Values a template builds stay shallow, and a namespace never holds one
  // (no cycle to print or free).
  EXPECT_NE(Render("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                   "{{ ns.x }}")
                .find("values nest more than 128 deep"),
            std::string::npos);
  EXPECT_NE(Render("{% set ns = namespace(x=1) %}{% set ns.x = ns %}{{ ns }}").find("cannot hold a namespace"),
            std::string::npos);
  EXPECT_NE(Render("{% set ns = namespace(x=1) %}{% set ns.y = [1, {'a': ns}] %}").find("cannot hold a namespace"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera::jinja
