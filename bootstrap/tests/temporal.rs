//! Integration tests of the `temporal` adapter and its steps against the real Temporal dev server
//! (scripts/dev-services): TB_TEMPORAL_ADDRESS, TB_TEMPORAL_CLI (independent verification with
//! the official `temporal` CLI), TB_PROXY_URL (tinyproxy, HTTP CONNECT). The mTLS test starts its
//! own nginx (Debian nginx-light) on a free port with certificates it issues with rcgen, so it
//! never disturbs the shared nginx of `scripts/dev-services mtls`.
//!
//! Each test uses its own namespace names, so tests run in parallel against one server and can be
//! re-run without cleaning up. Without the variables the tests print "skipped" and pass, except
//! with CI=true where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use temporal_bootstrap::reconcile::{
    self, Context, ErrorClass, Mode, StepName, StepReport, StepStatus,
};
use temporal_bootstrap::temporal::mutating_calls;

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const STEPS: [StepName; 3] = [
    StepName::Cluster,
    StepName::Namespaces,
    StepName::SearchAttributes,
];

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn required(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{name} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
            )
        }
        _ => {
            eprintln!(
                "skipped: {name} is not set (run scripts/dev-services start, then eval \"$(scripts/dev-services env)\")"
            );
            None
        }
    }
}

fn install_crypto() {
    temporal_bootstrap::ensure_crypto_provider();
}

/// A namespace name unique to this test run.
fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tbt-{tag}-{}-{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// platform.yaml with the given frontend block and namespaces (YAML list items).
fn config_text(frontend: &str, shards: &str, namespaces: &str) -> String {
    format!(
        "cluster:\n  name: it\n  temporal_version: \"1.31.2\"\n  environment: development\n  frontend:\n{frontend}\n\
capacity:\n  peak_workflow_starts_per_second: 1\n  activities_per_workflow: 1\n  average_workflow_duration: 1m\n  history_shards: {shards}\n\
persistence:\n  sqlite: {{ path: dev.db }}\n\
visibility:\n  sqlite: {{ path: dev.db }}\n\
namespaces:\n{namespaces}"
    )
}

fn plain_frontend(address: &str) -> String {
    format!("    address: {address}")
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        if name.ends_with("key.pem") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }
}

fn context(path: &Path) -> Context {
    let loaded = temporal_bootstrap::config::load_file(path)
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
    Context {
        config: Arc::new(loaded.config),
        base_dir: path.parent().unwrap().to_path_buf(),
        offline: false,
        force: false,
    }
}

async fn run(path: &Path, mode: Mode) -> Vec<StepReport> {
    install_crypto();
    reconcile::run(&context(path), mode, &STEPS).await
}

fn report(reports: &[StepReport], step: StepName) -> &StepReport {
    reports.iter().find(|r| r.step == step).unwrap()
}

fn assert_no_failure(reports: &[StepReport]) {
    for r in reports {
        assert_ne!(
            r.status,
            StepStatus::Failed,
            "{} failed: {:?}",
            r.step,
            r.message
        );
    }
}

/// Status is up to date, or drift only (other tests' namespaces are drift here).
fn assert_converged(reports: &[StepReport], step: StepName, ours: &[&str]) {
    let r = report(reports, step);
    assert!(
        matches!(r.status, StepStatus::UpToDate | StepStatus::Drift),
        "{r:?}"
    );
    for c in &r.changes {
        let mine = ours.iter().any(|ns| {
            c.resource == format!("namespace {ns}")
                || c.resource.starts_with(&format!("search attribute {ns}/"))
        });
        assert!(
            !mine || c.action == reconcile::Action::Drift,
            "pending change for our namespace after convergence: {c:?}"
        );
    }
}

fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The official CLI, for independent checks.
fn temporal(address: &str, args: &[&str]) -> Output {
    let bin = std::env::var("TB_TEMPORAL_CLI").unwrap_or_else(|_| "temporal".into());
    Command::new(&bin)
        .args(["--address", address])
        .args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} (set TB_TEMPORAL_CLI): {e}"))
}

fn temporal_ok(address: &str, args: &[&str]) {
    let o = temporal(address, args);
    assert!(o.status.success(), "temporal {args:?}: {}", text(&o));
}

/// `temporal operator namespace describe -o json`, None when it does not exist.
fn describe(address: &str, ns: &str) -> Option<serde_json::Value> {
    let o = temporal(
        address,
        &["operator", "namespace", "describe", "-n", ns, "-o", "json"],
    );
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(
            err.contains("not found") || err.contains("notfound"),
            "describe {ns}: {}",
            text(&o)
        );
        return None;
    }
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// `temporal operator search-attribute list -o json`: custom attributes, name -> type (Keyword...).
fn attributes(address: &str, ns: &str) -> BTreeMap<String, String> {
    let o = temporal(
        address,
        &[
            "operator",
            "search-attribute",
            "list",
            "-n",
            ns,
            "-o",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["customAttributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, t)| {
                    let t = t
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches("INDEXED_VALUE_TYPE_");
                    (k.clone(), normalise_type(t))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn normalise_type(t: &str) -> String {
    match t {
        "KEYWORD" => "Keyword",
        "KEYWORD_LIST" => "KeywordList",
        "INT" => "Int",
        "DOUBLE" => "Double",
        "BOOL" => "Bool",
        "DATETIME" => "Datetime",
        "TEXT" => "Text",
        other => other,
    }
    .to_string()
}

fn retention_secs(desc: &serde_json::Value) -> u64 {
    let s = desc["config"]["workflowExecutionRetentionTtl"]
        .as_str()
        .unwrap();
    s.trim_end_matches('s').parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// namespaces and search attributes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fresh_registration_then_second_run_writes_nothing() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let (a, b) = (unique("fresh-a"), unique("fresh-b"));
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&addr),
            "1",
            &format!(
                "  - name: {a}\n    retention: 3d\n    description: Orders of the shop\n    owner_email: shop@example.com\n    data: {{ team: shop, tier: gold }}\n    search_attributes: {{ CustomerId: Keyword, Priority: Int, Total: Double, Paid: Bool }}\n  - name: {b}\n    retention: 1d\n"
            ),
        ),
    );

    // plan and apply --dry-run: pending changes shown, no mutating RPC.
    let planned = run(&cfg, Mode::Plan).await;
    assert_no_failure(&planned);
    let ns = report(&planned, StepName::Namespaces);
    assert!(
        ns.changes.iter().any(
            |c| c.resource == format!("namespace {a}") && c.action == reconcile::Action::Create
        )
    );
    let sa = report(&planned, StepName::SearchAttributes);
    assert_eq!(
        sa.changes
            .iter()
            .filter(|c| c.resource.starts_with(&format!("search attribute {a}/")))
            .count(),
        4
    );
    let dry = cli(
        &[
            "apply",
            "-f",
            cfg.to_str().unwrap(),
            "--dry-run",
            "--only",
            "namespaces,search-attributes",
            "-v",
        ],
        &[],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains(&format!("namespace {a}")),
        "{}",
        text(&dry)
    );
    // In this process (plan above) and in the CLI child (every mutating attempt logs
    // "mutating call" at info level, shown with -v): none.
    assert_eq!(mutating_calls(&a) + mutating_calls(&b), 0);
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("planning"),
        "-v logs not captured: {}",
        text(&dry)
    );
    assert!(
        !String::from_utf8_lossy(&dry.stderr).contains("mutating call"),
        "{}",
        text(&dry)
    );
    assert!(describe(&addr, &a).is_none(), "dry run must not register");

    // apply
    let applied = run(&cfg, Mode::Apply).await;
    assert_no_failure(&applied);
    assert_eq!(
        report(&applied, StepName::Namespaces).status,
        StepStatus::Applied
    );
    assert_eq!(
        report(&applied, StepName::SearchAttributes).status,
        StepStatus::Applied
    );
    // one RegisterNamespace + one AddSearchAttributes for a; one RegisterNamespace for b
    assert_eq!((mutating_calls(&a), mutating_calls(&b)), (2, 1));

    // independent check with the official CLI
    let d = describe(&addr, &a).expect("registered");
    assert_eq!(retention_secs(&d), 3 * 86_400);
    assert_eq!(d["namespaceInfo"]["description"], "Orders of the shop");
    assert_eq!(d["namespaceInfo"]["ownerEmail"], "shop@example.com");
    assert_eq!(d["namespaceInfo"]["data"]["team"], "shop");
    assert_eq!(d["namespaceInfo"]["data"]["tier"], "gold");
    assert_eq!(retention_secs(&describe(&addr, &b).unwrap()), 86_400);
    let attrs = attributes(&addr, &a);
    let want: BTreeMap<String, String> = [
        ("CustomerId", "Keyword"),
        ("Priority", "Int"),
        ("Total", "Double"),
        ("Paid", "Bool"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attrs, want);

    // second run: converged, no mutating RPC at all
    let again = run(&cfg, Mode::Apply).await;
    assert_no_failure(&again);
    assert_converged(&again, StepName::Namespaces, &[&a, &b]);
    assert_converged(&again, StepName::SearchAttributes, &[&a, &b]);
    assert_eq!(
        (mutating_calls(&a), mutating_calls(&b)),
        (2, 1),
        "second run wrote"
    );
}

#[tokio::test]
async fn retention_and_description_drift_is_corrected() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let ns = unique("drift");
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&addr),
            "1",
            &format!("  - name: {ns}\n    retention: 3d\n    description: managed\n"),
        ),
    );
    assert_no_failure(&run(&cfg, Mode::Apply).await);
    // Someone changes it by hand with the official CLI.
    temporal_ok(
        &addr,
        &[
            "operator",
            "namespace",
            "update",
            "-n",
            &ns,
            "--retention",
            "48h",
            "--description",
            "hand edited",
            "--data",
            "extra=1",
        ],
    );
    assert_eq!(retention_secs(&describe(&addr, &ns).unwrap()), 2 * 86_400);

    let before = mutating_calls(&ns);
    let planned = run(&cfg, Mode::Plan).await;
    let r = report(&planned, StepName::Namespaces);
    let update = r
        .changes
        .iter()
        .find(|c| c.resource == format!("namespace {ns}") && c.action == reconcile::Action::Update)
        .unwrap_or_else(|| panic!("no update planned: {r:?}"));
    assert!(update.detail.contains("retention 2d -> 3d"), "{update:?}");
    assert!(
        update
            .detail
            .contains("description \"hand edited\" -> \"managed\""),
        "{update:?}"
    );
    assert!(
        r.changes
            .iter()
            .any(|c| c.resource == format!("namespace {ns}")
                && c.action == reconcile::Action::Drift
                && c.detail.contains("extra")),
        "the extra data key is drift: {r:?}"
    );
    assert_eq!(mutating_calls(&ns), before, "plan wrote");

    assert_no_failure(&run(&cfg, Mode::Apply).await);
    assert_eq!(mutating_calls(&ns), before + 1, "one UpdateNamespace");
    let d = describe(&addr, &ns).unwrap();
    assert_eq!(retention_secs(&d), 3 * 86_400);
    assert_eq!(d["namespaceInfo"]["description"], "managed");
    assert_eq!(d["namespaceInfo"]["data"]["extra"], "1", "never removed");
}

#[tokio::test]
async fn type_mismatch_is_refused_with_exit_2_and_nothing_changes() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let ns = unique("mismatch");
    let other = unique("mismatch-other");
    temporal_ok(
        &addr,
        &[
            "operator",
            "namespace",
            "create",
            "-n",
            &ns,
            "--retention",
            "72h",
        ],
    );
    temporal_ok(
        &addr,
        &[
            "operator",
            "search-attribute",
            "create",
            "-n",
            &ns,
            "--name",
            "Priority",
            "--type",
            "Keyword",
        ],
    );
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&addr),
            "1",
            &format!(
                "  - name: {ns}\n    retention: 3d\n    search_attributes: {{ Priority: Int, Region: Keyword }}\n  - name: {other}\n    retention: 3d\n    search_attributes: {{ Region: Keyword }}\n"
            ),
        ),
    );
    // Only search-attributes: the other namespace does not exist, so nothing at all may be written.
    let o = cli(
        &[
            "apply",
            "-f",
            cfg.to_str().unwrap(),
            "--only",
            "search-attributes",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    for want in [
        "`Priority`",
        "exists as Keyword",
        "declares Int",
        "can never change",
        "Priority: Keyword",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
    let attrs = attributes(&addr, &ns);
    assert_eq!(attrs.get("Priority").map(String::as_str), Some("Keyword"));
    assert!(
        !attrs.contains_key("Region"),
        "nothing may be added: {attrs:?}"
    );

    // The same through the library: Invalid class, no mutating call.
    let reports = reconcile::run(&context(&cfg), Mode::Apply, &[StepName::SearchAttributes]).await;
    let r = report(&reports, StepName::SearchAttributes);
    assert_eq!(
        (r.status, r.error_class),
        (StepStatus::Failed, Some(ErrorClass::Invalid))
    );
    assert_eq!(mutating_calls(&ns) + mutating_calls(&other), 0);
}

#[tokio::test]
async fn sql_cap_exceeded_is_refused_before_any_call() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let ns = unique("cap");
    temporal_ok(
        &addr,
        &[
            "operator",
            "namespace",
            "create",
            "-n",
            &ns,
            "--retention",
            "72h",
        ],
    );
    for name in ["Legacy1", "Legacy2", "Legacy3"] {
        temporal_ok(
            &addr,
            &[
                "operator",
                "search-attribute",
                "create",
                "-n",
                &ns,
                "--name",
                name,
                "--type",
                "Int",
            ],
        );
    }
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&addr),
            "1",
            &format!("  - name: {ns}\n    retention: 3d\n    search_attributes: {{ Priority: Int, Region: Keyword }}\n"),
        ),
    );
    install_crypto();
    let reports = reconcile::run(&context(&cfg), Mode::Apply, &[StepName::SearchAttributes]).await;
    let r = report(&reports, StepName::SearchAttributes);
    assert_eq!(
        (r.status, r.error_class),
        (StepStatus::Failed, Some(ErrorClass::Invalid)),
        "{r:?}"
    );
    let msg = r.message.clone().unwrap_or_default();
    for want in ["at most 3 Int", "Legacy1, Legacy2, Legacy3", "Priority"] {
        assert!(msg.contains(want), "{want} missing: {msg}");
    }
    assert_eq!(mutating_calls(&ns), 0, "refused before any call");
    let attrs = attributes(&addr, &ns);
    assert!(
        !attrs.contains_key("Priority") && !attrs.contains_key("Region"),
        "{attrs:?}"
    );

    let o = cli(
        &[
            "apply",
            "-f",
            cfg.to_str().unwrap(),
            "--only",
            "search-attributes",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[tokio::test]
async fn reserved_names_are_refused_and_nothing_is_registered() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let ns = unique("reserved");
    let case = Case::new();
    for attr in ["WorkflowId", "TemporalScheduledById"] {
        let cfg = case.write(
            "platform.yaml",
            &config_text(&plain_frontend(&addr), "1", &format!("  - name: {ns}\n    retention: 3d\n    search_attributes: {{ {attr}: Keyword }}\n")),
        );
        let o = cli(&["apply", "-f", cfg.to_str().unwrap()], &[]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("reserved") && err.contains(attr), "{err}");
    }
    assert!(
        describe(&addr, &ns).is_none(),
        "the namespace must not be registered either"
    );
    assert_eq!(mutating_calls(&ns), 0);
}

#[tokio::test]
async fn twenty_namespaces_with_ten_attributes_each() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let prefix = unique("many");
    // Within the SQL caps: Keyword 10, every other type 3.
    let attrs: [(&str, &str); 10] = [
        ("CustomerId", "Keyword"),
        ("OrderId", "Keyword"),
        ("Region", "Keyword"),
        ("Channel", "Keyword"),
        ("Priority", "Int"),
        ("Attempts", "Int"),
        ("Total", "Double"),
        ("Paid", "Bool"),
        ("DueAt", "Datetime"),
        ("Tags", "KeywordList"),
    ];
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}-{i:02}")).collect();
    let sa = attrs
        .iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    let list: String = names
        .iter()
        .map(|n| format!("  - name: {n}\n    retention: 2d\n    search_attributes: {{ {sa} }}\n"))
        .collect();
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(&plain_frontend(&addr), "1", &list),
    );
    let reports = run(&cfg, Mode::Apply).await;
    assert_no_failure(&reports);
    let created = report(&reports, StepName::SearchAttributes)
        .changes
        .iter()
        .filter(|c| {
            c.action == reconcile::Action::Create
                && c.resource
                    .starts_with(&format!("search attribute {prefix}"))
        })
        .count();
    assert_eq!(created, 200);
    let want: BTreeMap<String, String> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for n in &names {
        assert_eq!(mutating_calls(n), 2, "{n}: one register + one add");
        assert_eq!(attributes(&addr, n), want, "{n}");
        assert_eq!(retention_secs(&describe(&addr, n).unwrap()), 2 * 86_400);
    }
    let again = run(&cfg, Mode::Apply).await;
    assert_no_failure(&again);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_converged(&again, StepName::Namespaces, &refs);
    assert_converged(&again, StepName::SearchAttributes, &refs);
    assert!(
        names.iter().all(|n| mutating_calls(n) == 2),
        "second run wrote"
    );
}

#[tokio::test]
async fn already_exists_is_handled() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    use temporal_bootstrap::temporal::proxy::ProxyEnv;
    use temporal_bootstrap::temporal::{
        ConnectSettings, GrpcTemporal, NamespaceSpec, RetryPolicy, TemporalApi,
    };
    // The adapter maps the real server's ALREADY_EXISTS to "exists already".
    let ns = unique("exists");
    temporal_ok(
        &addr,
        &[
            "operator",
            "namespace",
            "create",
            "-n",
            &ns,
            "--retention",
            "24h",
        ],
    );
    let (host, port) = addr.rsplit_once(':').unwrap();
    let settings =
        ConnectSettings::new(host, port.parse().unwrap(), None, &ProxyEnv::default()).unwrap();
    let api = GrpcTemporal::connect(settings, RetryPolicy::DEFAULT)
        .await
        .unwrap();
    let spec = NamespaceSpec {
        name: ns.clone(),
        retention: std::time::Duration::from_secs(86_400),
        description: String::new(),
        owner_email: String::new(),
        data: BTreeMap::new(),
    };
    assert!(!api.register_namespace(&spec).await.unwrap());

    // Two processes applying the same platform.yaml at once: both succeed, whoever loses the
    // RegisterNamespace race reconciles the existing namespace instead of failing.
    let prefix = unique("race");
    let names: Vec<String> = (0..6).map(|i| format!("{prefix}-{i}")).collect();
    let list: String = names
        .iter()
        .map(|n| format!("  - name: {n}\n    retention: 3d\n    description: raced\n"))
        .collect();
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(&plain_frontend(&addr), "1", &list),
    );
    let spawn = || {
        Command::new(BIN)
            .args(["apply", "-f", cfg.to_str().unwrap(), "--only", "namespaces"])
            .env_remove("HTTPS_PROXY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    for n in &names {
        let d = describe(&addr, n).expect("registered");
        assert_eq!(retention_secs(&d), 3 * 86_400);
        assert_eq!(d["namespaceInfo"]["description"], "raced");
    }
}

// ---------------------------------------------------------------------------------------------
// cluster check and failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shard_count_change_is_refused_with_exit_2() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let ns = unique("shards");
    let case = Case::new();
    // Ask the running cluster its count, independently.
    let o = temporal(&addr, &["operator", "cluster", "describe", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let actual = v["historyShardCount"].as_u64().unwrap();
    let wrong = actual * 2;
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&addr),
            &wrong.to_string(),
            &format!("  - name: {ns}\n    retention: 3d\n"),
        ),
    );
    let o = cli(&["apply", "-f", cfg.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    for want in [
        format!("expects {wrong}"),
        format!("has {actual}"),
        "can never change".into(),
        format!("history_shards: {actual}"),
    ] {
        assert!(out.contains(&want), "{want} missing: {out}");
    }
    assert!(describe(&addr, &ns).is_none(), "later steps must not run");
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&addr),
            &actual.to_string(),
            &format!("  - name: {ns}\n    retention: 3d\n"),
        ),
    );
    let o = cli(
        &["plan", "-f", cfg.to_str().unwrap(), "--only", "cluster"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn server_down_is_retried_then_reported_with_exit_1() {
    // No server needed: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(
            &plain_frontend(&format!("127.0.0.1:{port}")),
            "1",
            "  - name: unreachable\n    retention: 3d\n",
        ),
    );
    let started = std::time::Instant::now();
    let o = cli(&["apply", "-f", cfg.to_str().unwrap()], &[]);
    let elapsed = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("attempt 1/5 failed") && out.contains("attempt 4/5 failed"),
        "retries not logged: {out}"
    );
    assert!(
        out.contains(&format!(
            "cannot connect to the Temporal frontend at 127.0.0.1:{port} after 5 attempt(s)"
        )),
        "{out}"
    );
    assert!(out.contains("Connection refused"), "{out}");
    // Dependants are skipped, not attempted.
    assert!(out.contains("cluster failed"), "{out}");
    // Bounded: 4 waits of ~0.2+0.4+0.8+1.6 s (+-20%), far below a minute.
    assert!(elapsed.as_secs() < 30, "took {elapsed:?}");
}

// ---------------------------------------------------------------------------------------------
// proxy
// ---------------------------------------------------------------------------------------------

#[test]
fn https_proxy_is_used_and_no_proxy_respected() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let Some(proxy) = required("TB_PROXY_URL") else {
        return;
    };
    let ns = unique("proxy");
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &config_text(&plain_frontend(&addr), "1", &format!("  - name: {ns}\n    retention: 3d\n    search_attributes: {{ ViaProxy: Keyword }}\n")),
    );
    let cfg = cfg.to_str().unwrap();
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );

    // A dead proxy breaks the connection: proof that HTTPS_PROXY is honoured.
    let o = cli(
        &["plan", "-f", cfg, "--only", "cluster"],
        &[("HTTPS_PROXY", &dead)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("via proxy"), "{}", text(&o));
    // ... and NO_PROXY for the frontend host bypasses it.
    let o = cli(
        &["plan", "-f", cfg, "--only", "cluster"],
        &[
            ("HTTPS_PROXY", &dead),
            ("NO_PROXY", &format!("example.com,{host}")),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Through the real proxy (tinyproxy): a full apply.
    let log = std::env::var("TB_REPO_LOCAL")
        .ok()
        .map(|d| PathBuf::from(d).join("dev-services/tinyproxy.log"));
    let connects = |p: &Option<PathBuf>| {
        p.as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.matches(&format!("CONNECT {addr}")).count())
    };
    let before = connects(&log);
    let o = cli(
        &[
            "apply",
            "-f",
            cfg,
            "--only",
            "namespaces,search-attributes",
            "-v",
        ],
        &[("HTTPS_PROXY", &proxy)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Positive control for the dry-run check: a real apply logs its writes.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("mutating call") && err.contains("AddSearchAttributes"),
        "{}",
        text(&o)
    );
    assert!(describe(&addr, &ns).is_some());
    assert_eq!(
        attributes(&addr, &ns).get("ViaProxy").map(String::as_str),
        Some("Keyword")
    );
    if let (Some(b), Some(a)) = (before, connects(&log)) {
        assert!(a > b, "tinyproxy logged no CONNECT {addr}");
    }
}

// ---------------------------------------------------------------------------------------------
// mTLS through a real nginx
// ---------------------------------------------------------------------------------------------

struct Pki {
    ca_pem: String,
    frontend: (String, String),
    client: (String, String),
    foreign_client: (String, String),
}

fn issue_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(p, key))
    };
    let leaf = |names: Vec<String>,
                cn: &str,
                usage: ExtendedKeyUsagePurpose,
                issuer: &Issuer<'_, KeyPair>| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (ca_pem, issuer) = ca("temporal-bootstrap test CA");
    let (_, foreign) = ca("some other CA");
    Pki {
        ca_pem,
        frontend: leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "frontend",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        ),
        client: leaf(
            vec!["temporal-bootstrap".into()],
            "temporal-bootstrap",
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        ),
        foreign_client: leaf(
            vec!["intruder".into()],
            "intruder",
            ExtendedKeyUsagePurpose::ClientAuth,
            &foreign,
        ),
    }
}

/// nginx terminating mTLS on a free port, grpc_pass to the dev server; killed on drop.
struct Nginx {
    child: std::process::Child,
    address: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx runs with `master_process off` (one process, no workers to orphan); stop it
        // gracefully, then make sure.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(dir: &Path, upstream: &str) -> Option<Nginx> {
    if Command::new("nginx").arg("-v").output().is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("nginx is not installed (apt-get install nginx-light)");
        }
        eprintln!("skipped: nginx is not installed (apt-get install nginx-light)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let conf = format!(
        "worker_processes 1;\npid \"{d}/nginx.pid\";\nerror_log \"{d}/error.log\" warn;\nevents {{ worker_connections 64; }}\n\
http {{\n  access_log \"{d}/access.log\";\n  client_body_temp_path \"{d}/tmp/cb\"; proxy_temp_path \"{d}/tmp/p\"; fastcgi_temp_path \"{d}/tmp/f\"; uwsgi_temp_path \"{d}/tmp/u\"; scgi_temp_path \"{d}/tmp/s\";\n\
  server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate \"{d}/frontend.pem\"; ssl_certificate_key \"{d}/frontend-key.pem\";\n\
    ssl_client_certificate \"{d}/ca.pem\"; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3;\n    client_max_body_size 0;\n\
    location / {{ grpc_pass grpc://{upstream}; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .args([
            "-p",
            &d.to_string(),
            "-c",
            &format!("{d}/nginx.conf"),
            "-e",
            &format!("{d}/error.log"),
            "-g",
            "daemon off; master_process off;",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The guard kills nginx on every path, the panic below included.
    let guard = Nginx {
        child,
        address: format!("127.0.0.1:{port}"),
    };
    let address = guard.address.clone();
    for _ in 0..100 {
        if std::net::TcpStream::connect(&address).is_ok() {
            return Some(guard);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "nginx did not listen on {address}: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

#[test]
fn mtls_through_nginx_needs_a_client_certificate_from_the_ca() {
    let Some(addr) = required("TB_DEVSERVER_ADDRESS") else {
        return;
    };
    let case = Case::new();
    let pki = issue_pki();
    let d = case.dir.path();
    case.write("ca.pem", &pki.ca_pem);
    case.write("frontend.pem", &pki.frontend.0);
    case.write("frontend-key.pem", &pki.frontend.1);
    case.write("client.pem", &pki.client.0);
    case.write("client-key.pem", &pki.client.1);
    case.write("foreign.pem", &pki.foreign_client.0);
    case.write("foreign-key.pem", &pki.foreign_client.1);
    let Some(nginx) = start_nginx(d, &addr) else {
        return;
    };
    let ns = unique("mtls");
    let nss = format!(
        "  - name: {ns}\n    retention: 3d\n    search_attributes: {{ ViaMtls: Keyword }}\n"
    );
    let frontend = |tls: &str| {
        format!(
            "    address: {}\n    tls: {{ ca: ca.pem{tls} }}",
            nginx.address
        )
    };

    // With a client certificate from the CA (paths relative to the config file), and with an
    // explicit server name: full apply.
    let good = case.write(
        "good.yaml",
        &config_text(
            &frontend(", cert: client.pem, key: client-key.pem, server_name: localhost"),
            "1",
            &nss,
        ),
    );
    let o = cli(
        &[
            "apply",
            "-f",
            good.to_str().unwrap(),
            "--only",
            "cluster,namespaces,search-attributes",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(describe(&addr, &ns).is_some(), "registered through nginx");
    assert_eq!(
        attributes(&addr, &ns).get("ViaMtls").map(String::as_str),
        Some("Keyword")
    );
    let log = std::fs::read_to_string(d.join("access.log")).unwrap_or_default();
    assert!(
        log.contains("RegisterNamespace") && log.contains("AddSearchAttributes"),
        "nginx did not see the calls: {log}"
    );

    // Without a client certificate: refused, exit 1, clear message, no retries.
    let none = case.write("none.yaml", &config_text(&frontend(""), "1", &nss));
    let o = cli(
        &["plan", "-f", none.to_str().unwrap(), "--only", "cluster"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("client certificate") && text(&o).contains("after 1 attempt(s)"),
        "{}",
        text(&o)
    );

    // With a certificate from another CA: refused too.
    let foreign = case.write(
        "foreign.yaml",
        &config_text(
            &frontend(", cert: foreign.pem, key: foreign-key.pem"),
            "1",
            &nss,
        ),
    );
    let o = cli(
        &["plan", "-f", foreign.to_str().unwrap(), "--only", "cluster"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("client certificate"), "{}", text(&o));

    // Trusting the wrong CA for the server: refused on the server certificate, no retries.
    case.write("other-ca.pem", &issue_pki().ca_pem);
    let wrong_ca = case.write(
        "wrong-ca.yaml",
        &config_text(&format!("    address: {}\n    tls: {{ ca: other-ca.pem, cert: client.pem, key: client-key.pem }}", nginx.address), "1", &nss),
    );
    let o = cli(
        &[
            "plan",
            "-f",
            wrong_ca.to_str().unwrap(),
            "--only",
            "cluster",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // UnknownIssuer, or BadSignature when the other CA happens to have the same name (it does
    // here: both come from issue_pki).
    assert!(
        text(&o).contains("invalid peer certificate"),
        "{}",
        text(&o)
    );

    // mTLS through the CONNECT proxy as well, when there is one.
    if let Ok(proxy) = std::env::var("TB_PROXY_URL") {
        let o = cli(
            &[
                "plan",
                "-f",
                good.to_str().unwrap(),
                "--only",
                "cluster,namespaces",
            ],
            &[("HTTPS_PROXY", &proxy)],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
}
