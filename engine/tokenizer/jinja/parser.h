// Jinja parser: tokens -> syntax tree, with jinja2's operator precedence and the statements chat
// templates use (if, for, set, macro, filter blocks, break/continue, transformers' generation
// tag). Constructs outside that subset are refused here, naming them. Stateless; thread-safe.
#pragma once

#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/jinja/ast.h"
#include "engine/tokenizer/jinja/lexer.h"

namespace slim::jinja {

// InvalidArgument for a syntax error, Unimplemented for a jinja2 construct this interpreter
// does not run (e.g. "chat template: unsupported tag 'include'"). An unknown filter or test is
// refused here unless it sits inside an {% if %}, where jinja2 too only fails when it runs.
StatusOr<Body> Parse(const std::vector<Token>& tokens);

}  // namespace slim::jinja
