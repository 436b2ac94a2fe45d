//! Files: atomic writes with explicit modes, and a write counter so tests can prove that a
//! converged run writes nothing.
//!
//! Guarantees: a file is either its old content or its new content, never a prefix of it
//! (temp file in the same directory, fsync, rename); the directories touched are fsynced once at
//! the end of a run (and when the writer is dropped), so the renames are durable without paying
//! a directory fsync per file; private keys are created 0600 from the first byte (the temp file
//! is opened with that mode), directories 0700.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const KEY_MODE: u32 = 0o600;
pub const CERT_MODE: u32 = 0o644;
pub const DIR_MODE: u32 = 0o700;

/// Performs (or, when `dry_run`, only counts nothing and does nothing) the writes of one run.
#[derive(Debug)]
pub struct Writer {
    dry_run: bool,
    writes: usize,
    /// Directories with renames or removals not yet fsynced.
    dirty: BTreeSet<PathBuf>,
    /// Dry run only: what would have been written, by path (see [`Writer::capturing`]).
    captured: Option<std::collections::BTreeMap<PathBuf, Vec<u8>>>,
}

impl Writer {
    pub fn new(dry_run: bool) -> Self {
        Self {
            dry_run,
            writes: 0,
            dirty: BTreeSet::new(),
            captured: None,
        }
    }

    /// A dry run that remembers the content it would have written (to plan what depends on it).
    pub fn capturing() -> Self {
        let mut w = Self::new(true);
        w.captured = Some(Default::default());
        w
    }

    /// What a capturing dry run would have written.
    pub fn take_captured(&mut self) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        self.captured.take().unwrap_or_default()
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Number of filesystem mutations performed (files written, removed, directories created).
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// Creates `dir` (and parents) with mode 0700 when missing.
    pub fn ensure_dir(&mut self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() || self.dry_run {
            return Ok(());
        }
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
        self.writes += 1;
        Ok(())
    }

    /// Sets the permission bits of an existing `path` (a directory whose mode is too open).
    pub fn set_mode(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        if self.dry_run {
            return Ok(());
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        self.writes += 1;
        Ok(())
    }

    /// Writes `bytes` to `path` atomically with `mode`.
    pub fn write(&mut self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        if self.dry_run {
            if let Some(c) = &mut self.captured {
                c.insert(path.to_path_buf(), bytes.to_vec());
            }
            return Ok(());
        }
        crate::fsutil::write_then_rename(path, bytes, mode)?;
        if let Some(parent) = path.parent() {
            self.dirty.insert(parent.to_path_buf());
        }
        self.writes += 1;
        Ok(())
    }

    /// Removes `path` if it exists.
    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        if self.dry_run || !path.exists() {
            return Ok(());
        }
        fs::remove_file(path)?;
        if let Some(parent) = path.parent() {
            self.dirty.insert(parent.to_path_buf());
        }
        self.writes += 1;
        Ok(())
    }
}

impl Writer {
    /// Fsyncs every directory changed so far (renames and removals become durable).
    pub fn sync(&mut self) -> io::Result<()> {
        while let Some(dir) = self.dirty.pop_first() {
            crate::fsutil::sync_dir(&dir)?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Best effort on error paths; the success path calls `sync` and reports its error.
        let _ = self.sync();
    }
}

/// Reads a certificate or key file (bounded, regular files only): `Ok(None)` when it does not
/// exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use crate::fsutil::{FileKind, ReadError, read_limited};
    match read_limited(path, FileKind::Pem) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Ok(None),
        Err(ReadError::Io { source, .. }) => Err(source),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// The permission bits of `path` when group or others can access it (keys must be 0600).
pub fn loose_key_mode(path: &Path) -> Option<u32> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        let mut w = Writer::new(false);
        w.write(&p, b"one", KEY_MODE).unwrap();
        w.write(&p, b"two", KEY_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(w.writes(), 2);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp files left behind");
    }

    #[test]
    fn dry_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/k.pem");
        let mut w = Writer::new(true);
        w.ensure_dir(&dir.path().join("sub")).unwrap();
        w.write(&p, b"x", KEY_MODE).unwrap();
        assert_eq!(w.writes(), 0);
        assert!(!p.exists() && !dir.path().join("sub").exists());
    }

    #[test]
    fn loose_modes_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        crate::fsutil::write_atomic(&p, b"x", 0o644).unwrap();
        assert_eq!(loose_key_mode(&p), Some(0o644));
        crate::fsutil::write_atomic(&p, b"x", 0o600).unwrap();
        assert_eq!(loose_key_mode(&p), None);
    }
}
