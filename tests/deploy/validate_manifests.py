#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests (kubectl kustomize output, multi-document YAML on stdin
or in files) against the Kubernetes OpenAPI schemas bundled with the kubernetes-validate package
(offline, strict: unknown fields fail).

Custom resources have no bundled schema and are handled explicitly: PodMonitor gets a structural
check here; PrometheusRule's spec must equal deploy/prometheus/sliminfer-rules.yml (so promtool's
check of that file covers it too). Any other kind without a schema is an error.
Also checks the deployment invariants the drain relies on (grace period > preStop + drain grace),
that the PodMonitor scrapes the container port that serves /metrics (the HTTP port, or the
--metrics-port where one is set), that the Service exposes gRPC and HTTP, and that the model
volume works for replicas on several nodes (an emptyDir, or a claim that is not ReadWriteOnce).
Usage: validate_manifests.py --k8s-version 1.30.0 --rules RULES.yml FILE...
"""
import argparse
import sys

import kubernetes_validate
import yaml


def check_podmonitor(doc):
    spec = doc["spec"]
    assert set(spec) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
                         "sampleLimit"}, f"unexpected PodMonitor fields {sorted(spec)}"
    assert spec["selector"]["matchLabels"], "PodMonitor selects nothing"
    for ep in spec["podMetricsEndpoints"]:
        assert ep.get("port"), "PodMetricsEndpoint without a port name"


def check_prometheusrule(doc, rules_file):
    with open(rules_file) as f:
        plain = yaml.safe_load(f)
    assert doc["spec"] == plain, f"PrometheusRule spec differs from {rules_file}"


def check_deployment(doc, configmaps):
    pod = doc["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == 50051, f"{probe} is not a gRPC probe on 50051"
    env = {}
    for ref in server.get("envFrom", []):
        env.update(configmaps[ref["configMapRef"]["name"]])
    drain = float(env.get("SLIMINFER_DRAIN_GRACE_S", 30))
    pre_stop = float(server["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain, f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain}"
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"], "pod may run as root"
    for c in pod["containers"] + pod.get("initContainers", []):
        csc = c["securityContext"]
        assert csc["readOnlyRootFilesystem"] and csc["capabilities"]["drop"] == ["ALL"], c["name"]
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    serves_metrics = {int(env.get("SLIMINFER_HTTP_PORT", 8000))}
    if int(env.get("SLIMINFER_METRICS_PORT", -1)) >= 0:
        serves_metrics.add(int(env["SLIMINFER_METRICS_PORT"]))
    assert ports.get("grpc") == int(env.get("SLIMINFER_PORT", 50051)), f"grpc port {ports} vs {env}"
    assert ports.get("http") == int(env.get("SLIMINFER_HTTP_PORT", 8000)), f"http port {ports} vs {env}"
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    return env, {n for n, p in ports.items() if p in serves_metrics}, models


def check_models_volume(models, claims):
    # Replicas land on several nodes: each needs the model without a ReadWriteOnce attachment.
    if "emptyDir" in models:
        return
    claim = claims[models["persistentVolumeClaim"]["claimName"]]
    modes = set(claim["spec"]["accessModes"])
    assert modes & {"ReadOnlyMany", "ReadWriteMany"}, f"models claim access modes {sorted(modes)}: one node only"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", default="1.30.0")
    ap.add_argument("--rules", required=True)
    ap.add_argument("--expect-device")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()

    docs = []
    for path in args.files or ["-"]:
        stream = sys.stdin if path == "-" else open(path)
        docs += [d for d in yaml.safe_load_all(stream) if d]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    metrics_ports = None
    scraped = []
    service_ports = set()
    kinds = []
    failures = 0
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        kinds.append(kind)
        try:
            if kind == "PodMonitor":
                check_podmonitor(doc)
                scraped += [ep["port"] for ep in doc["spec"]["podMetricsEndpoints"]]
                how = "structural check (CRD, no bundled schema)"
            elif kind == "PrometheusRule":
                check_prometheusrule(doc, args.rules)
                how = f"equals {args.rules} (CRD, no bundled schema)"
            else:
                kubernetes_validate.validate(doc, args.k8s_version, strict=True)
                how = f"schema v{args.k8s_version} strict"
                if kind == "Service" and doc["spec"].get("clusterIP") != "None":
                    service_ports |= {p["name"] for p in doc["spec"]["ports"]}
                if kind == "Deployment":
                    env, metrics_ports, models = check_deployment(doc, configmaps)
                    check_models_volume(models, claims)
                    if args.expect_device:
                        assert env["SLIMINFER_DEVICE"] == args.expect_device, env["SLIMINFER_DEVICE"]
                    how += ", probes/drain/securityContext invariants"
            print(f"ok   {kind}/{name}: {how}")
        except Exception as e:  # noqa: BLE001 - report every object
            failures += 1
            msg = getattr(e, "message", None) or str(e)  # jsonschema errors: one line, not the schema
            where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
            print(f"FAIL {kind}/{name}: {type(e).__name__} at {where or '-'}: {msg}", file=sys.stderr)
    if not docs:
        print("no documents", file=sys.stderr)
        return 1
    if metrics_ports is not None:
        for port in scraped:
            if port not in metrics_ports:
                failures += 1
                print(f"FAIL PodMonitor scrapes port {port!r}; /metrics is served on {sorted(metrics_ports)}",
                      file=sys.stderr)
        if service_ports and not {"grpc", "http"} <= service_ports:
            failures += 1
            print(f"FAIL Service ports {sorted(service_ports)} lack grpc or http", file=sys.stderr)
    print(f"{len(docs)} objects, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
