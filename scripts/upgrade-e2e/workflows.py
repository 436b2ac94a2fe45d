"""Workflows and the worker of the upgrade end-to-end test (scripts/upgrade-e2e/e2e.py).

Each workflow stays open in one state that an upgrade must carry across server restarts: a
pending timer, an awaited signal, a heartbeating activity, a running child workflow.

    python workflows.py    # runs the worker until killed (env: UPG_ADDRESS, UPG_NAMESPACE,
                           # UPG_TASK_QUEUE, TB_TEMPORAL_TLS_CA/CERT/KEY/SERVER_NAME)
"""
import asyncio
import os
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@workflow.defn
class TimerWorkflow:
    @workflow.run
    async def run(self, seconds: int) -> str:
        await asyncio.sleep(seconds)  # a durable timer
        return "timer fired"


@workflow.defn
class SignalWorkflow:
    def __init__(self) -> None:
        self.value: str | None = None

    @workflow.signal
    def go(self, value: str) -> None:
        self.value = value

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.value is not None)
        return f"signal {self.value}"


@activity.defn
async def heartbeat_until(marker: str) -> str:
    """Heartbeats every second until `marker` exists (the test creates it after the upgrade)."""
    started = os.path.join(os.path.dirname(marker), "activity-started")
    open(started, "w").close()
    beats = 0
    while not os.path.exists(marker):
        activity.heartbeat(beats)
        beats += 1
        await asyncio.sleep(1)
    return "activity finished"


@workflow.defn
class ActivityWorkflow:
    @workflow.run
    async def run(self, marker: str) -> str:
        return await workflow.execute_activity(
            heartbeat_until,
            marker,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )


@workflow.defn
class ParentWorkflow:
    @workflow.run
    async def run(self, child_id: str) -> str:
        result = await workflow.execute_child_workflow(SignalWorkflow.run, id=child_id)
        return f"child returned {result}"


WORKFLOWS = [TimerWorkflow, SignalWorkflow, ActivityWorkflow, ParentWorkflow]
ACTIVITIES = [heartbeat_until]


async def connect():
    from temporalio.client import Client
    from temporalio.service import TLSConfig

    def read(name: str) -> bytes:
        with open(os.environ[name], "rb") as f:
            return f.read()

    tls = TLSConfig(
        server_root_ca_cert=read("TB_TEMPORAL_TLS_CA"),
        client_cert=read("TB_TEMPORAL_TLS_CERT"),
        client_private_key=read("TB_TEMPORAL_TLS_KEY"),
        domain=os.environ.get("TB_TEMPORAL_TLS_SERVER_NAME") or None,
    )
    return await Client.connect(os.environ["UPG_ADDRESS"], namespace=os.environ["UPG_NAMESPACE"], tls=tls)


async def main() -> None:
    from temporalio.worker import Worker

    client = await connect()
    worker = Worker(client, task_queue=os.environ["UPG_TASK_QUEUE"], workflows=WORKFLOWS, activities=ACTIVITIES)
    print("worker: polling", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
