#!/usr/bin/env python3
"""The burst harness: a worker pool autoscaled exactly as the chart renders it, under a real burst.

On the local stack (the real Temporal server over mTLS, the real Prometheus scraping it and the
workers), it:

1. renders the Helm chart from tests/burst/platform.yaml (`temporal-bootstrap render helm-values`,
   then the real Helm engine) and takes the pool's Deployment environment and KEDA ScaledObject;
2. runs the pool as real SDK worker processes (tests/burst/worker.py) with that environment, each
   exporting metrics that Prometheus scrapes (file-based targets the harness rewrites);
3. drives a load: a baseline rate, a ramp to N x within a minute, a hold, and back to baseline;
4. every HPA sync period evaluates the ScaledObject's queries, unchanged, through the real
   Prometheus, and applies the HPA algorithm (tests/burst/hpa.py) to start and stop worker
   processes, as KEDA and the HPA would scale the Deployment;
5. writes run.json (every scaler step, every workflow, the Prometheus series) for report.py.

KEDA and the HPA themselves cannot run here (no kubelet, no pods); hpa.py implements their
documented algorithm. What a cluster adds and this does not: pod scheduling and image pull time
(a worker process here is polling about 1-2 s after it is started).

Usage: harness.py --profile smoke|short|full --label NAME --out DIR [--chart DIR] [--bootstrap BIN]
Environment: `scripts/dev-services env` (TB_TEMPORAL_*, TB_PROMETHEUS_URL, TB_PROMETHEUS_TARGETS_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "helm" / "tests"))
import hpa  # noqa: E402
from checks import merge  # noqa: E402  (Helm's rule for a later values file)
from worker import BurstWorkflow  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
PLATFORM = REPO / "tests" / "burst" / "platform.yaml"
POOL = "burst-io"
RELEASE, K8S_NAMESPACE = "burst", "temporal"
# kube-controller-manager --horizontal-pod-autoscaler-sync-period (default 15s): how often the
# HPA asks KEDA's metrics adapter for the trigger values and recomputes the replica count.
HPA_SYNC_SECONDS = 15
# Ports of the worker processes' Prometheus exporters (the stack uses 59090-59095, and 59200/59300
# for OpenSearch).
FIRST_METRICS_PORT = 59400
# A workflow not finished this long after it started counts as timed out (its execution timeout).
WORKFLOW_TIMEOUT = timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class LoadProfile:
    """Workflow starts per second over time: baseline, ramp to `multiplier` x, hold, baseline."""

    baseline_rate: float
    multiplier: float
    baseline_seconds: float
    ramp_seconds: float
    hold_seconds: float
    after_seconds: float
    activity_seconds: float

    @property
    def burst_start(self) -> float:
        return self.baseline_seconds

    @property
    def load_seconds(self) -> float:
        return self.baseline_seconds + self.ramp_seconds + self.hold_seconds + self.after_seconds

    def rate(self, t: float) -> float:
        peak = self.baseline_rate * self.multiplier
        if t < self.baseline_seconds:
            return self.baseline_rate
        t -= self.baseline_seconds
        if t < self.ramp_seconds:
            return self.baseline_rate + (peak - self.baseline_rate) * t / self.ramp_seconds
        t -= self.ramp_seconds
        if t < self.hold_seconds:
            return peak
        return self.baseline_rate


PROFILES = {
    # A one-minute check that the harness works (not a measurement).
    "smoke": LoadProfile(baseline_rate=0.5, multiplier=4, baseline_seconds=15, ramp_seconds=10,
                         hold_seconds=30, after_seconds=5, activity_seconds=2),
    # The CI run: 10x for 3 minutes.
    "short": LoadProfile(baseline_rate=0.5, multiplier=10, baseline_seconds=60, ramp_seconds=30,
                         hold_seconds=180, after_seconds=60, activity_seconds=4),
    # The README's run: 50x within a minute, held 7 minutes, then 13 minutes of baseline to watch
    # the scale-down (after its 10-minute stabilization window).
    "full": LoadProfile(baseline_rate=0.2, multiplier=50, baseline_seconds=120, ramp_seconds=60,
                        hold_seconds=420, after_seconds=780, activity_seconds=4),
}


# --- the chart ---------------------------------------------------------------------------------


def render_pool(chart: pathlib.Path, bootstrap: str, pool_override: dict | None = None) -> tuple[dict, dict, dict]:
    """(helm values, the pool's Deployment, the pool's ScaledObject) as the chart renders them;
    `pool_override` replaces fields of the pool's rendered values (e.g. its names)."""
    import helm_python as helm

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([bootstrap, "render", "helm-values", "-f", str(PLATFORM), "--out", tmp],
                       check=True, stdout=subprocess.DEVNULL)
        values = yaml.safe_load(pathlib.Path(tmp, "values.yaml").read_text())
    operator = yaml.safe_load((chart / "ci" / "_operator.yaml").read_text()) or {}
    values = merge(values, operator)
    if pool_override:
        values["workerPools"] = [dict(p, **pool_override) if p["name"] == POOL else p for p in values["workerPools"]]
    with helm.Chart.load(str(chart)) as c:
        out = c.render(values, name=RELEASE, namespace=K8S_NAMESPACE, is_install=True)
    docs = [d for path, text in out.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    name = f"{RELEASE}-temporal-platform-pool-{POOL}"
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    so = next(d for d in docs if d["kind"] == "ScaledObject" and d["metadata"]["name"] == name)
    return values, dep, so


def worker_env(dep: dict) -> dict[str, str]:
    """The pool container's environment, pointed at the local stack's frontend and certificates."""
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: str(e["value"]) for e in ctr["env"] if "value" in e}
    env.update({
        "TEMPORAL_ADDRESS": os.environ["TB_TEMPORAL_ADDRESS"],
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": os.environ["TB_TEMPORAL_TLS_CA"],
        "TEMPORAL_TLS_CLIENT_CERT_PATH": os.environ["TB_TEMPORAL_TLS_CERT"],
        "TEMPORAL_TLS_CLIENT_KEY_PATH": os.environ["TB_TEMPORAL_TLS_KEY"],
        "TEMPORAL_TLS_SERVER_NAME": os.environ.get("TB_TEMPORAL_TLS_SERVER_NAME", "localhost"),
    })
    return env


# --- Prometheus --------------------------------------------------------------------------------


def prom_query(expr: str, at: float | None = None) -> float | None:
    """One instant query as KEDA's prometheus scaler reads it: None when the query fails (the
    scaler errors), 0.0 for an empty result (ignoreNullValues, true by default), else the first
    sample's value."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"{os.environ['TB_PROMETHEUS_URL']}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except OSError:
        return None
    if body.get("status") != "success":
        return None
    result = body["data"]["result"]
    if not result:
        return 0.0
    if body["data"]["resultType"] == "scalar":
        value = result[1]
    else:
        # KEDA's prometheus scaler reads the first sample of a vector result.
        value = result[0]["value"][1]
    v = float(value)
    # NaN or Inf: the scaler reports an error unless ignoreNullValues (then 0).
    return 0.0 if math.isnan(v) or math.isinf(v) else v


def prom_range(expr: str, start: float, end: float, step: float = 5) -> list[tuple[float, float]]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    url = f"{os.environ['TB_PROMETHEUS_URL']}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    result = body["data"]["result"]
    if not result:
        return []
    return [(float(t), float(v)) for t, v in result[0]["values"] if v not in ("NaN", "+Inf")]


# --- the pool ----------------------------------------------------------------------------------


class Pool:
    """Worker processes standing in for the Deployment's pods."""

    def __init__(self, env: dict[str, str], targets_file: pathlib.Path, log_dir: pathlib.Path):
        self.env = env
        self.targets_file = targets_file
        self.log_dir = log_dir
        self.running: list[tuple[int, subprocess.Popen]] = []  # (port, process), oldest first
        self.terminating: list[subprocess.Popen] = []
        self.started = 0

    @property
    def replicas(self) -> int:
        return len(self.running)

    def scale(self, desired: int) -> None:
        while len(self.running) < desired:
            port = self._free_port()
            env = {**os.environ, **self.env,
                   "TEMPORAL_METRICS_LISTEN_ADDRESS": f"127.0.0.1:{port}",
                   "BURST_ACTIVITY_LOG": str(self.log_dir / f"activities-{self.started:03d}.jsonl")}
            log = open(self.log_dir / f"worker-{self.started:03d}-{port}.log", "wb")
            proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "burst" / "worker.py")],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
            self.running.append((port, proc))
            self.started += 1
        # A ReplicaSet scaling down deletes the newest pods first (controller.ActivePods ranking:
        # the most recently created/ready pods go first).
        while len(self.running) > desired:
            _, proc = self.running.pop()
            proc.send_signal(signal.SIGTERM)
            self.terminating.append(proc)
        self.terminating = [p for p in self.terminating if p.poll() is None]
        self._write_targets()

    def stop(self) -> None:
        self.scale(0)
        deadline = time.time() + 90
        for p in self.terminating:
            try:
                p.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
        self.targets_file.unlink(missing_ok=True)

    def activities(self) -> list[dict]:
        """Every activity execution the workers logged so far (see worker.py)."""
        out = []
        for f in sorted(self.log_dir.glob("activities-*.jsonl")):
            out.extend(json.loads(line) for line in f.read_text().splitlines() if line.endswith("}"))
        return out

    def ready(self) -> int:
        """Replicas whose readiness probe would pass (the chart's: TCP on the metrics port)."""
        n = 0
        for port, _ in self.running:
            with socket.socket() as s:
                s.settimeout(0.5)
                n += s.connect_ex(("127.0.0.1", port)) == 0
        return n

    def crashed(self) -> list[int]:
        return [port for port, p in self.running if p.poll() is not None]

    def _free_port(self) -> int:
        used = {port for port, _ in self.running}
        return next(p for p in range(FIRST_METRICS_PORT, FIRST_METRICS_PORT + 100) if p not in used)

    def _write_targets(self) -> None:
        targets = [f"127.0.0.1:{port}" for port, _ in self.running]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": targets, "labels": {"pool": POOL}}]))
        tmp.replace(self.targets_file)


# --- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict:
    from temporalio.client import Client, TLSConfig
    from temporalio.common import WorkflowIDReusePolicy

    profile = PROFILES[args.profile]
    chart = pathlib.Path(args.chart).resolve()
    _, dep, so_doc = render_pool(chart, args.bootstrap)
    so = hpa.scaled_object_from_manifest(so_doc)
    env = worker_env(dep)
    out = pathlib.Path(args.out)
    # Each run starts with an empty log folder: its activity logs are what report.py counts.
    shutil.rmtree(out / "workers", ignore_errors=True)
    (out / "workers").mkdir(parents=True)
    targets_dir = pathlib.Path(os.environ["TB_PROMETHEUS_TARGETS_DIR"])
    targets_dir.mkdir(parents=True, exist_ok=True)
    pool = Pool(env, targets_dir / f"burst-{POOL}.json", out / "workers")

    tls = TLSConfig(
        server_root_ca_cert=pathlib.Path(os.environ["TB_TEMPORAL_TLS_CA"]).read_bytes(),
        client_cert=pathlib.Path(os.environ["TB_TEMPORAL_TLS_CERT"]).read_bytes(),
        client_private_key=pathlib.Path(os.environ["TB_TEMPORAL_TLS_KEY"]).read_bytes(),
        domain=os.environ.get("TB_TEMPORAL_TLS_SERVER_NAME", "localhost"),
    )
    client = await Client.connect(env["TEMPORAL_ADDRESS"], namespace=env["TEMPORAL_NAMESPACE"], tls=tls)

    autoscaler = hpa.Autoscaler(so)
    steps: list[dict] = []
    workflows: list[dict] = []
    pending: set[asyncio.Task] = set()
    run_id = uuid.uuid4().hex[:8]
    t0 = time.time()
    pool.scale(so.min_replicas)
    load_done = asyncio.Event()

    async def one_workflow(i: int) -> None:
        rec = {"i": i, "start": time.time()}
        workflows.append(rec)
        try:
            await client.start_workflow(
                BurstWorkflow.run, profile.activity_seconds, id=f"burst-{run_id}-{i}",
                task_queue=env["TEMPORAL_TASK_QUEUE"], execution_timeout=WORKFLOW_TIMEOUT,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except Exception as err:  # a refused start is a result, recorded
            rec.update(error=f"{type(err).__name__}: {str(err)[:200]}")

    async def load() -> None:
        i, due = 0, 0.0
        while (t := time.time() - t0) < profile.load_seconds:
            due += profile.rate(t) * 0.1
            while due >= 1:
                due -= 1
                task = asyncio.create_task(one_workflow(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.sleep(0.1)
        load_done.set()

    async def scaler() -> None:
        while True:
            now = time.time()
            values_now = {t.name: prom_query(t.query) for t in so.triggers}
            current = pool.replicas
            d = autoscaler.step(now, current, values_now, ready_replicas=pool.ready())
            pool.scale(d.desired)
            steps.append({"t": now - t0, "current": current, "desired": d.desired, "values": values_now,
                          "per_trigger": d.per_trigger, "recommendation": d.recommendation,
                          "limited_by": d.limited_by, "reason": d.reason,
                          "in_flight": len(workflows) - len(pool.activities())})
            crashed = pool.crashed()
            if crashed:
                raise RuntimeError(f"worker processes on ports {crashed} exited: see {out / 'workers'}")
            print(f"[{now - t0:6.0f}s] rate {profile.rate(now - t0):5.2f}/s replicas {current}->{d.desired} "
                  f"values {fmt_values(values_now)} in-flight {steps[-1]['in_flight']} ({d.reason})",
                  file=sys.stderr, flush=True)
            if load_done.is_set() and not pending:
                done = len(pool.activities()) >= len(workflows)
                if done or now - t0 > profile.load_seconds + WORKFLOW_TIMEOUT.total_seconds():
                    return
            await asyncio.sleep(max(0.0, HPA_SYNC_SECONDS - (time.time() - now)))

    try:
        load_task = asyncio.create_task(load())
        await scaler()
        await load_task
    finally:
        pool.stop()
    t_end = time.time()
    series = collect_series(so_doc, t0, t_end)
    outcomes = await workflow_outcomes(client, f"burst-{run_id}-", len(workflows))
    return {
        "label": args.label,
        "profile": {"name": args.profile, **dataclasses.asdict(profile)},
        "t0": t0,
        "duration": t_end - t0,
        "chart": str(chart),
        "scaled_object": so_doc["spec"],
        "worker_env": {k: v for k, v in env.items() if k.startswith("TEMPORAL_WORKER_")},
        "steps": steps,
        "workflows": workflows,
        "activities": pool.activities(),
        "outcomes": outcomes,
        "series": series,
    }


async def workflow_outcomes(client, prefix: str, started: int) -> dict[str, int]:
    """Workflows of this run by final status, from visibility (waits for it to catch up)."""
    query = f'WorkflowId STARTS_WITH "{prefix}"'
    deadline = time.time() + 120
    while True:
        counts: dict[str, int] = {}
        async for wf in client.list_workflows(query):
            name = wf.status.name if wf.status is not None else "UNKNOWN"
            counts[name] = counts.get(name, 0) + 1
        if sum(counts.values()) >= started and "RUNNING" not in counts or time.time() > deadline:
            return counts
        await asyncio.sleep(5)


def fmt_values(values: dict[str, float | None]) -> str:
    return ", ".join(f"{k}={'n/a' if v is None else f'{v:.3g}'}" for k, v in values.items())


def collect_series(so_doc: dict, t0: float, t_end: float) -> dict:
    """What Prometheus saw during the run, for the plot: the server's p95 and the backlog, with the
    label selector and rate window of the rendered schedule-to-start query (one source for both)."""
    query = next(tr["metadata"]["query"] for tr in so_doc["spec"]["triggers"]
                 if "task_schedule_to_start_latency_bucket" in tr["metadata"]["query"])
    sel, window = re.search(r"task_schedule_to_start_latency_bucket\{([^}]*)\}\[([^\]]+)\]", query).groups()
    exprs = {
        "server_p95_seconds": f"histogram_quantile(0.95, sum by (le) (rate(task_schedule_to_start_latency_bucket{{{sel}}}[{window}])))",
        "backlog_count": f"sum(approximate_backlog_count{{{sel}}})",
        "backlog_age_seconds": f"max(approximate_backlog_age_seconds{{{sel}}})",
    }
    out = {}
    for name, expr in exprs.items():
        try:
            out[name] = [(t - t0, v) for t, v in prom_range(expr, t0, t_end)]
        except OSError as err:
            out[name] = []
            print(f"harness: could not read {name}: {err}", file=sys.stderr)
    out["triggers"] = {}
    for i, trig in enumerate(so_doc["spec"]["triggers"]):
        name = trig.get("name") or f"s{i}-prometheus"
        try:
            out["triggers"][name] = [(t - t0, v) for t, v in prom_range(trig["metadata"]["query"], t0, t_end)]
        except OSError:
            out["triggers"][name] = []
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="short")
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chart", default=str(REPO / "helm" / "temporal-platform"))
    ap.add_argument("--bootstrap", default=os.environ.get("TB_BOOTSTRAP_BIN") or str(REPO / "target" / "debug" / "temporal-bootstrap"))
    args = ap.parse_args()
    result = asyncio.run(run(args))
    path = pathlib.Path(args.out) / "run.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"harness: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
