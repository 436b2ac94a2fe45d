"""A real multi-hop upgrade with workflows in flight: Temporal 1.29.7 -> 1.30.9 -> 1.31.2 -> 1.32.2.

For each visibility store (OpenSearch, then PostgreSQL):
1. a fresh cluster created by the real 1.29.7 server (scripts/dev-services start-upgrade-server,
   after `temporal-bootstrap apply` made its certificates, schema and index), with a namespace and
   custom search attributes;
2. a real Python SDK worker leaves workflows open: a pending timer, an awaited signal, a
   heartbeating activity, a running child workflow; each carries CustomerId = "upg-old";
3. refusals write nothing: a downgrade, a retracted target, a state file that skips a minor;
4. `upgrade plan --to 1.32.2 --via 1.31.2` (asking the cluster) shows three hops;
5. `upgrade apply --executor process` runs them; temporal-bootstrap is SIGKILLed during hop 2 and
   the same command run again finishes;
6. afterwards: every open workflow completes with its expected result, new workflows run,
   old and new ones are found by CustomerId queries, the index records v14 (OpenSearch),
   `temporal-sql-tool update-schema` of 1.32.2 adds no history row, and `apply` with
   temporal_version 1.32.2 finds nothing to change.

1.31.2 instead of 1.31.5 (the line's latest): 1.31.3 to 1.31.5 need go.temporal.io/auto-scaled-workers
v0.0.1-1.31.2, which the module proxy reachable here does not serve, so they cannot be built here.

Needs the dev stack (scripts/dev-services start) and its environment (eval "$(scripts/dev-services env)");
run with the stack's Python (TB_PYTHON), which has the temporalio SDK. Exit 0 when every step passed.
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workflows as wf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / ".local"
WORK = LOCAL / "upgrade-e2e"
PKI = LOCAL / "pki-upgrade"
STATE_DIR = LOCAL / "dev-services"
PID_FILE = STATE_DIR / "temporal-upgrade.pid"
BIN = Path(os.environ.get("TB_BOOTSTRAP_BIN") or REPO / "target/debug/temporal-bootstrap")
FROM, HOP1, VIA, TO = "1.29.7", "1.30.9", "1.31.2", "1.32.2"
ADDRESS, HTTP_ADDRESS = "127.0.0.1:57533", "127.0.0.1:57543"
NAMESPACE, TASK_QUEUE = "upgrade", "upgrade-e2e"
TIMER_SECONDS = 45
INDEX = "temporal_visibility_v1_upg"


def say(msg: str) -> None:
    print(f"upgrade-e2e: {msg}", flush=True)


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"upgrade-e2e: {name} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`")
    return value


RELEASES = Path(need("TB_TEMPORAL_RELEASES_DIR"))


def run(args, env=None, check=True, timeout=600, quiet=False) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([str(a) for a in args], env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        sys.exit(f"upgrade-e2e: `{' '.join(map(str, args))}` exited {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}")
    if not quiet and p.stderr.strip():
        for line in p.stderr.strip().splitlines()[-5:]:
            print(f"    | {line}", flush=True)
    return p


def tb(*args, check=True, timeout=900) -> subprocess.CompletedProcess:
    return run([BIN, *args], check=check, timeout=timeout)


def psql(db: str, sql: str) -> str:
    p = run(["psql", "-X", "-At", "-h", need("TB_PG_HOST"), "-p", need("TB_PG_PORT"), "-U", need("TB_PG_ADMIN_USER"),
             "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql], env={"PGPASSWORD": need("TB_PG_ADMIN_PASSWORD")}, quiet=True)
    return p.stdout.strip()


def http(method: str, url: str):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def check(cond: bool, what: str) -> None:
    if not cond:
        sys.exit(f"upgrade-e2e: FAILED: {what}")
    say(f"ok: {what}")


class Case:
    def __init__(self, store: str):
        self.store = store
        self.dir = WORK / store
        self.config = self.dir / "platform.yaml"
        self.db = f"temporal_upg_{store}"
        self.vis_db = f"temporal_upg_{store}_visibility"
        self.state = self.dir / "platform.upgrade-state.json"

    def write_config(self, version: str, schema_release: str) -> None:
        schema = RELEASES / schema_release / "schema"
        if self.store == "opensearch":
            visibility = (f"  elasticsearch:\n    url: {need('TB_OPENSEARCH_URL')}\n    flavor: opensearch\n"
                          f"    index: {INDEX}\n    schema_dir: {schema}/elasticsearch\n    replicas: 0\n")
        else:
            visibility = f"  postgres:\n    database: {self.vis_db}\n"
        self.config.write_text(f"""# Written by scripts/upgrade-e2e/e2e.py for one run; not an example.
cluster:
  name: upgrade-e2e-{self.store}
  temporal_version: "{version}"
  environment: development
  frontend:
    address: {ADDRESS}
    http_address: {HTTP_ADDRESS}
    tls:
      ca: {PKI}/ca-bundle.pem
      cert: {PKI}/clients/temporal-bootstrap.pem
      key: {PKI}/clients/temporal-bootstrap-key.pem
      server_name: localhost
capacity:
  peak_workflow_starts_per_second: 5
  activities_per_workflow: 4
  average_workflow_duration: 10m
  history_shards: 16
persistence:
  postgres:
    host: {need('TB_PG_HOST')}
    port: {need('TB_PG_PORT')}
    database: {self.db}
    user: temporal
    password: env:TEMPORAL_DB_PASSWORD
    admin:
      user: {need('TB_PG_ADMIN_USER')}
      password: env:TB_PG_ADMIN_PASSWORD
    schema_dir: {schema}/postgresql/v12
visibility:
{visibility}pki:
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
    description: upgrade end-to-end test
    search_attributes:
      CustomerId: Keyword
      OrderTotal: Double
""")

    def fresh(self) -> None:
        stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        for db in (self.db, self.vis_db):
            psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if self.store == "opensearch":
            http("DELETE", f"{need('TB_OPENSEARCH_URL')}/{INDEX}")

    def history_rows(self) -> dict:
        dbs = [self.db] + ([self.vis_db] if self.store == "postgres" else [])
        return {db: psql(db, "SELECT count(*) || '@' || max(curr_version) FROM schema_update_history, schema_version") for db in dbs}

    def fingerprint(self) -> str:
        rows = self.history_rows()
        if self.store == "opensearch":
            _, body = http("GET", f"{need('TB_OPENSEARCH_URL')}/{INDEX}/_mapping")
            rows["index"] = json.dumps(body, sort_keys=True)
        rows["state"] = self.state.read_text() if self.state.exists() else ""
        return json.dumps(rows, sort_keys=True)


def start_server(case: Case, release: str) -> None:
    run(["scripts/dev-services", "start-upgrade-server"], timeout=900,
        env={"TB_TEMPORAL_VERSION": release, "TB_UPGRADE_CONFIG": str(case.config), "TB_BOOTSTRAP_BIN": str(BIN)})


def stop_server() -> None:
    run(["scripts/dev-services", "stop-upgrade-server"], timeout=120, quiet=True)


def client_env() -> dict:
    return {
        "UPG_ADDRESS": ADDRESS, "UPG_NAMESPACE": NAMESPACE, "UPG_TASK_QUEUE": TASK_QUEUE,
        "TB_TEMPORAL_TLS_CA": str(PKI / "ca-bundle.pem"),
        "TB_TEMPORAL_TLS_CERT": str(PKI / "clients/temporal-bootstrap.pem"),
        "TB_TEMPORAL_TLS_KEY": str(PKI / "clients/temporal-bootstrap-key.pem"),
        "TB_TEMPORAL_TLS_SERVER_NAME": "localhost",
    }


def apply_args(case: Case) -> list:
    return ["upgrade", "apply", "--to", TO, "--via", VIA, "-f", case.config, "--executor", "process",
            "--pid-file", PID_FILE, "--server-binaries", RELEASES, "--server-log", STATE_DIR / "temporal-upgrade.log",
            "--soak", "0s", "--wait-timeout", "5m"]


def refusals(case: Case) -> None:
    before = case.fingerprint()
    for args, expect in [
        (["--to", "1.28.4"], "downgrades are refused"),
        (["--to", "1.30.0"], "retracted"),
    ]:
        p = tb("upgrade", "apply", *args, "-f", case.config, "--executor", "process", "--pid-file", PID_FILE,
               "--server-binaries", RELEASES, check=False)
        check(p.returncode == 2 and expect in p.stdout + p.stderr, f"upgrade apply {' '.join(args)} is refused (exit 2: {expect})")
    # A state file edited to skip a minor (1.29.7 -> 1.31.2 in one hop).
    skipped = {"format": 1, "cluster": f"upgrade-e2e-{case.store}", "from": FROM, "to": VIA,
               "hops": [{"from": FROM, "to": VIA, "phase": "pending"}]}
    case.state.write_text(json.dumps(skipped))
    p = tb("upgrade", "apply", "--to", VIA, "-f", case.config, "--executor", "process", "--pid-file", PID_FILE,
           "--server-binaries", RELEASES, check=False)
    check(p.returncode == 2 and "skipping a minor" in p.stdout + p.stderr, "a state file that skips a minor is refused (exit 2)")
    case.state.unlink()
    check(case.fingerprint() == before, "the refused runs wrote nothing (schema rows, index mapping, state file)")


def apply_with_a_kill_in_hop_2(case: Case) -> None:
    proc = subprocess.Popen([str(a) for a in [BIN, *apply_args(case)]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    killed_at = None
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            state = json.loads(case.state.read_text())
        except (OSError, ValueError):
            state = None
        if state and len(state["hops"]) > 1 and state["hops"][1]["phase"] != "pending":
            killed_at = state["hops"][1]["phase"]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    out = proc.communicate()[0]
    check(killed_at is not None, f"temporal-bootstrap was SIGKILLed during hop 2 (phase {killed_at})\n{out[-2000:]}")
    p = tb(*apply_args(case), "--output", "json", timeout=900)
    report = json.loads(p.stdout)
    check(report["resumed"] is True and report["to"] == TO, f"the same command run again resumed and finished ({len(report['hops'])} hop(s) this run)")
    state = json.loads(case.state.read_text())
    check([h["phase"] for h in state["hops"]] == ["done"] * 3, "the state file records three finished hops")
    check([h["to"] for h in state["hops"]] == [HOP1, VIA, TO], f"the hops were {FROM} -> {HOP1} -> {VIA} -> {TO}")


async def start_workflows(client, case: Case, tag: str) -> dict:
    marker = case.dir / f"finish-activity-{tag}"
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
    attrs = TypedSearchAttributes([SearchAttributePair(SearchAttributeKey.for_keyword("CustomerId"), f"upg-{tag}")])
    # SQL visibility keeps the attribute mapping in the namespace record, which the frontend
    # caches for a few seconds after `apply` registered it.
    deadline = time.monotonic() + 60
    while True:
        try:
            await client.count_workflows('CustomerId = "upg-probe"')
            break
        except Exception as e:  # RPCError: no mapping defined yet
            if "not a valid search attribute" not in str(e) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    run_id = uuid.uuid4().hex[:6]
    ids = {k: f"{tag}-{k}-{run_id}" for k in ("timer", "signal", "activity", "parent")}
    handles = {
        "timer": await client.start_workflow(wf.TimerWorkflow.run, TIMER_SECONDS if tag == "old" else 1, id=ids["timer"],
                                             task_queue=TASK_QUEUE, search_attributes=attrs),
        "signal": await client.start_workflow(wf.SignalWorkflow.run, id=ids["signal"], task_queue=TASK_QUEUE,
                                              search_attributes=attrs),
        "activity": await client.start_workflow(wf.ActivityWorkflow.run, str(marker), id=ids["activity"],
                                                task_queue=TASK_QUEUE, search_attributes=attrs),
        "parent": await client.start_workflow(wf.ParentWorkflow.run, f"{ids['parent']}-child", id=ids["parent"],
                                              task_queue=TASK_QUEUE, search_attributes=attrs),
    }
    return {"handles": handles, "marker": marker, "ids": ids}


async def wait_until_open_in_every_state(client, case: Case, started: dict) -> None:
    deadline = time.monotonic() + 120
    child = client.get_workflow_handle(f"{started['ids']['parent']}-child")
    while time.monotonic() < deadline:
        child_running = False
        try:
            child_running = (await child.describe()).status.name == "RUNNING"
        except Exception:  # not started yet
            pass
        if (case.dir / "activity-started").exists() and child_running:
            break
        await asyncio.sleep(0.5)
    else:
        sys.exit("upgrade-e2e: FAILED: the workflows did not reach their open states within 2 minutes")
    desc = await started["handles"]["timer"].describe()
    check(desc.status.name == "RUNNING", "open before the upgrade: a timer pending, a signal awaited, an activity heartbeating, a child running")


async def finish_and_check(client, started: dict, tag: str) -> None:
    h = started["handles"]
    await h["signal"].signal(wf.SignalWorkflow.go, tag)
    await client.get_workflow_handle(f"{started['ids']['parent']}-child").signal(wf.SignalWorkflow.go, f"{tag}-child")
    started["marker"].touch()
    results = {}
    for name, handle in h.items():
        results[name] = await asyncio.wait_for(handle.result(), timeout=TIMER_SECONDS + 180)
    check(results == {"timer": "timer fired", "signal": f"signal {tag}", "activity": "activity finished",
                      "parent": f"child returned signal {tag}-child"}, f"the {tag} workflows completed correctly: {results}")


async def found_by_attribute(client, tag: str, ids: dict) -> None:
    want = set(ids.values())
    deadline = time.monotonic() + 60
    found: set = set()
    while time.monotonic() < deadline:
        found = {w.id async for w in client.list_workflows(f'CustomerId = "upg-{tag}"')}
        if want <= found:
            break
        await asyncio.sleep(1)
    check(want <= found, f"the {tag} workflows are found by CustomerId = \"upg-{tag}\" ({len(found)} found)")


async def one_case(store: str) -> None:
    case = Case(store)
    say(f"=== {store} visibility: a cluster created by {FROM}")
    case.fresh()
    case.write_config(FROM, FROM)
    start_server(case, FROM)
    tb("apply", "--only", "namespaces,search-attributes", "-f", case.config)
    env = {**os.environ, **client_env()}
    worker = subprocess.Popen([sys.executable, str(Path(__file__).with_name("workflows.py"))], env=env,
                              stdout=open(case.dir / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        os.environ.update(client_env())
        client = await wf.connect()
        old = await start_workflows(client, case, "old")
        await wait_until_open_in_every_state(client, case, old)

        refusals(case)
        # The hops' schema folders: the target release's keeps every earlier version.
        case.write_config(FROM, TO)
        p = tb("upgrade", "plan", "--to", TO, "--via", VIA, "-f", case.config, "--output", "json")
        plan = json.loads(p.stdout)
        check([h["to"] for h in plan["hops"]] == [HOP1, VIA, TO], f"upgrade plan asks the cluster ({plan['from']}) and shows three hops")
        apply_with_a_kill_in_hop_2(case)

        await finish_and_check(client, old, "old")
        new = await start_workflows(client, case, "new")
        await wait_until_open_in_every_state(client, case, new)
        await finish_and_check(client, new, "new")
        await found_by_attribute(client, "old", old["ids"])
        await found_by_attribute(client, "new", new["ids"])

        if store == "opensearch":
            _, body = http("GET", f"{need('TB_OPENSEARCH_URL')}/{INDEX}/_mapping")
            meta = body[next(iter(body))]["mappings"].get("_meta", {}).get("temporal_bootstrap", {})
            check(meta.get("schema_version") == "v14", f"the index mapping records Elasticsearch schema v14 ({meta.get('schema_version')})")
        before = case.history_rows()
        tool = RELEASES / TO / "bin/temporal-sql-tool"
        tool_env = {"SQL_PLUGIN": "postgres12", "SQL_HOST": need("TB_PG_HOST"), "SQL_PORT": need("TB_PG_PORT"),
                    "SQL_USER": "temporal", "SQL_PASSWORD": need("TEMPORAL_DB_PASSWORD")}
        for db, kind in [(case.db, "temporal")] + ([(case.vis_db, "visibility")] if store == "postgres" else []):
            run([tool, "update-schema", "-d", RELEASES / TO / "schema/postgresql/v12" / kind / "versioned"],
                env={**tool_env, "SQL_DATABASE": db}, quiet=True)
        check(case.history_rows() == before, f"temporal-sql-tool update-schema of {TO} is a no-op ({before})")
        case.write_config(TO, TO)
        p = tb("apply", "--only", "persistence,visibility,namespaces,search-attributes", "-f", case.config, "--output", "json")
        statuses = {s["step"]: s["status"] for s in json.loads(p.stdout)["steps"]}
        check(set(statuses.values()) <= {"up-to-date"}, f"apply at {TO} finds nothing to change: {statuses}")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        stop_server()


def main() -> int:
    t0 = time.monotonic()
    for release in (FROM, HOP1, VIA, TO):
        say(f"server and tools of {release} (built once, cached)")
        run(["scripts/dev-services", "build-release"], env={"TB_TEMPORAL_VERSION": release}, timeout=1800, quiet=True)
    WORK.mkdir(parents=True, exist_ok=True)
    for store in sys.argv[1:] or ["opensearch", "postgres"]:
        asyncio.run(one_case(store))
    say(f"passed in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
