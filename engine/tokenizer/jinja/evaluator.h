// Jinja evaluator: runs a parsed template against variables, writing a provenance-carrying
// string (Str). jinja2 semantics: undefined prints "" and fails on attribute access, for-loops
// and macros open scopes, if-blocks do not. One Evaluator per render; not thread-safe.
#pragma once

#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/jinja/ast.h"
#include "engine/tokenizer/jinja/filters.h"
#include "engine/tokenizer/jinja/value.h"

namespace slim::jinja {

class Evaluator {
 public:
  // `vars`: the render's variables over the globals (AddGlobals).
  explicit Evaluator(Dict vars);

  // Runs the template; the output is in Output().
  Status Exec(const Body& body);
  const Str& Output() const { return outs_.front(); }

  StatusOr<Value> Eval(const Expr& e);
  // Calls a macro, global function or bound method.
  StatusOr<Value> Call(const Value& fn, CallArgs& args, int line);
  // Runs a {% macro %} body with its parameters bound; the value is the text it wrote.
  StatusOr<Value> CallMacro(const Stmt& macro, CallArgs& args);

 private:
  struct Frame {
    Dict vars;
    bool barrier = false;  // a macro's frame: names above it resolve in the template's top frame
  };
  enum class Flow { kNormal, kBreak, kContinue };

  const Value* Lookup(const std::string& name) const;
  void Assign(const std::string& name, Value v) { frames_.back().vars.Set(name, std::move(v)); }
  Status ExecStmt(const Stmt& s);
  Status ExecFor(const Stmt& s);
  Status ExecSet(const Stmt& s);
  Status ExecMacroDef(const Stmt& s);
  Status ExecFilterBlock(const Stmt& s);
  StatusOr<Value> EvalBinary(const Expr& e);
  StatusOr<Value> EvalCompare(const Expr& e);
  StatusOr<Value> EvalSubscript(const Expr& e);
  StatusOr<Value> EvalArgsAndCall(const Expr& e);
  Status EvalArgs(const Expr& e, size_t first, CallArgs* out);

  std::vector<Frame> frames_;
  std::vector<Str> outs_;  // output buffers: the render's, then macro / block-set captures
  Flow flow_ = Flow::kNormal;
  int macro_depth_ = 0;
};

// Error when a value that jinja2 would leave Undefined is used as an object.
Status UndefinedError(const Value& v, int line);

}  // namespace slim::jinja
