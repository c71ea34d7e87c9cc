#!/usr/bin/env python3
"""Evaluates every PromQL expression of the Grafana dashboard and the Prometheus rules against a
running Prometheus (HTTP API) and fails unless each returns at least one finite sample.

Grafana variables are replaced by concrete values ($__rate_interval -> --window, $job -> .+).
Alert expressions are "<query> <op> <threshold>": the query side must return data; the full
expression must evaluate without error (it is empty unless the alert fires). Also checks that
Prometheus loaded the rule file and that every rule evaluated with health "ok".
Usage: check_queries.py --prom http://127.0.0.1:PORT --dashboard D.json --rules R.yml [--window 60s]
       check_queries.py --lint-only --dashboard D.json --rules R.yml   (structure of the dashboard only)
"""
import argparse
import json
import math
import re
import sys
import urllib.parse
import urllib.request

import yaml

COMPARISON = re.compile(r"^(?P<lhs>.*?)\s*(?:>|<|>=|<=|==|!=)\s*(?:bool\s+)?[-+0-9.eE]+\s*$", re.S)


# Metric names the dashboard must not use (none today: every family DESIGN.md names is exported).
NOT_EXPORTED = ()


def lint_dashboard(path):
    """Importability: a Prometheus datasource variable that every panel and target uses, unique
    panel ids and refIds, no panel on a metric the server does not export."""
    with open(path) as f:
        dash = json.load(f)
    errors = []
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("no Prometheus datasource variable named 'datasource'")
    ids = [p.get("id") for p in dash["panels"]]
    if len(set(ids)) != len(ids):
        errors.append(f"duplicate panel ids {ids}")
    for p in dash["panels"]:
        refs = [t.get("refId") for t in p.get("targets", [])]
        if not refs or len(set(refs)) != len(refs):
            errors.append(f"panel {p.get('title')}: targets/refIds {refs}")
        for obj in [p] + p.get("targets", []):
            if obj.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"panel {p.get('title')}: datasource is not ${{datasource}}")
        for t in p.get("targets", []):
            if any(m in t.get("expr", "") for m in NOT_EXPORTED):
                errors.append(f"panel {p.get('title')}: uses a metric the server does not export")
    return errors


def dashboard_exprs(path):
    with open(path) as f:
        dash = json.load(f)
    out = []
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            if t.get("expr"):
                out.append((f"dashboard '{panel['title']}' {t['refId']}", t["expr"]))
    return out


def rule_exprs(path):
    with open(path) as f:
        rules = yaml.safe_load(f)
    out = []
    for group in rules["groups"]:
        for r in group["rules"]:
            name = r.get("record") or r.get("alert")
            out.append((f"rule {name}", r["expr"], "alert" in r))
    return out


def api(prom, path, **params):
    url = f"{prom}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def finite_samples(data):
    if data["resultType"] == "vector":
        values = [float(s["value"][1]) for s in data["result"]]
    elif data["resultType"] == "scalar":
        values = [float(data["result"][1])]
    else:
        values = [float(v[1]) for s in data["result"] for v in s.get("values", [])]
    return len(data["result"]), [v for v in values if math.isfinite(v)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prom")
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--window", default="60s")
    ap.add_argument("--lint-only", action="store_true", help="dashboard structure only, no Prometheus")
    args = ap.parse_args()
    lint = lint_dashboard(args.dashboard)
    if lint or args.lint_only:
        print("\n".join(["dashboard lint:"] + lint) if lint else "dashboard lint: ok")
        if lint:
            return 1
        return 0

    subst = {"$__rate_interval": args.window, "$__interval": args.window, "$__range": args.window,
             "$job": ".+", "${job}": ".+"}

    def concrete(expr):
        for k in sorted(subst, key=len, reverse=True):
            expr = expr.replace(k, subst[k])
        if "$" in expr:
            raise RuntimeError(f"unreplaced Grafana variable in {expr!r}")
        return expr

    checks = [(n, e, False) for n, e in dashboard_exprs(args.dashboard)] + rule_exprs(args.rules)
    failures = []
    for name, expr, is_alert in checks:
        expr = concrete(expr)
        queries = [expr]
        if is_alert:
            m = COMPARISON.match(expr.strip())
            if not m:
                failures.append(f"{name}: alert expression is not '<query> <op> <number>': {expr}")
                continue
            api(args.prom, "query", query=expr)  # must parse and evaluate; empty unless firing
            queries = [m.group("lhs")]
        for q in queries:
            try:
                n, finite = finite_samples(api(args.prom, "query", query=q))
            except Exception as e:  # noqa: BLE001 - report every failing query, not just the first
                failures.append(f"{name}: {q}: {e}")
                continue
            status = "ok" if finite else "NO DATA"
            print(f"[{status}] {name}: {n} series, values {[round(v, 6) for v in finite[:4]]}  <- {q}")
            if not finite:
                failures.append(f"{name}: no finite sample for {q}")

    groups = api(args.prom, "rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    for name, _, _ in rule_exprs(args.rules):
        rule = loaded.get(name.split(" ", 1)[1])
        if rule is None:
            failures.append(f"{name}: not loaded by Prometheus")
        elif rule.get("health") != "ok":
            failures.append(f"{name}: health {rule.get('health')}: {rule.get('lastError')}")
    print(f"checked {len(checks)} expressions, {len(loaded)} loaded rules")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
