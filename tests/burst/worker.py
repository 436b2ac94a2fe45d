#!/usr/bin/env python3
"""One replica of the burst harness's worker pool: a real Python SDK worker process.

It is configured only by the environment the chart's worker-pool Deployment gives a pod
(helm/temporal-platform/templates/worker-pools.yaml), so the harness runs exactly the concurrency
the capacity plan rendered:

  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE
  TEMPORAL_TLS, TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_CLIENT_CERT_PATH,
  TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_NAME
  TEMPORAL_WORKER_MAX_CONCURRENT_ACTIVITIES, TEMPORAL_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
  TEMPORAL_WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES, TEMPORAL_WORKER_ACTIVITY_POLLERS,
  TEMPORAL_WORKER_WORKFLOW_TASK_POLLERS
  TEMPORAL_METRICS_LISTEN_ADDRESS   the SDK's Prometheus exporter (scraped as job temporal-worker)

The workload is the I/O-bound shape the pool's profile assumes: `BurstWorkflow` runs one activity
that waits on "I/O" (a sleep) for the duration the load generator asks for.

SIGTERM is a pod deletion: the worker stops polling and lets running activities finish (the
chart's terminationGracePeriodSeconds), then exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client, TLSConfig
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
    from temporalio.worker import Worker

# The activity's start-to-close timeout: long enough for any simulated call, short enough that a
# lost worker's task is retried within the run.
ACTIVITY_TIMEOUT = timedelta(seconds=60)
# Opened in main() only: this module is also imported by the harness and the workflow sandbox.
ACTIVITY_LOG = None


@activity.defn
async def io_call(seconds: float) -> None:
    """Waits `seconds` on "I/O". With BURST_ACTIVITY_LOG set (the harness sets it), appends the
    task's real schedule-to-start, from the server's own timestamps, as one JSON line."""
    info = activity.info()
    await asyncio.sleep(seconds)
    if ACTIVITY_LOG is not None:
        ACTIVITY_LOG.write(json.dumps({
            "workflow_id": info.workflow_id,
            "scheduled": info.current_attempt_scheduled_time.timestamp(),
            "started": info.started_time.timestamp(),
            "ended": time.time(),
            "attempt": info.attempt,
        }) + "\n")
        ACTIVITY_LOG.flush()


@workflow.defn
class BurstWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> None:
        return await workflow.execute_activity(
            io_call,
            seconds,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=3),
        )


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"worker.py: {name} is not set (the pool Deployment's environment)")
    return value


def _int_env(name: str) -> int:
    try:
        return int(_env(name))
    except ValueError:
        raise SystemExit(f"worker.py: {name} must be an integer") from None


def tls_config() -> TLSConfig | bool:
    if os.environ.get("TEMPORAL_TLS") != "true":
        return False

    def read(name: str) -> bytes:
        with open(_env(name), "rb") as f:
            return f.read()

    return TLSConfig(
        server_root_ca_cert=read("TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        client_cert=read("TEMPORAL_TLS_CLIENT_CERT_PATH"),
        client_private_key=read("TEMPORAL_TLS_CLIENT_KEY_PATH"),
        domain=os.environ.get("TEMPORAL_TLS_SERVER_NAME") or None,
    )


async def main() -> int:
    global ACTIVITY_LOG
    if os.environ.get("BURST_ACTIVITY_LOG"):
        ACTIVITY_LOG = open(os.environ["BURST_ACTIVITY_LOG"], "a", encoding="utf-8")
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=_env("TEMPORAL_METRICS_LISTEN_ADDRESS"))
        )
    )
    client = await Client.connect(
        _env("TEMPORAL_ADDRESS"),
        namespace=_env("TEMPORAL_NAMESPACE"),
        tls=tls_config(),
        runtime=runtime,
    )
    worker = Worker(
        client,
        task_queue=_env("TEMPORAL_TASK_QUEUE"),
        workflows=[BurstWorkflow],
        activities=[io_call],
        max_concurrent_activities=_int_env("TEMPORAL_WORKER_MAX_CONCURRENT_ACTIVITIES"),
        max_concurrent_workflow_tasks=_int_env("TEMPORAL_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS"),
        max_concurrent_local_activities=_int_env("TEMPORAL_WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES"),
        max_concurrent_activity_task_polls=_int_env("TEMPORAL_WORKER_ACTIVITY_POLLERS"),
        max_concurrent_workflow_task_polls=_int_env("TEMPORAL_WORKER_WORKFLOW_TASK_POLLERS"),
        graceful_shutdown_timeout=ACTIVITY_TIMEOUT,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print("worker: polling", flush=True)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
