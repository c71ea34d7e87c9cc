// Jinja values: provenance-carrying strings, Python str()/repr()/== and ordering, json.dumps.
#include "engine/tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace slim::jinja {

Str Str::Content(std::string t) {
  Str s(std::move(t));
  if (!s.text.empty()) s.content.emplace_back(0, s.text.size());
  return s;
}

Str Str::Derived(std::string t, const Str& from) {
  return from.HasContent() ? Content(std::move(t)) : Str(std::move(t));
}

void Str::Append(const Str& other) {
  const size_t base = text.size();
  text += other.text;
  for (const auto& [b, e] : other.content) {
    if (!content.empty() && content.back().second == base + b) {
      content.back().second = base + e;
    } else {
      content.emplace_back(base + b, base + e);
    }
  }
}

void Str::Append(std::string_view markup) { text.append(markup); }

Str Str::Sub(size_t b, size_t e) const {
  e = std::min(e, text.size());
  b = std::min(b, e);
  Str out(text.substr(b, e - b));
  for (const auto& [cb, ce] : content) {
    const size_t lo = std::max(cb, b), hi = std::min(ce, e);
    if (lo < hi) out.content.emplace_back(lo - b, hi - b);
  }
  return out;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k.is_string() && k.str().text == key) return &v;
  }
  return nullptr;
}

const Value* Dict::Find(const Value& key) const {
  for (const auto& [k, v] : items) {
    if (Equal(k, key)) return &v;
  }
  return nullptr;
}

void Dict::Set(const std::string& key, Value v) { Set(Value::String(Str(key)), std::move(v)); }

void Dict::Set(const Value& key, Value v) {
  for (auto& [k, old] : items) {
    if (Equal(k, key)) {
      old = std::move(v);
      return;
    }
  }
  items.emplace_back(key, std::move(v));
}

Value Value::MakeList(List items, bool tuple) {
  Value v;
  v.kind_ = tuple ? Kind::kTuple : Kind::kList;
  v.list_ = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::MakeDict(Dict d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>(std::move(d));
  return v;
}

Value Value::Namespace(Dict d) {
  Value v = MakeDict(std::move(d));
  v.kind_ = Kind::kNamespace;
  return v;
}

Value Value::Function(std::string name, NativeFn fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool:
    case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0;
    case Kind::kString: return !str_.text.empty();
    case Kind::kList:
    case Kind::kTuple: return !list_->empty();
    case Kind::kDict: return !dict_->items.empty();
    case Kind::kNamespace:
    case Kind::kCallable: return true;
  }
  return false;
}

namespace {

bool HasContentDeep(const Value& v) {
  switch (v.kind()) {
    case Kind::kString: return v.str().HasContent();
    case Kind::kList:
    case Kind::kTuple:
      return std::any_of(v.list().begin(), v.list().end(), HasContentDeep);
    case Kind::kDict:
    case Kind::kNamespace:
      return std::any_of(v.dict().items.begin(), v.dict().items.end(),
                         [](const auto& kv) { return HasContentDeep(kv.second); });
    default: return false;
  }
}

std::string PyQuote(std::string_view s) {
  const bool dq = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == q) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += q;
  return out;
}

}  // namespace

std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits += c;
  }
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp) + 1) + "." + digits.substr(static_cast<size_t>(exp) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  std::snprintf(buf, sizeof buf, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + buf;
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kString: return PyQuote(str_.text);
    case Kind::kList:
    case Kind::kTuple: {
      std::string out = kind_ == Kind::kList ? "[" : "(";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i) out += ", ";
        out += (*list_)[i].Repr();
      }
      if (kind_ == Kind::kTuple && list_->size() == 1) out += ",";
      return out + (kind_ == Kind::kList ? "]" : ")");
    }
    case Kind::kDict: {
      std::string out = "{";
      for (size_t i = 0; i < dict_->items.size(); ++i) {
        if (i) out += ", ";
        out += dict_->items[i].first.Repr() + ": " + dict_->items[i].second.Repr();
      }
      return out + "}";
    }
    case Kind::kUndefined: return "Undefined";  // jinja2's Undefined.__repr__
    case Kind::kNamespace: return "<Namespace>";
    case Kind::kCallable: return "<function " + fn_->name + ">";
    default: return ToStr().text;
  }
}

Str Value::ToStr() const {
  switch (kind_) {
    case Kind::kUndefined: return Str();
    case Kind::kNone: return Str("None");
    case Kind::kBool: return Str(i_ ? "True" : "False");
    case Kind::kInt: return Str(std::to_string(i_));
    case Kind::kFloat: return Str(FloatRepr(f_));
    case Kind::kString: return str_;
    default: return HasContentDeep(*this) ? Str::Content(Repr()) : Str(Repr());
  }
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "?";
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Kind::kFloat || b.kind() == Kind::kFloat) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.is_list() && b.is_list()) {
    if (a.kind() != b.kind() || a.list().size() != b.list().size()) return false;
    for (size_t i = 0; i < a.list().size(); ++i) {
      if (!Equal(a.list()[i], b.list()[i])) return false;
    }
    return true;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return a.str().text == b.str().text;
    case Kind::kDict: {
      if (a.dict().items.size() != b.dict().items.size()) return false;
      for (const auto& [k, v] : a.dict().items) {
        const Value* o = b.dict().Find(k);
        if (o == nullptr || !Equal(v, *o)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();  // namespaces, callables
  }
}

StatusOr<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.as_float(), y = b.as_float();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().text.compare(b.str().text);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.kind() == b.kind()) {
    const size_t n = std::min(a.list().size(), b.list().size());
    for (size_t i = 0; i < n; ++i) {
      SLIM_ASSIGN_OR_RETURN(int c, Compare(a.list()[i], b.list()[i]));
      if (c != 0) return c;
    }
    return a.list().size() < b.list().size() ? -1 : (a.list().size() > b.list().size() ? 1 : 0);
  }
  return InvalidArgumentError("chat template: '<' not supported between instances of '" + a.TypeName() + "' and '" +
                              b.TypeName() + "'");
}

namespace {

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

Status JsonInto(const Value& v, const JsonStyle& st, int depth, std::string* out) {
  const auto newline = [&](int d) {
    if (st.indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(st.indent * d), ' ');
  };
  switch (v.kind()) {
    case Kind::kNone: *out += "null"; return OkStatus();
    case Kind::kBool: *out += v.as_bool() ? "true" : "false"; return OkStatus();
    case Kind::kInt: *out += std::to_string(v.as_int()); return OkStatus();
    case Kind::kFloat: {
      const double f = v.as_float();
      *out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : FloatRepr(f);
      return OkStatus();
    }
    case Kind::kString: *out += JsonQuote(v.str().text); return OkStatus();
    case Kind::kList:
    case Kind::kTuple: {
      if (v.list().empty()) {
        *out += "[]";
        return OkStatus();
      }
      *out += "[";
      for (size_t i = 0; i < v.list().size(); ++i) {
        if (i) *out += st.item_sep;
        newline(depth + 1);
        SLIM_RETURN_IF_ERROR(JsonInto(v.list()[i], st, depth + 1, out));
      }
      newline(depth);
      *out += "]";
      return OkStatus();
    }
    case Kind::kDict: {
      if (v.dict().items.empty()) {
        *out += "{}";
        return OkStatus();
      }
      // json.dumps writes number keys as strings.
      std::vector<std::pair<std::string, const Value*>> items;
      for (const auto& [k, x] : v.dict().items) {
        if (k.is_string()) {
          items.emplace_back(k.str().text, &x);
        } else if (k.is_number() || k.is_none()) {
          std::string key;
          SLIM_RETURN_IF_ERROR(JsonInto(k, st, depth, &key));
          items.emplace_back(key, &x);
        } else {
          return InvalidArgumentError("chat template: tojson: keys must be str, int, float, bool or None, not " + k.TypeName());
        }
      }
      if (st.sort_keys) {
        std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      *out += "{";
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) *out += st.item_sep;
        newline(depth + 1);
        *out += JsonQuote(items[i].first) + st.key_sep;
        SLIM_RETURN_IF_ERROR(JsonInto(*items[i].second, st, depth + 1, out));
      }
      newline(depth);
      *out += "}";
      return OkStatus();
    }
    default:
      return InvalidArgumentError("chat template: tojson: Object of type " + v.TypeName() +
                                  " is not JSON serializable");
  }
}

}  // namespace

StatusOr<std::string> ToJson(const Value& v, const JsonStyle& style) {
  std::string out;
  SLIM_RETURN_IF_ERROR(JsonInto(v, style, 0, &out));
  return out;
}

namespace {

// The code point at s[i] and its byte length (invalid bytes: themselves, length 1).
uint32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) n = 1;
  }
  *len = n;
  if (n == 1) return c;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  return cp;
}

bool IsPySpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

}  // namespace

Str PyStrip(const Str& s, const Value* chars, bool left, bool right) {
  const std::string& t = s.text;
  std::vector<uint32_t> set;
  const bool ws = chars == nullptr || chars->is_none();
  if (!ws) {
    const std::string& c = chars->ToStr().text;
    for (size_t i = 0, n = 0; i < c.size(); i += n) set.push_back(DecodeAt(c, i, &n));
  }
  const auto strip = [&](uint32_t cp) {
    return ws ? IsPySpace(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  // Code point boundaries, so that the right end can step back one code point at a time.
  std::vector<size_t> starts;
  for (size_t i = 0, n = 0; i < t.size(); i += n) {
    starts.push_back(i);
    DecodeAt(t, i, &n);
  }
  size_t b = 0, e = starts.size();  // in code points
  size_t n = 0;
  if (left) {
    while (b < e && strip(DecodeAt(t, starts[b], &n))) ++b;
  }
  if (right) {
    while (e > b && strip(DecodeAt(t, starts[e - 1], &n))) --e;
  }
  const size_t bb = b < starts.size() ? starts[b] : t.size();
  const size_t eb = e < starts.size() ? starts[e] : t.size();
  return s.Sub(bb, eb);
}

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

size_t Utf8Offset(std::string_view s, size_t cp) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == cp) return i;
      ++n;
    }
  }
  return s.size();
}

bool IterItems(const Value& v, List* out) {
  out->clear();
  switch (v.kind()) {
    case Kind::kUndefined: return true;
    case Kind::kList:
    case Kind::kTuple: *out = v.list(); return true;
    case Kind::kDict:
      for (const auto& kv : v.dict().items) out->push_back(kv.first);
      return true;
    case Kind::kString: {
      const std::string& t = v.str().text;
      for (size_t i = 0; i < t.size();) {
        size_t j = i + 1;
        while (j < t.size() && (static_cast<unsigned char>(t[j]) & 0xC0) == 0x80) ++j;
        out->push_back(Value::String(v.str().Sub(i, j)));
        i = j;
      }
      return true;
    }
    default:
      return false;
  }
}

}  // namespace slim::jinja
