//! `upgrade apply` against a real PostgreSQL (TB_PG_HOST, TB_PG_PORT, TB_PG_ADMIN_USER,
//! TB_PG_ADMIN_PASSWORD from `scripts/dev-services env`; each test also runs on the RDS-like
//! PostgreSQL 18 as a non-superuser admin, `rds_like::`): the orchestration of
//! `temporal_bootstrap::upgrade::apply` with the REAL [`StoreMigrator`] (the schema runner of
//! the `persistence`/`visibility` steps), an in-process fake cluster probe and a fake executor.
//!
//! Schema folders are our own fixtures (tests/fixtures/upgrade-schema, never Temporal's files),
//! numbered with the real versions of `versions.rs` for 1.27 to 1.31. Every fixture version
//! inserts its number into a `fx_up_applied` table with a primary key, so a version applied twice
//! fails the migration itself. Each test uses its own databases and role, and first brings them
//! to the 1.27 level with the CLI (`apply --only persistence,visibility`, temporal_version
//! 1.27.4).
//!
//! What the tests prove: the 4-hop path 1.27.4 -> 1.31.2 leaves each database with exactly the
//! versions of each hop's release at the moment that hop's services would roll (the fake
//! executor reads `recorded_version` then), ends at 1.31's versions with an unbroken
//! `schema_update_history`; an abort at a roll, or a crash between a schema commit and the state
//! save, resumes without applying a version twice; broken targets and downgrades are refused
//! (exit class invalid / exit 2) with no write.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use temporal_bootstrap::config::types::TemporalVersion;
use temporal_bootstrap::postgres::{self, SchemaKind};
use temporal_bootstrap::reconcile::{Context, ErrorClass};
use temporal_bootstrap::upgrade::apply::{self, ApplyReport, ApplyRequest};
use temporal_bootstrap::upgrade::migrator::StoreMigrator;
use temporal_bootstrap::upgrade::plan::VisibilityStore;
use temporal_bootstrap::upgrade::state::{self, Phase};
use temporal_bootstrap::upgrade::{
    ClusterProbe, CurrentSchemas, Executor, RollOutcome, SchemaMigrator, SystemClock, UpgradeError,
    VisibilityTarget,
};
use temporal_bootstrap::versions::{self, Hop, SchemaVersion, UpgradeRefusal};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const APP_PASSWORD: &str = "upgrade app pass; it's ok";

use common::{Pg, admin_conn};

fn v(s: &str) -> TemporalVersion {
    s.parse().unwrap()
}

fn sv(major: u32, minor: u32) -> SchemaVersion {
    SchemaVersion::new(major, minor)
}

fn fixture_schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-schema/postgresql/v12")
}

/// One test's databases (`<p>_t`, `<p>_v`), role (`<p>_app`) and config directory; the
/// databases and role are dropped when the test ends, even on panic.
struct Case {
    pg: Pg,
    prefix: String,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Case {
    fn on(pg: Pg, tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let prefix = format!(
            "tb_up_{tag}_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            nanos % 100_000
        );
        let dir = tempfile::tempdir().unwrap();
        let pwfile = dir.path().join("app-password");
        std::fs::write(&pwfile, APP_PASSWORD).unwrap();
        let text = format!(
            "cluster:\n  name: upgradetest\n  temporal_version: \"1.27.4\"\n  environment: development\n  frontend: {{ address: 127.0.0.1:57233 }}\n\
             capacity:\n  peak_workflow_starts_per_second: 5\n  activities_per_workflow: 4\n  average_workflow_duration: 10m\n\
             persistence:\n  postgres:\n    host: {host}\n    port: {port}\n    database: {prefix}_t\n    user: {prefix}_app\n    password: file:{pw}\n\
             \x20   admin: {{ user: {admin}, password: env:{admin_env} }}\n    tls: {{ mode: disable }}\n    schema_dir: {schema}\n\
             visibility:\n  postgres: {{ database: {prefix}_v }}\n\
             namespaces:\n  - {{ name: demo, retention: 3d }}\n",
            host = pg.host,
            port = pg.port,
            admin = pg.admin_user,
            admin_env = pg.admin_password_env,
            pw = pwfile.display(),
            schema = fixture_schema().display(),
        );
        let config = dir.path().join("platform.yaml");
        std::fs::write(&config, text).unwrap();
        Self {
            pg,
            prefix,
            dir,
            config,
        }
    }

    fn temporal_db(&self) -> String {
        format!("{}_t", self.prefix)
    }

    fn visibility_db(&self) -> String {
        format!("{}_v", self.prefix)
    }

    fn context(&self) -> Context {
        let loaded = temporal_bootstrap::config::load_file(&self.config).unwrap();
        Context {
            config: Arc::new(loaded.config),
            base_dir: self.dir.path().to_path_buf(),
            offline: false,
            force: false,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("-f")
            .arg(&self.config)
            .env(self.pg.admin_password_env, &self.pg.admin_password)
            .env_remove("TEMPORAL_BOOTSTRAP_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Brings both databases to the 1.27 level with the CLI's `persistence`/`visibility` steps.
    fn install_1_27(&self) {
        let out = self.run(&["apply", "--only", "persistence,visibility"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    fn request(&self, to: &str) -> ApplyRequest {
        ApplyRequest {
            cluster: "upgradetest".into(),
            to: v(to),
            from_hint: None,
            store: VisibilityStore::Postgres,
            soak: Duration::ZERO,
            wait_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(10),
            state_path: self.dir.path().join("platform.upgrade-state.json"),
            hops: versions::HopOptions::default(),
        }
    }

    /// `(curr_version, history as (old, new) in time order, ledger rows in order)` of a database.
    async fn db_state(&self, db: &str) -> DbState {
        let mut c = admin_conn(&self.pg, db).await.unwrap();
        let current: String = sqlx::query_scalar(
            "SELECT curr_version FROM schema_version WHERE version_partition = 0 AND db_name = $1",
        )
        .bind(db)
        .fetch_one(&mut c)
        .await
        .unwrap();
        let history: Vec<(String, String)> = sqlx::query_as(
            "SELECT old_version, new_version FROM schema_update_history ORDER BY update_time",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let ledger: Vec<String> =
            sqlx::query_scalar("SELECT version FROM fx_up_applied ORDER BY applied_at, version")
                .fetch_all(&mut c)
                .await
                .unwrap();
        DbState {
            current,
            history,
            ledger,
        }
    }

    async fn both(&self) -> (DbState, DbState) {
        (
            self.db_state(&self.temporal_db()).await,
            self.db_state(&self.visibility_db()).await,
        )
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let p = &self.prefix;
        common::drop_databases_and_role(
            &self.pg,
            &[format!("{p}_t"), format!("{p}_v")],
            &format!("{p}_app"),
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DbState {
    current: String,
    history: Vec<(String, String)>,
    ledger: Vec<String>,
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The history is one chain 0 -> 0.0 -> 1.0 -> 1.1 -> ... -> 1.`last`: every version exactly
/// once, in order, none missing.
fn assert_history(db: &DbState, last_minor: u32) {
    let mut expected = vec![("0".to_string(), "0.0".to_string())];
    let mut prev = "0.0".to_string();
    for minor in 0..=last_minor {
        let next = format!("1.{minor}");
        expected.push((prev, next.clone()));
        prev = next;
    }
    assert_eq!(db.history, expected, "schema_update_history");
    assert_eq!(db.current, format!("1.{last_minor}"));
}

/// The versions with statements, each once (the ledger's primary key already forbids twice).
fn assert_ledger(db: &DbState, expected: &[&str]) {
    assert_eq!(db.ledger, expected, "fx_up_applied");
}

fn temporal_ledger(last_minor: u32) -> Vec<String> {
    (0..=last_minor).map(|m| format!("1.{m}")).collect()
}

fn visibility_ledger(last_minor: u32) -> Vec<String> {
    // 1.10-1.12 are markers without statements.
    (0..=last_minor)
        .filter(|m| !(10..=12).contains(m))
        .map(|m| format!("1.{m}"))
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// What the fake executor saw when asked to roll a hop: the versions recorded in the real
/// databases at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Roll {
    to: TemporalVersion,
    temporal: Option<SchemaVersion>,
    visibility: Option<SchemaVersion>,
}

#[derive(Debug)]
struct World {
    /// What the cluster reports: the version the fake executor last rolled to.
    version: TemporalVersion,
    rolls: Vec<Roll>,
    /// The roll with this 1-based number (counted over the fake's life) fails.
    fail_roll: Option<usize>,
}

/// The cluster (probe) and the executor in one: in-process, no Temporal server.
#[derive(Clone)]
struct FakeCluster {
    ctx: Context,
    world: Arc<Mutex<World>>,
}

impl FakeCluster {
    fn new(ctx: Context, running: &str) -> Self {
        Self {
            ctx,
            world: Arc::new(Mutex::new(World {
                version: v(running),
                rolls: Vec::new(),
                fail_roll: None,
            })),
        }
    }
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }
}

impl ClusterProbe for FakeCluster {
    fn address(&self) -> String {
        "fake://upgradetest".into()
    }
    async fn server_version(&self) -> Result<TemporalVersion, UpgradeError> {
        Ok(self.w().version)
    }
}

impl Executor for FakeCluster {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn roll(&self, hop: &Hop) -> Result<RollOutcome, UpgradeError> {
        // Read what the real databases record before any service of `hop.to` would start.
        let temporal = postgres::recorded_version(&self.ctx, SchemaKind::Temporal)
            .await
            .map_err(|e| UpgradeError::Executor(e.to_string()))?;
        let visibility = postgres::recorded_version(&self.ctx, SchemaKind::Visibility)
            .await
            .map_err(|e| UpgradeError::Executor(e.to_string()))?;
        let mut w = self.w();
        w.rolls.push(Roll {
            to: hop.to,
            temporal,
            visibility,
        });
        if w.fail_roll == Some(w.rolls.len()) {
            return Err(UpgradeError::Executor(format!(
                "fake executor killed while rolling to {}",
                hop.to
            )));
        }
        w.version = hop.to;
        Ok(RollOutcome {
            detail: format!("fake roll to {}", hop.to),
        })
    }
}

/// The real migrator, with a "kill" injected: the `current_versions` call with this 1-based
/// number fails. Per hop the orchestrator reads (before), migrates, reads again (verify), so
/// failing read 4 is a crash of hop 2 after its schema commit and before its state save.
struct CrashingMigrator {
    inner: StoreMigrator,
    reads: AtomicUsize,
    fail_read: usize,
}

impl SchemaMigrator for CrashingMigrator {
    async fn current_versions(&self) -> Result<CurrentSchemas, UpgradeError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_read {
            return Err(UpgradeError::Schema("process killed (injected)".into()));
        }
        self.inner.current_versions().await
    }
    async fn migrate_to(
        &self,
        temporal: SchemaVersion,
        visibility: VisibilityTarget,
    ) -> Result<(), UpgradeError> {
        self.inner.migrate_to(temporal, visibility).await
    }
}

async fn upgrade(
    case: &Case,
    cluster: &FakeCluster,
    to: &str,
) -> Result<ApplyReport, UpgradeError> {
    let migrator = StoreMigrator {
        ctx: case.context(),
        progress: None,
    };
    apply::apply(&case.request(to), &migrator, cluster, cluster, &SystemClock).await
}

/// `(release, persistence (major, minor), visibility (major, minor))`.
type Release = (&'static str, (u32, u32), (u32, u32));

/// The exact versions each release of the path needs (the fixture README's table), checked
/// against versions.rs so the fixture and the mapping cannot drift apart silently.
const PATH: [Release; 5] = [
    ("1.27.4", (1, 16), (1, 9)),
    ("1.28.4", (1, 17), (1, 9)),
    ("1.29.7", (1, 18), (1, 9)),
    ("1.30.9", (1, 18), (1, 13)),
    ("1.31.2", (1, 19), (1, 14)),
];

fn expected_roll(to: &str) -> Roll {
    let (_, t, vis) = PATH.iter().find(|p| p.0 == to).unwrap();
    let targets = versions::SupportedRelease::of(v(to)).unwrap().schemas();
    assert_eq!(
        (targets.postgres_temporal, targets.postgres_visibility),
        (sv(t.0, t.1), sv(vis.0, vis.1)),
        "versions.rs changed for {to}: update the fixture and PATH"
    );
    Roll {
        to: v(to),
        temporal: Some(sv(t.0, t.1)),
        visibility: Some(sv(vis.0, vis.1)),
    }
}

/// One runtime for all tests of this file. The PostgreSQL adapter keeps a process-wide cache of
/// open connections, and a connection belongs to the runtime that opened it: with a runtime per
/// test (`#[tokio::test]`), a test could reuse a cached connection whose runtime is shutting down
/// at the end of another test ("A Tokio 1.x context was found, but it is being shutdown").
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

// ---------------------------------------------------------------------------------------------

async fn multi_hop_upgrade_1_27_4_to_1_31_2_lands_on_each_hops_exact_versions(pg: Pg) {
    let case = Case::on(pg, "hops");
    case.install_1_27();
    let (t, vis) = case.both().await;
    assert_history(&t, 16);
    assert_history(&vis, 9);
    let ctx = case.context();
    let start = expected_roll("1.27.4");
    assert_eq!(
        (
            postgres::recorded_version(&ctx, SchemaKind::Temporal)
                .await
                .unwrap(),
            postgres::recorded_version(&ctx, SchemaKind::Visibility)
                .await
                .unwrap()
        ),
        (start.temporal, start.visibility)
    );

    let cluster = FakeCluster::new(ctx, "1.27.4");
    let report = upgrade(&case, &cluster, "1.31.2").await.unwrap();
    assert!(!report.resumed && !report.converged);
    let path: Vec<String> = report.hops.iter().map(|h| h.to.to_string()).collect();
    assert_eq!(path, ["1.28.4", "1.29.7", "1.30.9", "1.31.2"]);

    // After each hop's schema phase (= when the executor is asked to roll), the databases record
    // exactly that hop's release versions: not below (schema first), not above (no look-ahead).
    let rolls = cluster.w().rolls.clone();
    let expected: Vec<Roll> = ["1.28.4", "1.29.7", "1.30.9", "1.31.2"]
        .into_iter()
        .map(expected_roll)
        .collect();
    assert_eq!(rolls, expected);
    // The hop log says the same: 1.29.7 -> 1.30.9 moves only visibility (1.9 -> 1.13).
    let schema_action = |i: usize| {
        report.hops[i]
            .actions
            .iter()
            .find(|a| a.starts_with("schema "))
            .cloned()
            .unwrap_or_else(|| panic!("no schema action in hop {i}: {:?}", report.hops[i]))
    };
    assert!(
        schema_action(2).contains("temporal 1.18 / visibility 1.9")
            && schema_action(2).ends_with("temporal 1.18 / visibility 1.13 / es -"),
        "{}",
        schema_action(2)
    );

    let (t, vis) = case.both().await;
    assert_history(&t, 19);
    assert_history(&vis, 14);
    assert_ledger(&t, &strs(&temporal_ledger(19)));
    assert_ledger(&vis, &strs(&visibility_ledger(14)));
    // The 1.13 stored generated column exists and was filled for the existing row.
    let mut c = admin_conn(&case.pg, &case.visibility_db()).await.unwrap();
    let region: Option<String> =
        sqlx::query_scalar("SELECT region FROM fx_up_executions_visibility WHERE run_id = 'run-1'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(region.as_deref(), Some("eu"));
    let st = state::load(&case.request("1.31.2").state_path)
        .unwrap()
        .unwrap();
    assert!(st.is_done());

    // A second run on the converged cluster: nothing to do, no write, no roll.
    let before = case.both().await;
    let again = upgrade(&case, &cluster, "1.31.2").await.unwrap();
    assert!(again.converged, "{again:?}");
    assert_eq!(cluster.w().rolls.len(), 4);
    assert_eq!(case.both().await, before);
}

async fn a_run_aborted_between_hops_resumes_from_the_recorded_state(pg: Pg) {
    let case = Case::on(pg, "resume");
    case.install_1_27();
    let cluster = FakeCluster::new(case.context(), "1.27.4");
    cluster.w().fail_roll = Some(2);
    let err = upgrade(&case, &cluster, "1.31.2").await.unwrap_err();
    assert!(matches!(err, UpgradeError::Executor(_)), "{err}");
    assert!(!err.is_invalid());
    assert_eq!(err.kind().class(), ErrorClass::Runtime);

    // Hop 1 finished; hop 2's schema (1.18 / 1.9) is in (no search mapping on SQL visibility),
    // its roll died.
    let st = state::load(&case.request("1.31.2").state_path)
        .unwrap()
        .unwrap();
    let phases: Vec<Phase> = st.hops.iter().map(|h| h.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Done,
            Phase::MappingApplied,
            Phase::Pending,
            Phase::Pending
        ]
    );
    assert_eq!(cluster.w().version, v("1.28.4"));
    assert_eq!(
        cluster.w().rolls,
        [expected_roll("1.28.4"), expected_roll("1.29.7")]
    );
    let (t, vis) = case.both().await;
    assert_history(&t, 18);
    assert_history(&vis, 9);

    // Re-run (a new process would do the same: everything it needs is in the state file and
    // the databases).
    cluster.w().fail_roll = None;
    let report = upgrade(&case, &cluster, "1.31.2").await.unwrap();
    assert!(report.resumed);
    let path: Vec<String> = report.hops.iter().map(|h| h.to.to_string()).collect();
    assert_eq!(path, ["1.29.7", "1.30.9", "1.31.2"]);
    assert!(
        !report.hops[0]
            .actions
            .iter()
            .any(|a| a.starts_with("schema")),
        "hop 2's schema was done before the abort and is not redone: {:?}",
        report.hops[0]
    );
    let rolls = cluster.w().rolls.clone();
    assert_eq!(
        rolls[2..],
        [
            expected_roll("1.29.7"),
            expected_roll("1.30.9"),
            expected_roll("1.31.2")
        ]
    );
    let (t, vis) = case.both().await;
    assert_history(&t, 19);
    assert_history(&vis, 14);
    assert_ledger(&t, &strs(&temporal_ledger(19)));
    assert_ledger(&vis, &strs(&visibility_ledger(14)));
    assert_eq!(cluster.w().version, v("1.31.2"));
}

async fn broken_targets_and_downgrades_are_refused_before_any_write(pg: Pg) {
    let case = Case::on(pg, "refuse");
    case.install_1_27();
    let before = case.both().await;
    let state_path = case.request("1.27.0").state_path;

    // Library: a cluster on 1.26.3 asked for the known-broken 1.27.0.
    let cluster = FakeCluster::new(case.context(), "1.26.3");
    let err = upgrade(&case, &cluster, "1.27.0").await.unwrap_err();
    assert!(
        matches!(
            err,
            UpgradeError::Refused(UpgradeRefusal::BrokenTarget { instead, .. }) if instead == v("1.27.4")
        ),
        "{err}"
    );
    assert!(err.is_invalid());
    assert_eq!(err.kind().class(), ErrorClass::Invalid);

    // Library: the cluster runs 1.27.4 (the databases' level); 1.26.3 is a downgrade.
    let cluster = FakeCluster::new(case.context(), "1.27.4");
    let err = upgrade(&case, &cluster, "1.26.3").await.unwrap_err();
    assert!(
        matches!(err, UpgradeError::Refused(UpgradeRefusal::Downgrade { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("downgrades are refused"), "{err}");
    assert_eq!(err.kind().class(), ErrorClass::Invalid);
    // ... and so is 1.27.0 from there (older than the running 1.27.4).
    let err = upgrade(&case, &cluster, "1.27.0").await.unwrap_err();
    assert!(err.is_invalid(), "{err}");
    assert!(cluster.w().rolls.is_empty());

    // CLI (the real `upgrade apply` entry point with --from): exit 2, same messages.
    let out = case.run(&["upgrade", "apply", "--to", "1.27.0", "--from", "1.26.3"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("known-broken"), "{}", text(&out));
    let out = case.run(&["upgrade", "apply", "--to", "1.26.3", "--from", "1.27.4"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("downgrades are refused"),
        "{}",
        text(&out)
    );

    // Nothing was written: same versions, same history rows, no state file.
    assert_eq!(case.both().await, before);
    assert!(!state_path.exists());
    assert!(!case.dir.path().join("platform.upgrade-state.json").exists());
}

async fn a_crash_after_a_schema_commit_before_the_state_save_applies_nothing_twice(pg: Pg) {
    let case = Case::on(pg, "crash");
    case.install_1_27();
    let cluster = FakeCluster::new(case.context(), "1.27.4");
    let crashing = CrashingMigrator {
        inner: StoreMigrator {
            ctx: case.context(),
            progress: None,
        },
        reads: AtomicUsize::new(0),
        fail_read: 4,
    };
    let req = case.request("1.31.2");
    let err = apply::apply(&req, &crashing, &cluster, &cluster, &SystemClock)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    // The databases are at hop 2's versions, but the state file still says hop 2 is pending.
    let st = state::load(&req.state_path).unwrap().unwrap();
    assert_eq!(st.hops[0].phase, Phase::Done);
    assert_eq!(st.hops[1].phase, Phase::Pending);
    let (t, vis) = case.both().await;
    assert_history(&t, 18);
    assert_history(&vis, 9);
    assert_eq!(cluster.w().rolls, [expected_roll("1.28.4")]);

    // The re-run finds the schema already there, does not apply 1.18 again (the ledger's primary
    // key would fail the version if it did), and finishes at 1.31.
    let report = upgrade(&case, &cluster, "1.31.2").await.unwrap();
    assert!(report.resumed);
    assert!(
        report.hops[0]
            .actions
            .iter()
            .any(|a| a
                .starts_with("schema already at or above target (temporal 1.18 / visibility 1.9")),
        "{:?}",
        report.hops[0]
    );
    assert_eq!(
        cluster.w().rolls,
        ["1.28.4", "1.29.7", "1.30.9", "1.31.2"]
            .into_iter()
            .map(expected_roll)
            .collect::<Vec<_>>()
    );
    let (t, vis) = case.both().await;
    assert_history(&t, 19);
    assert_history(&vis, 14);
    assert_ledger(&t, &strs(&temporal_ledger(19)));
    assert_ledger(&vis, &strs(&visibility_ledger(14)));
}

on_every_server! {
    block_on crate::rt;
    multi_hop_upgrade_1_27_4_to_1_31_2_lands_on_each_hops_exact_versions,
    a_run_aborted_between_hops_resumes_from_the_recorded_state,
    broken_targets_and_downgrades_are_refused_before_any_write,
    a_crash_after_a_schema_commit_before_the_state_save_applies_nothing_twice,
}
