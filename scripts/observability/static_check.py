#!/usr/bin/env python3
"""Static checks of alerts/, runbooks/ and dashboards/ that need no tool but Python (stdlib only).

Called by scripts/checks/observability-static (which also runs promtool and tsc). Checks:
  * every rule has severity, summary, description and a runbook_url = <runbook_base_url><AlertName>.md that
    resolves to runbooks/<AlertName>.md;
  * every runbook except the procedures and README.md belongs to an alert, and has the sections
    Meaning, Impact, Diagnosis and Mitigation;
  * every (alert, severity) has a promtool test case in which it fires, and every alert a case in which it
    stays quiet (exp_alerts: []);
  * dashboards: the ${datasource} variable of type datasource (prometheus), the namespace variable, every
    panel and target on ${datasource}, unique panel ids, every target with an expression and a refId.
Prints counts; exit status 1 on any problem.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROCEDURES = {
    "adding-a-search-attribute.md",
    "rotating-certificates.md",
    "scaling-workers.md",
    "restoring-from-backup.md",
    "README.md",
}
SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation")


def rules(path: Path) -> list[dict]:
    """Alert rules of a rendered rule file (the layout the templates use), without a YAML library."""
    out: list[dict] = []
    cur: dict | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\s*- alert: (\S+)\s*$", line)
        if m:
            cur = {"alert": m.group(1)}
            out.append(cur)
            continue
        if cur is None:
            continue
        m = re.match(r"\s+(severity|summary|runbook_url|description|for): ?(.*)$", line)
        if m:
            cur[m.group(1)] = m.group(2).strip()
    return out


def threshold(name: str) -> str:
    text = (REPO / "alerts" / "thresholds.yaml").read_text(encoding="utf-8")
    m = re.search(rf"^{name}:\s*\n\s+value:\s*\"?([^\"\n]*)\"?", text, re.M)
    if not m:
        raise SystemExit(f"alerts/thresholds.yaml has no {name}")
    return m.group(1)


def test_cases(path: Path) -> tuple[set[tuple[str, str]], set[str], int]:
    """(alert, severity) pairs expected to fire, alerts expected quiet, number of test groups."""
    fires: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    groups = 0
    alert = None
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        if re.match(r"  - name: ", line):
            groups += 1
        m = re.match(r"\s+alertname: (\S+)", line)
        if m:
            alert = m.group(1)
            continue
        if alert and re.match(r"\s+exp_alerts: \[\]\s*$", line):
            quiet.add(alert)
        m = re.match(r"\s+- exp_labels: \{.*severity: (\w+)", line)
        if alert and m:
            fires.add((alert, m.group(1)))
    return fires, quiet, groups


def main() -> int:
    problems: list[str] = []
    base = threshold("runbook_base_url")

    # Rules and runbooks.
    all_rules = []
    for path in sorted((REPO / "alerts").glob("temporal-*.yaml")):
        for r in rules(path):
            r["file"] = path.name
            all_rules.append(r)
    if not all_rules:
        problems.append("no alert rules in alerts/temporal-*.yaml")
    names = sorted({r["alert"] for r in all_rules})
    for r in all_rules:
        where = f"{r['file']}: {r['alert']}/{r.get('severity', '?')}"
        for key in ("severity", "summary", "description", "runbook_url", "for"):
            if not r.get(key):
                problems.append(f"{where}: no {key}")
        if r.get("severity") not in ("warning", "critical", "info"):
            problems.append(f"{where}: severity {r.get('severity')!r} is not warning/critical/info")
        url = r.get("runbook_url", "")
        if not url.startswith(base):
            problems.append(f"{where}: runbook_url {url} does not start with runbook_base_url {base}")
            continue
        rel = url[len(base):]
        if rel != f"{r['alert']}.md":
            problems.append(f"{where}: runbook_url must end in {r['alert']}.md, got {rel}")
        if not (REPO / "runbooks" / rel).is_file():
            problems.append(f"{where}: runbook_url {url} -> runbooks/{rel} does not exist")
    runbooks = sorted(p.name for p in (REPO / "runbooks").glob("*.md"))
    for name in runbooks:
        if name in PROCEDURES:
            continue
        if name[:-3] not in names:
            problems.append(f"runbooks/{name} belongs to no alert (and is not a listed procedure)")
            continue
        text = (REPO / "runbooks" / name).read_text(encoding="utf-8")
        for s in SECTIONS:
            if s not in text:
                problems.append(f"runbooks/{name}: section '{s}' missing")
    for p in PROCEDURES:
        if not (REPO / "runbooks" / p).is_file():
            problems.append(f"runbooks/{p} missing")

    # promtool test coverage.
    fires: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    groups = 0
    for path in sorted((REPO / "alerts" / "tests").glob("*.yaml")):
        f, q, g = test_cases(path)
        fires |= f
        quiet |= q
        groups += g
    for r in all_rules:
        if (r["alert"], r.get("severity")) not in fires:
            problems.append(f"no promtool test case where {r['alert']}/{r.get('severity')} fires")
    for n in names:
        if n not in quiet:
            problems.append(f"no promtool test case where {n} stays quiet")

    # Dashboards.
    panels = queries = 0
    boards = sorted((REPO / "dashboards").glob("*.json"))
    if not boards:
        problems.append("no dashboards/*.json")
    uids = set()
    for path in boards:
        d = json.loads(path.read_text(encoding="utf-8"))
        where = f"dashboards/{path.name}"
        if d.get("uid") in uids:
            problems.append(f"{where}: duplicate uid {d.get('uid')}")
        uids.add(d.get("uid"))
        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        ds = variables.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append(f"{where}: needs a template variable datasource of type datasource (query prometheus)")
        for v in variables.values():
            if v["type"] == "query" and v.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where}: variable {v['name']} does not use ${{datasource}}")
        uses_ns = "$namespace" in path.read_text(encoding="utf-8")
        if uses_ns and "namespace" not in variables:
            problems.append(f"{where}: uses $namespace but defines no namespace variable")
        ids = set()
        for p in d.get("panels", []):
            if p.get("id") in ids:
                problems.append(f"{where}: duplicate panel id {p.get('id')}")
            ids.add(p.get("id"))
            if p.get("type") == "row":
                continue
            panels += 1
            if p.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where}: panel {p.get('title')!r} not on ${{datasource}}")
            if not p.get("targets"):
                problems.append(f"{where}: panel {p.get('title')!r} has no query")
            for t in p.get("targets", []):
                queries += 1
                if not t.get("expr") or not t.get("refId"):
                    problems.append(f"{where}: panel {p.get('title')!r} has a target without expr/refId")
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"{where}: panel {p.get('title')!r} target {t.get('refId')} not on ${{datasource}}")
                for var in re.findall(r"\$(?!__)([a-zA-Z_][a-zA-Z0-9_]*)", t.get("expr", "")):
                    if var not in variables:
                        problems.append(f"{where}: panel {p.get('title')!r} uses undefined variable ${var}")

    alert_runbooks = len([n for n in runbooks if n not in PROCEDURES])
    print(f"alerts: {len(all_rules)} rules, {len(names)} alert names, every runbook_url resolves: "
          f"{'yes' if not any('runbook' in p for p in problems) else 'NO'}")
    print(f"runbooks: {alert_runbooks} alert runbooks, {len(PROCEDURES) - 1} procedures")
    print(f"promtool test groups: {groups}; firing cases cover {len(fires)} (alert, severity) pairs, "
          f"quiet cases cover {len(quiet)} alerts")
    print(f"dashboards: {len(boards)} files, {panels} panels, {queries} queries")
    if problems:
        print(f"\nFAILED ({len(problems)}):")
        for p in problems:
            print(f"  - {p}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
