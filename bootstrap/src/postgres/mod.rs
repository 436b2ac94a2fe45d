//! PostgreSQL adapter: databases, the least-privilege application role, and the versioned
//! Temporal schemas, kept compatible with `temporal-sql-tool`.
//!
//! Flow: [`observe`] reads the server (role attributes, databases and owners, `schema_version`
//! of each database) without writing; [`plan`] turns that into [`Change`]s and the list of
//! pending schema versions; [`apply`] takes an advisory lock, plans again under it, creates or
//! fixes the role and databases with the admin credentials, then brings each database to its
//! target schema version as the application role, one transaction per version folder, and
//! verifies the result.
//!
//! Guarantees: a converged server gets no write (plan is empty and apply is not called; apply
//! itself also writes nothing when nothing is pending). A schema is never downgraded: a database
//! newer than the target is an error (exit 2). Each version's statements and its
//! `schema_version`/`schema_update_history` rows commit together, so a crash leaves the database
//! at a clean version. The application password never appears in a SQL statement (the role
//! password is set as a SCRAM-SHA-256 verifier computed here, so the server's statement log cannot
//! record it), and statement logging of the client library is off.
//!
//! Assumptions: PostgreSQL 12 or later (transactional DDL, `pg_try_advisory_lock`); the admin
//! user may create roles and databases; the schema folder follows Temporal's layout
//! (see [`schema`]). Schema statements run as the application role, so the tables it creates
//! belong to the role Temporal connects as.
//!
//! Caveats: the advisory lock is held for each step's apply (re-plan, writes, verify); the
//! `persistence` and `visibility` steps take it one after the other, so two runs may interleave
//! between the steps, which is harmless because each step re-plans under the lock. The lock
//! lives in the database used for control (the admin database, or the persistence database when
//! no admin credentials are given): all runs against one server must use the same kind of
//! configuration. `temporal-sql-tool` takes no lock: do not run both at the same time. A changed
//! role password is detected by logging in, so a server that accepts any password (`trust` in
//! pg_hba.conf) hides that drift.

pub mod schema;
mod scram;
pub mod sql;
mod step;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

pub use schema::{PendingVersion, SchemaError, SchemaKind};
pub use step::{
    LOCK_TIMEOUT_ENV, PersistenceStep, SchemaTargetFn, StepOptions, VisibilityStep, migrate_to,
    recorded_version, spec_for,
};

use crate::config::PostgresTlsMode;
use crate::config::types::Secret;
use crate::config::types::SecretRef;
use crate::reconcile::{Action, Change, ErrorClass, ErrorKind, StepError};
use crate::versions::SchemaVersion;
use sql::{quote_ident, quote_literal};

/// Attributes the application role must have (least privilege).
pub const ROLE_ATTRIBUTES: &str = "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION";
/// Start of the comment put on the roles this tool creates (`COMMENT ON ROLE`, in the same
/// transaction as `CREATE ROLE`). Only a role carrying it is ever altered; an operator adopts an
/// existing role by setting the comment.
pub const ROLE_MARKER: &str = "managed by temporal-bootstrap";
/// Default time a run waits for another run's advisory lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// Time allowed to open one connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Above this estimated row count a rewritten table's size comes from statistics, not count(*).
const EXACT_COUNT_LIMIT: f64 = 100_000.0;

/// Everything that can go wrong; each variant says whether it is the input's fault.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Secret(String),
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("{what}: {path} does not exist")]
    MissingFile { what: String, path: String },
    #[error(
        "PostgreSQL at {host}:{port} rejected user `{user}`: {reason} (check the user and its password reference)"
    )]
    Auth {
        host: String,
        port: u16,
        user: String,
        reason: String,
    },
    #[error("cannot reach PostgreSQL at {host}:{port}: {reason}")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("database `{database}` does not exist on {host}:{port} (connecting as `{user}`)")]
    NoDatabase {
        host: String,
        port: u16,
        user: String,
        database: String,
    },
    #[error("{0}")]
    NeedsAdmin(String),
    #[error(
        "role `{role}` {reason}; temporal-bootstrap never alters such a role (it may be a DBA's or another application's). It would have run: {would}. Set persistence.postgres.user to a dedicated role that does not exist yet (it is created with {ROLE_ATTRIBUTES}){adopt}"
    )]
    ProtectedRole {
        role: String,
        reason: String,
        would: String,
        adopt: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "database `{database}` is at {schema} schema version {current}, newer than {target} expected by this release; schemas are never downgraded (Temporal supports a newer schema with an older binary). Set cluster.temporal_version to the release that matches, or leave the database as it is"
    )]
    Newer {
        database: String,
        schema: &'static str,
        current: String,
        target: SchemaVersion,
    },
    #[error(
        "database `{database}` has schema_version `{value}`, which is not a MAJOR.MINOR version"
    )]
    BadVersionRow { database: String, value: String },
    #[error(
        "another run holds the schema lock (advisory lock {key} in database `{database}`) for more than {waited:?}; it may still be migrating. Wait for it to finish, or check pg_stat_activity for the session holding it"
    )]
    LockTimeout {
        key: i64,
        database: String,
        waited: Duration,
    },
    #[error(
        "{database} v{version}: {file} line {line}: {reason}; the version was rolled back, the database stays at {previous}"
    )]
    Statement {
        database: String,
        version: SchemaVersion,
        file: String,
        line: usize,
        reason: String,
        previous: SchemaVersion,
    },
    #[error(
        "{database} v{version}: {file} line {line}: {reason}; this version runs outside a transaction (CONCURRENTLY), so the statements before this one stay committed; the database is still recorded at {previous}, and a re-run applies the version again (its statements must be idempotent, as Temporal's are)"
    )]
    StatementOutsideTransaction {
        database: String,
        version: SchemaVersion,
        file: String,
        line: usize,
        reason: String,
        previous: SchemaVersion,
    },
    #[error("{context}: {reason}")]
    Query { context: String, reason: String },
    #[error("verification after apply failed: {0}")]
    Verify(String),
}

impl PgError {
    /// A secret that cannot be resolved and a password the server refuses are the world's
    /// (exit 1): the configuration is valid, the environment does not match it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Schema(_)
            | Self::MissingFile { .. }
            | Self::NoDatabase { .. }
            | Self::NeedsAdmin(_)
            | Self::Invalid(_)
            | Self::BadVersionRow { .. } => ErrorKind::Invalid,
            Self::ProtectedRole { .. } | Self::Newer { .. } => ErrorKind::Refused,
            Self::Auth { .. } => ErrorKind::Denied,
            Self::Unreachable { .. } => ErrorKind::Unreachable,
            Self::LockTimeout { .. } => ErrorKind::Conflict,
            Self::Secret(_)
            | Self::Statement { .. }
            | Self::StatementOutsideTransaction { .. }
            | Self::Query { .. }
            | Self::Verify(_) => ErrorKind::Failed,
        }
    }

    /// Whether the input is at fault (exit 2) rather than the world (exit 1).
    pub fn is_invalid(&self) -> bool {
        self.kind().class() == ErrorClass::Invalid
    }
}

impl From<PgError> for StepError {
    fn from(e: PgError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

fn query_err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> PgError {
    let context = context.into();
    move |e| PgError::Query {
        context,
        reason: db_message(&e),
    }
}

fn db_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => match d.code() {
            Some(code) => format!("{} (SQLSTATE {code})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// what we manage
// ---------------------------------------------------------------------------------------------

/// TLS to the server.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub mode: PostgresTlsMode,
    /// CA file (absolute) for verify-full.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Secret,
}

/// One database and the schema it must hold.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub name: String,
    pub kind: SchemaKind,
    /// `None` when no `schema_dir` is configured: the schema is not managed.
    pub schema: Option<SchemaSpec>,
}

#[derive(Debug, Clone)]
pub struct SchemaSpec {
    /// `<schema_dir>/<kind>/versioned`.
    pub versioned_dir: PathBuf,
    pub target: SchemaVersion,
}

/// The resolved desired state of one run (secrets resolved, paths absolute).
#[derive(Debug, Clone)]
pub struct Spec {
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsSpec>,
    /// The application role and its password.
    pub app: Login,
    /// Where the app password comes from (shown in plans instead of the value).
    pub app_password_ref: SecretRef,
    pub admin: Option<(Login, String)>,
    pub databases: Vec<DatabaseSpec>,
    /// The persistence database; keys the advisory lock and is the control database when no
    /// admin credentials are given.
    pub lock_name: String,
    pub lock_timeout: Duration,
}

impl Spec {
    fn options(&self, login: &Login, database: &str) -> PgConnectOptions {
        let mut o = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&login.user)
            .password(login.password.expose())
            .database(database)
            // With the process id: a later run recognises the backends of a killed one.
            .application_name(&application_name())
            .ssl_mode(match self.tls.as_ref().map(|t| t.mode) {
                None => PgSslMode::Prefer,
                Some(PostgresTlsMode::Disable) => PgSslMode::Disable,
                Some(PostgresTlsMode::Require) => PgSslMode::Require,
                Some(PostgresTlsMode::VerifyFull) => PgSslMode::VerifyFull,
            });
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            o = o.ssl_root_cert(ca);
        }
        // Statements never go to our logs: they may carry a password verifier.
        o.disable_statement_logging()
    }

    /// Identifies a login to one database; the password is part of it (hashed, in memory only)
    /// so that a connection is never reused for a different configuration.
    fn cache_key(&self, login: &Login, database: &str) -> String {
        use md5::{Digest, Md5};
        let pw: String = Md5::digest(login.password.expose())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "{}:{}:{:?}:{}:{database}:{pw}",
            self.host,
            self.port,
            self.tls.as_ref().map(|t| (t.mode, t.ca.clone())),
            login.user
        )
    }

    /// Hands a healthy connection back for reuse by a later step of this process.
    fn release(&self, login: &Login, database: &str, conn: PgConnection) {
        if let Ok(mut cache) = CONNECTIONS.lock() {
            cache.push((self.cache_key(login, database), Instant::now(), conn));
        }
    }

    /// A connection from the process cache (checked with a ping), or a new one.
    async fn connect(&self, login: &Login, database: &str) -> Result<PgConnection, PgError> {
        let key = self.cache_key(login, database);
        let cached = CONNECTIONS.lock().ok().and_then(|mut cache| {
            let pos = cache.iter().position(|(k, _, _)| *k == key)?;
            Some(cache.swap_remove(pos))
        });
        if let Some((_, idle_since, mut conn)) = cached {
            match conn.ping().await {
                Ok(()) if idle_since.elapsed() <= MAX_IDLE => return Ok(conn),
                Ok(()) => {
                    let _ = conn.close().await;
                }
                // A broken connection (e.g. opened by a runtime that has since shut down, as in
                // tests with one runtime each) is dropped without a goodbye it cannot send.
                Err(_) => drop(conn),
            }
        }
        self.connect_new(login, database).await
    }

    async fn connect_new(&self, login: &Login, database: &str) -> Result<PgConnection, PgError> {
        // The TLS client of sqlx uses the process-wide rustls provider.
        crate::ensure_crypto_provider();
        let opts = self.options(login, database);
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await;
        let unreachable = |reason: String| PgError::Unreachable {
            host: self.host.clone(),
            port: self.port,
            reason,
        };
        let mut conn = match attempt {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code().map(|c| c.to_string()));
                return Err(match code.as_deref() {
                    Some("28P01") | Some("28000") => PgError::Auth {
                        host: self.host.clone(),
                        port: self.port,
                        user: login.user.clone(),
                        reason: db_message(&e),
                    },
                    Some("3D000") => PgError::NoDatabase {
                        host: self.host.clone(),
                        port: self.port,
                        user: login.user.clone(),
                        database: database.to_string(),
                    },
                    Some(_) => PgError::Query {
                        context: format!("connecting to `{database}` as `{}`", login.user),
                        reason: db_message(&e),
                    },
                    None => {
                        let text = e.to_string();
                        let lower = text.to_lowercase();
                        if lower.contains("certificate")
                            || lower.contains("tls")
                            || lower.contains("ssl")
                        {
                            unreachable(format!(
                                "TLS failed: {text} (check persistence.postgres.tls: mode and the CA that signed the server certificate)"
                            ))
                        } else {
                            unreachable(text)
                        }
                    }
                });
            }
            Ok(Ok(c)) => c,
        };
        // PostgreSQL 14+: end our backend (and free the advisory lock) soon after this process
        // dies, instead of when the current statement finishes. Older servers lack the setting.
        let _ = sqlx::raw_sql("SET client_connection_check_interval = 1000")
            .execute(&mut conn)
            .await;
        Ok(conn)
    }

    /// The login and database used to read roles and databases and to hold the lock.
    fn control_login(&self) -> (&Login, &str) {
        match &self.admin {
            Some((login, db)) => (login, db.as_str()),
            None => (&self.app, self.lock_name.as_str()),
        }
    }

    async fn control(&self) -> Result<PgConnection, PgError> {
        let (login, db) = self.control_login();
        self.connect(login, db).await
    }

    fn release_control(&self, conn: PgConnection) {
        let (login, db) = self.control_login();
        self.release(login, db, conn);
    }

    /// The advisory lock key of this run (stable per persistence database name).
    pub fn lock_key(&self) -> i64 {
        use md5::{Digest, Md5};
        let d = Md5::digest(format!("temporal-bootstrap:schema:{}", self.lock_name));
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        i64::from_be_bytes(b)
    }
}

/// Open connections of this process, by login and database, with the time they went idle. Steps
/// run one after the other and each PostgreSQL login costs a SCRAM exchange, so apply after plan
/// and the next step reuse them. A connection idle longer than [`MAX_IDLE`] is not reused, so each
/// daemon cycle logs in afresh (and notices a password changed on the server).
static CONNECTIONS: std::sync::Mutex<Vec<(String, Instant, PgConnection)>> =
    std::sync::Mutex::new(Vec::new());
const MAX_IDLE: Duration = Duration::from_secs(10);

/// Application-role connections of one run, one per database, reused by observe, apply and
/// verify (each PostgreSQL login costs a SCRAM exchange).
#[derive(Default)]
struct AppConns(Vec<(String, PgConnection)>);

impl AppConns {
    async fn get(&mut self, spec: &Spec, db: &str) -> Result<&mut PgConnection, PgError> {
        let pos = match self.0.iter().position(|(n, _)| n == db) {
            Some(p) => p,
            None => {
                let conn = spec.connect(&spec.app, db).await?;
                self.0.push((db.to_string(), conn));
                self.0.len() - 1
            }
        };
        Ok(&mut self.0[pos].1)
    }

    fn release(self, spec: &Spec) {
        for (db, c) in self.0 {
            spec.release(&spec.app, &db, c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// observe
// ---------------------------------------------------------------------------------------------

/// The role as the server has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleState {
    pub name: String,
    pub exists: bool,
    pub login: bool,
    pub superuser: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub replication: bool,
    /// The role carries [`ROLE_MARKER`]: this tool created it (or an operator adopted it).
    pub managed: bool,
    /// Whether the configured password logs in; `None` when not tried (role or databases missing).
    pub password_accepted: Option<bool>,
}

impl RoleState {
    /// Attributes that differ from the least-privilege set, as `name: observed -> wanted`.
    pub fn drift(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, have: bool, want: bool| {
            if have != want {
                out.push(format!("{name} {have} -> {want}"));
            }
        };
        check("login", self.login, true);
        check("superuser", self.superuser, false);
        check("createrole", self.create_role, false);
        check("createdb", self.create_db, false);
        check("replication", self.replication, false);
        out
    }

    /// Why this role must never be altered, if it must not: it holds a privilege only an
    /// administrator's role should have, or this tool did not create it.
    pub fn protected_reason(&self) -> Option<String> {
        let privileges: Vec<&str> = [
            (self.superuser, "SUPERUSER"),
            (self.create_role, "CREATEROLE"),
            (self.replication, "REPLICATION"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
        if !privileges.is_empty() {
            Some(format!("has {}", privileges.join(", ")))
        } else if !self.managed {
            Some(format!(
                "exists but was not created by temporal-bootstrap (no `{ROLE_MARKER}` comment)"
            ))
        } else {
            None
        }
    }
}

/// A database's schema as recorded in its `schema_version` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SchemaState {
    /// No `schema_dir` configured.
    NotManaged,
    /// The database does not exist yet.
    NoDatabase,
    /// The database exists but has no `schema_version` table (or no row for it).
    NoVersionTables,
    Versioned {
        current: String,
        min_compatible: String,
        history_rows: i64,
    },
    /// Could not be read (e.g. the application role cannot log in yet).
    Unknown { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseState {
    pub name: String,
    pub kind: SchemaKind,
    pub exists: bool,
    pub owner: Option<String>,
    pub schema: SchemaState,
    /// The target version when the schema is managed.
    pub target: Option<String>,
}

/// What [`observe`] found; serialisable for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub server_version: String,
    pub role: RoleState,
    pub databases: Vec<DatabaseState>,
}

/// Reads role, databases and schema versions. Writes nothing.
pub async fn observe(spec: &Spec) -> Result<Observed, PgError> {
    let mut control = spec.control().await?;
    let mut conns = AppConns::default();
    let observed = observe_with(spec, &mut control, &mut conns).await;
    conns.release(spec);
    spec.release_control(control);
    observed
}

async fn observe_with(
    spec: &Spec,
    control: &mut PgConnection,
    conns: &mut AppConns,
) -> Result<Observed, PgError> {
    let server_version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(&mut *control)
        .await
        .map_err(query_err("reading the server version"))?;
    let row = sqlx::query(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, \
         coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1",
    )
    .bind(&spec.app.user)
    .fetch_optional(&mut *control)
    .await
    .map_err(query_err("reading pg_roles"))?;
    let mut role = RoleState {
        name: spec.app.user.clone(),
        exists: row.is_some(),
        login: false,
        superuser: false,
        create_role: false,
        create_db: false,
        replication: false,
        managed: false,
        password_accepted: None,
    };
    if let Some(r) = row {
        role.login = r.get(0);
        role.superuser = r.get(1);
        role.create_role = r.get(2);
        role.create_db = r.get(3);
        role.replication = r.get(4);
        role.managed = r.get::<String, _>(5).starts_with(ROLE_MARKER);
    }
    let mut databases = Vec::new();
    for db in &spec.databases {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
        )
        .bind(&db.name)
        .fetch_optional(&mut *control)
        .await
        .map_err(query_err("reading pg_database"))?;
        let exists = owner.is_some();
        let schema = if !exists {
            if db.schema.is_some() {
                SchemaState::NoDatabase
            } else {
                SchemaState::NotManaged
            }
        } else if role.exists && role.login {
            match conns.get(spec, &db.name).await {
                Ok(conn) => {
                    role.password_accepted = Some(true);
                    if db.schema.is_some() {
                        read_schema_state(conn, &db.name).await?
                    } else {
                        SchemaState::NotManaged
                    }
                }
                Err(PgError::Auth { .. }) => {
                    role.password_accepted = Some(false);
                    schema_via_admin(spec, db).await?
                }
                Err(e) => return Err(e),
            }
        } else {
            schema_via_admin(spec, db).await?
        };
        databases.push(DatabaseState {
            name: db.name.clone(),
            kind: db.kind,
            exists,
            owner,
            schema,
            target: db.schema.as_ref().map(|s| s.target.to_string()),
        });
    }
    Ok(Observed {
        server_version,
        role,
        databases,
    })
}

async fn schema_via_admin(spec: &Spec, db: &DatabaseSpec) -> Result<SchemaState, PgError> {
    if db.schema.is_none() {
        return Ok(SchemaState::NotManaged);
    }
    match &spec.admin {
        Some((login, _)) => {
            let mut conn = spec.connect(login, &db.name).await?;
            let s = read_schema_state(&mut conn, &db.name).await;
            spec.release(login, &db.name, conn);
            s
        }
        None => Ok(SchemaState::Unknown {
            reason: format!("role `{}` cannot log in", spec.app.user),
        }),
    }
}

async fn read_schema_state(conn: &mut PgConnection, db: &str) -> Result<SchemaState, PgError> {
    let ctx = || format!("reading schema_version in `{db}`");
    let tables: (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.schema_version') IS NOT NULL, \
                to_regclass('public.schema_update_history') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err(ctx()))?;
    if !(tables.0 && tables.1) {
        return Ok(SchemaState::NoVersionTables);
    }
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT curr_version::text, min_compatible_version::text FROM public.schema_version \
         WHERE version_partition = 0 AND db_name = $1",
    )
    .bind(db)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(ctx()))?;
    let Some((current, min)) = row else {
        return Ok(SchemaState::NoVersionTables);
    };
    let history_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.schema_update_history")
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err(ctx()))?;
    Ok(SchemaState::Versioned {
        current: current.unwrap_or_default(),
        min_compatible: min.unwrap_or_default(),
        history_rows,
    })
}

// ---------------------------------------------------------------------------------------------
// plan
// ---------------------------------------------------------------------------------------------

/// The schema work for one database.
#[derive(Debug, Clone)]
pub struct SchemaPlan {
    pub database: String,
    pub kind: SchemaKind,
    /// The version the database is at (0.0 when it has no version tables yet).
    pub current: SchemaVersion,
    pub target: SchemaVersion,
    /// The version tables must be created first (as `setup-schema -v 0.0` does).
    pub create_version_tables: bool,
    pub pending: Vec<PendingVersion>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub observed: Observed,
    /// Pending changes, in the order apply performs them.
    pub changes: Vec<Change>,
    pub schemas: Vec<SchemaPlan>,
    pub role: RolePlan,
    /// Databases to create, and databases whose owner must change.
    pub create_databases: Vec<String>,
    pub reown_databases: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolePlan {
    pub create: bool,
    pub fix_attributes: bool,
    pub reset_password: bool,
}

impl RolePlan {
    fn any(&self) -> bool {
        self.create || self.fix_attributes || self.reset_password
    }
}

/// A protected role (see [`RoleState::protected_reason`]) is never altered: any pending role
/// change becomes an error that says what would have run. Nothing pending: the role is used
/// as it is.
fn refuse_protected_role(role: &RoleState, reason: &str, plan: &RolePlan) -> Result<(), PgError> {
    let role_q = quote_ident(&role.name);
    let mut would = Vec::new();
    if plan.fix_attributes {
        would.push(format!(
            "ALTER ROLE {role_q} {ROLE_ATTRIBUTES} ({})",
            role.drift().join(", ")
        ));
    }
    if plan.reset_password {
        would.push(format!(
            "ALTER ROLE {role_q} PASSWORD '***' (the configured password does not log in)"
        ));
    }
    if would.is_empty() {
        return Ok(());
    }
    let adopt = if role.superuser || role.create_role || role.replication {
        String::new()
    } else {
        format!(
            ", or, if this role is meant for Temporal alone, adopt it with COMMENT ON ROLE {role_q} IS '{ROLE_MARKER}'"
        )
    };
    Err(PgError::ProtectedRole {
        role: role.name.clone(),
        reason: reason.to_string(),
        would: would.join("; "),
        adopt,
    })
}

/// Observes and diffs. Writes nothing.
pub async fn plan(spec: &Spec) -> Result<Plan, PgError> {
    let mut control = spec.control().await?;
    let mut conns = AppConns::default();
    let result = plan_with(spec, &mut control, &mut conns, true).await;
    conns.release(spec);
    spec.release_control(control);
    result
}

/// `announce`: log warnings (the first plan of a run does; the re-plan under the lock does not).
async fn plan_with(
    spec: &Spec,
    control: &mut PgConnection,
    conns: &mut AppConns,
    announce: bool,
) -> Result<Plan, PgError> {
    let observed = observe_with(spec, control, conns).await?;
    let mut changes = Vec::new();
    let role = &observed.role;
    let mut role_plan = RolePlan::default();
    if !role.exists {
        role_plan.create = true;
        changes.push(Change::new(
            Action::Create,
            format!("role {}", role.name),
            format!("{ROLE_ATTRIBUTES}, password from {}", spec.app_password_ref),
        ));
    } else {
        let drift = role.drift();
        if !drift.is_empty() {
            role_plan.fix_attributes = true;
            changes.push(Change::new(
                Action::Update,
                format!("role {}", role.name),
                format!("attribute drift: {}", drift.join(", ")),
            ));
        }
        if role.password_accepted == Some(false) {
            role_plan.reset_password = true;
            changes.push(Change::new(
                Action::Update,
                format!("role {} password", role.name),
                format!(
                    "the password from {} does not log in; it will be set again",
                    spec.app_password_ref
                ),
            ));
        }
        if let Some(reason) = role.protected_reason() {
            refuse_protected_role(role, &reason, &role_plan)?;
        }
    }
    let mut create_databases = Vec::new();
    let mut reown_databases = Vec::new();
    for db in &observed.databases {
        if !db.exists {
            create_databases.push(db.name.clone());
            changes.push(Change::new(
                Action::Create,
                format!("database {}", db.name),
                format!("owner {}", spec.app.user),
            ));
        } else if db.owner.as_deref() != Some(spec.app.user.as_str()) {
            reown_databases.push(db.name.clone());
            changes.push(Change::new(
                Action::Update,
                format!("database {}", db.name),
                format!(
                    "owner {} -> {}",
                    db.owner.as_deref().unwrap_or("?"),
                    spec.app.user
                ),
            ));
        }
    }
    if spec.admin.is_none()
        && (role_plan.any() || !create_databases.is_empty() || !reown_databases.is_empty())
    {
        return Err(PgError::NeedsAdmin(format!(
            "{} needed but no admin credentials are configured; add persistence.postgres.admin or create them yourself",
            changes
                .iter()
                .map(|c| c.resource.clone())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    let mut schemas = Vec::new();
    for (db, state) in spec.databases.iter().zip(observed.databases.iter()) {
        let Some(schema) = &db.schema else {
            if !announce {
                continue;
            }
            tracing::warn!(
                database = %db.name,
                "schema of database `{}` not managed (no schema_dir); only the database and role are ensured",
                db.name
            );
            continue;
        };
        let (current, create_tables) = match &state.schema {
            SchemaState::Versioned { current, .. } => (
                current
                    .parse::<SchemaVersion>()
                    .map_err(|_| PgError::BadVersionRow {
                        database: db.name.clone(),
                        value: current.clone(),
                    })?,
                false,
            ),
            SchemaState::NoDatabase | SchemaState::NoVersionTables => {
                (SchemaVersion::new(0, 0), true)
            }
            // Never guess a version: a wrong guess would re-run applied versions.
            SchemaState::Unknown { reason } => {
                return Err(PgError::Invalid(format!(
                    "cannot read the schema version of `{}`: {reason}",
                    db.name
                )));
            }
            SchemaState::NotManaged => continue,
        };
        if current > schema.target {
            return Err(PgError::Newer {
                database: db.name.clone(),
                schema: db.kind.folder(),
                current: current.to_string(),
                target: schema.target,
            });
        }
        let pending = schema::pending(&schema.versioned_dir, current, schema.target)?;
        if create_tables {
            changes.push(Change::new(
                Action::Create,
                format!("schema_version tables in {}", db.name),
                "schema_version and schema_update_history at 0.0 (as temporal-sql-tool setup-schema -v 0.0)",
            ));
        }
        let counts = if state.exists {
            let conn = if observed.role.password_accepted == Some(true) {
                Some(conns.get(spec, &db.name).await?)
            } else {
                None
            };
            rewrite_counts(spec, conn, &db.name, &pending).await?
        } else {
            Default::default()
        };
        for v in &pending {
            let mut detail = format!(
                "{} -> {}: {} ({} statements)",
                if v.version == pending[0].version {
                    current
                } else {
                    prev_version(&pending, v.version)
                },
                v.version,
                if v.manifest.description.is_empty() {
                    "no description"
                } else {
                    &v.manifest.description
                },
                v.statements.len()
            );
            for table in &v.rewrites {
                match counts
                    .iter()
                    .find(|(t, _)| t == table)
                    .and_then(|(_, r)| r.clone())
                {
                    Some(rows) => {
                        let warning = format!(
                            "rewrites table {table} ({rows}) to fill a stored generated column, holding an exclusive lock; on a large table this takes long, and no pod of the new release may start before it ends"
                        );
                        if announce {
                            tracing::warn!(database = %db.name, version = %v.version, "{warning}");
                        }
                        detail.push_str("; WARNING: ");
                        detail.push_str(&warning);
                    }
                    None => detail.push_str(&format!(
                        "; rewrites table {table}, which does not exist yet (nothing to rewrite)"
                    )),
                }
            }
            changes.push(Change::new(
                Action::Update,
                format!("schema {} v{}", db.name, v.version),
                detail,
            ));
        }
        schemas.push(SchemaPlan {
            database: db.name.clone(),
            kind: db.kind,
            current,
            target: schema.target,
            create_version_tables: create_tables,
            pending,
        });
    }
    Ok(Plan {
        observed,
        changes,
        schemas,
        role: role_plan,
        create_databases,
        reown_databases,
    })
}

fn prev_version(pending: &[PendingVersion], v: SchemaVersion) -> SchemaVersion {
    pending
        .iter()
        .map(|p| p.version)
        .filter(|p| *p < v)
        .max()
        .unwrap_or(v)
}

/// Row counts of the tables pending versions rewrite, as text (`1234 rows`, `about 5000000 rows
/// (estimate from pg_class)`); `None` for a table that does not exist yet.
/// Uses `app` when the application role can log in, else the admin login.
async fn rewrite_counts(
    spec: &Spec,
    app: Option<&mut PgConnection>,
    database: &str,
    pending: &[PendingVersion],
) -> Result<Vec<(String, Option<String>)>, PgError> {
    let tables: Vec<&String> = pending.iter().flat_map(|p| p.rewrites.iter()).collect();
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let login = spec.admin.as_ref().map(|(l, _)| l).unwrap_or(&spec.app);
    let mut own = None;
    let conn: &mut PgConnection = match app {
        Some(c) => c,
        None => own.insert(spec.connect(login, database).await?),
    };
    let mut out = Vec::new();
    for t in tables {
        let est: Option<f32> = sqlx::query_scalar(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(quote_ident($1))",
        )
        .bind(t)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err(format!("estimating rows of {t}")))?
        .flatten();
        let text = match est {
            None => None,
            Some(e) if f64::from(e) >= EXACT_COUNT_LIMIT => Some(format!(
                "about {} rows (estimate from pg_class)",
                e.round() as i64
            )),
            Some(_) => {
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT count(*) FROM {}",
                    quote_ident(t)
                )))
                .fetch_one(&mut *conn)
                .await
                .map_err(query_err(format!("counting rows of {t}")))?;
                Some(format!("{n} rows"))
            }
        };
        out.push((t.clone(), text));
    }
    if let Some(c) = own {
        spec.release(login, database, c);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// apply
// ---------------------------------------------------------------------------------------------

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    pub changes: Vec<Change>,
    /// Schema statements executed (file statements, not bookkeeping).
    pub statements_executed: usize,
    pub versions_applied: usize,
}

/// Takes the advisory lock, plans again under it, applies and verifies.
pub async fn apply(spec: &Spec) -> Result<ApplyOutcome, PgError> {
    let mut control = spec.control().await?;
    let key = spec.lock_key();
    acquire_lock(&mut control, key, spec).await?;
    let mut conns = AppConns::default();
    let result = match wait_for_orphaned_backends(&mut control, spec).await {
        Ok(()) => apply_locked(spec, &mut control, &mut conns).await,
        Err(e) => Err(e),
    };
    conns.release(spec);
    let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(&mut control)
        .await;
    if matches!(unlocked, Ok(true)) {
        spec.release_control(control);
    } else {
        // Closing the session is what frees a lock we could not release.
        let _ = control.close().await;
    }
    result
}

/// `application_name` of this process's sessions.
fn application_name() -> String {
    format!("temporal-bootstrap/{}", std::process::id())
}

/// A run killed in the middle of a version leaves its backend running that version's
/// transaction: PostgreSQL only notices the dead client when it next talks to it, so the
/// transaction may still commit after the lock (held by another, idle, session that ended at
/// once) was freed. Planning before that commit lands would replay the version on top of it
/// ("relation already exists", seen with SIGKILL during Temporal's v1.0). So, under the lock, wait
/// until no backend of another temporal-bootstrap process is busy in our databases. Caveat:
/// sessions whose `state` the control login may not see (other roles, without
/// pg_read_all_stats) cannot be waited for.
async fn wait_for_orphaned_backends(
    control: &mut PgConnection,
    spec: &Spec,
) -> Result<(), PgError> {
    let databases: Vec<String> = spec.databases.iter().map(|d| d.name.clone()).collect();
    let started = Instant::now();
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1) \
             AND application_name LIKE 'temporal-bootstrap/%' AND application_name <> $2 \
             AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')",
        )
        .bind(&databases)
        .bind(application_name())
        .fetch_one(&mut *control)
        .await
        .map_err(query_err("looking for sessions of an interrupted run"))?;
        if busy == 0 {
            return Ok(());
        }
        if started.elapsed() >= spec.lock_timeout {
            return Err(PgError::LockTimeout {
                key: spec.lock_key(),
                database: databases.join(", "),
                waited: spec.lock_timeout,
            });
        }
        tracing::warn!(
            sessions = busy,
            "waiting for the sessions of an interrupted temporal-bootstrap run to finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn acquire_lock(control: &mut PgConnection, key: i64, spec: &Spec) -> Result<(), PgError> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *control)
            .await
            .map_err(query_err("taking the schema lock"))?;
        if got {
            if announced {
                tracing::warn!(
                    "schema lock acquired after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if !announced {
            tracing::warn!(
                "another temporal-bootstrap run holds the schema lock for `{}`; waiting up to {}s",
                spec.lock_name,
                spec.lock_timeout.as_secs()
            );
            announced = true;
        }
        if started.elapsed() >= spec.lock_timeout {
            return Err(PgError::LockTimeout {
                key,
                database: spec
                    .admin
                    .as_ref()
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| spec.lock_name.clone()),
                waited: spec.lock_timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn apply_locked(
    spec: &Spec,
    control: &mut PgConnection,
    conns: &mut AppConns,
) -> Result<ApplyOutcome, PgError> {
    let plan = plan_with(spec, control, conns, false).await?;
    let mut outcome = ApplyOutcome::default();
    let started = Instant::now();
    let role_q = quote_ident(&spec.app.user);
    let verifier = || -> Result<String, PgError> {
        let salt = scram::random_salt()
            .map_err(|e| PgError::Secret(format!("cannot read random bytes for a salt: {e}")))?;
        Ok(scram::verifier(spec.app.password.expose(), &salt))
    };
    let mut admin_sql: Vec<(String, Change)> = Vec::new();
    if plan.role.create {
        // One simple-query string runs as one implicit transaction: a crash leaves either no
        // role or a marked one.
        admin_sql.push((
            format!(
                "CREATE ROLE {role_q} {ROLE_ATTRIBUTES} PASSWORD {}; COMMENT ON ROLE {role_q} IS {}",
                quote_literal(&verifier()?),
                quote_literal(&format!(
                    "{ROLE_MARKER}: the application role Temporal connects as"
                ))
            ),
            find_change(&plan, &format!("role {}", spec.app.user)),
        ));
    }
    if plan.role.fix_attributes {
        admin_sql.push((
            format!("ALTER ROLE {role_q} {ROLE_ATTRIBUTES}"),
            find_change(&plan, &format!("role {}", spec.app.user)),
        ));
    }
    if plan.role.reset_password {
        admin_sql.push((
            format!(
                "ALTER ROLE {role_q} PASSWORD {}",
                quote_literal(&verifier()?)
            ),
            find_change(&plan, &format!("role {} password", spec.app.user)),
        ));
    }
    for db in &plan.create_databases {
        admin_sql.push((
            format!("CREATE DATABASE {} OWNER {role_q}", quote_ident(db)),
            find_change(&plan, &format!("database {db}")),
        ));
    }
    for db in &plan.reown_databases {
        admin_sql.push((
            format!("ALTER DATABASE {} OWNER TO {role_q}", quote_ident(db)),
            find_change(&plan, &format!("database {db}")),
        ));
    }
    for (sql, change) in admin_sql {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *control)
            .await
            .map_err(query_err(format!(
                "{} ({})",
                change.resource, change.detail
            )))?;
        tracing::info!(resource = %change.resource, "done: {}", change.detail);
        outcome.changes.push(change);
    }

    let total: u64 = plan
        .schemas
        .iter()
        .flat_map(|s| s.pending.iter())
        .map(|v| v.statements.len() as u64 + 1)
        .sum();
    let progress = Progress::new(total);
    for s in &plan.schemas {
        if !s.create_version_tables && s.pending.is_empty() {
            continue;
        }
        let conn = conns.get(spec, &s.database).await?;
        if s.create_version_tables {
            create_version_tables(conn, &s.database).await?;
            outcome.changes.push(find_change(
                &plan,
                &format!("schema_version tables in {}", s.database),
            ));
        }
        let mut current = current_version(conn, &s.database).await?;
        for v in &s.pending {
            if v.version <= current {
                continue;
            }
            let t0 = Instant::now();
            progress.start(&s.database, v);
            apply_version(conn, &s.database, current, v, &progress).await?;
            outcome.statements_executed += v.statements.len();
            outcome.versions_applied += 1;
            let mut change = find_change(&plan, &format!("schema {} v{}", s.database, v.version));
            change.detail = format!(
                "applied in {}ms: {}",
                t0.elapsed().as_millis(),
                change.detail
            );
            tracing::info!(database = %s.database, version = %v.version, statements = v.statements.len(), "schema version applied");
            progress.done(&format!(
                "{} v{} applied ({} statements, {}ms)",
                s.database,
                v.version,
                v.statements.len(),
                t0.elapsed().as_millis()
            ));
            outcome.changes.push(change);
            current = v.version;
        }
    }
    verify(spec, control, conns).await?;
    if !outcome.changes.is_empty() {
        let summary = plan
            .schemas
            .iter()
            .filter(|s| !s.pending.is_empty())
            .map(|s| {
                format!(
                    "{} {} -> {} ({} versions)",
                    s.database,
                    s.current,
                    s.target,
                    s.pending.len()
                )
            })
            .collect::<Vec<_>>();
        let line = format!(
            "postgres: {} changes, {} schema statements in {:.1}s, verified{}{}",
            outcome.changes.len(),
            outcome.statements_executed,
            started.elapsed().as_secs_f64(),
            if summary.is_empty() { "" } else { "; " },
            summary.join(", ")
        );
        tracing::info!("{line}");
        progress.done(&line);
    }
    progress.finish();
    Ok(outcome)
}

fn find_change(plan: &Plan, resource: &str) -> Change {
    plan.changes
        .iter()
        .find(|c| c.resource == resource)
        .cloned()
        .unwrap_or_else(|| Change::new(Action::Update, resource, ""))
}

async fn current_version(conn: &mut PgConnection, db: &str) -> Result<SchemaVersion, PgError> {
    let v: Option<String> = sqlx::query_scalar(
        "SELECT curr_version::text FROM public.schema_version WHERE version_partition = 0 AND db_name = $1",
    )
    .bind(db)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(format!("reading schema_version in `{db}`")))?
    .flatten();
    match v {
        None => Ok(SchemaVersion::new(0, 0)),
        Some(v) => v.parse().map_err(|_| PgError::BadVersionRow {
            database: db.to_string(),
            value: v,
        }),
    }
}

/// Creates the two version tables and the 0.0 rows, exactly as `setup-schema -v 0.0` leaves
/// them, in one implicit transaction (one round trip). Existing tables and rows are kept.
async fn create_version_tables(conn: &mut PgConnection, db: &str) -> Result<(), PgError> {
    let has_row = format!(
        "EXISTS (SELECT 1 FROM schema_version WHERE version_partition = 0 AND db_name = {})",
        quote_literal(db)
    );
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS schema_version(version_partition INT not null, \
           db_name VARCHAR(255) not null, creation_time TIMESTAMP, curr_version VARCHAR(64), \
           min_compatible_version VARCHAR(64), PRIMARY KEY (version_partition, db_name));\n\
         CREATE TABLE IF NOT EXISTS schema_update_history(version_partition INT not null, \
           year int not null, month int not null, update_time TIMESTAMP not null, \
           description VARCHAR(255), manifest_md5 VARCHAR(64), new_version VARCHAR(64), \
           old_version VARCHAR(64), PRIMARY KEY (version_partition, year, month, update_time));\n\
         DO $tb$ BEGIN IF NOT {has_row} THEN {rows} END IF; END $tb$;",
        rows = version_rows_sql(db, "0", "0.0", "0.0", "", "initial version"),
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(query_err(format!(
            "creating the schema_version tables in `{db}`"
        )))?;
    Ok(())
}

/// SQL that upserts `schema_version` and appends to `schema_update_history`, in
/// `temporal-sql-tool`'s format (UTC time of the write; version_partition 0; db_name = the
/// database). Values are escape-string literals, correct whatever `standard_conforming_strings` is.
fn version_rows_sql(
    db: &str,
    old: &str,
    new: &str,
    min_compatible: &str,
    md5: &str,
    description: &str,
) -> String {
    let (db, old, new, min, md5, desc) = (
        quote_literal(db),
        quote_literal(old),
        quote_literal(new),
        quote_literal(min_compatible),
        quote_literal(md5),
        quote_literal(truncate(description, 255)),
    );
    format!(
        "INSERT INTO schema_version(version_partition, db_name, creation_time, curr_version, min_compatible_version) \
         VALUES (0, {db}, clock_timestamp() AT TIME ZONE 'UTC', {new}, {min}) \
         ON CONFLICT (version_partition, db_name) DO UPDATE SET creation_time = excluded.creation_time, \
         curr_version = excluded.curr_version, min_compatible_version = excluded.min_compatible_version;\n\
         INSERT INTO schema_update_history(version_partition, year, month, update_time, old_version, new_version, manifest_md5, description) \
         SELECT 0, extract(year FROM t.now)::int, extract(month FROM t.now)::int, t.now, {old}, {new}, {md5}, {desc} \
         FROM (SELECT clock_timestamp() AT TIME ZONE 'UTC' AS now) t;\n"
    )
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One version folder in one transaction: its statements, then its bookkeeping rows.
///
/// Fast path: everything goes to the server as one multi-statement simple query, which
/// PostgreSQL runs as one implicit transaction (one round trip and one commit per version). When
/// it fails, nothing was committed; the statements are then replayed one by one in an explicit
/// transaction that is rolled back, only to name the failing statement and its line.
async fn apply_version(
    conn: &mut PgConnection,
    db: &str,
    previous: SchemaVersion,
    v: &PendingVersion,
    progress: &Progress,
) -> Result<(), PgError> {
    if v.statements
        .iter()
        .any(|(_, s)| cannot_run_in_transaction(&s.text))
    {
        return apply_version_autocommit(conn, db, previous, v, progress).await;
    }
    let mut batch = String::new();
    for (_, stmt) in &v.statements {
        batch.push_str(&stmt.text);
        batch.push_str(";\n");
    }
    batch.push_str(&version_rows_sql(
        db,
        &previous.to_string(),
        &v.version.to_string(),
        &v.manifest.min_compatible_version,
        &v.manifest.md5,
        &v.manifest.description,
    ));
    match sqlx::raw_sql(AssertSqlSafe(batch))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => {
            progress.inc(v.statements.len() as u64 + 1);
            Ok(())
        }
        Err(e) if e.as_database_error().is_none() => Err(PgError::Query {
            context: format!("applying {db} v{} (rolled back)", v.version),
            reason: db_message(&e),
        }),
        Err(e) => Err(locate_failure(conn, db, previous, v, e).await),
    }
}

/// Statements PostgreSQL refuses inside a transaction block (SQLSTATE 25001). Temporal's own
/// schema uses `CREATE INDEX CONCURRENTLY IF NOT EXISTS` (visibility v1.13 of release 1.31).
fn cannot_run_in_transaction(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(6)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
            | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
            | ["DROP", "INDEX", "CONCURRENTLY", ..]
            | ["REINDEX", _, "CONCURRENTLY", ..]
    )
}

/// A version that holds a statement PostgreSQL cannot run in a transaction: every statement is
/// committed on its own (as `temporal-sql-tool` runs them), then the bookkeeping rows. A failure
/// or crash half-way leaves the database recorded at the previous version with some statements
/// already applied; re-running applies the version again, which Temporal's files allow (`IF NOT
/// EXISTS` everywhere). Caveat: an interrupted `CREATE INDEX CONCURRENTLY` leaves an INVALID
/// index that `IF NOT EXISTS` then skips; drop it before re-running (the error says which).
async fn apply_version_autocommit(
    conn: &mut PgConnection,
    db: &str,
    previous: SchemaVersion,
    v: &PendingVersion,
    progress: &Progress,
) -> Result<(), PgError> {
    tracing::warn!(database = db, version = %v.version, "this version holds statements PostgreSQL cannot run in a transaction (CONCURRENTLY); its statements are committed one by one");
    for (file, stmt) in &v.statements {
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(stmt.text.as_str()))
            .execute(&mut *conn)
            .await
        {
            return Err(PgError::StatementOutsideTransaction {
                database: db.to_string(),
                version: v.version,
                file: file.clone(),
                line: stmt.line,
                reason: db_message(&e),
                previous,
            });
        }
        progress.inc(1);
    }
    let rows = version_rows_sql(
        db,
        &previous.to_string(),
        &v.version.to_string(),
        &v.manifest.min_compatible_version,
        &v.manifest.md5,
        &v.manifest.description,
    );
    sqlx::raw_sql(AssertSqlSafe(rows))
        .execute(&mut *conn)
        .await
        .map_err(|e| PgError::Query {
            context: format!("recording {db} v{}", v.version),
            reason: db_message(&e),
        })?;
    progress.inc(1);
    Ok(())
}

/// Replays a failed version statement by statement in a transaction that is rolled back, to
/// report which statement fails.
async fn locate_failure(
    conn: &mut PgConnection,
    db: &str,
    previous: SchemaVersion,
    v: &PendingVersion,
    original: sqlx::Error,
) -> PgError {
    let fallback = || PgError::Query {
        context: format!("applying {db} v{} (rolled back)", v.version),
        reason: db_message(&original),
    };
    let Ok(mut tx) = conn.begin().await else {
        return fallback();
    };
    for (file, stmt) in &v.statements {
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(stmt.text.as_str()))
            .execute(&mut *tx)
            .await
        {
            let _ = tx.rollback().await;
            return PgError::Statement {
                database: db.to_string(),
                version: v.version,
                file: file.clone(),
                line: stmt.line,
                reason: db_message(&e),
                previous,
            };
        }
    }
    let _ = tx.rollback().await;
    fallback()
}

async fn verify(
    spec: &Spec,
    control: &mut PgConnection,
    conns: &mut AppConns,
) -> Result<(), PgError> {
    let o = observe_with(spec, control, conns).await?;
    let mut problems = Vec::new();
    if !o.role.exists {
        problems.push(format!("role {} does not exist", o.role.name));
    } else if !o.role.drift().is_empty() {
        problems.push(format!(
            "role {}: {}",
            o.role.name,
            o.role.drift().join(", ")
        ));
    }
    if o.role.password_accepted == Some(false) {
        problems.push(format!(
            "role {} cannot log in with its password",
            o.role.name
        ));
    }
    for (db, spec_db) in o.databases.iter().zip(spec.databases.iter()) {
        if !db.exists {
            problems.push(format!("database {} does not exist", db.name));
            continue;
        }
        if db.owner.as_deref() != Some(spec.app.user.as_str()) {
            problems.push(format!("database {} is owned by {:?}", db.name, db.owner));
        }
        if let Some(s) = &spec_db.schema {
            match &db.schema {
                SchemaState::Versioned { current, .. }
                    if current.parse::<SchemaVersion>() == Ok(s.target) => {}
                other => problems.push(format!(
                    "database {}: schema {:?}, expected {}",
                    db.name, other, s.target
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PgError::Verify(problems.join("; ")))
    }
}

// ---------------------------------------------------------------------------------------------
// progress
// ---------------------------------------------------------------------------------------------

/// A progress bar on a terminal; nothing otherwise (logs carry the progress then).
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64) -> Self {
        use std::io::IsTerminal;
        if total == 0 || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }
    fn start(&self, db: &str, v: &PendingVersion) {
        if let Some(b) = &self.0 {
            b.set_message(format!("{db} v{}: {}", v.version, v.manifest.description));
        }
    }
    fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn done(&self, line: &str) {
        if let Some(b) = &self.0 {
            b.println(line);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn cannot_run_in_transaction_detects_concurrently() {
        assert!(super::cannot_run_in_transaction(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)"
        ));
        assert!(super::cannot_run_in_transaction(
            "create unique index concurrently a on t (x)"
        ));
        assert!(super::cannot_run_in_transaction(
            "DROP INDEX CONCURRENTLY a"
        ));
        assert!(!super::cannot_run_in_transaction("CREATE INDEX a ON t (x)"));
        assert!(!super::cannot_run_in_transaction(
            "CREATE TABLE concurrently_named (x INT)"
        ));
    }

    use super::*;

    #[test]
    fn role_drift_lists_every_attribute_off_the_least_privilege_set() {
        let mut r = RoleState {
            name: "temporal".into(),
            exists: true,
            login: true,
            superuser: false,
            create_role: false,
            create_db: false,
            replication: false,
            managed: true,
            password_accepted: Some(true),
        };
        assert!(r.drift().is_empty());
        assert_eq!(r.protected_reason(), None);
        r.login = false;
        r.superuser = true;
        r.create_db = true;
        assert_eq!(
            r.drift(),
            [
                "login false -> true",
                "superuser true -> false",
                "createdb true -> false"
            ]
        );
    }

    #[test]
    fn privileged_or_foreign_roles_are_refused_with_what_would_have_run() {
        let base = RoleState {
            name: "postgres".into(),
            exists: true,
            login: true,
            superuser: true,
            create_role: true,
            create_db: true,
            replication: true,
            managed: false,
            password_accepted: Some(true),
        };
        let plan = RolePlan {
            fix_attributes: true,
            ..RolePlan::default()
        };
        let e = refuse_protected_role(&base, &base.protected_reason().unwrap(), &plan)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("role `postgres` has SUPERUSER, CREATEROLE, REPLICATION"),
            "{e}"
        );
        assert!(e.contains("never alters"), "{e}");
        assert!(
            e.contains("ALTER ROLE \"postgres\" LOGIN NOSUPERUSER"),
            "{e}"
        );
        assert!(
            !e.contains("adopt"),
            "a privileged role is never offered for adoption: {e}"
        );

        // A plain role someone else created: refused too, with the way to adopt it.
        let foreign = RoleState {
            superuser: false,
            create_role: false,
            create_db: false,
            replication: false,
            password_accepted: Some(false),
            ..base.clone()
        };
        let plan = RolePlan {
            reset_password: true,
            ..RolePlan::default()
        };
        let e = refuse_protected_role(&foreign, &foreign.protected_reason().unwrap(), &plan)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not created by temporal-bootstrap"), "{e}");
        assert!(e.contains("PASSWORD '***'"), "{e}");
        assert!(
            e.contains(&format!("COMMENT ON ROLE \"postgres\" IS '{ROLE_MARKER}'")),
            "{e}"
        );
        // Nothing pending: a foreign role is used as it is.
        assert!(refuse_protected_role(&foreign, "x", &RolePlan::default()).is_ok());
    }

    #[test]
    fn errors_map_to_exit_classes() {
        use crate::reconcile::ErrorClass;
        let unreachable = PgError::Unreachable {
            host: "db".into(),
            port: 5432,
            reason: "refused".into(),
        };
        assert_eq!(StepError::from(unreachable).class(), ErrorClass::Runtime);
        let newer = PgError::Newer {
            database: "temporal".into(),
            schema: "temporal",
            current: "1.20".into(),
            target: SchemaVersion::new(1, 19),
        };
        let e = StepError::from(newer);
        assert_eq!(e.class(), ErrorClass::Invalid);
        assert!(e.message.contains("never downgraded"), "{}", e.message);
        let auth = PgError::Auth {
            host: "db".into(),
            port: 5432,
            user: "postgres".into(),
            reason: "password authentication failed".into(),
        };
        // The configuration is valid; the environment does not match it (README: exit 1).
        assert_eq!(StepError::from(auth).class(), ErrorClass::Runtime);
        let secret = PgError::Secret("persistence.postgres.password: not set".into());
        assert_eq!(StepError::from(secret).class(), ErrorClass::Runtime);
        let lock = PgError::LockTimeout {
            key: 1,
            database: "postgres".into(),
            waited: Duration::from_secs(2),
        };
        assert_eq!(StepError::from(lock).class(), ErrorClass::Runtime);
    }

    #[test]
    fn bookkeeping_literals_survive_quotes_and_backslashes() {
        assert_eq!(quote_literal(r"it's a \ path"), r"E'it''s a \\ path'");
        let sql = version_rows_sql("temporal", "1.3", "1.4", "1.0", "abc", "desc; it's");
        assert!(
            sql.contains("E'desc; it''s'") && sql.contains("E'1.3', E'1.4', E'abc'"),
            "{sql}"
        );
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 255), "abc");
        assert_eq!(truncate("ééé", 2), "éé");
    }
}
