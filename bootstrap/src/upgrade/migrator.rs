//! The real [`SchemaMigrator`]: the PostgreSQL schema runner of the `persistence` and
//! `visibility` steps, driven to each hop's exact versions.
//!
//! Guarantees: versions are applied in order, each in its own transaction with its
//! `schema_update_history` row (the runner's guarantees); a store at or above the target is left
//! alone. Caveats: Elasticsearch visibility mappings are not migrated here: after a hop, run
//! `apply --only visibility` with the new release's `schema_dir` (the step adds missing fields
//! and records the template version in the index `_meta`).

use super::plan::{self, CheckStatus, VisibilityStore};
use super::{CurrentSchemas, SchemaMigrator, UpgradeError, VisibilityTarget};
use crate::config::{PersistenceConfig, VisibilityConfig};
use crate::postgres::{self, ProgressSink, SchemaKind, StepOptions};
use crate::reconcile::Context;
use crate::versions::{self, Hop, SchemaVersion};

pub struct PostgresMigrator {
    pub ctx: Context,
    /// Receives the migrations' progress (the CLI draws a bar with it).
    pub progress: Option<ProgressSink>,
}

fn schema_err(e: postgres::PgError) -> UpgradeError {
    UpgradeError::Migration(e)
}

impl SchemaMigrator for PostgresMigrator {
    async fn current_versions(&self) -> Result<CurrentSchemas, UpgradeError> {
        let mut current = CurrentSchemas::default();
        if matches!(self.ctx.config.persistence, PersistenceConfig::Postgres(_)) {
            current.postgres_temporal = postgres::recorded_version(&self.ctx, SchemaKind::Temporal)
                .await
                .map_err(schema_err)?;
        }
        if matches!(self.ctx.config.visibility, VisibilityConfig::Postgres(_)) {
            current.postgres_visibility =
                postgres::recorded_version(&self.ctx, SchemaKind::Visibility)
                    .await
                    .map_err(schema_err)?;
        }
        Ok(current)
    }

    async fn migrate_to(
        &self,
        temporal: SchemaVersion,
        visibility: VisibilityTarget,
    ) -> Result<(), UpgradeError> {
        if !matches!(self.ctx.config.persistence, PersistenceConfig::Postgres(_)) {
            return Err(UpgradeError::Invalid(
                "upgrade apply migrates PostgreSQL persistence; this platform does not use it"
                    .into(),
            ));
        }
        let opts = StepOptions {
            progress: self.progress.clone(),
            ..StepOptions::default()
        };
        postgres::migrate_with(&self.ctx, SchemaKind::Temporal, temporal, &opts)
            .await
            .map_err(schema_err)?;
        match visibility {
            VisibilityTarget::Postgres(v) => {
                postgres::migrate_with(&self.ctx, SchemaKind::Visibility, v, &opts)
                    .await
                    .map_err(schema_err)?;
            }
            VisibilityTarget::Elasticsearch(v) => {
                tracing::warn!(
                    schema = v,
                    "Elasticsearch visibility is not migrated by `upgrade apply`; run `apply --only visibility` with the release's schema_dir after this hop"
                );
            }
            VisibilityTarget::Sqlite => {}
        }
        Ok(())
    }

    async fn preflight(&self, hops: &[&Hop]) -> Result<(), UpgradeError> {
        let store = VisibilityStore::of(&self.ctx.config);
        let gin_hazard = hops.iter().any(|h| {
            h.hazards
                .iter()
                .any(|z| z.issue == versions::GIN_CHARACTER_ISSUE)
        });
        if store == VisibilityStore::Postgres && gin_hazard {
            let found = postgres::gin_for_character(&self.ctx)
                .await
                .map_err(schema_err)?;
            let check = plan::gin_check(Ok(found));
            if check.status == CheckStatus::Fail {
                return Err(UpgradeError::Preflight(check.detail));
            }
        }
        Ok(())
    }
}
