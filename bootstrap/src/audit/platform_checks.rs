//! The checks that read the live platform rather than histories: task queues and workers,
//! versioning, search attributes, security and operations. Pure: observations in, findings out
//! (the driver in `audit/mod.rs` gathers the observations). Every threshold is a named constant
//! or a platform.yaml value; docs/audit.md lists each with its source.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use time::OffsetDateTime;

use super::findings::{Decision, Evidence, Finding, Severity, add_example};
use super::history::HistoryFacts;
use crate::config::model::{PlatformConfig, SloConfig};
use crate::config::types::{SearchAttributeName, SearchAttributeType, TemporalVersion};
use crate::temporal::api::{ExecutionRef, ObservedAttributes, TaskQueueKind, TaskQueueState};

/// When a certificate's remaining validity is a finding: the alert thresholds
/// `certificate_expiry_warning_days` / `_critical_days` (alerts/thresholds.yaml, overridable in
/// observability.alert_thresholds), so the audit and the alerts agree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CertThresholds {
    pub warning: Duration,
    pub critical: Duration,
}
/// The `TemporalReportedProblems` value of a non-determinism failure (server 1.29+,
/// `service/history/workflow/mutable_state_impl.go` UpdateReportedProblemsSearchAttribute).
pub const NDE_PROBLEM: &str = "cause=WorkflowTaskFailedCauseNonDeterministicError";
/// The WorkflowTaskFailed cause of a non-determinism failure, as the history records it.
pub const NDE_CAUSE: &str = "NonDeterministicError";

// ---------------------------------------------------------------------------------------------
// Workers and task queues
// ---------------------------------------------------------------------------------------------

/// One task queue as DescribeTaskQueue saw it.
#[derive(Debug, Clone)]
pub struct QueueObservation {
    pub namespace: String,
    pub task_queue: String,
    pub kind: TaskQueueKind,
    /// The worker pool of platform.yaml that serves it, if declared.
    pub pool: Option<String>,
    pub state: TaskQueueState,
}

/// Backlog without pollers (critical), a declared pool with no worker (warning), a backlog
/// older than `backlog_age_warning` although workers poll (warning).
pub fn task_queues(obs: &[QueueObservation], backlog_age_warning: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for q in obs {
        let name = format!("{} ({} tasks)", q.task_queue, q.kind.as_str());
        let mut counts = BTreeMap::from([
            ("backlog_tasks".to_string(), q.state.backlog_count),
            ("pollers".to_string(), q.state.pollers.len() as u64),
        ]);
        if let Some(age) = q.state.backlog_age {
            counts.insert("backlog_age_seconds".into(), age.as_secs());
        }
        let evidence = Evidence {
            counts,
            names: vec![name.clone()],
            ..Default::default()
        };
        let finding = |check, severity, title: String, fix: String| Finding {
            check,
            severity,
            decision: Decision::WorkerArchitecture,
            namespace: Some(q.namespace.clone()),
            title,
            evidence: evidence.clone(),
            fix,
        };
        if q.state.backlog_count > 0 && q.state.pollers.is_empty() {
            out.push(finding(
                "task-queue-backlog-no-poller",
                Severity::Critical,
                format!(
                    "task queue {name} has {} task(s) waiting and no worker polling it",
                    q.state.backlog_count
                ),
                format!(
                    "start workers for task queue `{}` in namespace `{}` (a worker pool in platform.yaml with this task_queue), or check the workers' task_queue spelling; runbooks/TemporalTaskQueueNoPollers.md",
                    q.task_queue, q.namespace
                ),
            ));
        } else if q.state.pollers.is_empty() && q.pool.is_some() {
            out.push(finding(
                "task-queue-no-poller",
                Severity::Warning,
                format!(
                    "worker pool {} declares task queue {name}, but no worker polled it recently",
                    q.pool.as_deref().unwrap_or_default()
                ),
                "deploy the pool's workers (helm: workers.<pool>) or remove the pool from platform.yaml".into(),
            ));
        } else if q
            .state
            .backlog_age
            .is_some_and(|age| age > backlog_age_warning && !q.state.pollers.is_empty())
        {
            out.push(finding(
                "task-queue-backlog-age",
                Severity::Warning,
                format!(
                    "the oldest task of {name} has waited over {} although workers poll",
                    crate::temporal::api::human(backlog_age_warning)
                ),
                "add workers or slots for this queue (runbooks/scaling-workers.md); check worker CPU and slot usage".into(),
            ));
        }
    }
    out
}

/// Schedule-to-start p95 of one queue, from the SDK metrics in Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySample {
    pub namespace: String,
    pub task_queue: String,
    /// `Workflow` or `Activity`.
    pub task_type: String,
    pub p95: Duration,
}

/// p95 above the SLO's critical threshold is critical, above its warning threshold a warning.
pub fn schedule_to_start(samples: &[LatencySample], slo: &SloConfig) -> Vec<Finding> {
    let (warn, crit) = (
        slo.schedule_to_start_warning.as_duration(),
        slo.schedule_to_start_critical.as_duration(),
    );
    samples
        .iter()
        .filter(|s| s.p95 > warn)
        .map(|s| {
            let severity = if s.p95 > crit {
                Severity::Critical
            } else {
                Severity::Warning
            };
            Finding {
                check: "schedule-to-start-slo",
                severity,
                decision: Decision::WorkerArchitecture,
                namespace: Some(s.namespace.clone()),
                title: format!(
                    "{} schedule-to-start p95 on {} is {} ms (SLO: warning {} ms, critical {} ms)",
                    s.task_type,
                    s.task_queue,
                    s.p95.as_millis(),
                    warn.as_millis(),
                    crit.as_millis()
                ),
                evidence: Evidence {
                    counts: BTreeMap::from([("p95_ms".into(), s.p95.as_millis() as u64)]),
                    names: vec![format!("{} ({})", s.task_queue, s.task_type)],
                    ..Default::default()
                },
                fix: "scale the pool out (raise workers.<pool>.replicas.max or the slots per worker); runbooks/TemporalWorkerScheduleToStartLatencyHigh.md".into(),
            }
        })
        .collect()
}

/// Workers of one queue whose free task slots reached zero in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotSample {
    pub namespace: String,
    pub task_queue: String,
    pub worker_type: String,
}

pub fn worker_slots(samples: &[SlotSample]) -> Vec<Finding> {
    samples
        .iter()
        .map(|s| Finding {
            check: "worker-slots-exhausted",
            severity: Severity::Warning,
            decision: Decision::WorkerArchitecture,
            namespace: Some(s.namespace.clone()),
            title: format!(
                "{} workers of {} ran out of task slots",
                s.worker_type, s.task_queue
            ),
            evidence: Evidence {
                names: vec![format!("{} ({})", s.task_queue, s.worker_type)],
                ..Default::default()
            },
            fix: "raise the worker's max concurrent tasks if CPU allows, else add replicas; runbooks/TemporalWorkerSlotsExhausted.md".into(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Versioning
// ---------------------------------------------------------------------------------------------

/// Non-determinism (critical) from sampled histories and the server's `TemporalReportedProblems`;
/// other repeated workflow task problems (warning).
pub fn workflow_tasks(
    namespace: &str,
    histories: &[HistoryFacts],
    executions: &[ExecutionRef],
) -> Vec<Finding> {
    let mut nde: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut nde_examples = Vec::new();
    for h in histories {
        if h.workflow_task_failures.contains_key(NDE_CAUSE) {
            nde.entry(h.workflow_type.clone())
                .or_default()
                .insert(&h.workflow_id);
            add_example(&mut nde_examples, &h.workflow_id);
        }
    }
    let mut other: BTreeMap<String, u64> = BTreeMap::new();
    let mut other_examples = Vec::new();
    let mut flagged_by_server = 0u64;
    for e in executions {
        if e.reported_problems.iter().any(|p| p == NDE_PROBLEM) {
            flagged_by_server += 1;
            nde.entry(e.workflow_type.clone())
                .or_default()
                .insert(&e.workflow_id);
            add_example(&mut nde_examples, &e.workflow_id);
        } else if let Some(cause) = e.reported_problems.iter().find(|p| p.starts_with("cause=")) {
            *other
                .entry(cause.trim_start_matches("cause=").to_string())
                .or_default() += 1;
            add_example(&mut other_examples, &e.workflow_id);
        }
    }
    let mut out = Vec::new();
    if !nde.is_empty() {
        let executions: u64 = nde.values().map(|ids| ids.len() as u64).sum();
        out.push(Finding {
            check: "workflow-nondeterminism",
            severity: Severity::Critical,
            decision: Decision::Versioning,
            namespace: Some(namespace.to_string()),
            title: format!(
                "{executions} execution(s) failed workflow tasks with a non-determinism error (stuck until a compatible worker runs)"
            ),
            evidence: Evidence {
                counts: BTreeMap::from([
                    ("executions".into(), executions),
                    ("flagged_by_server".into(), flagged_by_server),
                ]),
                names: nde.keys().map(|t| format!("workflow {t}")).collect(),
                example_workflow_ids: nde_examples,
            },
            fix: "roll the workers back to the previous build, then ship the change behind workflow.patched()/GetVersion or Worker Deployment versioning; replay recent histories in CI (docs/audit.md#workflow-nondeterminism)".into(),
        });
    }
    if !other.is_empty() {
        out.push(Finding {
            check: "workflow-task-failing",
            severity: Severity::Warning,
            decision: Decision::Reliability,
            namespace: Some(namespace.to_string()),
            title: format!(
                "{} execution(s) keep failing workflow tasks (TemporalReportedProblems)",
                other.values().sum::<u64>()
            ),
            evidence: Evidence {
                counts: other.clone(),
                names: other.keys().cloned().collect(),
                example_workflow_ids: other_examples,
            },
            fix: "read the worker logs for the failing workflow task; runbooks/TemporalWorkflowTaskFailures.md".into(),
        });
    }
    out
}

/// A worker pool of platform.yaml that declares a Worker Deployment.
#[derive(Debug, Clone)]
pub struct VersionedPool {
    pub namespace: String,
    pub pool: String,
    pub task_queue: String,
    pub deployment: String,
}

/// Sampled executions on a versioned pool's task queue that did not run on its deployment
/// (`worker_deployment_name` empty or another): deploys there replace code under running
/// workflows, which is what versioning was declared to prevent.
pub fn worker_versioning(pools: &[VersionedPool], executions: &[ExecutionRef]) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in pools {
        let on_queue: Vec<&ExecutionRef> = executions
            .iter()
            .filter(|e| e.task_queue == p.task_queue)
            .collect();
        let off: Vec<&&ExecutionRef> = on_queue
            .iter()
            .filter(|e| e.worker_deployment != p.deployment)
            .collect();
        if off.is_empty() {
            continue;
        }
        let mut examples = Vec::new();
        for e in &off {
            add_example(&mut examples, &e.workflow_id);
        }
        let mut seen: Vec<String> = off
            .iter()
            .map(|e| {
                if e.worker_deployment.is_empty() {
                    "unversioned".to_string()
                } else {
                    format!("deployment {}", e.worker_deployment)
                }
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        seen.insert(
            0,
            format!("pool {} declares deployment {}", p.pool, p.deployment),
        );
        out.push(Finding {
            check: "worker-versioning-unused",
            severity: Severity::Warning,
            decision: Decision::Versioning,
            namespace: Some(p.namespace.clone()),
            title: format!(
                "{} of {} sampled executions on task queue {} did not run on the pool's Worker Deployment",
                off.len(),
                on_queue.len(),
                p.task_queue
            ),
            evidence: Evidence {
                counts: BTreeMap::from([
                    ("executions".into(), on_queue.len() as u64),
                    ("not_on_deployment".into(), off.len() as u64),
                ]),
                names: seen,
                example_workflow_ids: examples,
            },
            fix: "start the pool's workers with Worker Versioning on (the SDK's deployment options: deployment name and build id, use_worker_versioning) and set the current version (`temporal worker deployment set-current-version`)".into(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Search attributes
// ---------------------------------------------------------------------------------------------

/// Declared (platform.yaml) vs registered (server) vs used (sampled executions), and the SQL
/// per-type caps.
pub fn search_attributes(
    namespace: &str,
    declared: &BTreeMap<SearchAttributeName, SearchAttributeType>,
    registered: &ObservedAttributes,
    executions: &[ExecutionRef],
    sql_visibility: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding = |check, severity, title: String, names: Vec<String>, fix: &str| Finding {
        check,
        severity,
        decision: Decision::Operations,
        namespace: Some(namespace.to_string()),
        title,
        evidence: Evidence {
            counts: BTreeMap::from([("attributes".into(), names.len() as u64)]),
            names,
            ..Default::default()
        },
        fix: fix.to_string(),
    };
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, ty) in declared {
        match registered.get(name.as_str()) {
            None => missing.push(format!("{name} ({ty})")),
            Some(Some(have)) if have != ty => {
                mismatched.push(format!("{name}: declared {ty}, registered {have}"))
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        out.push(finding(
            "search-attribute-missing",
            Severity::Warning,
            format!(
                "{} declared search attribute(s) are not registered: queries and workflows that set them fail",
                missing.len()
            ),
            missing,
            "run `temporal-bootstrap apply -f platform.yaml` (registers them); runbooks/adding-a-search-attribute.md",
        ));
    }
    if !mismatched.is_empty() {
        out.push(finding(
            "search-attribute-type-mismatch",
            Severity::Critical,
            format!(
                "{} search attribute(s) are registered with another type than platform.yaml declares",
                mismatched.len()
            ),
            mismatched,
            "a type cannot be changed in place: add a new attribute with the right type and migrate queries (runbooks/adding-a-search-attribute.md), then fix platform.yaml",
        ));
    }
    if !executions.is_empty() {
        let used: BTreeSet<&str> = executions
            .iter()
            .flat_map(|e| e.search_attributes.iter().map(String::as_str))
            .collect();
        let unused: Vec<String> = declared
            .keys()
            .filter(|n| registered.contains_key(n.as_str()) && !used.contains(n.as_str()))
            .map(|n| n.to_string())
            .collect();
        if !unused.is_empty() {
            out.push(finding(
                "search-attribute-unused",
                Severity::Info,
                format!(
                    "{} declared search attribute(s) were set by none of the {} sampled executions",
                    unused.len(),
                    executions.len()
                ),
                unused,
                "set them from the workflows (upsert at start) so operators can query by them, or drop them from platform.yaml",
            ));
        }
    }
    if sql_visibility {
        let mut per_type: BTreeMap<SearchAttributeType, usize> = BTreeMap::new();
        for ty in registered.values().flatten() {
            *per_type.entry(*ty).or_default() += 1;
        }
        let full: Vec<String> = per_type
            .iter()
            .filter(|(ty, n)| **n * 5 >= ty.sql_visibility_cap() * 4)
            .map(|(ty, n)| format!("{ty}: {n} of {}", ty.sql_visibility_cap()))
            .collect();
        if !full.is_empty() {
            out.push(finding(
                "search-attribute-cap",
                Severity::Warning,
                "SQL visibility is at 80% or more of its per-type search attribute cap".into(),
                full,
                "plan the remaining attributes now (a full type refuses new ones), or move visibility to Elasticsearch/OpenSearch",
            ));
        }
    }
    out
}

/// The operator questions of the guide ("Search Attributes: Finding Workflows When It
/// Matters") that need a custom attribute, and the name fragments that answer them. "Failed in
/// the last hour" is answered by the built-in ExecutionStatus and CloseTime.
pub const OPERATOR_QUESTIONS: &[(&str, &[&str])] = &[
    (
        "which workflows are processing for this customer?",
        &["customer"],
    ),
    (
        "what high-priority workflows are active?",
        &["priority", "tier"],
    ),
    (
        "which orders are stuck waiting for a step (e.g. payment confirmation)?",
        &["stage", "step", "status", "state"],
    ),
];

/// Production namespaces whose registered attributes cannot answer the guide's operator
/// questions (info: names are a heuristic; a team may answer them differently).
pub fn operator_questions(namespace: &str, registered: &ObservedAttributes) -> Vec<Finding> {
    let lower: Vec<String> = registered.keys().map(|k| k.to_ascii_lowercase()).collect();
    let unanswered: Vec<String> = OPERATOR_QUESTIONS
        .iter()
        .filter(|(_, fragments)| {
            !lower
                .iter()
                .any(|name| fragments.iter().any(|f| name.contains(f)))
        })
        .map(|(q, _)| q.to_string())
        .collect();
    if unanswered.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        check: "search-attribute-queries",
        severity: Severity::Info,
        decision: Decision::Operations,
        namespace: Some(namespace.to_string()),
        title: format!(
            "no search attribute answers {} of the operators' usual questions; attributes added later cover new workflows only",
            unanswered.len()
        ),
        evidence: Evidence {
            names: unanswered,
            ..Default::default()
        },
        fix: "declare them now in namespaces[].search_attributes (e.g. CustomerId: Keyword, Priority: Int, Stage: Keyword) and set them from the workflows".into(),
    }]
}

// ---------------------------------------------------------------------------------------------
// Security and operations
// ---------------------------------------------------------------------------------------------

/// What the frontend did with a TLS connection that presented no client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertProbe {
    /// platform.yaml has no `cluster.frontend.tls`: the frontend is reached in plaintext.
    Plaintext,
    /// The handshake or the first call was refused (the reason).
    Refused(String),
    /// GetSystemInfo succeeded without a certificate.
    Accepted,
}

pub fn frontend_access(probe: &ClientCertProbe, address: &str) -> Vec<Finding> {
    let (check, title, fix) = match probe {
        ClientCertProbe::Refused(_) => return Vec::new(),
        ClientCertProbe::Plaintext => (
            "frontend-plaintext",
            format!(
                "the frontend {address} is reached without TLS: anyone on the network can start, read and terminate workflows"
            ),
            "issue certificates (`pki:` in platform.yaml, `temporal-bootstrap certs issue`), enable TLS with requireClientAuth on the frontend, and set cluster.frontend.tls",
        ),
        ClientCertProbe::Accepted => (
            "frontend-accepts-no-client-cert",
            format!(
                "the frontend {address} accepted a TLS connection without a client certificate"
            ),
            "set global.tls.frontend.requireClientAuth: true in the server config (helm: server.tls.requireClientAuth) and restart the frontends",
        ),
    };
    vec![Finding {
        check,
        severity: Severity::Critical,
        decision: Decision::Security,
        namespace: None,
        title,
        evidence: Evidence {
            names: vec![address.to_string()],
            ..Default::default()
        },
        fix: fix.into(),
    }]
}

/// One certificate file named by platform.yaml.
#[derive(Debug, Clone)]
pub struct CertObservation {
    /// The config field or file role, e.g. `cluster.frontend.tls.cert`.
    pub role: String,
    pub not_after: OffsetDateTime,
}

pub fn certificates(
    certs: &[CertObservation],
    now: OffsetDateTime,
    limits: CertThresholds,
) -> Vec<Finding> {
    certs
        .iter()
        .filter_map(|c| {
            let left = c.not_after - now;
            let days = left.whole_days();
            let severity = if left <= time::Duration::try_from(limits.critical).ok()? {
                Severity::Critical
            } else if left <= time::Duration::try_from(limits.warning).ok()? {
                Severity::Warning
            } else {
                return None;
            };
            Some(Finding {
                check: "certificate-expiring",
                severity,
                decision: Decision::Security,
                namespace: None,
                title: if days < 0 {
                    format!("{} expired {} day(s) ago", c.role, -days)
                } else {
                    format!("{} expires in {days} day(s)", c.role)
                },
                evidence: Evidence {
                    counts: BTreeMap::from([("days_left".into(), days.max(0) as u64)]),
                    names: vec![c.role.clone()],
                    ..Default::default()
                },
                fix: "run `temporal-bootstrap certs issue -f platform.yaml` (renews within pki.renew_before) or let the daemon renew; runbooks/rotating-certificates.md".into(),
            })
        })
        .collect()
}

/// Configuration facts: authorization in production, a codec endpoint for sensitive namespaces.
pub fn configuration(cfg: &PlatformConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let production = cfg.cluster.environment == crate::config::model::Environment::Production;
    if production && cfg.cluster.authorization.is_none() {
        out.push(Finding {
            check: "authorization-not-configured",
            severity: Severity::Warning,
            decision: Decision::Security,
            namespace: None,
            title: "no authorization: every client with a valid certificate may act on every namespace".into(),
            evidence: Evidence::default(),
            fix: "configure cluster.authorization (JWT claims mapper and authorizer) so each team's workers reach only their namespaces".into(),
        });
    }
    let sensitive: Vec<String> = cfg
        .namespaces
        .iter()
        .filter(|n| n.sensitive)
        .map(|n| n.name.as_str().to_string())
        .collect();
    let ui_codec = cfg
        .codec
        .as_ref()
        .is_some_and(|c| !c.cors_origins.is_empty());
    if !sensitive.is_empty() && !ui_codec {
        out.push(Finding {
            check: "codec-endpoint-missing",
            severity: Severity::Warning,
            decision: Decision::Security,
            namespace: None,
            title: "sensitive namespaces have no codec endpoint for the Web UI: operators see ciphertext, or payloads are left in plaintext to stay debuggable".into(),
            evidence: Evidence {
                names: sensitive,
                ..Default::default()
            },
            fix: "configure `codec:` with cors_origins naming the Web UI and set the UI's codec endpoint (docs/payload-encryption.md)".into(),
        });
    }
    out
}

/// A namespace to audit that the server does not have.
pub fn namespace_missing(namespace: &str) -> Vec<Finding> {
    vec![Finding {
        check: "namespace-missing",
        severity: Severity::Warning,
        decision: Decision::Operations,
        namespace: Some(namespace.to_string()),
        title: "the namespace does not exist on the server: workers and clients using it fail"
            .into(),
        evidence: Evidence::default(),
        fix: "run `temporal-bootstrap apply -f platform.yaml` (registers it), or correct the name"
            .into(),
    }]
}

/// Retention as applied vs platform.yaml, and archival in production.
pub fn retention(
    namespace: &str,
    declared: Duration,
    observed: Option<Duration>,
    archival: bool,
    production: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if observed != Some(declared) {
        out.push(Finding {
            check: "namespace-retention-drift",
            severity: Severity::Warning,
            decision: Decision::Operations,
            namespace: Some(namespace.to_string()),
            title: format!(
                "retention is {} but platform.yaml says {}",
                observed.map(crate::temporal::api::human).unwrap_or_else(|| "unset".into()),
                crate::temporal::api::human(declared)
            ),
            evidence: Evidence::default(),
            fix: "run `temporal-bootstrap apply -f platform.yaml`, or change namespaces[].retention if the live value is the intended one".into(),
        });
    }
    if production && !archival {
        out.push(Finding {
            check: "namespace-archival-disabled",
            severity: Severity::Info,
            decision: Decision::Operations,
            namespace: Some(namespace.to_string()),
            title: "history archival is off: closed histories are gone after retention".into(),
            evidence: Evidence::default(),
            fix: "enable archival (server archival config plus namespace history_archival_state) where audits need histories beyond retention".into(),
        });
    }
    out
}

/// The server's version vs the releases this bundle knows (crate::versions).
pub fn server_version(reported: &str) -> Vec<Finding> {
    let finding = |check, severity, title: String, fix: String| Finding {
        check,
        severity,
        decision: Decision::Operations,
        namespace: None,
        title,
        evidence: Evidence {
            names: vec![reported.to_string()],
            ..Default::default()
        },
        fix,
    };
    let Ok(v) = reported.trim_start_matches('v').parse::<TemporalVersion>() else {
        return vec![finding(
            "server-version-unknown",
            Severity::Info,
            format!("the server reports version `{reported}`, which this audit cannot compare"),
            "check the server build".into(),
        )];
    };
    if crate::versions::SupportedRelease::of(v).is_err() {
        return vec![finding(
            "server-version-unsupported",
            Severity::Critical,
            format!("server {v} is outside the release lines this bundle supports"),
            "upgrade one minor version at a time: `temporal-bootstrap upgrade plan -f platform.yaml`".into(),
        )];
    }
    if crate::versions::RETRACTED.contains(&v) || crate::versions::KNOWN_BROKEN.contains(&v) {
        return vec![finding(
            "server-version-broken",
            Severity::Critical,
            format!("server {v} is a retracted or known-broken release"),
            "move to the newest patch of the line: `temporal-bootstrap upgrade plan -f platform.yaml`".into(),
        )];
    }
    match crate::versions::latest_patch(v.minor) {
        Some(latest) if latest > v => {
            let security = crate::versions::AUTHORIZATION_FIXES
                .iter()
                .any(|f| f.minor == v.minor && *f > v);
            vec![finding(
                "server-patch-behind",
                if security {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!(
                    "server {v} is behind the line's newest patch {latest}{}",
                    if security {
                        " (which fixes an authorization flaw)"
                    } else {
                        ""
                    }
                ),
                format!("upgrade to {latest}: `temporal-bootstrap upgrade plan -f platform.yaml`"),
            )]
        }
        _ => Vec::new(),
    }
}

/// A database's recorded schema version vs the one the running server's release uses.
pub fn schema_version(
    database: &str,
    recorded: crate::versions::SchemaVersion,
    expected: crate::versions::SchemaVersion,
    server: &str,
) -> Vec<Finding> {
    if recorded == expected {
        return Vec::new();
    }
    let (severity, fix) = if recorded < expected {
        (
            Severity::Critical,
            "finish the upgrade's schema part: `temporal-bootstrap upgrade plan -f platform.yaml` (the server of this release may fail on the old schema)",
        )
    } else {
        (
            Severity::Warning,
            "an upgrade is half done (schema ahead of the servers): finish rolling the servers, `temporal-bootstrap upgrade status -f platform.yaml`",
        )
    };
    vec![Finding {
        check: "schema-version-mismatch",
        severity,
        decision: Decision::Operations,
        namespace: None,
        title: format!("the {database} schema is at {recorded}, server {server} uses {expected}"),
        evidence: Evidence {
            names: vec![database.to_string()],
            ..Default::default()
        },
        fix: fix.into(),
    }]
}

/// Prometheus scrape targets that are down.
pub fn metrics_targets(down: &[String], temporal_targets_up: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    if !down.is_empty() {
        out.push(Finding {
            check: "metrics-target-down",
            severity: Severity::Warning,
            decision: Decision::Observability,
            namespace: None,
            title: format!("{} Prometheus scrape target(s) are down", down.len()),
            evidence: Evidence {
                names: down.to_vec(),
                ..Default::default()
            },
            fix: "runbooks/TemporalTargetDown.md".into(),
        });
    }
    if temporal_targets_up == 0 {
        out.push(Finding {
            check: "metrics-temporal-missing",
            severity: Severity::Warning,
            decision: Decision::Observability,
            namespace: None,
            title: "Prometheus scrapes no target that exports Temporal server metrics: dashboards and alerts are blind".into(),
            evidence: Evidence::default(),
            fix: "add the server's metrics endpoints to Prometheus (helm: serviceMonitor.enabled) and check `temporal-bootstrap audit` again".into(),
        });
    }
    out
}

/// Rule groups we render that Prometheus has not loaded.
pub fn alert_rules(missing: &[String]) -> Vec<Finding> {
    if missing.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        check: "alert-rules-not-loaded",
        severity: Severity::Warning,
        decision: Decision::Observability,
        namespace: None,
        title: format!("{} of our alert rule groups are not loaded in Prometheus", missing.len()),
        evidence: Evidence {
            names: missing.to_vec(),
            ..Default::default()
        },
        fix: "run `temporal-bootstrap apply -f platform.yaml` (writes the rules and reloads Prometheus); check Prometheus' rule_files glob".into(),
    }]
}

/// Dashboards missing or changed in Grafana (the Grafana step's read-only plan).
pub fn dashboards(pending: &[String]) -> Vec<Finding> {
    if pending.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        check: "dashboards-missing",
        severity: Severity::Warning,
        decision: Decision::Observability,
        namespace: None,
        title: format!(
            "{} Grafana dashboard change(s) are not applied",
            pending.len()
        ),
        evidence: Evidence {
            names: pending.to_vec(),
            ..Default::default()
        },
        fix: "run `temporal-bootstrap apply -f platform.yaml`".into(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::HumanDuration;

    fn queue(backlog: u64, pollers: &[&str], age_s: u64, pool: Option<&str>) -> QueueObservation {
        QueueObservation {
            namespace: "orders".into(),
            task_queue: "fulfil".into(),
            kind: TaskQueueKind::Workflow,
            pool: pool.map(String::from),
            state: TaskQueueState {
                pollers: pollers.iter().map(|p| p.to_string()).collect(),
                backlog_count: backlog,
                backlog_age: (age_s > 0).then(|| Duration::from_secs(age_s)),
            },
        }
    }

    fn checks(f: &[Finding]) -> Vec<(&str, Severity)> {
        f.iter().map(|f| (f.check, f.severity)).collect()
    }

    #[test]
    fn task_queue_findings_follow_pollers_backlog_and_pools() {
        let warn = Duration::from_secs(300);
        let f = task_queues(&[queue(5, &[], 40, None)], warn);
        assert_eq!(
            checks(&f),
            [("task-queue-backlog-no-poller", Severity::Critical)]
        );
        assert_eq!(f[0].evidence.counts["backlog_tasks"], 5);
        assert_eq!(f[0].evidence.counts["backlog_age_seconds"], 40);
        let f = task_queues(&[queue(0, &[], 0, Some("fulfil-io"))], warn);
        assert_eq!(checks(&f), [("task-queue-no-poller", Severity::Warning)]);
        let f = task_queues(&[queue(9, &["w1"], 301, None)], warn);
        assert_eq!(checks(&f), [("task-queue-backlog-age", Severity::Warning)]);
        // Healthy: pollers and a young backlog; an undeclared idle queue; both quiet.
        assert!(
            task_queues(
                &[queue(9, &["w1"], 299, Some("p")), queue(0, &[], 0, None)],
                warn
            )
            .is_empty()
        );
    }

    #[test]
    fn schedule_to_start_uses_the_slo_thresholds() {
        let slo = SloConfig {
            schedule_to_start_warning: HumanDuration::from_millis(200),
            schedule_to_start_critical: HumanDuration::from_millis(500),
            scale_up_schedule_to_start: HumanDuration::from_millis(300),
        };
        let s = |ms| LatencySample {
            namespace: "orders".into(),
            task_queue: "fulfil".into(),
            task_type: "Activity".into(),
            p95: Duration::from_millis(ms),
        };
        let f = schedule_to_start(&[s(200), s(201), s(500), s(501)], &slo);
        assert_eq!(
            f.iter().map(|f| f.severity).collect::<Vec<_>>(),
            [Severity::Warning, Severity::Warning, Severity::Critical]
        );
        assert_eq!(f[2].evidence.counts["p95_ms"], 501);
    }

    #[test]
    fn nondeterminism_from_history_and_reported_problems_counts_each_execution_once() {
        let mut h = HistoryFacts::new("order-1");
        h.workflow_type = "OrderWorkflow".into();
        h.workflow_task_failures.insert(NDE_CAUSE.into(), 1);
        let flagged = |id: &str, problem: &str| ExecutionRef {
            workflow_id: id.into(),
            workflow_type: "OrderWorkflow".into(),
            reported_problems: vec!["category=WorkflowTaskFailed".into(), problem.into()],
            ..Default::default()
        };
        let f = workflow_tasks(
            "orders",
            &[h],
            &[
                flagged("order-1", NDE_PROBLEM),
                flagged("order-2", NDE_PROBLEM),
                flagged("order-3", "cause=WorkflowTaskFailedCauseUnhandledCommand"),
            ],
        );
        assert_eq!(
            checks(&f),
            [
                ("workflow-nondeterminism", Severity::Critical),
                ("workflow-task-failing", Severity::Warning)
            ]
        );
        assert_eq!(
            f[0].evidence.counts["executions"], 2,
            "order-1 counted once"
        );
        assert_eq!(f[0].evidence.names, ["workflow OrderWorkflow"]);
        assert_eq!(
            f[1].evidence.names,
            ["WorkflowTaskFailedCauseUnhandledCommand"]
        );
        assert!(workflow_tasks("orders", &[HistoryFacts::new("ok")], &[]).is_empty());
    }

    #[test]
    fn versioned_pools_report_executions_off_their_deployment() {
        let pool = VersionedPool {
            namespace: "orders".into(),
            pool: "fulfil".into(),
            task_queue: "fulfil".into(),
            deployment: "fulfil-svc".into(),
        };
        let e = |id: &str, queue: &str, deployment: &str| ExecutionRef {
            workflow_id: id.into(),
            task_queue: queue.into(),
            worker_deployment: deployment.into(),
            ..Default::default()
        };
        let f = worker_versioning(
            std::slice::from_ref(&pool),
            &[
                e("a", "fulfil", "fulfil-svc"),
                e("b", "fulfil", ""),
                e("c", "other", ""),
            ],
        );
        assert_eq!(
            checks(&f),
            [("worker-versioning-unused", Severity::Warning)]
        );
        assert_eq!(f[0].evidence.counts["not_on_deployment"], 1);
        assert_eq!(f[0].evidence.example_workflow_ids, ["b"]);
        assert_eq!(f[0].evidence.names[1], "unversioned");
        assert!(worker_versioning(&[pool], &[e("a", "fulfil", "fulfil-svc")]).is_empty());
    }

    #[test]
    fn search_attributes_declared_registered_used_and_capped() {
        let name = |s: &str| s.parse::<SearchAttributeName>().unwrap();
        let declared = BTreeMap::from([
            (name("CustomerId"), SearchAttributeType::Keyword),
            (name("Priority"), SearchAttributeType::Int),
            (name("Region"), SearchAttributeType::Keyword),
        ]);
        let mut registered: ObservedAttributes = BTreeMap::from([
            ("CustomerId".to_string(), Some(SearchAttributeType::Keyword)),
            ("Priority".to_string(), Some(SearchAttributeType::Keyword)),
        ]);
        let used = ExecutionRef {
            search_attributes: vec!["CustomerId".into()],
            ..Default::default()
        };
        let f = search_attributes(
            "orders",
            &declared,
            &registered,
            std::slice::from_ref(&used),
            false,
        );
        assert_eq!(
            checks(&f),
            [
                ("search-attribute-missing", Severity::Warning),
                ("search-attribute-type-mismatch", Severity::Critical),
                ("search-attribute-unused", Severity::Info),
            ]
        );
        assert_eq!(f[0].evidence.names, ["Region (Keyword)"]);
        assert_eq!(
            f[1].evidence.names,
            ["Priority: declared Int, registered Keyword"]
        );
        assert_eq!(f[2].evidence.names, ["Priority"]);
        // SQL caps: 8 of 10 Keyword attributes is 80%.
        for i in 0..6 {
            registered.insert(format!("K{i}"), Some(SearchAttributeType::Keyword));
        }
        let f = search_attributes("orders", &BTreeMap::new(), &registered, &[], true);
        assert_eq!(checks(&f), [("search-attribute-cap", Severity::Warning)]);
        assert_eq!(f[0].evidence.names, ["Keyword: 8 of 10"]);
        assert!(search_attributes("orders", &BTreeMap::new(), &registered, &[], false).is_empty());
    }

    #[test]
    fn operator_questions_name_what_cannot_be_answered() {
        let reg = |names: &[&str]| -> ObservedAttributes {
            names
                .iter()
                .map(|n| (n.to_string(), Some(SearchAttributeType::Keyword)))
                .collect()
        };
        let f = operator_questions("orders", &reg(&["CustomerId"]));
        assert_eq!(f[0].evidence.names.len(), 2);
        assert!(
            operator_questions(
                "orders",
                &reg(&["CustomerId", "PriorityTier", "OrderStage"])
            )
            .is_empty()
        );
    }

    #[test]
    fn frontend_access_and_certificates() {
        assert!(
            frontend_access(&ClientCertProbe::Refused("handshake".into()), "fe:7233").is_empty()
        );
        assert_eq!(
            checks(&frontend_access(&ClientCertProbe::Accepted, "fe:7233")),
            [("frontend-accepts-no-client-cert", Severity::Critical)]
        );
        assert_eq!(
            checks(&frontend_access(&ClientCertProbe::Plaintext, "fe:7233")),
            [("frontend-plaintext", Severity::Critical)]
        );
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let cert = |days: i64| CertObservation {
            role: "cluster.frontend.tls.cert".into(),
            not_after: now + time::Duration::days(days),
        };
        let limits = CertThresholds {
            warning: Duration::from_secs(30 * 86_400),
            critical: Duration::from_secs(7 * 86_400),
        };
        let f = certificates(&[cert(31), cert(30), cert(7), cert(-2)], now, limits);
        assert_eq!(
            f.iter().map(|f| f.severity).collect::<Vec<_>>(),
            [Severity::Warning, Severity::Critical, Severity::Critical]
        );
        assert_eq!(f[2].title, "cluster.frontend.tls.cert expired 2 day(s) ago");
    }

    #[test]
    fn server_version_against_the_release_table() {
        let latest = crate::versions::latest_patch(32).unwrap();
        assert!(server_version(&latest.to_string()).is_empty());
        assert_eq!(
            checks(&server_version("1.32.0")),
            [("server-patch-behind", Severity::Warning)]
        );
        assert_eq!(
            checks(&server_version("1.9.0")),
            [("server-version-unsupported", Severity::Critical)]
        );
        assert_eq!(
            checks(&server_version("nightly")),
            [("server-version-unknown", Severity::Info)]
        );
    }

    #[test]
    fn schema_versions_behind_are_critical_ahead_a_warning() {
        let v = |s: &str| s.parse::<crate::versions::SchemaVersion>().unwrap();
        assert!(schema_version("temporal", v("1.19"), v("1.19"), "1.32.2").is_empty());
        let f = schema_version("temporal", v("1.18"), v("1.19"), "1.32.2");
        assert_eq!(
            checks(&f),
            [("schema-version-mismatch", Severity::Critical)]
        );
        assert_eq!(
            f[0].title,
            "the temporal schema is at 1.18, server 1.32.2 uses 1.19"
        );
        let f = schema_version("temporal", v("1.20"), v("1.19"), "1.32.2");
        assert_eq!(checks(&f), [("schema-version-mismatch", Severity::Warning)]);
    }

    #[test]
    fn retention_drift_and_archival() {
        let day = Duration::from_secs(86_400);
        assert!(retention("orders", day, Some(day), false, false).is_empty());
        assert_eq!(
            checks(&retention("orders", day * 30, Some(day), true, true)),
            [("namespace-retention-drift", Severity::Warning)]
        );
        assert_eq!(
            checks(&retention("orders", day, Some(day), false, true)),
            [("namespace-archival-disabled", Severity::Info)]
        );
    }
}
