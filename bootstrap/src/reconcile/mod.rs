//! The step shape and its runner: the leaf every adapter builds on. A step observes, diffs,
//! applies and verifies one part of the platform; the runner takes the steps it is given (the
//! registry lives above the adapters, in [`crate::steps`]) and runs them in dependency order.
//!
//! Flow: `plan` asks every selected step for its pending changes (no writes); `apply` asks again
//! and applies what is pending, then the step verifies. A failing step marks its dependants as
//! skipped; independent steps still run and are reported.
//!
//! Guarantees: a converged step reports no change and makes no write; steps never run before the
//! steps they depend on; the report lists every selected step exactly once, in order.

mod error;

pub use error::{ErrorClass, ErrorKind, StepError};

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::config::PlatformConfig;

/// The steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    Certificates,
    Persistence,
    Visibility,
    Cluster,
    Namespaces,
    SearchAttributes,
    AlertRules,
    Dashboards,
}

impl StepName {
    pub const ALL: [StepName; 8] = [
        Self::Certificates,
        Self::Persistence,
        Self::Visibility,
        Self::Cluster,
        Self::Namespaces,
        Self::SearchAttributes,
        Self::AlertRules,
        Self::Dashboards,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Certificates => "certificates",
            Self::Persistence => "persistence",
            Self::Visibility => "visibility",
            Self::Cluster => "cluster",
            Self::Namespaces => "namespaces",
            Self::SearchAttributes => "search-attributes",
            Self::AlertRules => "alert-rules",
            Self::Dashboards => "dashboards",
        }
    }

    /// Steps that must succeed before this one runs.
    pub fn depends_on(self) -> &'static [StepName] {
        match self {
            Self::Certificates | Self::Persistence | Self::AlertRules | Self::Dashboards => &[],
            Self::Visibility => &[Self::Persistence],
            Self::Cluster => &[Self::Certificates, Self::Persistence, Self::Visibility],
            Self::Namespaces => &[Self::Cluster],
            Self::SearchAttributes => &[Self::Namespaces],
        }
    }

    /// Whether the cluster depends on this step: the daemon's readiness follows these. The
    /// others (Prometheus rules, Grafana dashboards) serve operators' tools; their outage shows in
    /// metrics and `status`, and must not fail a `helm --wait` or an upgrade.
    pub fn cluster_needs(self) -> bool {
        !matches!(self, Self::AlertRules | Self::Dashboards)
    }

    /// Parses `--only a,b,c`; the result keeps the fixed run order whatever order was given.
    pub fn parse_list(s: &str) -> Result<Vec<StepName>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let step = Self::ALL
                .into_iter()
                .find(|n| n.as_str() == part)
                .ok_or_else(|| {
                    format!(
                        "unknown step `{part}`; valid steps: {}",
                        Self::ALL.map(|n| n.as_str()).join(", ")
                    )
                })?;
            if !out.contains(&step) {
                out.push(step);
            }
        }
        if out.is_empty() {
            return Err(format!(
                "--only needs at least one step; valid steps: {}",
                Self::ALL.map(|n| n.as_str()).join(", ")
            ));
        }
        out.sort();
        Ok(out)
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// Something outside our control differs; reported, never changed automatically.
    Drift,
}

/// One pending or applied change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    /// What is changed, e.g. `namespace payments` or `file pki/frontend.pem`.
    pub resource: String,
    /// Human detail, e.g. `retention 7d -> 30d`. Never contains a secret.
    pub detail: String,
}

impl Change {
    pub fn new(action: Action, resource: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            action,
            resource: resource.into(),
            detail: detail.into(),
        }
    }
}

pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send + 'a>>;

/// Everything a step may read.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<PlatformConfig>,
    /// Directory of the configuration file; relative paths in it resolve against this.
    pub base_dir: PathBuf,
    /// Do not contact any system (plan only what can be known from files).
    pub offline: bool,
    /// Overwrite what was changed outside the bootstrap (e.g. a dashboard edited in Grafana).
    pub force: bool,
}

impl Context {
    pub fn resolve_path(&self, p: &std::path::Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// One part of the platform: observe -> diff -> apply -> verify.
pub trait Step: Send + Sync {
    fn name(&self) -> StepName;
    /// Whether this step is configured at all (e.g. no `pki:` section means no certificates).
    /// `Err` explains why it cannot run (reported as the reason it was skipped).
    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        let _ = ctx;
        Ok(true)
    }
    /// Whether the step can plan without contacting any system.
    fn works_offline(&self) -> bool {
        false
    }
    /// Observe and diff: the pending changes. Must not write anything.
    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>>;
    /// Apply `pending` (what `plan` returned just before) and verify; returns what was done.
    fn apply<'a>(&'a self, ctx: &'a Context, pending: &'a [Change]) -> StepFuture<'a, Vec<Change>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Nothing to do.
    UpToDate,
    /// Nothing we would change, but something differs outside our control (reported only:
    /// e.g. a namespace not in platform.yaml, a dashboard edited in Grafana).
    Drift,
    /// Changes are pending (plan, or apply with --dry-run).
    Pending,
    /// Changes were applied and verified.
    Applied,
    /// Not run: not configured, offline, or a dependency failed.
    Skipped,
    /// Not built yet in this release.
    NotImplemented,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: StepName,
    pub status: StepStatus,
    pub changes: Vec<Change>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// Runs the selected steps of `registry` (all when `only` is empty) in order.
pub async fn run(
    registry: &[Box<dyn Step>],
    ctx: &Context,
    mode: Mode,
    only: &[StepName],
) -> Vec<StepReport> {
    run_until(registry, ctx, mode, only, &AtomicBool::new(false)).await
}

/// Like [`run`], but stops before the next step once `stop` is set (a step in progress finishes:
/// a step is never interrupted half-way). Steps not started are not reported.
pub async fn run_until(
    registry: &[Box<dyn Step>],
    ctx: &Context,
    mode: Mode,
    only: &[StepName],
    stop: &AtomicBool,
) -> Vec<StepReport> {
    let mut reports: Vec<StepReport> = Vec::new();
    let mut blocked: std::collections::BTreeSet<StepName> = std::collections::BTreeSet::new();
    for name in StepName::ALL {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            tracing::info!(step = %name, "stop requested; not starting further steps");
            break;
        }
        let started = Instant::now();
        let report =
            |status, changes, message: Option<String>, error: Option<ErrorKind>| StepReport {
                step: name,
                status,
                changes,
                duration_ms: started.elapsed().as_millis() as u64,
                message,
                error_class: error.map(ErrorKind::class),
                error_kind: error,
            };
        if let Some(why) = blocked_by(name, &blocked, &reports) {
            reports.push(report(StepStatus::Skipped, vec![], Some(why), None));
            blocked.insert(name);
            continue;
        }
        let step = match choose(registry, name, ctx) {
            Ok(step) => step,
            Err((status, why)) => {
                reports.push(report(status, vec![], Some(why), None));
                continue;
            }
        };
        if ctx.offline && !step.works_offline() {
            reports.push(report(
                StepStatus::Skipped,
                vec![],
                Some("needs network (offline)".into()),
                None,
            ));
            continue;
        }
        tracing::info!(step = %name, "planning");
        let pending = match step.plan(ctx).await {
            Ok(p) => p,
            Err(e) => {
                reports.push(report(
                    StepStatus::Failed,
                    vec![],
                    Some(e.message),
                    Some(e.kind),
                ));
                blocked.insert(name);
                continue;
            }
        };
        let pending_writes = pending.iter().any(|c| c.action != Action::Drift);
        if mode == Mode::Plan || !pending_writes {
            let status = if pending.is_empty() {
                StepStatus::UpToDate
            } else if !pending_writes {
                StepStatus::Drift
            } else {
                StepStatus::Pending
            };
            reports.push(report(status, pending, None, None));
            continue;
        }
        tracing::info!(step = %name, changes = pending.len(), "applying");
        match step.apply(ctx, &pending).await {
            Ok(done) => reports.push(report(StepStatus::Applied, done, None, None)),
            Err(e) => {
                reports.push(report(
                    StepStatus::Failed,
                    pending,
                    Some(e.message),
                    Some(e.kind),
                ));
                blocked.insert(name);
            }
        }
    }
    reports
}

/// Why `name` must not run: a dependency failed, or was itself skipped because of a failure
/// upstream (it would act on a platform that is known not to be ready).
fn blocked_by(
    name: StepName,
    blocked: &std::collections::BTreeSet<StepName>,
    reports: &[StepReport],
) -> Option<String> {
    let blocker = name.depends_on().iter().find(|d| blocked.contains(*d))?;
    Some(match reports.iter().find(|r| r.step == *blocker) {
        Some(r) if r.status == StepStatus::Failed => format!("{blocker} failed"),
        Some(r) => format!(
            "{blocker} skipped ({})",
            r.message.as_deref().unwrap_or("upstream failure")
        ),
        None => format!("{blocker} did not run"),
    })
}

/// The implementation of `name` to run. Several may share a name (e.g. `visibility` for
/// Elasticsearch and for PostgreSQL); the one whose `enabled` says yes for this configuration
/// runs. `Err`: the status to report instead, and why.
fn choose<'r>(
    registry: &'r [Box<dyn Step>],
    name: StepName,
    ctx: &Context,
) -> Result<&'r dyn Step, (StepStatus, String)> {
    let mut candidates = registry.iter().filter(|s| s.name() == name).peekable();
    if candidates.peek().is_none() {
        return Err((StepStatus::NotImplemented, "not implemented yet".into()));
    }
    let mut why_not = "not configured".to_string();
    for c in candidates {
        match c.enabled(ctx) {
            Ok(true) => return Ok(c.as_ref()),
            Ok(false) => {}
            Err(why) => why_not = why.message,
        }
    }
    Err((StepStatus::Skipped, why_not))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keeps_run_order_and_rejects_unknown_steps() {
        assert_eq!(
            StepName::parse_list("namespaces,certificates").unwrap(),
            vec![StepName::Certificates, StepName::Namespaces]
        );
        let err = StepName::parse_list("certs").unwrap_err();
        assert!(
            err.contains("unknown step `certs`") && err.contains("search-attributes"),
            "{err}"
        );
        assert!(StepName::parse_list(" , ").is_err());
    }

    #[test]
    fn dependencies_point_backwards() {
        for step in StepName::ALL {
            for dep in step.depends_on() {
                assert!(dep < &step, "{step} depends on later step {dep}");
            }
        }
    }
}
