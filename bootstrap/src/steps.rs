//! Wiring: which adapter implements which step. The only module that names every adapter's
//! step; the runner in [`crate::reconcile`] knows none of them. A step missing here is reported
//! as "not implemented yet".

use std::sync::atomic::AtomicBool;

use crate::observability::{grafana::DashboardsStep, prometheus::AlertRulesStep};
use crate::postgres::ProgressSink;
use crate::reconcile::{self, Context, Mode, Step, StepName, StepReport};

/// Every built step. Several may share a name (`visibility` for Elasticsearch/OpenSearch and
/// for PostgreSQL); the one whose `enabled` says yes for the configuration runs.
/// `schema_progress` receives the schema migrations' progress (the CLI draws a bar with it).
pub fn registry(schema_progress: Option<ProgressSink>) -> Vec<Box<dyn Step>> {
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(crate::pki::CertificatesStep),
        Box::new(crate::postgres::PersistenceStep::with_progress(
            schema_progress.clone(),
        )),
        Box::new(AlertRulesStep),
        Box::new(DashboardsStep),
        Box::new(
            crate::search::SearchVisibilityStep::new()
                .with_shard_hook(|ctx| crate::capacity::visibility_primary_shards(&ctx.config)),
        ),
        Box::new(crate::postgres::VisibilityStep::with_progress(
            schema_progress,
        )),
    ];
    // cluster, namespaces, search-attributes
    steps.extend(crate::temporal::steps());
    steps
}

/// Runs the selected steps of the whole platform (all when `only` is empty).
pub async fn run(ctx: &Context, mode: Mode, only: &[StepName]) -> Vec<StepReport> {
    reconcile::run(&registry(None), ctx, mode, only).await
}

/// Like [`run`], reporting schema migration progress to `schema_progress`.
pub async fn run_with_progress(
    ctx: &Context,
    mode: Mode,
    only: &[StepName],
    schema_progress: Option<ProgressSink>,
) -> Vec<StepReport> {
    reconcile::run(&registry(schema_progress), ctx, mode, only).await
}

/// Like [`run`], stopping before the next step once `stop` is set.
pub async fn run_until(
    ctx: &Context,
    mode: Mode,
    only: &[StepName],
    stop: &AtomicBool,
) -> Vec<StepReport> {
    reconcile::run_until(&registry(None), ctx, mode, only, stop).await
}
