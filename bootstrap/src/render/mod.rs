//! `temporal-bootstrap render`: deployment artefacts from `platform.yaml`, written to a directory.
//!
//! Each target is a pure function from the configuration to a list of files; writing is shared
//! and idempotent (unchanged files are not rewritten, so a second render changes nothing).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::PlatformConfig;
use crate::observability::{grafana, rules};

pub mod helm;
pub mod k3s;
pub mod secret_names;
pub mod terraform;

pub use helm::helm_values;
pub use k3s::k3s;
pub use terraform::terraform_vars;

/// One rendered file, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artefact {
    pub path: PathBuf,
    pub content: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Rules(#[from] rules::RulesError),
    #[error("{0}")]
    Grafana(#[from] grafana::GrafanaError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What happened to each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Written {
    Created,
    Updated,
    Unchanged,
}

/// Prometheus rule files with the platform's thresholds.
pub fn prometheus_rules(config: &PlatformConfig) -> Result<Vec<Artefact>, RenderError> {
    Ok(rules::render(&config.observability)?
        .into_iter()
        .map(|f| Artefact {
            path: f.file_name.into(),
            content: f.content.into_bytes(),
        })
        .collect())
}

/// Grafana file provisioning: a dashboard provider, the dashboards, and a Prometheus datasource
/// when `observability.prometheus` is configured.
pub fn grafana_provisioning(config: &PlatformConfig) -> Result<Vec<Artefact>, RenderError> {
    let folder = config
        .observability
        .grafana
        .as_ref()
        .map(|g| g.folder.clone())
        .unwrap_or_else(|| "Temporal".into());
    let mut out = vec![Artefact {
        path: "provisioning/dashboards/temporal.yaml".into(),
        content: format!(
            "# Grafana dashboard provider for the Temporal platform (rendered by temporal-bootstrap).\n\
             apiVersion: 1\n\
             providers:\n  - name: temporal\n    folder: {}\n    type: file\n    disableDeletion: true\n    allowUiUpdates: false\n    updateIntervalSeconds: 60\n    options:\n      path: /var/lib/grafana/dashboards/temporal\n      foldersFromFilesStructure: false\n",
            yaml_string(&folder)
        )
        .into_bytes(),
    }];
    if let Some(p) = &config.observability.prometheus {
        out.push(Artefact {
            path: "provisioning/datasources/temporal-prometheus.yaml".into(),
            content: format!(
                "# Prometheus datasource the Temporal dashboards query (rendered by temporal-bootstrap).\n\
                 apiVersion: 1\n\
                 datasources:\n  - name: Prometheus (Temporal)\n    uid: {}\n    type: prometheus\n    access: proxy\n    url: {}\n    isDefault: false\n",
                yaml_string(config.observability.grafana.as_ref().and_then(|g| g.datasource_uid.as_deref()).unwrap_or("temporal-prometheus")),
                yaml_string(&p.url.to_string())
            )
            .into_bytes(),
        });
    }
    for d in grafana::desired()? {
        let mut json = d.json.clone();
        json["temporalBootstrap"] = json!({"sha256": d.sha256});
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| RenderError::Invalid(e.to_string()))?
            + "\n";
        out.push(Artefact {
            path: PathBuf::from("dashboards").join(format!("{}.json", d.uid)),
            content: text.into_bytes(),
        });
    }
    Ok(out)
}

/// Writes artefacts under `out`, creating directories; files already identical are left alone.
pub fn write_all(
    out: &Path,
    artefacts: &[Artefact],
) -> Result<Vec<(PathBuf, Written)>, RenderError> {
    let mut report = Vec::new();
    for a in artefacts {
        let path = out.join(&a.path);
        let io = |source| RenderError::Io {
            path: path.display().to_string(),
            source,
        };
        let state = match crate::fsutil::read_limited(&path, crate::fsutil::FileKind::State) {
            Ok(existing) if existing == a.content => Written::Unchanged,
            Ok(_) => Written::Updated,
            Err(_) => Written::Created,
        };
        if state != Written::Unchanged {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            crate::fsutil::write_atomic(&path, &a.content, 0o644).map_err(io)?;
        }
        report.push((path, state));
    }
    Ok(report)
}

/// A YAML scalar that stays a string whatever it contains.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PlatformConfig {
        let text = include_str!("../../../examples/local.yaml");
        crate::config::load_str(text, "local.yaml").unwrap().config
    }

    #[test]
    fn second_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = grafana_provisioning(&config()).unwrap();
        assert!(files.iter().any(|f| {
            f.path
                .ends_with("provisioning/datasources/temporal-prometheus.yaml")
        }));
        let first = write_all(dir.path(), &files).unwrap();
        assert!(first.iter().all(|(_, w)| *w == Written::Created));
        let second = write_all(dir.path(), &files).unwrap();
        assert!(second.iter().all(|(_, w)| *w == Written::Unchanged));
    }

    #[test]
    fn rules_carry_the_platform_thresholds() {
        let mut c = config();
        c.observability.slo.schedule_to_start_critical = "800ms".parse().unwrap();
        let files = prometheus_rules(&c).unwrap();
        assert!(
            files
                .iter()
                .any(|f| String::from_utf8_lossy(&f.content).contains("> 800 / 1000"))
        );
    }
}
