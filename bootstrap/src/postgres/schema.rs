//! A release's versioned schema folder (`<schema_dir>/temporal/versioned/vX.Y/`): listing,
//! manifests, statements, and which versions are pending. Reads files; no database.
//!
//! Rules (those of `temporal-sql-tool`, plus stricter checks that catch broken folders before
//! anything is written): a version folder is named `v<MAJOR>.<MINOR>` and holds `manifest.json`
//! whose `CurrVersion` equals the folder name without `v`; `SchemaUpdateCqlFiles` lists the `.sql`
//! files in order, and may be empty only when `AllowNoCqlFiles` is true; every statement must
//! start with CREATE, ALTER, INSERT, DROP or DO, in capitals (the tool compares case-sensitively). Pending versions are those in (current, target],
//! which must be consecutive (no missing minor version) and must include the target folder.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::Deserialize;

use super::sql::{self, Statement};
use crate::versions::SchemaVersion;

/// Which of the two schemas of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaKind {
    Temporal,
    Visibility,
}

impl SchemaKind {
    pub fn folder(self) -> &'static str {
        match self {
            Self::Temporal => "temporal",
            Self::Visibility => "visibility",
        }
    }
}

/// Why a schema folder cannot be used. Always the input's fault (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "schema folder {path} does not exist (check schema_dir; expected the release's schema/postgresql/v12 folder with temporal/ and visibility/ inside)"
    )]
    MissingDir { path: String },
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: invalid manifest: {reason}")]
    Manifest { path: String, reason: String },
    #[error(
        "{path}: CurrVersion is {manifest} but the folder says {folder}; the manifest does not belong to this folder"
    )]
    VersionMismatch {
        path: String,
        manifest: String,
        folder: String,
    },
    #[error("{path}: file {file} listed in SchemaUpdateCqlFiles does not exist")]
    MissingFile { path: String, file: String },
    #[error("{path}: {detail}")]
    Split { path: String, detail: String },
    #[error(
        "{path} line {line}: statement starting with `{keyword}` is not allowed; schema files may only contain statements starting with CREATE, ALTER, INSERT, DROP or DO, in capitals (temporal-sql-tool compares case-sensitively and would refuse it too)"
    )]
    ForbiddenStatement {
        path: String,
        line: usize,
        keyword: String,
    },
    #[error(
        "{dir}: no version folder v{target} for the target schema version {target} (folders found: {found}); is schema_dir the folder of the release you configured?"
    )]
    MissingTarget {
        dir: String,
        target: SchemaVersion,
        found: String,
    },
    #[error(
        "{dir}: version gap between {from} and {to}: no folder for the versions in between; the schema folder is incomplete"
    )]
    Gap {
        dir: String,
        from: SchemaVersion,
        to: SchemaVersion,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawManifest {
    curr_version: Option<String>,
    min_compatible_version: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    schema_update_cql_files: Vec<String>,
    #[serde(default)]
    allow_no_cql_files: bool,
}

/// A parsed `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub curr_version: SchemaVersion,
    pub min_compatible_version: String,
    pub description: String,
    pub files: Vec<String>,
    pub allow_no_files: bool,
    /// Hex md5 of the manifest file's bytes, as stored in `schema_update_history.manifest_md5`.
    pub md5: String,
}

/// A version folder found on disk.
#[derive(Debug, Clone)]
pub struct VersionDir {
    pub version: SchemaVersion,
    pub path: PathBuf,
}

/// A version to apply: its manifest and statements, ready to run.
#[derive(Debug, Clone)]
pub struct PendingVersion {
    pub version: SchemaVersion,
    pub manifest: Manifest,
    /// Statements in order, each with the file it came from.
    pub statements: Vec<(String, Statement)>,
    /// Tables fully rewritten by this version (stored generated columns).
    pub rewrites: Vec<String>,
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// `<schema_dir>/<kind>/versioned`.
pub fn versioned_dir(schema_dir: &Path, kind: SchemaKind) -> PathBuf {
    schema_dir.join(kind.folder()).join("versioned")
}

/// Version folders under `versioned`, sorted by version. Other entries are ignored.
pub fn list_versions(versioned: &Path) -> Result<Vec<VersionDir>, SchemaError> {
    if !versioned.is_dir() {
        return Err(SchemaError::MissingDir {
            path: display(versioned),
        });
    }
    let entries = std::fs::read_dir(versioned).map_err(|e| SchemaError::Io {
        path: display(versioned),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SchemaError::Io {
            path: display(versioned),
            reason: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !entry.path().is_dir() || !name.starts_with('v') {
            continue;
        }
        if let Ok(version) = name[1..].parse::<SchemaVersion>() {
            out.push(VersionDir {
                version,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|v| v.version);
    Ok(out)
}

/// Reads and checks one manifest.
pub fn read_manifest(dir: &VersionDir) -> Result<Manifest, SchemaError> {
    let path = dir.path.join("manifest.json");
    let bytes =
        crate::fsutil::read_limited(&path, crate::fsutil::FileKind::Schema).map_err(|e| {
            SchemaError::Io {
                path: display(&path),
                reason: e.to_string(),
            }
        })?;
    parse_manifest(&bytes, &display(&path), dir.version)
}

/// Parses and checks the bytes of the `manifest.json` of the version folder `folder`. Pure;
/// `path` is used in messages only.
pub fn parse_manifest(
    bytes: &[u8],
    path: &str,
    folder: SchemaVersion,
) -> Result<Manifest, SchemaError> {
    let bad = |reason: String| SchemaError::Manifest {
        path: path.to_string(),
        reason,
    };
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let curr = raw
        .curr_version
        .ok_or_else(|| bad("CurrVersion is missing".into()))?;
    let curr_version: SchemaVersion = curr.parse().map_err(|e| bad(format!("CurrVersion: {e}")))?;
    if curr_version != folder {
        return Err(SchemaError::VersionMismatch {
            path: path.to_string(),
            manifest: curr,
            folder: folder.to_string(),
        });
    }
    let min = raw
        .min_compatible_version
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| bad("MinCompatibleVersion is missing".into()))?;
    min.parse::<SchemaVersion>()
        .map_err(|e| bad(format!("MinCompatibleVersion: {e}")))?;
    if raw.schema_update_cql_files.is_empty() && !raw.allow_no_cql_files {
        return Err(bad(
            "SchemaUpdateCqlFiles is empty; list the .sql files, or set AllowNoCqlFiles: true for a version without statements".into(),
        ));
    }
    let md5 = Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    Ok(Manifest {
        curr_version,
        min_compatible_version: min.trim().trim_start_matches('v').to_string(),
        description: raw.description,
        files: raw.schema_update_cql_files,
        allow_no_files: raw.allow_no_cql_files,
        md5,
    })
}

/// Reads one version folder completely: manifest, files, statements, checks.
pub fn load_version(dir: &VersionDir) -> Result<PendingVersion, SchemaError> {
    let manifest = read_manifest(dir)?;
    let mut statements = Vec::new();
    for file in &manifest.files {
        let path = dir.path.join(file);
        if !path.is_file() {
            return Err(SchemaError::MissingFile {
                path: display(&dir.path.join("manifest.json")),
                file: file.clone(),
            });
        }
        let text = crate::fsutil::read_limited_string(&path, crate::fsutil::FileKind::Schema)
            .map_err(|e| SchemaError::Io {
                path: display(&path),
                reason: e.to_string(),
            })?;
        let stmts = sql::split(&text).map_err(|e| SchemaError::Split {
            path: display(&path),
            detail: e.to_string(),
        })?;
        for s in stmts {
            if !s.is_allowed() {
                return Err(SchemaError::ForbiddenStatement {
                    path: display(&path),
                    line: s.line,
                    keyword: s.keyword(),
                });
            }
            statements.push((file.clone(), s));
        }
    }
    let mut rewrites: Vec<String> = statements
        .iter()
        .filter_map(|(_, s)| s.rewritten_table())
        .collect();
    rewrites.dedup();
    Ok(PendingVersion {
        version: dir.version,
        manifest,
        statements,
        rewrites,
    })
}

/// Whether `b` directly follows `a` (next minor, or next major at minor 0).
fn follows(a: SchemaVersion, b: SchemaVersion) -> bool {
    // Checked: the numbers come from folder names (`v1.4294967295` must not overflow).
    (b.major == a.major && a.minor.checked_add(1) == Some(b.minor))
        || (a.major.checked_add(1) == Some(b.major) && b.minor == 0)
}

/// The versions to apply to go from `current` to `target`, fully loaded and checked.
/// Empty when `current >= target` (the caller decides what a newer database means).
pub fn pending(
    versioned: &Path,
    current: SchemaVersion,
    target: SchemaVersion,
) -> Result<Vec<PendingVersion>, SchemaError> {
    let all = list_versions(versioned)?;
    if current >= target {
        return Ok(vec![]);
    }
    if !all.iter().any(|v| v.version == target) {
        let found = if all.is_empty() {
            "none".to_string()
        } else {
            all.iter()
                .map(|v| format!("v{}", v.version))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(SchemaError::MissingTarget {
            dir: display(versioned),
            target,
            found,
        });
    }
    let mut out = Vec::new();
    let mut prev = current;
    for dir in all
        .iter()
        .filter(|v| v.version > current && v.version <= target)
    {
        if !follows(prev, dir.version) {
            return Err(SchemaError::Gap {
                dir: display(versioned),
                from: prev,
                to: dir.version,
            });
        }
        out.push(load_version(dir)?);
        prev = dir.version;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_does_not_overflow_on_huge_folder_versions() {
        let max = SchemaVersion::new(1, u32::MAX);
        assert!(!follows(max, SchemaVersion::new(1, 0)));
        assert!(follows(max, SchemaVersion::new(2, 0)));
        assert!(!follows(
            SchemaVersion::new(u32::MAX, 3),
            SchemaVersion::new(0, 0)
        ));
        assert!(follows(SchemaVersion::new(1, 4), SchemaVersion::new(1, 5)));
    }

    fn write(dir: &Path, rel: &str, body: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    fn manifest(v: &str, files: &[&str]) -> String {
        serde_json::json!({"CurrVersion": v, "MinCompatibleVersion": "1.0", "Description": format!("version {v}"), "SchemaUpdateCqlFiles": files}).to_string()
    }

    fn folder() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(d, "v1.0/manifest.json", &manifest("1.0", &["base.sql"]));
        write(
            d,
            "v1.0/base.sql",
            "CREATE TABLE a (x INT);\nINSERT INTO a VALUES (1);",
        );
        write(
            d,
            "v1.1/manifest.json",
            r#"{"CurrVersion":"1.1","MinCompatibleVersion":"1.0","Description":"marker","AllowNoCqlFiles":true}"#,
        );
        write(
            d,
            "v1.2/manifest.json",
            &manifest("1.2", &["a.sql", "b.sql"]),
        );
        write(d, "v1.2/a.sql", "ALTER TABLE a ADD COLUMN y INT;");
        write(
            d,
            "v1.2/b.sql",
            "ALTER TABLE a ADD COLUMN z INT GENERATED ALWAYS AS (x + 1) STORED;",
        );
        write(d, "README", "not a version");
        t
    }

    #[test]
    fn pending_versions_are_ordered_and_loaded() {
        let t = folder();
        let p = pending(t.path(), SchemaVersion::new(0, 0), SchemaVersion::new(1, 2)).unwrap();
        assert_eq!(
            p.iter().map(|v| v.version.to_string()).collect::<Vec<_>>(),
            ["1.0", "1.1", "1.2"]
        );
        assert_eq!(p[0].statements.len(), 2);
        assert!(p[1].statements.is_empty() && p[1].manifest.allow_no_files);
        assert_eq!(p[2].rewrites, vec!["a".to_string()]);
        assert_eq!(p[0].manifest.md5.len(), 32);
        assert!(
            pending(t.path(), SchemaVersion::new(1, 2), SchemaVersion::new(1, 2))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            pending(t.path(), SchemaVersion::new(1, 0), SchemaVersion::new(1, 1))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn broken_folders_are_refused_with_the_reason() {
        let t = folder();
        let err = |cur: (u32, u32), tgt: (u32, u32)| {
            pending(
                t.path(),
                SchemaVersion::new(cur.0, cur.1),
                SchemaVersion::new(tgt.0, tgt.1),
            )
            .unwrap_err()
            .to_string()
        };
        let e = err((1, 0), (1, 5));
        assert!(
            e.contains("no version folder v1.5") && e.contains("v1.0, v1.1, v1.2"),
            "{e}"
        );
        write(t.path(), "v1.4/manifest.json", &manifest("1.4", &["a.sql"]));
        write(t.path(), "v1.4/a.sql", "DROP TABLE a;");
        let e = err((1, 2), (1, 4));
        assert!(e.contains("version gap between 1.2 and 1.4"), "{e}");

        write(t.path(), "v1.2/manifest.json", &manifest("1.3", &["a.sql"]));
        assert!(err((1, 1), (1, 2)).contains("CurrVersion is 1.3 but the folder says 1.2"));
        write(
            t.path(),
            "v1.2/manifest.json",
            &manifest("1.2", &["missing.sql"]),
        );
        assert!(
            err((1, 1), (1, 2))
                .contains("missing.sql listed in SchemaUpdateCqlFiles does not exist")
        );
        write(t.path(), "v1.2/manifest.json", "{not json");
        assert!(err((1, 1), (1, 2)).contains("not valid JSON"));
        write(t.path(), "v1.2/manifest.json", &manifest("1.2", &[]));
        assert!(err((1, 1), (1, 2)).contains("AllowNoCqlFiles"));
        write(t.path(), "v1.2/manifest.json", &manifest("1.2", &["a.sql"]));
        write(
            t.path(),
            "v1.2/a.sql",
            "CREATE TABLE b (x INT);\n\nUPDATE a SET x = 2;",
        );
        let e = err((1, 1), (1, 2));
        assert!(
            e.contains("a.sql line 3") && e.contains("`UPDATE` is not allowed"),
            "{e}"
        );
        write(t.path(), "v1.2/a.sql", "DO $$ BEGIN PERFORM 1;");
        assert!(err((1, 1), (1, 2)).contains("never closed"));
        let e = pending(
            &t.path().join("nope"),
            SchemaVersion::new(0, 0),
            SchemaVersion::new(1, 0),
        )
        .unwrap_err();
        assert!(matches!(e, SchemaError::MissingDir { .. }));
    }
}
