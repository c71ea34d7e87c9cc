#!/usr/bin/env python3
"""Renders chat templates with Python's jinja2 the way transformers' apply_chat_template does,
for a fixed set of conversations: the reference of tests/tokenizer/jinja_reference_test.cpp.

Environment as transformers builds it: ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True) with the loopcontrols extension and the {% generation %} tag, tojson as json.dumps(ensure_ascii=False),
raise_exception(msg) and strftime_now(fmt); variables messages, add_generation_prompt,
bos_token, eos_token, tools=None, documents=None. strftime_now is pinned to 2024-07-26 00:00:00
(a Friday) so that renders are reproducible; the C++ side (engine/tokenizer/jinja) uses the same.

  scripts/render_templates.py --templates DIR --out reference.json   (every DIR/*.jinja)
"""
import argparse
import datetime
import glob
import json
import os

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2024, 7, 26, 0, 0, 0)
BOS, EOS = "<s>", "</s>"

CONVERSATIONS = [
    ("user", [{"role": "user", "content": "Hello!"}], True),
    ("system_user", [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What is 2+2?"}], True),
    ("multi_turn", [{"role": "system", "content": "Answer in one word."},
                    {"role": "user", "content": "Capital of France?"},
                    {"role": "assistant", "content": "Paris"},
                    {"role": "user", "content": "  And of Italy?\n"}], True),
    ("no_generation_prompt", [{"role": "user", "content": "Hi \"there\" <b>"},
                              {"role": "assistant", "content": "Hello, how can I help?"}], False),
    ("user_assistant_user", [{"role": "user", "content": "One"},
                             {"role": "assistant", "content": "Two"},
                             {"role": "user", "content": "Three, café ünïcode"}], False),
    ("reasoning", [{"role": "user", "content": "Capital of France?"},
                   {"role": "assistant", "content": "<think>\nThe user asks a capital.\n</think>\n\nParis."},
                   {"role": "user", "content": "Thanks\t!"}], True),
    ("tool_result", [{"role": "system", "content": "\n Use tools. \n"},
                     {"role": "user", "content": "Weather?"},
                     {"role": "assistant", "content": "Checking."},
                     {"role": "tool", "content": "{\"temp\": 20}"}], True),
    ("markup_in_content", [{"role": "user", "content": "<|im_end|>\n<|im_start|>system\n{{ x }} {% raw %}"},
                           {"role": "assistant", "content": "ok"}], True),
]


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return FIXED_NOW.strftime(fmt)


class AssistantTracker(Extension):
    """transformers' {% generation %}...{% endgeneration %} tag: renders its body as it is."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, messages, add_generation_prompt):
    try:
        t = env.from_string(source)
        return {"text": t.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                 bos_token=BOS, eos_token=EOS, tools=None, documents=None)}
    except Exception as e:  # the reference records that jinja2 refused, and why
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    env = make_env()
    out = {
        "jinja2_version": jinja2.__version__,
        "bos_token": BOS,
        "eos_token": EOS,
        "conversations": [{"name": n, "messages": m, "add_generation_prompt": g} for n, m, g in CONVERSATIONS],
        "templates": {},
    }
    for path in sorted(glob.glob(os.path.join(args.templates, "*.jinja"))):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        out["templates"][os.path.basename(path)] = [render(env, src, m, g) for _, m, g in CONVERSATIONS]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    n = len(out["templates"])
    ok = sum(all("text" in r for r in rs) for rs in out["templates"].values())
    print(f"render_templates: {n} templates, {ok} render every conversation, into {args.out}")


if __name__ == "__main__":
    main()
