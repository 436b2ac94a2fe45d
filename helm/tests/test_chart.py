#!/usr/bin/env python3
"""Unit tests of the temporal-platform chart, on manifests rendered by the real Helm engine.

Every ci/*-values.yaml is rendered (helm-python-sdk) and each invariant below is asserted on
every render. Run: python helm/tests/test_chart.py [CHART_DIR]. Prints one line per test and a
closing "N passed, N failed" line; exits 1 on any failure.
"""
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import helm_python as helm
import yaml

from checks import merge

CHART = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent / "temporal-platform")
RELEASE, NAMESPACE = "tp", "temporal"
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
# Helm creates hook resources of equal weight in kind order: these kinds before any Job.
KINDS_BEFORE_JOBS = {"ServiceAccount", "ConfigMap", "Secret", "Role", "RoleBinding"}
SECRET_VALUE_KEYS = re.compile(r"(existingSecret|caSecret|clientSecret|credentialsSecret|tokenSecret\.name)$")


def render(chart, values):
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def pod_spec(doc):
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def hook_weight(doc):
    return int(doc["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))


def is_hook(doc):
    return "helm.sh/hook" in doc["metadata"].get("annotations", {})


def component(doc):
    return doc["metadata"]["labels"].get("app.kubernetes.io/component")


def strip_server_template(text):
    """The server config is itself a Go template (# enable-template): neutralise its actions."""
    return re.sub(r"\{\{.*?\}\}", '"x"', text)


def walk_values(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_values(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_values(v, f"{path}[{i}]")
    else:
        yield path, node


# ------------------------------------------------------------------------------------------ tests


def test_schema_job_is_first_hook(case, values, docs):
    jobs = [d for d in docs if d["kind"] == "Job" and component(d) == "bootstrap-schema"]
    assert len(jobs) == 1, f"expected one schema Job, found {len(jobs)}"
    job = jobs[0]
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"pre-install", "pre-upgrade"}, f"schema Job hooks are {hooks}"
    w = hook_weight(job)
    for d in docs:
        if d is job or not is_hook(d):
            continue
        other = hook_weight(d)
        if d["kind"] in KINDS_BEFORE_JOBS:
            assert other >= w, f"{d['kind']}/{d['metadata']['name']} has weight {other} < schema Job {w}"
        else:
            assert other > w, f"{d['kind']}/{d['metadata']['name']} weight {other} not above schema Job {w}"
    args = pod_spec(job)["containers"][0]["args"]
    joined = " ".join(args)
    assert "apply --only persistence,visibility -f /etc/temporal-bootstrap/platform.yaml" in joined, joined
    # server pods are release resources, created only after the pre-install/pre-upgrade hooks succeed
    for d in docs:
        if d["kind"] == "Deployment" and component(d) in {"frontend", "history", "matching", "worker", "internal-frontend"}:
            assert not is_hook(d), f"server Deployment {d['metadata']['name']} must not be a hook"


def test_history_and_matching_never_autoscaled(case, values, docs):
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    scalers = [d for d in docs if d["kind"] in {"HorizontalPodAutoscaler", "ScaledObject", "VerticalPodAutoscaler"}]
    for s in scalers:
        ref = s["spec"].get("scaleTargetRef") or s["spec"].get("targetRef")
        target = by_name.get((ref.get("kind", "Deployment"), ref["name"]))
        assert target is not None, f"{s['kind']}/{s['metadata']['name']} targets a missing {ref}"
        assert component(target) not in {"history", "matching"}, f"{s['kind']} targets {component(target)}"
        assert component(target).startswith("pool-"), f"{s['kind']} targets non-pool {component(target)}"
    pools = [p for p in values.get("workerPools", []) if p.get("autoscaling", {}).get("enabled")]
    assert len([s for s in scalers if s["kind"] == "ScaledObject"]) == len(pools)
    for s in scalers:
        if s["kind"] != "ScaledObject":
            continue
        behavior = s["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        pool = next(p for p in pools if s["metadata"]["name"].endswith(f"pool-{p['name']}"))
        auto = {**values["workerAutoscaling"], **pool["autoscaling"]}
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == auto["scaleUpWindowSeconds"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == auto["scaleDownWindowSeconds"]
        # scale-up at least as fast as scale-down, scale-down bounded
        assert {(p["type"], p["value"]) for p in behavior["scaleUp"]["policies"]} == {("Percent", auto["scaleUpPercent"]), ("Pods", auto["scaleUpPods"])}
        assert behavior["scaleDown"]["policies"] == [{"type": "Percent", "value": auto["scaleDownPercent"], "periodSeconds": auto["scaleDownPeriodSeconds"]}]
        assert s["spec"]["minReplicaCount"] == auto["minReplicas"] and s["spec"]["maxReplicaCount"] == auto["maxReplicas"]
        triggers = {tr["name"]: tr for tr in s["spec"]["triggers"]}
        assert set(triggers) == {"schedule-to-start", "slot-utilization"}, sorted(triggers)
        assert all(tr["type"] == "prometheus" and tr["metricType"] == "Value" for tr in triggers.values())
        q = triggers["schedule-to-start"]["metadata"]["query"]
        assert "task_schedule_to_start_latency_bucket" in q and "approximate_backlog_age_seconds" in q, q
        assert f"/ {auto['scaleUpAboveSeconds']} > 1, {auto['maxScaleUpFactor']})" in q, q
        assert f'taskqueue="{server_label(pool["taskQueue"])}"' in q, q
        assert f'namespace="{server_label(pool["namespace"])}"' in q, q
        assert f"[{rate_window(values, auto)}]" in q, q
        slots = triggers["slot-utilization"]["metadata"]
        assert slots["threshold"] == str(auto["targetSlotUtilization"]), slots
        # SDK metrics keep label values unsanitised
        assert f'task_queue="{pool["taskQueue"]}"' in slots["query"] and f'namespace="{pool["namespace"]}"' in slots["query"], slots
        # KEDA owns the replica count of an autoscaled pool
        dep = by_name[("Deployment", s["spec"]["scaleTargetRef"]["name"])]
        assert "replicas" not in dep["spec"], "autoscaled Deployment must not set replicas"


def rate_window(values, auto) -> str:
    """The rate window the chart uses: the pool's, or 4 x the ServiceMonitor interval."""
    if auto.get("rateWindow"):
        return auto["rateWindow"]
    interval = values["monitoring"]["serviceMonitor"]["interval"]
    seconds = int(interval[:-1]) * (60 if interval.endswith("m") else 1)
    return f"{4 * seconds}s"


def server_label(value: str) -> str:
    """What the server's metrics (tally's default sanitizer) make of a label value."""
    return re.sub(r"[^A-Za-z0-9_]", "_", value)


def query_labels_for_odd_names(chart):
    """Label matchers of both triggers for a pool whose names need sanitising on the server side."""
    base = merge(yaml.safe_load((CHART / "ci" / "worker-pools-values.yaml").read_text()), operator_values())
    pool = dict(base["workerPools"][0], namespace="payments.prod-eu", taskQueue="orders/v2 ü.x")
    base["workerPools"] = [pool]
    so = next(d for d in render(chart, base) if d["kind"] == "ScaledObject")
    q = {tr["name"]: tr["metadata"]["query"] for tr in so["spec"]["triggers"]}
    return (dict(re.findall(r'(namespace|taskqueue)="([^"]*)"', q["schedule-to-start"])),
            dict(re.findall(r'(namespace|task_queue)="([^"]*)"', q["slot-utilization"])))


def short_rate_window_refused(chart) -> bool:
    base = merge(yaml.safe_load((CHART / "ci" / "worker-pools-values.yaml").read_text()), operator_values())
    base["workerAutoscaling"]["rateWindow"] = "1m"  # 2 scrapes at 30s
    try:
        render(chart, base)
    except Exception as err:  # the chart's fail
        return "fewer than 4 scrapes" in str(err)
    return False


def test_every_secret_has_a_known_source(case, values, docs):
    declared = {v for p, v in walk_values(values) if isinstance(v, str) and v and SECRET_VALUE_KEYS.search(p)}
    declared |= set(values.get("imagePullSecrets", []))
    if values["server"]["authorization"]["enabled"]:  # named by secret-names.yaml, read by the chart
        declared.add(yaml.safe_load((CHART / "secret-names.yaml").read_text())["bootstrap_token"])
    issued_by_cert_manager = {d["spec"]["secretName"] for d in docs if d["kind"] == "Certificate"}
    platform = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-platform"))
    pki = yaml.safe_load(platform["data"]["platform.yaml"]).get("pki") or {}
    ks = pki.get("kubernetes_secrets") or {}
    issued_by_bootstrap = {ks[k] for k in ("ca", "frontend", "internode") if k in ks} | set((ks.get("clients") or {}).values())
    roles = [d for d in docs if d["kind"] == "Role"]
    role_names = {n for r in roles for rule in r["rules"] for n in rule.get("resourceNames", [])}
    assert issued_by_bootstrap <= role_names, f"bootstrap writes Secrets its Role does not name: {issued_by_bootstrap - role_names}"
    for r in roles:  # least privilege: Secrets only, no list/watch/delete, no wildcard
        for rule in r["rules"]:
            assert rule["resources"] == ["secrets"] and "*" not in rule["verbs"], rule
            assert not set(rule["verbs"]) & {"list", "watch", "delete", "deletecollection"}, rule
            if set(rule["verbs"]) - {"create"}:
                assert rule.get("resourceNames"), f"rule without resourceNames: {rule}"
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets (existingSecret only)"
    refs = set()
    for d in docs:
        if d["kind"] not in POD_KINDS:
            continue
        spec = pod_spec(d)
        for v in spec.get("volumes", []):
            if "secret" in v:
                refs.add((v["secret"]["secretName"], d["metadata"]["name"]))
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], d["metadata"]["name"]))
            for e in c.get("envFrom", []):
                if "secretRef" in e:
                    refs.add((e["secretRef"]["name"], d["metadata"]["name"]))
    known = declared | issued_by_cert_manager | issued_by_bootstrap
    unknown = sorted(r for r in refs if r[0] not in known)
    assert not unknown, f"Secrets referenced with no declared source: {unknown}"
    assert not (declared & (issued_by_cert_manager | issued_by_bootstrap)), "a Secret is both existing and issued"


def test_num_history_shards_equals_values(case, values, docs):
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-server-config"))
    text = cm["data"]["docker.yaml"]
    assert text.startswith("# enable-template\n"), "server config must enable its env templating on line 1"
    server = yaml.safe_load(strip_server_template(text))
    got = server["persistence"]["numHistoryShards"]
    assert got == values["server"]["numHistoryShards"], f"server config numHistoryShards {got}"
    platform = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-platform"))
    p = yaml.safe_load(platform["data"]["platform.yaml"])
    got = p["capacity"]["history_shards"]
    assert got == values["server"]["numHistoryShards"], f"platform.yaml capacity.history_shards {got}"
    hook = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-platform-hook"))
    assert hook["data"] == platform["data"], "hook and daemon platform.yaml differ"
    # no inline secret material in either file
    for blob in (text, platform["data"]["platform.yaml"]):
        for line in blob.splitlines():
            if re.search(r"password\s*:", line):
                assert "env " in line or "file:" in line, f"inline password: {line.strip()}"


def test_server_tls_gives_every_frontend_client_a_certificate(case, values, docs):
    """requireClientAuth on the frontend: the worker service needs a client certificate too."""
    if not values.get("tls", {}).get("enabled", True):
        return
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-server-config"))
    tls = yaml.safe_load(strip_server_template(cm["data"]["docker.yaml"]))["global"]["tls"]
    assert tls["frontend"]["server"]["requireClientAuth"] is True
    worker = tls["systemWorker"]
    assert worker["certFile"].endswith("/internode/tls.crt") and worker["keyFile"].endswith("/internode/tls.key")
    assert worker["client"]["serverName"] == tls["frontend"]["client"]["serverName"]
    assert worker["client"]["rootCaFiles"] == tls["frontend"]["client"]["rootCaFiles"]


def test_security_contexts_everywhere(case, values, docs):
    for d in docs:
        if d["kind"] not in POD_KINDS:
            continue
        name = f"{d['kind']}/{d['metadata']['name']}"
        spec = pod_spec(d)
        psc = spec.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot"
        assert (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{name}: pod seccomp"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext") or {}
            cname = f"{name}/{c['name']}"
            assert sc.get("runAsNonRoot") is True, f"{cname}: runAsNonRoot"
            assert sc.get("allowPrivilegeEscalation") is False, f"{cname}: allowPrivilegeEscalation"
            assert sc.get("readOnlyRootFilesystem") is True, f"{cname}: readOnlyRootFilesystem"
            assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], f"{cname}: drop ALL"
            assert not (sc.get("capabilities") or {}).get("add"), f"{cname}: adds capabilities"
            assert sc.get("privileged") in (None, False), f"{cname}: privileged"
            assert (sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{cname}: seccomp"
            assert (c.get("resources") or {}).get("requests"), f"{cname}: resource requests"
            # Init containers run to completion: the API server refuses probes on them.
            if d["kind"] != "Job" and c in spec.get("containers", []):
                assert c.get("readinessProbe") and c.get("livenessProbe"), f"{cname}: probes"


def test_disruption_budgets_spread_and_metrics(case, values, docs):
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for d in docs:
        if d["kind"] != "Deployment" or component(d) == "bootstrap":
            continue
        labels = d["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        assert covering, f"no PodDisruptionBudget for Deployment/{d['metadata']['name']}"
        tsc = pod_spec(d).get("topologySpreadConstraints", [])
        assert {t["topologyKey"] for t in tsc} >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, d["metadata"]["name"]
        if labels.get("temporal-platform/role") == "server":
            ports = {p["name"]: p["containerPort"] for p in pod_spec(d)["containers"][0]["ports"]}
            assert ports.get("metrics") == values["server"]["ports"]["metrics"], "server metrics port must be named metrics"


def test_network_policies(case, values, docs):
    nps = {d["metadata"]["name"].removeprefix(f"{RELEASE}-temporal-platform-"): d for d in docs if d["kind"] == "NetworkPolicy"}
    if not values["networkPolicy"]["enabled"]:
        assert not nps
        return
    assert nps["default-deny"]["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in nps["default-deny"]["spec"]
    front = nps["frontend"]["spec"]["ingress"]
    assert len(front) == 1
    peers = front[0]["from"]
    allowed = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert all(("temporal-platform/frontend-client" in m) or (m.get("temporal-platform/role") == "server") for m in allowed), allowed
    # who carries the frontend-client label: worker pools, the bootstrap daemon, the web UI only
    for d in docs:
        if d["kind"] in POD_KINDS:
            labels = d["spec"]["template"]["metadata"]["labels"]
            if labels.get("temporal-platform/frontend-client") == "true":
                assert component(d) in {"bootstrap", "web"} or component(d).startswith("pool-"), component(d)
    inter = nps["internode"]["spec"]
    assert inter["podSelector"]["matchLabels"]["temporal-platform/role"] == "server"
    assert [p["podSelector"]["matchLabels"]["temporal-platform/role"] for p in inter["ingress"][0]["from"]] == ["server"]


def test_observability_objects(case, values, docs):
    m = values["monitoring"]
    kinds = {d["kind"] for d in docs}
    assert ("ServiceMonitor" in kinds) == m["serviceMonitor"]["enabled"]
    assert ("PrometheusRule" in kinds) == m["prometheusRule"]["enabled"]
    for d in docs:
        if d["kind"] == "ServiceMonitor":
            assert d["spec"]["jobLabel"] == "temporal-platform/job", "job names come from the Services"
            selected = [x for x in docs if x["kind"] == "Service" and all(
                x["metadata"]["labels"].get(k) == v for k, v in d["spec"]["selector"]["matchLabels"].items())]
            assert selected, f"ServiceMonitor {d['metadata']['name']} selects no Service"
            for svc in selected:
                job = svc["metadata"]["labels"].get("temporal-platform/job", "")
                assert job.startswith("temporal-"), f"{svc['metadata']['name']}: job {job!r} outside temporal-.*"
                if component(svc) == "frontend":
                    assert job == "temporal-frontend", "the frontend-availability alert selects job temporal-frontend"
            codec = all(component(s) == "codec" for s in selected)
            for ep in d["spec"]["endpoints"]:
                # the codec server serves /metrics on its only port, named http
                assert ep["port"] == ("http" if codec else "metrics"), "ServiceMonitors scrape the port named metrics"
                assert ep.get("honorLabels") is True, "Temporal's namespace label must not become exported_namespace"
        if d["kind"] == "PrometheusRule":
            assert d["spec"]["groups"], "PrometheusRule without groups"
        if d["kind"] == "ConfigMap" and component(d) == "dashboards":
            assert d["metadata"]["labels"].get("grafana_dashboard") == "1"
            for v in d["data"].values():
                assert "title" in yaml.safe_load(v)


def test_worker_pools_match_platform_workers(case, values, docs):
    """When platform.yaml lists workers, the rendered pools must be those workers (the contract)."""
    workers = {w["name"]: w for w in values["bootstrap"]["platform"].get("workers") or []}
    if not workers:
        return
    pools = {p["name"]: p for p in values["workerPools"]}
    assert set(pools) == set(workers), f"pools {sorted(pools)} != platform workers {sorted(workers)}"
    for name, pool in pools.items():
        w = workers[name]
        assert pool["taskQueue"] == w["task_queue"] and pool["profile"] == w["profile"], name
        assert pool["namespace"] == w.get("namespace", values["bootstrap"]["platform"]["namespaces"][0]["name"]), name
        assert f"{pool['image']['repository']}:{pool['image']['tag']}" == w["image"], name
        auto = pool.get("autoscaling") or {}
        if auto.get("enabled"):
            assert (auto["minReplicas"], auto["maxReplicas"]) == (w["replicas"]["min"], w["replicas"]["max"]), name
        else:
            assert pool["replicas"] == w["replicas"]["min"], name
        if w.get("gpus"):
            assert str(pool["resources"]["limits"].get("nvidia.com/gpu")) == str(w["gpus"]), name


BUCKETS = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


def test_keda_query_semantics_with_promtool(case, values, docs):
    """Evaluate both triggers of every rendered ScaledObject with the real PromQL engine (promtool).

    schedule-to-start (target 1): all observations in one histogram bucket, so the p95 is known:
    (0.5, 1] -> 0.975 s over the trigger: capped at maxScaleUpFactor; (0.25, 0.5] -> 0.4875 s:
    0.4875/trigger; (0, 0.05] -> under the trigger: 0; no traffic: 0; no latency samples but a
    backlog 12 s old (a starved queue): capped factor.
    slot-utilization (target targetSlotUtilization): 3 of 4 activity slots busy on one worker and
    1 of 4 on another, workflow slots idle -> 0.5; no worker: 0.
    """
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    if not scaled:
        return
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian package prometheus)"
    for so in scaled:
        q = {tr["name"]: tr["metadata"]["query"] for tr in so["spec"]["triggers"]}
        labels = dict(re.findall(r'(namespace|taskqueue)="([^"]*)"', q["schedule-to-start"]))
        sdk = dict(re.findall(r'(namespace|task_queue)="([^"]*)"', q["slot-utilization"]))
        pool = next(p for p in values["workerPools"] if so["metadata"]["name"].endswith(f"pool-{p['name']}"))
        auto = {**values["workerAutoscaling"], **pool["autoscaling"]}
        up, cap = auto["scaleUpAboveSeconds"], auto["maxScaleUpFactor"]

        def series(name, lbls, values):
            text = ", ".join(f'{k}="{v}"' for k, v in sorted(lbls.items()))
            return {"series": f"{name}{{{text}}}", "values": values}

        groups = []
        latency = {"1": min(0.975 / up, cap), "0.5": 0.4875 / up if 0.4875 > up else 0.0, "0.05": 0.0, None: 0.0}
        for bucket, expected in latency.items():
            s = [series("task_schedule_to_start_latency_bucket", {**labels, "le": le},
                        "0+60x20" if bucket is not None and (le == "+Inf" or float(le) >= float(bucket)) else "0+0x20")
                 for le in BUCKETS]
            groups.append((s, q["schedule-to-start"], expected))
        starved = [series("approximate_backlog_age_seconds", {**labels, "partition": "0", "task_type": "Activity"}, "12x20"),
                   series("approximate_backlog_age_seconds", {**labels, "partition": "__sticky__", "task_type": "Workflow"}, "0x20")]
        groups.append((starved, q["schedule-to-start"], min(12 / up, cap)))
        slots = []
        for inst, (used, free) in {"w1:9090": (3, 1), "w2:9090": (1, 3)}.items():
            for wt, (u, f) in {"ActivityWorker": (used, free), "WorkflowWorker": (0, 2)}.items():
                lb = {**sdk, "worker_type": wt, "instance": inst}
                slots += [series("temporal_worker_task_slots_used", lb, f"{u}x20"),
                          series("temporal_worker_task_slots_available", lb, f"{f}x20")]
        groups.append((slots, q["slot-utilization"], 0.5))
        groups.append(([], q["slot-utilization"], 0.0))
        tests = [{"interval": "30s", "input_series": s,
                  "promql_expr_test": [{"expr": expr, "eval_time": "5m",
                                        "exp_samples": [{"labels": "{}", "value": round(expected, 6)}]}]}
                 for s, expr, expected in groups]
        with tempfile.TemporaryDirectory() as tmp:
            test_file = pathlib.Path(tmp) / "keda_test.yaml"
            test_file.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "30s", "tests": tests}))
            run = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
            assert run.returncode == 0, f"{so['metadata']['name']}: promtool: {run.stdout}{run.stderr}"


CODEC_DIR = "/etc/temporal-codec"


def test_codec_server(case, values, docs):
    """The optional codec server: present only when enabled, locked down, wired to the UI."""
    c = values["codec"]
    objs = [d for d in docs if d["metadata"]["name"] in (f"{RELEASE}-temporal-platform-codec", f"{RELEASE}-temporal-platform-codec-metrics")]
    webs = [d for d in docs if d["kind"] == "Deployment" and component(d) == "web"]
    web_env = {e["name"]: e.get("value") for w in webs for e in pod_spec(w)["containers"][0].get("env", [])}
    if not c["enabled"]:
        assert not objs, f"codec objects rendered while codec.enabled is false: {[d['metadata']['name'] for d in objs]}"
        assert not any(k.startswith("TEMPORAL_CODEC_") for k in web_env), "UI codec env without a codec server"
        return
    by_kind = {d["kind"]: d for d in objs}
    expected = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    expected |= {"NetworkPolicy"} if values["networkPolicy"]["enabled"] else set()
    expected |= {"ServiceMonitor"} if values["monitoring"]["serviceMonitor"]["enabled"] else set()
    assert set(by_kind) == expected, f"codec objects {sorted(by_kind)} != {sorted(expected)}"
    dep = by_kind["Deployment"]
    spec = pod_spec(dep)
    assert dep["spec"]["replicas"] == c["replicas"], dep["spec"]["replicas"]
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    (ctr,) = spec["containers"]
    assert ctr["command"] == ["temporal-bootstrap", "codec-server", "-f", f"{CODEC_DIR}/platform.yaml", "--log-format", "json"], ctr["command"]
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["ports"] == [{"name": "http", "containerPort": c["port"], "protocol": "TCP"}], ctr["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        get = ctr[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", "http"), get
        assert get["scheme"] == ("HTTPS" if c["tls"]["existingSecret"] else "HTTP"), get
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", ann["checksum/config"]) and re.fullmatch(r"[0-9a-f]{64}", ann["checksum/secrets"]), ann
    # platform.yaml: keys are file: paths of the mounted keys Secret (0400), tokens env: refs from Secrets
    p = yaml.safe_load(by_kind["ConfigMap"]["data"]["platform.yaml"])
    assert {"cluster", "capacity", "persistence", "visibility", "namespaces", "codec"} == set(p), sorted(p)
    assert "tls" not in p["cluster"]["frontend"], "the codec server does not call the frontend"
    cc = p["codec"]
    assert cc["listen"] == f"0.0.0.0:{c['port']}"
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in ctr["volumeMounts"]}
    keys = vols["keys"]["secret"]
    assert keys["secretName"] == c["keys"]["existingSecret"] and keys["defaultMode"] == 0o400, keys
    assert mounts["keys"]["mountPath"] == f"{CODEC_DIR}/keys" and mounts["keys"]["readOnly"] is True
    mounted = {i["path"] for i in keys["items"]}
    assert [k["id"] for k in cc["keys"]] == [k["id"] for k in c["keys"]["items"]]
    for k, item in zip(cc["keys"], c["keys"]["items"]):
        ref = k["wrapped"] if item.get("wrapped") else k["secret"]
        assert set(k) & {"secret", "wrapped"} == ({"wrapped"} if item.get("wrapped") else {"secret"}), k
        assert ref.startswith(f"file:{CODEC_DIR}/keys/") and ref.rsplit("/", 1)[1] in mounted, k
    assert sum(1 for k in cc["keys"] if k["current"]) == 1, "exactly one current key"
    kms = c.get("kms", {}).get("kind", "file")
    if kms == "vault-transit":
        v = c["kms"]["vaultTransit"]
        assert cc["kms"]["kind"] == "vault-transit" and cc["kms"]["address"] == v["address"], cc["kms"]
        assert cc["kms"]["token"] == f"file:{CODEC_DIR}/kms/token", "the Transit token is a mounted file, never inline"
        tok = vols["kms-token"]["secret"]
        assert tok["secretName"] == v["tokenSecret"]["name"] and tok["defaultMode"] == 0o400, tok
        assert mounts["kms-token"]["mountPath"] == f"{CODEC_DIR}/kms" and mounts["kms-token"]["readOnly"] is True
        if v.get("caConfigMap"):
            assert cc["kms"]["ca_file"] == f"{CODEC_DIR}/kms-ca/ca.crt"
            assert vols["kms-ca"]["configMap"]["name"] == v["caConfigMap"]
    elif kms == "aws-kms":
        assert cc["kms"]["kind"] == "aws-kms"
    else:
        assert "kms" not in cc, cc
    env = {e["name"]: e for e in ctr.get("env", [])}
    tokens = (cc["access"].get("tokens") or [])
    assert len(tokens) == len(c["tokens"])
    for t, v in zip(tokens, c["tokens"]):
        assert t["token"].startswith("env:"), t
        ref = env[t["token"].removeprefix("env:")]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (v["existingSecret"], v["key"]), ref
    assert not any("value" in e and e["name"].startswith("CODEC_TOKEN") for e in env.values()), "inline token"
    if c["tls"]["existingSecret"]:
        assert vols["tls"]["secret"]["defaultMode"] == 0o400
        assert cc["tls"] == {"cert": f"{CODEC_DIR}/tls/tls.crt", "key": f"{CODEC_DIR}/tls/tls.key"}
    svc = by_kind["Service"]
    assert svc["spec"]["type"] == "ClusterIP" and [(x["name"], x["port"]) for x in svc["spec"]["ports"]] == [("http", c["port"])]
    pdb = by_kind["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    if "NetworkPolicy" in by_kind:
        np_spec = by_kind["NetworkPolicy"]["spec"]
        assert np_spec["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        (rule,) = np_spec["ingress"]
        assert rule["from"] == [{"namespaceSelector": c["ingressNamespaceSelector"]},
                                {"namespaceSelector": values["networkPolicy"]["metricsNamespaceSelector"]}], rule["from"]
        assert rule["ports"] == [{"port": c["port"], "protocol": "TCP"}], rule["ports"]
        # default-deny covers the codec pods (same name/instance labels)
        deny = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-default-deny"))
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in deny["spec"]["podSelector"]["matchLabels"].items())
        assert "temporal-platform/frontend-client" not in labels, "the codec server never calls the frontend"
    if values["web"]["enabled"]:
        assert web_env.get("TEMPORAL_CODEC_ENDPOINT") == c["publicUrl"], web_env
        assert web_env.get("TEMPORAL_CODEC_PASS_ACCESS_TOKEN") == str(c["web"]["passAccessToken"]).lower(), web_env




def test_schema_reaches_the_hook_and_the_daemon(case, values, docs):
    """The release's schema is copied from admin-tools:<server.version> into an emptyDir that the
    schema hook and the daemon read, and platform.yaml points schema_dir at it."""
    schema_dir = "/etc/temporal-bootstrap/schema"
    expected_image = f"{values['bootstrap']['schema']['image']['repository']}:" + (
        values["bootstrap"]["schema"]["image"]["tag"] or values["server"]["version"])
    pods = [d for d in docs if d["kind"] in ("Job", "Deployment") and component(d) in ("bootstrap-schema", "bootstrap")]
    assert {component(d) for d in pods} >= {"bootstrap-schema"}, "no schema hook rendered"
    for doc in pods:
        spec = pod_spec(doc)
        inits = {c["name"]: c for c in spec.get("initContainers", [])}
        assert "copy-schema" in inits, f"{doc['metadata']['name']}: no copy-schema init container"
        init = inits["copy-schema"]
        assert init["image"] == expected_image, init["image"]
        assert init["command"] == ["cp", "-R", "/etc/temporal/schema/.", f"{schema_dir}/"], init["command"]
        assert {"name": "schema", "mountPath": schema_dir} in init["volumeMounts"]
        main = spec["containers"][0]
        assert {"name": "schema", "mountPath": schema_dir, "readOnly": True} in main["volumeMounts"], main["volumeMounts"]
        assert any(v["name"] == "schema" and "emptyDir" in v for v in spec["volumes"])
        names = [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]
        assert len(names) == len(set(names)), f"container names repeat: {names}"
    for cm in (d for d in docs if d["kind"] == "ConfigMap" and "platform.yaml" in d.get("data", {})
               and component(d) in ("platform", "platform-hook")):
        p = yaml.safe_load(cm["data"]["platform.yaml"])
        assert p["persistence"]["postgres"]["schema_dir"] == f"{schema_dir}/postgresql/v12", cm["metadata"]["name"]
        if "elasticsearch" in p["visibility"]:
            assert p["visibility"]["elasticsearch"]["schema_dir"] == f"{schema_dir}/elasticsearch"


def test_authorization_wiring(case, values, docs):
    """server.authorization: the server's authorizer and JWT claim mapper, no ALLOW_NO_AUTH, the
    internal frontend, and the bootstrap's token mounted where platform.yaml reads it."""
    auth = values["server"]["authorization"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-server-config"))
    server = yaml.safe_load(strip_server_template(cm["data"]["docker.yaml"]))
    servers = [d for d in docs if d["kind"] == "Deployment" and component(d) in {"frontend", "history", "matching", "worker", "internal-frontend"}]
    no_auth = [d["metadata"]["name"] for d in servers
               if any(e["name"] == "TEMPORAL_ALLOW_NO_AUTH" for e in pod_spec(d)["containers"][0].get("env", []))]
    platform = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-platform"))["data"]["platform.yaml"])
    if not auth["enabled"]:
        assert "authorization" not in server["global"] and len(no_auth) == len(servers), no_auth
        assert "authorization" not in platform["cluster"]
        return
    a = server["global"]["authorization"]
    assert a["authorizer"] == "default" and a["claimMapper"] == "default", a
    assert a["jwtKeyProvider"]["keySourceURIs"] == auth["jwtKeySources"] and a["permissionsClaimName"] == auth["permissionsClaim"]
    assert not no_auth, f"ALLOW_NO_AUTH with an authorizer: {no_auth}"
    assert any(component(d) == "internal-frontend" for d in servers), "no internal frontend"
    token = platform["cluster"]["authorization"]["token"]
    daemon = next(d for d in docs if d["kind"] == "Deployment" and component(d) == "bootstrap")
    mounts = {m["mountPath"] for m in pod_spec(daemon)["containers"][0]["volumeMounts"]}
    assert token.startswith("file:") and str(pathlib.Path(token[5:]).parent) in mounts, (token, mounts)


def test_secret_names_follow_the_one_list(case, values, docs):
    """The ci values use the names of secret-names.yaml, as render, install.sh and Terraform do."""
    names = yaml.safe_load((CHART / "secret-names.yaml").read_text())
    pg = values["persistence"]["postgres"]
    es = values["visibility"]["elasticsearch"]
    pairs = [(pg.get("existingSecret"), "postgres"), (pg["admin"].get("existingSecret"), "postgres_admin"),
             (pg["tls"].get("caSecret"), "postgres_ca")]
    if values["visibility"]["type"] == "elasticsearch":
        pairs += [(es.get("existingSecret"), "elasticsearch"), (es["tls"].get("caSecret"), "elasticsearch_ca")]
    pairs += [(x["existingSecret"], "grafana_token") for x in values["bootstrap"].get("extraSecrets", [])
              if x["name"] == "grafana-token"]
    wrong = [f"{role}: {got} (expected {names[role]})" for got, role in pairs if got and got != names[role]]
    assert not wrong, "; ".join(wrong)


def test_web_ui_can_start_on_a_read_only_root(case, values, docs):
    """temporalio/ui before 2.37.3 writes config/docker.yaml at start (dockerize); from 2.37.3 the
    image carries the file, so a mount there would hide it."""
    if not values["web"]["enabled"]:
        return
    web = next(d for d in docs if d["kind"] == "Deployment" and component(d) == "web")
    container = pod_spec(web)["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    tag = values["web"]["image"]["tag"].lstrip("v")
    old = tuple(int(x) for x in tag.split(".")) < (2, 37, 3)
    assert ("/home/ui-server/config" in mounts) == old, f"UI {tag}: mounts {sorted(mounts)}"
    assert "/tmp" in mounts


def ui_config_mount_by_tag(chart):
    base = merge(yaml.safe_load((CHART / "ci" / "minimal-values.yaml").read_text()), operator_values())
    out = {}
    for tag in ("2.34.0", "2.37.3", "2.53.3", "latest"):
        values = merge(yaml.safe_load(yaml.safe_dump(base)), {"web": {"enabled": True, "image": {"tag": tag}}})
        web = next(d for d in render(chart, values) if d["kind"] == "Deployment" and component(d) == "web")
        out[tag] = any(m["mountPath"] == "/home/ui-server/config" for m in pod_spec(web)["containers"][0]["volumeMounts"])
    return out


def missing_bootstrap_image_message(chart):
    values = yaml.safe_load((CHART / "ci" / "minimal-values.yaml").read_text())
    try:
        chart.validate_schema(values)
        render(chart, values)
    except Exception as err:  # the SDK's typed render error carries the template's message
        return str(err)
    return ""


def operator_values():
    return yaml.safe_load((CHART / "ci" / "_operator.yaml").read_text()) or {}


def negative_cases(chart):
    """Values the chart must refuse (schema or template), each with the reason it must."""
    base = merge(yaml.safe_load((CHART / "ci" / "minimal-values.yaml").read_text()), operator_values())
    bad = {
        "inline password": {"persistence": {"postgres": {"password": "hunter2"}}},
        "unknown server key": {"server": {"numHistoryShard": 4}},
        "history_shards in platform (chart owns it)": {"bootstrap": {"platform": {"capacity": {"history_shards": 8}}}},
        "verify-full without CA": {"persistence": {"postgres": {"tls": {"mode": "verify-full"}}}},
        "elasticsearch without url": {"visibility": {"type": "elasticsearch"}},
        "zero shards": {"server": {"numHistoryShards": 0}},
        "index outside template pattern": {"visibility": {"elasticsearch": {"index": "visibility"}}},
        "codec without a keys Secret": {"codec": {"enabled": True, "tokens": [{"name": "a", "existingSecret": "t", "key": "a"}]}},
        "codec with the UI but no publicUrl": {"web": {"enabled": True}, "codec": {"enabled": True,
            "tokens": [{"name": "a", "existingSecret": "t", "key": "a"}], "keys": {
            "existingSecret": "k", "items": [{"id": "k1", "key": "k1", "current": True}]}}},
        "codec key id with a slash": {"codec": {"enabled": True, "keys": {
            "existingSecret": "k", "items": [{"id": "a/b", "key": "k1", "current": True}]}}},
        "codec without tokens or jwt": {"codec": {"enabled": True, "keys": {
            "existingSecret": "k", "items": [{"id": "k1", "key": "k1", "current": True}]}}},
        "codec with two current keys": {"codec": {"enabled": True, "tokens": [{"name": "a", "existingSecret": "t", "key": "a"}],
            "keys": {"existingSecret": "k", "items": [{"id": "k1", "key": "k1", "current": True}, {"id": "k2", "key": "k2", "current": True}]}}},
        "codec inline token": {"codec": {"tokens": [{"name": "a", "token": "hunter2"}]}},
        "codec wrapped key without a KMS": {"codec": {"enabled": True, "tokens": [{"name": "a", "existingSecret": "t", "key": "a"}],
            "keys": {"existingSecret": "k", "items": [{"id": "k1", "key": "k1", "wrapped": True, "current": True}]}}},
        "codec vault-transit without a token Secret": {"codec": {"enabled": True, "tokens": [{"name": "a", "existingSecret": "t", "key": "a"}],
            "keys": {"existingSecret": "k", "items": [{"id": "k1", "key": "k1", "wrapped": True, "current": True}]},
            "kms": {"kind": "vault-transit", "vaultTransit": {"address": "https://bao:8200"}}}},
        "codec kms kind unknown": {"codec": {"kms": {"kind": "gcp-kms"}}},
        "authorization without the internal frontend": {"server": {"authorization": {
            "enabled": True, "jwtKeySources": ["https://idp.example.com/jwks.json"]}}},
        "authorization without key sources": {"server": {"internalFrontend": {"enabled": True},
            "authorization": {"enabled": True, "jwtKeySources": []}}},
        "codec jwt without a JWKS ConfigMap": {"codec": {"enabled": True, "keys": {
            "existingSecret": "k", "items": [{"id": "k1", "key": "k1", "current": True}]}, "jwt": {"enabled": True}}},
    }
    results = []
    for name, patch in bad.items():
        values = merge(yaml.safe_load(yaml.safe_dump(base)), patch)
        try:
            chart.validate_schema(values)
            render(chart, values)
            results.append((name, False))
        except Exception:
            results.append((name, True))
    return results




TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]


def main() -> int:
    passed = failed = 0
    with helm.Chart.load(str(CHART)) as chart:
        for values_file in sorted((CHART / "ci").glob("*-values.yaml")):
            case = values_file.name.removesuffix("-values.yaml")
            user = merge(yaml.safe_load(values_file.read_text()) or {}, operator_values())
            values = chart.merge_values(user)
            docs = render(chart, user)
            for test in TESTS:
                label = f"{case}::{test.__name__}"
                try:
                    test(case, values, docs)
                    passed += 1
                    print(f"PASS {label}")
                except Exception as err:  # report every failing assertion, keep going
                    failed += 1
                    print(f"FAIL {label}: {err}")
                    if not isinstance(err, AssertionError):
                        traceback.print_exc()
        checks = {
            "an absent bootstrap image is refused with the field and what to do":
                "bootstrap.image.repository is required" in missing_bootstrap_image_message(chart),
            "KEDA query labels: server ones sanitised as the server does ('.', '-', '/', space, unicode), SDK ones as they are":
                query_labels_for_odd_names(chart) == ({"namespace": "payments_prod_eu", "taskqueue": "orders_v2___x"},
                                                      {"namespace": "payments.prod-eu", "task_queue": "orders/v2 ü.x"}),
            "a rate window under 4 scrapes is refused with the fix": short_rate_window_refused(chart),
            "UI config mount only for images that write it at start":
                ui_config_mount_by_tag(chart) == {"2.34.0": True, "2.37.3": False, "2.53.3": False, "latest": False},
        }
        for name, ok in checks.items():
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            print(f"{'PASS' if ok else 'FAIL'} {name}")
        for name, refused in negative_cases(chart):
            if refused:
                passed += 1
                print(f"PASS refuses: {name}")
            else:
                failed += 1
                print(f"FAIL accepted bad values: {name}")
    print(f"chart-tests: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
