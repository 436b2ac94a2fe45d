//! Making the server match the plan: under an advisory lock, the role and databases (as the
//! admin), then each database's pending schema versions (as the application role), then a
//! verification.
//!
//! Flow: take the lock on the control connection (waiting up to the spec's lock timeout); wait
//! for the busy sessions of an interrupted run to end; plan again under the lock; run the admin
//! statements; for each database create the version tables if needed and apply each pending
//! version through [`super::execute`]; observe again and check that everything matches; release
//! the lock.
//!
//! Guarantees: nothing is written when the re-plan is empty. A version already recorded (by a
//! concurrent run before the lock was ours) is skipped. The role password reaches the server only
//! as a SCRAM-SHA-256 verifier. The lock is released, or the session holding it closed, whatever
//! the outcome.
//!
//! Assumptions: all runs against one server lock in the same control database (see the
//! module's Caveats in [`super`]).
//!
//! Caveats: sessions of an interrupted run that the control login may not see (other roles,
//! without pg_read_all_stats) cannot be waited for.

use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::bookkeeping::{create_version_tables, current_version};
use super::connection::{Session, Spec, application_name};
use super::error::{PgError, query_err};
use super::execute::apply_version;
use super::observe::{SchemaState, observe_with};
use super::plan::{Plan, SchemaPlan, plan_with};
use super::schema::PendingVersion;
use super::sql::{quote_ident, quote_literal};
use super::{ProgressFn, ROLE_ATTRIBUTES, ROLE_MARKER, SchemaProgress, scram};
use crate::reconcile::Change;
use crate::versions::SchemaVersion;

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
    apply_with(spec, &|_| {}).await
}

/// [`apply`], telling `progress` how the schema versions advance.
pub async fn apply_with(spec: &Spec, progress: &ProgressFn) -> Result<ApplyOutcome, PgError> {
    let mut session = Session::open(spec).await?;
    let result = apply_in(&mut session, progress).await;
    // Closing the control connection also frees a lock the unlock below could not release.
    session.close().await;
    result
}

async fn apply_in(
    session: &mut Session<'_>,
    progress: &ProgressFn,
) -> Result<ApplyOutcome, PgError> {
    let spec = session.spec;
    let key = spec.lock_key();
    acquire_lock(session.control(), key, spec).await?;
    let result = match wait_for_orphaned_backends(session.control(), spec).await {
        Ok(()) => apply_locked(session, progress).await,
        Err(e) => Err(e),
    };
    let _: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(session.control())
        .await;
    result
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
                database: spec.control_login().1.to_string(),
                waited: spec.lock_timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A run killed in the middle of a version leaves its backend running that version's
/// transaction: PostgreSQL only notices the dead client when it next talks to it, so the
/// transaction may still commit after the lock (held by another, idle, session that ended at
/// once) was freed. Planning before that commit lands would replay the version on top of it
/// ("relation already exists", seen with SIGKILL during Temporal's v1.0). So, under the lock, wait
/// until no backend of another temporal-bootstrap process is busy in our databases.
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

/// Under the lock: re-plan, admin statements, schema versions, verification, summary.
async fn apply_locked(
    session: &mut Session<'_>,
    progress: &ProgressFn,
) -> Result<ApplyOutcome, PgError> {
    let spec = session.spec;
    let plan = plan_with(session, false).await?;
    let started = Instant::now();
    let mut outcome = ApplyOutcome::default();
    for (sql, change) in admin_statements(spec, &plan)? {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(session.control())
            .await
            .map_err(query_err(format!(
                "{} ({})",
                change.resource, change.detail
            )))?;
        tracing::info!(resource = %change.resource, "done: {}", change.detail);
        outcome.changes.push(change);
    }
    let reporter = Reporter::new(progress, progress_units(&plan));
    for s in &plan.schemas {
        apply_schema(session, &plan, s, &reporter, &mut outcome).await?;
    }
    verify(session).await?;
    if !outcome.changes.is_empty() {
        let line = summary(&plan, &outcome, started);
        tracing::info!("{line}");
        reporter.line(line);
    }
    Ok(outcome)
}

/// The role and database statements the plan needs (run as the admin, on the control
/// connection), each with its planned change.
fn admin_statements(spec: &Spec, plan: &Plan) -> Result<Vec<(String, Change)>, PgError> {
    let role_q = quote_ident(&spec.app.user);
    let verifier = || -> Result<String, PgError> {
        let salt = scram::random_salt()
            .map_err(|e| PgError::Secret(format!("cannot read random bytes for a salt: {e}")))?;
        Ok(scram::verifier(spec.app.password.expose(), &salt))
    };
    let role_change = || plan.change(&format!("role {}", spec.app.user));
    let mut out: Vec<(String, Change)> = Vec::new();
    if plan.role.create {
        // One simple-query string runs as one implicit transaction: a crash leaves either no
        // role or a marked one.
        out.push((
            format!(
                "CREATE ROLE {role_q} {ROLE_ATTRIBUTES} PASSWORD {}; COMMENT ON ROLE {role_q} IS {}",
                quote_literal(&verifier()?),
                quote_literal(&format!(
                    "{ROLE_MARKER}: the application role Temporal connects as"
                ))
            ),
            role_change(),
        ));
    }
    if plan.role.fix_attributes {
        out.push((
            format!(
                "ALTER ROLE {role_q} {}",
                plan.observed.role.fix_keywords().join(" ")
            ),
            role_change(),
        ));
    }
    if plan.role.reset_password {
        out.push((
            format!(
                "ALTER ROLE {role_q} PASSWORD {}",
                quote_literal(&verifier()?)
            ),
            plan.change(&format!("role {} password", spec.app.user)),
        ));
    }
    if let Some((sql, resource)) = &plan.grant_membership {
        out.push((sql.clone(), plan.change(resource)));
    }
    for db in &plan.create_databases {
        out.push((
            format!("CREATE DATABASE {} OWNER {role_q}", quote_ident(db)),
            plan.change(&format!("database {db}")),
        ));
    }
    for db in &plan.reown_databases {
        out.push((
            format!("ALTER DATABASE {} OWNER TO {role_q}", quote_ident(db)),
            plan.change(&format!("database {db}")),
        ));
    }
    Ok(out)
}

/// One database's schema work, as the application role: version tables, then each pending
/// version not yet recorded.
async fn apply_schema(
    session: &mut Session<'_>,
    plan: &Plan,
    s: &SchemaPlan,
    reporter: &Reporter<'_>,
    outcome: &mut ApplyOutcome,
) -> Result<(), PgError> {
    if !s.create_version_tables && s.pending.is_empty() {
        return Ok(());
    }
    let conn = session.app(&s.database).await?;
    if s.create_version_tables {
        create_version_tables(conn, &s.database).await?;
        outcome
            .changes
            .push(plan.change(&format!("schema_version tables in {}", s.database)));
    }
    let mut current = current_version(conn, &s.database).await?;
    for v in &s.pending {
        if v.version <= current {
            continue;
        }
        let t0 = Instant::now();
        reporter.version(&s.database, v);
        apply_version(conn, &s.database, current, v, &|n| reporter.advance(n)).await?;
        outcome.statements_executed += v.statements.len();
        outcome.versions_applied += 1;
        let mut change = plan.change(&format!("schema {} v{}", s.database, v.version));
        change.detail = format!(
            "applied in {}ms: {}",
            t0.elapsed().as_millis(),
            change.detail
        );
        tracing::info!(database = %s.database, version = %v.version, statements = v.statements.len(), "schema version applied");
        reporter.line(format!(
            "{} v{} applied ({} statements, {}ms)",
            s.database,
            v.version,
            v.statements.len(),
            t0.elapsed().as_millis()
        ));
        outcome.changes.push(change);
        current = v.version;
    }
    Ok(())
}

/// Observes again: the role, its password, the databases' owners and the schema versions must
/// all be as planned.
async fn verify(session: &mut Session<'_>) -> Result<(), PgError> {
    let spec = session.spec;
    let o = observe_with(session).await?;
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
                // Newer is drift the plan reported and left alone (never downgraded).
                SchemaState::Versioned { current, .. }
                    if current
                        .parse::<SchemaVersion>()
                        .is_ok_and(|c| c >= s.target) => {}
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

/// The closing line of an apply that changed something.
fn summary(plan: &Plan, outcome: &ApplyOutcome, started: Instant) -> String {
    let schemas = plan
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
    format!(
        "postgres: {} changes, {} schema statements in {:.1}s, verified{}{}",
        outcome.changes.len(),
        outcome.statements_executed,
        started.elapsed().as_secs_f64(),
        if schemas.is_empty() { "" } else { "; " },
        schemas.join(", ")
    )
}

/// Units of progress of a plan: each statement, and each version's bookkeeping rows.
fn progress_units(plan: &Plan) -> u64 {
    plan.schemas
        .iter()
        .flat_map(|s| s.pending.iter())
        .map(|v| v.statements.len() as u64 + 1)
        .sum()
}

/// Sends the progress events of one apply; silent when there is no schema work. Sends
/// [`SchemaProgress::Finished`] when dropped, on success or failure.
struct Reporter<'p>(Option<&'p ProgressFn>);

impl<'p> Reporter<'p> {
    fn new(sink: &'p ProgressFn, total: u64) -> Self {
        if total == 0 {
            return Self(None);
        }
        sink(SchemaProgress::Started { total });
        Self(Some(sink))
    }

    fn version(&self, database: &str, v: &PendingVersion) {
        if let Some(sink) = self.0 {
            sink(SchemaProgress::Version {
                database: database.to_string(),
                version: v.version,
                description: v.manifest.description.clone(),
            });
        }
    }

    fn advance(&self, units: u64) {
        if let Some(sink) = self.0 {
            sink(SchemaProgress::Advanced(units));
        }
    }

    fn line(&self, line: String) {
        if let Some(sink) = self.0 {
            sink(SchemaProgress::Line(line));
        }
    }
}

impl Drop for Reporter<'_> {
    fn drop(&mut self) {
        if let Some(sink) = self.0 {
            sink(SchemaProgress::Finished);
        }
    }
}
