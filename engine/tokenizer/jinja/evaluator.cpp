// Jinja evaluator: statements (output, if, for with loop.*, set, namespace set, block set,
// macros, filter blocks, break/continue) and expressions with jinja2's undefined semantics.
#include "engine/tokenizer/jinja/evaluator.h"

#include <cmath>

namespace slim::jinja {
namespace {

constexpr int kMaxMacroDepth = 64;

Status RuntimeError(int line, const std::string& what) {
  return InvalidArgumentError("chat template: line " + std::to_string(line) + ": " + what);
}

Status TypeErr(int line, const std::string& op, const Value& a, const Value& b) {
  return RuntimeError(line, "unsupported operand type(s) for " + op + ": '" + a.TypeName() + "' and '" +
                                b.TypeName() + "'");
}

// Items a for-loop (or list filter) sees: list items, dict keys, string characters.
StatusOr<List> Iterate(const Value& v, int line) {
  List items;
  if (!IterItems(v, &items)) return RuntimeError(line, "'" + v.TypeName() + "' object is not iterable");
  return items;
}

}  // namespace

Status UndefinedError(const Value& v, int line) {
  return RuntimeError(line, v.undefined_name().empty() ? "value is undefined" : v.undefined_name());
}

Evaluator::Evaluator(Dict vars) {
  frames_.push_back(Frame{std::move(vars), false});
  outs_.emplace_back();
}

const Value* Evaluator::Lookup(const std::string& name) const {
  for (size_t i = frames_.size(); i-- > 0;) {
    if (const Value* v = frames_[i].vars.Find(name)) return v;
    if (frames_[i].barrier) return frames_[0].vars.Find(name);
  }
  return nullptr;
}

Status Evaluator::Exec(const Body& body) {
  for (const auto& s : body) {
    SLIM_RETURN_IF_ERROR(ExecStmt(*s));
    if (flow_ != Flow::kNormal) return OkStatus();
  }
  return OkStatus();
}

Status Evaluator::ExecStmt(const Stmt& s) {
  switch (s.kind) {
    case StmtKind::kText:
      outs_.back().Append(std::string_view(s.text));
      return OkStatus();
    case StmtKind::kOutput: {
      SLIM_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
      outs_.back().Append(v.ToStr());
      return OkStatus();
    }
    case StmtKind::kIf:
      for (size_t i = 0; i < s.conds.size(); ++i) {
        SLIM_ASSIGN_OR_RETURN(Value c, Eval(*s.conds[i]));
        if (c.Truthy()) return Exec(s.bodies[i]);
      }
      if (s.bodies.size() > s.conds.size()) return Exec(s.bodies.back());
      return OkStatus();
    case StmtKind::kFor: return ExecFor(s);
    case StmtKind::kSet: return ExecSet(s);
    case StmtKind::kSetBlock: {
      outs_.emplace_back();
      Status st = Exec(s.bodies[0]);
      Str captured = std::move(outs_.back());
      outs_.pop_back();
      SLIM_RETURN_IF_ERROR(st);
      Assign(s.targets[0], Value::String(std::move(captured)));
      return OkStatus();
    }
    case StmtKind::kMacro: return ExecMacroDef(s);
    case StmtKind::kBreak:
      flow_ = Flow::kBreak;
      return OkStatus();
    case StmtKind::kContinue:
      flow_ = Flow::kContinue;
      return OkStatus();
    case StmtKind::kFilterBlock: return ExecFilterBlock(s);
    case StmtKind::kBlock: return Exec(s.bodies[0]);
  }
  return OkStatus();
}

Status Evaluator::ExecFor(const Stmt& s) {
  SLIM_ASSIGN_OR_RETURN(Value seq, Eval(*s.expr));
  if (seq.is_none()) return RuntimeError(s.line, "'NoneType' object is not iterable");
  SLIM_ASSIGN_OR_RETURN(List all, Iterate(seq, s.line));
  frames_.push_back(Frame{});
  auto bind = [&](const Value& item) -> Status {
    if (s.targets.size() == 1) {
      Assign(s.targets[0], item);
      return OkStatus();
    }
    SLIM_ASSIGN_OR_RETURN(List parts, Iterate(item, s.line));
    if (parts.size() != s.targets.size()) {
      return RuntimeError(s.line, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                                      std::to_string(s.targets.size()) + " loop variables");
    }
    for (size_t k = 0; k < parts.size(); ++k) Assign(s.targets[k], parts[k]);
    return OkStatus();
  };
  List items;
  if (s.cond) {
    for (const Value& item : all) {
      Status st = bind(item);
      if (st.ok()) {
        auto keep = Eval(*s.cond);
        st = keep.status();
        if (st.ok() && keep->Truthy()) items.push_back(item);
      }
      if (!st.ok()) {
        frames_.pop_back();
        return st;
      }
    }
  } else {
    items = std::move(all);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  Status st;
  for (int64_t i = 0; i < n && st.ok(); ++i) {
    st = bind(items[static_cast<size_t>(i)]);
    if (!st.ok()) break;
    Dict loop;
    loop.Set("index", Value::Int(i + 1));
    loop.Set("index0", Value::Int(i));
    loop.Set("revindex", Value::Int(n - i));
    loop.Set("revindex0", Value::Int(n - i - 1));
    loop.Set("first", Value::Bool(i == 0));
    loop.Set("last", Value::Bool(i == n - 1));
    loop.Set("length", Value::Int(n));
    loop.Set("depth", Value::Int(1));
    loop.Set("depth0", Value::Int(0));
    loop.Set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::Undefined("'previtem' is undefined"));
    loop.Set("nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::Undefined("'nextitem' is undefined"));
    loop.Set("cycle", Value::Function("loop.cycle", [i](Evaluator&, CallArgs& a) -> StatusOr<Value> {
               if (a.args.empty()) return InvalidArgumentError("chat template: loop.cycle() needs arguments");
               return a.args[static_cast<size_t>(i) % a.args.size()];
             }));
    Assign("loop", Value::MakeDict(std::move(loop)));
    st = Exec(s.bodies[0]);
    if (flow_ == Flow::kBreak) {
      flow_ = Flow::kNormal;
      break;
    }
    flow_ = Flow::kNormal;
  }
  frames_.pop_back();
  SLIM_RETURN_IF_ERROR(st);
  if (n == 0 && s.bodies.size() > 1) return Exec(s.bodies[1]);
  return OkStatus();
}

Status Evaluator::ExecSet(const Stmt& s) {
  SLIM_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
  if (!s.attr.empty()) {
    const Value* ns = Lookup(s.targets[0]);
    if (ns == nullptr || ns->kind() != Kind::kNamespace) {
      return RuntimeError(s.line, "cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    }
    ns->mutable_namespace().Set(s.attr, std::move(v));
    return OkStatus();
  }
  if (s.targets.size() == 1) {
    Assign(s.targets[0], std::move(v));
    return OkStatus();
  }
  if (!v.is_list() || v.list().size() != s.targets.size()) {
    return RuntimeError(s.line, "cannot unpack a " + v.TypeName() + " into " + std::to_string(s.targets.size()) +
                                    " variables");
  }
  for (size_t k = 0; k < s.targets.size(); ++k) Assign(s.targets[k], v.list()[k]);
  return OkStatus();
}

Status Evaluator::ExecMacroDef(const Stmt& s) {
  const Stmt* m = &s;
  Assign(s.name, Value::Function(s.name, [m](Evaluator& ev, CallArgs& a) { return ev.CallMacro(*m, a); }));
  return OkStatus();
}

StatusOr<Value> Evaluator::CallMacro(const Stmt& m, CallArgs& args) {
  if (macro_depth_ >= kMaxMacroDepth) return RuntimeError(m.line, "macro '" + m.name + "' recursion is too deep");
  if (args.args.size() > m.params.size()) {
    return RuntimeError(m.line, "macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
                                    " argument(s)");
  }
  Frame f;
  f.barrier = true;
  frames_.push_back(std::move(f));
  Status st;
  for (size_t k = 0; k < m.params.size() && st.ok(); ++k) {
    const Param& p = m.params[k];
    const Value* given = args.Get(k, p.name);
    if (given != nullptr) {
      Assign(p.name, *given);
    } else if (p.default_value) {
      auto d = Eval(*p.default_value);
      st = d.status();
      if (st.ok()) Assign(p.name, *d);
    } else {
      Assign(p.name, Value::Undefined("'" + p.name + "' is undefined"));
    }
  }
  for (const auto& [name, v] : args.kwargs) {
    bool known = false;
    for (const Param& p : m.params) known = known || p.name == name;
    if (!known && st.ok()) st = RuntimeError(m.line, "macro '" + m.name + "' takes no keyword argument '" + name + "'");
  }
  outs_.emplace_back();
  ++macro_depth_;
  if (st.ok()) st = Exec(m.bodies[0]);
  --macro_depth_;
  flow_ = Flow::kNormal;
  Str out = std::move(outs_.back());
  outs_.pop_back();
  frames_.pop_back();
  SLIM_RETURN_IF_ERROR(st);
  return Value::String(std::move(out));
}

Status Evaluator::ExecFilterBlock(const Stmt& s) {
  outs_.emplace_back();
  Status st = Exec(s.bodies[0]);
  Str body = std::move(outs_.back());
  outs_.pop_back();
  SLIM_RETURN_IF_ERROR(st);
  frames_.push_back(Frame{});
  Assign("__body__", Value::String(std::move(body)));
  auto v = Eval(*s.expr);
  frames_.pop_back();
  SLIM_RETURN_IF_ERROR(v.status());
  outs_.back().Append(v->ToStr());
  return OkStatus();
}

Status Evaluator::EvalArgs(const Expr& e, size_t first, CallArgs* out) {
  for (size_t k = first; k < e.kids.size(); ++k) {
    SLIM_ASSIGN_OR_RETURN(Value v, Eval(*e.kids[k]));
    out->args.push_back(std::move(v));
  }
  for (const auto& [name, x] : e.kwargs) {
    SLIM_ASSIGN_OR_RETURN(Value v, Eval(*x));
    out->kwargs.emplace_back(name, std::move(v));
  }
  return OkStatus();
}

StatusOr<Value> Evaluator::Call(const Value& fn, CallArgs& args, int line) {
  if (fn.is_undefined()) return UndefinedError(fn, line);
  if (fn.kind() != Kind::kCallable) return RuntimeError(line, "'" + fn.TypeName() + "' object is not callable");
  auto r = fn.callable().fn(*this, args);
  if (!r.ok() && r.status().message().find("chat template: line") == std::string::npos) {
    const std::string m = r.status().message();
    const std::string tail = m.rfind("chat template: ", 0) == 0 ? m.substr(15) : m;
    return Status(r.status().code(), "chat template: line " + std::to_string(line) + ": " + tail);
  }
  return r;
}

StatusOr<Value> Evaluator::EvalArgsAndCall(const Expr& e) {
  SLIM_ASSIGN_OR_RETURN(Value fn, Eval(*e.kids[0]));
  CallArgs args;
  SLIM_RETURN_IF_ERROR(EvalArgs(e, 1, &args));
  return Call(fn, args, e.line);
}

StatusOr<Value> Evaluator::EvalSubscript(const Expr& e) {
  SLIM_ASSIGN_OR_RETURN(Value obj, Eval(*e.kids[0]));
  if (obj.is_undefined()) return UndefinedError(obj, e.line);
  if (e.kind == ExprKind::kGetAttr) {
    if (obj.kind() == Kind::kNamespace) {
      const Value* v = obj.dict().Find(e.name);
      return v ? *v : Value::Undefined("'Namespace' object has no attribute '" + e.name + "'");
    }
    return GetAttribute(obj, e.name);
  }
  if (e.kind == ExprKind::kGetItem) {
    SLIM_ASSIGN_OR_RETURN(Value key, Eval(*e.kids[1]));
    if (obj.is_dict() || obj.kind() == Kind::kNamespace) {
      const Value* v = obj.dict().Find(key);
      if (v) return *v;
      if (!key.is_string()) return Value::Undefined("'dict object' has no attribute " + key.Repr());
      return GetAttribute(obj, key.str().text);
    }
    if ((obj.is_list() || obj.is_string()) && key.kind() == Kind::kInt) {
      const int64_t n = obj.is_list() ? static_cast<int64_t>(obj.list().size())
                                      : static_cast<int64_t>(Utf8Length(obj.str().text));
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined(obj.TypeName() + " index out of range");
      if (obj.is_list()) return obj.list()[static_cast<size_t>(i)];
      const std::string& t = obj.str().text;
      return Value::String(obj.str().Sub(Utf8Offset(t, static_cast<size_t>(i)), Utf8Offset(t, static_cast<size_t>(i) + 1)));
    }
    if (key.is_string()) return GetAttribute(obj, key.str().text);
    return Value::Undefined("'" + obj.TypeName() + " object' has no attribute " + key.Repr());
  }
  // Slice [a:b:c] of a list or string, Python semantics.
  int64_t parts[3] = {0, 0, 1};
  bool given[3] = {false, false, false};
  for (int k = 0; k < 3; ++k) {
    if (!e.kids[static_cast<size_t>(k) + 1]) continue;
    SLIM_ASSIGN_OR_RETURN(Value p, Eval(*e.kids[static_cast<size_t>(k) + 1]));
    if (p.is_none()) continue;
    if (p.kind() != Kind::kInt) return RuntimeError(e.line, "slice indices must be integers");
    parts[k] = p.as_int();
    given[k] = true;
  }
  if (!obj.is_list() && !obj.is_string()) return RuntimeError(e.line, "'" + obj.TypeName() + "' object is not subscriptable");
  const int64_t step = parts[2];
  if (step == 0) return RuntimeError(e.line, "slice step cannot be zero");
  const int64_t n = obj.is_list() ? static_cast<int64_t>(obj.list().size()) : static_cast<int64_t>(Utf8Length(obj.str().text));
  auto clamp = [&](int64_t v, bool has, int64_t def) {
    if (!has) return def;
    if (v < 0) v += n;
    if (step > 0) return std::min(std::max<int64_t>(v, 0), n);
    return std::min(std::max<int64_t>(v, -1), n - 1);
  };
  const int64_t start = clamp(parts[0], given[0], step > 0 ? 0 : n - 1);
  const int64_t stop = clamp(parts[1], given[1], step > 0 ? n : -1);
  if (obj.is_string() && step == 1) {
    const std::string& t = obj.str().text;
    if (stop <= start) return Value::String(Str());
    return Value::String(obj.str().Sub(Utf8Offset(t, static_cast<size_t>(start)), Utf8Offset(t, static_cast<size_t>(stop))));
  }
  SLIM_ASSIGN_OR_RETURN(List items, Iterate(obj, e.line));
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(items[static_cast<size_t>(i)]);
  if (obj.is_list()) return Value::MakeList(std::move(out), obj.kind() == Kind::kTuple);
  Str s;
  for (const Value& c : out) s.Append(c.str());
  return Value::String(std::move(s));
}

StatusOr<Value> Evaluator::EvalBinary(const Expr& e) {
  SLIM_ASSIGN_OR_RETURN(Value a, Eval(*e.kids[0]));
  const std::string& op = e.name;
  if (op == "and") return a.Truthy() ? Eval(*e.kids[1]) : a;
  if (op == "or") return a.Truthy() ? a : Eval(*e.kids[1]);
  SLIM_ASSIGN_OR_RETURN(Value b, Eval(*e.kids[1]));
  if (op == "~") {
    Str s = a.ToStr();
    s.Append(b.ToStr());
    return Value::String(std::move(s));
  }
  if (a.is_undefined()) return UndefinedError(a, e.line);
  if (b.is_undefined()) return UndefinedError(b, e.line);
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      Str s = a.str();
      s.Append(b.str());
      return Value::String(std::move(s));
    }
    if (a.is_list() && b.is_list() && a.kind() == b.kind()) {
      List l = a.list();
      l.insert(l.end(), b.list().begin(), b.list().end());
      return Value::MakeList(std::move(l), a.kind() == Kind::kTuple);
    }
  }
  if (op == "*" && ((a.is_string() && b.kind() == Kind::kInt) || (a.kind() == Kind::kInt && b.is_string()))) {
    const Value& s = a.is_string() ? a : b;
    const int64_t times = (a.is_string() ? b : a).as_int();
    if (times > 0 && s.str().text.size() * static_cast<size_t>(times) > (size_t{64} << 20)) {
      return RuntimeError(e.line, "string repetition over 64 MiB");
    }
    Str out;
    for (int64_t k = 0; k < (a.is_string() ? b : a).as_int(); ++k) out.Append(s.str());
    return Value::String(std::move(out));
  }
  if (op == "%" && a.is_string()) return UnimplementedError("chat template: unsupported printf-style '%' string formatting");
  if (!a.is_number() || !b.is_number()) return TypeErr(e.line, op, a, b);
  const bool ints = a.kind() != Kind::kFloat && b.kind() != Kind::kFloat;
  const double x = a.as_float(), y = b.as_float();
  if (op == "/") {
    if (y == 0) return RuntimeError(e.line, "division by zero");
    return Value::Float(x / y);
  }
  if ((op == "//" || op == "%") && y == 0) return RuntimeError(e.line, "integer division or modulo by zero");
  if (ints) {
    const int64_t i = a.as_int(), j = b.as_int();
    if (op == "+") return Value::Int(i + j);
    if (op == "-") return Value::Int(i - j);
    if (op == "*") return Value::Int(i * j);
    if (op == "//") return Value::Int(static_cast<int64_t>(std::floor(static_cast<double>(i) / static_cast<double>(j))));
    if (op == "%") return Value::Int(((i % j) + j) % j);
    if (op == "**" && j >= 0) return Value::Int(static_cast<int64_t>(std::pow(static_cast<double>(i), static_cast<double>(j))));
  }
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "//") return Value::Float(std::floor(x / y));
  if (op == "%") return Value::Float(x - y * std::floor(x / y));
  if (op == "**") return Value::Float(std::pow(x, y));
  return TypeErr(e.line, op, a, b);
}

StatusOr<Value> Evaluator::EvalCompare(const Expr& e) {
  SLIM_ASSIGN_OR_RETURN(Value left, Eval(*e.kids[0]));
  for (size_t k = 0; k < e.ops.size(); ++k) {
    SLIM_ASSIGN_OR_RETURN(Value right, Eval(*e.kids[k + 1]));
    const std::string& op = e.ops[k];
    bool r = false;
    if (op == "==" || op == "!=") {
      r = Equal(left, right) == (op == "==");
    } else if (op == "in" || op == "notin") {
      bool found = false;
      if (right.is_string()) {
        if (!left.is_string()) {
          return RuntimeError(e.line, "'in <string>' requires string as left operand, not " + left.TypeName());
        }
        found = right.str().text.find(left.str().text) != std::string::npos;
      } else if (right.is_dict() || right.kind() == Kind::kNamespace) {
        found = right.dict().Find(left) != nullptr;
      } else if (right.is_list()) {
        for (const Value& x : right.list()) found = found || Equal(left, x);
      } else if (!right.is_undefined()) {
        return RuntimeError(e.line, "argument of type '" + right.TypeName() + "' is not iterable");
      }
      r = found == (op == "in");
    } else {
      if (left.is_undefined()) return UndefinedError(left, e.line);
      if (right.is_undefined()) return UndefinedError(right, e.line);
      auto c = Compare(left, right);
      if (!c.ok()) return RuntimeError(e.line, c.status().message().substr(15));
      r = op == "<" ? *c < 0 : op == "<=" ? *c <= 0 : op == ">" ? *c > 0 : *c >= 0;
    }
    if (!r) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

StatusOr<Value> Evaluator::Eval(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kLiteral: return e.value;
    case ExprKind::kName: {
      const Value* v = Lookup(e.name);
      return v ? *v : Value::Undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      List items;
      for (const auto& k : e.kids) {
        SLIM_ASSIGN_OR_RETURN(Value v, Eval(*k));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      Dict d;
      for (size_t k = 0; k + 1 < e.kids.size(); k += 2) {
        SLIM_ASSIGN_OR_RETURN(Value key, Eval(*e.kids[k]));
        if (!key.is_string() && !key.is_number() && !key.is_none()) {
          return UnimplementedError("chat template: unsupported dict key of type " + key.TypeName());
        }
        SLIM_ASSIGN_OR_RETURN(Value v, Eval(*e.kids[k + 1]));
        d.Set(key, std::move(v));
      }
      return Value::MakeDict(std::move(d));
    }
    case ExprKind::kGetAttr:
    case ExprKind::kGetItem:
    case ExprKind::kSlice: return EvalSubscript(e);
    case ExprKind::kCall: return EvalArgsAndCall(e);
    case ExprKind::kFilter: {
      if (e.unknown) return UnimplementedError("chat template: unsupported filter '" + e.name + "'");
      SLIM_ASSIGN_OR_RETURN(Value v, Eval(*e.kids[0]));
      CallArgs args;
      SLIM_RETURN_IF_ERROR(EvalArgs(e, 1, &args));
      auto r = ApplyFilter(*this, e.name, v, args);
      if (!r.ok() && r.status().message().find("chat template: line") == std::string::npos) {
        return Status(r.status().code(), "chat template: line " + std::to_string(e.line) + ": " +
                                             r.status().message().substr(r.status().message().rfind("chat template: ", 0) == 0 ? 15 : 0));
      }
      return r;
    }
    case ExprKind::kTest: {
      if (e.unknown) return UnimplementedError("chat template: unsupported test '" + e.name + "'");
      SLIM_ASSIGN_OR_RETURN(Value v, Eval(*e.kids[0]));
      CallArgs args;
      SLIM_RETURN_IF_ERROR(EvalArgs(e, 1, &args));
      SLIM_ASSIGN_OR_RETURN(bool r, ApplyTest(*this, e.name, v, args));
      return Value::Bool(r != e.negated);
    }
    case ExprKind::kUnary: {
      SLIM_ASSIGN_OR_RETURN(Value v, Eval(*e.kids[0]));
      if (e.name == "not") return Value::Bool(!v.Truthy());
      if (v.is_undefined()) return UndefinedError(v, e.line);
      if (!v.is_number()) return RuntimeError(e.line, "bad operand type for unary " + e.name + ": '" + v.TypeName() + "'");
      if (e.name == "+") return v.kind() == Kind::kFloat ? v : Value::Int(v.as_int());
      return v.kind() == Kind::kFloat ? Value::Float(-v.as_float()) : Value::Int(-v.as_int());
    }
    case ExprKind::kBinary: return EvalBinary(e);
    case ExprKind::kCompare: return EvalCompare(e);
    case ExprKind::kCond: {
      SLIM_ASSIGN_OR_RETURN(Value c, Eval(*e.kids[0]));
      if (c.Truthy()) return Eval(*e.kids[1]);
      if (e.kids[2]) return Eval(*e.kids[2]);
      return Value::Undefined("the inline if's condition was false and it has no else");
    }
  }
  return InternalError("chat template: unknown expression");
}

}  // namespace slim::jinja
