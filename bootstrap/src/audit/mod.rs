//! `temporal-bootstrap audit` (issue 21, in progress): a read-only production-readiness audit of a
//! live deployment. Flow: for each namespace, list up to `--sample` executions started within
//! `--since` (ListWorkflowExecutions), read each history page by page
//! (GetWorkflowExecutionHistory) into [`history::HistoryFacts`] without keeping the events, run
//! the [`checks`], and build the [`report::Report`].
//!
//! Guarantees: read-only (only List/Get RPCs; the mutating-call counter stays at zero); no payload
//! byte is kept or printed (payloads are measured and their `encoding` read, nothing else); every
//! threshold is a named constant with its source (docs/audit.md). Checks not implemented yet:
//! workers and task queues, versioning, search attributes, security and operations.

pub mod checks;
pub mod findings;
pub mod history;
pub mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use findings::Finding;
use history::HistoryFacts;
use report::{Inputs, Report};

use crate::reconcile::Context;
use crate::temporal::TemporalError;
use crate::temporal::api::TemporalApi;

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

/// Runs the audit against the frontend of `ctx` (read-only).
pub async fn run(
    ctx: &Context,
    opts: &AuditOptions,
    config_file: &str,
) -> Result<Report, TemporalError> {
    let api = crate::temporal::connect(ctx).await?;
    let now = time::OffsetDateTime::now_utc();
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let since = now - time::Duration::try_from(opts.since).unwrap_or(time::Duration::DAY);
    let query = format!("StartTime > \"{}\"", rfc3339(since));
    let namespaces: Vec<String> = if opts.namespaces.is_empty() {
        ctx.config
            .namespaces
            .iter()
            .map(|n| n.name.as_str().to_string())
            .collect()
    } else {
        opts.namespaces.clone()
    };
    let sensitive: BTreeMap<&str, bool> = ctx
        .config
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), n.sensitive))
        .collect();
    let mut findings = Vec::new();
    let (mut histories_read, mut bytes_read) = (0u64, 0u64);
    for ns in &namespaces {
        let facts = sample_histories(api.as_ref(), ns, &query, opts.sample as usize).await?;
        histories_read += facts.len() as u64;
        bytes_read += facts.iter().map(|f| f.bytes).sum::<u64>();
        let is_sensitive = sensitive.get(ns.as_str()).copied().unwrap_or(false);
        findings.extend(audit_histories(ns, is_sensitive, &facts));
    }
    let inputs = Inputs {
        config_file: config_file.to_string(),
        frontend: api.address(),
        namespaces,
        since: crate::temporal::api::human(opts.since),
        sample_per_namespace: opts.sample,
        histories_read,
        history_bytes_read: bytes_read,
    };
    Ok(Report::new(rfc3339(now), inputs, findings))
}

/// Reads up to `limit` histories of `namespace`, page by page, keeping only their facts.
async fn sample_histories(
    api: &dyn TemporalApi,
    namespace: &str,
    query: &str,
    limit: usize,
) -> Result<Vec<HistoryFacts>, TemporalError> {
    let executions = api.list_executions(namespace, query, limit).await?;
    let mut out = Vec::with_capacity(executions.len());
    for e in &executions {
        let mut facts = HistoryFacts::new(&e.workflow_id);
        let mut token = Vec::new();
        loop {
            let (events, next) = api.history_page(namespace, e, token).await?;
            for ev in &events {
                facts.add(ev);
            }
            if next.is_empty() {
                break;
            }
            token = next;
        }
        out.push(facts);
    }
    Ok(out)
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
