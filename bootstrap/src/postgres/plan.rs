//! Turning what [`observe`](super::observe()) found into the changes apply would make.
//!
//! Flow: observe; then the role (create, fix attributes, reset the password; a protected role
//! is refused), the databases (create, change owner), the need for admin credentials, and for
//! each managed schema the start version, the pending version folders (from [`super::schema`])
//! and one change per version, with the row counts of tables a version rewrites.
//!
//! Guarantees: writes nothing. A converged server gives no change. A database newer than its
//! target is drift: reported with a warning, never written (schemas are never downgraded, and
//! the server accepts a newer one). A version that cannot be read is an error (a wrong guess
//! would re-run applied versions).
//!
//! Assumptions: the version folders under `schema_dir` are those of the configured release.
//!
//! Caveats: row counts of rewritten tables above [`EXACT_COUNT_LIMIT`] estimated rows come from
//! `pg_class` statistics, which may be stale.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::connection::{DatabaseSpec, Login, Session, Spec};
use super::error::{PgError, query_err};
use super::observe::{DatabaseState, Observed, RoleState, SchemaState, observe_with};
use super::ownership;
use super::privileges::{self, Work};
use super::schema::{self, PendingVersion, SchemaKind};
use super::sql::quote_ident;
use super::{ROLE_ATTRIBUTES, ROLE_MARKER};
use crate::reconcile::{Action, Change};
use crate::versions::SchemaVersion;

/// Above this estimated row count a rewritten table's size comes from statistics, not count(*).
const EXACT_COUNT_LIMIT: f64 = 100_000.0;

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
    /// The membership the admin gives itself in the application role before the databases
    /// (PostgreSQL 16+ on a managed service): `(statement, resource of its change)`.
    pub grant_membership: Option<(String, String)>,
}

impl Plan {
    /// The planned change for `resource` (an empty update when the plan has none).
    pub(crate) fn change(&self, resource: &str) -> Change {
        self.changes
            .iter()
            .find(|c| c.resource == resource)
            .cloned()
            .unwrap_or_else(|| Change::new(Action::Update, resource, ""))
    }
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

/// Observes and diffs. Writes nothing.
pub async fn plan(spec: &Spec) -> Result<Plan, PgError> {
    let mut session = Session::open(spec).await?;
    let result = plan_with(&mut session, true).await;
    session.close().await;
    result
}

/// [`plan`] on the connections of a session. `announce`: log warnings (the first plan of a run
/// does; the re-plan under the lock does not).
pub(crate) async fn plan_with(session: &mut Session<'_>, announce: bool) -> Result<Plan, PgError> {
    let spec = session.spec;
    let observed = observe_with(session).await?;
    let mut changes = Vec::new();
    let role = plan_role(spec, &observed.role, &mut changes)?;
    let database_changes = changes.len();
    let (create_databases, reown_databases) =
        plan_databases(spec, &observed.databases, &mut changes);
    let admin_work = role.any() || !create_databases.is_empty() || !reown_databases.is_empty();
    if spec.admin.is_none() && admin_work {
        return Err(needs_admin(&changes));
    }
    let grant_membership = if admin_work {
        let rights = privileges::read(session.control(), &spec.app.user, &reown_databases).await?;
        let work = Work {
            app: &spec.app.user,
            create_role: role.create,
            alter_role: role.fix_attributes || role.reset_password,
            create_databases: &create_databases,
            reown_databases: &reown_databases,
        };
        match privileges::decide(&rights, &work) {
            Ok(None) => None,
            Ok(Some(sql)) => {
                let resource = format!("membership of {} in role {}", rights.user, spec.app.user);
                changes.insert(
                    database_changes,
                    Change::new(
                        Action::Create,
                        &resource,
                        format!(
                            "{sql}: the admin is not a superuser, and a database can be created for or given to a role only by one that may SET ROLE to it"
                        ),
                    ),
                );
                Some((sql, resource))
            }
            Err(missing) => return Err(privileges::refusal(&rights, missing)),
        }
    } else {
        None
    };
    let mut schemas = Vec::new();
    for (db, state) in spec.databases.iter().zip(observed.databases.iter()) {
        if let Some(s) = plan_schema(session, &observed, db, state, announce, &mut changes).await? {
            schemas.push(s);
        }
    }
    Ok(Plan {
        observed,
        changes,
        schemas,
        role,
        create_databases,
        reown_databases,
        grant_membership,
    })
}

/// The role's changes: create it, fix its attributes, set its password again. A protected role
/// with pending changes is refused.
fn plan_role(
    spec: &Spec,
    role: &RoleState,
    changes: &mut Vec<Change>,
) -> Result<RolePlan, PgError> {
    let mut plan = RolePlan::default();
    if !role.exists {
        plan.create = true;
        changes.push(Change::new(
            Action::Create,
            format!("role {}", role.name),
            format!("{ROLE_ATTRIBUTES}, password from {}", spec.app_password_ref),
        ));
        return Ok(plan);
    }
    let drift = role.drift();
    if !drift.is_empty() {
        plan.fix_attributes = true;
        changes.push(Change::new(
            Action::Update,
            format!("role {}", role.name),
            format!("attribute drift: {}", drift.join(", ")),
        ));
    }
    if role.password_accepted == Some(false) {
        plan.reset_password = true;
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
        refuse_protected_role(role, &reason, &plan)?;
    }
    Ok(plan)
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

/// Databases to create and databases to give to the role: `(create, reown)`.
fn plan_databases(
    spec: &Spec,
    databases: &[DatabaseState],
    changes: &mut Vec<Change>,
) -> (Vec<String>, Vec<String>) {
    let mut create = Vec::new();
    let mut reown = Vec::new();
    for db in databases {
        if !db.exists {
            create.push(db.name.clone());
            changes.push(Change::new(
                Action::Create,
                format!("database {}", db.name),
                format!("owner {}", spec.app.user),
            ));
        } else if db.owner.as_deref() != Some(spec.app.user.as_str()) {
            reown.push(db.name.clone());
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
    (create, reown)
}

/// Role or database work is pending and only an admin may do it.
fn needs_admin(changes: &[Change]) -> PgError {
    PgError::NeedsAdmin(format!(
        "{} needed but no admin credentials are configured; add persistence.postgres.admin or create them yourself",
        changes
            .iter()
            .map(|c| c.resource.clone())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The schema work of one database (`None` when its schema is not managed), with one change
/// per pending version.
async fn plan_schema(
    session: &mut Session<'_>,
    observed: &Observed,
    db: &DatabaseSpec,
    state: &DatabaseState,
    announce: bool,
    changes: &mut Vec<Change>,
) -> Result<Option<SchemaPlan>, PgError> {
    let Some(schema) = &db.schema else {
        if announce {
            tracing::warn!(
                database = %db.name,
                "schema of database `{}` not managed (no schema_dir); only the database and role are ensured",
                db.name
            );
        }
        return Ok(None);
    };
    let Some((current, create_tables)) = start_version(db, &state.schema)? else {
        return Ok(None);
    };
    if current > schema.target {
        // A newer schema is what a binary rollback, or the hops of an upgrade in progress,
        // leave behind; the server accepts it. Reported, never written (schemas never go back).
        let detail = format!(
            "{} schema at {current}, newer than {} this release expects; left as it is (a server accepts a newer schema: binary rollback or an upgrade in progress). Set cluster.temporal_version to the release that matches once the upgrade is done",
            db.kind.folder(),
            schema.target
        );
        if announce {
            tracing::warn!(database = %db.name, "{detail}");
        }
        changes.push(Change::new(
            Action::Drift,
            format!("schema of database {}", db.name),
            detail,
        ));
        return Ok(None);
    }
    let pending = schema::pending(&schema.versioned_dir, current, schema.target)?;
    if create_tables {
        changes.push(Change::new(
            Action::Create,
            format!("schema_version tables in {}", db.name),
            "schema_version and schema_update_history at 0.0 (as temporal-sql-tool setup-schema -v 0.0)",
        ));
    }
    let app_logs_in = observed.role.password_accepted == Some(true);
    if state.exists && observed.role.exists && !pending.is_empty() {
        let spec = session.spec;
        let conn = session.login(reader(spec, app_logs_in), &db.name).await?;
        let foreign = ownership::foreign_objects(conn, &db.name, &spec.app.user).await?;
        if !foreign.is_empty() {
            return Err(ownership::refusal(&db.name, &spec.app.user, &foreign));
        }
    }
    let counts = if state.exists {
        rewrite_counts(session, app_logs_in, &db.name, &pending).await?
    } else {
        Vec::new()
    };
    for v in &pending {
        changes.push(version_change(
            &db.name, current, &pending, v, &counts, announce,
        ));
    }
    Ok(Some(SchemaPlan {
        database: db.name.clone(),
        kind: db.kind,
        current,
        target: schema.target,
        create_version_tables: create_tables,
        pending,
    }))
}

/// The version a database starts from and whether its version tables must be created first;
/// `None` when the schema is not managed.
fn start_version(
    db: &DatabaseSpec,
    state: &SchemaState,
) -> Result<Option<(SchemaVersion, bool)>, PgError> {
    match state {
        SchemaState::Versioned { current, .. } => {
            let v = current
                .parse::<SchemaVersion>()
                .map_err(|_| PgError::BadVersionRow {
                    database: db.name.clone(),
                    value: current.clone(),
                })?;
            Ok(Some((v, false)))
        }
        SchemaState::NoDatabase | SchemaState::NoVersionTables => {
            Ok(Some((SchemaVersion::new(0, 0), true)))
        }
        // Never guess a version: a wrong guess would re-run applied versions.
        SchemaState::Unknown { reason } => Err(PgError::Invalid(format!(
            "cannot read the schema version of `{}`: {reason}",
            db.name
        ))),
        SchemaState::NotManaged => Ok(None),
    }
}

/// The change of one pending version: its step, description and statement count, and a warning
/// for each table it rewrites (logged when `announce`).
fn version_change(
    database: &str,
    current: SchemaVersion,
    pending: &[PendingVersion],
    v: &PendingVersion,
    counts: &[(String, Option<RowCount>)],
    announce: bool,
) -> Change {
    let from = if v.version == pending[0].version {
        current
    } else {
        prev_version(pending, v.version)
    };
    let description = if v.manifest.description.is_empty() {
        "no description"
    } else {
        &v.manifest.description
    };
    let mut detail = format!(
        "{from} -> {}: {description} ({} statements)",
        v.version,
        v.statements.len()
    );
    for table in &v.rewrites {
        match counts
            .iter()
            .find(|(t, _)| t == table)
            .and_then(|(_, r)| *r)
        {
            Some(rows) => {
                // The measured costs are those of Temporal's own visibility table.
                let estimate = (table == "executions_visibility")
                    .then(|| crate::versions::visibility_rewrite_seconds(v.version, rows.rows))
                    .flatten()
                    .map(|s| {
                        format!(
                            ", estimated {} at the rate measured by scripts/bench/upgrade (rehearse on your hardware)",
                            crate::versions::human_seconds(s)
                        )
                    })
                    .unwrap_or_default();
                let warning = format!(
                    "rewrites table {table} ({rows}{estimate}) to fill a stored generated column, holding an exclusive lock; on a large table this takes long, and no pod of the new release may start before it ends"
                );
                if announce {
                    tracing::warn!(database = %database, version = %v.version, "{warning}");
                }
                detail.push_str("; WARNING: ");
                detail.push_str(&warning);
            }
            None => detail.push_str(&format!(
                "; rewrites table {table}, which does not exist yet (nothing to rewrite)"
            )),
        }
    }
    Change::new(
        Action::Update,
        format!("schema {database} v{}", v.version),
        detail,
    )
}

fn prev_version(pending: &[PendingVersion], v: SchemaVersion) -> SchemaVersion {
    pending
        .iter()
        .map(|p| p.version)
        .filter(|p| *p < v)
        .max()
        .unwrap_or(v)
}

/// Who reads a database's catalogue during planning: the application role when it can log in
/// (the usual case), else the admin.
fn reader(spec: &Spec, app_logs_in: bool) -> &Login {
    match &spec.admin {
        Some((admin, _)) if !app_logs_in => admin,
        _ => &spec.app,
    }
}

/// Row counts of the tables pending versions rewrite, as text (`1234 rows`, `about 5000000 rows
/// (estimate from pg_class)`); `None` for a table that does not exist yet.
/// Read as the application role when it can log in (`app_logs_in`), else with the admin login.
async fn rewrite_counts(
    session: &mut Session<'_>,
    app_logs_in: bool,
    database: &str,
    pending: &[PendingVersion],
) -> Result<Vec<(String, Option<RowCount>)>, PgError> {
    let tables: Vec<&String> = pending.iter().flat_map(|p| p.rewrites.iter()).collect();
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let spec = session.spec;
    let conn = session.login(reader(spec, app_logs_in), database).await?;
    let mut out = Vec::new();
    for t in tables {
        out.push((t.clone(), row_count(conn, t).await?));
    }
    Ok(out)
}

/// Rows of `table`: exact below [`EXACT_COUNT_LIMIT`] estimated rows, else the estimate.
/// Rows of a table: counted below [`EXACT_COUNT_LIMIT`], from `pg_class` statistics above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    pub rows: u64,
    pub estimated: bool,
}

impl std::fmt::Display for RowCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.estimated {
            write!(f, "about {} rows (estimate from pg_class)", self.rows)
        } else {
            write!(f, "{} rows", self.rows)
        }
    }
}

/// [`RowCount`] of `table` (`None` when it does not exist).
pub(crate) async fn row_count(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<RowCount>, PgError> {
    let est: Option<f32> = sqlx::query_scalar(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(quote_ident($1))",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(format!("estimating rows of {table}")))?
    .flatten();
    Ok(match est {
        None => None,
        Some(e) if f64::from(e) >= EXACT_COUNT_LIMIT => Some(RowCount {
            rows: f64::from(e).round() as u64,
            estimated: true,
        }),
        Some(_) => {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {}",
                quote_ident(table)
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(query_err(format!("counting rows of {table}")))?;
            Some(RowCount {
                rows: u64::try_from(n).unwrap_or(0),
                estimated: false,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
