//! What an audit reports: findings with a severity, the guide's decision they belong to, the
//! evidence (counts, names, example workflow ids; never payload contents) and the fix.

use std::collections::BTreeMap;

use serde::Serialize;

/// The version of the JSON report; bumped on any incompatible change (CI gates read it).
pub const REPORT_SCHEMA: &str = "temporal-bootstrap/audit/v1";

/// How bad a finding is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The decision of the production guide a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    WorkerArchitecture,
    Security,
    Observability,
    Reliability,
    Versioning,
    Testing,
    Operations,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::WorkerArchitecture => "worker architecture",
            Decision::Security => "security",
            Decision::Observability => "observability",
            Decision::Reliability => "reliability",
            Decision::Versioning => "versioning",
            Decision::Testing => "testing",
            Decision::Operations => "operations",
        }
    }
}

/// Facts behind a finding. Names are workflow, activity and queue names, never payload data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    /// Named numbers, e.g. `plaintext_payloads: 12`, `p99_bytes: 2100000`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Workflow types, activity types, encodings... that the finding is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Up to three workflow ids to look at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub example_workflow_ids: Vec<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable check id, e.g. `payload-plaintext` (documented in docs/audit.md).
    pub check: &'static str,
    pub severity: Severity,
    pub decision: Decision,
    /// The namespace it was found in; `None` for cluster-wide findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One line: what is wrong.
    pub title: String,
    pub evidence: Evidence,
    /// What to change: a platform.yaml change, a runbook or the SDK setting.
    pub fix: String,
}

/// At most this many example workflow ids per finding.
pub const MAX_EXAMPLES: usize = 3;

/// Adds `id` to `examples` unless it holds [`MAX_EXAMPLES`] already or has it.
pub fn add_example(examples: &mut Vec<String>, id: &str) {
    if examples.len() < MAX_EXAMPLES && !examples.iter().any(|e| e == id) {
        examples.push(id.to_string());
    }
}
