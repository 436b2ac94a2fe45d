"""Runs a worker with the encryption codec, executes one workflow and prints its result.

The interface shared by the four SDK examples (commands vectors, worker, run, start, decode-history,
connection from TEMPORAL_*) is main.py; `python worker.py COMMAND ...` forwards to it.

Usage:
  CODEC_KEY_FILES=k1=keys/k1.key python worker.py --address 127.0.0.1:7233 \
      --namespace default --workflow-id demo-1 --input "card 4111-1111"

With mTLS (the client certificate issued for this worker by `temporal-bootstrap certs issue`):
  --tls-ca pki/ca-bundle.pem --tls-cert pki/clients/payments-worker.pem \
  --tls-key pki/clients/payments-worker-key.pem [--tls-server-name temporal-frontend]
Custom search attributes of type Keyword set when the workflow starts (defined beforehand in
platform.yaml `namespaces[].search_attributes`): --keyword CustomerId=c-42 (repeatable).

The workflow's input, the activity's input and output and the workflow's result are all encrypted
before they leave this process; the Temporal server only stores ciphertext.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import uuid

import temporalio.converter
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import TLSConfig
from temporalio.worker import Worker

# The workflow sandbox re-imports this module; the codec (and `cryptography`, a native extension)
# must be passed through, not re-imported in the sandbox.
with workflow.unsafe.imports_passed_through():
    from codec import EncryptionCodec

from workflows import EncryptedWorkflow, greet


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1:7233")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--task-queue", default=f"encrypted-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--workflow-id", default=f"encrypted-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--input", default="hello, encrypted world")
    ap.add_argument("--tls-ca", help="CA bundle (PEM) of the frontend certificate")
    ap.add_argument("--tls-cert", help="client certificate (PEM) for mTLS")
    ap.add_argument("--tls-key", help="client private key (PEM) for mTLS")
    ap.add_argument("--tls-server-name", help="name expected in the frontend certificate")
    ap.add_argument("--keyword", action="append", default=[], metavar="NAME=VALUE",
                    help="a Keyword search attribute set at start (repeatable)")
    args = ap.parse_args()

    tls: TLSConfig | bool = False
    if args.tls_ca or args.tls_cert or args.tls_key:
        if not (args.tls_ca and args.tls_cert and args.tls_key):
            ap.error("--tls-ca, --tls-cert and --tls-key go together")
        tls = TLSConfig(
            server_root_ca_cert=open(args.tls_ca, "rb").read(),
            client_cert=open(args.tls_cert, "rb").read(),
            client_private_key=open(args.tls_key, "rb").read(),
            domain=args.tls_server_name,
        )
    pairs = []
    for item in args.keyword:
        name, sep, value = item.partition("=")
        if not sep or not name:
            ap.error(f"--keyword {item!r}: expected NAME=VALUE")
        pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(name), value))

    converter = dataclasses.replace(
        temporalio.converter.default(), payload_codec=EncryptionCodec.from_env()
    )
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=converter, tls=tls
    )
    async with Worker(
        client,
        task_queue=args.task_queue,
        workflows=[EncryptedWorkflow],
        activities=[greet],
    ):
        result = await client.execute_workflow(
            EncryptedWorkflow.run,
            args.input,
            id=args.workflow_id,
            task_queue=args.task_queue,
            search_attributes=TypedSearchAttributes(pairs),
        )
    print(result)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        import main as shared_interface  # `python worker.py vectors FILE` etc.

        try:
            status = shared_interface.cli(sys.argv[1:])
        except SystemExit as e:  # argparse
            status = e.code if isinstance(e.code, int) else 2
        shared_interface.exit_now(status)
    asyncio.run(main())
    # The SDK's Rust core threads can race interpreter finalisation and abort the process at exit
    # ("PyGILState_Release ... must be current"); the work is done, so leave without finalising.
    sys.stdout.flush()
    os._exit(0)
