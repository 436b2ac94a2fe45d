//! The audit report in four forms: a table for the terminal, JSON for CI gates (versioned by
//! [`REPORT_SCHEMA`]), Markdown for pull requests, and one self-contained HTML file (no external
//! assets) for auditors. Every form is built from the same [`Report`]; none holds payload data.

use std::fmt::Write as _;

use serde::Serialize;

use super::findings::{Decision, Finding, REPORT_SCHEMA, Severity};

/// What was audited and what was found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub inputs: Inputs,
    pub summary: Summary,
    pub findings: Vec<Finding>,
}

/// The audit's inputs, so a report says what it covered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inputs {
    pub config_file: String,
    pub frontend: String,
    /// As GetSystemInfo reported it.
    pub server_version: String,
    pub namespaces: Vec<String>,
    pub since: String,
    pub sample_per_namespace: u32,
    pub histories_read: u64,
    pub history_bytes_read: u64,
    /// Every RPC the audit sent, by name: only List*, Get* and Describe* calls.
    pub rpc_calls: std::collections::BTreeMap<String, u64>,
    /// Mutating RPCs sent (RegisterNamespace, UpdateNamespace, AddSearchAttributes): always 0.
    pub mutating_calls: u64,
    /// Sources that could not be read, with the reason; their checks did not run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
}

impl Report {
    pub fn new(generated_at: String, inputs: Inputs, mut findings: Vec<Finding>) -> Self {
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.decision.cmp(&b.decision))
                .then(a.namespace.cmp(&b.namespace))
                .then(a.check.cmp(b.check))
        });
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        let summary = Summary {
            critical: count(Severity::Critical),
            warning: count(Severity::Warning),
            info: count(Severity::Info),
        };
        Self {
            schema: REPORT_SCHEMA,
            generated_at,
            inputs,
            summary,
            findings,
        }
    }

    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    pub fn to_json(&self) -> String {
        // Invariant: every field is a string, number, list or map of those.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "audit of {} namespace(s), {} histories read: {} critical, {} warning, {} info",
            self.inputs.namespaces.len(),
            self.inputs.histories_read,
            self.summary.critical,
            self.summary.warning,
            self.summary.info
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:8} {:28} {:16} {}",
                f.severity.as_str(),
                f.check,
                f.namespace.as_deref().unwrap_or("-"),
                f.title
            );
            for n in &f.evidence.names {
                let _ = writeln!(out, "{:55}- {n}", "");
            }
            if !f.evidence.example_workflow_ids.is_empty() {
                let _ = writeln!(
                    out,
                    "{:55}e.g. {}",
                    "",
                    f.evidence.example_workflow_ids.join(", ")
                );
            }
            let _ = writeln!(out, "{:55}fix: {}", "", f.fix);
        }
        for s in &self.inputs.skipped {
            let _ = writeln!(out, "not checked: {s}");
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Temporal production-readiness audit\n");
        let _ = writeln!(
            out,
            "{} · frontend `{}` · namespaces {} · since {} · {} histories ({} bytes) read\n",
            self.generated_at,
            md(&self.inputs.frontend),
            self.inputs
                .namespaces
                .iter()
                .map(|n| format!("`{}`", md(n)))
                .collect::<Vec<_>>()
                .join(", "),
            self.inputs.since,
            self.inputs.histories_read,
            self.inputs.history_bytes_read
        );
        let _ = writeln!(
            out,
            "**{} critical, {} warning, {} info**\n",
            self.summary.critical, self.summary.warning, self.summary.info
        );
        for d in decisions(&self.findings) {
            let _ = writeln!(out, "## {}\n", capitalise(d.as_str()));
            let _ = writeln!(out, "| severity | check | namespace | finding | fix |");
            let _ = writeln!(out, "|---|---|---|---|---|");
            for f in self.findings.iter().filter(|f| f.decision == d) {
                let mut what = md(&f.title);
                for n in &f.evidence.names {
                    let _ = write!(what, "<br>{}", md(n));
                }
                if !f.evidence.example_workflow_ids.is_empty() {
                    let _ = write!(
                        what,
                        "<br>e.g. {}",
                        md(&f.evidence.example_workflow_ids.join(", "))
                    );
                }
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} | {} | {} |",
                    f.severity.as_str(),
                    f.check,
                    md(f.namespace.as_deref().unwrap_or("-")),
                    what,
                    md(&f.fix)
                );
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "Calls made (all read-only): {}\n",
            md(&self.calls_line())
        );
        for s in &self.inputs.skipped {
            let _ = writeln!(out, "- not checked: {}", md(s));
        }
        out
    }

    /// `GetWorkflowExecutionHistory 210, ListWorkflowExecutions 2, ...; 0 mutating`.
    fn calls_line(&self) -> String {
        let calls: Vec<String> = self
            .inputs
            .rpc_calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "{}; {} mutating",
            calls.join(", "),
            self.inputs.mutating_calls
        )
    }

    pub fn to_html(&self) -> String {
        let mut body = String::new();
        let _ = write!(
            body,
            "<h1>Temporal production-readiness audit</h1><p class=meta>{} &middot; frontend <code>{}</code> &middot; {} namespace(s): {} &middot; since {} &middot; {} histories ({} bytes) read &middot; config <code>{}</code></p>",
            html(&self.generated_at),
            html(&self.inputs.frontend),
            self.inputs.namespaces.len(),
            html(&self.inputs.namespaces.join(", ")),
            html(&self.inputs.since),
            self.inputs.histories_read,
            self.inputs.history_bytes_read,
            html(&self.inputs.config_file)
        );
        let _ = write!(
            body,
            "<div class=summary><span class='pill critical'>{} critical</span><span class='pill warning'>{} warning</span><span class='pill info'>{} info</span></div>",
            self.summary.critical, self.summary.warning, self.summary.info
        );
        if self.findings.is_empty() {
            body.push_str("<p>No findings.</p>");
        } else {
            body.push_str(
                "<table><tr><th>decision</th><th>critical</th><th>warning</th><th>info</th></tr>",
            );
            for d in decisions(&self.findings) {
                let n = |s| {
                    self.findings
                        .iter()
                        .filter(|f| f.decision == d && f.severity == s)
                        .count()
                };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    html(&capitalise(d.as_str())),
                    n(Severity::Critical),
                    n(Severity::Warning),
                    n(Severity::Info)
                );
            }
            body.push_str("</table>");
        }
        for d in decisions(&self.findings) {
            let _ = write!(body, "<h2>{}</h2>", html(&capitalise(d.as_str())));
            for f in self.findings.iter().filter(|f| f.decision == d) {
                let sev = f.severity.as_str();
                let _ = write!(
                    body,
                    "<section class='finding {sev}'><h3><span class='pill {sev}'>{sev}</span> {} <small><code>{}</code> &middot; {}</small></h3><dl>",
                    html(&f.title),
                    f.check,
                    html(f.namespace.as_deref().unwrap_or("cluster"))
                );
                if !f.evidence.counts.is_empty() {
                    let counts: Vec<String> = f
                        .evidence
                        .counts
                        .iter()
                        .map(|(k, v)| format!("{}: {v}", html(k)))
                        .collect();
                    let _ = write!(
                        body,
                        "<dt>evidence</dt><dd>{}</dd>",
                        counts.join(" &middot; ")
                    );
                }
                if !f.evidence.names.is_empty() {
                    let names: Vec<String> = f
                        .evidence
                        .names
                        .iter()
                        .map(|n| format!("<li>{}</li>", html(n)))
                        .collect();
                    let _ = write!(body, "<dt>where</dt><dd><ul>{}</ul></dd>", names.concat());
                }
                if !f.evidence.example_workflow_ids.is_empty() {
                    let _ = write!(
                        body,
                        "<dt>examples</dt><dd><code>{}</code></dd>",
                        html(&f.evidence.example_workflow_ids.join(", "))
                    );
                }
                let _ = write!(body, "<dt>fix</dt><dd>{}</dd></dl></section>", html(&f.fix));
            }
        }
        let _ = write!(
            body,
            "<h2>Inputs</h2><dl><dt>server</dt><dd>{}</dd><dt>calls made (all read-only)</dt><dd>{}</dd>",
            html(&self.inputs.server_version),
            html(&self.calls_line())
        );
        if !self.inputs.skipped.is_empty() {
            let items: Vec<String> = self
                .inputs
                .skipped
                .iter()
                .map(|s| format!("<li>{}</li>", html(s)))
                .collect();
            let _ = write!(
                body,
                "<dt>not checked</dt><dd><ul>{}</ul></dd>",
                items.concat()
            );
        }
        body.push_str("</dl>");
        format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'><title>Temporal audit {}</title><style>{STYLE}</style></head><body>{body}<footer>temporal-bootstrap audit &middot; report schema {}</footer></body></html>\n",
            html(&self.generated_at),
            REPORT_SCHEMA
        )
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1b1f24}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em;margin:.2em 0}\
.meta{color:#555}.summary{margin:1em 0}.pill{display:inline-block;border-radius:1em;padding:0 .6em;margin-right:.4em;font-size:.85em;color:#fff}\
.pill.critical{background:#b42318}.pill.warning{background:#b54708}.pill.info{background:#175cd3}\
.finding{border-left:4px solid #ccc;padding:.4em .8em;margin:.8em 0;background:#fafafa}.finding.critical{border-color:#b42318}\
.finding.warning{border-color:#b54708}.finding.info{border-color:#175cd3}dt{font-weight:600;margin-top:.3em}dd{margin-left:1em}\
small{color:#666;font-weight:normal}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}code{background:#eee;padding:0 .2em}footer{margin-top:2em;color:#888;font-size:.85em}";

fn decisions(findings: &[Finding]) -> Vec<Decision> {
    let mut d: Vec<Decision> = findings.iter().map(|f| f.decision).collect();
    d.sort();
    d.dedup();
    d
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Text for HTML element content and attribute values.
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for a Markdown table cell: no pipes, no line breaks, no inline HTML.
fn md(s: &str) -> String {
    s.replace('|', "\\|")
        .replace(['\n', '\r'], " ")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
