//! `temporal-bootstrap audit` (issue 21): a read-only production-readiness audit of a live
//! deployment. Flow: connect; per namespace, list up to `--sample` executions started within
//! `--since` plus running ones the server flagged (`TemporalReportedProblems`), read their
//! histories page by page (bounded concurrency) into [`history::HistoryFacts`] without keeping
//! events, describe the task queues they and platform.yaml's worker pools use, list the search
//! attributes and the namespace's settings; then cluster-wide facts (a connection without a
//! client certificate, certificate files, server version, Prometheus targets, rules and SDK
//! metrics, Grafana dashboards); run the [`checks`] and [`platform_checks`] and build the
//! [`report::Report`].
//!
//! Guarantees: read-only (only List/Get/Describe RPCs and HTTP GETs; every RPC is counted and
//! the counts are part of the report); no payload byte is kept or printed (payloads are
//! measured and their `encoding` read; custom search attribute values are dropped); every
//! threshold is a named constant or a platform.yaml value (docs/audit.md). A source that cannot
//! be read (Prometheus down, a visibility query the store refuses) is reported under
//! `inputs.skipped` with the reason instead of failing the audit.

pub mod checks;
pub mod findings;
pub mod history;
pub mod platform_checks;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use findings::Finding;
use history::HistoryFacts;
use platform_checks as pc;
use report::{Inputs, Report};

use crate::config::model::{Environment, PlatformConfig};
use crate::reconcile::Context;
use crate::temporal::TemporalError;
use crate::temporal::api::{ExecutionRef, TaskQueueKind, TemporalApi};

/// Histories read at the same time (each one page at a time).
const HISTORY_CONCURRENCY: usize = 16;
/// Task queues described at the same time.
const QUEUE_CONCURRENCY: usize = 8;
/// The window over which SDK latency and slot metrics are read from Prometheus.
const METRICS_WINDOW: &str = "15m";

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Namespaces to audit; empty: every namespace of platform.yaml.
    pub namespaces: Vec<String>,
    /// Only executions started within this window.
    pub since: Duration,
    /// At most this many histories per namespace.
    pub sample: u32,
}

/// Runs the audit against the platform of `ctx` (read-only).
pub async fn run(
    ctx: &Context,
    opts: &AuditOptions,
    config_file: &str,
) -> Result<Report, TemporalError> {
    let cfg: &PlatformConfig = &ctx.config;
    let api = crate::temporal::connect(ctx).await?;
    let now = time::OffsetDateTime::now_utc();
    let since = now - time::Duration::try_from(opts.since).unwrap_or(time::Duration::DAY);
    let query = format!("StartTime > \"{}\"", rfc3339(since));
    let namespaces: Vec<String> = if opts.namespaces.is_empty() {
        cfg.namespaces
            .iter()
            .map(|n| n.name.as_str().to_string())
            .collect()
    } else {
        opts.namespaces.clone()
    };
    let cluster = api.cluster_info().await?;
    let sql_visibility = cluster.visibility_is_sql().unwrap_or(false);
    let mut skipped = BTreeSet::new();
    let mut findings = Vec::new();
    let (mut histories_read, mut bytes_read) = (0u64, 0u64);
    for ns in &namespaces {
        let declared = cfg.namespaces.iter().find(|n| n.name.as_str() == ns);
        let state = match api.describe_namespace(ns).await {
            Ok(state) => state,
            Err(TemporalError::NamespaceNotFound(_)) => {
                findings.extend(pc::namespace_missing(ns));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut executions = api
            .list_executions(ns, &query, opts.sample as usize)
            .await?;
        let flagged = format!(
            "ExecutionStatus = \"Running\" AND {} IS NOT NULL",
            crate::temporal::grpc::REPORTED_PROBLEMS
        );
        match api
            .list_executions(ns, &flagged, opts.sample as usize)
            .await
        {
            Ok(more) => {
                let known: BTreeSet<String> = executions.iter().map(|e| e.run_id.clone()).collect();
                executions.extend(more.into_iter().filter(|e| !known.contains(&e.run_id)));
            }
            Err(e) => {
                skipped.insert(format!(
                    "TemporalReportedProblems query in {ns}: {e} (server before 1.29?)"
                ));
            }
        }
        let facts = read_histories(&api, ns, &executions).await?;
        histories_read += facts.len() as u64;
        bytes_read += facts.iter().map(|f| f.bytes).sum::<u64>();
        findings.extend(audit_histories(
            ns,
            declared.is_some_and(|n| n.sensitive),
            &facts,
        ));
        findings.extend(pc::workflow_tasks(ns, &facts, &executions));
        findings.extend(pc::worker_versioning(
            &versioned_pools(cfg, ns),
            &executions,
        ));
        findings.extend(checks::external_payloads(ns, &executions));
        let queues = describe_queues(&api, cfg, ns, &facts, &executions).await?;
        findings.extend(pc::task_queues(
            &queues,
            threshold(cfg, "backlog_age_warning_seconds", 300.0),
        ));
        if let Some(decl) = declared {
            let registered = api.list_search_attributes(ns).await?;
            findings.extend(pc::search_attributes(
                ns,
                &decl.search_attributes,
                &registered,
                &executions,
                sql_visibility,
            ));
            if cfg.cluster.environment == Environment::Production {
                findings.extend(pc::operator_questions(ns, &registered));
            }
            findings.extend(pc::retention(
                ns,
                decl.retention.as_duration(),
                state.retention,
                state.history_archival,
                cfg.cluster.environment == Environment::Production,
            ));
        }
    }
    findings
        .extend(cluster_findings(ctx, &cluster.server_version, &api.address(), &mut skipped).await);
    let audited: BTreeSet<&str> = namespaces.iter().map(String::as_str).collect();
    // Prometheus findings name any namespace; keep those of the audited ones.
    findings.retain(|f| f.namespace.as_deref().is_none_or(|n| audited.contains(n)));
    let inputs = Inputs {
        config_file: config_file.to_string(),
        frontend: api.address(),
        server_version: cluster.server_version.clone(),
        namespaces,
        since: crate::temporal::api::human(opts.since),
        sample_per_namespace: opts.sample,
        histories_read,
        history_bytes_read: bytes_read,
        rpc_calls: crate::temporal::api::rpc_calls()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        mutating_calls: crate::temporal::total_mutating_calls(),
        skipped: skipped.into_iter().collect(),
    };
    Ok(Report::new(rfc3339(now), inputs, findings))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Reads the histories of `executions` (bounded concurrency), page by page, keeping only facts.
async fn read_histories(
    api: &Arc<dyn TemporalApi>,
    namespace: &str,
    executions: &[ExecutionRef],
) -> Result<Vec<HistoryFacts>, TemporalError> {
    let results = crate::temporal::run_bounded(
        executions.to_vec(),
        HISTORY_CONCURRENCY,
        |e: ExecutionRef| {
            let api = Arc::clone(api);
            let ns = namespace.to_string();
            async move {
                let mut facts = HistoryFacts::new(&e.workflow_id);
                let mut token = Vec::new();
                loop {
                    let (events, next) = api.history_page(&ns, &e, token).await?;
                    for ev in &events {
                        facts.add(ev);
                    }
                    if next.is_empty() {
                        return Ok(facts);
                    }
                    token = next;
                }
            }
        },
    )
    .await;
    results.into_iter().collect()
}

/// The worker pools of `namespace` that declare a Worker Deployment.
fn versioned_pools(cfg: &PlatformConfig, namespace: &str) -> Vec<pc::VersionedPool> {
    cfg.workers
        .iter()
        .filter(|p| cfg.pool_namespace(p) == Some(namespace))
        .filter_map(|p| {
            Some(pc::VersionedPool {
                namespace: namespace.to_string(),
                pool: p.name.as_str().to_string(),
                task_queue: p.task_queue.as_str().to_string(),
                deployment: p.deployment.as_ref()?.as_str().to_string(),
            })
        })
        .collect()
}

/// Describes the task queues of `namespace`: those of platform.yaml's worker pools (both task
/// kinds) and those the sampled executions and their activities were scheduled on.
async fn describe_queues(
    api: &Arc<dyn TemporalApi>,
    cfg: &PlatformConfig,
    namespace: &str,
    facts: &[HistoryFacts],
    executions: &[ExecutionRef],
) -> Result<Vec<pc::QueueObservation>, TemporalError> {
    let mut queues: BTreeMap<(String, TaskQueueKind), Option<String>> = BTreeMap::new();
    for pool in &cfg.workers {
        if cfg.pool_namespace(pool) == Some(namespace) {
            for kind in [TaskQueueKind::Workflow, TaskQueueKind::Activity] {
                queues.insert(
                    (pool.task_queue.as_str().to_string(), kind),
                    Some(pool.name.as_str().to_string()),
                );
            }
        }
    }
    for q in facts.iter().flat_map(|f| f.task_queues.iter()) {
        queues.entry(q.clone()).or_default();
    }
    for e in executions.iter().filter(|e| !e.task_queue.is_empty()) {
        queues
            .entry((e.task_queue.clone(), TaskQueueKind::Workflow))
            .or_default();
    }
    let items: Vec<((String, TaskQueueKind), Option<String>)> = queues.into_iter().collect();
    let results = crate::temporal::run_bounded(items, QUEUE_CONCURRENCY, |((q, kind), pool)| {
        let api = Arc::clone(api);
        let ns = namespace.to_string();
        async move {
            let state = api.describe_task_queue(&ns, &q, kind).await?;
            Ok(pc::QueueObservation {
                namespace: ns,
                task_queue: q,
                kind,
                pool,
                state,
            })
        }
    })
    .await;
    results.into_iter().collect()
}

/// An alert threshold of this platform (alerts/thresholds.yaml plus overrides) as a duration of
/// that many seconds; `fallback` if it cannot be read. One source for the alerts and the audit.
fn threshold(cfg: &PlatformConfig, name: &str, fallback: f64) -> Duration {
    let v = crate::observability::rules::thresholds_for(&cfg.observability)
        .ok()
        .and_then(|t| t.get(name)?.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(fallback);
    Duration::from_secs_f64(v)
}

/// Security and operations findings that do not belong to one namespace.
async fn cluster_findings(
    ctx: &Context,
    server_version: &str,
    address: &str,
    skipped: &mut BTreeSet<String>,
) -> Vec<Finding> {
    let cfg = &ctx.config;
    let mut out = Vec::new();
    match crate::temporal::connect_without_credentials(ctx).await {
        Ok(None) => out.extend(pc::frontend_access(
            &pc::ClientCertProbe::Plaintext,
            address,
        )),
        Ok(Some(Ok(()))) => {
            out.extend(pc::frontend_access(&pc::ClientCertProbe::Accepted, address))
        }
        Ok(Some(Err(reason))) => out.extend(pc::frontend_access(
            &pc::ClientCertProbe::Refused(reason),
            address,
        )),
        Err(e) => {
            skipped.insert(format!("connection without a client certificate: {e}"));
        }
    }
    out.extend(pc::certificates(
        &certificate_files(ctx, skipped),
        time::OffsetDateTime::now_utc(),
        pc::CertThresholds {
            warning: threshold(cfg, "certificate_expiry_warning_days", 21.0) * 86_400,
            critical: threshold(cfg, "certificate_expiry_critical_days", 7.0) * 86_400,
        },
    ));
    out.extend(pc::configuration(cfg));
    out.extend(pc::server_version(server_version));
    out.extend(schema_findings(ctx, server_version, skipped).await);
    match &cfg.observability.prometheus {
        None => {
            skipped.insert("Prometheus checks: observability.prometheus is not configured".into());
        }
        Some(prom) => out.extend(prometheus_findings(cfg, prom, skipped).await),
    }
    match &cfg.observability.grafana {
        None => {
            skipped.insert("dashboards: observability.grafana is not configured".into());
        }
        Some(g) => {
            let pending = match crate::observability::grafana::Grafana::new(g) {
                Ok(client) => client.plan(false).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match pending {
                Ok(changes) => out.extend(pc::dashboards(
                    &changes
                        .iter()
                        .map(|c| c.resource.clone())
                        .collect::<Vec<_>>(),
                )),
                Err(e) => {
                    skipped.insert(format!("dashboards: {e}"));
                }
            }
        }
    }
    out
}

/// The recorded PostgreSQL schema versions vs those of the running server's release (read-only:
/// the `schema_version` rows).
async fn schema_findings(
    ctx: &Context,
    server_version: &str,
    skipped: &mut BTreeSet<String>,
) -> Vec<Finding> {
    use crate::postgres::SchemaKind;
    if !matches!(
        ctx.config.persistence,
        crate::config::model::PersistenceConfig::Postgres(_)
    ) {
        skipped.insert("schema versions: persistence is not on PostgreSQL".into());
        return Vec::new();
    }
    let release = server_version
        .trim_start_matches('v')
        .parse::<crate::config::types::TemporalVersion>()
        .ok()
        .and_then(|v| crate::versions::SupportedRelease::of(v).ok());
    let Some(release) = release else {
        skipped.insert(format!(
            "schema versions: no schema versions known for server `{server_version}`"
        ));
        return Vec::new();
    };
    let mut kinds = vec![(SchemaKind::Temporal, release.schemas().postgres_temporal)];
    if matches!(
        ctx.config.visibility,
        crate::config::model::VisibilityConfig::Postgres(_)
    ) {
        kinds.push((
            SchemaKind::Visibility,
            release.schemas().postgres_visibility,
        ));
    }
    let mut out = Vec::new();
    for (kind, expected) in kinds {
        match crate::postgres::recorded_version(ctx, kind).await {
            Ok(Some(recorded)) => out.extend(pc::schema_version(
                kind.folder(),
                recorded,
                expected,
                server_version,
            )),
            Ok(None) => {
                skipped.insert(format!(
                    "schema version of {}: not recorded, or persistence.postgres.schema_dir is not set",
                    kind.folder()
                ));
            }
            Err(e) => {
                skipped.insert(format!("schema version of {}: {e}", kind.folder()));
            }
        }
    }
    out
}

/// The certificate files platform.yaml names: the frontend CA and client certificate (read
/// here), and every certificate under `pki.dir` (as `certs inspect` reads them).
fn certificate_files(ctx: &Context, skipped: &mut BTreeSet<String>) -> Vec<pc::CertObservation> {
    let mut out = Vec::new();
    if let Some(tls) = &ctx.config.cluster.frontend.tls {
        let mut files = vec![("cluster.frontend.tls.ca", &tls.ca)];
        files.extend(tls.cert.as_ref().map(|c| ("cluster.frontend.tls.cert", c)));
        for (role, path) in files {
            let info =
                crate::fsutil::read_limited(&ctx.resolve_path(path), crate::fsutil::FileKind::Pem)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| crate::pki::parse_pem_chain(&pem))
                    // The first certificate of a file is the one it is about (leaf first).
                    .and_then(|chain| {
                        crate::pki::parse_der(chain.first().ok_or("no certificate")?)
                    });
            match info {
                Ok(info) => out.push(pc::CertObservation {
                    role: role.to_string(),
                    not_after: info.not_after,
                }),
                Err(e) => {
                    skipped.insert(format!("certificate {role}: {e}"));
                }
            }
        }
    }
    if let Some(pki_cfg) = &ctx.config.pki {
        let pki = crate::pki::Pki::new(pki_cfg, ctx.config.cluster.name.as_str(), &ctx.base_dir);
        match pki.inspect() {
            Ok(reports) => out.extend(reports.into_iter().filter_map(|r| {
                let not_after = time::OffsetDateTime::parse(
                    &r.not_after,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                Some(pc::CertObservation {
                    role: format!("pki.dir/{}", r.file),
                    not_after,
                })
            })),
            Err(e) => {
                skipped.insert(format!("certificates under pki.dir: {e}"));
            }
        }
    }
    out
}

/// Scrape targets, our rule groups, and the SDK schedule-to-start and slot metrics.
async fn prometheus_findings(
    cfg: &PlatformConfig,
    prom: &crate::config::PrometheusConfig,
    skipped: &mut BTreeSet<String>,
) -> Vec<Finding> {
    use crate::observability::prometheus as p;
    let mut out = Vec::new();
    match p::scrape_targets(prom).await {
        Ok(targets) => {
            let down: Vec<String> = targets
                .iter()
                .filter(|t| !t.up)
                .map(|t| format!("{} {}", t.job, t.instance))
                .collect();
            let temporal_up = match p::query_vector(prom, "count(up == 1 and on (job, instance) group by (job, instance) (persistence_requests))").await {
                Ok(v) => v.first().map(|(_, n)| *n as usize).unwrap_or(0),
                Err(_) => targets.iter().filter(|t| t.up).count(),
            };
            out.extend(pc::metrics_targets(&down, temporal_up));
        }
        Err(e) => {
            skipped.insert(format!("Prometheus: {e}"));
            return out;
        }
    }
    match (
        crate::observability::rules::render(&cfg.observability),
        p::loaded_groups(prom).await,
    ) {
        (Ok(files), Ok(loaded)) => {
            let missing: Vec<String> = files
                .iter()
                .flat_map(|f| f.groups.iter().cloned())
                .filter(|g| !loaded.contains(g))
                .collect();
            out.extend(pc::alert_rules(&missing));
        }
        (Err(e), _) => {
            skipped.insert(format!("alert rules: {e}"));
        }
        (_, Err(e)) => {
            skipped.insert(format!("alert rules: {e}"));
        }
    }
    let mut latency = Vec::new();
    for (task_type, metric) in [
        (
            "Activity",
            "temporal_activity_schedule_to_start_latency_bucket",
        ),
        (
            "Workflow",
            "temporal_workflow_task_schedule_to_start_latency_bucket",
        ),
    ] {
        // Core-based SDKs export milliseconds (alerts/templates/temporal-capacity.yaml.tmpl).
        let expr = format!(
            "histogram_quantile(0.95, sum by (namespace, task_queue, le) (rate({metric}{{service_name=\"temporal-core-sdk\"}}[{METRICS_WINDOW}])))"
        );
        match p::query_vector(prom, &expr).await {
            Ok(v) => latency.extend(v.into_iter().filter(|(_, ms)| ms.is_finite()).map(
                |(l, ms)| pc::LatencySample {
                    namespace: l.get("namespace").cloned().unwrap_or_default(),
                    task_queue: l.get("task_queue").cloned().unwrap_or_default(),
                    task_type: task_type.to_string(),
                    p95: Duration::from_secs_f64(ms.max(0.0) / 1000.0),
                },
            )),
            Err(e) => {
                skipped.insert(format!("schedule-to-start: {e}"));
            }
        }
    }
    if latency.is_empty() {
        skipped.insert(
            "schedule-to-start: no SDK latency metrics in Prometheus (workers not scraped?)".into(),
        );
    }
    out.extend(pc::schedule_to_start(&latency, &cfg.observability.slo));
    let slots = format!(
        "min by (namespace, task_queue, worker_type) (min_over_time(temporal_worker_task_slots_available{{service_name!=\"worker\"}}[{METRICS_WINDOW}])) == 0"
    );
    match p::query_vector(prom, &slots).await {
        Ok(v) => out.extend(pc::worker_slots(
            &v.into_iter()
                .map(|(l, _)| pc::SlotSample {
                    namespace: l.get("namespace").cloned().unwrap_or_default(),
                    task_queue: l.get("task_queue").cloned().unwrap_or_default(),
                    worker_type: l.get("worker_type").cloned().unwrap_or_default(),
                })
                .collect::<Vec<_>>(),
        )),
        Err(e) => {
            skipped.insert(format!("worker slots: {e}"));
        }
    }
    out
}

/// Every history check for one namespace's sampled histories.
pub fn audit_histories(
    namespace: &str,
    sensitive: bool,
    histories: &[HistoryFacts],
) -> Vec<Finding> {
    let mut out = checks::payload_encryption(namespace, sensitive, histories);
    out.extend(checks::data_transport(namespace, histories));
    out.extend(checks::retries_and_timeouts(namespace, histories));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use temporalio_common::protos::temporal::api::common::v1::{
        ActivityType, Payload, Payloads, RetryPolicy, WorkflowType,
    };
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    use temporalio_common::protos::temporal::api::history::v1::{
        ActivityTaskCompletedEventAttributes, ActivityTaskScheduledEventAttributes, HistoryEvent,
        WorkflowExecutionCompletedEventAttributes, WorkflowExecutionStartedEventAttributes,
    };

    use super::findings::{Severity, add_example};
    use super::history::facts;
    use super::report::{Inputs, Report};
    use super::*;

    const MARKER: &str = "PATIENT-MARKER-4711";

    fn payload(encoding: &str, data: &[u8]) -> Payload {
        Payload {
            metadata: HashMap::from([("encoding".to_string(), encoding.as_bytes().to_vec())]),
            data: data.to_vec(),
            ..Default::default()
        }
    }

    fn payloads(p: Payload) -> Option<Payloads> {
        Some(Payloads { payloads: vec![p] })
    }

    fn secs(s: i64) -> Option<prost_wkt_types::Duration> {
        Some(prost_wkt_types::Duration {
            seconds: s,
            nanos: 0,
        })
    }

    /// A four-event history: started, activity scheduled and completed, workflow completed.
    fn history(
        encoding: &str,
        data: &[u8],
        activity: ActivityTaskScheduledEventAttributes,
    ) -> Vec<HistoryEvent> {
        let ev = |id: i64, a: Attributes| HistoryEvent {
            event_id: id,
            attributes: Some(a),
            ..Default::default()
        };
        vec![
            ev(
                1,
                Attributes::WorkflowExecutionStartedEventAttributes(
                    WorkflowExecutionStartedEventAttributes {
                        workflow_type: Some(WorkflowType {
                            name: "Admit".into(),
                        }),
                        input: payloads(payload(encoding, data)),
                        ..Default::default()
                    },
                ),
            ),
            ev(
                5,
                Attributes::ActivityTaskScheduledEventAttributes(
                    ActivityTaskScheduledEventAttributes {
                        activity_type: Some(ActivityType {
                            name: "Chart".into(),
                        }),
                        input: payloads(payload(encoding, data)),
                        ..activity
                    },
                ),
            ),
            ev(
                7,
                Attributes::ActivityTaskCompletedEventAttributes(
                    ActivityTaskCompletedEventAttributes {
                        scheduled_event_id: 5,
                        result: payloads(payload(encoding, data)),
                        ..Default::default()
                    },
                ),
            ),
            ev(
                11,
                Attributes::WorkflowExecutionCompletedEventAttributes(
                    WorkflowExecutionCompletedEventAttributes {
                        result: payloads(payload("binary/null", b"")),
                        ..Default::default()
                    },
                ),
            ),
        ]
    }

    fn healthy_activity() -> ActivityTaskScheduledEventAttributes {
        ActivityTaskScheduledEventAttributes {
            start_to_close_timeout: secs(30),
            schedule_to_close_timeout: secs(600),
            retry_policy: Some(RetryPolicy {
                initial_interval: secs(1),
                backoff_coefficient: 2.0,
                maximum_interval: secs(100),
                maximum_attempts: 5,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn facts_attribute_payloads_to_workflow_and_activity_types() {
        let f = facts("wf-1", &history("json/plain", b"\"x\"", healthy_activity()));
        assert_eq!(f.workflow_type, "Admit");
        assert_eq!(f.events, 4);
        assert!(f.bytes > 0);
        let sites: Vec<(&str, Option<&str>, &str)> = f
            .payloads
            .iter()
            .map(|p| (p.field, p.activity_type.as_deref(), p.encoding.as_str()))
            .collect();
        assert_eq!(
            sites,
            [
                ("WorkflowExecutionStarted.input", None, "json/plain"),
                ("ActivityTaskScheduled.input", Some("Chart"), "json/plain"),
                ("ActivityTaskCompleted.result", Some("Chart"), "json/plain"),
                ("WorkflowExecutionCompleted.result", None, "binary/null"),
            ]
        );
        assert_eq!(
            f.activities[0].start_to_close,
            Some(std::time::Duration::from_secs(30))
        );
    }

    #[test]
    fn a_clean_encrypted_namespace_has_no_finding() {
        let h = facts(
            "wf-ok",
            &history("binary/encrypted", b"\x00\x01", healthy_activity()),
        );
        assert_eq!(audit_histories("payments", true, &[h]), vec![]);
    }

    #[test]
    fn plaintext_is_critical_only_where_the_namespace_is_sensitive() {
        let h = facts(
            "wf-plain",
            &history("json/plain", MARKER.as_bytes(), healthy_activity()),
        );
        let sensitive = audit_histories("clinic", true, std::slice::from_ref(&h));
        assert_eq!(sensitive.len(), 1, "{sensitive:?}");
        assert_eq!(
            (sensitive[0].check, sensitive[0].severity),
            ("payload-plaintext", Severity::Critical)
        );
        assert_eq!(sensitive[0].evidence.counts["plaintext_payloads"], 3);
        assert_eq!(sensitive[0].evidence.example_workflow_ids, ["wf-plain"]);
        assert!(
            sensitive[0]
                .evidence
                .names
                .contains(&"activity Chart: 2".to_string())
        );
        let other = audit_histories("internal", false, &[h]);
        assert_eq!(other[0].severity, Severity::Warning);
    }

    #[test]
    fn large_payloads_and_long_histories_are_measured_against_the_server_limits() {
        let big = vec![b'a'; 2 * 1024 * 1024 - 4096];
        let h = facts(
            "wf-big",
            &history("binary/encrypted", &big, healthy_activity()),
        );
        let f = audit_histories("ingest", false, &[h]);
        let size = f
            .iter()
            .find(|f| f.check == "payload-size")
            .expect("payload-size");
        assert_eq!(
            size.severity,
            Severity::Critical,
            "near the 2 MiB error limit"
        );
        assert!(
            size.evidence
                .names
                .iter()
                .any(|n| n.starts_with("activity Chart: p50")),
            "{size:?}"
        );

        let mut long = facts(
            "wf-long",
            &history("binary/encrypted", b"x", healthy_activity()),
        );
        long.events = 12_000;
        let f = audit_histories("ingest", false, &[long]);
        let hist = f
            .iter()
            .find(|f| f.check == "history-length")
            .expect("history-length");
        assert_eq!(hist.severity, Severity::Warning);
        assert_eq!(hist.evidence.counts["max_events"], 12_000);
    }

    #[test]
    fn retry_and_timeout_traps_are_each_found() {
        let no_heartbeat = ActivityTaskScheduledEventAttributes {
            start_to_close_timeout: secs(600),
            schedule_to_close_timeout: secs(3600),
            ..healthy_activity()
        };
        let f = audit_histories(
            "ops",
            false,
            &[facts(
                "wf-hb",
                &history("binary/encrypted", b"x", no_heartbeat),
            )],
        );
        assert_eq!(
            f.iter().map(|f| f.check).collect::<Vec<_>>(),
            ["activity-no-heartbeat"]
        );

        let unlimited = ActivityTaskScheduledEventAttributes {
            retry_policy: Some(RetryPolicy {
                maximum_attempts: 0,
                ..healthy_activity().retry_policy.unwrap()
            }),
            ..healthy_activity()
        };
        let f = audit_histories(
            "ops",
            false,
            &[facts("wf-u", &history("binary/encrypted", b"x", unlimited))],
        );
        assert_eq!(
            f.iter().map(|f| f.check).collect::<Vec<_>>(),
            ["activity-unlimited-retries"]
        );

        // A 30 s gateway call with schedule-to-close 30 s: the retry policy can never act.
        let cut = ActivityTaskScheduledEventAttributes {
            schedule_to_close_timeout: secs(30),
            ..healthy_activity()
        };
        let a = facts("wf-c1", &history("binary/encrypted", b"x", cut));
        let b = facts(
            "wf-c2",
            &history("binary/encrypted", b"x", healthy_activity()),
        );
        let f = audit_histories("ops", false, &[a, b]);
        let checks: Vec<&str> = f.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            [
                "activity-retries-cut-short",
                "activity-inconsistent-policies"
            ]
        );
    }

    #[test]
    fn external_storage_is_reported_by_workflow_type() {
        let e = |id: &str, n: u64| ExecutionRef {
            workflow_id: id.into(),
            workflow_type: "Archive".into(),
            external_payloads: n,
            external_payload_bytes: n * 1000,
            ..Default::default()
        };
        let f = checks::external_payloads("docs", &[e("a", 2), e("b", 0), e("c", 1)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "payload-external-storage");
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(f[0].evidence.counts["payloads"], 3);
        assert_eq!(f[0].evidence.counts["bytes"], 3000);
        assert_eq!(f[0].evidence.names, ["workflow Archive"]);
        assert_eq!(f[0].evidence.example_workflow_ids, ["a", "c"]);
        assert!(checks::external_payloads("docs", &[e("b", 0)]).is_empty());
    }

    #[test]
    fn no_report_form_holds_payload_data() {
        let h = facts(
            "wf-plain",
            &history("json/plain", MARKER.as_bytes(), healthy_activity()),
        );
        let inputs = Inputs {
            config_file: "platform.yaml".into(),
            frontend: "temporal.example.com:7233".into(),
            namespaces: vec!["clinic".into()],
            since: "24h".into(),
            sample_per_namespace: 200,
            histories_read: 1,
            history_bytes_read: h.bytes,
            ..Default::default()
        };
        let r = Report::new(
            "2026-12-07T00:00:00Z".into(),
            inputs,
            audit_histories("clinic", true, &[h]),
        );
        assert_eq!(r.worst(), Some(Severity::Critical));
        for text in [r.to_json(), r.to_table(), r.to_markdown(), r.to_html()] {
            assert!(!text.contains(MARKER), "{text}");
            assert!(text.contains("payload-plaintext"), "{text}");
        }
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["schema"], "temporal-bootstrap/audit/v1");
        assert_eq!(json["summary"]["critical"], 1);
        let html = r.to_html();
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
            "self-contained"
        );
    }

    #[test]
    fn html_and_markdown_escape_names() {
        let mut f = audit_histories(
            "ns<script>",
            false,
            &[facts(
                "wf|<b>",
                &history("json/plain", b"x", healthy_activity()),
            )],
        );
        f[0].evidence.names.push("a|b<c>".into());
        let inputs = Inputs {
            config_file: "p.yaml".into(),
            frontend: "f".into(),
            namespaces: vec!["ns<script>".into()],
            since: "24h".into(),
            sample_per_namespace: 1,
            histories_read: 1,
            history_bytes_read: 1,
            ..Default::default()
        };
        let r = Report::new("t".into(), inputs, f);
        assert!(!r.to_html().contains("<script>") && !r.to_html().contains("<b>"));
        let md = r.to_markdown();
        assert!(md.contains("a\\|b&lt;c&gt;") && !md.contains("<b>"), "{md}");
        let mut ex = vec![];
        for id in ["a", "a", "b", "c", "d"] {
            add_example(&mut ex, id);
        }
        assert_eq!(ex, ["a", "b", "c"]);
    }
}
