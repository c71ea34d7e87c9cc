// A parsed Jinja template (the chat-template subset of jinja2, see engine/tokenizer/jinja/):
// Parse once, Render many times. Rendering returns the text with the byte ranges that came
// from content strings (Str::Content values passed in the variables). Immutable after Parse;
// Render may be called from any thread concurrently.
#pragma once

#include <memory>
#include <string_view>

#include "engine/core/status.h"
#include "engine/tokenizer/jinja/ast.h"
#include "engine/tokenizer/jinja/value.h"

namespace slim::jinja {

class Template {
 public:
  // InvalidArgument for a syntax error, Unimplemented for a construct outside the subset; both
  // name it ("chat template: unsupported filter 'from_json'").
  static StatusOr<Template> Parse(std::string_view source);

  // Renders with `vars` over the globals (raise_exception, strftime_now, namespace, range,
  // dict). Errors: what the template raised, or what jinja2 would have raised (undefined
  // attribute, type errors), InvalidArgument; an unsupported construct met at run time,
  // Unimplemented.
  StatusOr<Str> Render(const Dict& vars) const;

 private:
  std::shared_ptr<const Body> body_;
};

}  // namespace slim::jinja
