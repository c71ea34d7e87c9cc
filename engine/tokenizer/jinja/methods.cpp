// Methods of str/dict/list values as Python defines them (the ones chat templates call), the
// sandbox's refusal of mutating methods, str.format, and the globals transformers provides.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "engine/tokenizer/jinja/evaluator.h"
#include "engine/tokenizer/jinja/filters.h"

namespace slim::jinja {
namespace {

Status Fail(const std::string& what) { return InvalidArgumentError("chat template: " + what); }

bool IsWs(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }


StatusOr<Value> Split(const Str& s, const CallArgs& a, bool from_right) {
  const Value* sep = a.Get(0, "sep");
  const Value* maxv = a.Get(1, "maxsplit");
  int64_t max = maxv ? maxv->as_int() : -1;
  const std::string& t = s.text;
  std::vector<std::pair<size_t, size_t>> parts;
  if (sep == nullptr || sep->is_none()) {
    if (from_right && max >= 0) return UnimplementedError("chat template: unsupported rsplit() with maxsplit on whitespace");
    size_t i = 0;
    while (i < t.size()) {
      while (i < t.size() && IsWs(static_cast<unsigned char>(t[i]))) ++i;
      if (i >= t.size()) break;
      if (max == 0) {
        size_t e = t.size();
        while (e > i && IsWs(static_cast<unsigned char>(t[e - 1]))) --e;
        parts.emplace_back(i, e);
        break;
      }
      size_t j = i;
      while (j < t.size() && !IsWs(static_cast<unsigned char>(t[j]))) ++j;
      parts.emplace_back(i, j);
      --max;
      i = j;
    }
  } else {
    const std::string& d = sep->str().text;
    if (d.empty()) return Fail("split(): empty separator");
    if (!from_right) {
      size_t at = 0;
      for (size_t hit; max != 0 && (hit = t.find(d, at)) != std::string::npos; --max) {
        parts.emplace_back(at, hit);
        at = hit + d.size();
      }
      parts.emplace_back(at, t.size());
    } else {
      size_t end = t.size();
      std::vector<std::pair<size_t, size_t>> rev;
      while (max != 0 && end >= d.size()) {
        const size_t hit = t.rfind(d, end - d.size());
        if (hit == std::string::npos) break;
        rev.emplace_back(hit + d.size(), end);
        end = hit;
        --max;
      }
      rev.emplace_back(0, end);
      parts.assign(rev.rbegin(), rev.rend());
    }
  }
  List out;
  for (const auto& [b, e] : parts) out.push_back(Value::String(s.Sub(b, e)));
  return Value::MakeList(std::move(out));
}

StatusOr<bool> Affix(const std::string& t, const Value* arg, bool prefix) {
  if (arg == nullptr) return Fail("startswith/endswith need an argument");
  std::vector<std::string> options;
  if (arg->is_string()) {
    options.push_back(arg->str().text);
  } else if (arg->is_list()) {
    for (const Value& x : arg->list()) options.push_back(x.str().text);
  } else {
    return Fail("startswith/endswith need a string or tuple, got " + arg->TypeName());
  }
  for (const std::string& o : options) {
    if (o.size() <= t.size() && (prefix ? t.compare(0, o.size(), o) == 0 : t.compare(t.size() - o.size(), o.size(), o) == 0)) {
      return true;
    }
  }
  return false;
}

using MethodFn = std::function<StatusOr<Value>(Evaluator&, const Value&, CallArgs&)>;
Value Method(const Value& self, const std::string& name, MethodFn fn) {
  return Value::Function(name, [self, fn](Evaluator& ev, CallArgs& a) { return fn(ev, self, a); });
}

Value Unsafe(const Value& self, const std::string& name) {
  const std::string msg = "access to attribute '" + name + "' of '" + self.TypeName() + "' object is unsafe";
  return Value::Function(name, [msg](Evaluator&, CallArgs&) -> StatusOr<Value> { return Fail(msg); });
}

StatusOr<Value> StringMethod(const Value& self, const std::string& m) {
  static const std::set<std::string> kNames = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith",
                                               "endswith", "upper", "lower", "replace", "title", "capitalize",
                                               "format", "find", "rfind", "count", "join", "splitlines", "isdigit",
                                               "isspace", "isalpha", "isalnum", "islower", "isupper"};
  if (!kNames.count(m)) return Value::Undefined("'str object' has no attribute '" + m + "'");
  return Method(self, m, [m](Evaluator& ev, const Value& v, CallArgs& a) -> StatusOr<Value> {
    const Str& s = v.str();
    const std::string& t = s.text;
    if (m == "strip" || m == "lstrip" || m == "rstrip") {
      return Value::String(PyStrip(s, a.Get(0, "chars"), m != "rstrip", m != "lstrip"));
    }
    if (m == "split" || m == "rsplit") return Split(s, a, m == "rsplit");
    if (m == "startswith" || m == "endswith") {
      SLIM_ASSIGN_OR_RETURN(bool r, Affix(t, a.Get(0, "prefix"), m == "startswith"));
      return Value::Bool(r);
    }
    if (m == "format") {
      SLIM_ASSIGN_OR_RETURN(Str out, PyFormat(s, a));
      return Value::String(std::move(out));
    }
    if (m == "find" || m == "rfind" || m == "count") {
      const Value* sub = a.Get(0, "sub");
      if (!sub || !sub->is_string()) return Fail(m + "() needs a string");
      const std::string& x = sub->str().text;
      if (m == "count") {
        int64_t n = 0;
        if (x.empty()) return Value::Int(static_cast<int64_t>(Utf8Length(t)) + 1);
        for (size_t at = t.find(x); at != std::string::npos; at = t.find(x, at + x.size())) ++n;
        return Value::Int(n);
      }
      const size_t at = m == "find" ? t.find(x) : t.rfind(x);
      return Value::Int(at == std::string::npos ? -1 : static_cast<int64_t>(Utf8Length(t.substr(0, at))));
    }
    if (m == "join") {
      const Value* items = a.Get(0, "iterable");
      if (!items || !items->is_list()) return Fail("join() needs a list");
      Str out;
      for (size_t i = 0; i < items->list().size(); ++i) {
        if (i) out.Append(s);
        if (!items->list()[i].is_string()) return Fail("join(): sequence item is " + items->list()[i].TypeName());
        out.Append(items->list()[i].str());
      }
      return Value::String(std::move(out));
    }
    if (m == "splitlines") {
      List out;
      size_t b = 0;
      for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '\n' || t[i] == '\r') {
          out.push_back(Value::String(s.Sub(b, i)));
          if (t[i] == '\r' && i + 1 < t.size() && t[i + 1] == '\n') ++i;
          b = i + 1;
        }
      }
      if (b < t.size()) out.push_back(Value::String(s.Sub(b, t.size())));
      return Value::MakeList(std::move(out));
    }
    if (m.rfind("is", 0) == 0) {
      if (t.empty()) return Value::Bool(false);
      bool cased = false, ok = true;
      for (unsigned char c : t) {
        if (m == "isdigit") ok = ok && std::isdigit(c);
        if (m == "isspace") ok = ok && IsWs(c);
        if (m == "isalpha") ok = ok && std::isalpha(c);
        if (m == "isalnum") ok = ok && std::isalnum(c);
        if (m == "islower" || m == "isupper") {
          cased = cased || std::isalpha(c);
          ok = ok && !(m == "islower" ? std::isupper(c) : std::islower(c));
        }
      }
      return Value::Bool(ok && (cased || (m != "islower" && m != "isupper")));
    }
    // upper, lower, title, capitalize, replace: as the filters of the same name.
    CallArgs copy = a;
    return ApplyFilter(ev, m, v, copy);
  });
}

StatusOr<Value> DictMethod(const Value& self, const std::string& m) {
  if (m == "items" || m == "keys" || m == "values") {
    return Method(self, m, [m](Evaluator&, const Value& v, CallArgs&) -> StatusOr<Value> {
      List out;
      for (const auto& [k, x] : v.dict().items) {
        if (m == "items") out.push_back(Value::MakeList({k, x}, true));
        if (m == "keys") out.push_back(k);
        if (m == "values") out.push_back(x);
      }
      return Value::MakeList(std::move(out));
    });
  }
  if (m == "get") {
    return Method(self, m, [](Evaluator&, const Value& v, CallArgs& a) -> StatusOr<Value> {
      const Value* key = a.Get(0, "key");
      if (!key) return Fail("get() needs a key");
      const Value* def = a.Get(1, "default");
      const Value* x = v.dict().Find(*key);
      return x ? *x : (def ? *def : Value::None());
    });
  }
  static const std::set<std::string> kMutating = {"pop", "popitem", "update", "setdefault", "clear"};
  if (kMutating.count(m)) return Unsafe(self, m);
  if (const Value* x = self.dict().Find(m)) return *x;
  return Value::Undefined("'dict object' has no attribute '" + m + "'");
}

}  // namespace

StatusOr<Value> GetAttribute(const Value& obj, const std::string& name) {
  if (obj.is_string()) return StringMethod(obj, name);
  if (obj.is_dict()) return DictMethod(obj, name);
  if (obj.is_list()) {
    static const std::set<std::string> kMutating = {"append", "pop", "extend", "insert", "remove", "clear",
                                                    "sort", "reverse"};
    if (kMutating.count(name)) return Unsafe(obj, name);
    if (name == "index" || name == "count") {
      return Method(obj, name, [name](Evaluator&, const Value& v, CallArgs& a) -> StatusOr<Value> {
        const Value* x = a.Get(0, "value");
        if (!x) return Fail(name + "() needs an argument");
        int64_t n = 0;
        for (size_t i = 0; i < v.list().size(); ++i) {
          if (!Equal(v.list()[i], *x)) continue;
          if (name == "index") return Value::Int(static_cast<int64_t>(i));
          ++n;
        }
        if (name == "index") return Fail(x->Repr() + " is not in list");
        return Value::Int(n);
      });
    }
  }
  std::string hint = "'";  // built in steps: GCC 12 warns falsely on "'" + std::string&&
  hint += obj.TypeName();
  hint += " object' has no attribute '" + name + "'";
  return Value::Undefined(std::move(hint));
}

StatusOr<Str> PyFormat(const Str& fmt, const CallArgs& args) {
  const std::string& t = fmt.text;
  Str out;
  size_t auto_index = 0, lit = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '{' && t[i] != '}') continue;
    if (i + 1 < t.size() && t[i + 1] == t[i]) {  // {{ and }}
      out.Append(fmt.Sub(lit, i + 1));
      lit = ++i + 1;
      continue;
    }
    if (t[i] == '}') return Fail("format(): single '}' in the format string");
    const size_t close = t.find('}', i);
    if (close == std::string::npos) return Fail("format(): unmatched '{'");
    out.Append(fmt.Sub(lit, i));
    std::string field = t.substr(i + 1, close - i - 1);
    const size_t colon = field.find(':');
    if (colon != std::string::npos) {
      const std::string spec = field.substr(colon + 1);
      if (!spec.empty() && spec != "s" && spec != "d") {
        return UnimplementedError("chat template: unsupported format spec ':" + spec + "'");
      }
      field.resize(colon);
    }
    const Value* v = nullptr;
    if (field.empty()) {
      v = auto_index < args.args.size() ? &args.args[auto_index] : nullptr;
      ++auto_index;
    } else if (field.size() < 10 && std::all_of(field.begin(), field.end(), ::isdigit)) {
      const size_t k = std::stoul(field);
      v = k < args.args.size() ? &args.args[k] : nullptr;
    } else {
      v = args.Get(static_cast<size_t>(-1), field);
    }
    if (v == nullptr) return Fail("format(): no argument for {" + field + "}");
    out.Append(v->ToStr());
    lit = close + 1;
    i = close;
  }
  out.Append(fmt.Sub(lit, t.size()));
  return out;
}

namespace {

// strftime of the fixed date kFixedYear-kFixedMonth-kFixedDay 00:00:00 (C locale).
StatusOr<std::string> FixedStrftime(const std::string& fmt) {
  static const char* kMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                                  "July",    "August",   "September", "October", "November", "December"};
  static const char* kDays[] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
  constexpr int kWeekday = 4;    // 2024-07-26 is a Friday (Monday = 0)
  constexpr int kYearDay = 208;  // day of the year
  const std::string month = kMonths[kFixedMonth - 1], day = kDays[kWeekday];
  auto two = [](int v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02d", v);
    return std::string(buf);
  };
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%' || i + 1 >= fmt.size()) {
      out += fmt[i];
      continue;
    }
    char c = fmt[++i];
    bool no_pad = false;
    if (c == '-' && i + 1 < fmt.size()) {
      no_pad = true;
      c = fmt[++i];
    }
    switch (c) {
      case 'Y': out += std::to_string(kFixedYear); break;
      case 'y': out += two(kFixedYear % 100); break;
      case 'm': out += no_pad ? std::to_string(kFixedMonth) : two(kFixedMonth); break;
      case 'd': out += no_pad ? std::to_string(kFixedDay) : two(kFixedDay); break;
      case 'B': out += month; break;
      case 'b': case 'h': out += month.substr(0, 3); break;
      case 'A': out += day; break;
      case 'a': out += day.substr(0, 3); break;
      case 'H': case 'M': case 'S': out += no_pad ? "0" : "00"; break;
      case 'I': out += no_pad ? "12" : "12"; break;
      case 'p': out += "AM"; break;
      case 'j': out += std::to_string(kYearDay); break;
      case 'u': out += std::to_string(kWeekday + 1); break;
      case 'w': out += std::to_string((kWeekday + 1) % 7); break;
      case '%': out += '%'; break;
      default: return UnimplementedError(std::string("chat template: unsupported strftime_now format %") + c);
    }
  }
  return out;
}

}  // namespace

void AddGlobals(Dict* g) {
  g->Set("raise_exception", Value::Function("raise_exception", [](Evaluator&, CallArgs& a) -> StatusOr<Value> {
           const std::string msg = a.args.empty() ? "" : a.args[0].ToStr().text;
           return InvalidArgumentError("chat template: raise_exception: " + msg);
         }));
  g->Set("strftime_now", Value::Function("strftime_now", [](Evaluator&, CallArgs& a) -> StatusOr<Value> {
           if (a.args.empty() || !a.args[0].is_string()) return Fail("strftime_now() needs a format string");
           SLIM_ASSIGN_OR_RETURN(std::string s, FixedStrftime(a.args[0].str().text));
           return Value::String(Str(std::move(s)));
         }));
  g->Set("namespace", Value::Function("namespace", [](Evaluator&, CallArgs& a) -> StatusOr<Value> {
           Dict d;
           for (const Value& x : a.args) {
             if (!x.is_dict()) return Fail("namespace() takes a dict positionally");
             for (const auto& [k, v] : x.dict().items) d.Set(k, v);
           }
           for (const auto& [k, v] : a.kwargs) d.Set(k, v);
           return Value::Namespace(std::move(d));
         }));
  g->Set("dict", Value::Function("dict", [](Evaluator&, CallArgs& a) -> StatusOr<Value> {
           Dict d;
           for (const auto& [k, v] : a.kwargs) d.Set(k, v);
           return Value::MakeDict(std::move(d));
         }));
  g->Set("range", Value::Function("range", [](Evaluator&, CallArgs& a) -> StatusOr<Value> {
           if (a.args.empty() || a.args.size() > 3) return Fail("range() takes 1 to 3 arguments");
           int64_t start = 0, stop = a.args[0].as_int(), step = 1;
           if (a.args.size() >= 2) {
             start = a.args[0].as_int();
             stop = a.args[1].as_int();
           }
           if (a.args.size() == 3) step = a.args[2].as_int();
           if (step == 0) return Fail("range() step must not be zero");
           List out;
           for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
             if (out.size() > 100000) return Fail("range() too long");
             out.push_back(Value::Int(i));
           }
           return Value::MakeList(std::move(out));
         }));
}

}  // namespace slim::jinja
