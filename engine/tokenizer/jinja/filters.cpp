// Jinja filters and tests as jinja2 3.x defines them (tojson as transformers overrides it).
#include "engine/tokenizer/jinja/filters.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "engine/tokenizer/jinja/evaluator.h"

namespace slim::jinja {
namespace {

Status Fail(const std::string& what) { return InvalidArgumentError("chat template: " + what); }

const std::set<std::string, std::less<>>& FilterNames() {
  static const std::set<std::string, std::less<>> k = {
      "abs", "batch", "capitalize", "count", "d", "default", "dictsort", "first", "float", "indent", "int",
      "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
      "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "title", "tojson",
      "trim", "unique", "upper", "wordcount"};
  return k;
}

const std::set<std::string, std::less<>>& TestNames() {
  static const std::set<std::string, std::less<>> k = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge", "gt",
      "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas",
      "sequence", "string", "true", "undefined", "upper"};
  return k;
}


// Items of a list-like value (lists, dict keys, string characters), as for-loops see them.
StatusOr<List> Items(const Value& v) {
  List items;
  if (!IterItems(v, &items)) return Fail("'" + v.TypeName() + "' object is not iterable");
  return items;
}

// jinja2's attribute getter for filters ("a.b" walks dicts; a missing key is undefined).
Value GetPath(const Value& v, const std::string& path) {
  Value cur = v;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('.', b);
    if (e == std::string::npos) e = path.size();
    const std::string part = path.substr(b, e - b);
    if (cur.is_dict() || cur.kind() == Kind::kNamespace) {
      const Value* x = cur.dict().Find(part);
      cur = x ? *x : Value::Undefined("'dict object' has no attribute '" + part + "'");
    } else if (cur.is_list() && !part.empty() && part.size() < 10 && std::all_of(part.begin(), part.end(), ::isdigit)) {
      const size_t i = std::stoul(part);
      cur = i < cur.list().size() ? cur.list()[i] : Value::Undefined("list index out of range");
    } else {
      return Value::Undefined("'" + cur.TypeName() + " object' has no attribute '" + part + "'");
    }
    b = e + 1;
  }
  return cur;
}

// Python str.lower()/upper() on ASCII letters; other bytes (and so provenance) are kept.
Str MapAscii(const Str& s, int (*fn)(int)) {
  Str out = s;
  for (char& c : out.text) {
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(fn(static_cast<unsigned char>(c)));
  }
  return out;
}

Str Title(const Str& s) {
  Str out = s;
  bool prev_cased = false;
  for (char& c : out.text) {
    const unsigned char u = static_cast<unsigned char>(c);
    const bool alpha = u < 0x80 && std::isalpha(u);
    if (alpha) c = static_cast<char>(prev_cased ? std::tolower(u) : std::toupper(u));
    prev_cased = alpha || u >= 0x80;
  }
  return out;
}


StatusOr<Value> ToJsonFilter(const Value& v, CallArgs& a) {
  JsonStyle st;
  if (const Value* x = a.Get(0, "ensure_ascii"); x && x->Truthy()) {
    return UnimplementedError("chat template: unsupported tojson(ensure_ascii=True)");
  }
  if (const Value* x = a.Get(1, "indent"); x && !x->is_none()) {
    if (x->kind() != Kind::kInt) return UnimplementedError("chat template: unsupported non-integer tojson indent");
    if (x->as_int() > 1024) return Fail("tojson indent over 1024");
    st.indent = static_cast<int>(std::max<int64_t>(x->as_int(), 0));  // json.dumps: negative = 0
    st.item_sep = ",";
  }
  if (const Value* x = a.Get(2, "separators"); x && !x->is_none()) {
    if (!x->is_list() || x->list().size() != 2 || !x->list()[0].is_string() || !x->list()[1].is_string()) {
      return Fail("tojson: separators must be a pair of strings");
    }
    st.item_sep = x->list()[0].str().text;
    st.key_sep = x->list()[1].str().text;
  }
  if (const Value* x = a.Get(3, "sort_keys")) st.sort_keys = x->Truthy();
  SLIM_ASSIGN_OR_RETURN(std::string json, ToJson(v, st));
  // Content inside the JSON stays content: the whole text is, when any input string was.
  return Value::String(Str::Derived(std::move(json), v.ToStr()));
}

StatusOr<Value> Replace(const Value& v, CallArgs& a) {
  const Str s = v.ToStr();
  const Value* old = a.Get(0, "old");
  const Value* rep = a.Get(1, "new");
  if (!old || !rep) return Fail("replace() needs old and new");
  const Str o = old->ToStr(), n = rep->ToStr();
  int64_t count = -1;
  if (const Value* c = a.Get(2, "count"); c && !c->is_none()) count = c->as_int();
  Str out;
  if (o.text.empty()) return UnimplementedError("chat template: unsupported replace() of an empty string");
  size_t at = 0;
  for (size_t hit; count != 0 && (hit = s.text.find(o.text, at)) != std::string::npos; --count) {
    out.Append(s.Sub(at, hit));
    out.Append(n);
    at = hit + o.text.size();
  }
  out.Append(s.Sub(at, s.text.size()));
  return Value::String(std::move(out));
}

StatusOr<Value> Join(const Value& v, CallArgs& a) {
  SLIM_ASSIGN_OR_RETURN(List items, Items(v));
  const Value* sep = a.Get(0, "d");
  const Value* attr = a.Get(1, "attribute");
  Str out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i && sep) out.Append(sep->ToStr());
    const Value x = attr ? GetPath(items[i], attr->str().text) : items[i];
    out.Append(x.ToStr());
  }
  return Value::String(std::move(out));
}

StatusOr<Value> Indent(const Value& v, CallArgs& a) {
  const Str s = v.ToStr();
  std::string ind = "    ";
  if (const Value* w = a.Get(0, "width")) {
    if (!w->is_string() && (w->as_int() < 0 || w->as_int() > 1024)) return Fail("indent width must be in [0, 1024]");
    ind = w->is_string() ? w->str().text : std::string(static_cast<size_t>(w->as_int()), ' ');
  }
  const Value* first = a.Get(1, "first");
  const Value* blank = a.Get(2, "blank");
  std::vector<std::string> lines;  // str.splitlines() on s + "\n" (\n, \r\n, \r)
  const std::string t = s.text + "\n";
  size_t b = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '\n' || t[i] == '\r') {
      lines.push_back(t.substr(b, i - b));
      if (t[i] == '\r' && i + 1 < t.size() && t[i + 1] == '\n') ++i;
      b = i + 1;
    }
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    if (i && (!lines[i].empty() || (blank && blank->Truthy()))) out += ind;
    out += lines[i];
  }
  if (first && first->Truthy()) out = ind + out;
  return Value::String(Str::Derived(std::move(out), s));
}

// Sort key: strings compare case-insensitively unless case_sensitive.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::String(MapAscii(v.str(), ::tolower));
  return v;
}

StatusOr<Value> Sort(const Value& v, CallArgs& a, bool unique_only) {
  SLIM_ASSIGN_OR_RETURN(List items, Items(v));
  const Value* rev = unique_only ? nullptr : a.Get(0, "reverse");
  const Value* cs = a.Get(unique_only ? 0 : 1, "case_sensitive");
  const Value* attr = a.Get(unique_only ? 1 : 2, "attribute");
  const bool case_sensitive = cs && cs->Truthy();
  auto key = [&](const Value& x) { return SortKey(attr ? GetPath(x, attr->str().text) : x, case_sensitive); };
  if (unique_only) {
    List out;
    for (const Value& x : items) {
      bool seen = false;
      for (const Value& y : out) seen = seen || Equal(key(x), key(y));
      if (!seen) out.push_back(x);
    }
    return Value::MakeList(std::move(out));
  }
  Status err;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    auto c = Compare(key(x), key(y));
    if (!c.ok()) {
      err = c.status();
      return false;
    }
    return *c < 0;
  });
  SLIM_RETURN_IF_ERROR(err);
  if (rev && rev->Truthy()) std::reverse(items.begin(), items.end());
  return Value::MakeList(std::move(items));
}

StatusOr<Value> MinMax(const Value& v, CallArgs& a, bool max) {
  SLIM_ASSIGN_OR_RETURN(Value sorted, Sort(v, a, false));
  if (sorted.list().empty()) return Value::Undefined("no min/max of an empty sequence");
  return max ? sorted.list().back() : sorted.list().front();
}

StatusOr<Value> Select(Evaluator& ev, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  if (!v.Truthy()) return Value::MakeList({});  // jinja2: `if value:` before iterating
  SLIM_ASSIGN_OR_RETURN(List items, Items(v));
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.args.empty()) return Fail("selectattr/rejectattr need an attribute name");
    attr = a.args[next++].str().text;
  }
  std::string test;
  if (next < a.args.size()) test = a.args[next++].str().text;
  if (!test.empty() && !HasTest(test)) return UnimplementedError("chat template: unsupported test '" + test + "'");
  CallArgs targs;
  targs.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(next), a.args.end());
  List out;
  for (const Value& x : items) {
    const Value subject = by_attr ? GetPath(x, attr) : x;
    bool r = subject.Truthy();
    if (!test.empty()) {
      SLIM_ASSIGN_OR_RETURN(r, ApplyTest(ev, test, subject, targs));
    }
    if (r == keep) out.push_back(x);
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value> Map(Evaluator& ev, const Value& v, CallArgs& a) {
  if (!v.Truthy()) return Value::MakeList({});  // jinja2: `if value:` before iterating
  SLIM_ASSIGN_OR_RETURN(List items, Items(v));
  List out;
  if (const Value* attr = a.Get(99, "attribute")) {
    const Value* def = a.Get(99, "default");
    for (const Value& x : items) {
      Value y = GetPath(x, attr->str().text);
      out.push_back(y.is_undefined() && def ? *def : y);
    }
    return Value::MakeList(std::move(out));
  }
  if (a.args.empty() || !a.args[0].is_string()) return Fail("map() needs a filter name or attribute=");
  const std::string f = a.args[0].str().text;
  if (!HasFilter(f)) return UnimplementedError("chat template: unsupported filter '" + f + "'");
  CallArgs fargs;
  fargs.args.assign(a.args.begin() + 1, a.args.end());
  fargs.kwargs = a.kwargs;
  for (const Value& x : items) {
    CallArgs copy = fargs;
    SLIM_ASSIGN_OR_RETURN(Value y, ApplyFilter(ev, f, x, copy));
    out.push_back(std::move(y));
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value> Length(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return Value::Int(0);
    case Kind::kString: return Value::Int(static_cast<int64_t>(Utf8Length(v.str().text)));
    case Kind::kList:
    case Kind::kTuple: return Value::Int(static_cast<int64_t>(v.list().size()));
    case Kind::kDict: return Value::Int(static_cast<int64_t>(v.dict().items.size()));
    default: return Fail("object of type '" + v.TypeName() + "' has no len()");
  }
}

StatusOr<Value> ToInt(const Value& v, CallArgs& a) {
  const Value* def = a.Get(0, "default");
  const Value fallback = def ? *def : Value::Int(0);
  if (v.kind() == Kind::kInt || v.kind() == Kind::kBool) return Value::Int(v.as_int());
  if (v.kind() == Kind::kFloat) return Value::Int(static_cast<int64_t>(v.as_float()));
  if (!v.is_string()) return fallback;
  const Str t = PyStrip(v.str(), nullptr, true, true);
  try {
    size_t used = 0;
    const int64_t i = std::stoll(t.text, &used);
    if (used == t.text.size()) return Value::Int(i);
    const double f = std::stod(t.text, &used);  // jinja2 falls back to int(float(s))
    if (used == t.text.size()) return Value::Int(static_cast<int64_t>(f));
  } catch (const std::exception&) {
  }
  return fallback;
}

StatusOr<Value> ToFloat(const Value& v, CallArgs& a) {
  const Value* def = a.Get(0, "default");
  const Value fallback = def ? *def : Value::Float(0.0);
  if (v.is_number()) return Value::Float(v.as_float());
  if (!v.is_string()) return fallback;
  const Str t = PyStrip(v.str(), nullptr, true, true);
  try {
    size_t used = 0;
    const double f = std::stod(t.text, &used);
    if (used == t.text.size()) return Value::Float(f);
  } catch (const std::exception&) {
  }
  return fallback;
}

StatusOr<Value> Items2(const Value& v, bool sorted, CallArgs& a) {
  if (v.is_undefined()) return Value::MakeList({});
  if (!v.is_dict() && v.kind() != Kind::kNamespace) return Fail("items/dictsort need a mapping, got " + v.TypeName());
  List out;
  for (const auto& [k, x] : v.dict().items) out.push_back(Value::MakeList({k, x}, true));
  if (!sorted) return Value::MakeList(std::move(out));
  const Value* cs = a.Get(0, "case_sensitive");
  const Value* by = a.Get(1, "by");
  const Value* rev = a.Get(2, "reverse");
  const size_t pos = by && by->str().text == "value" ? 1 : 0;
  Status err;
  std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
    auto c = Compare(SortKey(x.list()[pos], cs && cs->Truthy()), SortKey(y.list()[pos], cs && cs->Truthy()));
    if (!c.ok()) err = c.status();
    return c.ok() && *c < 0;
  });
  SLIM_RETURN_IF_ERROR(err);
  if (rev && rev->Truthy()) std::reverse(out.begin(), out.end());
  return Value::MakeList(std::move(out));
}

}  // namespace

const Value* CallArgs::Get(size_t pos, std::string_view name) const {
  if (pos < args.size()) return &args[pos];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

bool HasFilter(std::string_view name) { return FilterNames().count(name) > 0; }
bool HasTest(std::string_view name) { return TestNames().count(name) > 0; }

StatusOr<Value> ApplyFilter(Evaluator& ev, const std::string& f, const Value& v, CallArgs& a) {
  if (f == "default" || f == "d") {
    const Value* def = a.Get(0, "default_value");
    const Value* boolean = a.Get(1, "boolean");
    const bool use = v.is_undefined() || (boolean && boolean->Truthy() && !v.Truthy());
    return use ? (def ? *def : Value::String(Str())) : v;
  }
  if (f == "safe") return v;
  if (f == "length" || f == "count") return Length(v);
  if (f == "tojson") return ToJsonFilter(v, a);
  if (f == "items") return Items2(v, false, a);
  if (f == "dictsort") return Items2(v, true, a);
  if (f == "list") {
    SLIM_ASSIGN_OR_RETURN(List items, Items(v));
    return Value::MakeList(std::move(items));
  }
  if (f == "join") return Join(v, a);
  if (f == "map") return Map(ev, v, a);
  if (f == "select" || f == "reject") return Select(ev, v, a, false, f == "select");
  if (f == "selectattr" || f == "rejectattr") return Select(ev, v, a, true, f == "selectattr");
  if (f == "sort") return Sort(v, a, false);
  if (f == "unique") return Sort(v, a, true);
  if (f == "min" || f == "max") return MinMax(v, a, f == "max");
  if (f == "int") return ToInt(v, a);
  if (f == "float") return ToFloat(v, a);
  if (f == "first" || f == "last") {
    SLIM_ASSIGN_OR_RETURN(List items, Items(v));
    if (items.empty()) return Value::Undefined("no " + f + " item of an empty sequence");
    return f == "first" ? items.front() : items.back();
  }
  if (f == "reverse") {
    SLIM_ASSIGN_OR_RETURN(List items, Items(v));
    std::reverse(items.begin(), items.end());
    if (!v.is_string()) return Value::MakeList(std::move(items));
    Str s;
    for (const Value& c : items) s.Append(c.str());
    return Value::String(std::move(s));
  }
  if (f == "abs") {
    if (!v.is_number()) return Fail("bad operand type for abs(): '" + v.TypeName() + "'");
    return v.kind() == Kind::kFloat ? Value::Float(std::fabs(v.as_float())) : Value::Int(std::llabs(v.as_int()));
  }
  if (f == "round") {
    const Value* p = a.Get(0, "precision");
    const Value* m = a.Get(1, "method");
    const double scale = std::pow(10.0, p ? static_cast<double>(p->as_int()) : 0.0);
    const std::string method = m ? m->str().text : "common";
    const double x = v.as_float() * scale;
    const double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::nearbyint(x);  // Python rounds half to even
    return Value::Float(r / scale);
  }
  if (f == "batch") {
    SLIM_ASSIGN_OR_RETURN(List items, Items(v));
    const Value* n = a.Get(0, "linecount");
    const Value* fill = a.Get(1, "fill_with");
    if (!n || n->as_int() <= 0) return Fail("batch() needs a positive line count");
    List out, cur;
    for (const Value& x : items) {
      cur.push_back(x);
      if (static_cast<int64_t>(cur.size()) == n->as_int()) out.push_back(Value::MakeList(std::exchange(cur, {})));
    }
    if (!cur.empty()) {
      while (fill && !fill->is_none() && static_cast<int64_t>(cur.size()) < n->as_int()) cur.push_back(*fill);
      out.push_back(Value::MakeList(std::move(cur)));
    }
    return Value::MakeList(std::move(out));
  }
  // String filters: soft_str() of the value first (undefined -> "").
  const Str s = v.ToStr();
  if (f == "string") return Value::String(s);
  if (f == "trim") return Value::String(PyStrip(s, a.Get(0, "chars"), true, true));
  if (f == "upper") return Value::String(MapAscii(s, ::toupper));
  if (f == "lower") return Value::String(MapAscii(s, ::tolower));
  if (f == "title") return Value::String(Title(s));
  if (f == "capitalize") {
    Str out = MapAscii(s, ::tolower);
    if (!out.text.empty() && static_cast<unsigned char>(out.text[0]) < 0x80) out.text[0] = static_cast<char>(std::toupper(out.text[0]));
    return Value::String(std::move(out));
  }
  if (f == "replace") return Replace(v, a);
  if (f == "indent") return Indent(v, a);
  if (f == "wordcount") {
    int64_t n = 0;
    bool in_word = false;
    for (unsigned char c : s.text) {
      const bool w = std::isalnum(c) || c == '_' || c >= 0x80;
      n += w && !in_word;
      in_word = w;
    }
    return Value::Int(n);
  }
  return UnimplementedError("chat template: unsupported filter '" + f + "'");
}

StatusOr<bool> ApplyTest(Evaluator&, const std::string& t, const Value& v, CallArgs& a) {
  const Value* arg = a.Get(0, "value");
  auto need = [&]() -> Status {
    return arg ? OkStatus() : Fail("test '" + t + "' needs an argument");
  };
  if (t == "defined") return !v.is_undefined();
  if (t == "undefined") return v.is_undefined();
  if (t == "none") return v.is_none();
  if (t == "string") return v.is_string();
  if (t == "mapping") return v.is_dict();
  if (t == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (t == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.kind() == Kind::kInt;
  if (t == "float") return v.kind() == Kind::kFloat;
  if (t == "boolean") return v.kind() == Kind::kBool;
  if (t == "true") return v.kind() == Kind::kBool && v.as_bool();
  if (t == "false") return v.kind() == Kind::kBool && !v.as_bool();
  if (t == "callable") return v.kind() == Kind::kCallable;
  if (t == "lower" || t == "upper") {
    if (!v.is_string()) return false;
    bool cased = false;
    for (unsigned char c : v.str().text) {
      if (std::isalpha(c)) {
        cased = true;
        if ((t == "lower") != (std::islower(c) != 0)) return false;
      }
    }
    return cased;
  }
  if (t == "odd" || t == "even" || t == "divisibleby") {
    if (v.kind() != Kind::kInt && v.kind() != Kind::kBool) return Fail("test '" + t + "' needs an integer");
    if (t == "divisibleby") {
      SLIM_RETURN_IF_ERROR(need());
      if (arg->as_int() == 0) return Fail("divisibleby 0");
      return v.as_int() % arg->as_int() == 0;
    }
    return (v.as_int() % 2 != 0) == (t == "odd");
  }
  SLIM_RETURN_IF_ERROR(need());
  if (t == "eq" || t == "equalto") return Equal(v, *arg);
  if (t == "ne") return !Equal(v, *arg);
  if (t == "sameas") {
    if (v.kind() != arg->kind()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.kind() == Kind::kBool || v.kind() == Kind::kInt) return v.as_int() == arg->as_int();
    return Equal(v, *arg);
  }
  if (t == "in") {
    if (arg->is_string()) return v.is_string() && arg->str().text.find(v.str().text) != std::string::npos;
    if (arg->is_dict()) return arg->dict().Find(v) != nullptr;
    if (arg->is_list()) {
      for (const Value& x : arg->list()) {
        if (Equal(v, x)) return true;
      }
      return false;
    }
    return Fail("argument of type '" + arg->TypeName() + "' is not iterable");
  }
  SLIM_ASSIGN_OR_RETURN(int c, Compare(v, *arg));
  if (t == "lt") return c < 0;
  if (t == "le") return c <= 0;
  if (t == "gt") return c > 0;
  if (t == "ge") return c >= 0;
  return UnimplementedError("chat template: unsupported test '" + t + "'");
}

}  // namespace slim::jinja
