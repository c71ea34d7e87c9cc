// Jinja filters, tests, global functions and the methods of str/dict/list values that chat
// templates call, as jinja2 and Python define them. Stateless; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/jinja/value.h"

namespace slim::jinja {

// Evaluated call arguments: positional then keyword.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;

  // The argument at `pos` or named `name`, or nullptr.
  const Value* Get(size_t pos, std::string_view name) const;
};

bool HasFilter(std::string_view name);
bool HasTest(std::string_view name);

// `value | name(args)`. The evaluator is needed by filters that apply other filters or tests
// (map, select, selectattr).
StatusOr<Value> ApplyFilter(Evaluator& ev, const std::string& name, const Value& value, CallArgs& args);
// `value is name(args)`.
StatusOr<bool> ApplyTest(Evaluator& ev, const std::string& name, const Value& value, CallArgs& args);

// `obj.name` as jinja2's getattr sees it for str, dict and list values: a bound method, or
// (dicts) the key; Undefined when there is neither.
StatusOr<Value> GetAttribute(const Value& obj, const std::string& name);

// The globals transformers provides: raise_exception, strftime_now (fixed clock, see
// kFixedDate), namespace, range, dict; plus jinja2's cycler-free builtins chat templates use.
void AddGlobals(Dict* globals);

// strftime_now's clock: 2024-07-26 00:00:00, a Friday (scripts/render_templates.py pins the
// same date for the reference renders).
inline constexpr int kFixedYear = 2024, kFixedMonth = 7, kFixedDay = 26;

// Python's str.format subset ({} {0} {name} with optional :spec of s/d) used by templates.
StatusOr<Str> PyFormat(const Str& fmt, const CallArgs& args);

}  // namespace slim::jinja
