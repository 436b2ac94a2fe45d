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

/// Spawns `cmd` (a `codec-server` command) and waits up to 15 s until `GET {base}/healthz`
/// answers 200. Panics with the server's stderr when it exits or does not come up, and never
/// leaves the process behind.
#[allow(dead_code)] // codec_abuse.rs speaks raw TCP and starts its servers itself
pub async fn spawn_until_healthy(
    cmd: &mut Command,
    base: &str,
    client: &reqwest::Client,
) -> (Child, Arc<Mutex<String>>) {
    let (mut child, stderr) = spawn_capturing_stderr(cmd);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            return (child, stderr);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "codec server exited with {status}: {}",
                stderr.lock().unwrap()
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("codec server did not come up: {}", stderr.lock().unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
