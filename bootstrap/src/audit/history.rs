//! Facts of one workflow history, read from its events: every payload's encoding and size (with
//! the workflow and activity type it belongs to), the history's length and size, and the
//! timeouts and retry policy of each scheduled activity. Pure: no I/O; payload data is measured,
//! never copied or kept.
//!
//! Payload-bearing events covered: workflow started (input, memo, header), completed (result),
//! continued-as-new (input), signaled (input), activity scheduled (input, header) and completed
//! (result), marker recorded (details: local activities, side effects, versions), child workflow
//! initiated (input) and completed (result). Failure details are not read.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use temporalio_common::protos::temporal::api::common::v1::{Payload, Payloads};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowTaskFailedCause;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::temporal::api::TaskQueueKind;

/// One payload found in a history (its bytes are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSite {
    pub event_id: i64,
    /// Where it was found, e.g. `ActivityTaskScheduled.input`.
    pub field: &'static str,
    /// The activity type for activity inputs and results.
    pub activity_type: Option<String>,
    /// `metadata.encoding` as text (empty when absent).
    pub encoding: String,
    /// Size of the payload as the server stores it (data and metadata).
    pub bytes: u64,
}

/// Timeouts and retry policy of one scheduled activity.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityPolicy {
    pub event_id: i64,
    pub activity_type: String,
    pub schedule_to_close: Option<Duration>,
    pub start_to_close: Option<Duration>,
    pub heartbeat: Option<Duration>,
    pub retry: Option<Retry>,
}

/// The retry policy the server recorded (it fills in defaults when the SDK sent none).
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub initial_interval: Option<Duration>,
    pub backoff_coefficient: f64,
    pub maximum_interval: Option<Duration>,
    /// 0 = unlimited.
    pub maximum_attempts: i32,
    pub non_retryable_error_types: usize,
}

/// What one history says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFacts {
    pub workflow_id: String,
    pub workflow_type: String,
    pub events: u64,
    /// Sum of the encoded sizes of the events.
    pub bytes: u64,
    pub payloads: Vec<PayloadSite>,
    pub activities: Vec<ActivityPolicy>,
    /// The workflow continued as new (its history was cut on purpose).
    pub continued_as_new: bool,
    /// WorkflowTaskFailed events by cause (e.g. `NonDeterministicError`). Only the first failure
    /// of a run of attempts is written to history; the server's `TemporalReportedProblems`
    /// attribute covers the repeats.
    pub workflow_task_failures: BTreeMap<String, u64>,
    /// Task queues the workflow and its activities were scheduled on.
    pub task_queues: std::collections::BTreeSet<(String, TaskQueueKind)>,
    /// Activity scheduled-event id -> type, so results are attributed to their activity.
    scheduled: BTreeMap<i64, String>,
}

/// Reads the facts of one history held in memory (tests); the audit feeds pages to
/// [`HistoryFacts::add`] instead, so a history is never held whole.
pub fn facts(workflow_id: &str, events: &[HistoryEvent]) -> HistoryFacts {
    let mut f = HistoryFacts::new(workflow_id);
    for e in events {
        f.add(e);
    }
    f
}

impl HistoryFacts {
    pub fn new(workflow_id: &str) -> Self {
        Self {
            workflow_id: workflow_id.to_string(),
            ..Default::default()
        }
    }

    /// Adds one event (events in history order).
    pub fn add(&mut self, e: &HistoryEvent) {
        self.events += 1;
        self.bytes += e.encoded_len() as u64;
        let Some(a) = &e.attributes else { return };
        let id = e.event_id;
        match a {
            Attributes::WorkflowExecutionStartedEventAttributes(s) => {
                self.workflow_type = s
                    .workflow_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                if let Some(q) = &s.task_queue {
                    self.task_queues
                        .insert((q.name.clone(), TaskQueueKind::Workflow));
                }
                self.push_all(id, "WorkflowExecutionStarted.input", None, s.input.as_ref());
                if let Some(m) = &s.memo {
                    for p in m.fields.values() {
                        self.push(id, "WorkflowExecutionStarted.memo", None, p);
                    }
                }
                if let Some(h) = &s.header {
                    for p in h.fields.values() {
                        self.push(id, "WorkflowExecutionStarted.header", None, p);
                    }
                }
            }
            Attributes::WorkflowExecutionCompletedEventAttributes(c) => {
                self.push_all(
                    id,
                    "WorkflowExecutionCompleted.result",
                    None,
                    c.result.as_ref(),
                );
            }
            Attributes::WorkflowExecutionContinuedAsNewEventAttributes(c) => {
                self.continued_as_new = true;
                self.push_all(
                    id,
                    "WorkflowExecutionContinuedAsNew.input",
                    None,
                    c.input.as_ref(),
                );
            }
            Attributes::WorkflowExecutionSignaledEventAttributes(s) => {
                self.push_all(
                    id,
                    "WorkflowExecutionSignaled.input",
                    None,
                    s.input.as_ref(),
                );
            }
            Attributes::ActivityTaskScheduledEventAttributes(s) => {
                let ty = s
                    .activity_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                self.scheduled.insert(id, ty.clone());
                if let Some(q) = &s.task_queue {
                    self.task_queues
                        .insert((q.name.clone(), TaskQueueKind::Activity));
                }
                self.push_all(
                    id,
                    "ActivityTaskScheduled.input",
                    Some(&ty),
                    s.input.as_ref(),
                );
                let dur = |d: &Option<prost_wkt_types::Duration>| d.as_ref().and_then(to_duration);
                self.activities.push(ActivityPolicy {
                    event_id: id,
                    activity_type: ty,
                    schedule_to_close: dur(&s.schedule_to_close_timeout),
                    start_to_close: dur(&s.start_to_close_timeout),
                    heartbeat: dur(&s.heartbeat_timeout),
                    retry: s.retry_policy.as_ref().map(|r| Retry {
                        initial_interval: dur(&r.initial_interval),
                        backoff_coefficient: r.backoff_coefficient,
                        maximum_interval: dur(&r.maximum_interval),
                        maximum_attempts: r.maximum_attempts,
                        non_retryable_error_types: r.non_retryable_error_types.len(),
                    }),
                });
            }
            Attributes::ActivityTaskCompletedEventAttributes(c) => {
                let ty = self.scheduled.get(&c.scheduled_event_id).cloned();
                self.push_all(
                    id,
                    "ActivityTaskCompleted.result",
                    ty.as_deref(),
                    c.result.as_ref(),
                );
            }
            Attributes::WorkflowTaskFailedEventAttributes(f) => {
                let cause = WorkflowTaskFailedCause::try_from(f.cause)
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|_| format!("Cause{}", f.cause));
                *self.workflow_task_failures.entry(cause).or_default() += 1;
            }
            Attributes::MarkerRecordedEventAttributes(m) => {
                for ps in m.details.values() {
                    self.push_all(id, "MarkerRecorded.details", None, Some(ps));
                }
            }
            Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(c) => {
                self.push_all(
                    id,
                    "StartChildWorkflowExecutionInitiated.input",
                    None,
                    c.input.as_ref(),
                );
            }
            Attributes::ChildWorkflowExecutionCompletedEventAttributes(c) => {
                self.push_all(
                    id,
                    "ChildWorkflowExecutionCompleted.result",
                    None,
                    c.result.as_ref(),
                );
            }
            _ => {}
        }
    }

    fn push_all(
        &mut self,
        id: i64,
        field: &'static str,
        activity: Option<&str>,
        ps: Option<&Payloads>,
    ) {
        for p in ps.map(|p| p.payloads.as_slice()).unwrap_or_default() {
            self.push(id, field, activity, p);
        }
    }

    fn push(&mut self, id: i64, field: &'static str, activity: Option<&str>, p: &Payload) {
        self.payloads.push(PayloadSite {
            event_id: id,
            field,
            activity_type: activity.map(String::from),
            encoding: p
                .metadata
                .get("encoding")
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .unwrap_or_default(),
            bytes: p.encoded_len() as u64,
        });
    }
}

fn to_duration(d: &prost_wkt_types::Duration) -> Option<Duration> {
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(secs, nanos))
}
