// The Jinja interpreter on small cases whose expected output Python's jinja2 produced
// (tests/fixtures/jinja/cases.json, from scripts/make_jinja_cases.py): whitespace control,
// statements, filters, tests, methods, operators, str() formatting, undefined semantics and
// errors. Then provenance (which bytes came from content) and refusals naming the construct.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/jinja/template.h"

namespace slim::jinja {
namespace {

using json = nlohmann::ordered_json;  // dicts keep their order, as Python's do

Value FromJson(const json& j) {
  if (j.is_null()) return Value::None();
  if (j.is_boolean()) return Value::Bool(j.get<bool>());
  if (j.is_number_integer()) return Value::Int(j.get<int64_t>());
  if (j.is_number()) return Value::Float(j.get<double>());
  if (j.is_string()) return Value::String(Str(j.get<std::string>()));
  if (j.is_array()) {
    List l;
    for (const json& x : j) l.push_back(FromJson(x));
    return Value::MakeList(std::move(l));
  }
  Dict d;
  for (const auto& [k, v] : j.items()) d.Set(k, FromJson(v));
  return Value::MakeDict(std::move(d));
}

StatusOr<Str> RenderSource(const std::string& src, const Dict& vars) {
  SLIM_ASSIGN_OR_RETURN(Template t, Template::Parse(src));
  return t.Render(vars);
}

TEST(Jinja, CasesMatchJinja2) {
  std::ifstream f(std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/jinja/cases.json");
  ASSERT_TRUE(f.good()) << "tests/fixtures/jinja/cases.json is missing (scripts/make_jinja_cases.py)";
  const json cases = json::parse(f);
  ASSERT_GE(cases.size(), 70u);
  int rendered = 0, raised = 0;
  for (const json& c : cases) {
    const std::string name = c["name"];
    Dict vars;
    for (const auto& [k, v] : c["vars"].items()) vars.Set(k, FromJson(v));
    auto out = RenderSource(c["template"], vars);
    if (c.contains("error")) {
      EXPECT_FALSE(out.ok()) << name << ": jinja2 raised " << c["error"] << " but we rendered '" << out->text << "'";
      if (!out.ok()) {
        EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << name << ": " << out.status().ToString();
      }
      ++raised;
      continue;
    }
    ASSERT_TRUE(out.ok()) << name << ": " << out.status().ToString();
    EXPECT_EQ(out->text, c["text"].get<std::string>()) << name << ": " << c["template"];
    ++rendered;
  }
  EXPECT_GE(raised, 5);
  EXPECT_GE(rendered, 60);
}

// Content bytes as a string of 'c' (content) and 'm' (markup) per byte.
std::string Provenance(const Str& s) {
  std::string p(s.text.size(), 'm');
  for (const auto& [b, e] : s.content) {
    for (size_t i = b; i < e; ++i) p[i] = 'c';
  }
  return p;
}

Str RenderWithContent(const std::string& src, const std::string& content) {
  Dict vars;
  vars.Set("c", Value::String(Str::Content(content)));
  auto out = RenderSource(src, vars);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? *out : Str();
}

TEST(Jinja, ProvenanceFollowsBytes) {
  // Concatenation, ~ and output keep each byte's origin.
  Str s = RenderWithContent("{{ '<' + c + '>' }}{{ 1 ~ c }}", "ab");
  EXPECT_EQ(s.text, "<ab>1ab");
  EXPECT_EQ(Provenance(s), "mccmmcc");
  // Slicing, trim and split keep the surviving bytes' origin.
  s = RenderWithContent("{{ c | trim }}|{{ c[1:3] }}|{{ c.split('x')[1] }}", " axb ");
  EXPECT_EQ(s.text, "axb|ax|b ");
  EXPECT_EQ(Provenance(s), "cccmccmcc");
  // replace: the template's replacement text is markup, the kept content stays content.
  s = RenderWithContent("{{ c | replace('x', '<X>') }}", "axb");
  EXPECT_EQ(s.text, "a<X>b");
  EXPECT_EQ(Provenance(s), "cmmmc");
  // A set variable, a macro's output and a block set carry provenance through.
  s = RenderWithContent("{% macro m(x) %}[{{ x }}]{% endmacro %}{% set v = m(c) %}{% set b %}({{ c }}){% endset %}{{ v }}{{ b }}",
                        "q");
  EXPECT_EQ(s.text, "[q](q)");
  EXPECT_EQ(Provenance(s), "mcmmcm");
  // Whole rewrites of content (tojson) are content entirely; of markup only, markup.
  s = RenderWithContent("{{ c | tojson }}{{ 'k' | tojson }}", "v");
  EXPECT_EQ(s.text, "\"v\"\"k\"");
  EXPECT_EQ(Provenance(s), "cccmmm");
  // upper/lower keep byte positions, so provenance.
  s = RenderWithContent("{{ ('a' ~ c) | upper }}", "b");
  EXPECT_EQ(Provenance(s), "mc");
}

TEST(Jinja, UnsupportedConstructsAreRefusedByName) {
  auto st = Template::Parse("{{ x | from_json }}");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.status().message().find("unsupported filter 'from_json'"), std::string::npos) << st.status().message();
  st = Template::Parse("{% include 'other.jinja' %}");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.status().message().find("'include'"), std::string::npos);
  // Inside an {% if %} an unknown filter only fails when it runs, as in jinja2.
  auto t = Template::Parse("{% if x %}{{ x | from_json }}{% endif %}ok");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->Render({})->text, "ok");
  Dict vars;
  vars.Set("x", Value::String(Str("{}")));
  auto r = t->Render(vars);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("from_json"), std::string::npos);
}

TEST(Jinja, SyntaxErrorsAreInvalidArgumentWithALine) {
  for (const char* bad : {"{% if x %}no end", "{{ 'unterminated }}", "{% for %}{% endfor %}", "{{ (1 }}",
                          "{% endif %}", "{% frobnicate %}", "{# open comment"}) {
    auto t = Template::Parse(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << bad << ": " << t.status().ToString();
    EXPECT_NE(t.status().message().find("line "), std::string::npos) << t.status().message();
  }
}

TEST(Jinja, RaiseExceptionCarriesTheMessage) {
  auto r = RenderSource("{{ raise_exception('roles must alternate') }}", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("roles must alternate"), std::string::npos);
}

TEST(Jinja, DeepMacroRecursionIsAnError) {
  auto r = RenderSource("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("recursion"), std::string::npos) << r.status().message();
}

TEST(Jinja, HugeNumbersAreErrorsNotCrashes) {
  EXPECT_FALSE(Template::Parse("{{ 99999999999999999999999 }}").ok());
  EXPECT_FALSE(Template::Parse("{{ x.99999999999999999999999 }}").ok());
  EXPECT_FALSE(RenderSource("{{ '{99999999999999999999}'.format(1) }}", {}).ok());
  Dict vars;
  vars.Set("l", Value::MakeList({Value::MakeList({Value::Int(1)})}));
  auto r = RenderSource("{{ l | map(attribute='99999999999999999999') | list }}", vars);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "[Undefined]") << "jinja2 prints the undefined list item as Undefined";
}

TEST(Jinja, DeepNestingIsAnErrorNotACrash) {
  std::string nots;
  for (int i = 0; i < 5000; ++i) nots += "not ";
  for (const std::string& bad : {std::string(100000, '('), std::string(50000, '[') + "1", nots + "x",
                                std::string(5000, '-') + "1"}) {
    auto t = Template::Parse("{{ " + bad + " }}");
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << t.status().ToString();
  }
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if x %}";
  auto t = Template::Parse(blocks);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("nested too deeply"), std::string::npos) << t.status().message();
}

}  // namespace
}  // namespace slim::jinja
