//! The upgrade plan: hops (from [`crate::versions::plan_hops`]), per-hop estimates, and the
//! pre-flight checks, with which of them could be evaluated without contacting anything.
//! Pure: the running version is an input.

use serde::Serialize;

use super::VisibilityTarget;
use crate::config::model::{PersistenceConfig, PlatformConfig, SearchFlavor, VisibilityConfig};
use crate::config::types::TemporalVersion;
use crate::postgres::{GinForCharacter, RowCount};
use crate::versions::{self, Hop, UpgradeRefusal};

/// Minutes per hop for the schema step and rolling the services, on top of the soak. Schema
/// updates without a table rewrite take seconds to a few minutes; a rewrite takes longer.
pub const SCHEMA_AND_ROLL_MINUTES: u64 = 5;

/// Where the starting version came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FromSource {
    /// `--from`: nothing was contacted.
    Flag,
    /// Read from the cluster at this URL.
    Cluster(String),
    /// The cluster did not answer; taken from the unfinished upgrade recorded in this state file
    /// (a roll interrupted after the services stopped).
    StateFile(String),
}

/// Which visibility store the configuration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VisibilityStore {
    Postgres,
    Elasticsearch,
    Opensearch,
    Sqlite,
}

impl VisibilityStore {
    pub fn of(c: &PlatformConfig) -> Self {
        match &c.visibility {
            VisibilityConfig::Postgres(_) => Self::Postgres,
            VisibilityConfig::Sqlite(_) => Self::Sqlite,
            VisibilityConfig::Elasticsearch(es) => match es.flavor {
                SearchFlavor::Elasticsearch => Self::Elasticsearch,
                SearchFlavor::Opensearch => Self::Opensearch,
            },
        }
    }

    /// The visibility schema a hop needs on this store.
    pub fn target(self, hop: &Hop) -> VisibilityTarget {
        match self {
            Self::Postgres => VisibilityTarget::Postgres(hop.schemas.postgres_visibility),
            Self::Elasticsearch | Self::Opensearch => {
                VisibilityTarget::Elasticsearch(hop.schemas.elasticsearch)
            }
            Self::Sqlite => VisibilityTarget::Sqlite,
        }
    }
}

/// A hop with what it means for this platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHop {
    /// 1-based.
    pub index: usize,
    #[serde(flatten)]
    pub hop: Hop,
    /// The visibility schema this platform's store needs.
    pub visibility_target: VisibilityTarget,
    /// Schema + roll + soak, in minutes.
    pub estimated_minutes: u64,
    /// True when a table rewrite makes the estimate a lower bound.
    pub estimate_is_lower_bound: bool,
}

/// Result of a pre-flight check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    /// Needs a system that was not contacted (or an operator).
    NotEvaluated,
}

/// One pre-flight check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    /// Whether the check can be evaluated offline (from the config and the release table).
    pub offline: bool,
    pub detail: String,
}

/// The whole plan, as printed by `upgrade plan` and `upgrade apply --dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    pub cluster: String,
    pub from: TemporalVersion,
    pub from_source: FromSource,
    pub to: TemporalVersion,
    pub visibility_store: VisibilityStore,
    pub soak_minutes: u64,
    pub hops: Vec<PlannedHop>,
    pub estimated_minutes_total: u64,
    pub preflight: Vec<Check>,
    /// What to change in platform.yaml afterwards.
    pub afterwards: Vec<String>,
}

impl UpgradePlan {
    /// Failed pre-flight checks (an upgrade with any of them is refused).
    pub fn failed_checks(&self) -> Vec<&Check> {
        self.preflight
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .collect()
    }
}

/// Builds the plan. Refuses downgrades, unknown and known-broken targets.
pub fn build(
    config: &PlatformConfig,
    from: TemporalVersion,
    from_source: FromSource,
    to: TemporalVersion,
    soak_minutes: u64,
    options: &versions::HopOptions,
) -> Result<UpgradePlan, UpgradeRefusal> {
    let hops = versions::plan_hops(from, to, options)?;
    let store = VisibilityStore::of(config);
    let planned: Vec<PlannedHop> = hops
        .into_iter()
        .enumerate()
        .map(|(i, mut hop)| {
            if store != VisibilityStore::Postgres {
                // The table rewrite is a PostgreSQL visibility matter.
                hop.warnings.retain(|w| !w.starts_with("SQL visibility"));
                hop.visibility_rewrite = false;
                hop.hazards
                    .retain(|h| h.store != versions::HazardStore::PostgresVisibility);
            }
            PlannedHop {
                index: i + 1,
                visibility_target: store.target(&hop),
                estimated_minutes: SCHEMA_AND_ROLL_MINUTES + soak_minutes,
                estimate_is_lower_bound: hop.visibility_rewrite,
                hop,
            }
        })
        .collect();
    let total = planned.iter().map(|h| h.estimated_minutes).sum();
    let preflight = preflight(config, from, &from_source, to, store, &planned);
    let afterwards = if planned.is_empty() || config.cluster.temporal_version == to {
        vec![]
    } else {
        vec![format!(
            "set cluster.temporal_version to \"{to}\" in platform.yaml (it says \"{}\")",
            config.cluster.temporal_version
        )]
    };
    Ok(UpgradePlan {
        cluster: config.cluster.name.to_string(),
        from,
        from_source,
        to,
        visibility_store: store,
        soak_minutes,
        hops: planned,
        estimated_minutes_total: total,
        preflight,
        afterwards,
    })
}

/// Whether the plan runs the PostgreSQL visibility versions of
/// [`versions::GIN_CHARACTER_ISSUE`] (a hop into 1.30 on PostgreSQL visibility): then the
/// database must be checked with [`crate::postgres::gin_for_character`] before any write.
pub fn needs_gin_check(plan: &UpgradePlan) -> bool {
    plan.visibility_store == VisibilityStore::Postgres
        && plan.hops.iter().any(|h| {
            h.hop
                .hazards
                .iter()
                .any(|z| z.issue == versions::GIN_CHARACTER_ISSUE)
        })
}

/// The #9930 pre-flight check from what the visibility database said (or why it could not be
/// read). Fails when the 1.29 -> 1.30 visibility update would stop at v1.10.
pub fn gin_check(found: Result<GinForCharacter, String>) -> Check {
    let name = "visibility-gin-character";
    match found {
        Ok(g) if g.usable => check(
            name,
            CheckStatus::Pass,
            false,
            format!(
                "{}: a GIN operator class for character exists (btree_gin in schema {}); {} will not stop the hop",
                g.database,
                g.btree_gin_schema.as_deref().unwrap_or("?"),
                versions::GIN_CHARACTER_ISSUE
            ),
        ),
        Ok(g) => check(
            name,
            CheckStatus::Fail,
            false,
            format!(
                "{db}: no GIN operator class for character exists (extension btree_gin is not installed); the 1.29 -> 1.30 visibility update would stop at v1.10 with \"data type character has no default operator class for access method gin\" ({issue}). Before the hop, in {db}, as its owner or a superuser: CREATE EXTENSION IF NOT EXISTS btree_gin;",
                db = g.database,
                issue = versions::GIN_CHARACTER_ISSUE,
            ),
        ),
        Err(why) => check(
            name,
            CheckStatus::Fail,
            false,
            format!(
                "cannot read the visibility database to rule out {} ({why}); fix the connection and plan again",
                versions::GIN_CHARACTER_ISSUE
            ),
        ),
    }
}

/// Adds to each hop that rewrites `executions_visibility` the estimated rewrite time for `rows`
/// rows ([`versions::visibility_rewrite_seconds`]), as a warning and in its minutes.
pub fn add_rewrite_estimates(plan: &mut UpgradePlan, rows: &RowCount) {
    for h in plan.hops.iter_mut().filter(|h| h.hop.visibility_rewrite) {
        let before = h.hop.schemas_before.postgres_visibility;
        let after = h.hop.schemas.postgres_visibility;
        let seconds: f64 = versions::REWRITING_VISIBILITY_VERSIONS
            .iter()
            .filter(|v| **v > before && **v <= after)
            .filter_map(|v| versions::visibility_rewrite_seconds(*v, rows.rows))
            .sum();
        h.estimated_minutes += (seconds / 60.0).ceil() as u64;
        h.hop.warnings.push(format!(
            "estimated rewrite time {} for executions_visibility ({rows}), from the per-row cost scripts/bench/upgrade measured on a 2-core reference machine: rehearse on a restored copy to know yours",
            versions::human_seconds(seconds)
        ));
    }
    plan.estimated_minutes_total = plan.hops.iter().map(|h| h.estimated_minutes).sum();
}

/// The #9930 check when the databases may not be contacted (`upgrade plan --from`).
pub fn gin_check_not_evaluated(why: &str) -> Check {
    check(
        "visibility-gin-character",
        CheckStatus::NotEvaluated,
        false,
        format!(
            "{why} (`upgrade apply` checks it before any write): a hop into 1.30 on PostgreSQL visibility stops at v1.10 when the database has no GIN operator class for character ({})",
            versions::GIN_CHARACTER_ISSUE
        ),
    )
}

fn preflight(
    config: &PlatformConfig,
    from: TemporalVersion,
    from_source: &FromSource,
    to: TemporalVersion,
    store: VisibilityStore,
    hops: &[PlannedHop],
) -> Vec<Check> {
    vec![
        check(
            "target-release",
            CheckStatus::Pass,
            true,
            format!("{to} is a known release and not known-broken"),
        ),
        check(
            "one-minor-per-hop",
            CheckStatus::Pass,
            true,
            format!(
                "{} hop(s), each to the next minor (its latest patch unless --via)",
                hops.len()
            ),
        ),
        running_version_check(from, from_source),
        config_version_check(config.cluster.temporal_version, from, to),
        visibility_store_check(store, hops),
        persistence_check(&config.persistence),
        schema_check(from, hops),
        table_rewrite_check(hops),
        check(
            "backups",
            CheckStatus::NotEvaluated,
            false,
            "take and test-restore backups of the persistence and visibility stores: the schema cannot be rolled back".into(),
        ),
        check(
            "cluster-health",
            CheckStatus::NotEvaluated,
            false,
            "all services serving, no shard movement; check dashboards and alerts before each hop"
                .into(),
        ),
    ]
}

fn check(name: &'static str, status: CheckStatus, offline: bool, detail: String) -> Check {
    Check {
        name,
        status,
        offline,
        detail,
    }
}

fn running_version_check(from: TemporalVersion, from_source: &FromSource) -> Check {
    match from_source {
        FromSource::Cluster(url) => check(
            "running-version",
            CheckStatus::Pass,
            false,
            format!("{from} reported by {url}"),
        ),
        FromSource::Flag => check(
            "running-version",
            CheckStatus::NotEvaluated,
            false,
            format!("--from {from} taken as given; apply compares it with the cluster"),
        ),
        FromSource::StateFile(path) => check(
            "running-version",
            CheckStatus::NotEvaluated,
            false,
            format!(
                "the cluster did not answer; {from} taken from the unfinished upgrade in {path}"
            ),
        ),
    }
}

fn config_version_check(
    configured: TemporalVersion,
    from: TemporalVersion,
    to: TemporalVersion,
) -> Check {
    if configured == from || configured == to {
        check(
            "config-version",
            CheckStatus::Pass,
            true,
            format!("platform.yaml says {configured}"),
        )
    } else {
        check(
            "config-version",
            CheckStatus::Warn,
            true,
            format!(
                "platform.yaml says {configured}, the cluster runs {from}: update cluster.temporal_version"
            ),
        )
    }
}

/// Whether every hop's release supports the visibility store.
fn visibility_store_check(store: VisibilityStore, hops: &[PlannedHop]) -> Check {
    match store {
        VisibilityStore::Opensearch => {
            match hops
                .iter()
                .find(|h| versions::dependency_support(h.hop.to).opensearch.is_empty())
            {
                Some(h) => check(
                    "visibility-store",
                    CheckStatus::Fail,
                    true,
                    format!(
                        "hop {} lands on {}, which does not support OpenSearch (1.30.1+ does); move visibility to Elasticsearch or PostgreSQL first",
                        h.index, h.hop.to
                    ),
                ),
                None => check(
                    "visibility-store",
                    CheckStatus::Pass,
                    true,
                    "OpenSearch 2 is supported by every hop's release".into(),
                ),
            }
        }
        VisibilityStore::Elasticsearch => check(
            "visibility-store",
            CheckStatus::NotEvaluated,
            false,
            "Elasticsearch 7 or 8 required: the server version is read by the Elasticsearch adapter".into(),
        ),
        VisibilityStore::Postgres => check(
            "visibility-store",
            CheckStatus::Pass,
            true,
            "SQL visibility on PostgreSQL (postgres12 plugin)".into(),
        ),
        VisibilityStore::Sqlite => check(
            "visibility-store",
            CheckStatus::Warn,
            true,
            "SQLite visibility is for development only".into(),
        ),
    }
}

fn persistence_check(persistence: &PersistenceConfig) -> Check {
    match persistence {
        PersistenceConfig::Postgres(_) => check(
            "postgres-version",
            CheckStatus::NotEvaluated,
            false,
            format!(
                "PostgreSQL {} tested; read from the server by the schema adapter",
                versions::POSTGRES_TESTED
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        PersistenceConfig::Sqlite(_) => check(
            "postgres-version",
            CheckStatus::Warn,
            true,
            "SQLite persistence (development): the server manages its own schema".into(),
        ),
    }
}

fn schema_check(from: TemporalVersion, hops: &[PlannedHop]) -> Check {
    check(
        "schema-matches-running-release",
        CheckStatus::NotEvaluated,
        false,
        hops.first()
            .map(|h| {
                format!(
                    "stores should be at {}/{}/v{} for {from}; apply reads them through the schema adapter",
                    h.hop.schemas_before.postgres_temporal,
                    h.hop.schemas_before.postgres_visibility,
                    h.hop.schemas_before.elasticsearch
                )
            })
            .unwrap_or_else(|| "nothing to upgrade".into()),
    )
}

/// Hops whose SQL visibility migration rewrites executions_visibility.
fn table_rewrite_check(hops: &[PlannedHop]) -> Check {
    let rewrites: Vec<String> = hops
        .iter()
        .filter(|h| h.hop.visibility_rewrite)
        .map(|h| h.index.to_string())
        .collect();
    if rewrites.is_empty() {
        check(
            "visibility-table-rewrite",
            CheckStatus::Pass,
            true,
            "no hop rewrites executions_visibility".into(),
        )
    } else {
        check(
            "visibility-table-rewrite",
            CheckStatus::Warn,
            true,
            format!(
                "hop(s) {} rewrite executions_visibility: rehearse on a restored copy to time it",
                rewrites.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A platform on PostgreSQL persistence with PostgreSQL (`pg`) or OpenSearch visibility.
    fn config(yaml_version: &str, visibility: &str) -> PlatformConfig {
        let visibility = if visibility == "opensearch" {
            "elasticsearch:\n    url: https://es.example:9200\n    flavor: opensearch"
        } else {
            "postgres:\n    database: temporal_visibility"
        };
        let text = format!(
            "cluster:\n  name: local-dev\n  temporal_version: \"{yaml_version}\"\n  environment: development\n\
             \x20 frontend: {{ address: 127.0.0.1:7233, http_address: 127.0.0.1:7243 }}\n\
             capacity:\n  peak_workflow_starts_per_second: 5\n  activities_per_workflow: 4\n  average_workflow_duration: 10m\n\
             persistence:\n  postgres:\n    host: 127.0.0.1\n    database: temporal\n    user: temporal\n    password: env:TEMPORAL_DB_PASSWORD\n\
             visibility:\n  {visibility}\nnamespaces: [ {{ name: demo, retention: 3d }} ]\n"
        );
        crate::config::load_str(&text, "test.yaml").unwrap().config
    }

    fn v(s: &str) -> TemporalVersion {
        s.parse().unwrap()
    }

    #[test]
    fn estimates_and_checks_for_postgres_visibility() {
        let p = build(
            &config("1.27.4", "pg"),
            v("1.27.4"),
            FromSource::Flag,
            v("1.31.2"),
            10,
            &versions::HopOptions::default(),
        )
        .unwrap();
        assert_eq!(p.hops.len(), 4);
        assert_eq!(p.estimated_minutes_total, 60);
        assert!(p.hops[2].estimate_is_lower_bound);
        let offline: Vec<&str> = p
            .preflight
            .iter()
            .filter(|c| c.offline)
            .map(|c| c.name)
            .collect();
        assert!(offline.contains(&"target-release") && offline.contains(&"visibility-store"));
        assert!(p.failed_checks().is_empty());
    }

    #[test]
    fn opensearch_before_1_30_1_fails_preflight_and_drops_rewrite_warnings() {
        let p = build(
            &config("1.28.4", "opensearch"),
            v("1.28.4"),
            FromSource::Flag,
            v("1.31.2"),
            10,
            &versions::HopOptions::default(),
        )
        .unwrap();
        let failed = p.failed_checks();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].detail.contains("1.29.7"), "{}", failed[0].detail);
        assert!(p.hops.iter().all(|h| !h.estimate_is_lower_bound));
        assert_eq!(
            p.hops[1].visibility_target,
            VisibilityTarget::Elasticsearch(13)
        );
    }

    #[test]
    fn rewrite_estimates_grow_with_the_rows_and_count_in_the_hop() {
        let mut p = build(
            &config("1.29.7", "pg"),
            v("1.29.7"),
            FromSource::Flag,
            v("1.31.2"),
            10,
            &versions::HopOptions::default(),
        )
        .unwrap();
        let before = p.estimated_minutes_total;
        add_rewrite_estimates(
            &mut p,
            &RowCount {
                rows: 35_000_000,
                estimated: true,
            },
        );
        let per_hop = |v: versions::SchemaVersion| {
            (versions::visibility_rewrite_seconds(v, 35_000_000).unwrap() / 60.0).ceil() as u64
        };
        assert_eq!(
            p.hops[0].estimated_minutes,
            15 + per_hop(versions::SchemaVersion::new(1, 13))
        );
        assert_eq!(
            p.hops[1].estimated_minutes,
            15 + per_hop(versions::SchemaVersion::new(1, 14))
        );
        assert!(p.estimated_minutes_total > before);
        assert!(
            p.hops[1]
                .hop
                .warnings
                .iter()
                .any(|w| w.contains("estimated rewrite time") && w.contains("about 35000000 rows")),
            "{:?}",
            p.hops[1].hop.warnings
        );
    }
}
