//! Progress of `upgrade apply`, kept in a JSON file so a killed run continues where it stopped.
//!
//! Guarantees: every phase change is written before the next action starts, atomically (write a
//! temporary file beside it, fsync, rename), so a crash leaves either the old or the new state.
//! Caveats: no lock against two concurrent runs; run one `upgrade apply` at a time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::UpgradeError;
use crate::config::types::TemporalVersion;

/// Where a hop is. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing done yet.
    Pending,
    /// PostgreSQL schemas at the hop's exact versions.
    SchemaApplied,
    /// Elasticsearch/OpenSearch visibility template and index mapping at the hop's schema
    /// version (passed through at once on other visibility stores).
    MappingApplied,
    /// The executor was asked to roll the services.
    Rolled,
    /// The cluster reported the hop's version; soaking since `version_seen_at`.
    Soaking,
    /// Soak finished.
    Done,
}

/// One hop's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopState {
    pub from: TemporalVersion,
    pub to: TemporalVersion,
    pub phase: Phase,
    /// Unix seconds when the cluster first reported `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_seen_at: Option<u64>,
    /// Unix seconds of the last phase change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<u64>,
}

/// The whole upgrade's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeState {
    /// File format version.
    pub format: u32,
    pub cluster: String,
    pub from: TemporalVersion,
    pub to: TemporalVersion,
    pub hops: Vec<HopState>,
}

impl UpgradeState {
    pub const FORMAT: u32 = 1;

    /// Index of the first hop not done.
    pub fn next_hop(&self) -> Option<usize> {
        self.hops.iter().position(|h| h.phase != Phase::Done)
    }

    pub fn is_done(&self) -> bool {
        self.next_hop().is_none()
    }
}

/// The default state file: `<config stem>.upgrade-state.json` beside the configuration.
pub fn default_path(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "platform".into());
    config.with_file_name(format!("{stem}.upgrade-state.json"))
}

/// Reads the state; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<UpgradeState>, UpgradeError> {
    let err = |reason: String| UpgradeError::State {
        path: path.display().to_string(),
        reason,
    };
    let text = match crate::fsutil::read_limited_string(path, crate::fsutil::FileKind::State) {
        Ok(t) => t,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let state: UpgradeState = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "not a valid state file ({e}); move it away to start over"
        ))
    })?;
    if state.format != UpgradeState::FORMAT {
        return Err(err(format!(
            "format {} is not supported (expected {})",
            state.format,
            UpgradeState::FORMAT
        )));
    }
    Ok(Some(state))
}

/// Writes the state atomically.
pub fn save(path: &Path, state: &UpgradeState) -> Result<(), UpgradeError> {
    use std::io::Write;
    let err = |reason: String| UpgradeError::State {
        path: path.display().to_string(),
        reason,
    };
    let body = serde_json::to_string_pretty(state).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
    f.write_all(body.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        assert!(load(&p).unwrap().is_none());
        let s = UpgradeState {
            format: 1,
            cluster: "c".into(),
            from: TemporalVersion::new(1, 27, 4),
            to: TemporalVersion::new(1, 28, 4),
            hops: vec![HopState {
                from: TemporalVersion::new(1, 27, 4),
                to: TemporalVersion::new(1, 28, 4),
                phase: Phase::Rolled,
                version_seen_at: None,
                updated_at: Some(5),
            }],
        };
        save(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap().unwrap(), s);
        std::fs::write(&p, "{").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("move it away"));
        assert_eq!(
            default_path(Path::new("/x/platform.yaml")),
            Path::new("/x/platform.upgrade-state.json")
        );
    }
}
