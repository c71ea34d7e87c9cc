// Jinja syntax tree: expressions and statements as the parser builds them and the evaluator
// walks them. Plain data, immutable after parsing; shared read-only between renders.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/jinja/value.h"

namespace slim::jinja {

enum class ExprKind {
  kLiteral,   // value
  kName,      // name
  kList,      // kids
  kTuple,     // kids
  kDict,      // kids: key, value, key, value, ...
  kGetAttr,   // kids[0].name
  kGetItem,   // kids[0][kids[1]]
  kSlice,     // kids[0][kids[1]:kids[2]:kids[3]] (null kids are omitted bounds)
  kCall,      // kids[0](kids[1..], kwargs)
  kFilter,    // kids[0] | name(kids[1..], kwargs)
  kTest,      // kids[0] is [not] name(kids[1..])
  kUnary,     // op kids[0]: "-", "+", "not"
  kBinary,    // kids[0] op kids[1]: + - * / // % ** ~ and or
  kCompare,   // kids[0] ops[0] kids[1] ops[1] kids[2] ...: == != < <= > >= in notin
  kCond,      // kids[1] if kids[0] else kids[2] (kids[2] null: undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  std::string name;  // name, attribute, filter or test, operator
  Value value;       // literal
  std::vector<ExprPtr> kids;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // comparison operators
  bool negated = false;          // `is not`
  bool unknown = false;          // a filter/test this interpreter does not have (an error when run)
};

enum class StmtKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // conds[i] -> bodies[i]; bodies.back() is the else branch when bodies > conds
  kFor,       // for targets in expr [if cond]: bodies[0], else bodies[1]
  kSet,       // targets = expr, or target.attr = expr (attr non-empty)
  kSetBlock,  // {% set target %}bodies[0]{% endset %}
  kMacro,     // macro name(params) bodies[0]
  kBreak,
  kContinue,
  kFilterBlock,  // {% filter f %}bodies[0]{% endfilter %}: expr is the filter chain on kName "__body__"
  kBlock,        // bodies[0] as it is ({% generation %}, transformers' assistant-mask tag)
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Param {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;                  // kText
  ExprPtr expr;                      // output / for iterable / set value / filter chain
  ExprPtr cond;                      // for's `if`
  std::vector<ExprPtr> conds;        // if / elif conditions
  std::vector<Body> bodies;
  std::vector<std::string> targets;  // for / set names
  std::string attr;                  // set ns.attr
  std::string name;                  // macro
  std::vector<Param> params;         // macro
};

}  // namespace slim::jinja
