//! The checks that read sampled histories (and their visibility records). Pure: facts in,
//! findings out. Every threshold is a named constant with its source; docs/audit.md lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::findings::{Decision, Evidence, Finding, Severity, add_example};
use super::history::{ActivityPolicy, HistoryFacts};
use crate::temporal::api::ExecutionRef;

/// Encodings whose data is readable by anyone who can read the history (the SDKs' default
/// converters). `binary/null` carries no data and is not counted.
pub const PLAINTEXT_ENCODINGS: &[&str] = &[
    "json/plain",
    "json/protobuf",
    "binary/plain",
    "binary/protobuf",
];

/// Server defaults (go.temporal.io/server common/dynamicconfig/constants.go, 1.32):
/// `limit.blobSize.warn` and `limit.blobSize.error`.
pub const BLOB_WARN_BYTES: u64 = 512 * 1024;
pub const BLOB_ERROR_BYTES: u64 = 2 * 1024 * 1024;
/// `limit.historyCount.warn` / `.error`.
pub const HISTORY_EVENTS_WARN: u64 = 10 * 1024;
pub const HISTORY_EVENTS_ERROR: u64 = 50 * 1024;
/// `limit.historySize.warn` / `.error`.
pub const HISTORY_BYTES_WARN: u64 = 10 * 1024 * 1024;
pub const HISTORY_BYTES_ERROR: u64 = 50 * 1024 * 1024;
/// A start-to-close timeout above this with no heartbeat timeout: a worker crash is noticed only
/// when the whole timeout has passed (the guide's "long activities without heartbeats").
pub const LONG_ACTIVITY: Duration = Duration::from_secs(5 * 60);

/// Plaintext payloads: critical in a namespace marked `sensitive: true`, a warning elsewhere.
pub fn payload_encryption(
    namespace: &str,
    sensitive: bool,
    histories: &[HistoryFacts],
) -> Vec<Finding> {
    let mut total = 0u64;
    let mut plaintext = 0u64;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut encodings: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples = Vec::new();
    for h in histories {
        for p in &h.payloads {
            if p.encoding == "binary/null" {
                continue;
            }
            total += 1;
            if PLAINTEXT_ENCODINGS.contains(&p.encoding.as_str()) {
                plaintext += 1;
                let key = match &p.activity_type {
                    Some(a) => format!("activity {a}"),
                    None => format!("workflow {}", h.workflow_type),
                };
                *by_type.entry(key).or_default() += 1;
                *encodings.entry(p.encoding.clone()).or_default() += 1;
                add_example(&mut examples, &h.workflow_id);
            }
        }
    }
    if plaintext == 0 {
        return vec![];
    }
    let mut counts = BTreeMap::from([
        ("payloads_read".to_string(), total),
        ("plaintext_payloads".to_string(), plaintext),
        ("histories_sampled".to_string(), histories.len() as u64),
    ]);
    for (enc, n) in &encodings {
        counts.insert(format!("encoding {enc}"), *n);
    }
    vec![Finding {
        check: "payload-plaintext",
        severity: if sensitive {
            Severity::Critical
        } else {
            Severity::Warning
        },
        decision: Decision::Security,
        namespace: Some(namespace.to_string()),
        title: format!(
            "{plaintext} of {total} payloads in {} sampled histories are stored in plaintext{}",
            histories.len(),
            if sensitive {
                " in a namespace marked sensitive"
            } else {
                ""
            }
        ),
        evidence: Evidence {
            counts,
            names: by_type
                .into_iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect(),
            example_workflow_ids: examples,
        },
        fix: "Encrypt payloads in the workers with a payload codec (examples/payload-encryption, \
              docs/payload-encryption.md) and serve `codec-server` for the Web UI; mark the \
              namespace `sensitive: true` in platform.yaml so this is critical."
            .into(),
    }]
}

/// Payload sizes per workflow and activity type against the blob limits, history length and
/// size against the history limits.
pub fn data_transport(namespace: &str, histories: &[HistoryFacts]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut sizes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut large_examples = Vec::new();
    for h in histories {
        for p in &h.payloads {
            let key = match &p.activity_type {
                Some(a) => format!("activity {a}"),
                None => format!("workflow {}", h.workflow_type),
            };
            sizes.entry(key).or_default().push(p.bytes);
            if p.bytes > BLOB_WARN_BYTES {
                add_example(&mut large_examples, &h.workflow_id);
            }
        }
    }
    let mut over: Vec<(String, u64, u64, u64)> = Vec::new();
    let mut worst = 0;
    for (key, mut v) in sizes {
        v.sort_unstable();
        let max = *v.last().unwrap_or(&0);
        if max > BLOB_WARN_BYTES {
            worst = worst.max(max);
            over.push((key, percentile(&v, 50), percentile(&v, 99), max));
        }
    }
    if !over.is_empty() {
        let severity = if worst > BLOB_ERROR_BYTES * 3 / 4 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        out.push(Finding {
            check: "payload-size",
            severity,
            decision: Decision::WorkerArchitecture,
            namespace: Some(namespace.to_string()),
            title: format!(
                "payloads up to {} bytes (the server warns at {BLOB_WARN_BYTES} and refuses above {BLOB_ERROR_BYTES})",
                worst
            ),
            evidence: Evidence {
                counts: BTreeMap::from([("max_payload_bytes".into(), worst)]),
                names: over
                    .iter()
                    .map(|(k, p50, p99, max)| format!("{k}: p50 {p50} B, p99 {p99} B, max {max} B"))
                    .collect(),
                example_workflow_ids: large_examples,
            },
            fix: "Pass references (an object-store key, a database id) through workflows and \
                  activities instead of documents; keep payloads well under 512 KiB."
                .into(),
        });
    }
    let mut long = Vec::new();
    let (mut max_events, mut max_bytes) = (0u64, 0u64);
    for h in histories {
        if h.events > HISTORY_EVENTS_WARN || h.bytes > HISTORY_BYTES_WARN {
            add_example(&mut long, &h.workflow_id);
            max_events = max_events.max(h.events);
            max_bytes = max_bytes.max(h.bytes);
        }
    }
    if !long.is_empty() {
        let critical =
            max_events > HISTORY_EVENTS_ERROR * 3 / 4 || max_bytes > HISTORY_BYTES_ERROR * 3 / 4;
        out.push(Finding {
            check: "history-length",
            severity: if critical { Severity::Critical } else { Severity::Warning },
            decision: Decision::Reliability,
            namespace: Some(namespace.to_string()),
            title: format!(
                "histories of up to {max_events} events / {max_bytes} bytes (the server warns at {HISTORY_EVENTS_WARN} events or {HISTORY_BYTES_WARN} bytes and terminates at {HISTORY_EVENTS_ERROR} / {HISTORY_BYTES_ERROR})"
            ),
            evidence: Evidence {
                counts: BTreeMap::from([
                    ("max_events".into(), max_events),
                    ("max_history_bytes".into(), max_bytes),
                ]),
                names: vec![],
                example_workflow_ids: long,
            },
            fix: "Continue-as-new before the warning limit (the SDKs expose the history length and \
                  size, and the server suggests continue-as-new); move long loops into child workflows."
                .into(),
        });
    }
    out
}

/// Retry policies and timeouts of scheduled activities.
pub fn retries_and_timeouts(namespace: &str, histories: &[HistoryFacts]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut no_heartbeat: BTreeMap<String, (Duration, Vec<String>)> = BTreeMap::new();
    let mut unlimited: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut policies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut short_close: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in histories {
        for a in &h.activities {
            if let Some(stc) = a.start_to_close
                && stc > LONG_ACTIVITY
                && a.heartbeat.is_none_or(|hb| hb.is_zero())
            {
                let e = no_heartbeat
                    .entry(a.activity_type.clone())
                    .or_insert((stc, vec![]));
                e.0 = e.0.max(stc);
                add_example(&mut e.1, &h.workflow_id);
            }
            if let Some(r) = &a.retry
                && r.maximum_attempts == 0
                && r.non_retryable_error_types == 0
            {
                add_example(
                    unlimited.entry(a.activity_type.clone()).or_default(),
                    &h.workflow_id,
                );
            }
            if schedule_to_close_cuts_retries(a) {
                add_example(
                    short_close.entry(a.activity_type.clone()).or_default(),
                    &h.workflow_id,
                );
            }
            let sig = policy_signature(a);
            let seen = policies.entry(a.activity_type.clone()).or_default();
            if !seen.contains(&sig) {
                seen.push(sig);
            }
        }
    }
    for (ty, (stc, examples)) in no_heartbeat {
        out.push(Finding {
            check: "activity-no-heartbeat",
            severity: Severity::Warning,
            decision: Decision::Reliability,
            namespace: Some(namespace.to_string()),
            title: format!(
                "activity {ty} may run {}s (start-to-close) with no heartbeat timeout: a crashed worker is noticed only after the whole timeout",
                stc.as_secs()
            ),
            evidence: Evidence {
                counts: BTreeMap::from([("start_to_close_seconds".into(), stc.as_secs())]),
                names: vec![ty.clone()],
                example_workflow_ids: examples,
            },
            fix: format!(
                "Heartbeat from {ty} and set a heartbeat timeout of a minute or less (ActivityOptions \
                 heartbeat_timeout); keep start-to-close for the longest healthy run."
            ),
        });
    }
    for (ty, examples) in unlimited {
        out.push(Finding {
            check: "activity-unlimited-retries",
            severity: Severity::Warning,
            decision: Decision::Reliability,
            namespace: Some(namespace.to_string()),
            title: format!(
                "activity {ty} retries without limit and treats every error as retryable"
            ),
            evidence: Evidence {
                counts: BTreeMap::new(),
                names: vec![ty.clone()],
                example_workflow_ids: examples,
            },
            fix: "List the errors that retrying cannot fix as non-retryable (RetryPolicy \
                  non_retryable_error_types, or raise them as non-retryable application errors), \
                  or bound maximum_attempts / schedule_to_close."
                .into(),
        });
    }
    for (ty, examples) in short_close {
        out.push(Finding {
            check: "activity-retries-cut-short",
            severity: Severity::Warning,
            decision: Decision::Reliability,
            namespace: Some(namespace.to_string()),
            title: format!(
                "activity {ty}: schedule-to-close ends before its retry policy's second attempt can start"
            ),
            evidence: Evidence {
                counts: BTreeMap::new(),
                names: vec![ty.clone()],
                example_workflow_ids: examples,
            },
            fix: "Size schedule-to-close for the retries you expect (the sum of start-to-close and \
                  the backoff intervals), or drop the retry policy if one attempt is intended."
                .into(),
        });
    }
    for (ty, sigs) in policies {
        if sigs.len() > 1 {
            out.push(Finding {
                check: "activity-inconsistent-policies",
                severity: Severity::Info,
                decision: Decision::Reliability,
                namespace: Some(namespace.to_string()),
                title: format!("activity {ty} is scheduled with {} different timeout/retry settings", sigs.len()),
                evidence: Evidence {
                    counts: BTreeMap::from([("distinct_policies".into(), sigs.len() as u64)]),
                    names: sigs,
                    example_workflow_ids: vec![],
                },
                fix: "Define the activity's options once (a shared ActivityOptions per activity type) \
                      so every caller gets the same timeouts and retries."
                    .into(),
            });
        }
    }
    out
}

/// Executions that store payloads outside history (external storage), as info: where the
/// data-transport trap was avoided on purpose, the auditor should know where the data lives.
pub fn external_payloads(namespace: &str, executions: &[ExecutionRef]) -> Vec<Finding> {
    let users: Vec<&ExecutionRef> = executions
        .iter()
        .filter(|e| e.external_payloads > 0)
        .collect();
    if users.is_empty() {
        return Vec::new();
    }
    let mut examples = Vec::new();
    for e in &users {
        add_example(&mut examples, &e.workflow_id);
    }
    vec![Finding {
        check: "payload-external-storage",
        severity: Severity::Info,
        decision: Decision::Reliability,
        namespace: Some(namespace.to_string()),
        title: format!(
            "{} execution(s) keep payloads in external storage",
            users.len()
        ),
        evidence: Evidence {
            counts: BTreeMap::from([
                ("payloads".into(), users.iter().map(|e| e.external_payloads).sum()),
                (
                    "bytes".into(),
                    users.iter().map(|e| e.external_payload_bytes).sum(),
                ),
            ]),
            names: users
                .iter()
                .map(|e| format!("workflow {}", e.workflow_type))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            example_workflow_ids: examples,
        },
        fix: "make sure the external store has the same retention, encryption and access control as the namespace".into(),
    }]
}

/// The value at percentile `p` of sorted `v` (nearest rank).
fn percentile(v: &[u64], p: u64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (p as usize * v.len()).div_ceil(100).max(1);
    v[rank.min(v.len()) - 1]
}

/// Whether schedule-to-close is shorter than one attempt plus the first backoff: the retry
/// policy can then never act.
fn schedule_to_close_cuts_retries(a: &ActivityPolicy) -> bool {
    let (Some(stc_total), Some(attempt), Some(r)) =
        (a.schedule_to_close, a.start_to_close, &a.retry)
    else {
        return false;
    };
    if r.maximum_attempts == 1 || stc_total.is_zero() {
        return false;
    }
    let first_backoff = r.initial_interval.unwrap_or(Duration::from_secs(1));
    stc_total < attempt + first_backoff
}

fn policy_signature(a: &ActivityPolicy) -> String {
    let s = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{}s", d.as_secs()));
    let retry = a.retry.as_ref().map_or("-".to_string(), |r| {
        format!(
            "attempts {} initial {} backoff {} max {} non-retryable {}",
            r.maximum_attempts,
            s(r.initial_interval),
            r.backoff_coefficient,
            s(r.maximum_interval),
            r.non_retryable_error_types
        )
    });
    format!(
        "schedule-to-close {} start-to-close {} heartbeat {} retry [{retry}]",
        s(a.schedule_to_close),
        s(a.start_to_close),
        s(a.heartbeat)
    )
}
