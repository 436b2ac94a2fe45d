#!/usr/bin/env python3
"""Structure checks of terraform/ (terraform-aws-modules conventions), parsed with python-hcl2.

- every module and example directory has main.tf, variables.tf, outputs.tf, versions.tf and a README.md
- every .tf file parses as HCL2
- every variable has a type and a non-empty description; every output has a description
- versions.tf pins required_version and gives every required provider a source and a version
- no provider blocks inside modules (examples configure providers)
- every variable declared is used somewhere in its directory, and every var.X used is declared
Prints one line per directory and a closing "N passed, N failed" line.
"""
import pathlib
import re
import sys

import hcl2

REQUIRED = ["main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"]


def blocks(doc, kind):
    for entry in doc.get(kind, []):
        for name, body in entry.items():
            yield name.strip('"'), body


def first(value):
    """python-hcl2 wraps attribute values and nested blocks in lists."""
    return value[0] if isinstance(value, list) and value else value


def text(value):
    value = first(value)
    return str(value).strip().strip('"') if value is not None else ""


def check_dir(d: pathlib.Path, is_module: bool) -> list[str]:
    errors = []
    for f in REQUIRED:
        if not (d / f).is_file():
            errors.append(f"missing {f}")
    docs = {}
    for tf in sorted(d.glob("*.tf")):
        try:
            with tf.open() as fh:
                docs[tf.name] = hcl2.load(fh)
        except Exception as err:  # parse errors are reported, not raised
            errors.append(f"{tf.name}: HCL parse error: {err}")
    declared = set()
    for name, doc in docs.items():
        for var, body in blocks(doc, "variable"):
            declared.add(var)
            if name != "variables.tf":
                errors.append(f"variable {var} declared in {name}, not variables.tf")
            if "type" not in body:
                errors.append(f"variable {var} has no type")
            if not text(body.get("description")):
                errors.append(f"variable {var} has no description")
        for out, body in blocks(doc, "output"):
            if name != "outputs.tf":
                errors.append(f"output {out} declared in {name}, not outputs.tf")
            if not text(body.get("description")):
                errors.append(f"output {out} has no description")
        if is_module and doc.get("provider"):
            errors.append(f"{name}: modules must not configure providers")
    versions = docs.get("versions.tf", {})
    tf_blocks = versions.get("terraform", [])
    if not tf_blocks or "required_version" not in tf_blocks[0]:
        errors.append("versions.tf: terraform.required_version missing")
    else:
        providers = {}
        for rp in tf_blocks[0].get("required_providers", []):
            providers.update(rp)
        if not providers:
            errors.append("versions.tf: required_providers missing")
        for pname, spec in providers.items():
            if pname.startswith("__"):  # python-hcl2 8 marks blocks with `__is_block__`
                continue
            spec = first(spec)
            if not isinstance(spec, dict) or "source" not in spec or "version" not in spec:
                errors.append(f"versions.tf: provider {pname} needs source and version")
    source = "\n".join(p.read_text() for p in d.glob("*.tf"))
    used = set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", source))
    for v in sorted(used - declared):
        errors.append(f"var.{v} used but not declared")
    for v in sorted(declared - used):
        errors.append(f"variable {v} declared but never used")
    return errors


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "terraform")
    dirs = [(p, True) for p in sorted((root / "modules").iterdir()) if p.is_dir()]
    dirs += [(p, False) for p in sorted((root / "examples").iterdir()) if p.is_dir()]
    passed = failed = 0
    for d, is_module in dirs:
        errors = check_dir(d, is_module)
        if errors:
            failed += 1
            print(f"FAIL {d}")
            for e in errors:
                print(f"  - {e}")
        else:
            passed += 1
            print(f"ok   {d}")
    print(f"terraform-structure: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
