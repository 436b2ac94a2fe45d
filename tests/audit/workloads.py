#!/usr/bin/env python3
"""Builds "wrong" and "right" workloads on a real Temporal server for `temporal-bootstrap audit`.

Run with the project's virtualenv (temporalio 1.35.0, cryptography):

  .local/venv/bin/python tests/audit/workloads.py SCENARIO --namespace N [options]

Scenarios (each runs its real SDK workers in this process, waits for the described state, stops
the workers and prints ONE JSON line on stdout):

  clean            CleanWorkflow -> activity clean_activity (start-to-close 30 s, 5 attempts,
                   backoff 1 s x2 up to 10 s); --count K workflows; --encrypt for binary/encrypted
  large-payload    an activity taking and returning 1,992,294-byte payloads (under the 2 MiB limit)
  long-history     one workflow whose history exceeds --events (default 12,000) events: timers
  no-heartbeat     activity long_running_report: start-to-close 10 min, no heartbeat timeout
  backlog          client only: --count NeverPolled workflows on a task queue nobody polls (left
                   running)
  nondeterminism   OrderWorkflow v1 (reserve, then wait for signal `proceed`), then an incompatible
                   v2 worker (charge first): the workflow task fails with a non-determinism cause;
                   the workflow is left running, stuck
  bulk             --per-namespace short workflows (BulkA/BulkB) in each of --namespaces
  versioned        VersionedWorkflow on a Worker Deployment version (Worker Versioning) made the
                   deployment's current version; --unversioned-count K more on the same task
                   queue by a worker without versioning (the deployment's current version set
                   back to unversioned first)

Connection, from the environment: TEMPORAL_ADDRESS (default 127.0.0.1:7233), and for (m)TLS
TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY, TEMPORAL_TLS_SERVER_NAME; without any
TEMPORAL_TLS_* variable the connection is plaintext.

Encryption (--encrypt): the codec of examples/payload-encryption/python/codec.py, keys from
CODEC_KEY_FILES / CODEC_WRAPPED_KEY_FILES / CODEC_CURRENT_KEY (examples/payload-encryption/README.md).
If neither key variable is set, a fresh key (32 random bytes, base64, as `temporal-bootstrap codec
keygen` writes) is generated into a temporary file (mode 0600) under the key id `audit-workloads`;
the file is removed once the codec has read it, unless --keep-key (its path is then in the JSON
line, to decode the histories later).

Output: stdout holds only the one JSON line (anything else the SDK might print goes to stderr).
Exit codes: 0 done, 1 failure (message on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from temporalio import activity, workflow
from temporalio.common import RetryPolicy, VersioningBehavior, WorkerDeploymentVersion

# This file is also re-imported inside the workflow sandbox (as `__temporal_main__`): everything
# here is definitions only; the work starts in `main()`.
with workflow.unsafe.imports_passed_through():
    import temporalio.converter
    from temporalio.api.common.v1 import Payload
    from temporalio.api.enums.v1 import EventType, RoutingConfigUpdateState, WorkflowTaskFailedCause
    from temporalio.api.enums.v1 import VersioningBehavior as VersioningBehaviorProto
    from temporalio.api.history.v1 import HistoryEvent
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        DescribeWorkerDeploymentRequest,
        SetWorkerDeploymentCurrentVersionRequest,
    )
    from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHandle
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
    from temporalio.service import RPCError, RPCStatusCode
    from temporalio.worker import (
        PollerBehaviorSimpleMaximum,
        UnsandboxedWorkflowRunner,
        Worker,
        WorkerDeploymentConfig,
    )
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# Set in main(): module-level code also runs inside the workflow sandbox, which restricts
# file-system and host calls.
CODEC_DIR = Path()
IDENTITY = "audit-workloads"
RUN = ""
GENERATED_KEY_ID = "audit-workloads"

# The sane activity options every "right" workload uses (only the scenario's defect differs).
START_TO_CLOSE = timedelta(seconds=30)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)
# 1.9 MiB: above the audit's critical 1.5 MiB, under the server's 2 MiB `limit.blobSize.error`.
LARGE_PAYLOAD_BYTES = 1_992_294
REPORT_START_TO_CLOSE = timedelta(minutes=10)
REPORTED_PROBLEMS = "TemporalReportedProblems"


class Failure(Exception):
    """A scenario that could not be built; the message is printed on stderr."""


def filler(length: int, seed: str) -> str:
    """`length` deterministic ASCII characters (no JSON escaping: the payload is length + 2 bytes)."""
    block = hashlib.sha256(seed.encode()).hexdigest()
    return (block * (length // len(block) + 1))[:length]


# --- activities --------------------------------------------------------------------------------


@activity.defn(name="clean_activity")
async def clean_activity(text: str) -> str:
    return f"cleaned {len(text)} characters"


@activity.defn(name="large_payload_activity")
async def large_payload_activity(data: str) -> str:
    # A result as large as the input (the JSON payload is len + 2 bytes).
    return filler(len(data), "result")


@activity.defn(name="long_running_report")
async def long_running_report(name: str) -> str:
    return f"report {name} done"


@activity.defn(name="reserve")
async def reserve(order: str) -> str:
    return f"reserved {order}"


@activity.defn(name="charge")
async def charge(order: str) -> str:
    return f"charged {order}"


@activity.defn(name="bulk_step")
async def bulk_step(n: int) -> int:
    return n + 1


@activity.defn(name="versioned_activity")
async def versioned_activity(text: str) -> str:
    return f"versioned {len(text)} characters"


# --- workflows ---------------------------------------------------------------------------------


@workflow.defn(name="CleanWorkflow")
class CleanWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            clean_activity, text, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )


@workflow.defn(name="LargePayloadWorkflow")
class LargePayloadWorkflow:
    @workflow.run
    async def run(self, payload_bytes: int) -> str:
        data = filler(payload_bytes - 2, "input")
        result = await workflow.execute_activity(
            large_payload_activity, data, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )
        return f"{len(result)} characters back"


@workflow.defn(name="LongHistoryWorkflow")
class LongHistoryWorkflow:
    @workflow.run
    async def run(self, timers: int, batch: int) -> int:
        # Every timer is two events (TimerStarted, TimerFired); a batch starts in one workflow task.
        fired = 0
        while fired < timers:
            n = min(batch, timers - fired)
            await asyncio.gather(*(workflow.sleep(timedelta(seconds=1)) for _ in range(n)))
            fired += n
        return fired


@workflow.defn(name="ReportWorkflow")
class ReportWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        # The defect: a 10-minute attempt with no heartbeat timeout (a hung worker is noticed
        # only after 10 minutes).
        return await workflow.execute_activity(
            long_running_report, name, start_to_close_timeout=REPORT_START_TO_CLOSE, retry_policy=RETRY
        )


@workflow.defn(name="OrderWorkflow")
class OrderWorkflowV1:
    def __init__(self) -> None:
        self._proceed = False

    @workflow.signal(name="proceed")
    def proceed(self) -> None:
        self._proceed = True

    @workflow.run
    async def run(self, order: str) -> str:
        reserved = await workflow.execute_activity(
            reserve, order, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )
        await workflow.wait_condition(lambda: self._proceed)
        return reserved


@workflow.defn(name="OrderWorkflow")
class OrderWorkflowV2:
    """The incompatible change: `charge` is now scheduled before `reserve`."""

    def __init__(self) -> None:
        self._proceed = False

    @workflow.signal(name="proceed")
    def proceed(self) -> None:
        self._proceed = True

    @workflow.run
    async def run(self, order: str) -> str:
        await workflow.execute_activity(charge, order, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY)
        reserved = await workflow.execute_activity(
            reserve, order, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )
        await workflow.wait_condition(lambda: self._proceed)
        return reserved


@workflow.defn(name="BulkA")
class BulkA:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(
            bulk_step, n, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )


@workflow.defn(name="BulkB")
class BulkB:
    @workflow.run
    async def run(self, n: int) -> int:
        first = await workflow.execute_activity(
            bulk_step, n, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )
        return first * 2


@workflow.defn(name="VersionedWorkflow")
class VersionedWorkflow:
    # No versioning_behavior here: a versioned worker applies its default_versioning_behavior,
    # an unversioned one none.
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            versioned_activity, text, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY
        )


# --- connection, codec -------------------------------------------------------------------------


def example_module(name: str):
    """A module of the Python payload-encryption example (its codec, its TLS settings): the
    workloads connect and encrypt exactly as the example does."""
    if str(CODEC_DIR) not in sys.path:
        sys.path.insert(0, str(CODEC_DIR))
    try:
        return __import__(name)
    except ImportError as e:
        raise Failure(f"cannot import {name} of the example from {CODEC_DIR}: {e}") from None


def data_converter(encrypt: bool, keep_key: bool = False) -> tuple[temporalio.converter.DataConverter, dict | None]:
    """The default converter, or the example codec on top of it; and what to report about keys."""
    if not encrypt:
        return temporalio.converter.default(), None
    EncryptionCodec = example_module("codec").EncryptionCodec
    generated = None
    if not os.environ.get("CODEC_KEY_FILES") and not os.environ.get("CODEC_WRAPPED_KEY_FILES"):
        fd, generated = tempfile.mkstemp(prefix="audit-workloads-key-")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(os.urandom(32)) + b"\n")
        os.environ["CODEC_KEY_FILES"] = f"{GENERATED_KEY_ID}={generated}"
        os.environ.pop("CODEC_CURRENT_KEY", None)
    try:
        codec = EncryptionCodec.from_env()
    except ValueError as e:
        raise Failure(f"codec keys: {e}") from None
    finally:
        if generated and not keep_key:
            os.unlink(generated)
    converter = dataclasses.replace(temporalio.converter.default(), payload_codec=codec)
    report = {"key_id": codec.current_key_id, "generated_key": generated is not None}
    report["generated_key_file"] = generated if keep_key else None
    return converter, report


async def connect(namespace: str, converter: temporalio.converter.DataConverter) -> Client:
    address = os.environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
    try:
        return await Client.connect(
            address, namespace=namespace, tls=example_module("main").tls_from_env(), identity=IDENTITY, data_converter=converter
        )
    except RuntimeError as e:
        raise Failure(f"cannot connect to {address}: {e}") from None


def in_namespace(client: Client, namespace: str) -> Client:
    """Another namespace on the same connection."""
    return Client(client.service_client, namespace=namespace, data_converter=client.data_converter)


def _namespace_not_found(e: RPCError) -> bool:
    return e.status == RPCStatusCode.NOT_FOUND and "namespace" in e.message.lower()


async def wait_for_namespace(client: Client, timeout: float) -> None:
    """A namespace created a moment ago may not be known yet: retry NotFound up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
            return
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise Failure(f"describe namespace {client.namespace}: {e.status.name}: {e.message}") from None
            if time.monotonic() >= deadline:
                raise Failure(
                    f"namespace {client.namespace!r} does not exist (still NotFound after {timeout:g} s; "
                    "the caller must create it)"
                ) from None
        await asyncio.sleep(0.5)


T = TypeVar("T")


async def retry_namespace(call: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Retries a call while the servers' namespace caches do not know a new namespace yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except RPCError as e:
            if not _namespace_not_found(e) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.5)


async def bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


def new_worker(
    client: Client,
    task_queue: str,
    workflows: list,
    activities: list,
    sandboxed: bool = False,
    identity: str | None = None,
    **kw: Any,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        activities=activities,
        workflow_runner=SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner(),
        identity=identity or IDENTITY,
        **kw,
    )


async def start(
    client: Client, workflow_type: str, args: list, workflow_id: str, task_queue: str, **kw: Any
) -> WorkflowHandle:
    return await retry_namespace(
        lambda: client.start_workflow(workflow_type, args=args, id=workflow_id, task_queue=task_queue, **kw)
    )


def note(message: str) -> None:
    """Progress on stderr (stdout is only for the JSON line)."""
    print(f"workloads: {message}", file=sys.stderr, flush=True)


# --- reading histories -------------------------------------------------------------------------


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def payloads_of(message: Any, out: list[Payload]) -> None:
    """Every data Payload in a history event (search attributes are metadata, not data)."""
    if isinstance(message, Payload):
        out.append(message)
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == field.TYPE_MESSAGE:
                for item in value.values():
                    payloads_of(item, out)
        elif _repeated(field):
            for item in value:
                payloads_of(item, out)
        else:
            payloads_of(value, out)


@dataclasses.dataclass
class Facts:
    events: int
    last_event: str
    encodings: Counter
    max_payload_bytes: int
    history: list[HistoryEvent]
    types: Counter

    def task_problems(self) -> dict:
        """Workflow task timeouts and failures: a "right" workload has none."""
        return {
            "timed_out": self.types["WORKFLOW_TASK_TIMED_OUT"],
            "failed": self.types["WORKFLOW_TASK_FAILED"],
        }


def event_name(e: HistoryEvent) -> str:
    return EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")


async def facts(client: Client, workflow_id: str) -> Facts:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    events = list(history.events)
    enc: Counter = Counter()
    biggest = 0
    for e in events:
        found: list[Payload] = []
        payloads_of(e, found)
        for p in found:
            enc[p.metadata.get("encoding", b"").decode(errors="replace") or "(none)"] += 1
            biggest = max(biggest, len(p.data))
    types = Counter(event_name(e) for e in events)
    return Facts(len(events), event_name(events[-1]) if events else "", enc, biggest, events, types)


def check_encodings(enc: Counter, encrypted: bool, where: str) -> None:
    if encrypted and set(enc) - {"binary/encrypted"}:
        raise Failure(f"{where}: expected only binary/encrypted payloads, found {dict(enc)}")
    if not encrypted and "binary/encrypted" in enc:
        raise Failure(f"{where}: found encrypted payloads without --encrypt: {dict(enc)}")


@dataclasses.dataclass
class Totals:
    events: int = 0
    encodings: Counter = dataclasses.field(default_factory=Counter)
    max_payload_bytes: int = 0
    task_problems: Counter = dataclasses.field(default_factory=Counter)


async def completed_facts(client: Client, ids: list[str], encrypted: bool) -> Totals:
    """Checks every workflow completed and its payload encodings; totals for the JSON line."""
    all_facts = await bounded([lambda i=i: facts(client, i) for i in ids], 20)
    t = Totals()
    t.task_problems.update({"timed_out": 0, "failed": 0})
    for wid, f in zip(ids, all_facts):
        if f.last_event != "WORKFLOW_EXECUTION_COMPLETED":
            raise Failure(f"workflow {wid}: last event is {f.last_event}, expected WORKFLOW_EXECUTION_COMPLETED")
        check_encodings(f.encodings, encrypted, f"workflow {wid}")
        t.events += f.events
        t.encodings += f.encodings
        t.max_payload_bytes = max(t.max_payload_bytes, f.max_payload_bytes)
        t.task_problems.update(f.task_problems())
    if sum(t.task_problems.values()):
        note(f"warning: workflow task problems in {client.namespace}: {dict(t.task_problems)} (an overloaded host?)")
    return t


# --- scenarios ---------------------------------------------------------------------------------


def names(args: argparse.Namespace, count: int | None = None) -> tuple[str, list[str]]:
    base = f"{args.id_prefix}-{args.command}-{RUN}"
    ids = [base] if count is None else [f"{base}-{i}" for i in range(count)]
    return args.task_queue or base, ids


async def setup(args: argparse.Namespace, namespace: str | None = None) -> tuple[Client, dict | None]:
    converter, codec = data_converter(getattr(args, "encrypt", False), getattr(args, "keep_key", False))
    client = await connect(namespace or args.namespace, converter)
    await wait_for_namespace(client, args.wait_namespace)
    return client, codec


async def scenario_clean(args: argparse.Namespace) -> dict:
    if args.count < 1:
        raise Failure("--count must be at least 1")
    client, codec = await setup(args)
    tq, ids = names(args, args.count)
    text = f"customer note: {args.marker}"
    async with new_worker(client, tq, [CleanWorkflow], [clean_activity]):
        handles = await bounded([lambda i=i: start(client, "CleanWorkflow", [text], i, tq) for i in ids], 50)
        await asyncio.gather(*(h.result() for h in handles))
    t = await completed_facts(client, ids, args.encrypt)
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "CleanWorkflow",
        "activity_type": "clean_activity",
        "workflow_ids": ids,
        "marker": args.marker,
        "encrypted": args.encrypt,
        "codec": codec,
        "events": t.events,
        "payload_encodings": dict(t.encodings),
        "max_payload_bytes": t.max_payload_bytes,
        "workflow_task_problems": dict(t.task_problems),
    }


async def scenario_large_payload(args: argparse.Namespace) -> dict:
    client, codec = await setup(args)
    tq, ids = names(args)
    async with new_worker(client, tq, [LargePayloadWorkflow], [large_payload_activity]):
        handle = await start(client, "LargePayloadWorkflow", [LARGE_PAYLOAD_BYTES], ids[0], tq)
        await handle.result()
    t = await completed_facts(client, ids, args.encrypt)
    f = await facts(client, ids[0])
    # `data` bytes, and the serialised Payload (metadata included: what the audit measures).
    sizes, serialized = {}, {}
    for e in f.history:
        if e.HasField("activity_task_scheduled_event_attributes"):
            (p,) = e.activity_task_scheduled_event_attributes.input.payloads
            sizes["activity_input"], serialized["activity_input"] = len(p.data), p.ByteSize()
        elif e.HasField("activity_task_completed_event_attributes"):
            (p,) = e.activity_task_completed_event_attributes.result.payloads
            sizes["activity_result"], serialized["activity_result"] = len(p.data), p.ByteSize()
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "LargePayloadWorkflow",
        "activity_type": "large_payload_activity",
        "workflow_ids": ids,
        "encrypted": args.encrypt,
        "codec": codec,
        "payload_bytes": sizes,
        "payload_serialized_bytes": serialized,
        "max_payload_bytes": t.max_payload_bytes,
        "payload_encodings": dict(t.encodings),
        "events": t.events,
        "workflow_task_problems": dict(t.task_problems),
    }


async def scenario_long_history(args: argparse.Namespace) -> dict:
    if args.events < 10:
        raise Failure("--events must be at least 10")
    client, codec = await setup(args)
    tq, ids = names(args)
    # Started + first task (3) + 2 per timer + a task per batch (3 each) + completed: 2 x timers
    # + 8 or more, so events/2 timers always exceed `events`.
    timers = (args.events + 1) // 2
    async with new_worker(client, tq, [LongHistoryWorkflow], [], max_cached_workflows=10):
        handle = await start(client, "LongHistoryWorkflow", [timers, args.batch], ids[0], tq)
        await handle.result()
    t = await completed_facts(client, ids, args.encrypt)
    if t.events <= args.events:
        raise Failure(f"the history has {t.events} events, not more than {args.events}")
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "LongHistoryWorkflow",
        "workflow_ids": ids,
        "timers": timers,
        "batch": args.batch,
        "events": t.events,
        "encrypted": args.encrypt,
        "codec": codec,
        "payload_encodings": dict(t.encodings),
        "workflow_task_problems": dict(t.task_problems),
    }


async def scenario_no_heartbeat(args: argparse.Namespace) -> dict:
    client, codec = await setup(args)
    tq, ids = names(args)
    async with new_worker(client, tq, [ReportWorkflow], [long_running_report]):
        handle = await start(client, "ReportWorkflow", ["monthly"], ids[0], tq)
        await handle.result()
    t = await completed_facts(client, ids, args.encrypt)
    f = await facts(client, ids[0])
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in f.history
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    if len(scheduled) != 1:
        raise Failure(f"expected one scheduled activity, found {len(scheduled)}")
    a = scheduled[0]
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "ReportWorkflow",
        "workflow_ids": ids,
        "activity": {
            "type": a.activity_type.name,
            "start_to_close_timeout_seconds": a.start_to_close_timeout.ToTimedelta().total_seconds(),
            "heartbeat_timeout_seconds": a.heartbeat_timeout.ToTimedelta().total_seconds(),
            "schedule_to_close_timeout_seconds": a.schedule_to_close_timeout.ToTimedelta().total_seconds(),
            "maximum_attempts": a.retry_policy.maximum_attempts,
        },
        "encrypted": args.encrypt,
        "codec": codec,
        "payload_encodings": dict(t.encodings),
        "events": t.events,
        "workflow_task_problems": dict(t.task_problems),
    }


async def scenario_backlog(args: argparse.Namespace) -> dict:
    if args.count < 1:
        raise Failure("--count must be at least 1")
    client, _ = await setup(args)
    tq, ids = names(args, args.count)
    await bounded([lambda i=i: start(client, "NeverPolled", [], i, tq) for i in ids], 50)
    for wid in ids:
        status = (await client.get_workflow_handle(wid).describe()).status
        if status is None or status.name != "RUNNING":
            raise Failure(f"workflow {wid} is {status}, expected RUNNING")
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "NeverPolled",
        "workflow_ids": ids,
        "count": len(ids),
        "status": "RUNNING",
    }


async def wait_history(client: Client, wid: str, timeout: float, what: str, found: Callable[[list[HistoryEvent]], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        events = list((await client.get_workflow_handle(wid).fetch_history()).events)
        hit = found(events)
        if hit:
            return hit
        if time.monotonic() >= deadline:
            last = event_name(events[-1]) if events else "none"
            raise Failure(f"workflow {wid}: no {what} within {timeout:g} s (last event {last})")
        await asyncio.sleep(0.3)


def _waiting_for_signal(events: list[HistoryEvent]) -> bool:
    # reserve completed and the task after it completed: the workflow now waits for `proceed`.
    types = [event_name(e) for e in events]
    return "ACTIVITY_TASK_COMPLETED" in types and types[-1] == "WORKFLOW_TASK_COMPLETED"


def _nde_failure(events: list[HistoryEvent]) -> HistoryEvent | None:
    for e in events:
        if e.HasField("workflow_task_failed_event_attributes"):
            return e
    return None


def reported_problems(desc: WorkflowExecutionDescription) -> list | None:
    """The server's TemporalReportedProblems search attribute (a KeywordList, json/plain)."""
    p = desc.raw_description.workflow_execution_info.search_attributes.indexed_fields.get(REPORTED_PROBLEMS)
    if p is None:
        return None
    value = json.loads(p.data)
    return value if isinstance(value, list) else [value]


async def scenario_nondeterminism(args: argparse.Namespace) -> dict:
    client, codec = await setup(args)
    tq, ids = names(args)
    wid = ids[0]
    # The SDK's default sandboxed runner and default workflow_failure_exception_types, as a
    # production worker would run: a non-determinism error fails the workflow task, not the workflow.
    identities = {"v1": IDENTITY, "v2": IDENTITY.replace("audit-workloads@", "audit-workloads-v2@", 1)}
    options = {}
    if args.workflow_task_timeout:
        options["task_timeout"] = timedelta(seconds=args.workflow_task_timeout)
    # Distinct identities and build ids, as two deployments of the worker would have (the SDK's
    # automatic build id is a hash of the loaded modules, the same for both classes of this file).
    async with new_worker(
        client, tq, [OrderWorkflowV1], [reserve, charge], sandboxed=True, identity=identities["v1"],
        build_id="audit-workloads-v1",
    ):
        handle = await start(client, "OrderWorkflow", ["order-1"], wid, tq, **options)
        await wait_history(client, wid, 30, "completed reserve activity", _waiting_for_signal)
    note(f"nondeterminism: {wid} waits for the signal; worker v1 stopped, starting v2")
    async with new_worker(
        client, tq, [OrderWorkflowV2], [reserve, charge], sandboxed=True, identity=identities["v2"],
        build_id="audit-workloads-v2",
    ):
        await handle.signal("proceed")
        signalled = time.monotonic()
        failed = await wait_history(client, wid, 30, "WorkflowTaskFailed event", _nde_failure)
        a = failed.workflow_task_failed_event_attributes
        cause = WorkflowTaskFailedCause.Name(a.cause)
        if cause != "WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR":
            raise Failure(f"workflow {wid}: the workflow task failed with cause {cause}: {a.failure.message}")
        note(f"nondeterminism: {cause} {time.monotonic() - signalled:.1f} s after the signal; "
             f"waiting up to {args.problems_wait:g} s for {REPORTED_PROBLEMS}")
        problems, attempt, problems_after = None, None, None
        deadline = time.monotonic() + args.problems_wait
        while True:
            desc = await handle.describe()
            raw = desc.raw_description
            now = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else None
            if now != attempt:
                note(f"nondeterminism: workflow task attempt {now} at +{time.monotonic() - signalled:.1f} s")
                attempt = now
            problems = reported_problems(desc)
            if problems:
                problems_after = round(time.monotonic() - signalled, 1)
                note(f"nondeterminism: {REPORTED_PROBLEMS} = {problems} at +{problems_after} s")
                break
            if time.monotonic() >= deadline:
                note(f"nondeterminism: {REPORTED_PROBLEMS} not set after {args.problems_wait:g} s")
                break
            await asyncio.sleep(1)
    desc = await handle.describe()
    if desc.status is None or desc.status.name != "RUNNING":
        raise Failure(f"workflow {wid} is {desc.status}, expected RUNNING (stuck)")
    f = await facts(client, wid)
    check_encodings(f.encodings, args.encrypt, f"workflow {wid}")
    history = f.history
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "OrderWorkflow",
        "workflow_ids": ids,
        "signal": "proceed",
        "status": "RUNNING",
        "workflow_task_failed": {
            "event_id": failed.event_id,
            "cause": cause,
            "message": a.failure.message,
            "identity": a.identity,
        },
        "worker_identities": identities,
        "build_ids": {"v1": "audit-workloads-v1", "v2": "audit-workloads-v2"},
        "workflow_task_timeout_seconds": args.workflow_task_timeout or None,
        "workflow_task_failed_events": sum(1 for e in history if e.HasField("workflow_task_failed_event_attributes")),
        "workflow_task_attempt": desc.raw_description.pending_workflow_task.attempt
        if desc.raw_description.HasField("pending_workflow_task")
        else None,
        "reported_problems": problems,
        "reported_problems_after_seconds": problems_after,
        "encrypted": args.encrypt,
        "codec": codec,
        "payload_encodings": dict(f.encodings),
        "events": len(history),
    }


async def scenario_bulk(args: argparse.Namespace) -> dict:
    namespaces = [n.strip() for n in args.namespaces.split(",") if n.strip()]
    if not namespaces:
        raise Failure("--namespaces: no namespace given")
    if len(set(namespaces)) != len(namespaces):
        raise Failure("--namespaces: a namespace is listed twice")
    if args.per_namespace < 1:
        raise Failure("--per-namespace must be at least 1")
    first, codec = await setup(args, namespaces[0])
    clients = [first] + [in_namespace(first, ns) for ns in namespaces[1:]]
    for c in clients[1:]:
        await wait_for_namespace(c, args.wait_namespace)
    tq, ids = names(args, args.per_namespace)
    types = ["BulkA" if i % 2 == 0 else "BulkB" for i in range(len(ids))]
    # Few slots and pollers per worker: all workers share this one Python thread, and tasks
    # polled faster than it runs them would time out (10 s) instead of completing.
    workers = [
        new_worker(
            c,
            tq,
            [BulkA, BulkB],
            [bulk_step],
            max_concurrent_workflow_tasks=args.worker_slots,
            max_concurrent_activities=args.worker_slots,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(2),
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(2),
        )
        for c in clients
    ]
    prefix = f"{args.id_prefix}-bulk-{RUN}-"
    query = f'WorkflowId STARTS_WITH "{prefix}"'
    jobs = [(c, wid, wtype, i) for c in clients for i, (wid, wtype) in enumerate(zip(ids, types))]
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        begun = time.monotonic()
        # At most --concurrency workflows in flight (more only queue up in this one Python thread,
        # and workflow tasks it polls but cannot run within 10 s time out).

        async def run_one(c: Client, wid: str, wtype: str, i: int) -> None:
            h = await start(c, wtype, [i], wid, tq, request_eager_start=args.eager)
            await h.result()

        await bounded([lambda j=j: run_one(*j) for j in jobs], args.concurrency)
        elapsed = time.monotonic() - begun
    # Visibility (what the audit lists) is eventually consistent: wait until it shows them all.
    deadline = time.monotonic() + 30
    for c in clients:
        while True:
            counts = await c.count_workflows(f"{query} GROUP BY ExecutionStatus")
            by_status = {str(g.group_values[0]): g.count for g in counts.groups}
            if by_status.get("Completed", 0) >= args.per_namespace:
                break
            if time.monotonic() >= deadline:
                raise Failure(f"{c.namespace}: visibility shows {by_status}, not {args.per_namespace} completed")
            await asyncio.sleep(0.5)
    visible = time.monotonic() - begun
    # A sample of histories per namespace: the encodings the audit will see, and no task problems.
    sample = ids[:: max(1, len(ids) // args.sample)][: args.sample]
    enc: Counter = Counter()
    problems: Counter = Counter({"timed_out": 0, "failed": 0})
    for c in clients:
        t = await completed_facts(c, sample, args.encrypt)
        enc += t.encodings
        problems.update(t.task_problems)
    total = len(jobs)
    return {
        "namespaces": namespaces,
        "task_queue": tq,
        "per_namespace": args.per_namespace,
        "workflow_types": dict(Counter(types)),
        "workflow_id_prefix": prefix,
        "completed": total,
        "elapsed_seconds": round(elapsed, 2),
        "workflows_per_second": round(total / elapsed, 1),
        "visible_seconds": round(visible, 2),
        "encrypted": args.encrypt,
        "codec": codec,
        "eager_start": args.eager,
        "worker_slots": args.worker_slots,
        "concurrency": args.concurrency,
        "sampled_histories": len(sample) * len(clients),
        "sampled_payload_encodings": dict(enc),
        "sampled_workflow_task_problems": dict(problems),
    }



# The server's versioning search attributes (set with WorkflowExecutionInfo.worker_deployment_name).
VERSIONING_ATTRIBUTES = ("TemporalWorkerDeployment", "TemporalWorkerDeploymentVersion", "TemporalWorkflowVersioningBehavior")
UNVERSIONED = "__unversioned__"


def versioning_attributes(search_attributes: Any) -> dict:
    """The versioning search attributes present (json/plain payloads), decoded."""
    out = {}
    for name in VERSIONING_ATTRIBUTES:
        p = search_attributes.indexed_fields.get(name)
        if p is not None:
            try:
                out[name] = json.loads(p.data)
            except ValueError:
                out[name] = p.data.decode(errors="replace")
    return out


async def set_current_version(client: Client, deployment: str, build_id: str, timeout: float) -> dict:
    """SetWorkerDeploymentCurrentVersion (an empty build id: unversioned), then waits until the
    routing change reached the task queues. A version exists only once one of its workers polled:
    until then the server refuses it, so the call is retried up to `timeout` seconds."""
    target = build_id or UNVERSIONED
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace, deployment_name=deployment, build_id=build_id, identity=IDENTITY
    )
    begun = time.monotonic()
    deadline = begun + timeout
    attempts, last = 0, ""
    while True:
        attempts += 1
        try:
            response = await client.workflow_service.set_worker_deployment_current_version(request)
            break
        except RPCError as e:
            error = f"{e.status.name}: {e.message}"
            if e.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED):
                hint = " (dynamic config system.enableDeploymentVersions)" if "disabled" in e.message else ""
                raise Failure(f"set current version of deployment {deployment} to {target}: {error}{hint}") from None
            if time.monotonic() >= deadline:
                raise Failure(
                    f"set current version of deployment {deployment} to {target}: still {error} after {timeout:g} s"
                ) from None
            if error != last:
                note(f"versioned: set current version {target}: {error} (retrying)")
                last = error
        await asyncio.sleep(0.5)
    accepted = time.monotonic()
    # The deployment's workflow propagates the routing change to the task queues' partitions.
    state = ""
    while True:
        d = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
        )
        info = d.worker_deployment_info
        state = RoutingConfigUpdateState.Name(info.routing_config_update_state).removeprefix(
            "ROUTING_CONFIG_UPDATE_STATE_"
        )
        current = info.routing_config.current_deployment_version.build_id or UNVERSIONED
        if current == target and state == "COMPLETED":
            break
        if time.monotonic() >= deadline:
            raise Failure(
                f"deployment {deployment}: current version {current}, routing update {state}, "
                f"not {target} COMPLETED after {timeout:g} s"
            )
        await asyncio.sleep(0.3)
    return {
        "current_version": target,
        "previous_version": response.previous_deployment_version.build_id or UNVERSIONED,
        "attempts": attempts,
        "accepted_after_seconds": round(accepted - begun, 2),
        "propagated_after_seconds": round(time.monotonic() - begun, 2),
        "routing_update_state": state,
    }


async def described_versioning(client: Client, workflow_id: str, worker: str) -> dict:
    """What DescribeWorkflowExecution says about the execution's deployment and versioning."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    info = desc.raw_description.workflow_execution_info
    vi = info.versioning_info if info.HasField("versioning_info") else None
    version = vi.deployment_version if vi is not None and vi.HasField("deployment_version") else None
    return {
        "workflow_id": workflow_id,
        "worker": worker,
        "status": desc.status.name if desc.status else None,
        "task_queue": info.task_queue,
        "worker_deployment_name": info.worker_deployment_name,
        "versioning_behavior": VersioningBehaviorProto.Name(vi.behavior).removeprefix("VERSIONING_BEHAVIOR_")
        if vi is not None
        else None,
        "deployment_version": {"deployment_name": version.deployment_name, "build_id": version.build_id}
        if version is not None
        else None,
        "search_attributes": versioning_attributes(info.search_attributes),
    }


async def listed_versioning(client: Client, query: str, ids: list[str], timeout: float) -> dict:
    """What ListWorkflowExecutions (what the audit samples) returns for the executions, once
    visibility shows them all completed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {w.id: w async for w in client.list_workflows(query)}
        done = {i for i, w in rows.items() if w.status is not None and w.status.name == "COMPLETED"}
        if set(ids) <= done:
            break
        if time.monotonic() >= deadline:
            raise Failure(f"visibility shows {len(done)} of {len(ids)} workflows completed after {timeout:g} s")
        await asyncio.sleep(0.5)
    return {
        i: {
            "task_queue": rows[i].task_queue,
            "worker_deployment_name": rows[i].raw_info.worker_deployment_name,
            "search_attributes": versioning_attributes(rows[i].raw_info.search_attributes),
        }
        for i in ids
    }


async def scenario_versioned(args: argparse.Namespace) -> dict:
    if args.unversioned_count < 0:
        raise Failure("--unversioned-count must be at least 0")
    if not args.deployment or "." in args.deployment:
        raise Failure("--deployment must be a non-empty name without '.' (versions are <deployment>.<build id>)")
    client, codec = await setup(args)
    tq, _ = names(args)
    base = f"{args.id_prefix}-versioned-{RUN}"
    build_id = args.build_id or base
    versioned_id = f"{base}-versioned"
    unversioned_ids = [f"{base}-unversioned-{i}" for i in range(args.unversioned_count)]
    behavior = VersioningBehavior.PINNED if args.behavior == "pinned" else VersioningBehavior.AUTO_UPGRADE
    config = WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=args.deployment, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=behavior,
    )
    identities = {
        "versioned": IDENTITY.replace("audit-workloads@", "audit-workloads-versioned@", 1),
        "unversioned": IDENTITY.replace("audit-workloads@", "audit-workloads-unversioned@", 1),
    }
    text = "versioned workload"
    routing = []
    # The worker's polls register the version in the deployment (created on the first poll);
    # making it current routes the task queue's new workflows to it.
    async with new_worker(
        client, tq, [VersionedWorkflow], [versioned_activity], identity=identities["versioned"], deployment_config=config
    ):
        routing.append(await set_current_version(client, args.deployment, build_id, args.register_wait))
        handle = await start(client, "VersionedWorkflow", [text], versioned_id, tq)
        await handle.result()
        note(f"versioned: {versioned_id} completed on {args.deployment}.{build_id}")
        if unversioned_ids:
            # The wrong case: the queue's current version back to unversioned, so that a worker
            # without versioning gets its tasks (a versioned current version would keep them).
            routing.append(await set_current_version(client, args.deployment, "", args.register_wait))
    if unversioned_ids:
        # Without deployment options; or (--unversioned-declares-deployment) with the deployment's
        # name but versioning off: the server then records the name (worker_deployment_name,
        # TemporalWorkerDeployment) with no version and no versioning behavior.
        unversioned_options = {}
        if args.unversioned_declares_deployment:
            unversioned_options["deployment_config"] = WorkerDeploymentConfig(
                version=WorkerDeploymentVersion(deployment_name=args.deployment, build_id=f"{build_id}-unversioned"),
                use_worker_versioning=False,
            )
        async with new_worker(
            client, tq, [VersionedWorkflow], [versioned_activity], identity=identities["unversioned"], **unversioned_options
        ):
            handles = await bounded(
                [lambda i=i: start(client, "VersionedWorkflow", [text], i, tq) for i in unversioned_ids], 50
            )
            await asyncio.gather(*(h.result() for h in handles))
        note(f"versioned: {len(unversioned_ids)} unversioned workflows completed on {tq}")
    ids = [versioned_id] + unversioned_ids
    t = await completed_facts(client, ids, args.encrypt)
    executions = [await described_versioning(client, versioned_id, "versioned")]
    executions += [await described_versioning(client, i, "unversioned") for i in unversioned_ids]
    listed = await listed_versioning(client, f'WorkflowId STARTS_WITH "{base}"', ids, 30)
    for e in executions:
        e["listed"] = listed[e["workflow_id"]]
    v = executions[0]
    if v["worker_deployment_name"] != args.deployment or v["deployment_version"] != {
        "deployment_name": args.deployment,
        "build_id": build_id,
    }:
        raise Failure(
            f"workflow {versioned_id}: worker_deployment_name {v['worker_deployment_name']!r}, version "
            f"{v['deployment_version']}, expected {args.deployment}.{build_id}"
        )
    for e in executions[1:]:
        if e["deployment_version"] is not None or e["versioning_behavior"] is not None:
            raise Failure(f"workflow {e['workflow_id']} ran versioned: {e['deployment_version']}, {e['versioning_behavior']}")
    return {
        "namespace": args.namespace,
        "task_queue": tq,
        "workflow_type": "VersionedWorkflow",
        "activity_type": "versioned_activity",
        "workflow_ids": ids,
        "deployment": args.deployment,
        "build_id": build_id,
        "default_versioning_behavior": behavior.name,
        "unversioned_count": len(unversioned_ids),
        "unversioned_declares_deployment": args.unversioned_declares_deployment,
        "worker_identities": identities,
        "routing": routing,
        "executions": executions,
        # Whether ListWorkflowExecutions (what the audit reads) carries the field the versioned
        # execution has in DescribeWorkflowExecution.
        "list_has_worker_deployment_name": executions[0]["listed"]["worker_deployment_name"] == args.deployment,
        "encrypted": args.encrypt,
        "codec": codec,
        "events": t.events,
        "payload_encodings": dict(t.encodings),
        "workflow_task_problems": dict(t.task_problems),
    }

SCENARIOS: dict[str, tuple[Callable[[argparse.Namespace], Awaitable[dict]], float, str]] = {
    "clean": (scenario_clean, 60, "the right workload: CleanWorkflow, sane activity options"),
    "large-payload": (scenario_large_payload, 60, "1,992,294-byte activity input and result"),
    "long-history": (scenario_long_history, 90, "one workflow with more than --events events"),
    "no-heartbeat": (scenario_no_heartbeat, 60, "a 10-minute activity without heartbeat timeout"),
    "backlog": (scenario_backlog, 60, "client only: workflows on a task queue nobody polls"),
    "nondeterminism": (scenario_nondeterminism, 90, "an incompatible worker change: stuck workflow"),
    "bulk": (scenario_bulk, 240, "many short workflows in several namespaces (benchmark)"),
    "versioned": (scenario_versioned, 60, "Worker Versioning: a deployment's current version, and unversioned runs"),
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="workloads.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="SCENARIO")
    for name, (_, timeout, help_text) in SCENARIOS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "bulk":
            p.add_argument("--namespaces", required=True, help="comma-separated namespaces (they must exist)")
            p.add_argument("--per-namespace", type=int, default=200, help="workflows per namespace (default 200)")
            p.add_argument("--concurrency", type=int, default=100, help="workflows in flight, in all (default 100)")
            p.add_argument("--worker-slots", type=int, default=20, help="task slots per worker (default 20)")
            p.add_argument(
                "--no-eager",
                dest="eager",
                action="store_false",
                help="no eager workflow start (default: eager, the first task goes straight to the local worker)",
            )
            p.add_argument("--sample", type=int, default=10, help="histories checked per namespace (default 10)")
        else:
            p.add_argument("--namespace", required=True, help="an existing namespace")
        p.add_argument("--task-queue", help=f"task queue (default: <id-prefix>-{name}-<run id>)")
        p.add_argument("--id-prefix", default="audit", help="workflow id prefix (default audit)")
        p.add_argument(
            "--wait-namespace", type=float, default=30, help="seconds to retry a NotFound namespace (default 30)"
        )
        p.add_argument("--timeout", type=float, default=timeout, help=f"give up after this many seconds (default {timeout:g})")
        if name != "backlog":
            p.add_argument(
                "--encrypt",
                action="store_true",
                help="encrypt payloads with the example codec (CODEC_KEY_FILES..., or a generated temporary key)",
            )
            p.add_argument(
                "--keep-key",
                action="store_true",
                help="keep the generated key file (default: removed once read; its path is in the JSON line)",
            )
        if name in ("clean", "backlog"):
            p.add_argument("--count", type=int, default=5 if name == "backlog" else 1, help="workflows to start")
        if name == "clean":
            p.add_argument("--marker", default="AUDIT-MARKER", help="text put in the workflow input")
        if name == "long-history":
            p.add_argument("--events", type=int, default=12000, help="the history exceeds this (default 12000)")
            p.add_argument("--batch", type=int, default=6000, help="timers started per workflow task (default 6000)")
        if name == "versioned":
            p.add_argument("--deployment", required=True, help="the Worker Deployment name (no '.')")
            p.add_argument(
                "--build-id", help="the version's build id (default: <id-prefix>-versioned-<run id>)"
            )
            p.add_argument(
                "--behavior",
                choices=("auto-upgrade", "pinned"),
                default="auto-upgrade",
                help="the versioned worker's default versioning behavior (default auto-upgrade)",
            )
            p.add_argument(
                "--unversioned-count",
                type=int,
                default=0,
                help="then set the current version to unversioned and run this many workflows on the "
                "same task queue with a worker without versioning (default 0)",
            )
            p.add_argument(
                "--unversioned-declares-deployment",
                action="store_true",
                help="the unversioned worker has the deployment's name in its deployment options, with "
                "use_worker_versioning off (default: no deployment options)",
            )
            p.add_argument(
                "--register-wait",
                type=float,
                default=20,
                help="seconds to retry setting the current version until the worker registered it (default 20)",
            )
        if name == "nondeterminism":
            p.add_argument(
                "--problems-wait",
                type=float,
                default=30,
                help="seconds to wait for the TemporalReportedProblems search attribute (default 30)",
            )
            p.add_argument(
                "--workflow-task-timeout",
                type=float,
                default=0,
                help="the workflow's task timeout in seconds (default: the server's 10 s); the SDK reports "
                "only the first failed attempt, later ones time out, so a short one (2) makes the server "
                "set TemporalReportedProblems about 22 s after the failure instead of about 53 s (it backs off "
                "from the fourth attempt)",
            )
    return ap


async def run(args: argparse.Namespace) -> dict:
    func, _, _ = SCENARIOS[args.command]
    begun = time.monotonic()
    try:
        out = await asyncio.wait_for(func(args), timeout=args.timeout)
    except asyncio.TimeoutError:
        raise Failure(f"the scenario did not finish within {args.timeout:g} s (--timeout)") from None
    return {"scenario": args.command, **out, "seconds": round(time.monotonic() - begun, 2)}


def main(argv: list[str]) -> int:
    global CODEC_DIR, IDENTITY, RUN
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (exit 0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2
    CODEC_DIR = Path(__file__).resolve().parents[2] / "examples" / "payload-encryption" / "python"
    IDENTITY = f"audit-workloads@{socket.gethostname()}"
    RUN = uuid.uuid4().hex[:8]
    # Only the result goes to the real stdout: fd 1 becomes stderr for the SDK, its Rust core and
    # any library, and the JSON line is written to a saved copy of the original stdout.
    sys.stdout.flush()
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="workloads: %(levelname)s %(name)s: %(message)s"
    )
    # The SDK core's own log lines (ANSI-coloured on the console) through Python logging, plain.
    Runtime.set_default(
        Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                )
            )
        )
    )
    try:
        out = asyncio.run(run(args))
    except Failure as e:
        print(f"workloads.py {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one clear line: RPC, TLS, workflow failures
        print(f"workloads.py {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    result_out.write(json.dumps(out) + "\n")
    result_out.flush()
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # The SDK's Rust threads can race interpreter finalisation at exit; the work is done and
    # flushed, so leave without finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
