//! `temporal-bootstrap audit` against the stack's real Temporal server (1.32.2, PostgreSQL
//! visibility, mTLS) with real SDK workers (tests/audit/workloads.py, Python SDK) that do it
//! wrong and right, one namespace per case. Each wrong case yields exactly its finding, the
//! clean namespace none; no output form holds the payload marker; the audit sends only read
//! RPCs (its own count) and writes nothing (the audited namespaces' rows in PostgreSQL are
//! unchanged). A second test audits a real frontend that takes connections without any client
//! certificate (`temporal server start-dev`, plaintext).

#[path = "common/temporal_cli.rs"]
mod temporal_cli;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");

/// The RPCs a read-only audit may send.
const READ_RPCS: &[&str] = &[
    "GetSystemInfo",
    "GetClusterInfo",
    "ListNamespaces",
    "DescribeNamespace",
    "ListSearchAttributes",
    "ListWorkflowExecutions",
    "GetWorkflowExecutionHistory",
    "DescribeTaskQueue",
];

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `eval \"$(scripts/dev-services env)\"` (scripts/dev-services start)")
    })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Stack {
    address: String,
    tls: [String; 3],
}

impl Stack {
    fn sql() -> Self {
        Self {
            address: required("TB_TEMPORAL_SQL_ADDRESS"),
            tls: [
                required("TB_TEMPORAL_SQL_TLS_CA"),
                required("TB_TEMPORAL_SQL_TLS_CERT"),
                required("TB_TEMPORAL_SQL_TLS_KEY"),
            ],
        }
    }

    /// The `frontend:` body for this stack's mTLS frontend.
    fn frontend_yaml(&self) -> String {
        let [ca, cert, key] = &self.tls;
        format!(
            "    address: {}\n    tls: {{ ca: {ca}, cert: {cert}, key: {key}, server_name: localhost }}\n",
            self.address
        )
    }

    fn create_namespace(&self, ns: &str) {
        let o = Command::new(required("TB_TEMPORAL_CLI"))
            .args(["--address", &self.address])
            .args(temporal_cli::tls_flags(&self.tls))
            .args(["operator", "namespace", "create", "--namespace", ns])
            .args(["--retention", "24h"])
            .env_remove("HTTPS_PROXY")
            .output()
            .unwrap();
        assert!(o.status.success(), "namespace create {ns}: {}", text(&o));
    }

    /// Runs one scenario of tests/audit/workloads.py; its JSON line.
    fn workload(&self, args: &[&str]) -> Value {
        let started = Instant::now();
        let [ca, cert, key] = &self.tls;
        let o = Command::new(required("TB_PYTHON"))
            .arg(repo().join("tests/audit/workloads.py"))
            .args(args)
            .env("TEMPORAL_ADDRESS", &self.address)
            .env("TEMPORAL_TLS_CA", ca)
            .env("TEMPORAL_TLS_CERT", cert)
            .env("TEMPORAL_TLS_KEY", key)
            .env("TEMPORAL_TLS_SERVER_NAME", "localhost")
            .env_remove("HTTPS_PROXY")
            .output()
            .unwrap();
        assert!(o.status.success(), "workloads.py {args:?}: {}", text(&o));
        eprintln!(
            "workloads.py {} took {:.1}s",
            args[0],
            started.elapsed().as_secs_f64()
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
    }
}

/// A child process killed and reaped when the test ends, even on a failed assertion.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Milliseconds since the epoch: makes this run's namespaces and markers unique.
fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Writes `dir/platform.yaml`: a development cluster `name` reached at `frontend` (the
/// `address:` line and, for mTLS, its `tls:` line), SQLite stores (never used by the audit), and
/// the given sections (`namespaces:` and more). Validated before use.
fn write_platform(dir: &Path, name: &str, frontend: &str, sections: &str) -> PathBuf {
    let cfg = dir.join("platform.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cluster:\n  name: {name}\n  temporal_version: \"1.32.2\"\n  environment: development\n  frontend:\n{frontend}\
capacity:\n  peak_workflow_starts_per_second: 1\n  activities_per_workflow: 1\n  average_workflow_duration: 1m\n\
persistence:\n  sqlite: {{ path: dev.db }}\n\
visibility:\n  sqlite: {{ path: dev.db }}\n\
{sections}"
        ),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["validate", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    cfg
}

/// Runs the audit until visibility lists `expected` executions (it is eventually consistent).
fn audit_until(cfg: &Path, extra: &[&str], expected: u64) -> (Output, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Run from the config's directory: the report names the file as given (`platform.yaml`).
        let out = Command::new(BIN)
            .current_dir(cfg.parent().unwrap())
            .args(["--output", "json", "audit", "-f"])
            .arg(cfg.file_name().unwrap())
            .args(["--since", "1h", "--sample", "50"])
            .args(extra)
            .env_remove("HTTPS_PROXY")
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let read = v["inputs"]["histories_read"].as_u64();
        if read >= Some(expected) || Instant::now() > deadline {
            return (out, v);
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
}

/// Checks found, by namespace (`-` for cluster-wide findings).
fn checks_by_namespace(v: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in v["findings"].as_array().unwrap() {
        out.entry(f["namespace"].as_str().unwrap_or("-").to_string())
            .or_default()
            .insert(f["check"].as_str().unwrap().to_string());
    }
    out
}

/// The audited namespaces' rows in the persistence database: executions (count, record versions,
/// next event ids) and history nodes. Any write by anyone changes it, except to the server's own
/// Worker Deployment workflows (`temporal-sys-worker-deployment*`, started in the namespaces with
/// versioned pools), which run on their own schedule and are not listed by the audit.
fn persistence_fingerprint(namespaces: &[String]) -> (i64, i64, i64, i64) {
    use sqlx::ConnectOptions;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host(&required("TB_PG_HOST"))
            .port(required("TB_PG_PORT").parse().unwrap())
            .username(&required("TB_PG_ADMIN_USER"))
            .password(&required("TB_PG_ADMIN_PASSWORD"))
            .database("temporal_sql")
            .connect()
            .await
            .unwrap();
        let (n, versions, next): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*)::bigint, coalesce(sum(e.db_record_version), 0)::bigint, \
                    coalesce(sum(e.next_event_id), 0)::bigint \
             FROM executions e JOIN namespaces n ON n.id = e.namespace_id \
             WHERE n.name = ANY($1) AND e.workflow_id NOT LIKE 'temporal-sys-%'",
        )
        .bind(namespaces)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let nodes: i64 = sqlx::query_scalar(
            "SELECT count(*)::bigint FROM history_node h JOIN executions e \
               ON h.shard_id = e.shard_id AND h.tree_id = e.run_id \
             JOIN namespaces n ON n.id = e.namespace_id \
             WHERE n.name = ANY($1) AND e.workflow_id NOT LIKE 'temporal-sys-%'",
        )
        .bind(namespaces)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        (n, versions, next, nodes)
    })
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn each_wrong_workload_yields_exactly_its_finding_and_the_clean_one_none() {
    let st = Stack::sql();
    let run = run_id();
    let ns = |case: &str| format!("audit-{case}-{run}");
    let marker = format!("PATIENT-MARKER-{run}");
    let cases = [
        "plain", "large", "long", "nohb", "backlog", "nde", "attr", "vright", "vwrong", "clean",
    ];
    for c in cases {
        st.create_namespace(&ns(c));
    }
    let clean_queue = format!("audit-clean-queue-{run}");
    // Expected histories: one per case, five backlog workflows.
    let mut expected_histories = 0u64;
    let w = |args: &[&str]| st.workload(args);
    let plain = w(&["clean", "--namespace", &ns("plain"), "--marker", &marker]);
    assert_eq!(plain["encrypted"], false, "{plain}");
    expected_histories += 1;
    w(&["large-payload", "--namespace", &ns("large"), "--encrypt"]);
    expected_histories += 1;
    let long = w(&["long-history", "--namespace", &ns("long"), "--encrypt"]);
    assert!(long["events"].as_u64().unwrap() > 12_000, "{long}");
    expected_histories += 1;
    w(&["no-heartbeat", "--namespace", &ns("nohb"), "--encrypt"]);
    expected_histories += 1;
    w(&["backlog", "--namespace", &ns("backlog"), "--count", "5"]);
    expected_histories += 5;
    // A 2 s workflow task timeout: the retries after the first failure time out quickly, so the
    // server sets TemporalReportedProblems (after 5 consecutive problems) within the wait.
    let nde = w(&[
        "nondeterminism",
        "--namespace",
        &ns("nde"),
        "--encrypt",
        "--workflow-task-timeout",
        "2",
        "--problems-wait",
        "40",
    ]);
    eprintln!("nondeterminism: {nde}");
    expected_histories += 1;
    w(&["clean", "--namespace", &ns("attr"), "--encrypt"]);
    expected_histories += 1;
    // Worker Versioning: the pools declare deployment `orders-svc`; in `vwrong` the queue is
    // switched back to unversioned and two workflows run on an unversioned worker.
    let versioned_queue = format!("audit-versioned-queue-{run}");
    for (case, unversioned) in [("vright", "0"), ("vwrong", "2")] {
        w(&[
            "versioned",
            "--namespace",
            &ns(case),
            "--task-queue",
            &versioned_queue,
            "--deployment",
            "orders-svc",
            "--build-id",
            "v1",
            "--unversioned-count",
            unversioned,
            "--encrypt",
        ]);
    }
    expected_histories += 1 + 3;
    // Last, so its workers polled within the server's poller history (5 minutes).
    let clean = w(&[
        "clean",
        "--namespace",
        &ns("clean"),
        "--encrypt",
        "--task-queue",
        &clean_queue,
        "--marker",
        &marker,
    ]);
    assert_eq!(clean["encrypted"], true, "{clean}");
    expected_histories += 1;

    let dir = tempfile::tempdir().unwrap();
    // A codec endpoint for the UI (the sensitive namespace needs one): a key and a token file.
    std::fs::write(
        dir.path().join("codec.key"),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "audit-test-token-0123456789\n").unwrap();
    let namespaces_yaml: String = cases
        .iter()
        .map(|c| {
            let extra = match *c {
                "plain" => ", sensitive: true",
                "attr" => ", search_attributes: { PatientTier: Keyword }",
                _ => "",
            };
            format!("  - {{ name: {}, retention: 1d{extra} }}\n", ns(c))
        })
        .collect();
    let pool = |name: &str, queue: &str, extra: &str| {
        format!(
            "  - {{ name: {name}, task_queue: {queue}, namespace: {}, profile: io, cpu_cores: 1, replicas: {{ min: 1, max: 2 }}{extra} }}\n",
            ns(name)
        )
    };
    let pools = [
        pool("clean", &clean_queue, ""),
        pool("vright", &versioned_queue, ", deployment: orders-svc"),
        pool("vwrong", &versioned_queue, ", deployment: orders-svc"),
    ]
    .concat();
    let cfg = write_platform(
        dir.path(),
        "audit-it",
        &st.frontend_yaml(),
        &format!(
            "namespaces:\n{namespaces_yaml}\
workers:\n{pools}\
codec:\n  cors_origins: [\"https://temporal.example.com\"]\n  keys:\n    - {{ id: k1, secret: file:codec.key, current: true }}\n  access:\n    tokens:\n      - {{ name: oncall, token: file:token, decode: [\"*\"] }}\n",
        ),
    );

    let audited: Vec<String> = cases.iter().map(|c| ns(c)).collect();
    let before = persistence_fingerprint(&audited);
    let report = dir.path().join("audit.html");
    let (out, v) = audit_until(
        &cfg,
        &[
            "--fail-on",
            "critical",
            "--report",
            report.to_str().unwrap(),
        ],
        expected_histories,
    );
    let after = persistence_fingerprint(&audited);
    assert_eq!(
        v["inputs"]["histories_read"].as_u64(),
        Some(expected_histories),
        "{}",
        text(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "--fail-on critical: {}",
        text(&out)
    );
    assert_eq!(v["schema"], "temporal-bootstrap/audit/v1");

    let found = checks_by_namespace(&v);
    let expect = |case: &str, checks: &[&str]| {
        let want: BTreeSet<String> = checks.iter().map(|c| c.to_string()).collect();
        let got = found.get(&ns(case)).cloned().unwrap_or_default();
        assert_eq!(got, want, "namespace {}: {:#}", ns(case), v["findings"]);
    };
    expect("plain", &["payload-plaintext"]);
    expect("large", &["payload-size"]);
    expect("long", &["history-length"]);
    expect("nohb", &["activity-no-heartbeat"]);
    expect("backlog", &["task-queue-backlog-no-poller"]);
    expect("nde", &["workflow-nondeterminism"]);
    expect("attr", &["search-attribute-missing"]);
    expect("vright", &[]);
    expect("vwrong", &["worker-versioning-unused"]);
    expect("clean", &[]);
    assert_eq!(found.get("-"), None, "cluster-wide: {:#}", v["findings"]);

    let finding = |check: &str| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .unwrap()
            .clone()
    };
    let f = finding("payload-plaintext");
    assert_eq!(f["severity"], "critical", "sensitive namespace: {f}");
    let f = finding("task-queue-backlog-no-poller");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["evidence"]["counts"]["backlog_tasks"], 5, "{f}");
    let f = finding("search-attribute-missing");
    assert_eq!(f["evidence"]["names"][0], "PatientTier (Keyword)", "{f}");
    let f = finding("workflow-nondeterminism");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["evidence"]["counts"]["executions"], 1, "{f}");
    // Both sources: the history's WorkflowTaskFailed event and, once the server set it, the
    // TemporalReportedProblems search attribute.
    let server_flagged = u64::from(nde["reported_problems"].is_array());
    assert_eq!(
        f["evidence"]["counts"]["flagged_by_server"], server_flagged,
        "{f} / {nde}"
    );
    assert_eq!(f["evidence"]["names"][0], "workflow OrderWorkflow", "{f}");
    let f = finding("worker-versioning-unused");
    assert_eq!(f["evidence"]["counts"]["not_on_deployment"], 2, "{f}");
    assert_eq!(f["evidence"]["counts"]["executions"], 3, "{f}");
    let f = finding("history-length");
    assert!(
        f["evidence"]["counts"]["max_events"].as_u64().unwrap() > 12_000,
        "{f}"
    );

    // Read-only: only read RPCs, none mutating, and no row of the audited namespaces changed.
    let calls = v["inputs"]["rpc_calls"].as_object().unwrap();
    for rpc in calls.keys() {
        assert!(READ_RPCS.contains(&rpc.as_str()), "the audit sent {rpc}");
    }
    assert!(calls["GetWorkflowExecutionHistory"].as_u64().unwrap() >= expected_histories);
    assert_eq!(v["inputs"]["mutating_calls"], 0);
    assert_eq!(
        before, after,
        "persistence rows of the audited namespaces changed"
    );

    // Every output form: no payload marker. The HTML report is kept for the README screenshot
    // (scripts/audit-screenshot).
    let html = std::fs::read_to_string(&report).unwrap();
    let artifacts = std::env::var("TB_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".local/artifacts"))
        .join("audit");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("audit.html"), &html).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("workflow-nondeterminism"));
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "self-contained"
    );
    let md = dir.path().join("audit.md");
    let table = Command::new(BIN)
        .args(["audit", "-f"])
        .arg(&cfg)
        .args(["--since", "1h", "--report", md.to_str().unwrap()])
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    assert_eq!(table.status.code(), Some(0), "{}", text(&table));
    let md_text = std::fs::read_to_string(&md).unwrap();
    assert!(
        md_text.contains("| critical | `payload-plaintext` |"),
        "{md_text}"
    );
    let md_stdout = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "--output",
            "markdown",
            "audit",
            "-f",
            "platform.yaml",
            "--since",
            "1h",
        ])
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    assert_eq!(md_stdout.status.code(), Some(0), "{}", text(&md_stdout));
    let md_stdout = String::from_utf8_lossy(&md_stdout.stdout).into_owned();
    assert!(
        md_stdout.starts_with("# Temporal production-readiness audit")
            && md_stdout.contains("`worker-versioning-unused`"),
        "{md_stdout}"
    );
    for (what, s) in [
        ("markdown output", md_stdout),
        ("json output", text(&out)),
        ("html report", html),
        ("table output", text(&table)),
        ("markdown report", md_text),
    ] {
        assert!(!s.contains(&marker), "the payload marker is in the {what}");
    }

    // Only the clean namespace: nothing at all, exit 0 even with --fail-on warning.
    let (o, v) = audit_until(
        &cfg,
        &["--namespace", &ns("clean"), "--fail-on", "warning"],
        1,
    );
    assert_eq!(v["summary"]["critical"], 0, "{}", text(&o));
    assert_eq!(
        v["findings"].as_array().map(Vec::len),
        Some(0),
        "{}",
        text(&o)
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Bad input: exit 2 before any call.
    let o = Command::new(BIN)
        .args(["audit", "-f"])
        .arg(&cfg)
        .args(["--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--since `yesterday`"), "{}", text(&o));
    for (args, says) in [
        (&["--sample", "0"][..], "--sample 0: expected 1 to 10000"),
        (
            &["--report", "r.txt"][..],
            "use .html, .md or .json, or --report-format",
        ),
        (&["--namespace", "Bad Name!"][..], "--namespace"),
    ] {
        let o = Command::new(BIN)
            .current_dir(dir.path())
            .args(["audit", "-f", "platform.yaml"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    assert!(
        !dir.path().join("r.txt").exists(),
        "a refused run writes no report"
    );
}

/// A real frontend that takes connections without a client certificate (the dev server, no
/// TLS at all) is one critical finding; the stack's mTLS frontend refused (previous test: no
/// cluster-wide finding).
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn a_frontend_without_client_certificates_is_critical() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Command::new(required("TB_TEMPORAL_CLI"))
        .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--namespace", "open"])
        .args(["--db-filename"])
        .arg(dir.path().join("dev.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "start-dev did not listen");
        assert!(dev.try_wait().unwrap().is_none(), "start-dev exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _dev = Kill(dev);
    let cfg = write_platform(
        dir.path(),
        "open",
        &format!("    address: 127.0.0.1:{port}\n"),
        "namespaces:\n  - { name: open, retention: 1d }\n",
    );
    let (o, v) = audit_until(&cfg, &["--fail-on", "critical"], 0);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // The dev server's own release may lag (server-patch-behind); the access check is exact.
    let frontend: BTreeSet<String> = checks_by_namespace(&v)
        .remove("-")
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.starts_with("frontend-"))
        .collect();
    assert_eq!(
        frontend,
        BTreeSet::from(["frontend-plaintext".to_string()]),
        "{:#}",
        v["findings"]
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "frontend-plaintext")
        .unwrap();
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["decision"], "security");

    // The report as HTML on stdout; Markdown and HTML are the audit's only (exit 2 elsewhere).
    let o = Command::new(BIN)
        .args(["--output", "html", "audit", "-f"])
        .arg(&cfg)
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let html = String::from_utf8_lossy(&o.stdout);
    assert!(
        html.starts_with("<!doctype html>") && html.contains("frontend-plaintext"),
        "{html}"
    );
    let o = Command::new(BIN)
        .args(["--output", "html", "validate", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "--output html: only `audit` prints Markdown or HTML; valid here: table, json"
        ),
        "{}",
        text(&o)
    );
}

/// The daemon with `audit:` audits at start and exports the findings per check, severity and
/// namespace (the series TemporalBootstrapAuditCriticalFindings alerts on).
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn the_daemon_exports_audit_findings() {
    let st = Stack::sql();
    let run = run_id();
    let ns = format!("audit-daemon-{run}");
    st.create_namespace(&ns);
    st.workload(&["backlog", "--namespace", &ns, "--count", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_platform(
        dir.path(),
        "audit-daemon",
        &st.frontend_yaml(),
        &format!(
            "namespaces:\n  - {{ name: {ns}, retention: 1d }}\naudit:\n  interval: 1h\n  since: 1h\n  sample: 20\n"
        ),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Command::new(BIN)
        .args(["run", "-f"])
        .arg(&cfg)
        .args(["--interval", "1h", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("HTTPS_PROXY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = Kill(daemon);
    let want = format!(
        "temporal_bootstrap_audit_findings{{check=\"task-queue-backlog-no-poller\",severity=\"critical\",namespace=\"{ns}\"}} 1"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut body = String::new();
    while Instant::now() < deadline {
        let o = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "2",
                &format!("http://127.0.0.1:{port}/metrics"),
            ])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&o.stdout).into_owned();
        // The first audit runs at start; one finding per queue.
        if body.contains(&want)
            && body.contains("temporal_bootstrap_audit_runs_total{outcome=\"ok\"} 1")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(body.contains(&want), "{want} not in:\n{body}");
    assert!(body.contains("temporal_bootstrap_audit_last_success_timestamp_seconds "));
}

/// The stack's own platform files: the schema versions recorded in the real PostgreSQL match the
/// running 1.32.2 release (both databases of the SQL profile), and the real Prometheus answers
/// (targets, rule groups, SDK metric queries) and scrapes the server's metrics.
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn the_stacks_platform_files_read_schema_versions_and_prometheus() {
    for (file, needs_prometheus) in [
        ("examples/local-sql-visibility.yaml", false),
        ("examples/local.yaml", true),
    ] {
        // Right after the stack starts, Prometheus may not have scraped the server yet: retry
        // until it has (a minute), then assert.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (o, v) = loop {
            let o = Command::new(BIN)
                .args(["--output", "json", "audit", "-f"])
                .arg(repo().join(file))
                .args(["--since", "1h", "--sample", "5"])
                .env_remove("HTTPS_PROXY")
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            let scraped = !v["findings"]
                .as_array()
                .is_some_and(|a| a.iter().any(|f| f["check"] == "metrics-temporal-missing"));
            if scraped || Instant::now() > deadline {
                break (o, v);
            }
            std::thread::sleep(Duration::from_secs(2));
        };
        assert_eq!(o.status.code(), Some(0), "{file}: {}", text(&o));
        let skipped: Vec<&str> = v["inputs"]["skipped"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let checks: BTreeSet<&str> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["check"].as_str())
            .collect();
        assert!(
            !skipped.iter().any(|s| s.starts_with("schema version")),
            "{file}: schema versions not read: {skipped:?}"
        );
        assert!(
            !checks.contains("schema-version-mismatch"),
            "{file}: {checks:?}"
        );
        assert!(
            !checks.contains("frontend-accepts-no-client-cert"),
            "{file}"
        );
        if needs_prometheus {
            assert!(
                !skipped.iter().any(|s| s.starts_with("Prometheus")),
                "{file}: {skipped:?}"
            );
            assert!(
                !checks.contains("metrics-temporal-missing"),
                "{file}: {checks:?}"
            );
        }
    }
}
