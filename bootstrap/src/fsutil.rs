//! File access shared by every part of the program: bounded reads of the files and secrets it is
//! given (configuration, secret references, certificates, schema files, state files) and
//! crash-safe writes (certificates, rule files, rendered artefacts).
//!
//! Why bounded: a path in platform.yaml or on the command line is input like any other. Without a
//! limit `-f /dev/zero` or `password: file:/dev/zero` grows until the kernel kills the process, and
//! a FIFO blocks forever. Every read goes through [`read_limited`]: regular files only (symlinks to
//! regular files are followed, as Kubernetes mounts Secrets that way), at most the limit of their
//! [`FileKind`].

use std::io::{Read, Write};
use std::path::Path;

/// What a file is for; sets its size limit and names it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// platform.yaml (1,000 namespaces and 200 pools are about 330 KB).
    Config,
    /// A `file:` secret reference: a password, token or key.
    Secret,
    /// PEM certificates, CA bundles, private keys, a JWKS document.
    Pem,
    /// One Temporal schema file (SQL or JSON) or manifest.
    Schema,
    /// A state file this program wrote itself (upgrade state, rendered-file state).
    State,
}

impl FileKind {
    /// Largest size read, in bytes.
    pub const fn limit(self) -> u64 {
        match self {
            FileKind::Config => 16 * 1024 * 1024,
            FileKind::Secret => 64 * 1024,
            FileKind::Pem => 4 * 1024 * 1024,
            FileKind::Schema => 16 * 1024 * 1024,
            FileKind::State => 16 * 1024 * 1024,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            FileKind::Config => "configuration file",
            FileKind::Secret => "secret file",
            FileKind::Pem => "certificate or key file",
            FileKind::Schema => "schema file",
            FileKind::State => "state file",
        }
    }
}

/// Why a bounded read failed. Never contains the file's content.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "`{path}` is a {found}, not a regular file; a {noun} must be a regular file (or a symlink to one)"
    )]
    NotRegular {
        path: String,
        found: &'static str,
        noun: &'static str,
    },
    #[error("`{path}` is larger than {limit} bytes, the limit for a {noun}")]
    TooLarge {
        path: String,
        limit: u64,
        noun: &'static str,
    },
    #[error("`{path}` is not UTF-8 text (byte {offset}); a {noun} must be UTF-8")]
    NotUtf8 {
        path: String,
        offset: usize,
        noun: &'static str,
    },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ReadError {
    /// The underlying I/O error kind, when the failure was one (e.g. NotFound).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ReadError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Reads a whole regular file of at most `kind.limit()` bytes.
///
/// The file is opened non-blocking and checked with `fstat` on the open descriptor, so a FIFO or
/// device is refused without blocking and without a window between check and read.
pub fn read_limited(path: &Path, kind: FileKind) -> Result<Vec<u8>, ReadError> {
    let shown = || path.display().to_string();
    let io = |source| ReadError::Io {
        path: shown(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: shown(),
            found: file_type_name(&meta.file_type()),
            noun: kind.noun(),
        });
    }
    let limit = kind.limit();
    let too_large = || ReadError::TooLarge {
        path: shown(),
        limit,
        noun: kind.noun(),
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    // The size can change between fstat and read (and is 0 for /proc files): read one byte past
    // the limit to tell "exactly the limit" from "larger".
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read_limited`] for text files.
pub fn read_limited_string(path: &Path, kind: FileKind) -> Result<String, ReadError> {
    let bytes = read_limited(path, kind)?;
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        path: path.display().to_string(),
        offset: e.utf8_error().valid_up_to(),
        noun: kind.noun(),
    })
}

fn file_type_name(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never a
/// mix: a temporary file in the same directory, created with `mode`, fsynced, then renamed over
/// `path`, then the directory fsynced so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_then_rename(path, bytes, mode)?;
    sync_dir(parent_dir(path))
}

/// The atomic part of [`write_atomic`], for writers that change many files in one directory and
/// fsync it once at the end ([`sync_dir`]).
pub fn write_then_rename(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let tmp = parent_dir(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A temp file left by a crashed run with the same pid is stale: replace it. `create_new`
    // below then never writes through a file or symlink someone else placed there.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode given to open() is reduced by the umask; set it exactly.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory: renames and removals in it become durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (p, found) in [
            (Path::new("/dev/zero"), "character device"),
            (fifo.as_path(), "FIFO"),
            (dir.path(), "directory"),
        ] {
            let e = read_limited(p, FileKind::Secret).unwrap_err();
            assert!(matches!(e, ReadError::NotRegular { .. }), "{p:?}: {e}");
            assert!(e.to_string().contains(found), "{e}");
        }
    }

    #[test]
    fn the_limit_is_inclusive_and_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let limit = FileKind::Secret.limit() as usize;
        std::fs::write(&p, vec![b'a'; limit]).unwrap();
        assert_eq!(read_limited(&p, FileKind::Secret).unwrap().len(), limit);
        std::fs::write(&p, vec![b'a'; limit + 1]).unwrap();
        let e = read_limited(&p, FileKind::Secret).unwrap_err();
        assert!(e.to_string().contains("larger than 65536 bytes"), "{e}");
    }

    #[test]
    fn symlinks_to_regular_files_are_followed_and_utf8_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("..data");
        std::fs::write(&target, "pw\n").unwrap();
        let link = dir.path().join("password");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            read_limited_string(&link, FileKind::Secret).unwrap(),
            "pw\n"
        );
        std::fs::write(&target, b"ok\xff").unwrap();
        let e = read_limited_string(&link, FileKind::Secret).unwrap_err();
        assert!(e.to_string().contains("byte 2"), "{e}");
    }

    #[test]
    fn replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }
}
