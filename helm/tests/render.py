#!/usr/bin/env python3
"""Render the chart with every ci/*-values.yaml through the real Helm engine (helm-python-sdk).

Extra cases can be given as NAME=VALUES_FILE after OUT (e.g. the values embedded in the k3s
HelmChart). Every case gets ci/_operator.yaml merged on top, the second values file an operator
passes (the bootstrap image reference). For each values file: validate it against values.schema.json, `helm lint --strict` it, render
(install and upgrade must give the same objects), split the output into
one file per Kubernetes object under OUT/<case>/<kind>-<name>.yaml, and write OUT/<case>/all.yaml.
Exits non-zero when any values file fails the schema or the templates fail to render.
"""
import pathlib
import sys

import helm_python as helm
import yaml

from checks import merge

RELEASE = "tp"
NAMESPACE = "temporal"
KUBE_VERSION = "v1.33.0"


def main() -> int:
    chart_dir = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    failures = 0
    total = 0
    operator = yaml.safe_load((chart_dir / "ci" / "_operator.yaml").read_text()) or {}
    with helm.Chart.load(str(chart_dir)) as chart:
        cases = [(f.name.removesuffix("-values.yaml"), f) for f in sorted((chart_dir / "ci").glob("*-values.yaml"))]
        cases += [(name, pathlib.Path(path)) for name, path in (arg.split("=", 1) for arg in sys.argv[3:])]
        for case, values_file in cases:
            values = merge(yaml.safe_load(values_file.read_text()) or {}, operator)
            try:
                chart.validate_schema(values)
                report = helm.lint(str(chart_dir), values, strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION)
                problems = report.get("errors", []) + [m["error"] for m in report["messages"] if m["severity"] >= 2]
                if problems:
                    raise RuntimeError(f"helm lint --strict: {problems}")
                rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
                upgraded = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)
                if {k: v for k, v in upgraded.items() if not k.endswith("NOTES.txt")} != {
                    k: v for k, v in rendered.items() if not k.endswith("NOTES.txt")
                }:
                    raise RuntimeError("install and upgrade renders differ")
            except Exception as err:  # the SDK raises typed errors; report them all the same way
                print(f"FAIL {values_file.name}: {err}")
                failures += 1
                continue
            case_dir = out / case
            case_dir.mkdir(parents=True, exist_ok=True)
            docs = []
            for template, text in sorted(rendered.items()):
                if template.endswith("NOTES.txt"):
                    (case_dir / "NOTES.txt").write_text(text)
                    continue
                for doc in yaml.safe_load_all(text):
                    if doc:
                        docs.append(doc)
            for doc in docs:
                name = f"{doc['kind']}-{doc['metadata']['name']}".lower()
                (case_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            (case_dir / "all.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
            total += len(docs)
            print(f"ok   {values_file.name}: schema valid, lint clean, {len(docs)} objects rendered")
    print(f"rendered {total} objects from {len(cases)} values files, {failures} failed")
    return 1 if failures else 0



if __name__ == "__main__":
    sys.exit(main())
