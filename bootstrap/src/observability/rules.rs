//! Alert rules rendered from `alerts/templates/*.yaml.tmpl` and `alerts/thresholds.yaml` (both
//! embedded), with thresholds overridden from `platform.yaml`. Pure.
//!
//! The substitution is the one documented in `alerts/README.md` and done by
//! `scripts/observability/render-rules.py`: `{{ name }}` (lower_snake_case) is a threshold; any
//! other `{{ ... }}` is Prometheus templating and stays. With no overrides the output equals the
//! committed `alerts/*.yaml` (a test checks it).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::ObservabilityConfig;

/// One rule group template: file stem and text.
pub struct Template {
    pub name: &'static str,
    pub text: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "temporal-bootstrap",
        text: include_str!("../../../alerts/templates/temporal-bootstrap.yaml.tmpl"),
    },
    Template {
        name: "temporal-capacity",
        text: include_str!("../../../alerts/templates/temporal-capacity.yaml.tmpl"),
    },
    Template {
        name: "temporal-server",
        text: include_str!("../../../alerts/templates/temporal-server.yaml.tmpl"),
    },
    Template {
        name: "temporal-workloads",
        text: include_str!("../../../alerts/templates/temporal-workloads.yaml.tmpl"),
    },
];

pub const THRESHOLDS: &str = include_str!("../../../alerts/thresholds.yaml");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("alerts/thresholds.yaml line {line}: {message}")]
    Thresholds { line: usize, message: String },
    #[error("template {template}: unknown placeholder `{name}`")]
    UnknownPlaceholder { template: String, name: String },
    #[error("observability.alert_thresholds.{name}: unknown threshold; valid names: {valid}")]
    UnknownOverride { name: String, valid: String },
}

/// A rendered rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    /// File name, e.g. `temporal-capacity.yaml`.
    pub file_name: String,
    /// Rule group names it defines (to verify they are loaded).
    pub groups: Vec<String>,
    pub content: String,
}

/// Threshold name -> value as written (strings unquoted), from the embedded defaults. The file
/// is read with a real YAML parser, so what users edit is what any YAML tool reads.
pub fn default_thresholds() -> Result<BTreeMap<String, String>, RulesError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Threshold {
        value: serde_json::Value,
        #[allow(dead_code)] // documentation for humans; checked to be present
        unit: String,
        #[allow(dead_code)]
        comment: String,
    }
    let parsed: BTreeMap<String, Threshold> =
        serde_saphyr::from_str(THRESHOLDS).map_err(|e| RulesError::Thresholds {
            line: e.location().map_or(0, |l| l.line() as usize),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
    parsed
        .into_iter()
        .map(|(name, t)| {
            let value = match t.value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                other => {
                    return Err(RulesError::Thresholds {
                        line: THRESHOLDS
                            .lines()
                            .position(|l| l.starts_with(&format!("{name}:")))
                            .map_or(0, |i| i + 1),
                        message: format!("{name}.value must be a number or a string, got {other}"),
                    });
                }
            };
            Ok((name, value))
        })
        .collect()
}

/// The thresholds for this platform: defaults, then the SLO settings, then explicit overrides.
pub fn thresholds_for(obs: &ObservabilityConfig) -> Result<BTreeMap<String, String>, RulesError> {
    let mut values = default_thresholds()?;
    values.insert(
        "schedule_to_start_warning_ms".into(),
        obs.slo.schedule_to_start_warning.as_millis().to_string(),
    );
    values.insert(
        "schedule_to_start_critical_ms".into(),
        obs.slo.schedule_to_start_critical.as_millis().to_string(),
    );
    for (name, value) in &obs.alert_thresholds {
        if !values.contains_key(name) {
            let valid: Vec<&str> = values.keys().map(String::as_str).collect();
            return Err(RulesError::UnknownOverride {
                name: name.clone(),
                valid: valid.join(", "),
            });
        }
        values.insert(name.clone(), format_number(*value));
    }
    Ok(values)
}

/// Renders every rule group for this platform.
pub fn render(obs: &ObservabilityConfig) -> Result<Vec<RuleFile>, RulesError> {
    let values = thresholds_for(obs)?;
    TEMPLATES.iter().map(|t| render_one(t, &values)).collect()
}

/// Names of the thresholds that can be overridden (for validation and docs).
pub fn threshold_names() -> BTreeSet<String> {
    default_thresholds()
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

fn render_one(t: &Template, values: &BTreeMap<String, String>) -> Result<RuleFile, RulesError> {
    let mut out = String::with_capacity(t.text.len() + 256);
    out.push_str(&format!(
        "# GENERATED by temporal-bootstrap from alerts/templates/{}.yaml.tmpl and the platform's thresholds.\n# Do not edit: change platform.yaml (observability.slo, observability.alert_thresholds) and re-apply.\n",
        t.name
    ));
    let mut rest = t.text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = after[..end].trim();
        let is_placeholder = inner.starts_with(|c: char| c.is_ascii_lowercase())
            && inner
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_placeholder {
            let v = values
                .get(inner)
                .ok_or_else(|| RulesError::UnknownPlaceholder {
                    template: t.name.into(),
                    name: inner.into(),
                })?;
            out.push_str(v);
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    let groups = out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- name:"))
        .map(|g| g.trim().to_string())
        .collect();
    Ok(RuleFile {
        file_name: format!("{}.yaml", t.name),
        groups,
        content: out,
    })
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> String {
        s.lines().skip(2).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn defaults_render_exactly_the_committed_rules() {
        let files = render(&ObservabilityConfig::default()).unwrap();
        assert_eq!(files.len(), 4);
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("alerts");
        for f in files {
            let committed = std::fs::read_to_string(repo.join(&f.file_name)).unwrap();
            assert_eq!(
                body(&f.content),
                body(&committed),
                "{} differs from the committed rendering",
                f.file_name
            );
            assert!(!f.groups.is_empty());
            assert!(
                !f.content.contains("{{ schedule_to_start"),
                "placeholders left in {}",
                f.file_name
            );
        }
    }

    #[test]
    fn slo_and_overrides_change_the_thresholds() {
        let mut obs = ObservabilityConfig::default();
        obs.slo.schedule_to_start_warning = "150ms".parse().unwrap();
        let values = thresholds_for(&obs).unwrap();
        assert_eq!(values["schedule_to_start_warning_ms"], "150");
        let name = values
            .keys()
            .find(|k| k.starts_with("backlog"))
            .unwrap()
            .clone();
        obs.alert_thresholds.insert(name.clone(), 250.0);
        assert_eq!(thresholds_for(&obs).unwrap()[&name], "250");
        let rendered = render(&obs).unwrap();
        assert!(
            rendered.iter().any(|f| f.content.contains("> 150 / 1000")),
            "the warning threshold reaches the rules"
        );
        obs.alert_thresholds.insert("no_such_threshold".into(), 1.0);
        let err = thresholds_for(&obs).unwrap_err().to_string();
        assert!(
            err.contains("observability.alert_thresholds.no_such_threshold")
                && err.contains("schedule_to_start_warning_ms"),
            "{err}"
        );
    }
}
