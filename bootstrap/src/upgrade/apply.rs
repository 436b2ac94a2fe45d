//! `upgrade apply`: the hops, one at a time, resumable.
//!
//! Flow per hop (each phase recorded in the state file before the next starts):
//! 1. check the cluster runs the hop's `from` (or already its `to`): anything else is refused,
//!    so a hop can never skip a minor release;
//! 2. schema: read the current versions; migrate to the hop's exact versions unless already
//!    there; read again to verify (schema first: no pod of the new release starts before this);
//! 3. roll the services through the [`Executor`] (skipped when the cluster already reports `to`);
//! 4. wait (bounded) until the cluster reports `to`;
//! 5. soak: the version must stay `to` for the soak time (the history service reloads its shards).
//!
//! Guarantees: a re-run continues at the recorded phase (a kill during the soak keeps the time
//! already soaked); a converged run (state done, or the cluster already at the target) makes no
//! write; the schema never goes backwards (the migrator is only called with a higher target).
//! Assumptions: one `upgrade apply` at a time per cluster; the [`SchemaMigrator`] honours its
//! contract (idempotent, forward-only).
//! Caveats: probe errors while the frontend restarts are tolerated until the wait budget ends.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::plan::VisibilityStore;
use super::state::{self, HopState, Phase, UpgradeState};
use super::{
    Clock, ClusterProbe, CurrentSchemas, Executor, SchemaMigrator, UpgradeError, VisibilityTarget,
};
use crate::config::types::TemporalVersion;
use crate::versions::{self, Hop, UpgradeRefusal};

/// What `upgrade apply` was asked to do.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub cluster: String,
    pub to: TemporalVersion,
    /// `--from`: must match what the cluster reports.
    pub from_hint: Option<TemporalVersion>,
    pub store: VisibilityStore,
    pub soak: Duration,
    pub wait_timeout: Duration,
    pub poll_interval: Duration,
    pub state_path: PathBuf,
}

/// What happened in one hop during this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HopReport {
    pub from: TemporalVersion,
    pub to: TemporalVersion,
    pub actions: Vec<String>,
}

/// What happened in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub cluster: String,
    pub to: TemporalVersion,
    pub resumed: bool,
    /// Nothing was to do (already at the target, or the recorded upgrade is complete).
    pub converged: bool,
    pub hops: Vec<HopReport>,
    pub state_file: String,
}

fn log(msg: &str) {
    tracing::info!("{msg}");
    eprintln!("upgrade: {msg}");
}

/// Rebuilds and checks the hops recorded in a state file.
fn hops_from_state(s: &UpgradeState) -> Result<Vec<Hop>, UpgradeError> {
    let mut hops = Vec::new();
    for (i, h) in s.hops.iter().enumerate() {
        let mut one = versions::plan_hops(h.from, h.to)?;
        if one.len() != 1 {
            return Err(UpgradeRefusal::SkippedMinor {
                index: i + 1,
                from: h.from,
                to: h.to,
            }
            .into());
        }
        hops.push(one.remove(0));
    }
    versions::check_hops(&hops)?;
    Ok(hops)
}

fn at_least(
    current: &CurrentSchemas,
    temporal: versions::SchemaVersion,
    vis: VisibilityTarget,
) -> bool {
    let t = current.postgres_temporal.is_some_and(|c| c >= temporal);
    let v = match vis {
        VisibilityTarget::Postgres(want) => current.postgres_visibility.is_some_and(|c| c >= want),
        VisibilityTarget::Elasticsearch(want) => current.elasticsearch.is_some_and(|c| c >= want),
        VisibilityTarget::Sqlite => true,
    };
    t && v
}

fn fmt_current(c: &CurrentSchemas) -> String {
    let o = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    format!(
        "temporal {} / visibility {} / es {}",
        o(c.postgres_temporal.map(|v| v.to_string())),
        o(c.postgres_visibility.map(|v| v.to_string())),
        o(c.elasticsearch.map(|v| format!("v{v}")))
    )
}

/// Runs (or resumes) the upgrade.
pub async fn apply<M, P, E, C>(
    req: &ApplyRequest,
    migrator: &M,
    probe: &P,
    executor: &E,
    clock: &C,
) -> Result<ApplyReport, UpgradeError>
where
    M: SchemaMigrator,
    P: ClusterProbe,
    E: Executor,
    C: Clock,
{
    let path = &req.state_path;
    let recorded = state::load(path)?;
    let running = probe.server_version().await?;
    let mut report = ApplyReport {
        cluster: req.cluster.clone(),
        to: req.to,
        resumed: false,
        converged: false,
        hops: Vec::new(),
        state_file: path.display().to_string(),
    };

    let (mut st, hops) = match recorded {
        Some(s) if s.cluster != req.cluster => {
            return Err(UpgradeError::Invalid(format!(
                "{} records an upgrade of cluster {}, not {}: pass another --state",
                path.display(),
                s.cluster,
                req.cluster
            )));
        }
        Some(s) if !s.is_done() && s.to != req.to => {
            return Err(UpgradeError::Invalid(format!(
                "{} records an unfinished upgrade to {}: finish it first (re-run with --to {}), or move the file away if that upgrade was abandoned",
                path.display(),
                s.to,
                s.to
            )));
        }
        Some(s) if !s.is_done() => {
            let hops = hops_from_state(&s)?;
            report.resumed = true;
            log(&format!(
                "resuming the upgrade to {} recorded in {} at hop {}",
                s.to,
                path.display(),
                s.next_hop().map(|i| i + 1).unwrap_or(0)
            ));
            (s, hops)
        }
        done_or_none => {
            if let Some(from) = req.from_hint
                && from != running
            {
                return Err(UpgradeError::Invalid(format!(
                    "--from {from} but the cluster reports {running}: re-plan from the running release"
                )));
            }
            let hops = versions::plan_hops(running, req.to)?;
            if hops.is_empty() {
                report.converged = true;
                log(&format!(
                    "the cluster already runs {}: nothing to do",
                    req.to
                ));
                return Ok(report);
            }
            if let Some(done) = done_or_none {
                log(&format!(
                    "{} records a finished upgrade to {}; starting a new one",
                    path.display(),
                    done.to
                ));
            }
            let s = UpgradeState {
                format: UpgradeState::FORMAT,
                cluster: req.cluster.clone(),
                from: running,
                to: req.to,
                hops: hops
                    .iter()
                    .map(|h| HopState {
                        from: h.from,
                        to: h.to,
                        phase: Phase::Pending,
                        version_seen_at: None,
                        updated_at: None,
                    })
                    .collect(),
            };
            state::save(path, &s)?;
            (s, hops)
        }
    };

    let mut running = running;
    while let Some(i) = st.next_hop() {
        let hop = &hops[i];
        let mut actions = Vec::new();
        let label = format!("hop {}/{} {} -> {}", i + 1, hops.len(), hop.from, hop.to);

        if st.hops[i].phase == Phase::Pending {
            if running != hop.from && running != hop.to {
                return Err(UpgradeError::Invalid(format!(
                    "{label}: the cluster reports {running}, expected {} (or {}); refusing to continue, since that could skip a minor release. Check what changed it, then re-plan",
                    hop.from, hop.to
                )));
            }
            let temporal = hop.schemas.postgres_temporal;
            let vis = req.store.target(hop);
            let before = migrator.current_versions().await?;
            if at_least(&before, temporal, vis) {
                actions.push(format!(
                    "schema already at or above target ({})",
                    fmt_current(&before)
                ));
            } else {
                log(&format!(
                    "{label}: schema {} -> temporal {temporal}, visibility {vis:?}",
                    fmt_current(&before)
                ));
                migrator.migrate_to(temporal, vis).await?;
                let after = migrator.current_versions().await?;
                if !at_least(&after, temporal, vis) {
                    return Err(UpgradeError::Schema(format!(
                        "{label}: after migrating, the stores report {}; expected temporal {temporal}, visibility {vis:?}",
                        fmt_current(&after)
                    )));
                }
                actions.push(format!(
                    "schema {} -> {}",
                    fmt_current(&before),
                    fmt_current(&after)
                ));
            }
            st.hops[i].phase = Phase::SchemaApplied;
            st.hops[i].updated_at = Some(clock.now());
            state::save(path, &st)?;
        }

        if st.hops[i].phase == Phase::SchemaApplied {
            if running == hop.to {
                actions.push(format!("services already report {}", hop.to));
            } else {
                log(&format!(
                    "{label}: rolling the services ({})",
                    executor.name()
                ));
                let out = executor.roll(hop).await?;
                actions.push(format!("rolled: {}", out.detail));
            }
            st.hops[i].phase = Phase::Rolled;
            st.hops[i].updated_at = Some(clock.now());
            state::save(path, &st)?;
        }

        if st.hops[i].phase == Phase::Rolled {
            let budget = executor.wait_budget(req.wait_timeout).as_secs();
            let start = clock.now();
            let mut last: String;
            loop {
                match probe.server_version().await {
                    Ok(v) if v == hop.to => {
                        running = v;
                        break;
                    }
                    Ok(v) if v != hop.from => {
                        return Err(UpgradeError::Invalid(format!(
                            "{label}: the cluster reports {v} while rolling to {}: refusing to continue",
                            hop.to
                        )));
                    }
                    Ok(v) => last = v.to_string(),
                    Err(e) => last = e.to_string(),
                }
                let waited = clock.now().saturating_sub(start);
                if waited >= budget {
                    return Err(UpgradeError::Timeout {
                        expected: hop.to,
                        waited_secs: waited,
                        last_seen: last,
                    });
                }
                clock.sleep(req.poll_interval).await;
            }
            let now = clock.now();
            actions.push(format!("cluster reports {}", hop.to));
            st.hops[i].phase = Phase::Soaking;
            st.hops[i].version_seen_at = Some(now);
            st.hops[i].updated_at = Some(now);
            state::save(path, &st)?;
        }

        if st.hops[i].phase == Phase::Soaking {
            let since = st.hops[i].version_seen_at.unwrap_or_else(|| clock.now());
            let until = since + req.soak.as_secs();
            if clock.now() < until {
                log(&format!(
                    "{label}: soaking {}s (history reloads its shards)",
                    until - clock.now()
                ));
            }
            while clock.now() < until {
                let left = until - clock.now();
                clock
                    .sleep(req.poll_interval.min(Duration::from_secs(left)))
                    .await;
                if let Ok(v) = probe.server_version().await
                    && v != hop.to
                {
                    return Err(UpgradeError::Regressed {
                        expected: hop.to,
                        seen: v,
                    });
                }
            }
            actions.push(format!("soaked {}s", req.soak.as_secs()));
            st.hops[i].phase = Phase::Done;
            st.hops[i].updated_at = Some(clock.now());
            state::save(path, &st)?;
            running = hop.to;
            log(&format!("{label}: done"));
        }
        report.hops.push(HopReport {
            from: hop.from,
            to: hop.to,
            actions,
        });
    }
    if report.hops.is_empty() {
        report.converged = true;
    }
    Ok(report)
}
