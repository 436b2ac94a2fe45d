//! What the codec server tests (`codec.rs`, `codec_abuse.rs`) share: the platform.yaml around a
//! `codec:` section, keys, and starting the real binary with its stderr captured.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");

/// `temporal-bootstrap codec keygen --out PATH`.
pub fn keygen(path: &Path) {
    let out = Command::new(BIN)
        .args(["codec", "keygen", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A complete development platform.yaml (namespace `default`) whose `codec:` section listens on
/// loopback `port` for `origin`; `rest` is the rest of the section (`keys:`, `access:`, ...),
/// indented by two spaces.
pub fn platform_yaml(cluster: &str, port: u16, origin: &str, rest: &str) -> String {
    format!(
        r#"cluster:
  name: {cluster}
  temporal_version: "1.31.2"
  environment: development
  frontend: {{ address: 127.0.0.1:7233 }}
capacity:
  peak_workflow_starts_per_second: 1
  activities_per_workflow: 1
  average_workflow_duration: 1m
persistence: {{ sqlite: {{ path: dev.db }} }}
visibility: {{ sqlite: {{ path: dev.db }} }}
namespaces: [ {{ name: default, retention: 1d }} ]
codec:
  listen: 127.0.0.1:{port}
  cors_origins: [ "{origin}" ]
{rest}"#
    )
}

/// Spawns `cmd` (stdout discarded) and collects its stderr lines in the background.
pub fn spawn_capturing_stderr(cmd: &mut Command) -> (Child, Arc<Mutex<String>>) {
    let mut child = cmd
        .env_remove("TEMPORAL_BOOTSTRAP_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    (child, stderr)
}
