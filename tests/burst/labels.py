#!/usr/bin/env python3
"""The chart's KEDA selectors against the labels of a real scrape, for names that need escaping.

A pool whose namespace and task queue hold '.', '-', '/', a space and a non-ASCII letter is
rendered by the real Helm engine; then a real Python SDK worker runs one workflow on that queue on
the real server, and the real Prometheus (scraping the server and the worker) is asked for the
series each trigger's selector matches. Both selectors must match series of that run:
the server's `task_schedule_to_start_latency_bucket` (label values sanitised by the server) and the
SDK's `temporal_worker_task_slots_used` (label values kept as they are).

  labels.py [--chart DIR] [--bootstrap BIN]    exit 0 when both match, 1 otherwise

Environment: `scripts/dev-services env`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import harness  # noqa: E402
from worker import BurstWorkflow, io_call  # noqa: E402

NAMESPACE = "burst.labels-check"
TASK_QUEUE = "orders/v2 Zürich.eu-west"
METRICS_PORT = 59499


def selectors(so: dict) -> dict[str, str]:
    """The first label selector ({...}) of each trigger's query."""
    out = {}
    for trig in so["spec"]["triggers"]:
        m = re.search(r"(task_schedule_to_start_latency_bucket|temporal_worker_task_slots_used)(\{[^}]*\})",
                      trig["metadata"]["query"])
        if m:
            out[m.group(1)] = m.group(1) + m.group(2)
    return out


def series_count(selector: str) -> int:
    url = f"{os.environ['TB_PROMETHEUS_URL']}/api/v1/series?" + urllib.parse.urlencode({"match[]": selector})
    with urllib.request.urlopen(url, timeout=10) as r:
        return len(json.load(r)["data"])


async def drive(env: dict[str, str]) -> None:
    from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
    from temporalio.client import Client, TLSConfig
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
    from temporalio.service import RPCError, RPCStatusCode
    from temporalio.worker import Worker
    from google.protobuf.duration_pb2 import Duration

    tls = TLSConfig(
        server_root_ca_cert=pathlib.Path(env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"]).read_bytes(),
        client_cert=pathlib.Path(env["TEMPORAL_TLS_CLIENT_CERT_PATH"]).read_bytes(),
        client_private_key=pathlib.Path(env["TEMPORAL_TLS_CLIENT_KEY_PATH"]).read_bytes(),
        domain=env["TEMPORAL_TLS_SERVER_NAME"],
    )
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{METRICS_PORT}")))
    client = await Client.connect(env["TEMPORAL_ADDRESS"], namespace=NAMESPACE, tls=tls, runtime=runtime)
    try:
        await client.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=NAMESPACE, workflow_execution_retention_period=Duration(seconds=86400)))
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    deadline = time.time() + 60
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[BurstWorkflow], activities=[io_call]):
        while True:
            try:
                await client.execute_workflow(BurstWorkflow.run, 0.1, id=f"labels-{uuid.uuid4().hex[:8]}",
                                              task_queue=TASK_QUEUE, execution_timeout=timedelta(minutes=1))
                break
            except RPCError as err:  # a namespace registered a moment ago: not yet in the cache
                if err.status != RPCStatusCode.NOT_FOUND or time.time() > deadline:
                    raise
                await asyncio.sleep(2)
        # Two scrapes of the worker (5 s interval) while it still exports its slot gauges.
        await asyncio.sleep(12)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chart", default=str(harness.REPO / "helm" / "temporal-platform"))
    ap.add_argument("--bootstrap", default=os.environ.get("TB_BOOTSTRAP_BIN") or str(harness.REPO / "target" / "debug" / "temporal-bootstrap"))
    args = ap.parse_args()

    _, dep, so = harness.render_pool(pathlib.Path(args.chart), args.bootstrap,
                                          pool_override={"namespace": NAMESPACE, "taskQueue": TASK_QUEUE})
    sels = selectors(so)
    print(f"labels: rendered selectors {json.dumps(sels, ensure_ascii=False)}", file=sys.stderr)
    env = harness.worker_env(dep)
    targets = pathlib.Path(os.environ["TB_PROMETHEUS_TARGETS_DIR"]) / "labels-check.json"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{METRICS_PORT}"], "labels": {"pool": "labels-check"}}]))
    try:
        asyncio.run(drive(env))
        time.sleep(6)  # one more server scrape
        counts = {name: series_count(sel) for name, sel in sels.items()}
        # The old chart replaced only '-': that selector must match nothing (the check can fail).
        naive = 'task_schedule_to_start_latency_bucket{namespace="%s", taskqueue="%s"}' % (
            NAMESPACE.replace("-", "_"), TASK_QUEUE.replace("-", "_"))
        counts["naive '-' -> '_' selector"] = series_count(naive)
    finally:
        targets.unlink(missing_ok=True)
    print(f"labels: series matched in the real Prometheus {counts}", file=sys.stderr)
    missing = [name for name in ("task_schedule_to_start_latency_bucket", "temporal_worker_task_slots_used")
               if counts.get(name, 0) == 0]
    if missing:
        print(f"labels: the chart's selector for {missing} matches no series of the real scrape", file=sys.stderr)
        return 1
    if counts["naive '-' -> '_' selector"]:
        print("labels: a selector that replaces only '-' matched series: the scrape is not what this check assumes", file=sys.stderr)
        return 1
    print("labels: both triggers' selectors match the real series (server: sanitised, SDK: as is)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
