//! Reading `platform.yaml`: syntax, types and cross-field rules, every error with its position.
//!
//! Flow: YAML text -> generic tree (serde-saphyr, syntax errors with positions) -> typed model
//! (serde_path_to_error gives the field path) -> cross-field rules (`validate`). Positions of typed
//! and cross-field errors come from a [`PathIndex`] built from the same text.
//!
//! Guarantees: no I/O beyond reading the one file; no secret value appears in any error (secret
//! fields are refused without echoing what was written).

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::{PathIndex, Position};
use super::model::PlatformConfig;
use super::validate;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigIssue {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Dotted field path, `namespaces[0].retention`; empty for the document itself.
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, path, self.message
        )
    }
}

/// Every problem found; loading stops at the first syntax or type error, but cross-field rules
/// are all checked and reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// A valid configuration plus the warnings found while validating it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: PlatformConfig,
    pub path: PathBuf,
    pub warnings: Vec<ConfigIssue>,
    /// The text it was read from, to place findings made later (see [`LoadedConfig::warn`]).
    text: std::sync::Arc<str>,
}

impl LoadedConfig {
    /// Adds warnings found by a later pure check (the capacity planner), each placed at the
    /// line of its field path like the validator's own.
    pub fn warn(&mut self, findings: impl IntoIterator<Item = Finding>) {
        let index = PathIndex::build(&self.text);
        let file = self.path.display().to_string();
        for f in findings {
            let Position { line, col } = index.find(&f.path);
            self.warnings.push(ConfigIssue {
                file: file.clone(),
                line,
                col,
                path: f.path,
                message: f.message,
            });
        }
    }
}

/// A finding of a cross-field rule before it is given a position.
#[derive(Debug, Clone)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

impl Finding {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Field names whose values are secrets: type errors there never echo the value.
const SECRET_FIELDS: &[&str] = &["password", "token", "key", "api_key", "secret"];

/// Reads and validates a configuration file (a regular file of at most
/// [`FileKind::Config`](crate::fsutil::FileKind::Config)'s limit).
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    use crate::fsutil::{FileKind, ReadError, read_limited};
    let file = path.display().to_string();
    let fail = |line: usize, col: usize, message: String| ConfigErrors {
        issues: vec![ConfigIssue {
            file: file.clone(),
            line,
            col,
            path: String::new(),
            message,
        }],
    };
    let bytes = read_limited(path, FileKind::Config).map_err(|e| match e {
        ReadError::Io { source, .. } => fail(1, 1, format!("cannot read the configuration file: {source}; pass an existing file with -f (temporal-bootstrap init > platform.yaml writes an example)")),
        other => fail(1, 1, format!("{other}; pass platform.yaml itself with -f")),
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            // Point at the first byte that is not UTF-8, in the same LINE:COL form as every
            // other error.
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            return Err(fail(
                line,
                col,
                "the file is not UTF-8 text; save platform.yaml as UTF-8".into(),
            ));
        }
    };
    let mut loaded = load_str(&text, &file)?;
    loaded.path = path.to_path_buf();
    Ok(loaded)
}

/// Parses and validates configuration text; `file` is used in messages only.
pub fn load_str(text: &str, file: &str) -> Result<LoadedConfig, ConfigErrors> {
    let one = |line: usize, col: usize, path: String, message: String| ConfigErrors {
        issues: vec![ConfigIssue {
            file: file.to_string(),
            line,
            col,
            path,
            message,
        }],
    };

    let tree: serde_json::Value = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((1, 1));
            return Err(one(
                line,
                col,
                String::new(),
                humanize_yaml(&strip_position(&first_line(&e.to_string()))),
            ));
        }
    };
    if tree.is_null() {
        return Err(one(1, 1, String::new(), "the file is empty; expected the sections cluster, capacity, persistence, visibility, namespaces (run `temporal-bootstrap init` for an example)".into()));
    }

    if !tree.is_object() {
        let found = match &tree {
            serde_json::Value::Array(_) => "a list",
            serde_json::Value::String(_) => "a single string",
            _ => "a single value",
        };
        // The document starts at its first line that is not blank, a comment or `---`.
        let line = text
            .lines()
            .position(|l| {
                let t = l.trim();
                !(t.is_empty() || t.starts_with('#') || t == "---")
            })
            .map_or(1, |i| i + 1);
        return Err(one(
            line,
            1,
            String::new(),
            format!(
                "platform.yaml must be a mapping of sections (cluster, capacity, persistence, visibility, namespaces, ...); this document is {found}"
            ),
        ));
    }
    let index = PathIndex::build(text);
    let config: PlatformConfig = match serde_path_to_error::deserialize(&tree) {
        Ok(c) => c,
        Err(e) => {
            let (path, message) = describe_type_error(&e);
            let pos = index.find(&path);
            return Err(one(pos.line, pos.col, path, message));
        }
    };

    let report = validate::check(&config);
    let place = |f: Finding| {
        let Position { line, col } = index.find(&f.path);
        ConfigIssue {
            file: file.to_string(),
            line,
            col,
            path: f.path,
            message: f.message,
        }
    };
    if !report.errors.is_empty() {
        return Err(ConfigErrors {
            issues: report.errors.into_iter().map(place).collect(),
        });
    }
    Ok(LoadedConfig {
        config,
        path: PathBuf::from(file),
        warnings: report.warnings.into_iter().map(place).collect(),
        text: text.into(),
    })
}

/// The field path and message of a type error, secret fields never echoing what was written.
pub(super) fn describe_type_error<E: fmt::Display>(
    e: &serde_path_to_error::Error<E>,
) -> (String, String) {
    let path = render_path(e.path());
    let last = path.rsplit(['.', '[']).next().unwrap_or("");
    let message = if SECRET_FIELDS.contains(&last)
        && !e.inner().to_string().contains("secret reference")
    {
        "expected a secret reference `env:NAME` or `file:PATH`; inline secret values are not accepted".into()
    } else {
        humanize_serde(&e.inner().to_string(), &path)
    };
    (path, message)
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

/// Sections that hold exactly one of several kinds, keyed by the kind (`persistence: {postgres:
/// ...}`), with the kinds a user may write.
const ONE_OF_SECTIONS: &[(&str, &str)] = &[
    ("persistence", "`postgres` (or `sqlite` in development)"),
    (
        "visibility",
        "`elasticsearch`, `postgres` (or `sqlite` in development)",
    ),
    ("visibility.elasticsearch.auth", "`basic` or `api_key`"),
];

/// The YAML parser's messages name its own API (`set DuplicateKeyPolicy in Options`, `use
/// from_str_multiple`, `budget breached: Nodes {..}`): say what is wrong with the document.
fn humanize_yaml(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!(
            "duplicate key `{key}`; a key may appear only once in a mapping (merge the two entries)"
        );
    }
    if let Some(rest) = msg.strip_prefix("non-finite float ") {
        let value = rest.split(" rejected").next().unwrap_or(rest);
        return format!(
            "{value} is a non-finite number; every number in platform.yaml must be finite"
        );
    }
    if msg.starts_with("multiple YAML documents detected") {
        return "more than one YAML document (a `---` line inside the file); platform.yaml is a single document".into();
    }
    if let Some(rest) = msg.strip_prefix("budget breached: ") {
        let what = rest
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("size")
            .to_ascii_lowercase();
        return format!(
            "the document exceeds the parser's safety limit on {what} (250,000 nodes; aliases count once per use): platform.yaml of 1,000 namespaces stays far below it, so look for runaway aliases (&anchor/*alias) or generated content"
        );
    }
    format!("invalid YAML: {msg}")
}

/// serde's messages are close to what we want; make the common ones say what is valid.
fn humanize_serde(msg: &str, path: &str) -> String {
    let one_of = ONE_OF_SECTIONS
        .iter()
        .find(|(p, _)| *p == path || path.strip_prefix(p).is_some_and(|r| r.starts_with('.')));
    if let Some((section, kinds)) = one_of {
        if msg.contains("expected map with a single key") {
            return format!(
                "`{section}` takes exactly one key naming its kind: {kinds}, with that kind's settings under it"
            );
        }
        if msg.contains("expected string or map") {
            return format!(
                "`{section}` must be a mapping with exactly one key naming its kind: {kinds}"
            );
        }
        if msg.contains("expected newtype variant") || msg.contains("invalid type: unit variant") {
            return format!(
                "the kind needs its settings as a mapping under it, e.g. `{section}:` then `  postgres:` then `    host: db.internal`; valid kinds: {kinds}"
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown field {rest}");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("unknown value {rest}");
    }
    msg.to_string()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// The YAML parser prefixes its messages with `error: line L column C:`; we print the position
/// ourselves in the `FILE:LINE:COL` form.
fn strip_position(msg: &str) -> String {
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if msg.starts_with("line ")
        && let Some((_, rest)) = msg.split_once(": ")
    {
        return rest.to_string();
    }
    msg.to_string()
}
