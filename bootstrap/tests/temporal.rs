//! Integration tests of the `temporal` adapter and its steps against the real Temporal server of
//! `scripts/dev-services` (built from go.temporal.io/server, PostgreSQL persistence, OpenSearch
//! visibility, frontend mTLS with `requireClientAuth`): TB_TEMPORAL_ADDRESS and the stack's client
//! certificate TB_TEMPORAL_TLS_CA/CERT/KEY, TB_TEMPORAL_CLI (independent verification with the
//! official `temporal` CLI over the same mTLS), TB_PROXY_URL (tinyproxy, HTTP CONNECT).
//!
//! One test needs SQL visibility, whose per-type caps do not exist on OpenSearch: it runs on the
//! stack's second server, the same release on PostgreSQL visibility (TB_TEMPORAL_SQL_ADDRESS and
//! TB_TEMPORAL_SQL_TLS_CA/CERT/KEY).
//!
//! On OpenSearch, custom search attributes are cluster-wide: each test uses attribute names of its
//! own with the same type in every run, or names unique to the run, so tests run in parallel and
//! can be re-run without cleaning up. Every attribute the tests add is proven usable by a
//! `temporal workflow list --query` that filters on it. The tests that need the stack are ignored
//! unless it is meant to be there (`TB_REPO_LOCAL` or `CI=true` at build time, see `build.rs`);
//! when they run, a missing variable is a failure.

#[path = "common/attribute_lock.rs"]
mod attribute_lock;
#[path = "common/temporal_cli.rs"]
mod temporal_cli;

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
/// `--only` for CLI runs: the steps that talk to Temporal (the configs carry no schema folders).
const TEMPORAL_STEPS: &str = "cluster,namespaces,search-attributes";
const STEPS: [StepName; 3] = [
    StepName::Cluster,
    StepName::Namespaces,
    StepName::SearchAttributes,
];

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// A variable of `scripts/dev-services env`. Only tests marked to need the stack call it (they
/// are ignored without it, see `build.rs`), so a missing one is a failure.
fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
        ),
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

/// platform.yaml with the given frontend block, shard count and namespaces (YAML list items),
/// on SQL visibility (SQLite). Only the cluster, namespaces and search-attributes steps run in
/// these tests.
fn config_text(frontend: &str, shards: &str, namespaces: &str) -> String {
    config_with_visibility(frontend, shards, "sqlite: { path: dev.db }", namespaces)
}

fn config_with_visibility(
    frontend: &str,
    shards: &str,
    visibility: &str,
    namespaces: &str,
) -> String {
    format!(
        "cluster:\n  name: it\n  temporal_version: \"1.32.2\"\n  environment: development\n  frontend:\n{frontend}\n\
capacity:\n  peak_workflow_starts_per_second: 1\n  activities_per_workflow: 1\n  average_workflow_duration: 1m\n  history_shards: {shards}\n\
persistence:\n  sqlite: {{ path: dev.db }}\n\
visibility:\n  {visibility}\n\
namespaces:\n{namespaces}"
    )
}

fn plain_frontend(address: &str) -> String {
    format!("    address: {address}")
}

/// A Temporal server the tests talk to, and how to reach it.
struct Server {
    address: String,
    /// CA bundle, client certificate and key; None for a plaintext server.
    tls: Option<[String; 3]>,
    /// The cluster's history shard count, as GetClusterInfo reports it.
    shards: u64,
    /// Custom search attributes are cluster-wide (Elasticsearch/OpenSearch visibility).
    cluster_wide: bool,
    /// The `visibility:` entry of platform.yaml that matches the server's store.
    visibility: String,
}

/// The stack's real server over mTLS.
fn real_server() -> Server {
    let address = required("TB_TEMPORAL_ADDRESS");
    let tls = [
        required("TB_TEMPORAL_TLS_CA"),
        required("TB_TEMPORAL_TLS_CERT"),
        required("TB_TEMPORAL_TLS_KEY"),
    ];
    Server::ask(address, Some(tls))
}

/// The stack's second real server, on PostgreSQL visibility (SQL's per-namespace caps), over mTLS.
fn sql_server() -> Server {
    let address = required("TB_TEMPORAL_SQL_ADDRESS");
    let tls = [
        required("TB_TEMPORAL_SQL_TLS_CA"),
        required("TB_TEMPORAL_SQL_TLS_CERT"),
        required("TB_TEMPORAL_SQL_TLS_KEY"),
    ];
    Server::ask(address, Some(tls))
}

impl Server {
    fn ask(address: String, tls: Option<[String; 3]>) -> Self {
        let mut s = Server {
            address,
            tls,
            shards: 0,
            cluster_wide: false,
            visibility: "sqlite: { path: dev.db }".into(),
        };
        let o = s.temporal(&["operator", "cluster", "describe", "-o", "json"]);
        assert!(o.status.success(), "cluster describe: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        s.shards = v["historyShardCount"].as_u64().unwrap();
        s.cluster_wide = v["visibilityStore"] == "elasticsearch";
        if s.cluster_wide {
            let url = required("TB_OPENSEARCH_URL");
            s.visibility = format!(
                "elasticsearch: {{ url: \"{url}\", flavor: opensearch, index: temporal_visibility_v1_dev }}"
            );
        }
        s
    }

    /// The `frontend:` lines of platform.yaml (the stack's client certificate when TLS).
    fn frontend(&self) -> String {
        match &self.tls {
            None => plain_frontend(&self.address),
            Some([ca, cert, key]) => format!(
                "    address: {}\n    tls: {{ ca: {ca}, cert: {cert}, key: {key}, server_name: localhost }}",
                self.address
            ),
        }
    }

    /// platform.yaml for this server with its own shard count.
    fn config(&self, namespaces: &str) -> String {
        config_with_visibility(
            &self.frontend(),
            &self.shards.to_string(),
            &self.visibility,
            namespaces,
        )
    }

    /// The official CLI against this server.
    fn temporal(&self, args: &[&str]) -> Output {
        let bin = std::env::var("TB_TEMPORAL_CLI").unwrap_or_else(|_| "temporal".into());
        let mut c = Command::new(&bin);
        c.args(["--address", &self.address]);
        if let Some(tls) = &self.tls {
            c.args(temporal_cli::tls_flags(tls));
        }
        c.args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin} (set TB_TEMPORAL_CLI): {e}"))
    }

    fn temporal_ok(&self, args: &[&str]) {
        let o = self.temporal(args);
        assert!(o.status.success(), "temporal {args:?}: {}", text(&o));
    }

    /// `temporal operator namespace describe -o json`, None when it does not exist.
    fn describe(&self, ns: &str) -> Option<serde_json::Value> {
        let o = self.temporal(&["operator", "namespace", "describe", "-n", ns, "-o", "json"]);
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

    /// Custom attributes of `ns` as the server lists them: name -> type (Keyword...). On
    /// Elasticsearch visibility that is every attribute of the cluster.
    fn attributes(&self, ns: &str) -> BTreeMap<String, String> {
        let o = self.temporal(&[
            "operator",
            "search-attribute",
            "list",
            "-n",
            ns,
            "-o",
            "json",
        ]);
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

    /// The listed types of `names` only (absent names are left out).
    fn attributes_of(&self, ns: &str, names: &[&str]) -> BTreeMap<String, String> {
        self.attributes(ns)
            .into_iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .collect()
    }

    /// Proves an attribute usable: a visibility query filtering on it is accepted. Each frontend
    /// caches the attribute list for up to 60 s (the server's `cacheRefreshInterval`), so a
    /// just-added attribute may be refused by queries until then, although ListSearchAttributes
    /// already shows it: retry for 75 s.
    fn assert_queryable(&self, ns: &str, name: &str, ty: &str) {
        let clause = match ty {
            "Int" => format!("{name} = 1"),
            "Double" => format!("{name} = 1.5"),
            "Bool" => format!("{name} = true"),
            "Datetime" => format!("{name} > \"2020-01-01T00:00:00Z\""),
            _ => format!("{name} = \"probe\""),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(75);
        loop {
            let o = self.temporal(&[
                "workflow", "list", "-n", ns, "--query", &clause, "-o", "json",
            ]);
            if o.status.success() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "visibility query `{clause}` in {ns} refused for 75 s: {}",
                text(&o)
            );
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }
}

/// `name: Type, ...` for a YAML flow mapping of search attributes.
fn flow_map(attrs: &[(String, &str)]) -> String {
    attrs
        .iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A tag for names that only allow letters, digits and `_` (search attributes).
fn word(tag: &str) -> String {
    unique(tag).replace('-', "_")
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
    let _writer = (mode == Mode::Apply).then(attribute_lock::attribute_writer);
    temporal_bootstrap::steps::run(&context(path), mode, &STEPS).await
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
    let _writer = (args.first() == Some(&"apply")).then(attribute_lock::attribute_writer);
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

/// `temporal-bootstrap COMMAND -f CONFIG --only STEPS` without proxy variables.
fn only(command: &str, config: &Path, steps: &str) -> Output {
    cli(
        &[command, "-f", config.to_str().unwrap(), "--only", steps],
        &[],
    )
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn fresh_registration_then_second_run_writes_nothing() {
    let srv = real_server();
    let (a, b) = (unique("fresh-a"), unique("fresh-b"));
    // Attribute names of this run: on OpenSearch they are cluster-wide, and the count of
    // AddSearchAttributes calls below needs them to be new.
    let tag = word("").trim_start_matches("tbt_").to_string();
    let [customer, priority, total, paid] =
        ["CustomerId", "Priority", "Total", "Paid"].map(|n| format!("{n}{tag}"));
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &srv.config(
            &format!(
                "  - name: {a}\n    retention: 3d\n    description: Orders of the shop\n    owner_email: shop@example.com\n    data: {{ team: shop, tier: gold }}\n    search_attributes: {{ {customer}: Keyword, {priority}: Int, {total}: Double, {paid}: Bool }}\n  - name: {b}\n    retention: 1d\n"
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
    assert!(srv.describe(&a).is_none(), "dry run must not register");

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
    let d = srv.describe(&a).expect("registered");
    assert_eq!(retention_secs(&d), 3 * 86_400);
    assert_eq!(d["namespaceInfo"]["description"], "Orders of the shop");
    assert_eq!(d["namespaceInfo"]["ownerEmail"], "shop@example.com");
    assert_eq!(d["namespaceInfo"]["data"]["team"], "shop");
    assert_eq!(d["namespaceInfo"]["data"]["tier"], "gold");
    assert_eq!(retention_secs(&srv.describe(&b).unwrap()), 86_400);
    let attrs = srv.attributes_of(&a, &[&customer, &priority, &total, &paid]);
    let want: BTreeMap<String, String> = [
        (&customer, "Keyword"),
        (&priority, "Int"),
        (&total, "Double"),
        (&paid, "Bool"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attrs, want);
    for (name, ty) in &want {
        srv.assert_queryable(&a, name, ty);
    }

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
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn retention_and_description_drift_is_corrected() {
    let srv = real_server();
    let ns = unique("drift");
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &srv.config(&format!(
            "  - name: {ns}\n    retention: 3d\n    description: managed\n"
        )),
    );
    assert_no_failure(&run(&cfg, Mode::Apply).await);
    // Someone changes it by hand with the official CLI.
    srv.temporal_ok(&[
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
    ]);
    assert_eq!(retention_secs(&srv.describe(&ns).unwrap()), 2 * 86_400);

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
    let d = srv.describe(&ns).unwrap();
    assert_eq!(retention_secs(&d), 3 * 86_400);
    assert_eq!(d["namespaceInfo"]["description"], "managed");
    assert_eq!(d["namespaceInfo"]["data"]["extra"], "1", "never removed");
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn type_mismatch_is_refused_with_exit_2_and_nothing_changes() {
    let srv = real_server();
    // Names of this test only: on OpenSearch attributes are cluster-wide, and MismatchPriority is
    // Keyword in every run.
    let ns = unique("mismatch");
    let other = unique("mismatch-other");
    srv.temporal_ok(&[
        "operator",
        "namespace",
        "create",
        "-n",
        &ns,
        "--retention",
        "72h",
    ]);
    let writer = attribute_lock::attribute_writer();
    srv.temporal_ok(&[
        "operator",
        "search-attribute",
        "create",
        "-n",
        &ns,
        "--name",
        "MismatchPriority",
        "--type",
        "Keyword",
    ]);
    drop(writer);
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &srv.config(&format!(
            "  - name: {ns}\n    retention: 3d\n    search_attributes: {{ MismatchPriority: Int, MismatchRegion: Keyword }}\n  - name: {other}\n    retention: 3d\n    search_attributes: {{ MismatchRegion: Keyword }}\n"
        )),
    );
    // Only search-attributes: the other namespace does not exist, so nothing at all may be written.
    let o = only("apply", &cfg, "search-attributes");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    for want in [
        "`MismatchPriority`",
        "exists as Keyword",
        "declares Int",
        "can never change",
        "MismatchPriority: Keyword",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
    let attrs = srv.attributes(&ns);
    assert_eq!(
        attrs.get("MismatchPriority").map(String::as_str),
        Some("Keyword")
    );
    assert!(
        !attrs.contains_key("MismatchRegion"),
        "nothing may be added: {attrs:?}"
    );

    // The same through the library: Invalid class, no mutating call.
    let reports =
        temporal_bootstrap::steps::run(&context(&cfg), Mode::Apply, &[StepName::SearchAttributes])
            .await;
    let r = report(&reports, StepName::SearchAttributes);
    assert_eq!(
        (r.status, r.error_class),
        (StepStatus::Failed, Some(ErrorClass::Invalid))
    );
    assert_eq!(mutating_calls(&ns) + mutating_calls(&other), 0);
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn sql_cap_exceeded_is_refused_before_any_call() {
    // SQL visibility caps custom attributes per namespace and type; OpenSearch has no such cap,
    // so this runs on the PostgreSQL-visibility server.
    let srv = sql_server();
    assert!(!srv.cluster_wide, "the second server runs SQL visibility");
    let ns = unique("cap");
    srv.temporal_ok(&[
        "operator",
        "namespace",
        "create",
        "-n",
        &ns,
        "--retention",
        "72h",
    ]);
    for name in ["Legacy1", "Legacy2", "Legacy3"] {
        srv.temporal_ok(&[
            "operator",
            "search-attribute",
            "create",
            "-n",
            &ns,
            "--name",
            name,
            "--type",
            "Int",
        ]);
    }
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &srv.config(&format!("  - name: {ns}\n    retention: 3d\n    search_attributes: {{ Priority: Int, Region: Keyword }}\n")),
    );
    install_crypto();
    let reports =
        temporal_bootstrap::steps::run(&context(&cfg), Mode::Apply, &[StepName::SearchAttributes])
            .await;
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
    let attrs = srv.attributes(&ns);
    assert!(
        !attrs.contains_key("Priority") && !attrs.contains_key("Region"),
        "{attrs:?}"
    );

    let o = only("apply", &cfg, "search-attributes");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn reserved_names_are_refused_and_nothing_is_registered() {
    let srv = real_server();
    let ns = unique("reserved");
    let case = Case::new();
    for attr in ["WorkflowId", "TemporalScheduledById"] {
        let cfg = case.write(
            "platform.yaml",
            &srv.config(&format!(
                "  - name: {ns}\n    retention: 3d\n    search_attributes: {{ {attr}: Keyword }}\n"
            )),
        );
        let o = only("apply", &cfg, TEMPORAL_STEPS);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("reserved") && err.contains(attr), "{err}");
    }
    assert!(
        srv.describe(&ns).is_none(),
        "the namespace must not be registered either"
    );
    assert_eq!(mutating_calls(&ns), 0);
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn twenty_namespaces_with_ten_attributes_each() {
    let srv = real_server();
    let prefix = unique("many");
    // Names of this run only (cluster-wide on OpenSearch), with the SQL caps' shape: Keyword 10,
    // every other type 3.
    let tag = word("").trim_start_matches("tbt_").to_string();
    let attrs: Vec<(String, &str)> = [
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
    ]
    .into_iter()
    .map(|(n, t)| (format!("{n}{tag}"), t))
    .collect();
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}-{i:02}")).collect();
    let sa = flow_map(&attrs);
    let list: String = names
        .iter()
        .map(|n| format!("  - name: {n}\n    retention: 2d\n    search_attributes: {{ {sa} }}\n"))
        .collect();
    let case = Case::new();
    let cfg = case.write("platform.yaml", &srv.config(&list));
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
    let wanted_names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
    // One RegisterNamespace each; the attributes are cluster-wide on OpenSearch, so one
    // AddSearchAttributes in all (through the first namespace), one per namespace on SQL.
    let adds: u64 = names.iter().map(|n| mutating_calls(n) - 1).sum();
    assert_eq!(adds, if srv.cluster_wide { 1 } else { 20 });
    for n in &names {
        assert_eq!(srv.attributes_of(n, &wanted_names), want, "{n}");
        assert_eq!(retention_secs(&srv.describe(n).unwrap()), 2 * 86_400);
    }
    for (name, ty) in &attrs {
        srv.assert_queryable(&names[19], name, ty);
    }
    let again = run(&cfg, Mode::Apply).await;
    assert_no_failure(&again);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_converged(&again, StepName::Namespaces, &refs);
    assert_converged(&again, StepName::SearchAttributes, &refs);
    let total: u64 = names.iter().map(|n| mutating_calls(n)).sum();
    assert_eq!(total, 20 + adds, "second run wrote");
}

/// OpenSearch visibility has no per-type cap: more Keyword and Int attributes than SQL
/// visibility allows in one namespace are added, and every one answers a query.
#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn opensearch_attributes_are_not_capped() {
    let srv = real_server();
    if !srv.cluster_wide {
        panic!("the stack's server should run Elasticsearch/OpenSearch visibility");
    }
    let ns = unique("nocap");
    let tag = word("").trim_start_matches("tbt_").to_string();
    let mut attrs: Vec<(String, &str)> = (0..12)
        .map(|i| (format!("Kw{i:02}{tag}"), "Keyword"))
        .collect();
    attrs.extend((0..4).map(|i| (format!("Num{i}{tag}"), "Int")));
    let sa = flow_map(&attrs);
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &srv.config(&format!(
            "  - name: {ns}\n    retention: 1d\n    search_attributes: {{ {sa} }}\n"
        )),
    );
    assert_no_failure(&run(&cfg, Mode::Apply).await);
    let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
    let got = srv.attributes_of(&ns, &names);
    assert_eq!(got.len(), 16, "{got:?}");
    for (name, ty) in &attrs {
        assert_eq!(got[name.as_str()], *ty);
        srv.assert_queryable(&ns, name, ty);
    }
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn already_exists_is_handled() {
    let srv = real_server();
    use temporal_bootstrap::temporal::proxy::ProxyEnv;
    use temporal_bootstrap::temporal::{
        ConnectSettings, GrpcTemporal, NamespaceSpec, RetryPolicy, TemporalApi, TlsMaterial,
    };
    // The adapter maps the real server's ALREADY_EXISTS to "exists already".
    let ns = unique("exists");
    srv.temporal_ok(&[
        "operator",
        "namespace",
        "create",
        "-n",
        &ns,
        "--retention",
        "24h",
    ]);
    let (host, port) = srv.address.rsplit_once(':').unwrap();
    let tls = srv.tls.as_ref().map(|[ca, cert, key]| {
        TlsMaterial::from_files(
            Path::new(ca),
            Some((Path::new(cert), Path::new(key))),
            Some("localhost".into()),
            "test",
        )
        .unwrap()
    });
    let settings =
        ConnectSettings::new(host, port.parse().unwrap(), tls, &ProxyEnv::default()).unwrap();
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
    let cfg = case.write("platform.yaml", &srv.config(&list));
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
        let d = srv.describe(n).expect("registered");
        assert_eq!(retention_secs(&d), 3 * 86_400);
        assert_eq!(d["namespaceInfo"]["description"], "raced");
    }
}

// ---------------------------------------------------------------------------------------------
// cluster check and failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn shard_count_change_is_refused_with_exit_2() {
    let srv = real_server();
    let ns = unique("shards");
    let case = Case::new();
    // Ask the running cluster its count, independently.
    let o = srv.temporal(&["operator", "cluster", "describe", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let actual = v["historyShardCount"].as_u64().unwrap();
    let wrong = actual * 2;
    let cfg = case.write(
        "platform.yaml",
        &config_with_visibility(
            &srv.frontend(),
            &wrong.to_string(),
            &srv.visibility,
            &format!("  - name: {ns}\n    retention: 3d\n"),
        ),
    );
    let o = only("apply", &cfg, TEMPORAL_STEPS);
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
    assert!(srv.describe(&ns).is_none(), "later steps must not run");
    let cfg = case.write(
        "platform.yaml",
        &config_with_visibility(
            &srv.frontend(),
            &actual.to_string(),
            &srv.visibility,
            &format!("  - name: {ns}\n    retention: 3d\n"),
        ),
    );
    let o = only("plan", &cfg, "cluster");
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
    let o = only("apply", &cfg, TEMPORAL_STEPS);
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
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn https_proxy_is_used_and_no_proxy_respected() {
    let srv = real_server();
    let addr = srv.address.clone();
    let proxy = required("TB_PROXY_URL");
    let ns = unique("proxy");
    let via = format!("ViaProxy{}", word("").trim_start_matches("tbt_"));
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let case = Case::new();
    let cfg = case.write(
        "platform.yaml",
        &srv.config(&format!(
            "  - name: {ns}\n    retention: 3d\n    search_attributes: {{ {via}: Keyword }}\n"
        )),
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
    assert!(srv.describe(&ns).is_some());
    assert_eq!(
        srv.attributes(&ns).get(&via).map(String::as_str),
        Some("Keyword")
    );
    if let (Some(b), Some(a)) = (before, connects(&log)) {
        assert!(a > b, "tinyproxy logged no CONNECT {addr}");
    }
}

// ---------------------------------------------------------------------------------------------
// mTLS against the real server
// ---------------------------------------------------------------------------------------------

/// A CA of someone else, and a client certificate it signed (rcgen).
fn foreign_pki() -> (String, (String, String)) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "some other CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = p.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(p, ca_key);
    let mut leaf = CertificateParams::new(vec!["intruder".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "intruder");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, (cert.pem(), key.serialize_pem()))
}

/// Our client against the real server's frontend (`requireClientAuth`): the stack's client
/// certificate works, directly and through the CONNECT proxy; no client certificate, one from
/// another CA, and trusting another CA for the server are refused with exit 1, a message that
/// says why, and no retries.
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn real_server_mtls_needs_a_client_certificate_from_its_ca() {
    let srv = real_server();
    let [ca, cert, key] = srv.tls.clone().expect("the stack's server runs mTLS");
    let case = Case::new();
    let (other_ca, (foreign_cert, foreign_key)) = foreign_pki();
    case.write("other-ca.pem", &other_ca);
    case.write("foreign.pem", &foreign_cert);
    case.write("foreign-key.pem", &foreign_key);
    let ns = unique("mtls");
    let via = format!("ViaMtls{}", word("").trim_start_matches("tbt_"));
    let nss =
        format!("  - name: {ns}\n    retention: 3d\n    search_attributes: {{ {via}: Keyword }}\n");
    let frontend = |tls: &str| format!("    address: {}\n    tls: {{ {tls} }}", srv.address);
    let write = |name: &str, tls: &str| {
        case.write(
            name,
            &config_with_visibility(
                &frontend(tls),
                &srv.shards.to_string(),
                &srv.visibility,
                &nss,
            ),
        )
    };

    // The stack's client certificate (absolute paths) and the certificate's name: full apply.
    let good = write(
        "good.yaml",
        &format!("ca: {ca}, cert: {cert}, key: {key}, server_name: localhost"),
    );
    let o = only("apply", &good, TEMPORAL_STEPS);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(srv.describe(&ns).is_some(), "registered over mTLS");
    assert_eq!(
        srv.attributes(&ns).get(&via).map(String::as_str),
        Some("Keyword")
    );
    srv.assert_queryable(&ns, &via, "Keyword");

    // Without a client certificate: refused, exit 1, clear message, no retries.
    let none = write("none.yaml", &format!("ca: {ca}, server_name: localhost"));
    let o = only("plan", &none, "cluster");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("client certificate") && text(&o).contains("after 1 attempt(s)"),
        "{}",
        text(&o)
    );

    // With a certificate from another CA (relative paths resolve against the config file).
    let foreign = write(
        "foreign.yaml",
        &format!("ca: {ca}, cert: foreign.pem, key: foreign-key.pem, server_name: localhost"),
    );
    let o = only("plan", &foreign, "cluster");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("client certificate"), "{}", text(&o));

    // Trusting another CA for the server: refused on the server certificate, no retries.
    let wrong_ca = write(
        "wrong-ca.yaml",
        &format!("ca: other-ca.pem, cert: {cert}, key: {key}, server_name: localhost"),
    );
    let o = only("plan", &wrong_ca, "cluster");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("invalid peer certificate"),
        "{}",
        text(&o)
    );

    // mTLS through the CONNECT proxy as well.
    let proxy = required("TB_PROXY_URL");
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
