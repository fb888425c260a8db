#!/usr/bin/env python3
"""Structural check of Prometheus alerting rules, for machines where promtool cannot be
installed: every group has a name and rules; every rule has alert, expr, labels.severity,
annotations.summary; `for` is a duration. Needs PyYAML (yamllint's venv has it)."""
import re
import sys

import yaml

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    errors = []
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        errors.append("no groups")
    for g in groups or []:
        if not g.get("name"):
            errors.append("group without name")
        for r in g.get("rules") or []:
            name = r.get("alert") or r.get("record") or "?"
            if "alert" in r:
                if not (r.get("labels") or {}).get("severity"):
                    errors.append(f"{name}: labels.severity missing")
                if not (r.get("annotations") or {}).get("summary"):
                    errors.append(f"{name}: annotations.summary missing")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                errors.append(f"{name}: expr missing")
            if "for" in r and not DURATION.match(str(r["for"])):
                errors.append(f"{name}: bad duration {r['for']!r}")
    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
