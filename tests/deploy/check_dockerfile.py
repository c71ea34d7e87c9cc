#!/usr/bin/env python3
"""Static checks of the Dockerfile (no Docker engine here to build it): both VARIANTs resolve to
defined stages, every COPY source exists in the repository and survives .dockerignore, the build
stage uses scripts/setup.sh, the final stage runs as a non-root user and exposes 50051 (gRPC) and 8000 (HTTP:
OpenAI API, /health, /metrics).
Usage: check_dockerfile.py REPO_ROOT
"""
import fnmatch
import os
import re
import sys


def main(root):
    with open(os.path.join(root, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    with open(os.path.join(root, ".dockerignore")) as f:
        ignore = [ln.strip().rstrip("/") for ln in f if ln.strip() and not ln.startswith("#")]
    args = {m.group(1): m.group(2) for ln in lines for m in [re.match(r"ARG (\w+)=(\S*)", ln)] if m}
    errors = []
    stages, current, stage_lines = [], None, {}
    for ln in lines:
        m = re.match(r"FROM (\S+)(?: AS (\S+))?$", ln, re.I)
        if m:
            current = m.group(2) or f"stage{len(stages)}"
            stages.append((current, m.group(1)))
            stage_lines[current] = []
        elif current:
            stage_lines[current].append(ln)
    names = [s for s, _ in stages]
    if len(set(names)) != len(names):
        errors.append(f"duplicate stage names {names}")
    for variant in ("cuda", "cpu"):
        for name, image in stages:
            ref = image.replace("${VARIANT}", variant)
            if "${VARIANT}" in image and ref not in names:
                errors.append(f"stage {name}: FROM {ref} (VARIANT={variant}) is not a stage")
    if args.get("VARIANT") not in ("cuda", "cpu"):
        errors.append(f"ARG VARIANT default {args.get('VARIANT')!r}")
    for name, body in stage_lines.items():
        for ln in body:
            m = re.match(r"COPY (?!--from)(.+)", ln)
            if not m:
                continue
            srcs = m.group(1).split()[:-1]
            for src in srcs:
                if src == ".":
                    continue
                if not os.path.exists(os.path.join(root, src)):
                    errors.append(f"stage {name}: COPY source {src} missing")
                if any(fnmatch.fnmatch(src, pat) or src.startswith(pat + "/") for pat in ignore):
                    errors.append(f"stage {name}: COPY source {src} excluded by .dockerignore")
    build = " ".join(stage_lines.get("build", []))
    if "scripts/setup.sh" not in build or "cmake --build" not in build:
        errors.append("build stage does not use scripts/setup.sh and cmake")
    final = stage_lines[names[-1]]
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errors.append(f"final stage {names[-1]} runs as root")
    exposed = {p for ln in final if ln.startswith("EXPOSE ") for p in ln.split()[1:]}
    if not {"50051", "8000"} <= exposed:
        errors.append(f"final stage exposes {sorted(exposed)}")
    if any(re.search(r"apt-get install|setup\.sh|build-essential", ln) for ln in final):
        errors.append("final stage installs build tools")
    for e in errors:
        print("FAIL", e, file=sys.stderr)
    print(f"Dockerfile: {len(stages)} stages {names}; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
