#!/usr/bin/env python3
"""Writes tests/fixtures/jinja/cases.json: small Jinja templates with their variables and the
output Python's jinja2 gives them in transformers' environment (scripts/render_templates.py's
make_env: trim_blocks, lstrip_blocks, loopcontrols, tojson as json.dumps(ensure_ascii=False),
raise_exception, strftime_now fixed to 2024-07-26), or the error it raises. Read by
tests/tokenizer/jinja_test.cpp.

  scripts/make_jinja_cases.py   (regenerate after editing CASES; commit the fixture)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render_templates import make_env  # noqa: E402

MSGS = [{"role": "system", "content": "S"}, {"role": "user", "content": " hi \n"}]

# (name, template, variables)
CASES = [
    # Whitespace control: trim_blocks, lstrip_blocks, - and + markers, comments.
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("dash_strip", "a   {%- if true -%}   b   {%- endif -%}   c", {}),
    ("dash_output", "x  {{- 'y' -}}  z", {}),
    ("plus_keeps", "a\n    {%+ if true %}b{% endif +%}\nc", {}),
    ("comment_ws", "a\n  {# note #}\nb {#- x -#} c", {}),
    ("var_no_lstrip", "a\n    {{ 'b' }}\n", {}),
    ("raw_block", "{% raw %}{{ not evaluated }}{% endraw %}!", {}),
    # if / elif / else, inline if, boolean ops.
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %},{% endfor %}", {}),
    ("inline_if", "{{ 'a' if flag else 'b' }}|{{ 'c' if not flag }}|", {"flag": True}),
    ("and_or_values", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or [] }} {{ '' and 1 }}", {}),
    # for loops: loop.*, else, filters on the iterable, dict items, unpacking, break/continue.
    ("loop_vars", "{% for m in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {}),
    ("loop_else", "{% for x in [] %}x{% else %}empty{% endfor %}", {}),
    ("loop_if", "{% for x in range(10) if x is odd %}{{ x }}{{ ',' if not loop.last }}{% endfor %}", {}),
    ("loop_dict_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("loop_filter_iterable", "{% for m in messages | selectattr('role', 'equalto', 'user') %}{{ m.content }}{% endfor %}", {"messages": MSGS}),
    ("loop_break_continue", "{% for x in range(6) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop_cycle_prev_next", "{% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", {}),
    ("loop_scope", "{% set x = 1 %}{% for i in [5] %}{% set x = i %}{{ x }}{% endfor %}{{ x }}", {}),
    # set: plain, tuple, block set, namespace.
    ("set_tuple", "{% set a, b = 1, 'two' %}{{ a }}{{ b }}", {}),
    ("set_block", "{% set s %}\n  hello {{ name }}\n{% endset %}[{{ s }}]", {"name": "N"}),
    ("namespace", "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} {{ ns.n }}", {"messages": MSGS}),
    # macros.
    ("macro", "{% macro tag(name, open=true) %}<{{ '' if open else '/' }}{{ name }}>{% endmacro %}{{ tag('a') }}{{ tag('a', false) }}{{ tag(name='b', open=false) }}", {}),
    ("macro_sees_globals", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ bos_token }}{% endmacro %}{{ m() }}", {"bos_token": "<s>"}),
    # filters.
    ("filter_strings", "{{ ' a B c ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello world' | capitalize }}|{{ 'hello wORLD' | title }}|{{ 'aXbX' | replace('X', '-') }}|{{ 'xxx' | replace('x', 'y', 2) }}", {}),
    ("filter_trim_chars", "{{ '--a--' | trim('-') }}", {}),
    ("trim_unicode_space", "[{{ c | trim }}][{{ c.strip() }}][{{ c.rstrip() }}][{{ 'ééaé' | trim('é') }}]", {"c": "\u3000\xa0 x\u2009y \xa0\u3000"}),
    ("filter_length", "{{ [1,2,3] | length }} {{ 'héllo' | length }} {{ {'a': 1} | length }} {{ 'abc' | count }}", {}),
    ("filter_default", "{{ missing | default('d') }} {{ '' | default('e') }} {{ '' | default('f', true) }} {{ none | d('g') }}", {}),
    ("filter_join", "{{ [1, 'a', none] | join(', ') }} {{ messages | map(attribute='role') | join }}", {"messages": MSGS}),
    ("filter_first_last", "{{ [1,2,3] | first }}{{ [1,2,3] | last }}{{ 'abc' | first }}{{ [3,1,2] | reverse | list }}{{ 'abc' | reverse }}", {}),
    ("filter_list_string", "{{ 'ab' | list }} {{ 12 | string }} {{ [1, 'x'] | string }}", {}),
    ("filter_int_float", "{{ '42' | int }} {{ 'x' | int }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 2 | float }} {{ '7' | int + 1 }}", {}),
    ("filter_items_dictsort", "{{ d | items | list }} {{ d | dictsort }}", {"d": {"b": 1, "a": 2}}),
    ("filter_select_reject", "{{ [1,2,3,4] | select('even') | list }} {{ [1,2,3,4] | reject('odd') | list }} {{ messages | rejectattr('role', 'equalto', 'system') | map(attribute='content') | list }}", {"messages": MSGS}),
    ("filter_map_filter", "{{ ['a', 'b'] | map('upper') | list }} {{ [' x ', 'y '] | map('trim') | join('|') }}", {}),
    ("filter_sort_unique", "{{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ [1, 2, 1, 3] | unique | list }}", {}),
    ("filter_sort_attribute", "{{ items | sort(attribute='n') | map(attribute='k') | join }}", {"items": [{"k": "b", "n": 2}, {"k": "a", "n": 1}]}),
    ("filter_min_max", "{{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }}", {}),
    ("filter_safe_abs_round", "{{ '<b>' | safe }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }}", {}),
    ("filter_indent", "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(4, true) }}|{{ 'x\n\ny' | indent(2, blank=true) }}", {}),
    ("filter_wordcount_batch", "{{ 'one two, three' | wordcount }} {{ [1,2,3,4,5] | batch(2) | list }}", {}),
    ("filter_tojson", "{{ v | tojson }}|{{ v | tojson(indent=2) }}|{{ v | tojson(separators=(',', ':')) }}|{{ 'é\"\n' | tojson }}", {"v": {"b": [1, 2.5, True, None], "a": "x"}}),
    ("filter_tojson_sort", "{{ v | tojson(sort_keys=true) }}", {"v": {"b": 1, "a": {"d": 1, "c": 2}}}),
    ("filter_block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}", {}),
    # tests.
    ("tests_types", "{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 's' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is boolean }}{{ true is true }}{{ false is false }}", {"x": 1}),
    ("tests_numbers", "{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}", {}),
    ("tests_compare", "{{ 'a' is equalto 'a' }}{{ 1 is eq 2 }}{{ 2 is in [1, 2] }}{{ 'b' is in 'abc' }}{{ 1 is not none }}{{ x is sameas none }}", {"x": None}),
    # string and dict methods.
    ("str_methods", "{{ ' a '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a/b/c'.rsplit('/', 1) }}", {}),
    ("str_methods_2", "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}{{ 'a-b'.replace('-', '+') }}{{ 'ab cd'.title() }}{{ 'abcb'.find('b') }}{{ 'abcb'.rfind('b') }}{{ 'abcb'.count('b') }}{{ ','.join(['x', 'y']) }}", {}),
    ("str_format", "{{ '<{}|{}>'.format('a', 1) }} {{ '{0}{0}{1}'.format('x', 'y') }} {{ '{name}!'.format(name='n') }} {{ '{{}}'.format() }}", {}),
    ("str_splitlines_is", "{{ 'a\nb\r\nc'.splitlines() }} {{ '12'.isdigit() }} {{ ' '.isspace() }} {{ 'ab'.isalpha() }}", {}),
    ("dict_methods", "{{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z', 'def') }} {{ d.get('z') }} {{ d['a'] }} {{ d.a }}", {"d": {"a": 1, "b": [2]}}),
    ("reasoning_split", "{% set c = m.content %}{% if '</think>' in c %}{{ c.split('</think>')[-1].lstrip('\n') }}|{{ c.split('</think>')[0].split('<think>')[-1].strip() }}{% endif %}", {"m": {"content": "<think>\nabc\n</think>\n\nanswer"}}),
    # subscripts, slices, negative indexes.
    ("slices", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[-1] }} {{ l[1:3] }} {{ l[::2] }} {{ 'héllo'[1:3] }} {{ 'abc'[-1] }} {{ l[10] is undefined }}", {"l": [1, 2, 3, 4]}),
    ("messages_index", "{{ messages[0]['role'] }} {{ messages[-1].content | trim }} {{ messages[1:] | length }}", {"messages": MSGS}),
    # operators.
    ("math", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 1.5 + 1 }} {{ -(3) }} {{ 10 / 4 * 2 }}", {}),
    ("compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ 2 >= 2 }} {{ 'x' != 'y' }}", {}),
    ("in_ops", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'z' in missing }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ missing }} {{ 'x' + 'y' }} {{ [1] + [2] }} {{ 'ab' * 2 }}", {}),
    # Python str() formatting of values.
    ("str_formatting", "{{ none }} {{ true }} {{ 1.0 }} {{ 0.1 }} {{ 1e20 }} {{ 1e-7 }} {{ [1, 'a', none, true, 1.5] }} {{ {'a': 'b', 'c': [1]} }} {{ ('x',) }} {{ \"it's\" }} {{ ['it\\'s'] }}", {}),
    ("literals", "{{ [1, 2][0] }}{{ {'a': {'b': 'c'}}['a']['b'] }}{{ 'con' 'cat' }}{{ \"\\t|\\u00e9|\\x41\" }}", {}),
    ("number_dict_keys", "{% set d = {0: 'zero', 10: 'ten'} %}{{ d[10] }} {{ d | tojson }} {{ d }}", {}),
    # undefined semantics.
    ("undefined_prints_empty", "[{{ missing }}][{{ d.missing }}][{{ d['missing'] }}]", {"d": {}}),
    ("undefined_attribute_errors", "{{ missing.attr }}", {}),
    ("undefined_add_errors", "{{ missing + 'x' }}", {}),
    ("none_attribute_is_undefined", "[{{ n.attr }}]", {"n": None}),
    ("undefined_iterates_empty", "{% for x in missing %}x{% endfor %}{{ missing | length }}", {}),
    ("none_not_iterable", "{% for x in n %}x{% endfor %}", {"n": None}),
    ("type_error", "{{ 'a' + 1 }}", {}),
    # globals.
    ("raise_exception", "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}", {"messages": MSGS}),
    ("strftime_now", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%B %d, %Y') }}|{{ strftime_now('%A %-d') }}", {}),
    ("unsafe_append", "{% set l = [] %}{{ l.append(1) }}", {}),
    ("generation_tag", "{% generation %}gen {{ 1 }}{% endgeneration %}", {}),
]


def main():
    env = make_env()
    out = []
    for name, src, variables in CASES:
        case = {"name": name, "template": src, "vars": variables}
        try:
            case["text"] = env.from_string(src).render(**variables)
        except Exception as e:  # the fixture records that jinja2 raised
            case["error"] = f"{type(e).__name__}: {e}"
        out.append(case)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "jinja", "cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"make_jinja_cases: {len(out)} cases ({sum('error' in c for c in out)} raise) into {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
