#!/usr/bin/env python3
"""The history-shard and history-memory models against a real server at two shard counts.

For each shard count (default 4 and 16) it provisions fresh databases with temporal-bootstrap,
starts a real Temporal server (the dev stack's upgrade slot: scripts/dev-services
start-upgrade-server) with that `numHistoryShards`, runs the same load for --seconds (real
Python SDK workers in this process: workflows of --activities sequential no-op activities,
--concurrency in flight), and reads the server's own metrics before and after:

  history updates/s      persistence_requests{operation="UpdateWorkflowExecution"} per second
                         (+ CreateWorkflowExecution), total and per shard
  write latency          persistence_latency of UpdateWorkflowExecution, p50 and p99 (PostgreSQL)
  shard lock wait        semaphore_latency{operation="ShardInfo"} p50 and p99: the wait for the
                         shard's single writer slot (history.shardIOConcurrency = 1)
  model ceiling          1 / write latency p50 updates/s per shard (writes on a shard are
                         serialised), and what the plan uses: that x shard_target_utilization
  cache                  cache_usage / cache_size of the mutable-state cache (one per host,
                         history.hostLevelCacheMaxSize 128,000 entries)
  idle heap              the live Go heap (lowest memory_heapinuse over --settle seconds, which
                         holds a garbage collection) once the shards are acquired and nothing is
                         cached: the difference between two shard counts is what a shard costs
  heap per cached state  the live heap after the load minus the idle one, divided by the cached
                         mutable states (cache_usage): what one cache entry costs

Prints one JSON document on stdout (docs/capacity-model.md quotes it).

  shards.py [--shards 4,16] [--seconds 60] [--activities 4] [--concurrency 64]

Environment: `scripts/dev-services env`; the stack running; no other upgrade-slot server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta

from temporalio import activity, workflow

REPO = pathlib.Path(__file__).resolve().parents[2]
LOCAL = pathlib.Path(os.environ.get("TB_REPO_LOCAL") or REPO / ".local")
WORK = LOCAL / "bench-shards"
PKI = LOCAL / "pki-upgrade"
ADDRESS, METRICS = "127.0.0.1:57533", "http://127.0.0.1:59095/metrics"
NAMESPACE = "shards"
TASK_QUEUE = "shards"


@activity.defn
async def noop(i: int) -> int:
    return i


@workflow.defn
class ShardLoad:
    @workflow.run
    async def run(self, activities: int) -> int:
        total = 0
        for i in range(activities):
            total += await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=30))
        return total


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"shards: {name} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`")
    return value


def run(args: list, env: dict | None = None, timeout: int = 900) -> str:
    p = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})}, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"shards: `{' '.join(map(str, args))}` exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def psql(sql: str) -> None:
    run(["psql", "-X", "-At", "-h", need("TB_PG_HOST"), "-p", need("TB_PG_PORT"), "-U", need("TB_PG_ADMIN_USER"),
         "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], env={"PGPASSWORD": need("TB_PG_ADMIN_PASSWORD")})


def write_config(shards: int) -> pathlib.Path:
    d = WORK / f"shards-{shards}"
    d.mkdir(parents=True, exist_ok=True)
    schema = pathlib.Path(need("TB_TEMPORAL_RELEASES_DIR")) / need("TB_TEMPORAL_VERSION") / "schema"
    path = d / "platform.yaml"
    path.write_text(f"""# Written by tests/burst/shards.py for one run; not an example.
cluster:
  name: bench-shards-{shards}
  temporal_version: "{need('TB_TEMPORAL_VERSION')}"
  environment: development
  frontend:
    address: {ADDRESS}
    tls:
      ca: {PKI}/ca-bundle.pem
      cert: {PKI}/clients/temporal-bootstrap.pem
      key: {PKI}/clients/temporal-bootstrap-key.pem
      server_name: localhost
capacity:
  peak_workflow_starts_per_second: 5
  activities_per_workflow: 4
  average_workflow_duration: 1m
  history_shards: {shards}
persistence:
  postgres:
    host: {need('TB_PG_HOST')}
    port: {need('TB_PG_PORT')}
    database: temporal_shards{shards}
    user: temporal
    password: env:TEMPORAL_DB_PASSWORD
    admin:
      user: {need('TB_PG_ADMIN_USER')}
      password: env:TB_PG_ADMIN_PASSWORD
    schema_dir: {schema}/postgresql/v12
visibility:
  postgres:
    database: temporal_shards{shards}_visibility
pki:
  dir: {PKI}
  ca: {{ validity: 1y }}
  renew_before: 7d
  frontend:
    dns_names: [localhost, temporal-upg-frontend, temporal-upg-frontend.temporal.svc]
    ip_addresses: [127.0.0.1]
    validity: 30d
  internode:
    dns_names: [temporal-upg-internode.temporal.svc]
    validity: 30d
  clients:
    - name: temporal-bootstrap
namespaces:
  - name: {NAMESPACE}
    retention: 1d
    description: shard benchmark
""")
    return path


# --- metrics -----------------------------------------------------------------------------------

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
WANTED = ("persistence_requests", "persistence_latency_bucket", "semaphore_latency_bucket",
          "cache_usage", "cache_size", "memory_heapinuse", "numshards_gauge")


def scrape() -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(METRICS, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith(WANTED):
            continue
        m = LINE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def total(s: dict, name: str, *must: str) -> float:
    return sum(v for (n, labels), v in s.items() if n == name and all(x in labels for x in must))


def quantile(before: dict, after: dict, name: str, q: float, *must: str) -> float | None:
    """q-quantile (seconds) of a histogram's observations between two scrapes (upper bucket bound)."""
    buckets: dict[float, float] = {}
    for (n, labels), v in after.items():
        if n != name or not all(x in labels for x in must):
            continue
        le = re.search(r'le="([^"]+)"', labels).group(1)
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + v - before.get((n, labels), 0.0)
    if not buckets or buckets.get(float("inf"), 0) <= 0:
        return None
    count = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound
    return None


def settled_heap(seconds: float) -> float:
    """The lowest Go heap in use over `seconds` of an idle server: the value right after a garbage
    collection, i.e. the live heap (Go collects at least every 2 minutes, runtime.forcegcperiod)."""
    low, end = float("inf"), time.time() + seconds
    while time.time() < end:
        low = min(low, total(scrape(), "memory_heapinuse", 'service_name="history"'))
        time.sleep(2)
    return low


# --- one shard count ----------------------------------------------------------------------------


async def load(seconds: float, activities: int, concurrency: int) -> int:
    from temporalio.client import Client, TLSConfig
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    tls = TLSConfig(server_root_ca_cert=(PKI / "ca-bundle.pem").read_bytes(),
                    client_cert=(PKI / "clients" / "temporal-bootstrap.pem").read_bytes(),
                    client_private_key=(PKI / "clients" / "temporal-bootstrap-key.pem").read_bytes(),
                    domain="localhost")
    client = await Client.connect(ADDRESS, namespace=NAMESPACE, tls=tls)
    done = 0
    end = time.time() + seconds
    run_id = uuid.uuid4().hex[:8]

    async def loop(k: int) -> None:
        nonlocal done
        i = 0
        while time.time() < end:
            await client.execute_workflow(ShardLoad.run, activities, id=f"s-{run_id}-{k}-{i}", task_queue=TASK_QUEUE)
            done += 1
            i += 1

    # Unsandboxed: this module computes paths at import, which the sandbox's re-import refuses, and
    # a benchmark workflow has nothing to protect.
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[ShardLoad], activities=[noop],
                      workflow_runner=UnsandboxedWorkflowRunner(),
                      max_concurrent_activities=concurrency * 2, max_concurrent_workflow_tasks=concurrency * 2):
        await asyncio.gather(*(loop(k) for k in range(concurrency)))
    return done


def measure(shards: int, args: argparse.Namespace) -> dict:
    bin_ = args.bootstrap
    run(["scripts/dev-services", "stop-upgrade-server"])
    for db in (f"temporal_shards{shards}", f"temporal_shards{shards}_visibility"):
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    config = write_config(shards)
    print(f"shards {shards}: starting a server on fresh databases", file=sys.stderr, flush=True)
    run(["scripts/dev-services", "start-upgrade-server"],
        env={"TB_UPGRADE_CONFIG": str(config), "TB_BOOTSTRAP_BIN": bin_})
    try:
        run([bin_, "apply", "-f", config])
        time.sleep(15)  # the shards acquired, nothing cached yet
        idle_heap = settled_heap(args.settle)
        # Warm-up: the namespace cache and the shards' first writes, outside the measurement.
        asyncio.run(load(10, args.activities, args.concurrency))
        before, t = scrape(), time.time()
        done = asyncio.run(load(args.seconds, args.activities, args.concurrency))
        elapsed = time.time() - t
        after = scrape()
        loaded_heap = settled_heap(args.settle)
    finally:
        run(["scripts/dev-services", "stop-upgrade-server"])
    ops = ('operation="UpdateWorkflowExecution"', 'operation="CreateWorkflowExecution"')
    updates = sum(total(after, "persistence_requests", o, 'service_name="history"')
                  - total(before, "persistence_requests", o, 'service_name="history"') for o in ops) / elapsed
    w50 = quantile(before, after, "persistence_latency_bucket", 0.5, ops[0])
    w99 = quantile(before, after, "persistence_latency_bucket", 0.99, ops[0])
    s50 = quantile(before, after, "semaphore_latency_bucket", 0.5, 'operation="ShardInfo"')
    s99 = quantile(before, after, "semaphore_latency_bucket", 0.99, 'operation="ShardInfo"')
    cached_before = total(before, "cache_usage", 'cache_type="mutablestate"')
    cached_after = total(after, "cache_usage", 'cache_type="mutablestate"')
    per_entry = (loaded_heap - idle_heap) / cached_after if cached_after > 0 else None
    ceiling = 1 / w50 if w50 else None
    return {
        "shards": shards,
        "seconds": round(elapsed, 1),
        "workflows_per_second": round(done / elapsed, 1),
        "history_updates_per_second": round(updates, 1),
        "updates_per_shard_per_second": round(updates / shards, 1),
        "write_latency_p50_ms": w50 and w50 * 1000,
        "write_latency_p99_ms": w99 and w99 * 1000,
        "semaphore_latency_p50_ms": s50 and s50 * 1000,
        "semaphore_latency_p99_ms": s99 and s99 * 1000,
        "model_ceiling_updates_per_shard_per_second": ceiling and round(ceiling),
        "shard_utilization_of_ceiling": ceiling and round(updates / shards / ceiling, 3),
        "mutable_state_cache": {"entries_before": cached_before, "entries_after": cached_after,
                                "max_entries": total(after, "cache_size", 'cache_type="mutablestate"')},
        "heap_bytes_per_cached_mutable_state": per_entry and round(per_entry),
        "heap_inuse_idle_mib": round(idle_heap / 2**20, 1),
        "heap_inuse_after_load_mib": round(loaded_heap / 2**20, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", default="4,16")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--activities", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--settle", type=float, default=130, help="seconds of idle heap sampling (>= 120: one forced GC)")
    ap.add_argument("--bootstrap", default=os.environ.get("TB_BOOTSTRAP_BIN") or str(REPO / "target" / "debug" / "temporal-bootstrap"))
    args = ap.parse_args()
    try:
        counts = [int(x) for x in args.shards.split(",")]
    except ValueError:
        print("shards: --shards takes a comma-separated list of integers, e.g. 4,16", file=sys.stderr)
        return 2
    os.chdir(REPO)
    results = [measure(n, args) for n in counts]
    print(json.dumps({"load": {"seconds": args.seconds, "activities_per_workflow": args.activities,
                               "workflows_in_flight": args.concurrency}, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
