//! The step registry: one entry per built step. A step missing here is reported as
//! "not implemented yet" by the runner.

use super::Step;
use crate::observability::{grafana::DashboardsStep, prometheus::AlertRulesStep};

pub(super) fn registry() -> Vec<Box<dyn Step>> {
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(crate::pki::CertificatesStep),
        Box::new(crate::postgres::PersistenceStep::default()),
        Box::new(AlertRulesStep),
        Box::new(DashboardsStep),
        // `visibility` for Elasticsearch/OpenSearch; enabled() is false for other stores.
        Box::new(
            crate::search::SearchVisibilityStep::new()
                .with_shard_hook(|ctx| crate::capacity::visibility_primary_shards(&ctx.config)),
        ),
        // `visibility` for PostgreSQL; enabled() is false for other stores.
        Box::new(crate::postgres::VisibilityStep::default()),
    ];
    // cluster, namespaces, search-attributes
    steps.extend(crate::temporal::steps());
    steps
}
