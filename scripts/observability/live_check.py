#!/usr/bin/env python3
"""Evaluate every dashboard query and every alert expression against a live Prometheus.

Standard library only. Called by scripts/checks/observability-live once the workload has run; can be run
on its own against any Prometheus that scrapes a Temporal server and SDK workers:

  live_check.py --prometheus http://127.0.0.1:59091 [--rules-loaded]

What it checks:
  * every metric name used by a dashboard panel or an alert exists in the scrape
    (/api/v1/label/__name__/values), unless the allow-list says why it cannot exist here;
  * every dashboard query ($__rate_interval/$__interval -> 1m, template variables -> .*) evaluates without
    error through /api/v1/query and returns data, unless allow-listed;
  * every alert expression evaluates without error (returning data means: its condition is true now; the
    alerts the workload must trigger are listed under expect_true_after_workload), and every
    vector selector inside it, evaluated alone, returns data unless allow-listed;
  * with --rules-loaded: Prometheus loaded the rendered rule files and every rule's health is "ok".
Exit status 1 on any failure. Allow-list: scripts/observability/live-allowlist.json (a reason per entry).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLOWLIST = Path(__file__).resolve().parent / "live-allowlist.json"

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "atan2", "inf", "nan", "start", "end", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def substitute_grafana(expr: str) -> str:
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "1m", expr)
    expr = re.sub(r"\$\{[a-zA-Z_][a-zA-Z0-9_]*(:[a-z]+)?\}|\$[a-zA-Z_][a-zA-Z0-9_]*", ".*", expr)
    return expr


def selectors(expr: str) -> list[tuple[str, str]]:
    """Vector selectors of a PromQL expression as (metric name, 'name{matchers}'), in order, deduplicated.

    A small lexer, enough for the expressions of this repository: strings, label matcher blocks, range
    and subquery brackets and grouping label lists are skipped; an identifier that is not a keyword or
    aggregation and is not followed by '(' is a metric name.
    """
    out: list[tuple[str, str]] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" else 1
            i = j + 1
            continue
        if c == "[":
            i = expr.index("]", i) + 1
            continue
        if c == "{":  # matchers without a metric name in front are not used here
            i = skip_braces(expr, i)
            continue
        if c == "#":
            j = expr.find("\n", i)
            i = n if j < 0 else j
            continue
        if c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "._"):
                j += 1
            i = j
            continue
        if c.isalpha() or c in "_:":
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                j += 1
            word = expr[i:j]
            k = j
            while k < n and expr[k].isspace():
                k += 1
            if word in GROUPING and k < n and expr[k] == "(":
                i = expr.index(")", k) + 1
                continue
            if word in KEYWORDS or (k < n and expr[k] == "("):
                i = j
                continue
            if k < n and expr[k] == "{":
                end = skip_braces(expr, k)
                sel = word + expr[k:end]
                i = end
            else:
                sel = word
                i = j
            sel = normalize(sel)
            if (word, sel) not in out:
                out.append((word, sel))
            continue
        i += 1
    return out


MATCHER = re.compile(r"""([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")


def normalize(sel: str) -> str:
    """name{a="1", b=~"x"} with matchers sorted and spaces removed, so that the same selector written by
    hand and printed back by Prometheus' rule API compare equal (allow-list keys)."""
    if "{" not in sel:
        return sel
    name, rest = sel.split("{", 1)
    matchers = sorted(f'{k}{op}"{v[1:-1]}"' for k, op, v in MATCHER.findall(rest))
    return name.strip() + "{" + ",".join(matchers) + "}"


def skip_braces(expr: str, i: int) -> int:
    j = i + 1
    while j < len(expr) and expr[j] != "}":
        if expr[j] in "\"'`":
            q = expr[j]
            j += 1
            while j < len(expr) and expr[j] != q:
                j += 2 if expr[j] == "\\" else 1
        j += 1
    return j + 1


class Prom:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params: str) -> dict:
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        try:
            with urllib.request.urlopen(self.url + path + q, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as err:  # Prometheus answers 400/422 with a JSON error body
            try:
                return json.load(err)
            except Exception:  # noqa: BLE001
                return {"status": "error", "error": f"HTTP {err.code}"}

    def query(self, expr: str) -> tuple[str | None, list]:
        res = self.get("/api/v1/query", query=expr)
        if res.get("status") != "success":
            return res.get("error", "unknown error"), []
        return None, res["data"]["result"]


def describe(result: list) -> str:
    if not result:
        return "no data"
    nan = sum(1 for r in result if r.get("value", [0, "0"])[1] in ("NaN", "+Inf", "-Inf"))
    s = f"{len(result)} series"
    return s + (f" ({nan} NaN/Inf)" if nan else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboards", type=Path, default=REPO / "dashboards")
    ap.add_argument("--rules", type=Path, default=REPO / "alerts", help="directory of rendered rule files")
    ap.add_argument("--rules-loaded", action="store_true",
                    help="the rule files are loaded in this Prometheus: check their health via /api/v1/rules")
    args = ap.parse_args()

    prom = Prom(args.prometheus)
    allow = json.loads(ALLOWLIST.read_text(encoding="utf-8"))
    absent_ok: dict[str, str] = allow["absent_metrics"]
    empty_ok: dict[str, str] = allow["empty_queries"]
    expect_true: dict[str, str] = allow.get("expect_true_after_workload", {})
    used_allow: set[str] = set()

    names_res = prom.get("/api/v1/label/__name__/values")
    if names_res.get("status") != "success":
        print(f"cannot list metric names from {args.prometheus}: {names_res}", file=sys.stderr)
        return 1
    scraped = set(names_res["data"])

    rows: list[tuple[str, str, str, str, str]] = []  # kind, where, expr/selector, result, verdict
    failures: list[str] = []
    unknown_metrics: dict[str, set[str]] = {}

    def check_names(where: str, expr: str) -> list[str]:
        missing = []
        for name, _ in selectors(expr):
            if name in scraped:
                continue
            if name in absent_ok:
                used_allow.add("metric:" + name)
                missing.append(name)
            else:
                unknown_metrics.setdefault(name, set()).add(where)
                missing.append(name)
        return missing

    def verdict_for_empty(key: str, missing: list[str]) -> tuple[str, bool]:
        if key in empty_ok:
            used_allow.add("query:" + key)
            return "allow-listed: " + empty_ok[key], True
        if missing and all(m in absent_ok for m in missing):
            return "allow-listed: " + "; ".join(f"{m}: {absent_ok[m]}" for m in dict.fromkeys(missing)), True
        return "NO DATA", False

    # Dashboards.
    panels = queries = 0
    for path in sorted(args.dashboards.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board.get("panels", []):
            if panel.get("type") == "row":
                continue
            panels += 1
            for t in panel.get("targets", []):
                queries += 1
                where = f"{board['uid']} / {panel['title']} / {t['refId']}"
                expr = substitute_grafana(t["expr"])
                missing = check_names(where, expr)
                err, result = prom.query(expr)
                if err:
                    rows.append(("panel", where, expr, "ERROR " + err, "FAIL"))
                    failures.append(f"{where}: query error {err}")
                    continue
                if result:
                    rows.append(("panel", where, expr, describe(result), "ok"))
                    continue
                verdict, ok = verdict_for_empty(where, missing)
                rows.append(("panel", where, expr, "no data", verdict if ok else "FAIL"))
                if not ok:
                    failures.append(f"{where}: no data")

    # Alerts (rendered rule files, parsed through Prometheus' own rule API when loaded, else by a tiny reader).
    alerts = []
    if args.rules_loaded:
        res = prom.get("/api/v1/rules", type="alert")
        for g in res.get("data", {}).get("groups", []):
            if not Path(g.get("file", "")).name.startswith("observability-live-"):
                continue
            for r in g["rules"]:
                sev = r.get("labels", {}).get("severity", "")
                alerts.append((f"{r['name']}/{sev}", r["query"], r.get("health"), r.get("lastError", ""), r.get("state")))
    else:
        for path in sorted(args.rules.glob("temporal-*.yaml")):
            alerts.extend((f"{n}/{s}", e, None, "", None) for n, s, e in read_rules(path))
    if not alerts:
        failures.append("no alert rules found")
    selector_seen: set[str] = set()
    for name, expr, health, last_error, state in alerts:
        if health is not None and health != "ok":
            failures.append(f"alert {name}: rule health {health} {last_error}")
        missing = check_names(f"alert {name}", expr)
        err, result = prom.query(expr)
        if err:
            rows.append(("alert", name, expr, "ERROR " + err, "FAIL"))
            failures.append(f"alert {name}: query error {err}")
        else:
            note = "condition TRUE now" if result else "quiet"
            if name in expect_true:
                used_allow.add("expect:" + name)
                if not result:
                    note = "FAIL: expected true after the workload: " + expect_true[name]
                    failures.append(f"alert {name}: condition not true, expected after the workload ({expect_true[name]})")
            if state:
                note += f" (Prometheus rule state: {state}, health {health})"
            rows.append(("alert", name, expr, describe(result), note))
        for metric, sel in selectors(expr):
            if sel in selector_seen:
                continue
            selector_seen.add(sel)
            err, result = prom.query(f"count({sel})")
            if err:
                rows.append(("selector", name, sel, "ERROR " + err, "FAIL"))
                failures.append(f"selector {sel}: {err}")
            elif result:
                rows.append(("selector", name, sel, f"{result[0]['value'][1]} series", "ok"))
            else:
                verdict, ok = verdict_for_empty(sel, [metric] if metric not in scraped else [])
                rows.append(("selector", name, sel, "no data", verdict if ok else "FAIL"))
                if not ok:
                    failures.append(f"selector {sel} (alert {name}): no data")

    for name, wheres in sorted(unknown_metrics.items()):
        failures.append(f"unknown metric {name} (not in the scrape, not allow-listed), used by: {', '.join(sorted(wheres))}")

    # Table.
    w_kind, w_where = 8, min(70, max(len(r[1]) for r in rows))
    print(f"{'KIND':<{w_kind}} {'WHERE':<{w_where}} {'RESULT':<22} VERDICT / QUERY")
    for kind, where, expr, result, verdict in rows:
        print(f"{kind:<{w_kind}} {where[:w_where]:<{w_where}} {result[:22]:<22} {verdict}")
        if verdict in ("FAIL",) or kind == "selector":
            print(f"{'':<{w_kind}} {'':<{w_where}} {'':<22}   {expr[:160]}")
    stale = sorted(
        [f"metric:{m}" for m in absent_ok if f"metric:{m}" not in used_allow and m in scraped]
        + [f"query:{q}" for q in empty_ok if f"query:{q}" not in used_allow]
        + [f"expect:{a}" for a in expect_true if f"expect:{a}" not in used_allow]
    )

    def count(kind: str, pred) -> int:
        return sum(1 for r in rows if r[0] == kind and pred(r))

    print()
    print(f"dashboards: {panels} panels, {queries} queries: "
          f"{count('panel', lambda r: r[4] == 'ok')} with data, "
          f"{count('panel', lambda r: r[4].startswith('allow-listed'))} allow-listed empty, "
          f"{count('panel', lambda r: r[4] == 'FAIL')} failing")
    print(f"alerts: {len(alerts)} rules evaluated, {count('alert', lambda r: r[4].startswith('condition TRUE'))} with their condition true now, "
          f"{count('alert', lambda r: r[4] == 'FAIL')} failing; selectors: {len(selector_seen)}: "
          f"{count('selector', lambda r: r[4] == 'ok')} with data, "
          f"{count('selector', lambda r: r[4].startswith('allow-listed'))} allow-listed empty, "
          f"{count('selector', lambda r: r[4] == 'FAIL')} failing")
    print(f"metric names used: {len({m for _, _, e, _, _ in rows for m, _ in selectors(e)})}, "
          f"scraped names available: {len(scraped)}, unknown: {len(unknown_metrics)}")
    if stale:
        print("note: allow-list entries not needed in this run (remove them once that holds everywhere):")
        for s in stale:
            print(f"  {s}")
    if failures:
        print(f"\nFAILED ({len(failures)}):")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("\nobservability-live: OK")
    return 0


def read_rules(path: Path) -> list[tuple[str, str, str]]:
    """(alert, severity, expr) from a rendered rule file, without a YAML library (format of our templates)."""
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    name = sev = None
    expr_lines: list[str] = []
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*- alert: (\S+)", line)
        if m:
            if name:
                out.append((name, sev or "", "\n".join(expr_lines)))
            name, sev, expr_lines = m.group(1), None, []
        m = re.match(r"(\s*)expr: \|\s*$", line)
        if m:
            ind = len(m.group(1))
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > ind):
                expr_lines.append(lines[i].strip())
                i += 1
            continue
        m = re.match(r"\s*severity: (\S+)", line)
        if m:
            sev = m.group(1)
        i += 1
    if name:
        out.append((name, sev or "", "\n".join(expr_lines)))
    return out


if __name__ == "__main__":
    sys.exit(main())
