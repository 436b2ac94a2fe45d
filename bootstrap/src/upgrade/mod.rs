//! Temporal server upgrades: `upgrade plan` and `upgrade apply`, one minor version at a time.
//!
//! The hop rules live in [`crate::versions`] (pure). This module adds what needs the world:
//! reading the running version, pre-flight checks, and the resumable per-hop orchestration.
//!
//! The orchestration talks to three small traits so the real adapters can be plugged in:
//! - [`ClusterProbe`]: the version the cluster reports. Implemented for real by
//!   [`probe::HttpClusterProbe`] (frontend HTTP API, `GET /api/v1/system-info`); the gRPC adapter
//!   can implement it too once merged.
//! - [`SchemaMigrator`]: current schema versions and migration to a release's exact versions
//!   ([`migrator::StoreMigrator`]: the PostgreSQL schema runner of the steps).
//! - [`Executor`]: rolls the services to a hop's release ([`executor::Manual`],
//!   [`executor::Helm`], [`executor::K3s`]).

pub mod apply;
pub mod executor;
pub mod migrator;
pub mod plan;
pub mod probe;
pub mod process;
pub mod state;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::config::types::TemporalVersion;
use crate::error::{ErrorClass, ErrorKind};
use crate::versions::{Hop, SchemaVersion, UpgradeRefusal};

/// Failures of `upgrade plan` / `upgrade apply`.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// A refused upgrade (downgrade, unknown or broken target, skipped minor): exit 2.
    #[error(transparent)]
    Refused(#[from] UpgradeRefusal),
    /// Bad flags or a state file that does not match the request: exit 2.
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not be asked for its version.
    #[error("cannot read the running server version from {address}: {reason}")]
    Probe { address: String, reason: String },
    /// The schema adapter failed.
    #[error("schema migration failed: {0}")]
    Migration(#[from] crate::postgres::PgError),
    /// The Elasticsearch/OpenSearch visibility migration failed (its kind is the step's: an
    /// unreachable cluster stays `unreachable`).
    #[error("visibility index migration failed: {0}")]
    Search(#[source] crate::reconcile::StepError),
    /// The migration ran but the stores do not report the hop's versions.
    #[error("schema migration failed: {0}")]
    Schema(String),
    /// Rolling the services failed.
    #[error("rolling the services failed: {0}")]
    Executor(String),
    /// The cluster did not report the expected version in time.
    #[error(
        "the cluster did not report {expected} within {waited_secs}s (last seen: {last_seen}); the state file keeps the progress, re-run to continue waiting"
    )]
    Timeout {
        expected: TemporalVersion,
        waited_secs: u64,
        last_seen: String,
    },
    /// The cluster changed version during a soak.
    #[error(
        "the cluster went from {expected} to {seen} during the soak; investigate before continuing"
    )]
    Regressed {
        expected: TemporalVersion,
        seen: TemporalVersion,
    },
    /// A read-only pre-flight check of a store failed: nothing was written (exit 2).
    #[error("pre-flight check failed before any write: {0}")]
    Preflight(String),
    /// The state file could not be read or written.
    #[error("upgrade state file {path}: {reason}")]
    State { path: String, reason: String },
}

impl UpgradeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Refused(_) | Self::Preflight(_) => ErrorKind::Refused,
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::Probe { .. } => ErrorKind::Unreachable,
            Self::Migration(e) => e.kind(),
            Self::Search(e) => e.kind,
            Self::Schema(_) | Self::Executor(_) | Self::Regressed { .. } | Self::State { .. } => {
                ErrorKind::Failed
            }
            Self::Timeout { .. } => ErrorKind::Timeout,
        }
    }

    /// Whether this is the user's input (exit 2) rather than the world (exit 1).
    pub fn is_invalid(&self) -> bool {
        self.kind().class() == ErrorClass::Invalid
    }
}

/// Schema versions found in the stores (None: the store is not used or has no schema yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CurrentSchemas {
    pub postgres_temporal: Option<SchemaVersion>,
    pub postgres_visibility: Option<SchemaVersion>,
    pub elasticsearch: Option<u32>,
}

/// The visibility schema a hop needs, by the configured visibility store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "store", content = "version", rename_all = "lowercase")]
pub enum VisibilityTarget {
    /// SQL visibility on PostgreSQL (`schema/postgresql/v12/visibility`).
    Postgres(SchemaVersion),
    /// Elasticsearch or OpenSearch index template / mapping (`schema/elasticsearch/visibility/vN`).
    Elasticsearch(u32),
    /// SQLite (development): the server manages its own schema.
    Sqlite,
}

impl std::fmt::Display for VisibilityTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres(v) => write!(f, "pg {v}"),
            Self::Elasticsearch(v) => write!(f, "es v{v}"),
            Self::Sqlite => f.write_str("sqlite (server)"),
        }
    }
}

/// Reads the release the cluster runs.
pub trait ClusterProbe {
    /// Where the probe asks (for messages).
    fn address(&self) -> String;
    /// The version the frontend reports.
    fn server_version(&self) -> impl Future<Output = Result<TemporalVersion, UpgradeError>> + Send;
}

/// Reads and migrates the persistence and visibility schemas.
///
/// Contract for implementations: `migrate_to` applies every version in `(current, target]` in
/// order, schema first to completion; it is idempotent (a store already at or above the target
/// is left alone, no write) and never goes backwards.
pub trait SchemaMigrator {
    /// Versions currently recorded in the stores.
    fn current_versions(&self)
    -> impl Future<Output = Result<CurrentSchemas, UpgradeError>> + Send;
    /// Brings the persistence schema to `temporal`, and SQL visibility to a
    /// [`VisibilityTarget::Postgres`] target; an Elasticsearch target is left to
    /// [`Self::migrate_search`], which runs after it.
    fn migrate_to(
        &self,
        temporal: SchemaVersion,
        visibility: VisibilityTarget,
    ) -> impl Future<Output = Result<(), UpgradeError>> + Send;
    /// Brings the Elasticsearch/OpenSearch visibility template and index mapping to schema
    /// `version` (new fields added, none removed), and records it where
    /// [`Self::current_versions`] reads it.
    fn migrate_search(
        &self,
        version: u32,
    ) -> impl Future<Output = Result<(), UpgradeError>> + Send {
        async move {
            Err(UpgradeError::Invalid(format!(
                "this schema adapter cannot migrate Elasticsearch visibility (schema v{version})"
            )))
        }
    }
    /// Read-only checks of the stores for the hops still to migrate, before the first write
    /// (the known hazards a database can be checked for, such as temporalio/temporal#9930).
    fn preflight(&self, hops: &[&Hop]) -> impl Future<Output = Result<(), UpgradeError>> + Send {
        let _ = hops;
        async { Ok(()) }
    }
}

/// What an executor did to roll a hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollOutcome {
    /// Human summary, e.g. the command run or the change asked of the operator.
    pub detail: String,
}

/// Rolls the Temporal services (and admin-tools) to a hop's release.
pub trait Executor {
    /// Name for messages (`manual`, `helm`, `k3s`).
    fn name(&self) -> &'static str;
    /// Checks the executor can work at all (tools on PATH), before anything is changed.
    fn preflight(&self) -> Result<(), UpgradeError> {
        Ok(())
    }
    /// Starts the roll; the orchestrator then waits for the cluster to report the version.
    fn roll(&self, hop: &Hop) -> impl Future<Output = Result<RollOutcome, UpgradeError>> + Send;
    /// How long to wait for the version to appear after `roll` (manual: an operator acts).
    fn wait_budget(&self, configured: Duration) -> Duration {
        configured
    }
}

/// Time, so tests can run hours of soak instantly.
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// The wall clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}
