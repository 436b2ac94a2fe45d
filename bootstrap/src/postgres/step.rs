//! The `persistence` and `visibility` (SQL) steps on top of the adapter.
//!
//! Flow: build a [`Spec`] from the configuration (secrets resolved, paths made absolute, target
//! exact schema versions from [`crate::versions::SupportedRelease`]); `plan` = [`super::plan`];
//! `apply` = [`super::apply_with`] (lock, plan again, write, verify), reporting progress to
//! [`StepOptions::progress`] when the builder of the steps gave one.
//!
//! Guarantees: bad input (unresolvable secret, missing schema folder or CA file, unknown release)
//! fails before any connection, with exit 2. A converged server yields an empty plan, so the
//! runner never calls apply and nothing is written.
//!
//! Assumptions: visibility on PostgreSQL shares the persistence server, role and credentials
//! (validation enforces it).
//!
//! Caveats: both steps ensure the application role, so a plan on an empty server lists
//! `create role` under each of them; the visibility step finds it done when it runs.

use std::time::Duration;

use super::schema::{SchemaKind, versioned_dir};
use super::{
    DEFAULT_LOCK_TIMEOUT, DatabaseSpec, Login, PgError, ProgressFn, ProgressSink, SchemaSpec, Spec,
    TlsSpec,
};
use crate::config::types::TemporalVersion;
use crate::config::{PersistenceConfig, PostgresConfig, VisibilityConfig};
use crate::reconcile::{Change, Context, Step, StepError, StepFuture, StepName};
use crate::versions::{SchemaTargets, SchemaVersion, SupportedRelease};

/// Maps a release to its schema versions. Tests substitute a fake release mapping.
pub type SchemaTargetFn = fn(TemporalVersion) -> Option<SchemaTargets>;

fn release_schemas(v: TemporalVersion) -> Option<SchemaTargets> {
    SupportedRelease::of(v).ok().map(|r| r.schemas())
}

/// Knobs of the two steps; `Default` plus a progress display is what the CLI uses.
#[derive(Clone)]
pub struct StepOptions {
    pub schema_target: SchemaTargetFn,
    /// How long a run waits for another run's schema lock before failing.
    pub lock_timeout: Duration,
    /// Receives the progress of schema versions during apply (none by default).
    pub progress: Option<ProgressSink>,
}

impl std::fmt::Debug for StepOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepOptions")
            .field("lock_timeout", &self.lock_timeout)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

impl StepOptions {
    /// Where progress events go: the configured receiver, or nowhere.
    fn progress(&self) -> &ProgressFn {
        match &self.progress {
            Some(sink) => sink.as_ref(),
            None => &|_| {},
        }
    }
}

/// Environment variable overriding the lock wait, in seconds.
pub const LOCK_TIMEOUT_ENV: &str = "TEMPORAL_BOOTSTRAP_LOCK_TIMEOUT_SECS";

impl Default for StepOptions {
    fn default() -> Self {
        let lock_timeout = std::env::var(LOCK_TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LOCK_TIMEOUT);
        Self {
            schema_target: release_schemas,
            lock_timeout,
            progress: None,
        }
    }
}

/// Builds the desired state of one step from the configuration.
pub fn spec_for(ctx: &Context, kind: SchemaKind, opts: &StepOptions) -> Result<Spec, PgError> {
    let PersistenceConfig::Postgres(pg) = &ctx.config.persistence else {
        return Err(PgError::Invalid("persistence is not on PostgreSQL".into()));
    };
    let database = match (kind, &ctx.config.visibility) {
        (SchemaKind::Temporal, _) => pg.database.clone(),
        (SchemaKind::Visibility, VisibilityConfig::Postgres(v)) => v.database.clone(),
        (SchemaKind::Visibility, _) => {
            return Err(PgError::Invalid("visibility is not on PostgreSQL".into()));
        }
    };
    let version = ctx.config.cluster.temporal_version;
    let schema = match &pg.schema_dir {
        None => None,
        Some(dir) => {
            let dir = ctx.resolve_path(dir);
            if !dir.is_dir() {
                return Err(super::SchemaError::MissingDir {
                    path: dir.display().to_string(),
                }
                .into());
            }
            let release = (opts.schema_target)(version).ok_or_else(|| {
                PgError::Invalid(format!(
                    "no schema versions are known for Temporal {version}; use a supported release"
                ))
            })?;
            Some(SchemaSpec {
                versioned_dir: versioned_dir(&dir, kind),
                target: match kind {
                    SchemaKind::Temporal => release.postgres_temporal,
                    SchemaKind::Visibility => release.postgres_visibility,
                },
            })
        }
    };
    base_spec(
        ctx,
        pg,
        opts,
        DatabaseSpec {
            name: database,
            kind,
            schema,
        },
    )
}

fn base_spec(
    ctx: &Context,
    pg: &PostgresConfig,
    opts: &StepOptions,
    db: DatabaseSpec,
) -> Result<Spec, PgError> {
    let secret = |r: &crate::config::types::SecretRef, what: &str| {
        r.resolve()
            .map_err(|e| PgError::Secret(format!("{what}: {e}")))
    };
    let app = Login {
        user: pg.user.clone(),
        password: secret(&pg.password, "persistence.postgres.password")?,
    };
    let admin = match &pg.admin {
        None => None,
        Some(a) => Some((
            Login {
                user: a.user.clone(),
                password: secret(&a.password, "persistence.postgres.admin.password")?,
            },
            a.database.clone(),
        )),
    };
    let tls = match &pg.tls {
        None => None,
        Some(t) => {
            let ca = t.ca.as_ref().map(|p| ctx.resolve_path(p));
            if let Some(ca) = &ca
                && !ca.is_file()
            {
                return Err(PgError::MissingFile {
                    what: "persistence.postgres.tls.ca".into(),
                    path: ca.display().to_string(),
                });
            }
            Some(TlsSpec { mode: t.mode, ca })
        }
    };
    Ok(Spec {
        host: pg.host.clone(),
        port: pg.port,
        tls,
        app,
        app_password_ref: pg.password.clone(),
        admin,
        databases: vec![db],
        lock_name: pg.database.clone(),
        lock_timeout: opts.lock_timeout,
    })
}

/// The schema version recorded in the database of `kind` (`None`: no database or no version
/// tables yet). For `upgrade`: what a hop starts from. Writes nothing.
pub async fn recorded_version(
    ctx: &Context,
    kind: SchemaKind,
) -> Result<Option<SchemaVersion>, PgError> {
    let spec = spec_for(ctx, kind, &StepOptions::default())?;
    let observed = super::observe(&spec).await?;
    match observed.databases.first().map(|d| &d.schema) {
        Some(super::SchemaState::Versioned { current, .. }) => {
            current
                .parse()
                .map(Some)
                .map_err(|_| PgError::BadVersionRow {
                    database: spec.databases[0].name.clone(),
                    value: current.clone(),
                })
        }
        Some(super::SchemaState::Unknown { reason }) => Err(PgError::Invalid(reason.clone())),
        _ => Ok(None),
    }
}

/// Brings the database of `kind` to exactly `target` (the schema part of one upgrade hop), with
/// the same lock, transactions and checks as the steps. A database already at or above `target`
/// is left alone (no write), as the upgrade contract asks; `schema_dir` must be configured.
pub async fn migrate_to(
    ctx: &Context,
    kind: SchemaKind,
    target: SchemaVersion,
) -> Result<super::ApplyOutcome, PgError> {
    migrate_with(ctx, kind, target, &StepOptions::default()).await
}

/// [`migrate_to`] with the given options (their progress receiver; the target replaces theirs).
pub async fn migrate_with(
    ctx: &Context,
    kind: SchemaKind,
    target: SchemaVersion,
    opts: &StepOptions,
) -> Result<super::ApplyOutcome, PgError> {
    let mut spec = spec_for(ctx, kind, opts)?;
    let Some(schema) = spec.databases[0].schema.as_mut() else {
        return Err(PgError::Invalid(
            "schema migrations need persistence.postgres.schema_dir (the release's schema/postgresql/v12 folder)".into(),
        ));
    };
    schema.target = target;
    if let Some(current) = recorded_version(ctx, kind).await?
        && current >= target
    {
        return Ok(super::ApplyOutcome::default());
    }
    super::apply_with(&spec, opts.progress()).await
}

/// Step `persistence`: role, the persistence database and its schema.
#[derive(Debug, Clone, Default)]
pub struct PersistenceStep {
    pub options: StepOptions,
}

impl PersistenceStep {
    /// The default step, reporting schema progress to `progress`.
    pub fn with_progress(progress: Option<ProgressSink>) -> Self {
        Self {
            options: StepOptions {
                progress,
                ..StepOptions::default()
            },
        }
    }
}

/// Step `visibility` when visibility is on PostgreSQL: the visibility database and its schema.
#[derive(Debug, Clone, Default)]
pub struct VisibilityStep {
    pub options: StepOptions,
}

impl VisibilityStep {
    /// The default step, reporting schema progress to `progress`.
    pub fn with_progress(progress: Option<ProgressSink>) -> Self {
        Self {
            options: StepOptions {
                progress,
                ..StepOptions::default()
            },
        }
    }
}

async fn plan_step(
    ctx: &Context,
    kind: SchemaKind,
    opts: &StepOptions,
) -> Result<Vec<Change>, PgError> {
    let spec = spec_for(ctx, kind, opts)?;
    Ok(super::plan(&spec).await?.changes)
}

async fn apply_step(
    ctx: &Context,
    kind: SchemaKind,
    opts: &StepOptions,
) -> Result<Vec<Change>, PgError> {
    let spec = spec_for(ctx, kind, opts)?;
    Ok(super::apply_with(&spec, opts.progress()).await?.changes)
}

impl Step for PersistenceStep {
    fn name(&self) -> StepName {
        StepName::Persistence
    }
    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        Ok(matches!(
            ctx.config.persistence,
            PersistenceConfig::Postgres(_)
        ))
    }
    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(plan_step(ctx, SchemaKind::Temporal, &self.options).await?) })
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a Context,
        _pending: &'a [Change],
    ) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(apply_step(ctx, SchemaKind::Temporal, &self.options).await?) })
    }
}

impl Step for VisibilityStep {
    fn name(&self) -> StepName {
        StepName::Visibility
    }
    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        Ok(
            matches!(ctx.config.visibility, VisibilityConfig::Postgres(_))
                && matches!(ctx.config.persistence, PersistenceConfig::Postgres(_)),
        )
    }
    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(plan_step(ctx, SchemaKind::Visibility, &self.options).await?) })
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a Context,
        _pending: &'a [Change],
    ) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(apply_step(ctx, SchemaKind::Visibility, &self.options).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ctx(persistence_extra: &str) -> Context {
        let text = format!(
            "cluster: {{ name: unit, temporal_version: \"1.31.2\", environment: development, frontend: {{ address: \"127.0.0.1:7233\" }} }}\n\
             capacity: {{ peak_workflow_starts_per_second: 5, activities_per_workflow: 4, average_workflow_duration: 10m }}\n\
             persistence:\n  postgres:\n    host: 127.0.0.1\n    password: env:TB_UNIT_SURELY_UNSET_PASSWORD\n{persistence_extra}\
             visibility: {{ postgres: {{ database: temporal_visibility }} }}\n\
             namespaces: [ {{ name: demo, retention: 3d }} ]\n"
        );
        let loaded = crate::config::load_str(&text, "platform.yaml").unwrap();
        Context {
            config: Arc::new(loaded.config),
            base_dir: std::env::temp_dir(),
            offline: false,
            force: false,
        }
    }

    #[test]
    fn bad_input_is_refused_before_any_connection() {
        let opts = StepOptions::default();
        let e = spec_for(
            &ctx("    schema_dir: /no/such/schema/dir\n"),
            SchemaKind::Temporal,
            &opts,
        )
        .unwrap_err();
        assert!(
            e.is_invalid() && e.to_string().contains("/no/such/schema/dir does not exist"),
            "{e}"
        );
        let e = spec_for(&ctx(""), SchemaKind::Visibility, &opts).unwrap_err();
        // A secret that is not set is the environment's fault (exit 1), named in the message.
        assert!(
            !e.is_invalid() && e.to_string().contains("TB_UNIT_SURELY_UNSET_PASSWORD"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let unknown = StepOptions {
            schema_target: |_| None,
            ..StepOptions::default()
        };
        let e = spec_for(
            &ctx(&format!("    schema_dir: {}\n", dir.path().display())),
            SchemaKind::Temporal,
            &unknown,
        )
        .unwrap_err();
        assert!(
            e.is_invalid()
                && e.to_string()
                    .contains("no schema versions are known for Temporal 1.31.2"),
            "{e}"
        );
    }
}
