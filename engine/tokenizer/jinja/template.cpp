// Jinja template: lex + parse once; each render runs a fresh Evaluator over the shared tree.
#include "engine/tokenizer/jinja/template.h"

#include "engine/tokenizer/jinja/evaluator.h"
#include "engine/tokenizer/jinja/filters.h"
#include "engine/tokenizer/jinja/lexer.h"
#include "engine/tokenizer/jinja/parser.h"

namespace slim::jinja {

StatusOr<Template> Template::Parse(std::string_view source) {
  SLIM_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source));
  SLIM_ASSIGN_OR_RETURN(Body body, jinja::Parse(tokens));
  Template t;
  t.body_ = std::make_shared<const Body>(std::move(body));
  return t;
}

StatusOr<Str> Template::Render(const Dict& vars) const {
  Dict scope;
  AddGlobals(&scope);
  for (const auto& [k, v] : vars.items) scope.Set(k, v);
  Evaluator ev(std::move(scope));
  SLIM_RETURN_IF_ERROR(ev.Exec(*body_));
  return ev.Output();
}

}  // namespace slim::jinja
