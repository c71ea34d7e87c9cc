// Jinja lexer: splits a template into text and tag tokens with jinja2's whitespace control as
// transformers configures it (trim_blocks=True, lstrip_blocks=True; `{%-`/`-%}` strip, `{%+`/
// `+%}` keep). Comments are dropped. Stateless; safe to call from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace slim::jinja {

enum class Tok {
  kText,        // literal template text (already whitespace-processed)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,      // value is the unescaped literal
  kInt,
  kFloat,
  kOp,          // operators and punctuation: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
  kEof,
};

struct Token {
  Tok type;
  std::string value;
  int line = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// InvalidArgument naming the line for an unterminated tag, comment or string.
StatusOr<std::vector<Token>> Lex(std::string_view source, const LexOptions& options = {});

}  // namespace slim::jinja
