//! The daemon's Prometheus metrics. Names are a contract with `dashboards/` and `alerts/`.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reconcile::{Action, ErrorKind, StepReport, StepStatus};
use crate::serve::LabelText;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub step: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// A path under `pki.dir`, which the configuration names: escaped like any text.
    pub certificate: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    pub check: String,
    pub severity: String,
    /// Empty for cluster-wide findings. Namespace names are validated, but escape anyway.
    pub namespace: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// The periodic audit's metrics; registered only when `audit:` is configured, so an install
/// without it exports none (the stale alert keys on their presence).
struct AuditMetrics {
    findings: Family<AuditLabels, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    runs: Family<OutcomeLabels, Counter>,
}

pub struct Metrics {
    registry: Registry,
    audit: Option<AuditMetrics>,
    runs: Counter,
    failures: Family<FailureLabels, Counter>,
    step_duration: Family<StepLabels, Histogram>,
    last_success: Gauge<f64, AtomicU64>,
    certificate_expiry: Family<CertificateLabels, Gauge<f64, AtomicU64>>,
    drift: Family<StepLabels, Gauge>,
    // Encoding takes &Registry; the lock serialises scrapes with registration of new label sets.
    encode_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("temporal_bootstrap");
        let runs = Counter::default();
        registry.register(
            "reconcile_runs",
            "Reconciliation runs started",
            runs.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "step_failures",
            "Failed step executions by step and error class",
            failures.clone(),
        );
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ])
        });
        registry.register(
            "step_duration_seconds",
            "Duration of each step execution",
            step_duration.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last run in which every step converged",
            last_success.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until each managed certificate expires",
            certificate_expiry.clone(),
        );
        let drift = Family::<StepLabels, Gauge>::default();
        registry.register(
            "drift",
            "Changes or drift found by the latest run of each step (0 when converged)",
            drift.clone(),
        );
        Self {
            registry,
            audit: None,
            runs,
            failures,
            step_duration,
            last_success,
            certificate_expiry,
            drift,
            encode_lock: Mutex::new(()),
        }
    }

    pub fn record_run(&self, reports: &[StepReport], _elapsed: Duration) {
        self.runs.inc();
        for r in reports {
            let step = r.step.as_str().to_string();
            if matches!(r.status, StepStatus::NotImplemented | StepStatus::Skipped) {
                continue;
            }
            self.step_duration
                .get_or_create(&StepLabels { step: step.clone() })
                .observe(r.duration_ms as f64 / 1000.0);
            if r.status == StepStatus::Failed {
                let error = r.error_kind.map_or("internal", ErrorKind::as_str);
                self.failures
                    .get_or_create(&FailureLabels {
                        step: step.clone(),
                        error: error.into(),
                    })
                    .inc();
            }
            let drift = match r.status {
                StepStatus::Applied => r
                    .changes
                    .iter()
                    .filter(|c| c.action == Action::Drift)
                    .count(),
                _ => r.changes.len(),
            };
            self.drift
                .get_or_create(&StepLabels { step })
                .set(drift as i64);
        }
    }

    /// Registers the audit metrics; the last-success time starts at now, so an audit that never
    /// succeeds is noticed (TemporalBootstrapAuditStale) and a fresh start is not.
    pub fn enable_audit(&mut self) {
        let findings = Family::<AuditLabels, Gauge>::default();
        self.registry.register(
            "audit_findings",
            "Findings of the last completed audit by check, severity and namespace",
            findings.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        last_success.set(unix_now());
        self.registry.register(
            "audit_last_success_timestamp_seconds",
            "Unix time of the last completed audit",
            last_success.clone(),
        );
        let runs = Family::<OutcomeLabels, Counter>::default();
        self.registry
            .register("audit_runs", "Audits run, by outcome", runs.clone());
        self.audit = Some(AuditMetrics {
            findings,
            last_success,
            runs,
        });
    }

    /// Replaces the findings series with those of a completed audit (only non-zero counts).
    pub fn record_audit(&self, counts: &std::collections::BTreeMap<(String, String, String), u64>) {
        let Some(a) = &self.audit else { return };
        {
            // Cleared and refilled under the encode lock: a scrape never sees half an audit.
            let _guard = self.encode_lock.lock().unwrap_or_else(|p| p.into_inner());
            a.findings.clear();
            for ((check, severity, namespace), n) in counts {
                a.findings
                    .get_or_create(&AuditLabels {
                        check: check.clone(),
                        severity: severity.clone(),
                        namespace: LabelText(namespace.clone()),
                    })
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        a.last_success.set(unix_now());
        a.runs
            .get_or_create(&OutcomeLabels {
                outcome: "ok".into(),
            })
            .inc();
    }

    pub fn record_audit_error(&self) {
        if let Some(a) = &self.audit {
            a.runs
                .get_or_create(&OutcomeLabels {
                    outcome: "error".into(),
                })
                .inc();
        }
    }

    pub fn mark_success(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_success.set(now);
    }

    pub fn set_certificate_expiry(&self, expiry: Vec<(String, f64)>) {
        for (certificate, seconds) in expiry {
            self.certificate_expiry
                .get_or_create(&CertificateLabels {
                    certificate: LabelText(certificate),
                })
                .set(seconds);
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let _guard = self.encode_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_paths_with_quotes_do_not_break_the_scrape() {
        let m = Metrics::default();
        m.set_certificate_expiry(vec![("pki\"x/ca.pem".into(), 10.0)]);
        let text = m.encode().unwrap();
        assert!(text.contains(r#"certificate="pki\"x/ca.pem""#), "{text}");
    }
    use crate::reconcile::{Change, StepName};

    #[test]
    fn audit_metrics_exist_only_when_enabled_and_are_replaced_per_audit() {
        let m = Metrics::new();
        assert!(
            !m.encode().unwrap().contains("audit"),
            "no audit configured"
        );
        let mut m = Metrics::new();
        m.enable_audit();
        let text = m.encode().unwrap();
        assert!(
            text.contains("temporal_bootstrap_audit_last_success_timestamp_seconds "),
            "{text}"
        );
        let key = |c: &str, s: &str, n: &str| (c.to_string(), s.to_string(), n.to_string());
        m.record_audit(
            &[
                (key("payload-plaintext", "critical", "clinic"), 2),
                (key("frontend-plaintext", "critical", ""), 1),
            ]
            .into(),
        );
        let text = m.encode().unwrap();
        assert!(text.contains(r#"temporal_bootstrap_audit_findings{check="payload-plaintext",severity="critical",namespace="clinic"} 2"#), "{text}");
        assert!(
            text.contains("temporal_bootstrap_audit_runs_total{outcome=\"ok\"} 1"),
            "{text}"
        );
        m.record_audit(&[(key("frontend-plaintext", "critical", ""), 1)].into());
        let text = m.encode().unwrap();
        assert!(
            !text.contains("payload-plaintext"),
            "a fixed finding's series is dropped: {text}"
        );
        assert!(text.contains(r#"check="frontend-plaintext""#), "{text}");
    }

    #[test]
    fn exposes_the_contract_names() {
        let m = Metrics::new();
        let reports = vec![
            StepReport {
                step: StepName::Namespaces,
                status: StepStatus::Failed,
                changes: vec![],
                duration_ms: 1200,
                message: Some("down".into()),
                error_class: Some(ErrorKind::Unreachable.class()),
                error_kind: Some(ErrorKind::Unreachable),
            },
            StepReport {
                step: StepName::Certificates,
                status: StepStatus::Pending,
                changes: vec![Change::new(Action::Drift, "x", "y")],
                duration_ms: 3,
                message: None,
                error_class: None,
                error_kind: None,
            },
        ];
        m.record_run(&reports, Duration::from_secs(1));
        m.mark_success();
        m.set_certificate_expiry(vec![("frontend".into(), 86400.0)]);
        let text = m.encode().unwrap();
        for needle in [
            "temporal_bootstrap_reconcile_runs_total 1",
            "temporal_bootstrap_step_failures_total{step=\"namespaces\",error=\"unreachable\"} 1",
            "temporal_bootstrap_step_duration_seconds_bucket{le=\"2.5\",step=\"namespaces\"} 1",
            "temporal_bootstrap_last_success_timestamp_seconds ",
            "temporal_bootstrap_certificate_expiry_seconds{certificate=\"frontend\"} 86400",
            "temporal_bootstrap_drift{step=\"certificates\"} 1",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }
}
