"""The interface shared by the four SDK examples (../README.md), for the Python SDK.

  python main.py vectors FILE
  python main.py worker --task-queue Q [--activities-only]
  python main.py run --task-queue Q --workflow-id W --input S
  python main.py start --task-queue Q --workflow-id W --input S [--workflow-type T]
  python main.py decode-history --workflow-id W

Keys: CODEC_KEY_FILES, CODEC_WRAPPED_KEY_FILES (+ VAULT_ADDR, VAULT_TOKEN, CODEC_TRANSIT_MOUNT,
CODEC_TRANSIT_KEY), CODEC_CURRENT_KEY. Connection: TEMPORAL_ADDRESS (default 127.0.0.1:7233),
TEMPORAL_NAMESPACE (default `default`), TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY,
TEMPORAL_TLS_SERVER_NAME.

Exit codes: 0 success, 1 failure (a vectors mismatch, a key or connection error), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import signal
import sys
import uuid

import temporalio.converter
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from codec import CodecError, EncryptionCodec

from workflows import EncryptedWorkflow, greet, python_activity

PAYLOAD_TYPE = "temporal.api.common.v1.Payload"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def payload_from_json(j: dict) -> Payload:
    return Payload(
        metadata={k: base64.b64decode(v) for k, v in j.get("metadata", {}).items()},
        data=base64.b64decode(j.get("data", "")),
    )


def payload_to_json(p: Payload) -> dict:
    """The codec protocol's proto JSON form: metadata values and data in standard base64."""
    return {"metadata": {k: _b64(v) for k, v in sorted(p.metadata.items())}, "data": _b64(p.data)}


# --- vectors ---------------------------------------------------------------------------------------


async def check_vectors(path: str) -> int:
    """Checks every group of test-vectors.json; returns the number of failing cases."""
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
    keys = {k: base64.b64decode(x) for k, x in v["keys"].items()}
    codec = EncryptionCodec(keys, next(iter(keys)))
    failures = 0

    async def group(name, cases, check, label):
        nonlocal failures
        bad = 0
        for i, case in enumerate(cases):
            try:
                problem = await check(case)
            except Exception as e:  # noqa: BLE001 - reported as the case's failure
                problem = f"unexpected error: {type(e).__name__}: {e}"
            if problem:
                bad += 1
                print(f"  FAIL {name}[{i}] {label(case, i)}: {problem}")
        failures += bad
        print(f"{name}: {len(cases) - bad}/{len(cases)} ok")

    async def encrypt(c):
        plain = payload_from_json(c["payload"])
        if plain.SerializeToString().hex() != c["payload_proto_hex"]:
            return "serialisation differs from payload_proto_hex"
        enc = codec.encrypt_with_nonce(plain, c["key_id"], bytes.fromhex(c["nonce_hex"]))
        if payload_to_json(enc) != payload_to_json(payload_from_json(c["encrypted"])):
            return "encrypted payload differs"
        (dec,) = await codec.decode([payload_from_json(c["encrypted"])])
        if dec != plain:
            return "decoding `encrypted` does not give `payload`"
        (round_trip,) = await codec.decode(await codec.encode([plain]))
        if round_trip != plain:
            return "random-nonce round trip differs"
        return None

    async def decrypt_only(c):
        (dec,) = await codec.decode([payload_from_json(c["encrypted"])])
        return None if dec == payload_from_json(c["payload"]) else "decoded payload differs"

    async def pass_through(c):
        p = payload_from_json(c)
        (dec,) = await codec.decode([p])
        return None if dec is p and dec == payload_from_json(c) else "not returned unchanged"

    async def tampered(c):
        try:
            await codec.decode([payload_from_json(c["encrypted"])])
        except CodecError as e:
            return None if e.reason == c["reason"] else f"failed with reason {e.reason}, expected {c['reason']}"
        except Exception as e:  # noqa: BLE001
            return f"failed without a reason category: {type(e).__name__}: {e}"
        return "decoded, expected a failure"

    await group("encrypt", v["encrypt"], encrypt, lambda c, i: c["name"])
    await group("decrypt_only", v["decrypt_only"], decrypt_only, lambda c, i: c["name"])
    await group("pass_through", v["pass_through"], pass_through, lambda c, i: f"#{i}")
    await group("tampered", v["tampered"], tampered, lambda c, i: c["name"])
    return failures


# --- connection --------------------------------------------------------------------------------


def _read_env_file(variable: str) -> bytes:
    path = os.environ[variable]
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{variable}: cannot read {path}: {e.strerror or e}") from None


def tls_from_env() -> TLSConfig | bool:
    """TEMPORAL_TLS_*: mTLS with a client certificate, server-verified TLS with only the CA."""
    ca, cert, key = (os.environ.get(f"TEMPORAL_TLS_{n}") for n in ("CA", "CERT", "KEY"))
    if not (ca or cert or key):
        return False
    if bool(cert) != bool(key):
        raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together")
    return TLSConfig(
        server_root_ca_cert=_read_env_file("TEMPORAL_TLS_CA") if ca else None,
        client_cert=_read_env_file("TEMPORAL_TLS_CERT") if cert else None,
        client_private_key=_read_env_file("TEMPORAL_TLS_KEY") if key else None,
        domain=os.environ.get("TEMPORAL_TLS_SERVER_NAME") or None,
    )


def namespace() -> str:
    return os.environ.get("TEMPORAL_NAMESPACE") or "default"


async def connect(codec: EncryptionCodec) -> Client:
    converter = dataclasses.replace(temporalio.converter.default(), payload_codec=codec)
    return await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233",
        namespace=namespace(),
        data_converter=converter,
        tls=tls_from_env(),
    )


def new_worker(client: Client, task_queue: str, activities_only: bool = False) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[] if activities_only else [EncryptedWorkflow],
        activities=[greet, python_activity],
    )


# --- history -----------------------------------------------------------------------------------


def _is_repeated(field) -> bool:
    # protobuf 6+ has `is_repeated`; older releases only `label`.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == field.LABEL_REPEATED


def payloads_in(message, out: list[Payload]) -> None:
    """Every Payload message inside `message`, in field order (maps and repeated fields included)."""
    if message.DESCRIPTOR.full_name == PAYLOAD_TYPE:
        out.append(message)
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == field.TYPE_MESSAGE:
                for item in value.values():
                    payloads_in(item, out)
        elif _is_repeated(field):
            for item in value:
                payloads_in(item, out)
        else:
            payloads_in(value, out)


# --- commands ----------------------------------------------------------------------------------


async def _worker(args) -> int:
    client = await connect(EncryptionCodec.from_env())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with new_worker(client, args.task_queue, args.activities_only):
        print(f"worker ready: namespace={namespace()} task-queue={args.task_queue}", flush=True)
        await stop.wait()
    return 0


async def _run(args) -> int:
    client = await connect(EncryptionCodec.from_env())
    async with new_worker(client, args.task_queue):
        result = await client.execute_workflow(
            EncryptedWorkflow.run, args.input, id=args.workflow_id, task_queue=args.task_queue
        )
    print(result)
    return 0


async def _start(args) -> int:
    client = await connect(EncryptionCodec.from_env())
    result = await client.execute_workflow(
        args.workflow_type, args.input, id=args.workflow_id, task_queue=args.task_queue
    )
    print(result if isinstance(result, str) else json.dumps(result))
    return 0


async def _decode_history(args) -> int:
    codec = EncryptionCodec.from_env()
    client = await connect(codec)
    history = await client.get_workflow_handle(args.workflow_id).fetch_history()
    for event in history.events:
        found: list[Payload] = []
        payloads_in(event, found)
        for p in await codec.decode(found):
            print(json.dumps({"event_id": event.event_id, "payload": payload_to_json(p)}))
    return 0


async def _vectors(args) -> int:
    return 0 if await check_vectors(args.file) == 0 else 1


def _parser() -> argparse.ArgumentParser:
    short = lambda: f"encrypted-{uuid.uuid4().hex[:8]}"  # noqa: E731
    ap = argparse.ArgumentParser(prog="main.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("vectors", help="check the codec against test-vectors.json")
    p.add_argument("file")
    p.set_defaults(func=_vectors)
    p = sub.add_parser("worker", help="run a worker until SIGTERM")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--activities-only", action="store_true", help="serve the activities only")
    p.set_defaults(func=_worker)
    for name, func, help_text in (
        ("run", _run, "start EncryptedWorkflow with an in-process worker, print its result"),
        ("start", _start, "client only: start a workflow, print its result"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--task-queue", required=(name == "start"), default=short())
        p.add_argument("--workflow-id", default=short())
        p.add_argument("--input", default="hello, encrypted world")
        if name == "start":
            p.add_argument("--workflow-type", default="EncryptedWorkflow")
        p.set_defaults(func=func)
    p = sub.add_parser("decode-history", help="print every payload of a history, decoded")
    p.add_argument("--workflow-id", required=True)
    p.set_defaults(func=_decode_history)
    return ap


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)  # exits 2 on a usage error
    try:
        return asyncio.run(args.func(args))
    except Exception as e:  # noqa: BLE001 - one line, no traceback: key, TLS, connection, workflow errors
        print(f"error: {type(e).__name__}: {e}" if not isinstance(e, ValueError) else f"error: {e}", file=sys.stderr)
        return 1


def exit_now(code: int) -> None:
    # The SDK's Rust core threads can race interpreter finalisation and abort the process at exit
    # ("PyGILState_Release ... must be current"); the work is done, so leave without finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        status = cli(sys.argv[1:])
    except SystemExit as e:  # argparse
        status = e.code if isinstance(e.code, int) else 2
    exit_now(status)
