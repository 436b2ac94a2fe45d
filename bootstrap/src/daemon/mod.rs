//! `temporal-bootstrap run`: reconcile every interval and serve `/healthz`, `/readyz`, `/metrics`.
//!
//! Flow: every `interval`, apply the steps whose backoff has expired; a failing step backs off
//! exponentially (interval x 2^failures, capped) while the others keep converging. SIGTERM/SIGINT
//! let the current step finish, then the loop exits and the HTTP server shuts down.
//!
//! Guarantees: `/healthz` answers while the process runs; `/readyz` is 200 once a run converged
//! every step the cluster needs ([`StepName::cluster_needs`]) and while the latest run had no
//! failure among them: a Grafana or Prometheus outage shows in `/metrics` and `status`, not in
//! readiness. `/metrics` exposes the families listed in `dashboards/README.md` (the contract
//! dashboards and alerts rely on).
//!
//! Assumptions: one daemon per platform (steps that need it take their own locks, e.g. the
//! PostgreSQL advisory lock), so two daemons are safe but wasteful.

pub mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::reconcile::{Context, Mode, StepName, StepStatus};
use metrics::Metrics;

/// Longest wait before retrying a failing step.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}; choose a free address with --listen")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Shared between the loop and the HTTP handlers.
pub struct DaemonState {
    pub metrics: Metrics,
    converged_once: AtomicBool,
    last_run_ok: AtomicBool,
}

impl DaemonState {
    pub fn ready(&self) -> bool {
        self.converged_once.load(Ordering::SeqCst) && self.last_run_ok.load(Ordering::SeqCst)
    }
}

/// Per-step retry schedule.
#[derive(Debug, Default)]
struct Backoff {
    failures: BTreeMap<StepName, (u32, Instant)>,
}

impl Backoff {
    fn due(&self, step: StepName, now: Instant) -> bool {
        self.failures
            .get(&step)
            .is_none_or(|(_, next)| *next <= now)
    }
    /// Steps to run now: not backing off, and none of their dependencies backing off (a step
    /// must not act on a platform whose earlier step is known to be failing).
    fn due_steps(&self, now: Instant) -> Vec<StepName> {
        let mut due: Vec<StepName> = Vec::new();
        for step in StepName::ALL {
            if self.due(step, now) && step.depends_on().iter().all(|d| due.contains(d)) {
                due.push(step);
            }
        }
        due
    }

    fn failed(&mut self, step: StepName, interval: Duration, now: Instant) -> Duration {
        let n = self.failures.get(&step).map_or(0, |(n, _)| *n) + 1;
        let wait = interval.saturating_mul(1u32 << n.min(16)).min(MAX_BACKOFF);
        self.failures.insert(step, (n, now + wait));
        wait
    }
    fn succeeded(&mut self, step: StepName) {
        self.failures.remove(&step);
    }
}

/// Runs until SIGTERM/SIGINT. Returns after the current step has finished.
pub async fn run(ctx: Context, interval: Duration, listen: SocketAddr) -> Result<(), DaemonError> {
    let mut metrics = Metrics::new();
    if ctx.config.audit.is_some() {
        metrics.enable_audit();
    }
    let state = Arc::new(DaemonState {
        metrics,
        converged_once: AtomicBool::new(false),
        last_run_ok: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: listen,
            source,
        })?;
    let app = router(state.clone());
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(%listen, interval_s = interval.as_secs_f64(), "daemon started");

    let signal_stop = stop.clone();
    let signal_tx = shutdown_tx.clone();
    tokio::spawn(async move {
        crate::serve::wait_for_signal().await;
        tracing::info!("stop requested: finishing the current step");
        signal_stop.store(true, Ordering::SeqCst);
        let _ = signal_tx.send(true);
    });

    if let Some(audit) = ctx.config.audit.clone() {
        tokio::spawn(audit_loop(
            ctx.clone(),
            audit,
            state.clone(),
            shutdown_rx.clone(),
        ));
    }

    let mut backoff = Backoff::default();
    let mut wake = shutdown_rx.clone();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let due = backoff.due_steps(now);
        let started = Instant::now();
        let reports = crate::steps::run_until(&ctx, Mode::Apply, &due, &stop).await;
        state.metrics.record_run(&reports, started.elapsed());
        let mut converged: Vec<StepName> = Vec::new();
        for r in &reports {
            match r.status {
                StepStatus::Failed => {
                    let wait = backoff.failed(r.step, interval, Instant::now());
                    tracing::warn!(step = %r.step, error = r.message.as_deref().unwrap_or(""), retry_in_s = wait.as_secs(), "step failed");
                }
                // Skipped because a step it depends on failed (directly or further up).
                StepStatus::Skipped
                    if r.message
                        .as_deref()
                        .is_some_and(|m| m.ends_with(" failed") || m.contains(" skipped (")) => {}
                _ => {
                    backoff.succeeded(r.step);
                    converged.push(r.step);
                }
            }
        }
        let Convergence { all_ok, needed_ok } = convergence(&converged);
        state.last_run_ok.store(needed_ok, Ordering::SeqCst);
        if needed_ok {
            state.converged_once.store(true, Ordering::SeqCst);
        }
        if all_ok {
            state.metrics.mark_success();
        }
        if let Some(expiry) = certificate_expiry(&ctx) {
            state.metrics.set_certificate_expiry(expiry);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.wait_for(|s| *s) => {}
        }
    }
    let _ = shutdown_tx.send(true);
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Serve(e)),
        Err(e) => Err(DaemonError::Serve(std::io::Error::other(e.to_string()))),
    }
}

/// Audits at start and then every `audit.interval`, exporting the findings per check, severity
/// and namespace. The audit is read-only; a failed audit is logged and counted, never fatal.
async fn audit_loop(
    ctx: Context,
    cfg: crate::config::model::AuditConfig,
    state: Arc<DaemonState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let opts = crate::audit::AuditOptions {
        namespaces: Vec::new(),
        since: cfg.since.as_duration(),
        sample: cfg.sample,
    };
    loop {
        let started = Instant::now();
        match crate::audit::run(&ctx, &opts, "platform.yaml").await {
            Ok(report) => {
                let mut counts = std::collections::BTreeMap::new();
                for f in &report.findings {
                    *counts
                        .entry((
                            f.check.to_string(),
                            f.severity.as_str().to_string(),
                            f.namespace.clone().unwrap_or_default(),
                        ))
                        .or_insert(0u64) += 1;
                }
                state.metrics.record_audit(&counts);
                tracing::info!(
                    critical = report.summary.critical,
                    warning = report.summary.warning,
                    info = report.summary.info,
                    histories = report.inputs.histories_read,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "audit done"
                );
            }
            Err(e) => {
                state.metrics.record_audit_error();
                tracing::warn!(error = %e, "audit failed; next try in one interval");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval.as_duration()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// What a run achieved, from the steps that converged in it.
#[derive(Debug, PartialEq, Eq)]
struct Convergence {
    /// Every step converged: the platform is fully converged (the success metric).
    all_ok: bool,
    /// Every step the cluster needs converged: readiness.
    needed_ok: bool,
}

/// A step not in `converged` (failed, skipped after a failure, backing off, or interrupted by a
/// stop request) has not converged.
fn convergence(converged: &[StepName]) -> Convergence {
    Convergence {
        all_ok: StepName::ALL.iter().all(|s| converged.contains(s)),
        needed_ok: StepName::ALL
            .iter()
            .filter(|s| s.cluster_needs())
            .all(|s| converged.contains(s)),
    }
}

/// Seconds until expiry per certificate, when the platform has a PKI. Filled in by the PKI module.
fn certificate_expiry(_ctx: &Context) -> Option<Vec<(String, f64)>> {
    None
}

pub fn router(state: Arc<DaemonState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<DaemonState>>) -> impl IntoResponse {
    if state.ready() {
        (
            StatusCode::OK,
            "ready: the steps the cluster needs converged\n",
        )
    } else if state.converged_once.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the latest reconciliation had failures in steps the cluster needs\n",
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not converged yet\n",
        )
    }
}

async fn metrics_handler(State(state): State<Arc<DaemonState>>) -> impl IntoResponse {
    crate::serve::metrics_response(state.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_steps_the_cluster_needs_only() {
        let all = StepName::ALL.to_vec();
        assert_eq!(
            convergence(&all),
            Convergence {
                all_ok: true,
                needed_ok: true
            }
        );
        // Grafana or Prometheus down: not fully converged, still ready.
        for optional in [StepName::AlertRules, StepName::Dashboards] {
            let without: Vec<_> = all.iter().copied().filter(|s| *s != optional).collect();
            assert_eq!(
                convergence(&without),
                Convergence {
                    all_ok: false,
                    needed_ok: true
                },
                "{optional}"
            );
        }
        // Any step the cluster needs missing: not ready.
        for needed in all.iter().copied().filter(|s| s.cluster_needs()) {
            let without: Vec<_> = all.iter().copied().filter(|s| *s != needed).collect();
            assert!(!convergence(&without).needed_ok, "{needed}");
        }
        assert!(!convergence(&[]).needed_ok);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let i = Duration::from_secs(60);
        assert_eq!(
            b.failed(StepName::Cluster, i, now),
            Duration::from_secs(120)
        );
        assert_eq!(
            b.failed(StepName::Cluster, i, now),
            Duration::from_secs(240)
        );
        assert!(!b.due(StepName::Cluster, now));
        assert!(
            b.due(StepName::Namespaces, now),
            "other steps are unaffected"
        );
        for _ in 0..20 {
            b.failed(StepName::Cluster, i, now);
        }
        assert_eq!(b.failed(StepName::Cluster, i, now), MAX_BACKOFF);
        let due = b.due_steps(now);
        assert!(!due.contains(&StepName::Cluster));
        assert!(
            !due.contains(&StepName::Namespaces) && !due.contains(&StepName::SearchAttributes),
            "dependants wait too"
        );
        assert!(due.contains(&StepName::Persistence) && due.contains(&StepName::AlertRules));
        b.succeeded(StepName::Cluster);
        assert!(b.due(StepName::Cluster, now));
        assert_eq!(b.due_steps(now), StepName::ALL.to_vec());
    }
}
