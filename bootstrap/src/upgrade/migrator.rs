//! The real [`SchemaMigrator`]: the PostgreSQL schema runner of the `persistence` and
//! `visibility` steps, and the `visibility` step on Elasticsearch/OpenSearch, driven to each
//! hop's exact versions.
//!
//! Guarantees: PostgreSQL versions are applied in order, each in its own transaction with its
//! `schema_update_history` row (the runner's guarantees); a search index gets the template and
//! the missing fields of the hop's `versioned/vN/` template, and its `_meta` records vN; a store
//! at or above the target is left alone.
//!
//! Assumptions: `visibility.elasticsearch.schema_dir` is the target release's folder, which
//! keeps the template of every earlier schema version.

use super::plan::{self, CheckStatus, VisibilityStore};
use super::{CurrentSchemas, SchemaMigrator, UpgradeError, VisibilityTarget};
use crate::config::{PersistenceConfig, VisibilityConfig};
use crate::postgres::{self, ProgressSink, SchemaKind, StepOptions};
use crate::reconcile::{Action, Context, Step};
use crate::search;
use crate::versions::{self, Hop, SchemaVersion};

pub struct StoreMigrator {
    pub ctx: Context,
    /// Receives the migrations' progress (the CLI draws a bar with it).
    pub progress: Option<ProgressSink>,
}

fn schema_err(e: postgres::PgError) -> UpgradeError {
    UpgradeError::Migration(e)
}

fn search_err(e: search::SearchError) -> UpgradeError {
    UpgradeError::Search(e.into())
}

fn step_err(e: crate::reconcile::StepError) -> UpgradeError {
    UpgradeError::Search(e)
}

impl SchemaMigrator for StoreMigrator {
    async fn current_versions(&self) -> Result<CurrentSchemas, UpgradeError> {
        let mut current = CurrentSchemas::default();
        if matches!(self.ctx.config.persistence, PersistenceConfig::Postgres(_)) {
            current.postgres_temporal = postgres::recorded_version(&self.ctx, SchemaKind::Temporal)
                .await
                .map_err(schema_err)?;
        }
        match &self.ctx.config.visibility {
            VisibilityConfig::Postgres(_) => {
                current.postgres_visibility =
                    postgres::recorded_version(&self.ctx, SchemaKind::Visibility)
                        .await
                        .map_err(schema_err)?;
            }
            VisibilityConfig::Elasticsearch(_) => {
                current.elasticsearch = search::recorded_schema_version(&self.ctx)
                    .await
                    .map_err(search_err)?;
            }
            VisibilityConfig::Sqlite(_) => {}
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
            // The mapping phase, after this one.
            VisibilityTarget::Elasticsearch(_) | VisibilityTarget::Sqlite => {}
        }
        Ok(())
    }

    async fn migrate_search(&self, version: u32) -> Result<(), UpgradeError> {
        let step = search::SearchVisibilityStep::new().at_schema_version(version);
        let pending = step.plan(&self.ctx).await.map_err(step_err)?;
        if pending.iter().any(|c| c.action != Action::Drift) {
            step.apply(&self.ctx, &pending).await.map_err(step_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_failure_keeps_its_kind_in_the_upgrade_error() {
        let e = search_err(search::SearchError::Config(
            "visibility.elasticsearch.url: bad".into(),
        ));
        assert_eq!(e.kind(), search::SearchError::Config(String::new()).kind());
        assert!(
            e.to_string().contains("visibility.elasticsearch.url: bad"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
