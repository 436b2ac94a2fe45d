//! The operations the steps need from Temporal, as a small object-safe trait, plus the values
//! they exchange. The real implementation is [`super::grpc::GrpcTemporal`]; unit tests use an
//! in-memory fake.
//!
//! Also the process-wide count of mutating RPCs per namespace ([`mutating_calls`]): the real
//! adapter records every RegisterNamespace, UpdateNamespace and AddSearchAttributes attempt
//! before sending it, so tests can prove that a converged run or a dry run writes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::types::SearchAttributeType;

use super::TemporalError;

pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TemporalError>> + Send + 'a>>;

/// Facts about the running cluster (GetSystemInfo + GetClusterInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub server_version: String,
    pub cluster_name: String,
    pub cluster_id: String,
    pub persistence_store: String,
    pub visibility_store: String,
    pub history_shard_count: u32,
}

impl ClusterInfo {
    /// Whether the visibility store is SQL (caps search attributes per type and namespace).
    /// `None` when the server did not say (older servers): the caller falls back to the config.
    pub fn visibility_is_sql(&self) -> Option<bool> {
        let store = self.visibility_store.to_ascii_lowercase();
        if store.is_empty() {
            None
        } else {
            Some(!(store.contains("elasticsearch") || store.contains("opensearch")))
        }
    }
}

/// A namespace as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceState {
    pub name: String,
    /// Registered, Deprecated or Deleted.
    pub state: String,
    pub retention: Option<Duration>,
    pub description: String,
    pub owner_email: String,
    pub data: BTreeMap<String, String>,
    /// Whether history archival is enabled (closed histories outlive retention in the archive).
    pub history_archival: bool,
}

/// What to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSpec {
    pub name: String,
    pub retention: Duration,
    pub description: String,
    pub owner_email: String,
    pub data: BTreeMap<String, String>,
}

/// What to change on an existing namespace; `None` / empty means "leave as is".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceUpdate {
    pub name: String,
    pub retention: Option<Duration>,
    pub description: Option<String>,
    pub owner_email: Option<String>,
    /// Keys to set (the server merges; it cannot remove keys).
    pub data: BTreeMap<String, String>,
}

impl NamespaceUpdate {
    pub fn is_empty(&self) -> bool {
        self.retention.is_none()
            && self.description.is_none()
            && self.owner_email.is_none()
            && self.data.is_empty()
    }
}

/// Custom search attributes of a namespace, name -> type (`None`: a type this build does not
/// know, reported as `unknown`).
pub type ObservedAttributes = BTreeMap<String, Option<SearchAttributeType>>;

/// A workflow execution found by a visibility query, with the visibility facts the audit reads.
/// Search attribute *values* are not kept (they may be business data), except the server's own
/// `TemporalReportedProblems`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionRef {
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    /// Names of the search attributes set on it.
    pub search_attributes: Vec<String>,
    /// Values of `TemporalReportedProblems`, e.g. `cause=WorkflowTaskFailedCauseNonDeterministicError`.
    pub reported_problems: Vec<String>,
    /// Payloads stored outside history (`external_payload_count` / `_size_bytes`).
    pub external_payloads: u64,
    pub external_payload_bytes: u64,
    /// The Worker Deployment the execution ran on with versioning (from
    /// `TemporalWorkerDeploymentVersion`); empty when it ran unversioned.
    pub worker_deployment: String,
}

/// Which tasks of a task queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskQueueKind {
    Workflow,
    Activity,
}

impl TaskQueueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskQueueKind::Workflow => "workflow",
            TaskQueueKind::Activity => "activity",
        }
    }
}

/// A task queue as DescribeTaskQueue reports it (with `report_stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQueueState {
    /// Identities of the workers that polled recently (the server keeps about 5 minutes).
    pub pollers: Vec<String>,
    pub backlog_count: u64,
    pub backlog_age: Option<Duration>,
}

/// One page of a workflow history; `next_page_token` is empty on the last page.
pub type HistoryPage = (
    Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent>,
    Vec<u8>,
);

/// The Temporal operations the steps (and the read-only audit) use.
pub trait TemporalApi: Send + Sync {
    /// The address this talks to (for messages).
    fn address(&self) -> String;
    fn cluster_info(&self) -> ApiFuture<'_, ClusterInfo>;
    /// Every namespace, all pages.
    fn list_namespaces(&self) -> ApiFuture<'_, Vec<NamespaceState>>;
    /// `Err(NamespaceNotFound)` when it does not exist.
    fn describe_namespace<'a>(&'a self, name: &'a str) -> ApiFuture<'a, NamespaceState>;
    /// `Ok(false)` when it exists already (ALREADY_EXISTS).
    fn register_namespace<'a>(&'a self, spec: &'a NamespaceSpec) -> ApiFuture<'a, bool>;
    fn update_namespace<'a>(&'a self, update: &'a NamespaceUpdate) -> ApiFuture<'a, ()>;
    /// Custom search attributes of the namespace; `Err(NamespaceNotFound)` when it does not exist.
    fn list_search_attributes<'a>(
        &'a self,
        namespace: &'a str,
    ) -> ApiFuture<'a, ObservedAttributes>;
    /// One AddSearchAttributes call with all of `attributes`.
    fn add_search_attributes<'a>(
        &'a self,
        namespace: &'a str,
        attributes: &'a BTreeMap<String, SearchAttributeType>,
    ) -> ApiFuture<'a, ()>;
    /// Up to `limit` executions matching the visibility `query` (ListWorkflowExecutions, most
    /// recent first). Read-only.
    fn list_executions<'a>(
        &'a self,
        namespace: &'a str,
        query: &'a str,
        limit: usize,
    ) -> ApiFuture<'a, Vec<ExecutionRef>> {
        let _ = (namespace, query, limit);
        Box::pin(async {
            Err(TemporalError::Config(
                "list_executions is not supported here".into(),
            ))
        })
    }
    /// Pollers and backlog of one task queue (DescribeTaskQueue with stats). Read-only.
    fn describe_task_queue<'a>(
        &'a self,
        namespace: &'a str,
        task_queue: &'a str,
        kind: TaskQueueKind,
    ) -> ApiFuture<'a, TaskQueueState> {
        let _ = (namespace, task_queue, kind);
        Box::pin(async {
            Err(TemporalError::Config(
                "describe_task_queue is not supported here".into(),
            ))
        })
    }
    /// One page of an execution's history (GetWorkflowExecutionHistory). Read-only.
    fn history_page<'a>(
        &'a self,
        namespace: &'a str,
        execution: &'a ExecutionRef,
        next_page_token: Vec<u8>,
    ) -> ApiFuture<'a, HistoryPage> {
        let _ = (namespace, execution, next_page_token);
        Box::pin(async {
            Err(TemporalError::Config(
                "history_page is not supported here".into(),
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Counting mutating calls
// ---------------------------------------------------------------------------------------------

fn rpc_counters() -> &'static Mutex<BTreeMap<&'static str, u64>> {
    static RPCS: OnceLock<Mutex<BTreeMap<&'static str, u64>>> = OnceLock::new();
    RPCS.get_or_init(Default::default)
}

/// Records one RPC attempt of any kind (the audit reports these to prove it only read).
pub(crate) fn record_rpc(rpc: &'static str) {
    let mut map = rpc_counters().lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(rpc).or_default() += 1;
}

/// Every RPC attempt this process sent, by name.
pub fn rpc_calls() -> BTreeMap<&'static str, u64> {
    rpc_counters()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn counters() -> &'static Mutex<BTreeMap<String, u64>> {
    static COUNTERS: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

/// Records one mutating RPC attempt against `namespace` (and logs it at info level, so a CLI
/// run with `-v` shows every write it attempted).
pub(crate) fn record_mutating_call(rpc: &'static str, namespace: &str) {
    tracing::info!(rpc, namespace, "mutating call");
    // A poisoned lock only means another thread panicked while counting; the map is still valid.
    let mut map = counters().lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(namespace.to_string()).or_default() += 1;
}

/// Mutating RPCs (RegisterNamespace, UpdateNamespace, AddSearchAttributes) sent by this process
/// for `namespace`, every attempt counted.
pub fn mutating_calls(namespace: &str) -> u64 {
    let map = counters().lock().unwrap_or_else(|p| p.into_inner());
    map.get(namespace).copied().unwrap_or(0)
}

/// Mutating RPCs sent by this process, all namespaces.
pub fn total_mutating_calls() -> u64 {
    let map = counters().lock().unwrap_or_else(|p| p.into_inner());
    map.values().sum()
}

/// Formats a duration the way platform.yaml writes it (`30d`, `36h`, `90m`, `45s`).
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(human(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn visibility_kind_from_store_name() {
        let mut c = ClusterInfo {
            server_version: "1.32.0".into(),
            cluster_name: "active".into(),
            cluster_id: String::new(),
            persistence_store: "sqlite".into(),
            visibility_store: "sqlite".into(),
            history_shard_count: 1,
        };
        assert_eq!(c.visibility_is_sql(), Some(true));
        c.visibility_store = "postgres12".into();
        assert_eq!(c.visibility_is_sql(), Some(true));
        c.visibility_store = "elasticsearch".into();
        assert_eq!(c.visibility_is_sql(), Some(false));
        c.visibility_store = String::new();
        assert_eq!(c.visibility_is_sql(), None);
    }

    #[test]
    fn counters_are_per_namespace() {
        let before = total_mutating_calls();
        record_mutating_call("Test", "counter-test-a");
        record_mutating_call("Test", "counter-test-a");
        record_mutating_call("Test", "counter-test-b");
        assert_eq!(mutating_calls("counter-test-a"), 2);
        assert_eq!(mutating_calls("counter-test-b"), 1);
        assert_eq!(mutating_calls("counter-test-none"), 0);
        assert!(total_mutating_calls() >= before + 3);
    }
}
