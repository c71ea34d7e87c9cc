// Jinja values for the chat-template interpreter: Python-like undefined/none/bool/int/float/
// string/list/tuple/dict, jinja2's namespace(), and callables (macros, globals, bound methods),
// with Python's str()/repr() and transformers' tojson formatting. Strings carry provenance: the
// byte ranges that came from message content (see Str). Values are immutable once built, except
// a namespace's attributes; a Value is not safe to share between threads while rendering.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"

namespace slim::jinja {

// A string and the byte ranges [begin, end) of it that came from message content; all other
// bytes were written by the template (its literals, bos/eos tokens, numbers it printed).
// Provenance rule: operations that copy bytes (concatenation, ~, join, slicing, trim/strip,
// split, replace, indent, macro output) carry each byte's provenance along; operations that
// rewrite a whole string (tojson, repr, format, title, capitalize, ...) make the result
// content when any input byte was content. Content is therefore never widened into markup.
struct Str {
  std::string text;
  std::vector<std::pair<size_t, size_t>> content;  // sorted, disjoint, merged

  Str() = default;
  Str(std::string t) : text(std::move(t)) {}  // NOLINT: markup text
  static Str Content(std::string t);
  // A whole rewritten string: content if `from` has any content byte.
  static Str Derived(std::string t, const Str& from);
  bool HasContent() const { return !content.empty(); }
  void Append(const Str& other);
  void Append(std::string_view markup);
  // Bytes [b, e) with their provenance.
  Str Sub(size_t b, size_t e) const;
};

class Value;
using List = std::vector<Value>;

struct Dict;

class Evaluator;
struct CallArgs;
using NativeFn = std::function<StatusOr<Value>(Evaluator&, CallArgs&)>;
struct Callable {
  std::string name;
  NativeFn fn;
};

enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kTuple, kDict, kNamespace, kCallable };

class Value {
 public:
  Value() = default;  // undefined
  static Value Undefined(std::string hint = "") { Value v; v.str_.text = std::move(hint); return v; }
  static Value None() { Value v; v.kind_ = Kind::kNone; return v; }
  static Value Bool(bool b) { Value v; v.kind_ = Kind::kBool; v.i_ = b; return v; }
  static Value Int(int64_t i) { Value v; v.kind_ = Kind::kInt; v.i_ = i; return v; }
  static Value Float(double f) { Value v; v.kind_ = Kind::kFloat; v.f_ = f; return v; }
  static Value String(Str s) { Value v; v.kind_ = Kind::kString; v.str_ = std::move(s); return v; }
  static Value MakeList(List items, bool tuple = false);
  static Value MakeDict(Dict d);
  static Value Namespace(Dict d);
  static Value Function(std::string name, NativeFn fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_list() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return kind_ == Kind::kFloat ? static_cast<int64_t>(f_) : i_; }
  double as_float() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(i_); }
  const Str& str() const { return str_; }
  // Why the value is undefined ("'x' is undefined", "'dict object' has no attribute 'y'").
  const std::string& undefined_name() const { return str_.text; }
  const List& list() const { return *list_; }
  const Dict& dict() const { return *dict_; }
  Dict& mutable_namespace() const { return *dict_; }
  const Callable& callable() const { return *fn_; }
  // Identity of a namespace or callable (for ==).
  const void* identity() const { return dict_ ? static_cast<const void*>(dict_.get()) : fn_.get(); }

  // Python truthiness.
  bool Truthy() const;
  // Python str(): strings as they are (with provenance), others formatted as Python does.
  Str ToStr() const;
  // Python repr().
  std::string Repr() const;
  // Python type name as jinja2's messages spell it ("str", "int", "list", "dict", ...).
  std::string TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t i_ = 0;
  double f_ = 0;
  Str str_;
  std::shared_ptr<const List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const Callable> fn_;
};

// An insertion-ordered dict; keys are strings (chat messages, most templates) or numbers.
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  const Value* Find(std::string_view key) const;  // string keys
  const Value* Find(const Value& key) const;      // any key, Python ==
  void Set(const std::string& key, Value v);
  void Set(const Value& key, Value v);
};

// Python ==, and the ordering of sorted()/</>: TypeError-like InvalidArgument between kinds
// Python cannot order.
bool Equal(const Value& a, const Value& b);
StatusOr<int> Compare(const Value& a, const Value& b);

// Python float repr (shortest round-trip, "1.0", "1e-05").
std::string FloatRepr(double f);

// json.dumps(v, ensure_ascii=False, indent, separators, sort_keys) as transformers' tojson.
struct JsonStyle {
  int indent = -1;  // < 0: single line
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
StatusOr<std::string> ToJson(const Value& v, const JsonStyle& style);

// Python's str.strip/lstrip/rstrip: Unicode whitespace (str.isspace) when `chars` is null or
// None, else the code points of `chars`; provenance of the kept bytes is kept.
Str PyStrip(const Str& s, const Value* chars, bool left, bool right);

// The items a for-loop (or a list filter) sees: list and tuple items, dict keys, the characters
// (code points) of a string, nothing for undefined; false for a value that is not iterable.
bool IterItems(const Value& v, List* out);

// Code point count of UTF-8 text, and the byte offset of code point `cp` (clamped to the end).
size_t Utf8Length(std::string_view s);
size_t Utf8Offset(std::string_view s, size_t cp);

}  // namespace slim::jinja
