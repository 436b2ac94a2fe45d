#!/usr/bin/env python3
"""Validate every rendered platform.yaml with the real `temporal-bootstrap validate`.

Usage: validate_platform.py BINARY RENDERED_DIR
For each case under RENDERED_DIR, the platform ConfigMap's platform.yaml (and the codec server's,
when the case enables it) is validated by the bootstrap itself, so the chart and the config model
cannot drift apart.
"""
import pathlib
import subprocess
import sys
import tempfile

import yaml

def validate(binary, text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        run = subprocess.run([binary, "validate", "-f", f.name], capture_output=True, text=True)
        return run.returncode, (run.stdout + run.stderr).strip()


def main() -> int:
    binary, rendered = sys.argv[1], pathlib.Path(sys.argv[2])
    passed = failed = 0
    configmaps = sorted(rendered.glob("*/configmap-*-platform.yaml")) + sorted(rendered.glob("*/configmap-*-codec.yaml"))
    for cm in configmaps:
        case = cm.parent.name
        if cm.name.endswith("-codec.yaml"):
            case += " (codec)"
        text = yaml.safe_load(cm.read_text())["data"]["platform.yaml"]
        if case.endswith("(codec)") and "codec" not in yaml.safe_load(text):
            failed += 1
            print(f"FAIL {case}: the codec platform.yaml has no codec section")
            continue
        rc, out = validate(binary, text)
        if rc == 0:
            passed += 1
            print(f"ok   {case}: {out.splitlines()[-1] if out else 'valid'}")
        else:
            failed += 1
            print(f"FAIL {case}: {out}")
    print(f"platform-yaml: {passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
