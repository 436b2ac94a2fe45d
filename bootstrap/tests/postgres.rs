//! Integration tests of the PostgreSQL adapter and the `persistence`/`visibility` steps against a
//! real PostgreSQL (TB_PG_HOST, TB_PG_PORT, TB_PG_ADMIN_USER, TB_PG_ADMIN_PASSWORD from
//! `scripts/dev-services env`). Every scenario runs twice (`on_every_server!`): there as its
//! superuser (`superuser_pg15::`), and on the stack's PostgreSQL 18 (`TB_PG_RDS_*`) as an admin
//! shaped like Amazon RDS's master user, CREATEROLE and CREATEDB but not a superuser
//! (`rds_like::`). Every test uses its own databases and role, so tests run in
//! parallel. Schema folders are our own fixtures (tests/fixtures/schema), never Temporal's.
//!
//! The fixtures match the real release mapping of Temporal 1.20 (temporal 1.9, visibility 1.2),
//! so the CLI runs with `temporal_version: "1.20.3"`; intermediate targets use a fake mapping
//! through the library's `schema_target` hook.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};
use temporal_bootstrap::config::types::TemporalVersion;
use temporal_bootstrap::postgres::{self, SchemaKind, SchemaState, StepOptions};
use temporal_bootstrap::reconcile::{Context, ErrorKind, StepError};
use temporal_bootstrap::versions::{SchemaTargets, SchemaVersion};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const APP_PASSWORD: &str = "app pass; it's \"quoted\" \\ ok";

use common::{Pg, admin_conn};

/// Unique names for one test: databases `<p>_t`, `<p>_v`, role `<p>_app`.
struct Names {
    prefix: String,
}

impl Names {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            prefix: format!(
                "tb_{tag}_{}_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst),
                nanos % 100_000
            ),
        }
    }
    fn temporal(&self) -> String {
        format!("{}_t", self.prefix)
    }
    fn visibility(&self) -> String {
        format!("{}_v", self.prefix)
    }
    fn role(&self) -> String {
        format!("{}_app", self.prefix)
    }
}

/// Drops the test's databases and role when the test ends, even on panic.
struct Cleanup {
    pg: Pg,
    names: Vec<String>,
    role: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::drop_databases_and_role(&self.pg, &self.names, &self.role);
    }
}

struct Case {
    pg: Pg,
    names: Names,
    dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

impl Case {
    fn on(pg: Pg, tag: &str) -> Self {
        let names = Names::new(tag);
        let cleanup = Cleanup {
            pg: pg.clone(),
            names: vec![names.temporal(), names.visibility()],
            role: names.role(),
        };
        Self {
            pg,
            names,
            dir: tempfile::tempdir().unwrap(),
            _cleanup: cleanup,
        }
    }

    /// A private copy of the basic fixture (optionally with the slow overlay) under the case dir.
    fn schema_copy(&self, slow: bool) -> PathBuf {
        let dest = self.dir.path().join("schema/postgresql/v12");
        copy_dir(&fixture_root().join("basic/postgresql/v12"), &dest);
        if slow {
            copy_dir(&fixture_root().join("overlays/slow"), &dest);
        }
        dest
    }

    fn basic_schema() -> PathBuf {
        fixture_root().join("basic/postgresql/v12")
    }

    /// Writes platform.yaml; `schema_dir: None` leaves the schema unmanaged.
    fn config(&self, schema_dir: Option<&Path>, extra: &str) -> PathBuf {
        self.config_with(
            &self.pg.host,
            self.pg.port,
            self.pg.admin_password_env,
            schema_dir,
            extra,
        )
    }

    /// [`Case::config`] with the admin of `pg` (its password from `TB_PG_ADMIN_PASSWORD`).
    fn config_as(&self, pg: &Pg, schema_dir: Option<&Path>) -> PathBuf {
        self.config_admin(
            &pg.admin_user,
            &pg.host,
            pg.port,
            "TB_PG_ADMIN_PASSWORD",
            schema_dir,
            "",
        )
    }

    fn config_with(
        &self,
        host: &str,
        port: u16,
        admin_password_env: &str,
        schema_dir: Option<&Path>,
        extra: &str,
    ) -> PathBuf {
        self.config_admin(
            &self.pg.admin_user,
            host,
            port,
            admin_password_env,
            schema_dir,
            extra,
        )
    }

    fn config_admin(
        &self,
        admin: &str,
        host: &str,
        port: u16,
        admin_password_env: &str,
        schema_dir: Option<&Path>,
        extra: &str,
    ) -> PathBuf {
        let schema = schema_dir
            .map(|d| format!("    schema_dir: {}\n", d.display()))
            .unwrap_or_default();
        let text = format!(
            "cluster:\n  name: pgtest\n  temporal_version: \"1.20.3\"\n  environment: development\n  frontend: {{ address: 127.0.0.1:57233 }}\n\
             capacity:\n  peak_workflow_starts_per_second: 5\n  activities_per_workflow: 4\n  average_workflow_duration: 10m\n\
             persistence:\n  postgres:\n    host: {host}\n    port: {port}\n    database: {db}\n    user: {role}\n    password: file:{pwfile}\n\
             \x20   admin: {{ user: {admin}, password: env:{admin_password_env} }}\n    tls: {{ mode: disable }}\n{schema}{extra}\
             visibility:\n  postgres: {{ database: {vis} }}\n\
             namespaces:\n  - {{ name: demo, retention: 3d }}\n",
            db = self.names.temporal(),
            role = self.names.role(),
            vis = self.names.visibility(),
            pwfile = self.app_password_file().display(),
        );
        let path = self.dir.path().join("platform.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The application password, in a file referenced as `file:` (no trailing newline).
    fn app_password_file(&self) -> PathBuf {
        let p = self.dir.path().join("app-password");
        std::fs::write(&p, APP_PASSWORD).unwrap();
        p
    }

    fn cli(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("-f")
            .arg(config)
            .env(self.pg.admin_password_env, &self.pg.admin_password)
            .env_remove("TEMPORAL_BOOTSTRAP_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, config: &Path, args: &[&str]) -> Output {
        self.cli(config, args).output().unwrap()
    }

    async fn admin(&self, db: &str) -> PgConnection {
        admin_conn(&self.pg, db).await.unwrap()
    }

    /// A library Context for `config`.
    fn context(config: &Path) -> Context {
        let loaded = temporal_bootstrap::config::load_file(config).unwrap();
        Context {
            config: Arc::new(loaded.config),
            base_dir: config.parent().unwrap().to_path_buf(),
            offline: false,
            force: false,
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn step<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {doc}"))
}

/// `(curr_version, history rows as (old, new) in time order)`.
async fn versions(c: &mut PgConnection, db: &str) -> (String, Vec<(String, String)>) {
    let cur: String = sqlx::query_scalar(
        "SELECT curr_version FROM schema_version WHERE version_partition = 0 AND db_name = $1",
    )
    .bind(db)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    let hist: Vec<(String, String)> = sqlx::query_as(
        "SELECT old_version, new_version FROM schema_update_history ORDER BY update_time",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    (cur, hist)
}

/// The history is one unbroken chain 0 -> 0.0 -> 1.0 -> ... -> `last`, each version once.
fn assert_chain(hist: &[(String, String)], last: &str) {
    let mut expected_old = "0".to_string();
    for (old, new) in hist {
        assert_eq!(old, &expected_old, "broken history chain: {hist:?}");
        expected_old = new.clone();
    }
    assert_eq!(
        expected_old, last,
        "history ends at {expected_old}: {hist:?}"
    );
    let mut news: Vec<&String> = hist.iter().map(|(_, n)| n).collect();
    news.sort();
    news.dedup();
    assert_eq!(news.len(), hist.len(), "a version appears twice: {hist:?}");
}

/// Everything a write would change: catalog rows of public relations (with xmin), and the
/// version rows with their xmin (an UPDATE changes xmin even when values stay equal).
async fn fingerprint(c: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT coalesce((SELECT string_agg(c.oid::text || ':' || c.relname || ':' || c.xmin::text, ',' ORDER BY c.oid) \
                 FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace), '') || '|' || \
                coalesce((SELECT string_agg(xmin::text || curr_version, ',') FROM schema_version), '') || '|' || \
                coalesce((SELECT string_agg(xmin::text, ',' ORDER BY xmin::text) FROM schema_update_history), '')",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap()
}

/// A fake release whose schemas are the fixture's intermediate versions (temporal 1.5,
/// visibility 1.1); the Elasticsearch version is not used here.
fn fake_mapping_1_5(_: TemporalVersion) -> Option<SchemaTargets> {
    Some(SchemaTargets {
        postgres_temporal: SchemaVersion::new(1, 5),
        postgres_visibility: SchemaVersion::new(1, 1),
        elasticsearch: 4,
    })
}

/// Brings both databases to the fake 1.5 / 1.1 release through the library.
async fn install_intermediate(config: &Path) {
    let ctx = Case::context(config);
    let opts = StepOptions {
        schema_target: fake_mapping_1_5,
        ..StepOptions::default()
    };
    for kind in [SchemaKind::Temporal, SchemaKind::Visibility] {
        let spec = postgres::spec_for(&ctx, kind, &opts).unwrap();
        postgres::apply(&spec).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

async fn fresh_install_reaches_target_and_rerun_writes_nothing(pg: Pg) {
    let case = Case::on(pg, "fresh");
    let config = case.config(Some(&Case::basic_schema()), "");
    let out = case.run(&config, &["apply", "--only", "persistence,visibility"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !text(&out).contains(APP_PASSWORD),
        "password leaked: {}",
        text(&out)
    );

    let (t, v) = (case.names.temporal(), case.names.visibility());
    let mut ct = case.admin(&t).await;
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(cur, "1.9");
    assert_eq!(hist.len(), 11, "initial row + 10 versions: {hist:?}");
    assert_chain(&hist, "1.9");
    let mut cv = case.admin(&v).await;
    let (cur, hist) = versions(&mut cv, &v).await;
    assert_eq!(cur, "1.2");
    assert_chain(&hist, "1.2");

    // The history rows carry the manifest md5, the description and the UTC year/month.
    let (md5, desc, min): (String, String, String) = sqlx::query_as(
        "SELECT h.manifest_md5, h.description, v.min_compatible_version FROM schema_update_history h, schema_version v \
         WHERE h.new_version = '1.9' AND h.year = extract(year FROM h.update_time) AND h.month = extract(month FROM h.update_time)",
    )
    .fetch_one(&mut ct)
    .await
    .unwrap();
    let manifest =
        std::fs::read(Case::basic_schema().join("temporal/versioned/v1.9/manifest.json")).unwrap();
    use md5::Digest;
    let expected: String = md5::Md5::digest(&manifest)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        (md5.as_str(), desc.as_str(), min.as_str()),
        (expected.as_str(), "drop a column and add a table", "1.8")
    );

    // Least-privilege role owning both databases and every table; its password logs in.
    let mut c = case.admin("postgres").await;
    let attrs: (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1",
    )
    .bind(case.names.role())
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(attrs, (true, false, false, false));
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = ANY($1)",
    )
    .bind(vec![t.clone(), v.clone()])
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(owners, vec![case.names.role()]);
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> $1",
    )
    .bind(case.names.role())
    .fetch_one(&mut ct)
    .await
    .unwrap();
    assert_eq!(foreign, 0, "every table belongs to the application role");
    PgConnectOptions::new_without_pgpass()
        .host(&case.pg.host)
        .port(case.pg.port)
        .username(&case.names.role())
        .password(APP_PASSWORD)
        .database(&t)
        .connect()
        .await
        .expect("the application role logs in with the configured password");

    // Second run: nothing pending, nothing written.
    let before = (fingerprint(&mut ct).await, fingerprint(&mut cv).await);
    let out = case.run(
        &config,
        &[
            "--output",
            "json",
            "apply",
            "--only",
            "persistence,visibility",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    for s in ["persistence", "visibility"] {
        assert_eq!(step(&doc, s)["status"], "up-to-date", "{doc}");
        assert_eq!(step(&doc, s)["changes"].as_array().unwrap().len(), 0);
    }
    // And the adapter's apply itself, called on a converged server, executes no statement.
    let ctx = Case::context(&config);
    let spec = postgres::spec_for(&ctx, SchemaKind::Temporal, &StepOptions::default()).unwrap();
    let outcome = postgres::apply(&spec).await.unwrap();
    assert_eq!(
        (
            outcome.statements_executed,
            outcome.versions_applied,
            outcome.changes.len()
        ),
        (0, 0, 0)
    );
    let after = (fingerprint(&mut ct).await, fingerprint(&mut cv).await);
    assert_eq!(before, after, "a converged re-run wrote to the database");
}

async fn dry_run_on_an_empty_server_lists_everything_and_writes_nothing(pg: Pg) {
    let case = Case::on(pg, "dry");
    let config = case.config(Some(&Case::basic_schema()), "");
    let out = case.run(
        &config,
        &[
            "--output",
            "json",
            "apply",
            "--dry-run",
            "--only",
            "persistence,visibility",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    let p = step(&doc, "persistence");
    assert_eq!(p["status"], "pending");
    let resources: Vec<&str> = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["resource"].as_str().unwrap())
        .collect();
    assert_eq!(resources[0], format!("role {}", case.names.role()));
    // An admin that is not a superuser first gives itself SET on the new role (PostgreSQL 16+).
    let grant = usize::from(!case.pg.admin_is_superuser());
    if grant == 1 {
        assert_eq!(
            resources[1],
            format!(
                "membership of {} in role {}",
                case.pg.admin_user,
                case.names.role()
            )
        );
    }
    assert_eq!(
        resources[1 + grant],
        format!("database {}", case.names.temporal())
    );
    assert_eq!(resources.len(), 3 + grant + 10, "{resources:?}");
    let v13 = &p["changes"][3 + grant + 3];
    assert_eq!(
        v13["resource"],
        format!("schema {} v1.3", case.names.temporal())
    );
    assert_eq!(
        v13["detail"],
        "1.2 -> 1.3: two files in one version (3 statements)"
    );
    let marker = &p["changes"][3 + grant + 4];
    assert!(
        marker["detail"]
            .as_str()
            .unwrap()
            .contains("(0 statements)"),
        "{marker}"
    );

    let mut c = case.admin("postgres").await;
    let dbs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1 || '%'")
            .bind(&case.names.prefix)
            .fetch_one(&mut c)
            .await
            .unwrap();
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(case.names.role())
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!((dbs, roles), (0, 0), "dry-run created something");
}

async fn upgrade_from_an_intermediate_version_with_a_dry_run_first(pg: Pg) {
    let case = Case::on(pg, "upgrade");
    let config = case.config(Some(&Case::basic_schema()), "");
    install_intermediate(&config).await;
    let (t, v) = (case.names.temporal(), case.names.visibility());
    let mut ct = case.admin(&t).await;
    let mut cv = case.admin(&v).await;
    assert_eq!(versions(&mut ct, &t).await.0, "1.5");
    assert_eq!(versions(&mut cv, &v).await.0, "1.1");
    sqlx::raw_sql(
        "INSERT INTO fx_executions_visibility VALUES \
         ('ns', 'r1', now(), 1, '{\"CustomerId\": \"c-1\"}'), ('ns', 'r2', now(), 1, '{}'), ('ns', 'r3', now(), 2, NULL)",
    )
    .execute(&mut cv)
    .await
    .unwrap();

    let before = (fingerprint(&mut ct).await, fingerprint(&mut cv).await);
    let out = case.run(
        &config,
        &[
            "--output",
            "json",
            "apply",
            "--dry-run",
            "--only",
            "persistence,visibility",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    let pending: Vec<String> = step(&doc, "persistence")["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["resource"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        pending,
        ["1.6", "1.7", "1.8", "1.9"].map(|v| format!("schema {t} v{v}"))
    );
    let vis = step(&doc, "visibility")["changes"].as_array().unwrap();
    assert_eq!(vis.len(), 1, "{vis:?}");
    let detail = vis[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("WARNING: rewrites table fx_executions_visibility (3 rows)"),
        "{detail}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("rewrites table fx_executions_visibility (3 rows)")
    );
    assert_eq!(
        before,
        (fingerprint(&mut ct).await, fingerprint(&mut cv).await),
        "dry-run wrote"
    );

    let out = case.run(&config, &["apply", "--only", "persistence,visibility"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(cur, "1.9");
    assert_chain(&hist, "1.9");
    let (cur, hist) = versions(&mut cv, &v).await;
    assert_eq!(cur, "1.2");
    assert_chain(&hist, "1.2");
    let customer: Option<String> =
        sqlx::query_scalar("SELECT customer_id FROM fx_executions_visibility WHERE run_id = 'r1'")
            .fetch_one(&mut cv)
            .await
            .unwrap();
    assert_eq!(
        customer.as_deref(),
        Some("c-1"),
        "the generated column was filled"
    );
}

async fn two_concurrent_runs_leave_one_correct_history(pg: Pg) {
    let case = Case::on(pg, "conc");
    let schema = case.schema_copy(true);
    let config = case.config(Some(&schema), "");
    let spawn = || {
        case.cli(&config, &["apply", "--only", "persistence"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let waited = [&a, &b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("holds the schema lock"))
        .count();
    assert_eq!(
        waited,
        1,
        "exactly one run waited for the lock:\n{}\n{}",
        text(&a),
        text(&b)
    );
    let t = case.names.temporal();
    let mut ct = case.admin(&t).await;
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(cur, "1.9");
    assert_eq!(hist.len(), 11, "{hist:?}");
    assert_chain(&hist, "1.9");
}

async fn a_run_killed_mid_version_leaves_a_clean_version_and_the_rerun_finishes(pg: Pg) {
    let case = Case::on(pg, "kill");
    let schema = case.schema_copy(true);
    let config = case.config(Some(&schema), "");
    let t = case.names.temporal();
    let mut child = case
        .cli(&config, &["apply", "--only", "persistence"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = case.admin("postgres").await;
    let started = Instant::now();
    loop {
        let sleeping: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep%' AND state = 'active'",
        )
        .bind(&t)
        .fetch_one(&mut c)
        .await
        .unwrap();
        if sleeping > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never reached the slow version"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut ct = case.admin(&t).await;
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(
        cur, "1.6",
        "v1.7 was in flight and must not be half-applied"
    );
    assert_chain(&hist, "1.6");
    let timers: bool = sqlx::query_scalar("SELECT to_regclass('public.fx_timers') IS NOT NULL")
        .fetch_one(&mut ct)
        .await
        .unwrap();
    assert!(
        !timers,
        "the first statement of the killed version was rolled back"
    );

    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(cur, "1.9");
    assert_eq!(hist.len(), 11, "{hist:?}");
    assert_chain(&hist, "1.9");
}

async fn continues_a_database_left_by_temporal_sql_tool(pg: Pg) {
    let case = Case::on(pg, "tool");
    assert!(
        Command::new("psql").arg("--version").output().is_ok(),
        "psql is needed (scripts/dev-services start installs the PostgreSQL client)"
    );
    let (t, role) = (case.names.temporal(), case.names.role());
    // An operator created the role and database by hand, then ran
    // `temporal-sql-tool setup-schema -v 0.0` and `update-schema` up to 1.3.
    let mut c = case.admin("postgres").await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{}'",
        APP_PASSWORD.replace('\'', "''")
    )))
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE \"{t}\" OWNER \"{role}\""
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let versioned = Case::basic_schema().join("temporal/versioned");
    let mut script = String::from(
        "\\set ON_ERROR_STOP on\n\
         CREATE TABLE IF NOT EXISTS schema_version(version_partition INT not null, db_name VARCHAR(255) not null, creation_time TIMESTAMP, curr_version VARCHAR(64), min_compatible_version VARCHAR(64), PRIMARY KEY (version_partition, db_name));\n\
         CREATE TABLE IF NOT EXISTS schema_update_history(version_partition INT not null, year int not null, month int not null, update_time TIMESTAMP not null, description VARCHAR(255), manifest_md5 VARCHAR(64), new_version VARCHAR(64), old_version VARCHAR(64), PRIMARY KEY (version_partition, year, month, update_time));\n",
    );
    let row = |old: &str, new: &str, min: &str, md5: &str, desc: &str| {
        format!(
            "INSERT INTO schema_version(version_partition, db_name, creation_time, curr_version, min_compatible_version) VALUES (0, '{t}', now(), '{new}', '{min}') \
             ON CONFLICT (version_partition, db_name) DO UPDATE SET creation_time = excluded.creation_time, curr_version = excluded.curr_version, min_compatible_version = excluded.min_compatible_version;\n\
             INSERT INTO schema_update_history(version_partition, year, month, update_time, old_version, new_version, manifest_md5, description) \
             VALUES (0, extract(year from now() at time zone 'utc')::int, extract(month from now() at time zone 'utc')::int, clock_timestamp() at time zone 'utc', '{old}', '{new}', '{md5}', '{desc}');\n"
        )
    };
    script.push_str(&row("0", "0.0", "0.0", "", "initial version"));
    let mut old = "0.0".to_string();
    for v in ["1.0", "1.1", "1.2", "1.3"] {
        let dir = versioned.join(format!("v{v}"));
        let manifest_bytes = std::fs::read(dir.join("manifest.json")).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        for f in manifest["SchemaUpdateCqlFiles"].as_array().unwrap() {
            script.push_str(&format!(
                "\\i {}\n",
                dir.join(f.as_str().unwrap()).display()
            ));
        }
        use md5::Digest;
        let md5: String = md5::Md5::digest(&manifest_bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        script.push_str(&row(
            &old,
            v,
            manifest["MinCompatibleVersion"].as_str().unwrap(),
            &md5,
            manifest["Description"].as_str().unwrap(),
        ));
        old = v.to_string();
    }
    let script_path = case.dir.path().join("tool.sql");
    std::fs::write(&script_path, script).unwrap();
    let psql = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            &case.pg.host,
            "-p",
            &case.pg.port.to_string(),
            "-U",
            &role,
            "-d",
            &t,
            "-f",
        ])
        .arg(&script_path)
        .env("PGPASSWORD", APP_PASSWORD)
        .output()
        .unwrap();
    assert!(psql.status.success(), "{}", text(&psql));

    let mut ct = case.admin(&t).await;
    let tool_rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT old_version, new_version, manifest_md5 FROM schema_update_history ORDER BY update_time",
    )
    .fetch_all(&mut ct)
    .await
    .unwrap();
    let config = case.config(Some(&Case::basic_schema()), "");
    let out = case.run(
        &config,
        &["--output", "json", "apply", "--only", "persistence"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done: Vec<String> = step(&json(&out), "persistence")["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["resource"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        done,
        ["1.4", "1.5", "1.6", "1.7", "1.8", "1.9"].map(|v| format!("schema {t} v{v}")),
        "continues at 1.4, no table setup"
    );
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(cur, "1.9");
    assert_chain(&hist, "1.9");
    let after: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT old_version, new_version, manifest_md5 FROM schema_update_history ORDER BY update_time LIMIT 5",
    )
    .fetch_all(&mut ct)
    .await
    .unwrap();
    assert_eq!(
        after, tool_rows,
        "the tool's history rows are kept as they were"
    );
}

async fn a_newer_database_is_drift_with_a_warning_and_never_written(pg: Pg) {
    let case = Case::on(pg, "newer");
    let config = case.config(Some(&Case::basic_schema()), "");
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = case.names.temporal();
    let mut ct = case.admin(&t).await;
    sqlx::raw_sql("UPDATE schema_version SET curr_version = '1.12'")
        .execute(&mut ct)
        .await
        .unwrap();
    let before = fingerprint(&mut ct).await;
    // What a binary rollback or an upgrade in progress leaves: the server accepts it, so the
    // step reports drift, exits 0 and writes nothing (a schema never goes back).
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("at 1.12, newer than 1.9"), "{all}");
    assert_eq!(before, fingerprint(&mut ct).await);
    let out = case.run(
        &config,
        &["apply", "--only", "persistence", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    let persistence = step(&doc, "persistence");
    assert_eq!(persistence["status"], "drift", "{persistence}");
    assert_eq!(before, fingerprint(&mut ct).await);
}

async fn role_drift_and_a_changed_password_are_reported_and_fixed(pg: Pg) {
    let case = Case::on(pg, "drift");
    let role = case.names.role();
    let config = case.config(None, "");
    // The tool creates (and marks) the role and database; then someone changes them by hand.
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut c = case.admin("postgres").await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER ROLE \"{role}\" CREATEDB PASSWORD 'old-password'; ALTER DATABASE \"{}\" OWNER TO \"{}\"",
        case.names.temporal(),
        case.pg.admin_user
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let out = case.run(
        &config,
        &["--output", "json", "plan", "--only", "persistence"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    let changes = step(&doc, "persistence")["changes"]
        .as_array()
        .unwrap()
        .clone();
    let details: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} {}: {}",
                c["action"],
                c["resource"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(details.len(), 3, "{details:#?}");
    assert!(
        details[0].contains("attribute drift: createdb true -> false"),
        "{details:#?}"
    );
    assert!(
        details[1].contains(&format!("role {role} password")),
        "{details:#?}"
    );
    assert!(
        details[2].contains(&format!("owner {} -> {role}", case.pg.admin_user)),
        "{details:#?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not managed (no schema_dir)"),
        "{}",
        text(&out)
    );

    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = case.run(
        &config,
        &[
            "--output",
            "json",
            "plan",
            "--only",
            "persistence",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "converged after the fix: {}",
        text(&out)
    );
    let attrs: (bool, bool) =
        sqlx::query_as("SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(attrs, (false, false));
    // Unmanaged schema: no version tables were created.
    let mut ct = case.admin(&case.names.temporal()).await;
    let tables: bool = sqlx::query_scalar("SELECT to_regclass('public.schema_version') IS NULL")
        .fetch_one(&mut ct)
        .await
        .unwrap();
    assert!(tables);
}

/// Everything `pg_roles` says about a role (None when it does not exist), to compare before/after.
async fn role_row(c: &mut PgConnection, role: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT concat_ws('|', rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolcanlogin, \
         rolbypassrls, coalesce(rolpassword, ''), coalesce(shobj_description(a.oid, 'pg_authid'), '')) \
         FROM pg_authid a WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(c)
    .await
    .unwrap()
}

async fn database_exists(c: &mut PgConnection, db: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(db)
        .fetch_one(c)
        .await
        .unwrap()
}

/// Issue 16: the persistence step must never demote a superuser or touch a role it did not
/// create. Each case is checked in `pg_roles` (pg_authid: attributes, password verifier and
/// comment) before and after `plan` and `apply`.
async fn privileged_and_foreign_roles_are_never_altered(pg: Pg) {
    let case = Case::on(pg, "safety");
    let role = case.names.role();
    let mut c = case.admin("postgres").await;

    // 1. The application role is the admin role: refused by validation, before any connection.
    let config = case.config(None, "");
    let same = std::fs::read_to_string(&config).unwrap().replace(
        &format!("user: {role}"),
        &format!("user: {}", case.pg.admin_user),
    );
    let same_path = case.dir.path().join("same-role.yaml");
    std::fs::write(&same_path, same).unwrap();
    let admin_before = role_row(&mut c, &case.pg.admin_user).await;
    assert_eq!(
        admin_before.as_deref().unwrap().starts_with("t|"),
        case.pg.admin_is_superuser(),
        "the admin is a superuser on the PostgreSQL 15 service, not on the RDS-like one"
    );
    for command in ["validate", "plan", "apply"] {
        let out = case.run(&same_path, &[command]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("persistence.postgres.user")
                && t.contains("persistence.postgres.admin.user"),
            "{command}: {t}"
        );
    }
    assert_eq!(role_row(&mut c, &case.pg.admin_user).await, admin_before);

    // 2-4. An existing role with SUPERUSER, CREATEROLE or REPLICATION named as the application
    // role: plan and apply refuse (exit 2), say what they would have run, change nothing and
    // create no database.
    for attrs in ["SUPERUSER", "CREATEROLE", "REPLICATION"] {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" LOGIN {attrs} PASSWORD 'dba-pw'"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        let before = role_row(&mut c, &role).await;
        for command in ["plan", "apply"] {
            let out = case.run(&config, &[command, "--only", "persistence"]);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{attrs} {command}: {t}");
            assert!(t.contains(&format!("role `{role}` has {attrs}")), "{t}");
            assert!(
                t.contains("never alters") && t.contains("It would have run: ALTER ROLE"),
                "{t}"
            );
            assert!(!t.contains("dba-pw") && !t.contains("definitely"), "{t}");
        }
        assert_eq!(
            role_row(&mut c, &role).await,
            before,
            "{attrs}: role changed"
        );
        assert!(!database_exists(&mut c, &case.names.temporal()).await);
    }

    // 5. A plain role someone else created, whose password differs: refused with the way to
    // adopt it; once adopted (COMMENT ON ROLE), the password is set again.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP ROLE \"{role}\"; CREATE ROLE \"{role}\" LOGIN PASSWORD 'someone-elses'"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE \"{}\" OWNER \"{role}\"",
        case.names.temporal()
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let before = role_row(&mut c, &role).await;
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("not created by temporal-bootstrap") && t.contains("COMMENT ON ROLE"),
        "{t}"
    );
    assert_eq!(role_row(&mut c, &role).await, before);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "COMMENT ON ROLE \"{role}\" IS '{}'",
        postgres::ROLE_MARKER
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let adopted = role_row(&mut c, &role).await;
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    if !case.pg.admin_is_superuser() && server_version_num(&mut c).await >= 160_000 {
        // PostgreSQL 16+: an admin that is not a superuser alters only the roles it
        // administers; this one a superuser created. Refused with the grant that fixes it.
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        let fix = format!(
            "GRANT \"{role}\" TO \"{}\" WITH ADMIN TRUE",
            case.pg.admin_user
        );
        assert!(
            t.contains("lacks ADMIN OPTION on role") && t.contains(&fix),
            "{t}"
        );
        assert!(t.contains("Nothing was written"), "{t}");
        assert_eq!(role_row(&mut c, &role).await, adopted);
        sqlx::raw_sql(AssertSqlSafe(fix))
            .execute(&mut c)
            .await
            .unwrap();
        let out = case.run(&config, &["apply", "--only", "persistence"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert_ne!(
        role_row(&mut c, &role).await,
        before,
        "the adopted role's password was set"
    );
    let out = case.run(
        &config,
        &["plan", "--only", "persistence", "--detailed-exitcode"],
    );
    assert_eq!(out.status.code(), Some(0), "converged: {}", text(&out));
}

async fn server_version_num(c: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(c)
        .await
        .unwrap()
}

/// An admin without CREATEROLE, or without CREATEDB, or (PostgreSQL 16+) without SET on an
/// existing application role it does not administer, is refused before any write with the
/// missing privilege and the statement that grants it (exit 2); once granted, apply converges.
/// On PostgreSQL 15, CREATEROLE may grant membership in any plain role: the admin grants itself.
async fn an_admin_missing_a_privilege_is_refused_before_any_write(pg: Pg) {
    let case = Case::on(pg, "priv");
    let mut c = case.admin("postgres").await;
    let v16 = server_version_num(&mut c).await >= 160_000;
    let admin = format!("{}_adm", case.names.prefix);
    let admin_password = "adm-secret-1";
    let role = case.names.role();
    let (t, v) = (case.names.temporal(), case.names.visibility());
    // The test's own admin: a managed service's master user with CREATEDB, but no CREATEROLE.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE \"{admin}\" LOGIN NOSUPERUSER NOCREATEROLE CREATEDB PASSWORD '{admin_password}'"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let drop_admin = DropRole {
        pg: case.pg.clone(),
        role: admin.clone(),
    };
    let mut as_admin = case.pg.clone();
    as_admin.admin_user = admin.clone();
    as_admin.admin_password = admin_password.into();
    let config = case.config_as(&as_admin, Some(&Case::basic_schema()));
    let apply = |what: &str| {
        let out = case
            .cli(&config, &["apply", "--only", "persistence,visibility"])
            .env("TB_PG_ADMIN_PASSWORD", admin_password)
            .output()
            .unwrap();
        eprintln!("{what}: {}", text(&out));
        out
    };
    let out = apply("no CREATEROLE");
    let t1 = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t1}");
    assert!(
        t1.contains(&format!(
            "lacks CREATEROLE, needed to create role \"{role}\""
        )) && t1.contains(&format!("ALTER ROLE \"{admin}\" CREATEROLE; then run"))
            && t1.contains("Nothing was written"),
        "{t1}"
    );
    assert!(!t1.contains(admin_password), "{t1}");
    assert_nothing_written(&mut c, &role, &[&t, &v]).await;

    // CREATEROLE but no CREATEDB: refused before the role is created.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER ROLE \"{admin}\" CREATEROLE NOCREATEDB"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let out = apply("no CREATEDB");
    let t2 = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t2}");
    assert!(
        t2.contains("lacks CREATEDB, needed to create database(s)")
            && t2.contains(&format!("ALTER ROLE \"{admin}\" CREATEDB;")),
        "{t2}"
    );
    assert_nothing_written(&mut c, &role, &[&t, &v]).await;

    // An application role a superuser created (and marked), which the admin does not administer.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER ROLE \"{admin}\" CREATEDB; CREATE ROLE \"{role}\" {} PASSWORD '{}'; COMMENT ON ROLE \"{role}\" IS '{}'",
        postgres::ROLE_ATTRIBUTES,
        APP_PASSWORD.replace('\'', "''"),
        postgres::ROLE_MARKER
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let before = role_row(&mut c, &role).await;
    let out = apply("no SET on the role");
    if v16 {
        let t3 = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t3}");
        let fix = format!("GRANT \"{role}\" TO \"{admin}\" WITH INHERIT TRUE, SET TRUE");
        assert!(
            t3.contains(&format!(
                "lacks membership with the SET option in role \"{role}\""
            )) && t3.contains(&fix),
            "{t3}"
        );
        assert_eq!(role_row(&mut c, &role).await, before);
        assert!(!database_exists(&mut c, &t).await);
        sqlx::raw_sql(AssertSqlSafe(fix))
            .execute(&mut c)
            .await
            .unwrap();
        let out = apply("after the grant");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let out = case
        .cli(
            &config,
            &[
                "plan",
                "--only",
                "persistence,visibility",
                "--detailed-exitcode",
            ],
        )
        .env("TB_PG_ADMIN_PASSWORD", admin_password)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "converged: {}", text(&out));
    drop(case);
    drop(drop_admin);
}

async fn assert_nothing_written(c: &mut PgConnection, role: &str, databases: &[&str]) {
    assert_eq!(role_row(c, role).await, None, "the role was created");
    for db in databases {
        assert!(!database_exists(c, db).await, "database {db} was created");
    }
}

/// Drops a role when dropped (after the databases of the case that used it).
struct DropRole {
    pg: Pg,
    role: String,
}

impl Drop for DropRole {
    fn drop(&mut self) {
        common::drop_databases_and_role(&self.pg, &[], &self.role);
    }
}

async fn observe_reports_role_databases_and_versions(pg: Pg) {
    let case = Case::on(pg, "observe");
    let config = case.config(Some(&Case::basic_schema()), "");
    install_intermediate(&config).await;
    let ctx = Case::context(&config);
    let spec = postgres::spec_for(&ctx, SchemaKind::Visibility, &StepOptions::default()).unwrap();
    let o = postgres::observe(&spec).await.unwrap();
    assert!(o.server_version.chars().next().unwrap().is_ascii_digit());
    assert!(o.role.exists && o.role.drift().is_empty() && o.role.password_accepted == Some(true));
    let db = &o.databases[0];
    assert_eq!(
        (db.name.as_str(), db.owner.as_deref(), db.target.as_deref()),
        (
            case.names.visibility().as_str(),
            Some(case.names.role().as_str()),
            Some("1.2")
        )
    );
    assert_eq!(
        db.schema,
        SchemaState::Versioned {
            current: "1.1".into(),
            min_compatible: "1.0".into(),
            history_rows: 3
        }
    );
    // A converged run under the fake mapping writes nothing; the real mapping has work to do.
    let fake = StepOptions {
        schema_target: fake_mapping_1_5,
        ..StepOptions::default()
    };
    let spec_fake = postgres::spec_for(&ctx, SchemaKind::Visibility, &fake).unwrap();
    assert!(postgres::plan(&spec_fake).await.unwrap().changes.is_empty());
    assert_eq!(postgres::plan(&spec).await.unwrap().changes.len(), 1);
}

async fn the_lock_wait_is_bounded_and_fails_clearly(pg: Pg) {
    let case = Case::on(pg, "lock");
    let config = case.config(Some(&Case::basic_schema()), "");
    let ctx = Case::context(&config);
    let spec = postgres::spec_for(&ctx, SchemaKind::Temporal, &StepOptions::default()).unwrap();
    let mut holder = case.admin("postgres").await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(spec.lock_key())
        .execute(&mut holder)
        .await
        .unwrap();
    let out = case
        .cli(&config, &["apply", "--only", "persistence"])
        .env(postgres::LOCK_TIMEOUT_ENV, "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("waiting up to 2s") && all.contains("another run holds the schema lock"),
        "{all}"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(spec.lock_key())
        .execute(&mut holder)
        .await
        .unwrap();
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

async fn bad_inputs_give_clear_errors_and_exit_codes(pg: Pg) {
    let case = Case::on(pg, "bad");
    let good_schema = Case::basic_schema();

    // Wrong admin password: the configuration is valid, the environment does not match it: a
    // runtime failure (README: exit 1), for `plan` and `apply`; the password is not echoed.
    let config = case.config_with(
        &case.pg.host,
        case.pg.port,
        "TB_WRONG_ADMIN",
        Some(&good_schema),
        "",
    );
    for command in ["plan", "apply"] {
        let out = case
            .cli(&config, &[command, "--only", "persistence"])
            .env("TB_WRONG_ADMIN", "definitely-wrong-pw")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("rejected user `{}`", case.pg.admin_user)),
            "{}",
            text(&out)
        );
        assert!(!text(&out).contains("definitely-wrong-pw"));
    }
    // The admin password's variable is not set at all: also the environment's fault (1), and
    // the message names the variable.
    let out = case
        .cli(&config, &["plan", "--only", "persistence"])
        .env_remove("TB_WRONG_ADMIN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("environment variable `TB_WRONG_ADMIN` is not set"),
        "{}",
        text(&out)
    );

    // Unreachable server: the world's fault (1).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = case.config_with(
        "127.0.0.1",
        port,
        case.pg.admin_password_env,
        Some(&good_schema),
        "",
    );
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}")),
        "{}",
        text(&out)
    );

    // Missing schema_dir: 2, before anything is contacted or created.
    let config = case.config(Some(&case.dir.path().join("no-such-schema")), "");
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no-such-schema does not exist"),
        "{}",
        text(&out)
    );

    // Corrupt folders: 2, nothing created.
    let schema = case.schema_copy(false);
    let config = case.config(Some(&schema), "");
    let v13 = schema.join("temporal/versioned/v1.3");
    let cases: [(&str, &str, &str); 4] = [
        (
            "manifest.json",
            "{\"CurrVersion\": \"1.3\", ",
            "invalid manifest: not valid JSON",
        ),
        (
            "manifest.json",
            "{\"CurrVersion\": \"1.4\", \"MinCompatibleVersion\": \"1.0\", \"SchemaUpdateCqlFiles\": [\"queue.sql\"]}",
            "CurrVersion is 1.4 but the folder says 1.3",
        ),
        (
            "manifest.json",
            "{\"CurrVersion\": \"1.3\", \"MinCompatibleVersion\": \"1.0\", \"SchemaUpdateCqlFiles\": [\"gone.sql\"]}",
            "gone.sql listed in SchemaUpdateCqlFiles does not exist",
        ),
        (
            "queue.sql",
            "CREATE TABLE fx_q (x INT);\nUPDATE fx_namespaces SET note = 'x';",
            "queue.sql line 2: statement starting with `UPDATE` is not allowed",
        ),
    ];
    let original_manifest = std::fs::read(v13.join("manifest.json")).unwrap();
    for (file, body, expected) in cases {
        std::fs::write(v13.join("manifest.json"), &original_manifest).unwrap();
        std::fs::write(v13.join(file), body).unwrap();
        let out = case.run(&config, &["apply", "--only", "persistence"]);
        assert_eq!(out.status.code(), Some(2), "{expected}: {}", text(&out));
        assert!(text(&out).contains(expected), "{expected}: {}", text(&out));
    }
    let mut c = case.admin("postgres").await;
    let dbs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1 || '%'")
            .bind(&case.names.prefix)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(dbs, 0, "bad input changed nothing");

    // A missing target folder (gap at the end): 2.
    std::fs::remove_dir_all(schema.join("visibility/versioned/v1.2")).unwrap();
    let out = case.run(&config, &["apply", "--only", "visibility"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no version folder v1.2"),
        "{}",
        text(&out)
    );
}

async fn tls_modes_are_honoured(pg: Pg) {
    let case = Case::on(pg, "tls");
    let schema = Case::basic_schema();
    let mut c = case.admin("postgres").await;
    let ssl: String = sqlx::query_scalar("SELECT current_setting('ssl')")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let with_tls = |tls: &str| {
        let path = case.config(Some(&schema), "");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("tls: { mode: disable }", tls);
        std::fs::write(&path, text).unwrap();
        case.run(&path, &["plan", "--only", "persistence"])
    };

    // A CA file that does not exist is bad input, found before connecting.
    let out = with_tls("tls: { mode: verify-full, ca: no-such-ca.pem }");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("persistence.postgres.tls.ca")
            && text(&out).contains("no-such-ca.pem does not exist"),
        "{}",
        text(&out)
    );

    if ssl == "on" {
        // A CA that did not sign the server certificate is refused.
        let other = rcgen::generate_simple_self_signed(vec!["other-ca".to_string()]).unwrap();
        std::fs::write(case.dir.path().join("other-ca.pem"), other.cert.pem()).unwrap();
        let out = with_tls("tls: { mode: verify-full, ca: other-ca.pem }");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("TLS failed") && text(&out).contains("certificate"),
            "{}",
            text(&out)
        );
        let out = with_tls("tls: { mode: require }");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        match std::env::var("TB_PG_CA") {
            Ok(ca) => {
                let out = with_tls(&format!("tls: {{ mode: verify-full, ca: {ca} }}"));
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            }
            Err(_) => eprintln!(
                "note: the verify-full success case did not run: TB_PG_CA (CA of the server certificate) is not set"
            ),
        }
    } else {
        // The server offers no TLS: `require` must not fall back to plaintext.
        let out = with_tls("tls: { mode: require }");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("TLS failed"), "{}", text(&out));
    }
}

async fn a_large_rewritten_table_is_sized_from_statistics(pg: Pg) {
    let case = Case::on(pg, "large");
    let config = case.config(Some(&Case::basic_schema()), "");
    install_intermediate(&config).await;
    let mut cv = case.admin(&case.names.visibility()).await;
    sqlx::raw_sql(
        "INSERT INTO fx_executions_visibility (namespace_id, run_id, start_time, status, search_attributes) \
         SELECT 'ns', g::text, now(), 1, NULL FROM generate_series(1, 120000) g; ANALYZE fx_executions_visibility",
    )
    .execute(&mut cv)
    .await
    .unwrap();
    let ctx = Case::context(&config);
    let spec = postgres::spec_for(&ctx, SchemaKind::Visibility, &StepOptions::default()).unwrap();
    let plan = postgres::plan(&spec).await.unwrap();
    let detail = &plan.changes[0].detail;
    assert!(
        detail.contains("WARNING: rewrites table fx_executions_visibility (about 1")
            && detail.contains("rows (estimate from pg_class)"),
        "{detail}"
    );
}

async fn a_failing_statement_is_named_and_its_version_rolled_back(pg: Pg) {
    let case = Case::on(pg, "fail");
    let schema = case.schema_copy(false);
    std::fs::write(
        schema.join("temporal/versioned/v1.6/index.sql"),
        "CREATE INDEX fx_queue_by_type ON fx_queue (queue_type);\n\nCREATE INDEX fx_broken ON fx_no_such_table (x);\n",
    )
    .unwrap();
    let config = case.config(Some(&schema), "");
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("v1.6: index.sql line 3")
            && all.contains("fx_no_such_table")
            && all.contains("the database stays at 1.5"),
        "{all}"
    );
    let t = case.names.temporal();
    let mut ct = case.admin(&t).await;
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(cur, "1.5");
    assert_chain(&hist, "1.5");
    let index: bool = sqlx::query_scalar("SELECT to_regclass('public.fx_queue_by_type') IS NULL")
        .fetch_one(&mut ct)
        .await
        .unwrap();
    assert!(
        index,
        "the statement before the failing one was rolled back too"
    );
}

/// The cause survives the layers: the same failure seen through the library carries
/// PostgreSQL's SQLSTATE (42P01, undefined_table), and so does the step error built from it.
async fn a_failing_statement_keeps_its_sqlstate(pg: Pg) {
    let case = Case::on(pg, "sqlstate");
    let schema = case.schema_copy(false);
    std::fs::write(
        schema.join("temporal/versioned/v1.6/index.sql"),
        "CREATE INDEX fx_broken ON fx_no_such_table (x);\n",
    )
    .unwrap();
    let config = case.config(Some(&schema), "");
    let ctx = Case::context(&config);
    let spec = postgres::spec_for(&ctx, SchemaKind::Temporal, &StepOptions::default()).unwrap();
    let err = postgres::apply(&spec).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("42P01"), "{err}");
    assert!(err.to_string().contains("fx_no_such_table"), "{err}");
    let step = StepError::from(err);
    assert_eq!(step.kind, ErrorKind::Failed);
    let cause = step
        .cause()
        .and_then(|c| c.downcast_ref::<postgres::PgError>())
        .expect("the step error keeps the PgError as its source");
    assert_eq!(cause.sqlstate(), Some("42P01"));
}

async fn upgrade_hops_migrate_to_exact_versions_and_never_back(pg: Pg) {
    let case = Case::on(pg, "hops");
    let config = case.config(Some(&Case::basic_schema()), "");
    let ctx = Case::context(&config);
    assert_eq!(
        postgres::recorded_version(&ctx, SchemaKind::Temporal)
            .await
            .unwrap(),
        None
    );
    // migrate_to works on an existing database with the role in place (as after `apply`).
    let spec = postgres::spec_for(
        &ctx,
        SchemaKind::Temporal,
        &StepOptions {
            schema_target: fake_mapping_1_5,
            ..StepOptions::default()
        },
    )
    .unwrap();
    postgres::apply(&spec).await.unwrap();
    for (target, applied) in [((1, 7), 2), ((1, 9), 2), ((1, 8), 0), ((1, 9), 0)] {
        let target = SchemaVersion::new(target.0, target.1);
        let out = postgres::migrate_to(&ctx, SchemaKind::Temporal, target)
            .await
            .unwrap();
        assert_eq!(out.versions_applied, applied, "to {target}");
    }
    assert_eq!(
        postgres::recorded_version(&ctx, SchemaKind::Temporal)
            .await
            .unwrap(),
        Some(SchemaVersion::new(1, 9))
    );
    let t = case.names.temporal();
    let mut ct = case.admin(&t).await;
    assert_chain(&versions(&mut ct, &t).await.1, "1.9");
}

async fn a_concurrently_built_index_runs_outside_a_transaction_and_a_rerun_finishes(pg: Pg) {
    // Temporal's own visibility v1.13 (release 1.31) uses CREATE INDEX CONCURRENTLY, which
    // PostgreSQL refuses inside a transaction block.
    let case = Case::on(pg, "conc");
    let schema = case.schema_copy(false);
    let index_sql = schema.join("temporal/versioned/v1.6/index.sql");
    std::fs::write(
        &index_sql,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fx_queue_by_type ON fx_queue (queue_type);\n\nCREATE INDEX CONCURRENTLY IF NOT EXISTS fx_broken ON fx_no_such_table (x);\n",
    )
    .unwrap();
    let config = case.config(Some(&schema), "");
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("v1.6: index.sql line 3")
            && all.contains("outside a transaction")
            && all.contains("recorded at 1.5"),
        "{all}"
    );
    let t = case.names.temporal();
    let mut ct = case.admin(&t).await;
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_eq!(
        cur, "1.5",
        "the version is not recorded when one of its statements failed"
    );
    assert_chain(&hist, "1.5");
    let first_index_kept: bool =
        sqlx::query_scalar("SELECT to_regclass('public.fx_queue_by_type') IS NOT NULL")
            .fetch_one(&mut ct)
            .await
            .unwrap();
    assert!(
        first_index_kept,
        "statements before the failing one stay committed outside a transaction"
    );

    // The operator fixes the file; the re-run applies the (idempotent) version again and finishes.
    std::fs::write(
        &index_sql,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS fx_queue_by_type ON fx_queue (queue_type);\n",
    )
    .unwrap();
    let out = case.run(&config, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (cur, hist) = versions(&mut ct, &t).await;
    assert_ne!(cur, "1.5");
    assert_chain(&hist, &cur);
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.fx_queue_by_type'::regclass",
    )
    .fetch_one(&mut ct)
    .await
    .unwrap();
    assert!(valid, "the concurrently built index is valid");
    let out = case.run(
        &config,
        &["apply", "--only", "persistence", "--output", "json"],
    );
    assert_eq!(step(&json(&out), "persistence")["status"], "up-to-date");
}

on_every_server! {
    an_admin_missing_a_privilege_is_refused_before_any_write,
    fresh_install_reaches_target_and_rerun_writes_nothing,
    dry_run_on_an_empty_server_lists_everything_and_writes_nothing,
    upgrade_from_an_intermediate_version_with_a_dry_run_first,
    two_concurrent_runs_leave_one_correct_history,
    a_run_killed_mid_version_leaves_a_clean_version_and_the_rerun_finishes,
    continues_a_database_left_by_temporal_sql_tool,
    a_newer_database_is_drift_with_a_warning_and_never_written,
    role_drift_and_a_changed_password_are_reported_and_fixed,
    privileged_and_foreign_roles_are_never_altered,
    observe_reports_role_databases_and_versions,
    the_lock_wait_is_bounded_and_fails_clearly,
    bad_inputs_give_clear_errors_and_exit_codes,
    tls_modes_are_honoured,
    a_large_rewritten_table_is_sized_from_statistics,
    a_failing_statement_is_named_and_its_version_rolled_back,
    a_failing_statement_keeps_its_sqlstate,
    upgrade_hops_migrate_to_exact_versions_and_never_back,
    a_concurrently_built_index_runs_outside_a_transaction_and_a_rerun_finishes,
}
