// Jinja parser: recursive descent in jinja2's precedence order (condexpr, or, and, not,
// compare, + -, ~, * / // %, **, unary, primary with postfix, filters and tests).
#include "engine/tokenizer/jinja/parser.h"

#include <set>

#include "engine/tokenizer/jinja/filters.h"

namespace slim::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  StatusOr<Body> Template() {
    std::string end;
    SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({}, &end));
    return b;
  }

 private:
  const Token& Cur() const { return t_[pos_]; }
  const Token& Peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  bool IsOp(std::string_view op) const { return Cur().type == Tok::kOp && Cur().value == op; }
  bool IsName(std::string_view n) const { return Cur().type == Tok::kName && Cur().value == n; }
  Status Err(const std::string& what) const {
    return InvalidArgumentError("chat template: line " + std::to_string(Cur().line) + ": " + what);
  }
  Status Expect(Tok type, std::string_view value, const char* what) {
    if (Cur().type != type || (!value.empty() && Cur().value != value)) {
      return Err(std::string("expected ") + what + ", got '" + Describe(Cur()) + "'");
    }
    ++pos_;
    return OkStatus();
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Tok::kEof: return "end of template";
      case Tok::kBlockEnd: return "%}";
      case Tok::kVarEnd: return "}}";
      case Tok::kText: return "text";
      default: return t.value;
    }
  }
  ExprPtr Node(ExprKind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = Cur().line;
    return e;
  }

  StatusOr<Body> ParseBody(const std::set<std::string>& ends, std::string* end);
  Status ParseStatement(Body* body, const std::string& tag);
  StatusOr<std::unique_ptr<Stmt>> ParseIf();
  StatusOr<std::unique_ptr<Stmt>> ParseFor();
  StatusOr<std::unique_ptr<Stmt>> ParseSet();
  StatusOr<std::unique_ptr<Stmt>> ParseMacro();
  StatusOr<std::unique_ptr<Stmt>> ParseFilterBlock();
  StatusOr<std::vector<std::string>> ParseTargets();

  StatusOr<ExprPtr> Tuple(bool with_cond);
  StatusOr<ExprPtr> Expression(bool with_cond = true);
  StatusOr<ExprPtr> Or();
  StatusOr<ExprPtr> And();
  StatusOr<ExprPtr> Not();
  StatusOr<ExprPtr> Compare();
  StatusOr<ExprPtr> Math1();
  StatusOr<ExprPtr> Concat();
  StatusOr<ExprPtr> Math2();
  StatusOr<ExprPtr> Pow();
  StatusOr<ExprPtr> Unary(bool with_filter);
  StatusOr<ExprPtr> Primary();
  StatusOr<ExprPtr> Postfix(ExprPtr e);
  StatusOr<ExprPtr> FilterExpr(ExprPtr e);
  // `| name(args)`; `pipe` false: the name without the bar ({% filter name %}).
  StatusOr<ExprPtr> Filter(ExprPtr e, bool pipe = true);
  Status CallArgsInto(Expr* e);

  const std::vector<Token>& t_;
  size_t pos_ = 0;
  int if_depth_ = 0;  // unknown filters/tests inside an {% if %} fail only when run, as in jinja2
  int depth_ = 0;     // nesting of expressions and blocks, bounded so the stack is
};

constexpr int kMaxDepth = 200;

// Counts one level of nesting for its scope.
class DepthGuard {
 public:
  explicit DepthGuard(int* d) : d_(d) { ++*d_; }
  ~DepthGuard() { --*d_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int* d_;
};

StatusOr<Body> Parser::ParseBody(const std::set<std::string>& ends, std::string* end) {
  DepthGuard guard(&depth_);
  if (depth_ > kMaxDepth) return Err("blocks nested too deeply");
  Body body;
  while (true) {
    const Token& tok = Cur();
    if (tok.type == Tok::kEof) {
      if (ends.empty()) return body;
      return Err("unexpected end of template, expected '" + *ends.begin() + "'");
    }
    if (tok.type == Tok::kText) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kText;
      s->line = tok.line;
      s->text = tok.value;
      body.push_back(std::move(s));
      ++pos_;
    } else if (tok.type == Tok::kVarBegin) {
      ++pos_;
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kOutput;
      s->line = tok.line;
      SLIM_ASSIGN_OR_RETURN(s->expr, Tuple(true));
      SLIM_RETURN_IF_ERROR(Expect(Tok::kVarEnd, "", "'}}'"));
      body.push_back(std::move(s));
    } else if (tok.type == Tok::kBlockBegin) {
      ++pos_;
      if (Cur().type != Tok::kName) return Err("expected a tag name after {%");
      const std::string tag = Cur().value;
      if (ends.count(tag)) {
        ++pos_;
        *end = tag;
        return body;
      }
      ++pos_;
      SLIM_RETURN_IF_ERROR(ParseStatement(&body, tag));
    } else {
      return Err("unexpected '" + Describe(tok) + "'");
    }
  }
}

Status Parser::ParseStatement(Body* body, const std::string& tag) {
  std::unique_ptr<Stmt> s;
  if (tag == "if") {
    SLIM_ASSIGN_OR_RETURN(s, ParseIf());
  } else if (tag == "for") {
    SLIM_ASSIGN_OR_RETURN(s, ParseFor());
  } else if (tag == "set") {
    SLIM_ASSIGN_OR_RETURN(s, ParseSet());
  } else if (tag == "macro") {
    SLIM_ASSIGN_OR_RETURN(s, ParseMacro());
  } else if (tag == "filter") {
    SLIM_ASSIGN_OR_RETURN(s, ParseFilterBlock());
  } else if (tag == "break" || tag == "continue") {
    s = std::make_unique<Stmt>();
    s->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  } else if (tag == "generation") {
    s = std::make_unique<Stmt>();
    s->kind = StmtKind::kBlock;
    SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
    std::string end;
    SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({"endgeneration"}, &end));
    s->bodies.push_back(std::move(b));
    SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  } else if (tag == "include" || tag == "import" || tag == "from" || tag == "extends" || tag == "block" ||
             tag == "call" || tag == "with" || tag == "autoescape" || tag == "do") {
    return UnimplementedError("chat template: unsupported tag '" + tag + "' (line " + std::to_string(Cur().line) + ")");
  } else {
    return Err("unknown tag '" + tag + "'");
  }
  body->push_back(std::move(s));
  return OkStatus();
}

StatusOr<std::unique_ptr<Stmt>> Parser::ParseIf() {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kIf;
  s->line = Cur().line;
  ++if_depth_;
  while (true) {
    SLIM_ASSIGN_OR_RETURN(ExprPtr c, Tuple(false));
    s->conds.push_back(std::move(c));
    SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
    std::string end;
    SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({"elif", "else", "endif"}, &end));
    s->bodies.push_back(std::move(b));
    if (end == "elif") continue;
    if (end == "else") {
      SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
      SLIM_ASSIGN_OR_RETURN(Body eb, ParseBody({"endif"}, &end));
      s->bodies.push_back(std::move(eb));
    }
    break;
  }
  --if_depth_;
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  return s;
}

StatusOr<std::vector<std::string>> Parser::ParseTargets() {
  std::vector<std::string> names;
  const bool paren = IsOp("(");
  if (paren) ++pos_;
  while (true) {
    if (Cur().type != Tok::kName) return Err("expected a variable name, got '" + Describe(Cur()) + "'");
    names.push_back(Cur().value);
    ++pos_;
    if (!IsOp(",")) break;
    ++pos_;
  }
  if (paren) SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, ")", "')'"));
  return names;
}

StatusOr<std::unique_ptr<Stmt>> Parser::ParseFor() {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kFor;
  s->line = Cur().line;
  SLIM_ASSIGN_OR_RETURN(s->targets, ParseTargets());
  SLIM_RETURN_IF_ERROR(Expect(Tok::kName, "in", "'in'"));
  SLIM_ASSIGN_OR_RETURN(s->expr, Tuple(false));
  if (IsName("if")) {
    ++pos_;
    SLIM_ASSIGN_OR_RETURN(s->cond, Expression());
  }
  if (IsName("recursive")) return UnimplementedError("chat template: unsupported recursive for loop");
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  std::string end;
  SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({"else", "endfor"}, &end));
  s->bodies.push_back(std::move(b));
  if (end == "else") {
    SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
    SLIM_ASSIGN_OR_RETURN(Body eb, ParseBody({"endfor"}, &end));
    s->bodies.push_back(std::move(eb));
  }
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  return s;
}

StatusOr<std::unique_ptr<Stmt>> Parser::ParseSet() {
  auto s = std::make_unique<Stmt>();
  s->line = Cur().line;
  if (Cur().type == Tok::kName && Peek().type == Tok::kOp && Peek().value == ".") {
    s->targets.push_back(Cur().value);
    pos_ += 2;
    if (Cur().type != Tok::kName) return Err("expected an attribute name after '.'");
    s->attr = Cur().value;
    ++pos_;
  } else {
    SLIM_ASSIGN_OR_RETURN(s->targets, ParseTargets());
  }
  if (IsOp("=")) {
    ++pos_;
    s->kind = StmtKind::kSet;
    SLIM_ASSIGN_OR_RETURN(s->expr, Tuple(true));
    SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
    return s;
  }
  if (!s->attr.empty() || s->targets.size() != 1) return Err("a block set takes one variable name");
  s->kind = StmtKind::kSetBlock;
  if (IsOp("|")) return UnimplementedError("chat template: unsupported filter on a block set");
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  std::string end;
  SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({"endset"}, &end));
  s->bodies.push_back(std::move(b));
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  return s;
}

StatusOr<std::unique_ptr<Stmt>> Parser::ParseMacro() {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kMacro;
  s->line = Cur().line;
  if (Cur().type != Tok::kName) return Err("expected a macro name");
  s->name = Cur().value;
  ++pos_;
  SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, "(", "'('"));
  while (!IsOp(")")) {
    if (Cur().type != Tok::kName) return Err("expected a macro parameter name");
    Param p;
    p.name = Cur().value;
    ++pos_;
    if (IsOp("=")) {
      ++pos_;
      SLIM_ASSIGN_OR_RETURN(p.default_value, Expression());
    }
    s->params.push_back(std::move(p));
    if (!IsOp(",")) break;
    ++pos_;
  }
  SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, ")", "')'"));
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  std::string end;
  SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({"endmacro"}, &end));
  s->bodies.push_back(std::move(b));
  if (Cur().type == Tok::kName) ++pos_;  // {% endmacro name %}
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  return s;
}

StatusOr<std::unique_ptr<Stmt>> Parser::ParseFilterBlock() {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kFilterBlock;
  s->line = Cur().line;
  auto body = Node(ExprKind::kName);
  body->name = "__body__";
  SLIM_ASSIGN_OR_RETURN(s->expr, Filter(std::move(body), /*pipe=*/false));
  while (IsOp("|")) {
    SLIM_ASSIGN_OR_RETURN(s->expr, Filter(std::move(s->expr)));
  }
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  std::string end;
  SLIM_ASSIGN_OR_RETURN(Body b, ParseBody({"endfilter"}, &end));
  s->bodies.push_back(std::move(b));
  SLIM_RETURN_IF_ERROR(Expect(Tok::kBlockEnd, "", "'%}'"));
  return s;
}

StatusOr<ExprPtr> Parser::Tuple(bool with_cond) {
  SLIM_ASSIGN_OR_RETURN(ExprPtr first, Expression(with_cond));
  if (!IsOp(",")) return first;
  auto t = Node(ExprKind::kTuple);
  t->kids.push_back(std::move(first));
  while (IsOp(",")) {
    ++pos_;
    if (Cur().type == Tok::kBlockEnd || Cur().type == Tok::kVarEnd || IsOp(")")) break;
    SLIM_ASSIGN_OR_RETURN(ExprPtr e, Expression(with_cond));
    t->kids.push_back(std::move(e));
  }
  return t;
}

StatusOr<ExprPtr> Parser::Expression(bool with_cond) {
  DepthGuard guard(&depth_);
  if (depth_ > kMaxDepth) return Err("expression nested too deeply");
  SLIM_ASSIGN_OR_RETURN(ExprPtr e, Or());
  if (!with_cond) return e;
  while (IsName("if")) {
    ++pos_;
    auto c = Node(ExprKind::kCond);
    SLIM_ASSIGN_OR_RETURN(ExprPtr test, Or());
    ExprPtr otherwise;
    if (IsName("else")) {
      ++pos_;
      SLIM_ASSIGN_OR_RETURN(otherwise, Expression());
    }
    c->kids.push_back(std::move(test));
    c->kids.push_back(std::move(e));
    c->kids.push_back(std::move(otherwise));
    e = std::move(c);
  }
  return e;
}

StatusOr<ExprPtr> Parser::Or() {
  SLIM_ASSIGN_OR_RETURN(ExprPtr l, And());
  while (IsName("or")) {
    ++pos_;
    auto b = Node(ExprKind::kBinary);
    b->name = "or";
    SLIM_ASSIGN_OR_RETURN(ExprPtr r, And());
    b->kids.push_back(std::move(l));
    b->kids.push_back(std::move(r));
    l = std::move(b);
  }
  return l;
}

StatusOr<ExprPtr> Parser::And() {
  SLIM_ASSIGN_OR_RETURN(ExprPtr l, Not());
  while (IsName("and")) {
    ++pos_;
    auto b = Node(ExprKind::kBinary);
    b->name = "and";
    SLIM_ASSIGN_OR_RETURN(ExprPtr r, Not());
    b->kids.push_back(std::move(l));
    b->kids.push_back(std::move(r));
    l = std::move(b);
  }
  return l;
}

StatusOr<ExprPtr> Parser::Not() {
  DepthGuard guard(&depth_);
  if (depth_ > kMaxDepth) return Err("expression nested too deeply");
  if (IsName("not")) {
    ++pos_;
    auto u = Node(ExprKind::kUnary);
    u->name = "not";
    SLIM_ASSIGN_OR_RETURN(ExprPtr x, Not());
    u->kids.push_back(std::move(x));
    return u;
  }
  return Compare();
}

StatusOr<ExprPtr> Parser::Compare() {
  SLIM_ASSIGN_OR_RETURN(ExprPtr l, Math1());
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (Cur().type == Tok::kOp && (Cur().value == "==" || Cur().value == "!=" || Cur().value == "<" ||
                                   Cur().value == "<=" || Cur().value == ">" || Cur().value == ">=")) {
      op = Cur().value;
      ++pos_;
    } else if (IsName("in")) {
      op = "in";
      ++pos_;
    } else if (IsName("not") && Peek().type == Tok::kName && Peek().value == "in") {
      op = "notin";
      pos_ += 2;
    } else {
      break;
    }
    if (!cmp) {
      cmp = Node(ExprKind::kCompare);
      cmp->kids.push_back(std::move(l));
    }
    SLIM_ASSIGN_OR_RETURN(ExprPtr r, Math1());
    cmp->ops.push_back(op);
    cmp->kids.push_back(std::move(r));
  }
  return cmp ? std::move(cmp) : std::move(l);
}

#define SLIM_JINJA_BINARY_LEVEL(Fn, Next, ...)                                    \
  StatusOr<ExprPtr> Parser::Fn() {                                                \
    SLIM_ASSIGN_OR_RETURN(ExprPtr l, Next);                                       \
    while (Cur().type == Tok::kOp) {                                              \
      const std::string op = Cur().value;                                         \
      bool match = false;                                                         \
      for (const char* o : {__VA_ARGS__}) match = match || op == o;               \
      if (!match) break;                                                          \
      ++pos_;                                                                     \
      auto b = Node(ExprKind::kBinary);                                           \
      b->name = op;                                                               \
      SLIM_ASSIGN_OR_RETURN(ExprPtr r, Next);                                     \
      b->kids.push_back(std::move(l));                                            \
      b->kids.push_back(std::move(r));                                            \
      l = std::move(b);                                                           \
    }                                                                             \
    return l;                                                                     \
  }

SLIM_JINJA_BINARY_LEVEL(Math1, Concat(), "+", "-")
SLIM_JINJA_BINARY_LEVEL(Concat, Math2(), "~")
SLIM_JINJA_BINARY_LEVEL(Math2, Pow(), "*", "/", "//", "%")
SLIM_JINJA_BINARY_LEVEL(Pow, Unary(true), "**")
#undef SLIM_JINJA_BINARY_LEVEL

StatusOr<ExprPtr> Parser::Unary(bool with_filter) {
  DepthGuard guard(&depth_);
  if (depth_ > kMaxDepth) return Err("expression nested too deeply");
  ExprPtr e;
  if (IsOp("-") || IsOp("+")) {
    auto u = Node(ExprKind::kUnary);
    u->name = Cur().value;
    ++pos_;
    SLIM_ASSIGN_OR_RETURN(ExprPtr x, Unary(false));
    u->kids.push_back(std::move(x));
    e = std::move(u);
  } else {
    SLIM_ASSIGN_OR_RETURN(e, Primary());
  }
  SLIM_ASSIGN_OR_RETURN(e, Postfix(std::move(e)));
  if (with_filter) {
    SLIM_ASSIGN_OR_RETURN(e, FilterExpr(std::move(e)));
  }
  return e;
}

StatusOr<ExprPtr> Parser::Primary() {
  const Token& tok = Cur();
  if (tok.type == Tok::kName) {
    auto e = Node(ExprKind::kLiteral);
    ++pos_;
    if (tok.value == "true" || tok.value == "True") {
      e->value = Value::Bool(true);
    } else if (tok.value == "false" || tok.value == "False") {
      e->value = Value::Bool(false);
    } else if (tok.value == "none" || tok.value == "None") {
      e->value = Value::None();
    } else {
      e->kind = ExprKind::kName;
      e->name = tok.value;
    }
    return e;
  }
  if (tok.type == Tok::kString) {
    auto e = Node(ExprKind::kLiteral);
    std::string s;
    while (Cur().type == Tok::kString) s += t_[pos_++].value;  // adjacent literals concatenate
    e->value = Value::String(Str(std::move(s)));
    return e;
  }
  if (tok.type == Tok::kInt || tok.type == Tok::kFloat) {
    auto e = Node(ExprKind::kLiteral);
    try {
      e->value = tok.type == Tok::kInt ? Value::Int(std::stoll(tok.value)) : Value::Float(std::stod(tok.value));
    } catch (const std::exception&) {
      return Err("number out of range: " + tok.value);
    }
    ++pos_;
    return e;
  }
  if (IsOp("(")) {
    ++pos_;
    if (IsOp(")")) {
      ++pos_;
      return Node(ExprKind::kTuple);
    }
    SLIM_ASSIGN_OR_RETURN(ExprPtr e, Tuple(true));
    SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, ")", "')'"));
    return e;
  }
  if (IsOp("[") || IsOp("{")) {
    const bool is_dict = IsOp("{");
    auto e = Node(is_dict ? ExprKind::kDict : ExprKind::kList);
    ++pos_;
    const char* close = is_dict ? "}" : "]";
    while (!IsOp(close)) {
      SLIM_ASSIGN_OR_RETURN(ExprPtr item, Expression());
      e->kids.push_back(std::move(item));
      if (is_dict) {
        SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, ":", "':'"));
        SLIM_ASSIGN_OR_RETURN(ExprPtr v, Expression());
        e->kids.push_back(std::move(v));
      }
      if (!IsOp(",")) break;
      ++pos_;
    }
    SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, close, is_dict ? "'}'" : "']'"));
    return e;
  }
  return Err("unexpected '" + Describe(tok) + "'");
}

Status Parser::CallArgsInto(Expr* e) {
  SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, "(", "'('"));
  while (!IsOp(")")) {
    if (IsOp("*") || IsOp("**")) return UnimplementedError("chat template: unsupported *args/**kwargs in a call");
    if (Cur().type == Tok::kName && Peek().type == Tok::kOp && Peek().value == "=") {
      std::string name = Cur().value;
      pos_ += 2;
      SLIM_ASSIGN_OR_RETURN(ExprPtr v, Expression());
      e->kwargs.emplace_back(std::move(name), std::move(v));
    } else {
      SLIM_ASSIGN_OR_RETURN(ExprPtr v, Expression());
      e->kids.push_back(std::move(v));
    }
    if (!IsOp(",")) break;
    ++pos_;
  }
  return Expect(Tok::kOp, ")", "')'");
}

StatusOr<ExprPtr> Parser::Postfix(ExprPtr e) {
  while (true) {
    if (IsOp(".")) {
      ++pos_;
      auto a = Node(ExprKind::kGetAttr);
      if (Cur().type == Tok::kName) {
        a->name = Cur().value;
      } else if (Cur().type == Tok::kInt) {
        a->kind = ExprKind::kGetItem;  // x.0 is x[0]
        if (Cur().value.size() > 18) return Err("index out of range: " + Cur().value);
        auto idx = Node(ExprKind::kLiteral);
        idx->value = Value::Int(std::stoll(Cur().value));
        a->kids.push_back(std::move(e));
        a->kids.push_back(std::move(idx));
        ++pos_;
        e = std::move(a);
        continue;
      } else {
        return Err("expected an attribute name after '.'");
      }
      ++pos_;
      a->kids.push_back(std::move(e));
      e = std::move(a);
    } else if (IsOp("[")) {
      ++pos_;
      ExprPtr parts[3];
      int n = 0;
      bool slice = false;
      while (true) {
        if (IsOp(":")) {
          slice = true;
          ++pos_;
          if (++n > 2) return Err("too many ':' in a slice");
          continue;
        }
        if (IsOp("]")) break;
        SLIM_ASSIGN_OR_RETURN(parts[n], Expression());
        if (!IsOp(":")) break;
      }
      SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, "]", "']'"));
      auto g = Node(slice ? ExprKind::kSlice : ExprKind::kGetItem);
      g->kids.push_back(std::move(e));
      if (!slice && !parts[0]) return Err("empty subscript");
      for (int k = 0; k < (slice ? 3 : 1); ++k) g->kids.push_back(std::move(parts[k]));
      e = std::move(g);
    } else if (IsOp("(")) {
      auto c = Node(ExprKind::kCall);
      c->kids.push_back(std::move(e));
      SLIM_RETURN_IF_ERROR(CallArgsInto(c.get()));
      e = std::move(c);
    } else {
      return e;
    }
  }
}

StatusOr<ExprPtr> Parser::Filter(ExprPtr e, bool pipe) {
  if (pipe) SLIM_RETURN_IF_ERROR(Expect(Tok::kOp, "|", "'|'"));
  if (Cur().type != Tok::kName) return Err("expected a filter name after '|'");
  auto f = Node(ExprKind::kFilter);
  f->name = Cur().value;
  ++pos_;
  if (!HasFilter(f->name)) {
    if (if_depth_ == 0) return UnimplementedError("chat template: unsupported filter '" + f->name + "'");
    f->unknown = true;
  }
  f->kids.push_back(std::move(e));
  if (IsOp("(")) SLIM_RETURN_IF_ERROR(CallArgsInto(f.get()));
  return f;
}

StatusOr<ExprPtr> Parser::FilterExpr(ExprPtr e) {
  while (true) {
    if (IsOp("|")) {
      SLIM_ASSIGN_OR_RETURN(e, Filter(std::move(e)));
    } else if (IsName("is")) {
      ++pos_;
      auto t = Node(ExprKind::kTest);
      if (IsName("not")) {
        t->negated = true;
        ++pos_;
      }
      if (Cur().type != Tok::kName) return Err("expected a test name after 'is'");
      t->name = Cur().value;
      ++pos_;
      if (!HasTest(t->name)) {
        if (if_depth_ == 0) return UnimplementedError("chat template: unsupported test '" + t->name + "'");
        t->unknown = true;
      }
      t->kids.push_back(std::move(e));
      if (IsOp("(")) {
        SLIM_RETURN_IF_ERROR(CallArgsInto(t.get()));
      } else if ((Cur().type == Tok::kName || Cur().type == Tok::kString || Cur().type == Tok::kInt ||
                  Cur().type == Tok::kFloat || IsOp("[") || IsOp("{")) &&
                 !IsName("else") && !IsName("or") && !IsName("and")) {
        SLIM_ASSIGN_OR_RETURN(ExprPtr arg, Primary());
        SLIM_ASSIGN_OR_RETURN(arg, Postfix(std::move(arg)));
        t->kids.push_back(std::move(arg));
      }
      e = std::move(t);
    } else if (IsOp("(")) {
      auto c = Node(ExprKind::kCall);
      c->kids.push_back(std::move(e));
      SLIM_RETURN_IF_ERROR(CallArgsInto(c.get()));
      e = std::move(c);
    } else {
      return e;
    }
  }
}

}  // namespace

StatusOr<Body> Parse(const std::vector<Token>& tokens) {
  Parser p(tokens);
  return p.Template();
}

}  // namespace slim::jinja
