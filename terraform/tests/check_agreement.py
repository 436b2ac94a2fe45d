#!/usr/bin/env python3
"""The Terraform example agrees with what temporal-bootstrap renders for it.

Usage: check_agreement.py BOOTSTRAP_BIN [PLATFORM_YAML]   (default examples/production.yaml)

Runs the real `render helm-values` and `render terraform-vars` on the platform file, parses the
Terraform code with python-hcl2, and checks:

- secrets: no .tf file under terraform/ spells a Secret name of helm/temporal-platform/
  secret-names.yaml; the example reads that file with yamldecode(file(...)); every Secret the
  rendered values (and the aws module's helm_values) reference is a name of secret-names.yaml,
  and its role is either created by the example (local.secrets) or listed in the example's
  README as created by you;
- node groups: the rendered `node_groups` has the shape the example and the aws module declare
  (same object type in both, every rendered attribute declared, every required one rendered),
  the example's variable has no default (the rendered file is what sizes the cluster), history
  has a group whose label and taint the placement values select and tolerate, and a GPU group
  exists exactly when a rendered worker pool requests GPUs;
- prerequisites: every custom resource kind the rendered values make the chart create
  (ScaledObject, ServiceMonitor, PrometheusRule, Certificate) and the GPU device plugin has an
  operator in the example's prerequisite catalog, local.kinds_used detects it, and the module
  installs prerequisites before the release (depends_on).

Prints one line per check and a closing "N passed, N failed" line; exit 1 on any failure.
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import hcl2
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
EXAMPLE = TF / "examples" / "aws-complete"
MODULE_AWS = TF / "modules" / "aws"
MODULE_PLATFORM = TF / "modules" / "temporal-platform"
SECRET_NAMES = REPO / "helm" / "temporal-platform" / "secret-names.yaml"

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))


def unquote(v):
    """python-hcl2 keeps the quotes of string literals (and wraps some values in lists)."""
    if isinstance(v, list) and len(v) == 1 and not isinstance(v[0], (list, dict)):
        v = v[0]
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def first(v):
    """python-hcl2 wraps some values in a one-element list."""
    return v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], (dict, list)) else v


def load_dir(d):
    docs = {}
    for tf in sorted(d.glob("*.tf")):
        with tf.open() as fh:
            docs[tf.name] = hcl2.load(fh)
    return docs


def blocks(docs, kind):
    for doc in docs.values():
        for entry in doc.get(kind, []):
            yield from entry.items()


def local(docs, name):
    for doc in docs.values():
        for entry in doc.get("locals", []):
            if name in entry:
                return entry[name]
    raise KeyError(f"local.{name}")


def variable(docs, name):
    for var, body in blocks(docs, "variable"):
        if unquote(var) == name:
            return body
    raise KeyError(f"var.{name}")


def render(binary, target, platform, out):
    proc = subprocess.run(
        [binary, "render", target, "-f", str(platform), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"render {target} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")


def walk(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from walk(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from walk(x, f"{path}[{i}]")
    else:
        yield path, v


def variable_text(path, name):
    """The source text of `variable "name" { ... }` in the file at path."""
    text = path.read_text()
    start = text.index(f'variable "{name}"')
    depth = 0
    for i in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    raise ValueError(f"unbalanced variable {name} in {path}")


def object_attributes(var_text):
    """Attribute names of the object in the variable's `type = map(object({...}))`, and which
    are optional(). Read from the source text: python-hcl2 turns type expressions into strings
    whose form changed between its versions."""
    inner = var_text[var_text.index("object({") + len("object({"):]
    attrs, depth, current = {}, 0, ""
    for ch in inner:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            if depth == 0:
                break
            depth -= 1
        if ch in ",\n" and depth == 0:
            current_attrs(current, attrs)
            current = ""
        else:
            current += ch
    current_attrs(current, attrs)
    return attrs


def current_attrs(text, attrs):
    text = text.strip()
    if not text:
        return
    name, _, expr = text.partition("=")
    attrs[name.strip()] = expr.strip().startswith("optional(")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    platform = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "examples" / "production.yaml"
    work = pathlib.Path(tempfile.mkdtemp(prefix="tf-agreement-"))
    render(binary, "helm-values", platform, work)
    render(binary, "terraform-vars", platform, work)
    values = yaml.safe_load((work / "values.yaml").read_text())
    tfvars = json.loads((work / "node-groups.auto.tfvars.json").read_text())
    placement = yaml.safe_load((work / "placement-values.yaml").read_text()) or {}
    names = yaml.safe_load(SECRET_NAMES.read_text())
    role_of = {name: role for role, name in names.items()}
    example = load_dir(EXAMPLE)
    aws = load_dir(MODULE_AWS)
    platform_module = load_dir(MODULE_PLATFORM)
    example_main = (EXAMPLE / "main.tf").read_text()
    print(f"rendered {platform.name} with {binary}; {len(names)} Secret roles in {SECRET_NAMES.relative_to(REPO)}")

    # ------------------------------------------------------------------ secrets
    literal = []
    for tf in sorted(TF.rglob("*.tf")):
        text = tf.read_text()
        for name in names.values():
            if re.search(r'["\']' + re.escape(name) + r'["\']', text):
                literal.append(f"{tf.relative_to(REPO)}: {name}")
    check("no .tf file spells a Secret name of secret-names.yaml", not literal, "; ".join(literal))
    check(
        "the example reads secret-names.yaml with yamldecode(file(...))",
        "yamldecode(file(" in str(local(example, "secret_names")) and "secret-names.yaml" in example_main,
    )
    referenced = {}
    for path, v in walk(values):
        key = path.rsplit(".", 1)[-1]
        if key in ("existingSecret", "caSecret") and isinstance(v, str) and v:
            referenced[v] = path
    aws_roles = set(re.findall(r'var\.secret_names\["([a-z_]+)"\]', (MODULE_AWS / "outputs.tf").read_text()))
    for role in aws_roles:
        referenced.setdefault(names.get(role, f"<unknown role {role}>"), f"modules/aws helm_values ({role})")
    unknown = [f"{n} ({p})" for n, p in referenced.items() if n not in role_of]
    check("every Secret the values reference is named in secret-names.yaml", not unknown, "; ".join(unknown))
    created = set(re.findall(r"local\.secret_names\.([a-z_]+)", str(local(example, "secrets"))))
    readme = (EXAMPLE / "README.md").read_text()
    by_you = set()
    for line in readme.splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|.*\|\s*you\b", line)
        if m:
            by_you.add(m.group(1))
    missing = [
        f"{n} (role {role_of[n]}, {p})"
        for n, p in sorted(referenced.items())
        if n in role_of and role_of[n] not in created and role_of[n] not in by_you
    ]
    check(
        f"every referenced Secret is created by the example ({len(created)} roles) or listed in its README as created by you ({sorted(by_you)})",
        not missing,
        "; ".join(missing),
    )
    wrong_roles = sorted((created | by_you) - set(names))
    check("the example and README use only roles of secret-names.yaml", not wrong_roles, str(wrong_roles))

    # ------------------------------------------------------------------ node groups
    groups = tfvars.get("node_groups", {})
    check("the render has node groups", bool(groups), json.dumps(tfvars)[:200])
    ex_var = variable(example, "node_groups")
    ex_attrs = object_attributes(variable_text(EXAMPLE / "variables.tf", "node_groups"))
    mod_attrs = object_attributes(variable_text(MODULE_AWS / "variables.tf", "node_groups"))
    check("example and aws module declare the same node_groups object", ex_attrs == mod_attrs, f"{ex_attrs} != {mod_attrs}")
    check("the example's node_groups has no default (the rendered file sizes the cluster)", "default" not in ex_var)
    problems = []
    for gname, g in groups.items():
        extra = sorted(set(g) - set(ex_attrs))
        needed = sorted(a for a, optional in ex_attrs.items() if not optional and a not in g)
        if extra:
            problems.append(f"{gname}: not declared {extra}")
        if needed:
            problems.append(f"{gname}: required but not rendered {needed}")
    check(f"rendered groups {sorted(groups)} match the declared attributes {sorted(ex_attrs)}", not problems, "; ".join(problems))
    check("the example passes var.node_groups to the aws module", "node_groups        = var.node_groups" in example_main or re.search(r"node_groups\s*=\s*var\.node_groups", example_main) is not None)

    history = [n for n, g in groups.items() if g.get("labels", {}).get("temporal-platform/workload") == "history"]
    hp = (placement.get("server") or {}).get("history") or {}
    ok = len(history) == 1
    detail = f"history groups {history}"
    if ok:
        g = groups[history[0]]
        selector_ok = all(g["labels"].get(k) == v for k, v in (hp.get("nodeSelector") or {}).items()) and bool(hp.get("nodeSelector"))
        effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
        tolerated = all(
            any(t.get("key") == taint["key"] and t.get("value") == taint.get("value") and t.get("effect") == effect[taint["effect"]] for t in hp.get("tolerations") or [])
            for taint in g.get("taints", [])
        )
        ok = selector_ok and tolerated and bool(g.get("taints"))
        detail = f"group {g}, placement {hp}"
    check("history has its own tainted group, selected and tolerated by the placement values", ok, detail)
    gpu_pools = [p["name"] for p in values.get("workerPools", []) if (p.get("resources", {}).get("requests", {}) or {}).get("nvidia.com/gpu")]
    gpu_groups = [n for n, g in groups.items() if g.get("ami_type") == "AL2023_x86_64_NVIDIA"]
    check(f"a GPU group exists exactly when a pool requests GPUs (pools {gpu_pools}, groups {gpu_groups})", bool(gpu_pools) == bool(gpu_groups))
    if gpu_pools:
        placed = {p["name"]: p for p in placement.get("workerPools", [])}
        g = groups[gpu_groups[0]]
        bad = [n for n in gpu_pools if not (placed.get(n, {}).get("nodeSelector") and all(g["labels"].get(k) == v for k, v in placed[n]["nodeSelector"].items()))]
        check("every GPU pool is placed on the GPU group", not bad, str(bad))
    check("the example passes the placement values after the rendered values", "file(var.placement_values_file)" in example_main)

    # ------------------------------------------------------------------ prerequisites
    kinds = set()
    if any((p.get("autoscaling") or {}).get("enabled") for p in values.get("workerPools", [])):
        kinds |= {"ScaledObject", "Prometheus"}
    monitoring = values.get("monitoring") or {}
    if (monitoring.get("serviceMonitor") or {}).get("enabled"):
        kinds.add("ServiceMonitor")
    if (monitoring.get("prometheusRule") or {}).get("enabled"):
        kinds.add("PrometheusRule")
    if (values.get("certManager") or {}).get("enabled"):
        kinds.add("Certificate")
    if gpu_groups:
        kinds.add("nvidia.com/gpu")
    catalog = first(local(example, "prerequisite_catalog"))
    provided = {}
    for chart, spec in catalog.items():
        spec = first(spec)
        for kind in first(spec.get("provides", [])) if isinstance(first(spec.get("provides", [])), list) else spec.get("provides", []):
            provided.setdefault(unquote(kind), []).append(chart)
    # The source text of local.kinds_used (python-hcl2's rendering of expressions varies).
    kinds_expr = example_main[example_main.index("kinds_used ="):example_main.index("prerequisite_catalog =")]
    for kind in ["ScaledObject", "ServiceMonitor", "PrometheusRule", "Certificate", "nvidia.com/gpu"]:
        check(f"{kind}: an operator in the catalog provides it ({provided.get(kind)}) and local.kinds_used detects it", kind in provided and f'"{kind}"' in kinds_expr)
    missing = sorted(k for k in kinds if k not in provided)
    check(f"every kind the rendered values need {sorted(kinds)} has a prerequisite", not missing, str(missing))
    check("the example passes its prerequisites to the platform module", re.search(r"prerequisite_charts\s*=\s*local\.prerequisites", example_main) is not None)
    depends = []
    for rtype, rs in blocks(platform_module, "resource"):
        if unquote(rtype) == "helm_release":
            for rname, body in rs.items():
                if unquote(rname) == "this":
                    depends = [str(d) for d in body.get("depends_on", [])]
    check("the chart's release depends on the prerequisite releases", any("helm_release.prerequisite" in d for d in depends), str(depends))

    passed = sum(results)
    failed = len(results) - passed
    print(f"terraform-agreement: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
