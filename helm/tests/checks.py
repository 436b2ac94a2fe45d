"""What the deployment checks share: PASS/FAIL lines with a running tally, Helm's rule for
merging a later values file, and reading `temporal-bootstrap --output json apply`."""
import json
import subprocess


class Checks:
    """Prints one PASS/FAIL line per check and remembers the failures."""

    def __init__(self, name: str):
        self.name, self.failures = name, []

    def __call__(self, ok: bool, label: str, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {label}{': ' + detail if detail and not ok else ''}")
        if not ok:
            self.failures.append(label)
        return ok

    def summary(self) -> int:
        print(f"{self.name}: {len(self.failures)} failed" + (f": {self.failures}" if self.failures else ""))
        return 1 if self.failures else 0


def merge(base: dict, over: dict) -> dict:
    """Helm's rule for a later values file: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def converged(run: subprocess.CompletedProcess, steps: int) -> bool:
    """An `apply --output json` run that succeeded and found `steps` steps up to date, no change."""
    if run.returncode != 0:
        return False
    reported = json.loads(run.stdout).get("steps", [])
    return len(reported) == steps and all(s["status"] == "up-to-date" and not s["changes"] for s in reported)
