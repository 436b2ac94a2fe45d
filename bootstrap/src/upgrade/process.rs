//! The `process` executor: rolls a Temporal server that runs as a plain process on this host
//! (systemd-less installs, a lab machine, the local stack) by stopping it and starting the hop's
//! release binary with the same arguments, working directory and environment.
//!
//! Flow: read the PID from `pid_file`; read the running server's command line, working
//! directory and environment from `/proc/<pid>`; SIGTERM it and wait for it to exit (SIGKILL
//! after [`STOP_TIMEOUT`]); start `<binaries>/<release>/bin/temporal-server` with the same
//! arguments in its own process group, output appended to the log file; write the new PID to
//! `pid_file` (atomically).
//!
//! Guarantees: only the program changes (argv[0]); every argument, the working directory and
//! the environment are the running server's, byte for byte. Nothing is started when the hop's
//! binary is missing. The environment (which may hold a database password) is never printed.
//!
//! Assumptions: Linux (`/proc`); this process may signal the server (same user or root); the
//! binaries folder has the layout `scripts/lib/temporal-server.sh` builds
//! (`<release>/bin/temporal-server`).
//!
//! Caveats: a re-run after a crash between the stop and the start finds no running server; it
//! then starts the hop's binary from the command line recorded beside the PID file
//! (`<pid_file>.cmdline`, written before the stop).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Executor, RollOutcome, UpgradeError};
use crate::versions::Hop;

/// How long a stopping server gets before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Stops the running server and starts the hop's binary in its place.
#[derive(Debug, Clone)]
pub struct Process {
    /// Holds the running server's PID; rewritten with the new one.
    pub pid_file: PathBuf,
    /// Holds `<release>/bin/temporal-server` for every hop.
    pub binaries: PathBuf,
    /// Where the new server's stdout and stderr are appended.
    pub log_file: PathBuf,
}

/// What a running server was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Launch {
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Process {
    /// The hop's server binary.
    pub fn binary(&self, hop: &Hop) -> PathBuf {
        self.binaries
            .join(hop.to.to_string())
            .join("bin")
            .join("temporal-server")
    }

    fn record_path(&self) -> PathBuf {
        let mut p = self.pid_file.clone().into_os_string();
        p.push(".cmdline");
        PathBuf::from(p)
    }

    fn running_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(&self.pid_file).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

impl Executor for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn preflight(&self) -> Result<(), UpgradeError> {
        if !Path::new("/proc/self/cmdline").exists() {
            return Err(UpgradeError::Executor(
                "the process executor needs Linux /proc; use --executor manual".into(),
            ));
        }
        if self.running_pid().is_none() && !self.record_path().is_file() {
            return Err(UpgradeError::Executor(format!(
                "no running server: {} does not name a live process (and no {} from an interrupted roll); start the server or fix --pid-file",
                self.pid_file.display(),
                self.record_path().display()
            )));
        }
        Ok(())
    }

    async fn roll(&self, hop: &Hop) -> Result<RollOutcome, UpgradeError> {
        let binary = self.binary(hop);
        if !binary.is_file() {
            return Err(UpgradeError::Executor(format!(
                "no server binary for {} at {}: build it first (TB_TEMPORAL_VERSION={} scripts/dev-services build-release) or fix --server-binaries",
                hop.to,
                binary.display(),
                hop.to
            )));
        }
        let launch = match self.running_pid() {
            Some(pid) => {
                let launch = read_launch(pid)?;
                write_record(&self.record_path(), &launch)?;
                stop(pid).await?;
                launch
            }
            // A previous run stopped the server and died before starting the new one.
            None => read_record(&self.record_path())?,
        };
        let pid = start(&binary, &launch, &self.log_file)?;
        crate::fsutil::write_atomic(&self.pid_file, format!("{pid}\n").as_bytes(), 0o644).map_err(
            |e| UpgradeError::Executor(format!("writing {}: {e}", self.pid_file.display())),
        )?;
        Ok(RollOutcome {
            detail: format!(
                "restarted the server as {} (pid {pid}), arguments unchanged",
                binary.display()
            ),
        })
    }
}

fn exec_err(what: String) -> impl FnOnce(std::io::Error) -> UpgradeError {
    move |e| UpgradeError::Executor(format!("{what}: {e}"))
}

/// Reads `/proc/<pid>/{cmdline,cwd,environ}`.
fn read_launch(pid: u32) -> Result<Launch, UpgradeError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let nul_split = |bytes: Vec<u8>| -> Vec<OsString> {
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| OsString::from_vec(s.to_vec()))
            .collect()
    };
    let args = nul_split(
        std::fs::read(proc.join("cmdline"))
            .map_err(exec_err(format!("reading the command line of pid {pid}")))?,
    );
    if args.is_empty() {
        return Err(UpgradeError::Executor(format!(
            "pid {pid} has no command line (a zombie or a kernel thread?)"
        )));
    }
    let cwd = std::fs::read_link(proc.join("cwd")).map_err(exec_err(format!(
        "reading the working directory of pid {pid}"
    )))?;
    let env = nul_split(
        std::fs::read(proc.join("environ"))
            .map_err(exec_err(format!("reading the environment of pid {pid}")))?,
    )
    .into_iter()
    .filter_map(|kv| {
        let bytes = kv.as_bytes();
        let eq = bytes.iter().position(|b| *b == b'=')?;
        Some((
            OsString::from_vec(bytes[..eq].to_vec()),
            OsString::from_vec(bytes[eq + 1..].to_vec()),
        ))
    })
    .collect();
    Ok(Launch { args, cwd, env })
}

/// The launch, kept (0600: the environment may hold a password) so a roll interrupted between
/// the stop and the start can still start the server.
fn write_record(path: &Path, l: &Launch) -> Result<(), UpgradeError> {
    let mut doc = Vec::new();
    let mut field = |tag: &[u8], value: &[u8]| {
        doc.extend_from_slice(tag);
        doc.extend_from_slice(value);
        doc.push(0);
    };
    field(b"cwd:", l.cwd.as_os_str().as_bytes());
    for a in &l.args {
        field(b"arg:", a.as_bytes());
    }
    for (k, v) in &l.env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        field(b"env:", &kv);
    }
    crate::fsutil::write_atomic(path, &doc, 0o600)
        .map_err(|e| UpgradeError::Executor(format!("writing {}: {e}", path.display())))
}

fn read_record(path: &Path) -> Result<Launch, UpgradeError> {
    let bytes = std::fs::read(path).map_err(exec_err(format!(
        "no running server and no launch record at {}",
        path.display()
    )))?;
    let mut l = Launch {
        args: Vec::new(),
        cwd: PathBuf::from("/"),
        env: Vec::new(),
    };
    for item in bytes.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let os = |s: &[u8]| OsString::from_vec(s.to_vec());
        if let Some(v) = item.strip_prefix(b"cwd:") {
            l.cwd = PathBuf::from(os(v));
        } else if let Some(v) = item.strip_prefix(b"arg:") {
            l.args.push(os(v));
        } else if let Some(v) = item.strip_prefix(b"env:")
            && let Some(eq) = v.iter().position(|b| *b == b'=')
        {
            l.env.push((os(&v[..eq]), os(&v[eq + 1..])));
        }
    }
    if l.args.is_empty() {
        return Err(UpgradeError::Executor(format!(
            "{} holds no command line",
            path.display()
        )));
    }
    Ok(l)
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; returns once the process is gone.
async fn stop(pid: u32) -> Result<(), UpgradeError> {
    signal("TERM", pid)?;
    let started = Instant::now();
    let gone = || !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid);
    while !gone() {
        if started.elapsed() > STOP_TIMEOUT {
            tracing::warn!(
                pid,
                "the server did not stop within {STOP_TIMEOUT:?}; SIGKILL"
            );
            signal("KILL", pid)?;
            let killed = Instant::now();
            while !gone() {
                if killed.elapsed() > Duration::from_secs(10) {
                    return Err(UpgradeError::Executor(format!(
                        "pid {pid} survived SIGKILL for 10 s"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(name: &str, pid: u32) -> Result<(), UpgradeError> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(exec_err("running kill".into()))?;
    if status.success() || !Path::new(&format!("/proc/{pid}")).exists() {
        Ok(())
    } else {
        Err(UpgradeError::Executor(format!(
            "kill -{name} {pid} failed ({status}): not allowed to signal the server?"
        )))
    }
}

/// Starts `binary` with the launch's arguments (argv[0] replaced), directory and environment,
/// in a process group of its own so it outlives this process.
fn start(binary: &Path, l: &Launch, log_file: &Path) -> Result<u32, UpgradeError> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(exec_err(format!("opening {}", log_file.display())))?;
    let err = log
        .try_clone()
        .map_err(exec_err(format!("opening {}", log_file.display())))?;
    let child = std::process::Command::new(binary)
        .args(&l.args[1..])
        .current_dir(&l.cwd)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(exec_err(format!("starting {}", binary.display())))?;
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_record_round_trips_arguments_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let l = Launch {
            args: vec![
                "/x/1.29.7/bin/temporal-server".into(),
                "--root".into(),
                "/".into(),
                "start".into(),
            ],
            cwd: PathBuf::from("/srv/temporal"),
            env: vec![
                ("A".into(), "b=c".into()),
                ("SQL_PASSWORD".into(), "p w".into()),
            ],
        };
        let path = dir.path().join("server.pid.cmdline");
        write_record(&path, &l).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_record(&path).unwrap(), l);
    }

    #[tokio::test]
    async fn a_process_is_replaced_with_the_same_arguments_directory_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        // Release 1.29.7 is `sleep` itself (a real binary keeps its arguments in /proc); 1.30.9
        // is a script that prints how it was started.
        use std::os::unix::fs::PermissionsExt;
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("sleep(1) exists");
        std::fs::create_dir_all(dir.path().join("1.29.7/bin")).unwrap();
        std::os::unix::fs::symlink(sleep, dir.path().join("1.29.7/bin/temporal-server")).unwrap();
        std::fs::create_dir_all(dir.path().join("1.30.9/bin")).unwrap();
        let script = dir.path().join("1.30.9/bin/temporal-server");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"1.30.9 $* cwd=$(pwd) env=$TB_PROC_TEST\"\nexec sleep 30\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("server.log");
        let first = start(
            &dir.path().join("1.29.7/bin/temporal-server"),
            &Launch {
                args: vec!["temporal-server".into(), "300".into(), "0.5".into()],
                cwd: dir.path().to_path_buf(),
                env: vec![
                    ("TB_PROC_TEST".into(), "kept".into()),
                    ("PATH".into(), std::env::var_os("PATH").unwrap()),
                ],
            },
            &log,
        )
        .unwrap();
        let pid_file = dir.path().join("server.pid");
        std::fs::write(&pid_file, format!("{first}\n")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read(format!("/proc/{first}/cmdline"))
            .unwrap_or_default()
            .ends_with(b"0.5\0")
        {
            assert!(Instant::now() < deadline, "the first process never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ex = Process {
            pid_file: pid_file.clone(),
            binaries: dir.path().to_path_buf(),
            log_file: log.clone(),
        };
        ex.preflight().unwrap();
        let hop = crate::versions::plan_hops(
            "1.29.7".parse().unwrap(),
            "1.30.9".parse().unwrap(),
            &crate::versions::HopOptions::default(),
        )
        .unwrap()
        .remove(0);
        ex.roll(&hop).await.unwrap();
        let second: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_ne!(second, first);
        assert!(!Path::new(&format!("/proc/{first}")).exists() || is_zombie(first));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if let Some(line) = text.lines().find(|l| l.starts_with("1.30.9")) {
                assert_eq!(
                    line,
                    format!("1.30.9 300 0.5 cwd={} env=kept", dir.path().display())
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the hop's binary never started: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal("KILL", second).unwrap();
        // A missing binary is refused before anything is stopped.
        let to_missing = crate::versions::plan_hops(
            "1.30.9".parse().unwrap(),
            "1.31.2".parse().unwrap(),
            &crate::versions::HopOptions::default(),
        )
        .unwrap()
        .remove(0);
        let e = ex.roll(&to_missing).await.unwrap_err().to_string();
        assert!(e.contains("no server binary for 1.31.2"), "{e}");
    }
}
