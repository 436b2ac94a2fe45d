#!/usr/bin/env python3
"""Bounded Temporal workload that makes a real server and a real Python SDK worker emit metrics.

Used by scripts/checks/observability-live. It exercises, in about 100 seconds:
  * successful workflows and activities,
  * activity retries (an activity that fails twice, then succeeds),
  * workflow failures (non-retryable application error),
  * workflow execution timeouts and activity start-to-close timeouts,
  * workflow task failures (a workflow whose code raises), terminated afterwards,
  * cancellations,
  * exhausted activity slots (slow activities on a worker with 2 slots),
  * a workflow-task backlog and an activity backlog: tasks are queued while no worker runs for
    ~70 s (long enough for the server's backlog gauges to appear), then drained; everything else
    happens in the ~30 s after that, so a 1m rate window at READY sees it.

After the workload it writes READY to --ready-file and keeps the worker (and so its Prometheus
endpoint) alive until --linger seconds pass or the process is terminated, so that Prometheus keeps
seeing the SDK series while the checker queries it.

Environment: TB_TEMPORAL_ADDRESS (host:port, required), TB_WORKER_METRICS_ADDRESS
(default 127.0.0.1:59092, the address Prometheus scrapes as job temporal-worker); for a frontend
with mTLS, TB_TEMPORAL_TLS_CA, TB_TEMPORAL_TLS_CERT, TB_TEMPORAL_TLS_KEY and
TB_TEMPORAL_TLS_SERVER_NAME (as `scripts/dev-services env` exports them for the stack's server).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig
from temporalio.worker import Worker

MAIN_QUEUE = "obs-main"
BACKLOG_WF_QUEUE = "obs-backlog-workflows"
BACKLOG_ACT_QUEUE = "obs-backlog-activities"


# ---------------------------------------------------------------- activities
@activity.defn(name="ObsQuick")
async def quick(x: int) -> int:
    return x + 1


@activity.defn(name="ObsFlaky")
async def flaky(fail_times: int) -> str:
    attempt = activity.info().attempt
    if attempt <= fail_times:
        raise RuntimeError(f"flaky failure on attempt {attempt}")
    return f"ok after {attempt} attempts"


@activity.defn(name="ObsBroken")
async def broken() -> None:
    raise ApplicationError("permanently broken", type="ObsBrokenError", non_retryable=True)


@activity.defn(name="ObsSlow")
async def slow(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        activity.heartbeat()
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------- workflows
@workflow.defn(name="ObsSuccess")
class SuccessWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.execute_activity(
                quick, i, start_to_close_timeout=timedelta(seconds=10)
            )
        return total


@workflow.defn(name="ObsRetry")
class RetryWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            flaky,
            2,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=1.0),
        )


@workflow.defn(name="ObsFail")
class FailWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(broken, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(name="ObsActivityTimeout")
class ActivityTimeoutWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            slow,
            3.0,
            start_to_close_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=2),
        )


@workflow.defn(name="ObsSleepy")
class SleepyWorkflow:
    """Used for workflow execution timeouts and cancellations."""

    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.sleep(seconds)


@workflow.defn(name="ObsBadCode")
class BadCodeWorkflow:
    """Raises a non-Temporal exception: every workflow task fails and is retried by the server."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("bug in workflow code (workload: intentional workflow task failure)")


@workflow.defn(name="ObsSlowActivities")
class SlowActivitiesWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.execute_activity(
            slow, seconds, start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=timedelta(seconds=10)
        )


@workflow.defn(name="ObsRemoteActivity")
class RemoteActivityWorkflow:
    """Schedules an activity on a task queue that has no worker yet (activity backlog)."""

    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            quick, 41, task_queue=BACKLOG_ACT_QUEUE, start_to_close_timeout=timedelta(seconds=10)
        )


WORKFLOWS = [
    SuccessWorkflow,
    RetryWorkflow,
    FailWorkflow,
    ActivityTimeoutWorkflow,
    SleepyWorkflow,
    BadCodeWorkflow,
    SlowActivitiesWorkflow,
    RemoteActivityWorkflow,
]
ACTIVITIES = [quick, flaky, broken, slow]


def log(msg: str) -> None:
    print(f"[workload {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def expect_outcome(handle, label: str) -> str:
    try:
        await handle.result()
        return "completed"
    except WorkflowFailureError as err:
        return f"failed ({type(err.cause).__name__})"
    except Exception as err:  # noqa: BLE001 - the outcome is only reported
        return f"error ({type(err).__name__})"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog-seconds", type=float, default=70.0,
                        help="how long the backlog queues stay without a worker (default 70)")
    parser.add_argument("--ready-file", default="", help="file to write READY into when the workload is done")
    parser.add_argument("--linger", type=float, default=300.0,
                        help="keep the worker and its metrics endpoint alive this long afterwards (default 300)")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()

    address = os.environ.get("TB_TEMPORAL_ADDRESS")
    if not address:
        print("TB_TEMPORAL_ADDRESS is not set (eval \"$(scripts/dev-services env)\")", file=sys.stderr)
        return 2
    metrics_address = os.environ.get("TB_WORKER_METRICS_ADDRESS", "127.0.0.1:59092")

    # The intentional failures would print long tracebacks: keep the output to this script's own lines.
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_address), logging=None)
    )
    tls: TLSConfig | bool = False
    if os.environ.get("TB_TEMPORAL_TLS_CA"):
        def read(name: str) -> bytes:
            with open(os.environ[name], "rb") as f:
                return f.read()
        tls = TLSConfig(
            server_root_ca_cert=read("TB_TEMPORAL_TLS_CA"),
            client_cert=read("TB_TEMPORAL_TLS_CERT"),
            client_private_key=read("TB_TEMPORAL_TLS_KEY"),
            domain=os.environ.get("TB_TEMPORAL_TLS_SERVER_NAME") or None,
        )
    client = await Client.connect(address, namespace=args.namespace, runtime=runtime, tls=tls)
    log(f"connected to {address}, SDK metrics on http://{metrics_address}/metrics")
    run_id = uuid.uuid4().hex[:8]
    t0 = time.monotonic()

    def wid(kind: str, i: int) -> str:
        return f"obs-{run_id}-{kind}-{i}"

    # Phase 1: a backlog. Workflow tasks on a queue nobody polls, and (once the main worker runs) one
    # activity for a queue nobody polls. No worker runs at all during this phase, so everything below
    # happens in the last ~30 s before READY, inside the 1m rate window the checker queries with.
    backlog_handles = [
        await client.start_workflow(SuccessWorkflow.run, 1, id=wid("backlog", i), task_queue=BACKLOG_WF_QUEUE)
        for i in range(6)
    ]
    remote = await client.start_workflow(RemoteActivityWorkflow.run, id=wid("remote", 0), task_queue=MAIN_QUEUE)
    log(f"queued 6 workflows on {BACKLOG_WF_QUEUE} and 1 on {MAIN_QUEUE} (its activity goes to {BACKLOG_ACT_QUEUE}); "
        f"no worker for {args.backlog_seconds:.0f}s (backlog gauges appear after about a minute)")
    await asyncio.sleep(max(0.0, args.backlog_seconds - (time.monotonic() - t0)))

    # Phase 2: workers for every queue, and a mix of outcomes.
    main_worker = Worker(
        client,
        task_queue=MAIN_QUEUE,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        max_concurrent_activities=2,  # small on purpose: slow activities exhaust the slots
    )
    drain_wf = Worker(client, task_queue=BACKLOG_WF_QUEUE, workflows=WORKFLOWS, activities=ACTIVITIES)
    drain_act = Worker(client, task_queue=BACKLOG_ACT_QUEUE, activities=ACTIVITIES)
    async with main_worker, drain_wf, drain_act:
        log("workers started; draining the backlog")
        handles: dict[str, list] = {}

        async def start(kind: str, count: int, wf, *wf_args, **opts):
            hs = []
            for i in range(count):
                hs.append(await client.start_workflow(wf, *wf_args, id=wid(kind, i), task_queue=MAIN_QUEUE, **opts))
            handles[kind] = hs

        await start("slow", 4, SlowActivitiesWorkflow.run, 8.0)
        await start("success", 12, SuccessWorkflow.run, 3)
        await start("retry", 3, RetryWorkflow.run)
        await start("fail", 3, FailWorkflow.run)
        await start("acttimeout", 2, ActivityTimeoutWorkflow.run)
        await start("wftimeout", 2, SleepyWorkflow.run, 60.0, execution_timeout=timedelta(seconds=3))
        await start("cancel", 2, SleepyWorkflow.run, 60.0)
        await start("badcode", 2, BadCodeWorkflow.run)
        await start("terminate", 2, SleepyWorkflow.run, 60.0)
        log("started " + ", ".join(f"{k}={len(v)}" for k, v in handles.items()))

        await asyncio.sleep(2)
        for h in handles["cancel"]:
            await h.cancel()
        for h in handles["terminate"]:
            await h.terminate("workload: intentional termination")

        await asyncio.gather(*(h.result() for h in backlog_handles))
        await remote.result()
        log("backlog drained")

        for kind in ("success", "retry", "fail", "acttimeout", "wftimeout", "cancel", "terminate", "slow"):
            outcomes = await asyncio.gather(*(expect_outcome(h, kind) for h in handles[kind]))
            summary: dict[str, int] = {}
            for o in outcomes:
                summary[o] = summary.get(o, 0) + 1
            log(f"{kind}: {summary}")

        # A last wave of quick successes keeps the rates non-zero right up to READY.
        await start("success2", 6, SuccessWorkflow.run, 2)
        await asyncio.gather(*(h.result() for h in handles["success2"]))
        for h in handles["badcode"]:
            await h.terminate("workload: end of the workflow task failure demo")

        log(f"workload done after {time.monotonic() - t0:.0f}s")
        if args.ready_file:
            with open(args.ready_file, "w", encoding="utf-8") as f:
                f.write("READY\n")
        # Keep the workers polling (pollers, slots, sticky cache stay visible) until terminated.
        await asyncio.sleep(args.linger)
    return 0


if __name__ == "__main__":
    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 130
    # The SDK's Rust core threads can race interpreter finalisation and abort at exit; the work is
    # done and reported, so leave without finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
