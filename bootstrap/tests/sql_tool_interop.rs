//! Our schema runner and the REAL `temporal-sql-tool` of the same release, on the REAL schema
//! folders of that release, against the dev stack's PostgreSQL (TB_TEMPORAL_SQL_TOOL,
//! TB_TEMPORAL_SCHEMA_DIR and TB_TEMPORAL_VERSION from `scripts/dev-services env`; the tool and
//! the folder come from `go.temporal.io/server` at that release).
//!
//! What the tests prove, each on its own role and databases:
//! - the tool's setup-schema + update-schema to an intermediate version, then our runner to the
//!   release's target: the history rows are those the tool writes for a whole run (versions,
//!   manifest md5s, descriptions), and the tool's update-schema afterwards is a no-op;
//! - a version the tool was killed in between two statements (persistence v1.13: two DROPs,
//!   then CREATEs, none idempotent) is completed by our runner, recorded once as the tool would;
//!   the tool itself cannot continue that version (its text match misses "does not exist");
//! - a version our runner was killed in is left untouched (one transaction), and the tool
//!   continues from there; our runner is then a no-op;
//! - tables owned by the admin role (the tool run with `-u postgres`) are refused before any
//!   write, with the owner and the one statement that fixes it; after it, the run succeeds;
//! - a statement in lower case is refused by both tools;
//! - temporalio/temporal#9930 for real: a visibility database set up by 1.29.7 that lost its
//!   `btree_gin` extension makes the real 1.30.9 schema fail at v1.10; the upgrade's read-only
//!   pre-flight finds it first, writes nothing, and its fix works.
//!
//! Each runs twice: on PostgreSQL 15 as its superuser, and on the RDS-like PostgreSQL 18 as an
//! admin that is not a superuser (`rds_like::`; there "the admin" the tool runs as is that
//! admin). The tool gets its connection from SQL_* environment variables, so no password is in
//! argv.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use temporal_bootstrap::config::types::TemporalVersion;
use temporal_bootstrap::postgres::schema;
use temporal_bootstrap::versions::{SchemaVersion, SupportedRelease};

use common::Pg;

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
// Plain characters: the tool puts the password into a connection URL unescaped.
const APP_PASSWORD: &str = "interop-app-pass-7";

/// The release under test: its tool, its `schema/postgresql/v12` folder and its targets.
struct Release {
    tool: PathBuf,
    schema: PathBuf,
    version: TemporalVersion,
    temporal: SchemaVersion,
    visibility: SchemaVersion,
}

fn release() -> Release {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                panic!("{k} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`")
            })
    };
    let version: TemporalVersion = get("TB_TEMPORAL_VERSION").parse().unwrap();
    let targets = SupportedRelease::of(version).unwrap().schemas();
    let tool = PathBuf::from(get("TB_TEMPORAL_SQL_TOOL"));
    assert!(tool.is_file(), "{} does not exist", tool.display());
    Release {
        tool,
        schema: Path::new(&get("TB_TEMPORAL_SCHEMA_DIR")).join("postgresql/v12"),
        version,
        temporal: targets.postgres_temporal,
        visibility: targets.postgres_visibility,
    }
}

/// One test's role and two databases, dropped at the end even on panic.
struct Case {
    pg: Pg,
    rel: Release,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Drop for Case {
    fn drop(&mut self) {
        let dbs = [self.temporal(), self.visibility(), self.reference()];
        common::drop_databases_and_role(&self.pg, &dbs, &self.role());
    }
}

impl Case {
    /// The role and both databases, created by our runner with the schema unmanaged (what the
    /// tool's users have before `setup-schema`).
    fn on(pg: Pg, tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let case = Self {
            pg,
            rel: release(),
            prefix: format!(
                "tb_sqltool_{tag}_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
            dir: tempfile::tempdir().unwrap(),
        };
        let out = case.ours(false, &["apply", "--only", "persistence,visibility"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        case
    }

    fn temporal(&self) -> String {
        format!("{}_t", self.prefix)
    }
    fn visibility(&self) -> String {
        format!("{}_v", self.prefix)
    }
    fn reference(&self) -> String {
        format!("{}_ref", self.prefix)
    }
    fn role(&self) -> String {
        format!("{}_app", self.prefix)
    }

    /// platform.yaml of this case; `managed`: with the release's schema folder.
    fn config(&self, managed: bool) -> PathBuf {
        let name = if managed {
            "managed.yaml"
        } else {
            "unmanaged.yaml"
        };
        let schema = managed.then(|| self.rel.schema.clone());
        self.config_at(&self.rel.version.to_string(), schema.as_deref(), name)
    }

    /// platform.yaml for release `version` with `schema` as its schema folder, written to `name`.
    fn config_at(&self, version: &str, schema: Option<&Path>, name: &str) -> PathBuf {
        let pw = self.dir.path().join("app-password");
        std::fs::write(&pw, APP_PASSWORD).unwrap();
        let schema = schema
            .map(|s| format!("    schema_dir: {}\n", s.display()))
            .unwrap_or_default();
        let text = format!(
            "cluster:\n  name: interop\n  temporal_version: \"{version}\"\n  environment: development\n  frontend: {{ address: 127.0.0.1:57233 }}\n\
             capacity:\n  peak_workflow_starts_per_second: 5\n  activities_per_workflow: 4\n  average_workflow_duration: 10m\n\
             persistence:\n  postgres:\n    host: {host}\n    port: {port}\n    database: {db}\n    user: {role}\n    password: file:{pw}\n\
             \x20   admin: {{ user: {admin}, password: env:{admin_env} }}\n    tls: {{ mode: disable }}\n{schema}\
             visibility:\n  postgres: {{ database: {vis} }}\n\
             namespaces:\n  - {{ name: demo, retention: 3d }}\n",
            host = self.pg.host,
            port = self.pg.port,
            db = self.temporal(),
            role = self.role(),
            pw = pw.display(),
            admin = self.pg.admin_user,
            admin_env = self.pg.admin_password_env,
            vis = self.visibility(),
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ours_command(&self, managed: bool, args: &[&str]) -> Command {
        self.ours_command_with(&self.config(managed), args)
    }

    fn ours_command_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("-f")
            .arg(config)
            .env(self.pg.admin_password_env, &self.pg.admin_password)
            .env("TEMPORAL_BOOTSTRAP_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// `temporal-bootstrap <args> -f <config>` with any config file.
    fn ours_with(&self, config: &Path, args: &[&str]) -> Output {
        self.ours_command_with(config, args).output().unwrap()
    }

    /// `temporal-bootstrap <args> -f <config>`.
    fn ours(&self, managed: bool, args: &[&str]) -> Output {
        self.ours_command(managed, args).output().unwrap()
    }

    /// The real `temporal-sql-tool`, as the application role (`admin`: as the admin).
    fn tool_command<S: AsRef<std::ffi::OsStr>>(
        &self,
        admin: bool,
        db: &str,
        args: &[S],
    ) -> Command {
        let (user, password) = if admin {
            (self.pg.admin_user.clone(), self.pg.admin_password.clone())
        } else {
            (self.role(), APP_PASSWORD.to_string())
        };
        let mut c = Command::new(&self.rel.tool);
        c.env("SQL_PLUGIN", "postgres12")
            .env("SQL_HOST", &self.pg.host)
            .env("SQL_PORT", self.pg.port.to_string())
            .env("SQL_USER", user)
            .env("SQL_PASSWORD", password)
            .env("SQL_DATABASE", db)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn tool<S: AsRef<std::ffi::OsStr>>(&self, admin: bool, db: &str, args: &[S]) -> Output {
        self.tool_command(admin, db, args).output().unwrap()
    }

    /// `setup-schema -v 0.0` then `update-schema` of `kind` to `to` (latest when `None`).
    fn tool_to(&self, admin: bool, db: &str, kind: &str, to: Option<&str>) {
        let out = self.tool(admin, db, &["setup-schema", "-v", "0.0"]);
        assert!(out.status.success(), "setup-schema: {}", text(&out));
        self.tool_update(admin, db, kind, to);
    }

    fn tool_update(&self, admin: bool, db: &str, kind: &str, to: Option<&str>) {
        let out = self.tool(admin, db, &self.update_args(kind, to));
        assert!(out.status.success(), "update-schema: {}", text(&out));
    }

    fn update_args(&self, kind: &str, to: Option<&str>) -> Vec<String> {
        let dir = self.rel.schema.join(kind).join("versioned");
        let mut args = vec![
            "update-schema".to_string(),
            "-d".into(),
            dir.display().to_string(),
        ];
        if let Some(v) = to {
            args.extend(["-v".to_string(), v.to_string()]);
        }
        args
    }

    /// Persistence at 1.12 and visibility at the release's version, both by the tool; returns
    /// an admin connection to the persistence database.
    async fn at_persistence_1_12(&self) -> PgConnection {
        self.tool_to(false, &self.temporal(), "temporal", Some("1.12"));
        self.tool_to(false, &self.visibility(), "visibility", None);
        self.admin(&self.temporal()).await
    }

    /// Runs `command` (a migration to persistence v1.13: DROP nexus_incoming_services; DROP
    /// nexus_incoming_services_partition_status; CREATE ...) while another session holds the
    /// second table, so it stops between the two DROPs; then SIGKILLs it, ends its backend as
    /// the server would once it noticed, and releases the table.
    async fn kill_inside_v1_13(&self, mut command: Command, ct: &mut PgConnection) {
        let t = self.temporal();
        let mut locker = self.admin(&t).await;
        let mut hold = locker.begin().await.unwrap();
        sqlx::raw_sql(
            "LOCK TABLE nexus_incoming_services_partition_status IN ACCESS EXCLUSIVE MODE",
        )
        .execute(&mut *hold)
        .await
        .unwrap();
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = blocked_backend(ct, &t, "nexus_incoming_services_partition_status").await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        terminate(ct, pid).await;
        hold.rollback().await.unwrap();
    }

    async fn admin(&self, db: &str) -> PgConnection {
        common::admin_conn(&self.pg, db).await.unwrap()
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

/// A history row: old version, new version, manifest md5, description.
type HistoryRow = (String, String, String, String);

async fn current(c: &mut PgConnection, db: &str) -> String {
    sqlx::query_scalar(
        "SELECT curr_version FROM schema_version WHERE version_partition = 0 AND db_name = $1",
    )
    .bind(db)
    .fetch_one(&mut *c)
    .await
    .unwrap()
}

/// The history in the order it was written.
async fn history(c: &mut PgConnection) -> Vec<HistoryRow> {
    sqlx::query_as(
        "SELECT old_version, new_version, manifest_md5, description FROM schema_update_history ORDER BY update_time",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
}

/// What any write would change: relations with their owner and xmin, the version row's xmin,
/// the history rows' xmins.
async fn fingerprint(c: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT coalesce((SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner) || ':' || c.xmin::text, ',' ORDER BY c.relname) \
                 FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace), '') || '|' || \
                coalesce((SELECT string_agg(xmin::text || curr_version, ',') FROM schema_version), '') || '|' || \
                coalesce((SELECT string_agg(xmin::text, ',' ORDER BY xmin::text) FROM schema_update_history), '')",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap()
}

async fn exists(c: &mut PgConnection, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("public.{table}"))
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

/// Waits until a backend in `db` waits for a lock while running a query containing `needle`;
/// returns its pid.
async fn blocked_backend(c: &mut PgConnection, db: &str, needle: &str) -> i32 {
    let started = Instant::now();
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' \
             AND position($2 in query) > 0 LIMIT 1",
        )
        .bind(db)
        .bind(needle)
        .fetch_optional(&mut *c)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no backend in {db} ever waited on `{needle}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends the backend `pid` as a crash of its client would once the server noticed (a killed
/// client's backend still runs its statement until it next talks to the client).
async fn terminate(c: &mut PgConnection, pid: i32) {
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
        .bind(pid)
        .fetch_one(&mut *c)
        .await
        .unwrap();
}

fn version_key(v: &str) -> (u32, u32) {
    let p = v
        .parse::<SchemaVersion>()
        .unwrap_or(SchemaVersion::new(0, 0));
    (p.major, p.minor)
}

/// History rows by new version (each once), without the times that differ between runs.
fn by_version(mut rows: Vec<HistoryRow>) -> Vec<HistoryRow> {
    rows.sort_by_key(|r| version_key(&r.1));
    rows
}

async fn the_tool_then_our_runner_records_what_the_tool_would_and_the_tool_is_then_a_no_op(pg: Pg) {
    let case = Case::on(pg, "handover");
    let (t, v) = (case.temporal(), case.visibility());
    case.tool_to(false, &t, "temporal", Some("1.10"));
    case.tool_to(false, &v, "visibility", Some("1.5"));

    let out = case.ours(true, &["apply", "--only", "persistence,visibility"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut ct = case.admin(&t).await;
    let mut cv = case.admin(&v).await;
    assert_eq!(current(&mut ct, &t).await, case.rel.temporal.to_string());
    assert_eq!(current(&mut cv, &v).await, case.rel.visibility.to_string());

    // The same release set up by the tool alone (as the admin), in a database of its own.
    let mut admin = common::conn_as(
        &case.pg,
        &case.pg.admin_user,
        &case.pg.admin_password,
        "postgres",
    )
    .await
    .unwrap();
    let r = case.reference();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{r}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    case.tool_to(true, &r, "temporal", None);
    let mut cr = case.admin(&r).await;
    let reference = by_version(history(&mut cr).await);
    let ours = by_version(history(&mut ct).await);
    assert_eq!(
        ours, reference,
        "the history our runner continued is the one the tool writes (versions, md5s, descriptions)"
    );

    // The tool finds nothing to do after us: no statement, no history row.
    let before = (fingerprint(&mut ct).await, fingerprint(&mut cv).await);
    case.tool_update(false, &t, "temporal", None);
    case.tool_update(false, &v, "visibility", None);
    assert_eq!(
        before,
        (fingerprint(&mut ct).await, fingerprint(&mut cv).await),
        "the tool's update-schema after our runner wrote something"
    );
    // And we find nothing to do after it.
    let out = case.ours(true, &["apply", "--only", "persistence,visibility"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        before,
        (fingerprint(&mut ct).await, fingerprint(&mut cv).await)
    );
}

async fn a_version_the_tool_was_killed_in_is_completed_by_our_runner(pg: Pg) {
    let case = Case::on(pg, "toolkill");
    let t = case.temporal();
    let mut ct = case.at_persistence_1_12().await;
    // The tool stops between the two DROPs of v1.13.
    let tool = case.tool_command(false, &t, &case.update_args("temporal", Some("1.13")));
    case.kill_inside_v1_13(tool, &mut ct).await;

    assert_eq!(current(&mut ct, &t).await, "1.12");
    assert!(
        !exists(&mut ct, "nexus_incoming_services").await,
        "the first DROP was committed"
    );
    assert!(exists(&mut ct, "nexus_incoming_services_partition_status").await);

    // The tool cannot continue this version itself: PostgreSQL says "does not exist", which
    // its text match ("already exist", "not found") does not skip.
    let out = case.tool(false, &t, &case.update_args("temporal", Some("1.13")));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert_eq!(current(&mut ct, &t).await, "1.12");

    let out = case.ours(true, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("already in effect"),
        "the skipped statement is reported: {}",
        text(&out)
    );
    assert_eq!(current(&mut ct, &t).await, case.rel.temporal.to_string());
    assert!(!exists(&mut ct, "nexus_incoming_services_partition_status").await);
    assert!(exists(&mut ct, "nexus_endpoints").await);
    let hist = history(&mut ct).await;
    let v113: Vec<&HistoryRow> = hist.iter().filter(|r| r.1 == "1.13").collect();
    assert_eq!(v113.len(), 1, "{hist:?}");
    let manifest = std::fs::read(
        case.rel
            .schema
            .join("temporal/versioned/v1.13/manifest.json"),
    )
    .unwrap();
    let md5: String = Md5::digest(&manifest)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        (v113[0].0.as_str(), v113[0].2.as_str()),
        ("1.12", md5.as_str())
    );

    let before = fingerprint(&mut ct).await;
    case.tool_update(false, &t, "temporal", None);
    assert_eq!(
        before,
        fingerprint(&mut ct).await,
        "the tool found work after us"
    );
}

async fn a_version_our_runner_was_killed_in_is_continued_by_the_tool(pg: Pg) {
    let case = Case::on(pg, "ourkill");
    let t = case.temporal();
    let mut ct = case.at_persistence_1_12().await;
    let ours = case.ours_command(true, &["apply", "--only", "persistence"]);
    case.kill_inside_v1_13(ours, &mut ct).await;

    // One transaction per version: nothing of v1.13 happened.
    assert_eq!(current(&mut ct, &t).await, "1.12");
    assert!(exists(&mut ct, "nexus_incoming_services").await);
    assert!(!exists(&mut ct, "nexus_endpoints").await);

    case.tool_update(false, &t, "temporal", None);
    assert_eq!(current(&mut ct, &t).await, case.rel.temporal.to_string());
    let before = fingerprint(&mut ct).await;
    let out = case.ours(true, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        before,
        fingerprint(&mut ct).await,
        "our runner found work after the tool"
    );
}

async fn tables_the_admin_owns_are_refused_before_any_write_with_the_fix(pg: Pg) {
    let case = Case::on(pg, "owner");
    let (t, v) = (case.temporal(), case.visibility());
    // What `temporal-sql-tool -u postgres` leaves: the tables belong to the admin.
    case.tool_to(true, &t, "temporal", Some("1.12"));
    case.tool_to(false, &v, "visibility", None);
    let mut ct = case.admin(&t).await;
    let before = fingerprint(&mut ct).await;

    let out = case.ours(true, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    let owner = format!("owned by `{}`", case.pg.admin_user);
    assert!(
        all.contains(&owner) && all.contains("Nothing was written"),
        "{all}"
    );
    assert_eq!(before, fingerprint(&mut ct).await, "a refused run wrote");

    // The statement the message gives, run as the admin, is the whole fix.
    let start = all
        .find("DO $tb$")
        .expect("the fix statement is in the message");
    let end =
        all[start..].find("END $tb$;").expect("the statement ends") + start + "END $tb$;".len();
    let mut as_admin = common::conn_as(&case.pg, &case.pg.admin_user, &case.pg.admin_password, &t)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(all[start..end].to_string()))
        .execute(&mut as_admin)
        .await
        .unwrap();
    let out = case.ours(true, &["apply", "--only", "persistence"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(current(&mut ct, &t).await, case.rel.temporal.to_string());
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' \
         AND pg_get_userbyid(relowner) <> $1",
    )
    .bind(case.role())
    .fetch_one(&mut ct)
    .await
    .unwrap();
    assert_eq!(foreign, 0);
}

async fn a_statement_in_lower_case_is_refused_by_both_tools(pg: Pg) {
    let case = Case::on(pg, "lower");
    let t = case.temporal();
    let versioned = case.dir.path().join("temporal/versioned");
    let write = |rel: &str, body: &str| {
        let p = versioned.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    write(
        "v0.1/manifest.json",
        r#"{"CurrVersion":"0.1","MinCompatibleVersion":"0.1","Description":"lower case","SchemaUpdateCqlFiles":["a.sql"]}"#,
    );
    write("v0.1/a.sql", "create table fx_lower (x INT);\n");

    let out = case.tool(false, &t, &["setup-schema", "-v", "0.0"]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = versioned.display().to_string();
    let out = case.tool(false, &t, &["update-schema", "-d", &dir, "-v", "0.1"]);
    assert!(
        !out.status.success(),
        "the tool accepted it: {}",
        text(&out)
    );
    assert!(text(&out).contains("not in whitelist"), "{}", text(&out));

    let ours = schema::pending(
        &versioned,
        SchemaVersion::new(0, 0),
        SchemaVersion::new(0, 1),
    )
    .unwrap_err()
    .to_string();
    assert!(ours.contains("`create` is not allowed"), "{ours}");

    // In capitals both accept it.
    write("v0.1/a.sql", "CREATE TABLE fx_lower (x INT);\n");
    let out = case.tool(false, &t, &["update-schema", "-d", &dir, "-v", "0.1"]);
    assert!(out.status.success(), "{}", text(&out));
    schema::pending(
        &versioned,
        SchemaVersion::new(0, 0),
        SchemaVersion::new(0, 1),
    )
    .unwrap();
}

/// `TB_TEMPORAL_RELEASES_DIR/<release>/schema/postgresql/v12` (scripts/dev-services build-release).
fn release_schema(release: &str) -> PathBuf {
    let root = std::env::var("TB_TEMPORAL_RELEASES_DIR")
        .expect("TB_TEMPORAL_RELEASES_DIR is set by `scripts/dev-services env`");
    let dir = Path::new(&root).join(release).join("schema/postgresql/v12");
    assert!(
        dir.is_dir(),
        "{} is missing: TB_TEMPORAL_VERSION={release} scripts/dev-services build-release",
        dir.display()
    );
    dir
}

async fn the_9930_condition_is_found_before_any_write_and_its_fix_works(pg: Pg) {
    let case = Case::on(pg, "gin");
    let v = case.visibility();
    let at_129 = case.config_at("1.29.7", Some(&release_schema("1.29.7")), "at-1.29.7.yaml");
    let out = case.ours_with(&at_129, &["apply", "--only", "persistence,visibility"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut cv = case.admin(&v).await;
    assert_eq!(current(&mut cv, &v).await, "1.9");
    // A database that lost the extension (restored without extensions, or dropped with its
    // indexes).
    sqlx::raw_sql("DROP EXTENSION btree_gin CASCADE")
        .execute(&mut cv)
        .await
        .unwrap();

    let at_130 = case.config_at("1.30.9", Some(&release_schema("1.30.9")), "at-1.30.9.yaml");
    // The pre-flight of the upgrade finds it, read-only.
    let before = fingerprint(&mut cv).await;
    let loaded = temporal_bootstrap::config::load_file(&at_130).unwrap();
    let ctx = temporal_bootstrap::reconcile::Context {
        config: std::sync::Arc::new(loaded.config),
        base_dir: case.dir.path().to_path_buf(),
        offline: false,
        force: false,
    };
    let found = temporal_bootstrap::postgres::gin_for_character(&ctx)
        .await
        .unwrap();
    assert!(!found.usable);
    assert_eq!(found.btree_gin_schema, None);
    let migrator = temporal_bootstrap::upgrade::migrator::StoreMigrator {
        ctx: ctx.clone(),
        progress: None,
    };
    let hops = temporal_bootstrap::versions::plan_hops(
        "1.29.7".parse().unwrap(),
        "1.30.9".parse().unwrap(),
        &temporal_bootstrap::versions::HopOptions::default(),
    )
    .unwrap();
    use temporal_bootstrap::upgrade::SchemaMigrator;
    let e = migrator
        .preflight(&hops.iter().collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert!(e.is_invalid(), "refused, exit 2: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("temporalio/temporal#9930") && msg.contains("btree_gin is not installed"),
        "{msg}"
    );
    assert_eq!(before, fingerprint(&mut cv).await, "the pre-flight wrote");

    // Without the pre-flight, the real 1.30.9 schema stops half-way, as in the issue.
    let out = case.ours_with(&at_130, &["apply", "--only", "visibility"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "data type character has no default operator class for access method \"gin\""
        ),
        "{}",
        text(&out)
    );
    // 1.10 to 1.12 carry no statement in 1.30.9 (folded into 1.13): the stop is at 1.13.
    assert_eq!(current(&mut cv, &v).await, "1.12");

    // The fix it prints, then the hop's schema goes through.
    let start = msg
        .find("CREATE EXTENSION")
        .expect("the fix is in the message");
    let fix = &msg[start..start + msg[start..].find(';').unwrap() + 1];
    sqlx::raw_sql(AssertSqlSafe(fix.to_string()))
        .execute(&mut cv)
        .await
        .unwrap();
    migrator
        .preflight(&hops.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    let out = case.ours_with(&at_130, &["apply", "--only", "visibility"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(current(&mut cv, &v).await, "1.13");
}

on_every_server! {
    the_tool_then_our_runner_records_what_the_tool_would_and_the_tool_is_then_a_no_op,
    a_version_the_tool_was_killed_in_is_completed_by_our_runner,
    a_version_our_runner_was_killed_in_is_continued_by_the_tool,
    tables_the_admin_owns_are_refused_before_any_write_with_the_fix,
    a_statement_in_lower_case_is_refused_by_both_tools,
    the_9930_condition_is_found_before_any_write_and_its_fix_works,
}
