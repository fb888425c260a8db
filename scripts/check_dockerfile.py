#!/usr/bin/env python3
"""Static checks of deploy/Dockerfile (no container engine here): the final stage runs as a
non-root user and has no HEALTHCHECK; every COPY from the build context names files that
exist and that .dockerignore does not exclude; the packages built with `cargo build -p`
exist in the workspace and their binaries are the ones copied into the runtime stage."""
import fnmatch
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def instructions(path):
    text = open(path, encoding="utf-8").read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def ignored(path, patterns):
    out = False
    for p in patterns:
        neg = p.startswith("!")
        p = p.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p + "/*") or path.startswith(p + "/"):
            out = not neg
    return out


def main():
    errors = []
    dockerfile = os.path.join(ROOT, "deploy/Dockerfile")
    patterns = [l.strip() for l in open(os.path.join(ROOT, ".dockerignore")) if l.strip() and not l.startswith("#")]
    ins = list(instructions(dockerfile))
    stages = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    final = ins[stages[-1]:]
    users = [r for w, r in final if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        errors.append("the final stage must switch to a non-root USER")
    if any(w == "HEALTHCHECK" for w, _ in ins):
        errors.append("no HEALTHCHECK: orchestrators probe /healthz and /readyz")
    exposed = " ".join(r for w, r in final if w == "EXPOSE").split()
    for port in ("8080", "9090"):
        if port not in exposed:
            errors.append(f"EXPOSE {port} missing")
    for w, rest in ins:
        if w != "COPY" or "--from=" in rest:
            continue
        args = [a for a in rest.split() if not a.startswith("--")]
        for src in args[:-1]:
            if src == ".":
                for must in ("Cargo.toml", "Cargo.lock", "crates", "tests", "deploy/config/activity-relay.toml"):
                    if ignored(must, patterns):
                        errors.append(f".dockerignore excludes {must}, which the build needs")
                continue
            if not os.path.exists(os.path.join(ROOT, src)):
                errors.append(f"COPY source {src} does not exist")
            elif ignored(src, patterns):
                errors.append(f"COPY source {src} is excluded by .dockerignore")
    meta = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    import json
    packages = {p["name"]: {t["name"] for t in p["targets"] if "bin" in t["kind"]} for p in json.loads(meta.stdout)["packages"]}
    built = set()
    for w, rest in ins:
        if w == "RUN" and "cargo build" in rest:
            for pkg in re.findall(r"-p\s+([A-Za-z0-9_-]+)", rest):
                if pkg not in packages:
                    errors.append(f"cargo build -p {pkg}: no such workspace package")
                else:
                    built |= packages[pkg]
    copied = set(re.findall(r"/out/([A-Za-z0-9_-]+)", " ".join(r for w, r in final if w == "COPY")))
    for b in copied - built:
        errors.append(f"the runtime stage copies {b}, which the build stage does not build")
    for b in ("activity-relay", "x-emulator"):
        if b not in copied:
            errors.append(f"the image lacks {b}")
    for e in errors:
        print(f"deploy/Dockerfile: {e}", file=sys.stderr)
    print("deploy/Dockerfile: ok" if not errors else "deploy/Dockerfile: FAILED")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
