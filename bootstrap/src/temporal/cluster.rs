//! Step `cluster`: check the running cluster against platform.yaml. Never writes.
//!
//! Flow: GetSystemInfo + GetClusterInfo -> server version, persistence and visibility stores,
//! history shard count; compare the shard count with the expected one (pinned in
//! `capacity.history_shards`, or planned by the capacity planner) and the version with
//! `cluster.temporal_version`.
//!
//! Guarantees: a shard count that differs from the cluster's is refused (exit 2) with what to do,
//! before any later step runs; nothing is ever written.
//!
//! Assumptions: the shard count the server reports is the one stored in its cluster metadata
//! (a different configured value is ignored by the server, with only a warning in its log).
//!
//! Caveats: with `history_shards: auto` there is nothing to compare until the capacity planner
//! provides its count ([`planned_history_shards`] is the hook); the stores are logged, not
//! compared (the local dev stack deliberately runs a SQLite dev server as a stand-in).

use crate::config::PlatformConfig;
use crate::config::types::ShardSetting;
use crate::reconcile::{Action, Change, Context, Step, StepFuture, StepName};

use super::api::{ClusterInfo, TemporalApi};
use super::{Lazy, TemporalError};
use std::sync::Arc;

/// The planner's shard count for `history_shards: auto`.
///
/// Hook for the capacity planner: it returns `None` until the planner lands; then it should
/// return the planned count, and the check below compares it with the running cluster.
pub fn planned_history_shards(config: &PlatformConfig) -> Option<u32> {
    crate::capacity::history_shard_count(config).ok()
}

/// The shard count the configuration expects: pinned wins, else the planner's.
pub fn expected_history_shards(config: &PlatformConfig, planned: Option<u32>) -> Option<u32> {
    match config.capacity.history_shards {
        ShardSetting::Pinned(n) => Some(n),
        ShardSetting::Auto => planned,
    }
}

/// Refuses when the expected shard count differs from the cluster's. `None` = nothing expected.
pub fn check_history_shards(
    expected: Option<u32>,
    cluster: &ClusterInfo,
) -> Result<(), TemporalError> {
    let actual = cluster.history_shard_count;
    match expected {
        Some(want) if want != actual => Err(TemporalError::Refused(format!(
            "history shard count mismatch: platform.yaml expects {want} shards but the running cluster `{}` has {actual}. \
             The shard count is fixed when a cluster is created and can never change (the server ignores a different \
             configured value). Either set `capacity.history_shards: {actual}` to describe this cluster, or create a new \
             cluster with {want} shards and move workloads to it (multi-cluster replication needs shard counts that are \
             multiples of each other and global namespaces).",
            cluster.cluster_name
        ))),
        _ => Ok(()),
    }
}

/// The version drift, if the running server differs from `cluster.temporal_version`.
pub fn version_drift(config: &PlatformConfig, cluster: &ClusterInfo) -> Option<Change> {
    let want = config.cluster.temporal_version.to_string();
    let have = cluster.server_version.trim_start_matches('v');
    (!have.is_empty() && have != want.trim_start_matches('v')).then(|| {
        Change::new(
            Action::Drift,
            format!("cluster {}", cluster.cluster_name),
            format!(
                "server version {have} running, {want} in platform.yaml (upgrades: `temporal-bootstrap upgrade plan`)"
            ),
        )
    })
}

pub struct ClusterStep {
    api: Lazy,
}

impl ClusterStep {
    pub fn new() -> Self {
        Self {
            api: Lazy::default(),
        }
    }
    /// With a given adapter (tests).
    pub fn with_api(api: Arc<dyn TemporalApi>) -> Self {
        Self {
            api: Lazy::with(api),
        }
    }

    async fn observe(&self, ctx: &Context) -> Result<Vec<Change>, TemporalError> {
        let api = self.api.get(ctx).await?;
        let info = api.cluster_info().await?;
        tracing::info!(
            address = %api.address(),
            server_version = %info.server_version,
            cluster = %info.cluster_name,
            persistence = %info.persistence_store,
            visibility = %info.visibility_store,
            history_shards = info.history_shard_count,
            "cluster observed"
        );
        let planned = planned_history_shards(&ctx.config);
        check_history_shards(expected_history_shards(&ctx.config, planned), &info)?;
        Ok(version_drift(&ctx.config, &info).into_iter().collect())
    }
}

impl Default for ClusterStep {
    fn default() -> Self {
        Self::new()
    }
}

impl Step for ClusterStep {
    fn name(&self) -> StepName {
        StepName::Cluster
    }

    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { self.observe(ctx).await.map_err(Into::into) })
    }

    /// Nothing to write: the cluster step only checks. (The runner calls this only when plan
    /// returned a non-drift change, which it never does.)
    fn apply<'a>(
        &'a self,
        ctx: &'a Context,
        _pending: &'a [Change],
    ) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { self.observe(ctx).await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::ErrorClass;
    use crate::temporal::fake::FakeTemporal;

    pub(crate) fn ctx(yaml_shards: &str) -> Context {
        let text = crate::temporal::namespaces::tests::config_yaml(yaml_shards, "");
        let loaded = crate::config::load_str(&text, "test.yaml").expect("valid test config");
        Context {
            config: Arc::new(loaded.config),
            base_dir: ".".into(),
            offline: false,
            force: false,
        }
    }

    #[test]
    fn pinned_shards_must_match() {
        let c = ctx("4");
        let fake = FakeTemporal::new(1, "sqlite");
        let err =
            check_history_shards(expected_history_shards(&c.config, None), &fake.info).unwrap_err();
        assert!(err.is_invalid());
        let msg = err.to_string();
        for want in [
            "expects 4",
            "has 1",
            "can never change",
            "capacity.history_shards: 1",
        ] {
            assert!(msg.contains(want), "{want} missing in: {msg}");
        }
        let c = ctx("1");
        assert!(check_history_shards(expected_history_shards(&c.config, None), &fake.info).is_ok());
    }

    #[test]
    fn auto_uses_the_planned_count_when_there_is_one() {
        let c = ctx("auto");
        let fake = FakeTemporal::new(512, "sqlite");
        assert_eq!(expected_history_shards(&c.config, None), None);
        assert!(check_history_shards(None, &fake.info).is_ok());
        assert_eq!(expected_history_shards(&c.config, Some(1024)), Some(1024));
        assert!(check_history_shards(Some(1024), &fake.info).is_err());
        assert!(check_history_shards(Some(512), &fake.info).is_ok());
    }

    #[tokio::test]
    async fn step_refuses_a_shard_change_with_exit_2() {
        let c = ctx("8");
        let step = ClusterStep::with_api(Arc::new(FakeTemporal::new(1, "sqlite")));
        let err = step.plan(&c).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Invalid);
        let c = ctx("1");
        let step = ClusterStep::with_api(Arc::new(FakeTemporal::new(1, "sqlite")));
        let changes = step.plan(&c).await.unwrap();
        // The fake runs 1.32.0, the test config says 1.31.2.
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].action, Action::Drift);
        assert!(changes[0].detail.contains("1.32.0"), "{:?}", changes[0]);
    }
}
