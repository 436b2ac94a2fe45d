#!/usr/bin/env python3
"""The documented deployment paths, installed into a real Kubernetes API server.

Started by scripts/checks/kube-install (scripts/lib/kube.sh): kube-apiserver and etcd built from
the published Go modules, the Helm CLI built from helm.sh/helm/v4, the operators' CRDs from their
Go modules. No kubelet or controllers run: the API server validates, admits (Pod Security
`restricted`, RBAC) and stores what each path creates, and this script asserts:

  1. every object of each path is accepted (CRD kinds against the operators' real CRDs), with no
     Pod Security warning;
  2. every Secret and ConfigMap a pod template references is created by the path (the chart,
     install.sh, an operator's documented naming, the daemon's certificates) or listed in the
     README's "Secrets you create";
  3. the bootstrap's ServiceAccount may do exactly what the certificates step does
     (SubjectAccessReview) and nothing more;
  4. `temporal-bootstrap apply --only certificates` with that ServiceAccount's token publishes the
     certificate Secrets to this API server, restores the PKI from them into an empty directory,
     and a converged re-run changes nothing.

Paths: the chart with the rendered production values (ci/bootstrap-values.yaml, which is
`render helm-values -f examples/production.yaml`), the chart with the cert-manager values, and
the k3s manifests (installed as k3s' helm-controller would: the HelmChart's valuesContent, then
the HelmChartConfig install.sh writes). Helm hook Jobs never run here; a watcher marks each hook
Job complete the way the Job controller would, so `helm install` runs its hooks for real.

Environment: KUBE_API_URL, KUBE_ADMIN_TOKEN, KUBE_CA_FILE, KUBECONFIG, HELM, KUBE_CRDS,
TB_BOOTSTRAP_BIN. Exits 1 on any failure.
"""
import base64
import datetime
import json
import os
import pathlib
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

from checks import Checks, converged

# YAML 1.1's `=` "value" tag: PyYAML has no constructor for it, while the CRDs (enum values such as
# `- =` in prometheus-operator's) mean the plain string.
yaml.SafeLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "temporal-platform"
API = os.environ["KUBE_API_URL"]
TOKEN = os.environ["KUBE_ADMIN_TOKEN"]
TLS = ssl.create_default_context(cafile=os.environ["KUBE_CA_FILE"])
HELM = os.environ["HELM"]
RELEASE = "tp"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}

check = Checks("kube-install")


# ------------------------------------------------------------------------------ REST
def call(method: str, path: str, body=None, token: str = TOKEN, content_type="application/json"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        payload = err.read()
        try:
            return err.code, json.loads(payload)
        except ValueError:
            return err.code, {"message": payload.decode(errors="replace")}


PLURALS: dict[tuple[str, str], tuple[str, bool]] = {}


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a kind, from discovery (cached)."""
    key = (api_version, kind)
    if key not in PLURALS:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        status, listing = call("GET", base)
        assert status == 200, f"discovery of {api_version}: {status} {listing}"
        for r in listing["resources"]:
            if "/" not in r["name"]:
                PLURALS[(api_version, r["kind"])] = (r["name"], r["namespaced"])
    plural, namespaced = PLURALS[key]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def create(obj: dict, namespace: str | None = None) -> tuple[int, dict]:
    ns = obj["metadata"].get("namespace") or namespace
    obj = json.loads(json.dumps(obj))
    if ns:
        obj["metadata"]["namespace"] = ns
    return call("POST", resource_path(obj["apiVersion"], obj["kind"], ns), obj)


def get(api_version: str, kind: str, namespace: str | None, name: str):
    return call("GET", resource_path(api_version, kind, namespace, name))


def ensure_namespace(name: str, labels: dict | None = None):
    status, body = create({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "labels": labels or RESTRICTED}})
    assert status in (201, 409), f"namespace {name}: {status} {body.get('message')}"


# ------------------------------------------------------------------------------ CRDs
def install_crds():
    crd_dir = pathlib.Path(os.environ["KUBE_CRDS"])
    names = []
    for f in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            status, body = create(doc)
            check(status in (201, 409), f"CRD {doc['metadata']['name']} accepted", f"{status} {body.get('message')}")
            names.append(doc["metadata"]["name"])
    deadline = time.time() + 60
    pending = set(names)
    while pending and time.time() < deadline:
        for name in list(pending):
            _, crd = get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
            # A CRD created a moment ago can report `conditions: null` until its controller runs.
            conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
            if conds.get("Established") == "True":
                pending.discard(name)
        time.sleep(0.2)
    check(not pending, f"{len(names)} CRDs established", f"not established: {sorted(pending)}")
    PLURALS.clear()


# ------------------------------------------------------------------------------ hook Jobs
class HookJobCompleter(threading.Thread):
    """Marks Helm hook Jobs complete, as the Job controller would once their pod succeeded."""

    def __init__(self, namespace: str):
        super().__init__(daemon=True)
        self.namespace, self.stop, self.completed = namespace, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            status, jobs = call("GET", f"/apis/batch/v1/namespaces/{self.namespace}/jobs")
            for job in jobs.get("items", []) if status == 200 else []:
                annotations = job["metadata"].get("annotations", {})
                done = any(c["type"] == "Complete" for c in (job.get("status") or {}).get("conditions") or [])
                if "helm.sh/hook" in annotations and not done:
                    self.complete(job)
            self.stop.wait(0.3)

    def complete(self, job):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {"startTime": now, "completionTime": now, "succeeded": 1, "active": 0, "terminating": 0,
                  "ready": 0, "uncountedTerminatedPods": {},
                  "conditions": [
                      {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
                      {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}]}
        name = job["metadata"]["name"]
        code, body = call("PATCH", f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}/status",
                          {"status": status}, content_type="application/merge-patch+json")
        if code == 200:
            self.completed.append(name)
        else:
            print(f"  (hook Job {name}: status patch {code}: {body.get('message')})")


# ------------------------------------------------------------------------------ helm
def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=600)


def admission_warnings(stderr: str) -> list[str]:
    """Warnings the API server sent with a response (Pod Security, deprecated APIs). Not: Helm's
    note on the chart's symbolic links, or client-go's own watch diagnostics (`reflector.go`:
    "watch ended with error" when Helm's --wait watch is cancelled), which are not admission."""
    return [line for line in stderr.splitlines()
            if "warning" in line.lower() and "symbolic link" not in line and "reflector.go" not in line]


def warnings_are_seen():
    """Control case: a privileged Deployment in a restricted namespace must produce the warning the
    checks below require to be absent, or their passing would mean nothing."""
    ensure_namespace("control")
    with tempfile.TemporaryDirectory() as tmp:
        chart = pathlib.Path(tmp) / "control"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: control\nversion: 0.1.0\n")
        (chart / "templates" / "d.yaml").write_text(yaml.safe_dump({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "privileged"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                "containers": [{"name": "c", "image": "example.invalid/c:1", "securityContext": {"privileged": True}}]}}}}))
        result = helm("install", "control", str(chart), "-n", "control")
    check(result.returncode == 0 and bool(admission_warnings(result.stderr)),
          "control: Helm shows the API server's Pod Security warning for a privileged pod template",
          result.stderr[-500:])


def helm_install(label: str, namespace: str, values_files: list[pathlib.Path]) -> list[dict] | None:
    completer = HookJobCompleter(namespace)
    completer.start()
    args = ["install", RELEASE, str(CHART), "-n", namespace, "--timeout", "3m"]
    for f in values_files:
        args += ["-f", str(f)]
    result = helm(*args)
    completer.stop.set()
    completer.join()
    ok = check(result.returncode == 0, f"{label}: helm install accepted by the API server",
               (result.stderr or result.stdout)[-1500:])
    warnings = admission_warnings(result.stderr)
    check(not warnings, f"{label}: no admission warnings (Pod Security restricted)", "\n".join(warnings[:10]))
    if not ok:
        return None
    print(f"  hook Jobs completed for Helm: {completer.completed}")
    manifest = helm("get", "manifest", RELEASE, "-n", namespace).stdout
    hooks = helm("get", "hooks", RELEASE, "-n", namespace).stdout
    docs = [d for d in yaml.safe_load_all(manifest + "\n---\n" + hooks) if d]
    missing = []
    for d in docs:
        status, _ = get(d["apiVersion"], d["kind"], d["metadata"].get("namespace", namespace), d["metadata"]["name"])
        if status != 200:
            missing.append(f"{d['kind']}/{d['metadata']['name']} ({status})")
    check(not missing, f"{label}: all {len(docs)} objects stored", ", ".join(missing))
    return docs


# ------------------------------------------------------------------------------ references
def pod_templates(docs: list[dict]):
    for d in docs:
        spec = d.get("spec") or {}
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, spec["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield d, spec["jobTemplate"]["spec"]["template"]["spec"]


def references(pod: dict) -> set[tuple[str, str]]:
    refs = set()
    for v in pod.get("volumes", []):
        if "secret" in v:
            refs.add(("Secret", v["secret"]["secretName"]))
        if "configMap" in v:
            refs.add(("ConfigMap", v["configMap"]["name"]))
        for src in (v.get("projected") or {}).get("sources", []):
            if "secret" in src:
                refs.add(("Secret", src["secret"]["name"]))
            if "configMap" in src:
                refs.add(("ConfigMap", src["configMap"]["name"]))
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        for e in c.get("env", []):
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                refs.add(("Secret", vf["secretKeyRef"]["name"]))
            if "configMapKeyRef" in vf:
                refs.add(("ConfigMap", vf["configMapKeyRef"]["name"]))
        for ef in c.get("envFrom", []):
            if "secretRef" in ef:
                refs.add(("Secret", ef["secretRef"]["name"]))
            if "configMapRef" in ef:
                refs.add(("ConfigMap", ef["configMapRef"]["name"]))
    for s in pod.get("imagePullSecrets", []):
        refs.add(("Secret", s["name"]))
    return refs


def readme_user_secrets() -> set[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"^### Secrets you create\n(.*?)(?=^#)", text, re.M | re.S)
    assert m, "README.md has no '### Secrets you create' section"
    return set(re.findall(r"`([a-z0-9][a-z0-9.-]*)`", m.group(1)))


def certificate_secrets(docs: list[dict]) -> set[str]:
    """Secrets the daemon creates itself (pki.kubernetes_secrets of its platform.yaml)."""
    out = set()
    for d in docs:
        if d["kind"] == "ConfigMap" and "platform.yaml" in d.get("data", {}):
            ks = ((yaml.safe_load(d["data"]["platform.yaml"]) or {}).get("pki") or {}).get("kubernetes_secrets") or {}
            out |= {ks[k] for k in ("ca", "frontend", "internode") if k in ks} | set((ks.get("clients") or {}).values())
    return out


def check_references(label: str, namespace: str, docs: list[dict], created_elsewhere: dict[str, str]):
    """created_elsewhere: name -> who creates it (install.sh, an operator) on this path."""
    user = readme_user_secrets()
    daemon = certificate_secrets(docs)
    problems = []
    for doc, pod in pod_templates(docs):
        ns = doc["metadata"].get("namespace", namespace)
        for kind, name in sorted(references(pod)):
            status, _ = get("v1", kind, ns, name)
            if status == 200 or name in created_elsewhere or (kind == "Secret" and (name in daemon or name in user)):
                continue
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} -> {kind} {name}")
    check(not problems, f"{label}: every Secret/ConfigMap a pod references has a creator", "; ".join(problems))


# ------------------------------------------------------------------------------ RBAC
def can(sa_user: str, verb: str, resource: str, namespace: str, name: str = "") -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": sa_user, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                                    "system:authenticated"],
                       "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource,
                                              "name": name, "group": ""}}}
    status, body = call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, f"SubjectAccessReview: {status} {body}"
    return bool(body["status"].get("allowed"))


def check_bootstrap_rbac(label: str, namespace: str, docs: list[dict]):
    owned = sorted(certificate_secrets(docs))
    sa = next(d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "bootstrap")
    user = f"system:serviceaccount:{namespace}:{sa['metadata']['name']}"
    needed = [("create", "secrets", "")] + [(v, "secrets", n) for n in owned for v in ("get", "update")]
    denied = [(v, "secrets", n) for n in owned for v in ("delete", "patch")]
    denied += [("list", "secrets", ""), ("watch", "secrets", ""), ("get", "secrets", "temporal-postgres"),
               ("get", "configmaps", ""), ("create", "pods", ""), ("get", "serviceaccounts", "")]
    missing = [f"{v} {r}/{n}" for v, r, n in needed if not can(user, v, r, namespace, n)]
    extra = [f"{v} {r}/{n or '*'}" for v, r, n in denied if can(user, v, r, namespace, n)]
    extra += [f"get secrets/{owned[0]} in default" for _ in [0] if can(user, "get", "secrets", "default", owned[0])]
    check(not missing, f"{label}: the bootstrap ServiceAccount may do what the certificates step does ({len(needed)} checks)", ", ".join(missing))
    check(not extra, f"{label}: and nothing more ({len(denied) + 1} checks)", ", ".join(extra))
    return sa["metadata"]["name"], owned


def check_certificates_step(label: str, namespace: str, docs: list[dict], sa_name: str, owned: list[str]):
    """The real certificates step against this API server with the ServiceAccount's own token."""
    code, body = call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa_name}/token",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 3600}})
    if not check(code == 201, f"{label}: TokenRequest for the bootstrap ServiceAccount", str(body.get("message"))):
        return
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-temporal-platform-platform")
    platform = yaml.safe_load(cm["data"]["platform.yaml"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        token_file = tmp / "token"
        token_file.write_text(body["status"]["token"])
        token_file.chmod(0o600)
        platform["pki"]["dir"] = str(tmp / "state" / "pki")
        (tmp / "state").mkdir(mode=0o700)
        cfg = tmp / "platform.yaml"
        cfg.write_text(yaml.safe_dump(platform))
        env = {**os.environ, "TB_KUBE_API_URL": API, "TB_KUBE_TOKEN_FILE": str(token_file),
               "TB_KUBE_CA_FILE": os.environ["KUBE_CA_FILE"]}

        def apply():
            return subprocess.run([os.environ["TB_BOOTSTRAP_BIN"], "apply", "--only", "certificates", "-f", str(cfg),
                                   "--output", "json"], capture_output=True, text=True, env=env, timeout=120)

        def versions():
            return {n: get("v1", "Secret", namespace, n)[1].get("metadata", {}).get("resourceVersion") for n in owned}

        first = apply()
        if not check(first.returncode == 0, f"{label}: certificates step publishes with the ServiceAccount token",
                     first.stderr[-1500:]):
            return
        published = versions()
        check(all(published.values()), f"{label}: {len(owned)} certificate Secrets in the API server",
              str({k: v for k, v in published.items() if not v}))
        key = get("v1", "Secret", namespace, next(n for n in owned if n.endswith("-ca")))[1]
        check(key.get("type") in ("kubernetes.io/tls", "Opaque"), f"{label}: CA Secret stored", str(key.get("type")))
        # Restore: an empty PKI directory (a new pod) is filled from the Secrets, nothing is reissued.
        for f in sorted((tmp / "state" / "pki").rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (tmp / "state" / "pki").rmdir()
        second = apply()
        check(second.returncode == 0 and versions() == published,
              f"{label}: a new pod restores the PKI from the Secrets without writing them", second.stderr[-800:])
        keys = list((tmp / "state" / "pki").rglob("*key.pem"))
        check(bool(keys) and all(k.stat().st_mode & 0o777 == 0o600 for k in keys),
              f"{label}: restored private keys are 0600", str([oct(k.stat().st_mode) for k in keys]))
        third = apply()
        check(converged(third, 1) and versions() == published,
              f"{label}: a converged re-run changes nothing", (third.stdout + third.stderr)[-800:])


# ------------------------------------------------------------------------------ paths
def secret_names() -> dict[str, str]:
    return yaml.safe_load((CHART / "secret-names.yaml").read_text())


def chart_path(label: str, namespace: str, values: list[pathlib.Path], bootstrap_certs: bool):
    ensure_namespace(namespace)
    ensure_namespace("monitoring", {"pod-security.kubernetes.io/enforce": "privileged"})
    docs = helm_install(label, namespace, values)
    if docs is None:
        return
    # cert-manager writes each Certificate's spec.secretName.
    issued = {d["spec"]["secretName"]: "cert-manager" for d in docs if d["kind"] == "Certificate"}
    check_references(label, namespace, docs, issued)
    if bootstrap_certs:
        sa_name, owned = check_bootstrap_rbac(label, namespace, docs)
        check_certificates_step(label, namespace, docs, sa_name, owned)


def k3s_path():
    label = "k3s"
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        bundle = root / "bundle"
        (bundle / "charts").mkdir(parents=True)
        (root / "node").mkdir()
        result = subprocess.run(["bash", str(REPO / "k3s" / "install.sh"), "--root", str(root / "node"),
                                 "--bundle-dir", str(bundle), "--visibility", "opensearch-operator"],
                                capture_output=True, text=True, timeout=120)
        if not check(result.returncode == 0, f"{label}: install.sh --root", result.stderr[-800:]):
            return
        manifests = sorted((root / "node" / "var/lib/rancher/k3s/server/manifests").glob("*.yaml"))
        docs = [d for m in manifests for d in yaml.safe_load_all(m.read_text()) if d]
    # k3s creates the HelmChart and HelmChartConfig CRDs itself; Namespaces first, as k3s' deploy
    # controller applies them in file order.
    rejected, unverifiable = [], []
    for d in docs:
        if d["kind"].startswith("OpenSearch"):
            unverifiable.append(d["kind"])  # no CRD: the operator's module is not on the Go proxy
            continue
        status, body = create(d)
        if status not in (201, 409):
            rejected.append(f"{d['kind']}/{d['metadata']['name']}: {status} {body.get('message')}")
    check(not rejected, f"{label}: all {len(docs) - len(unverifiable)} k3s manifest objects accepted", "; ".join(rejected))
    print(f"  not verifiable here (no CRD source): {sorted(set(unverifiable))}")
    chart = next(d for d in docs if d["kind"] == "HelmChart" and d["metadata"]["name"] == "temporal-platform")
    config = next(d for d in docs if d["kind"] == "HelmChartConfig" and d["metadata"]["name"] == "temporal-platform")
    namespace = chart["spec"]["targetNamespace"]
    names = secret_names()
    # What install.sh creates with kubectl (not run here: no kubectl), from the same names.
    for role in ("postgres", "postgres_admin", "elasticsearch"):
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                  "metadata": {"name": names[role]},
                  "data": {"username": base64.b64encode(b"temporal").decode(), "password": base64.b64encode(os.urandom(12)).decode()}}
        status, body = create(secret, namespace)
        check(status in (201, 409), f"{label}: Secret {names[role]} as install.sh creates it", str(body.get("message")))
    with tempfile.TemporaryDirectory() as tmp:
        values = pathlib.Path(tmp) / "values.yaml"
        values.write_text(chart["spec"]["valuesContent"])
        overlay = pathlib.Path(tmp) / "config.yaml"
        overlay.write_text(config["spec"]["valuesContent"])
        installed = helm_install(label, namespace, [values, overlay])
    if installed is None:
        return
    cnpg = {f"{d['metadata']['name']}-ca": "CloudNativePG (<cluster>-ca)" for d in docs if d["kind"] == "Cluster"}
    check_references(label, namespace, installed, cnpg)
    check(names["postgres_ca"] in cnpg, f"{label}: the CNPG cluster's CA Secret is the chart's postgres_ca", str(cnpg))


def main() -> int:
    install_crds()
    warnings_are_seen()
    ci = CHART / "ci"
    operator = ci / "_operator.yaml"
    chart_path("chart, rendered production values", "prod", [ci / "bootstrap-values.yaml", operator], True)
    chart_path("chart, cert-manager values", "cm", [ci / "cert-manager-values.yaml", operator], False)
    k3s_path()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
