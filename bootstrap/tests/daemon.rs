//! The daemon against a real outage: its own Prometheus process is stopped and started again
//! while `temporal-bootstrap run` keeps reconciling; `/readyz` and `/metrics` must follow.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Only the test marked to need the stack calls it (ignored without it, see `build.rs`), so a
/// missing Prometheus is a failure.
fn prometheus_binary() -> PathBuf {
    let p = PathBuf::from("/usr/bin/prometheus");
    assert!(
        p.exists(),
        "/usr/bin/prometheus is missing; scripts/dev-services start installs it"
    );
    p
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_prometheus(bin: &Path, dir: &Path, port: u16, rules: &Path) -> Killed {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}/*.yaml\n",
            rules.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--web.enable-lifecycle")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = Killed(child);
    assert!(
        wait_http(
            &format!("http://127.0.0.1:{port}/-/ready"),
            200,
            Duration::from_secs(30)
        ),
        "prometheus did not start"
    );
    killed
}

fn get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "2",
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

fn wait_http(url: &str, code: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if get(url).is_some_and(|(c, _)| c == code) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn daemon_recovers_from_an_outage_and_readyz_follows() {
    let prom_bin = prometheus_binary();
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let prom_port = free_port();
    let listen_port = free_port();

    let base = std::fs::read_to_string(repo().join("examples/local.yaml")).unwrap();
    let cut = base.find("\nobservability:").unwrap();
    let yaml = format!(
        "{}\nobservability:\n  prometheus:\n    url: http://127.0.0.1:{prom_port}\n    rules_dir: {}\n",
        &base[..cut],
        rules.display()
    );
    let cfg = tmp.path().join("platform.yaml");
    std::fs::write(&cfg, yaml).unwrap();

    let mut prom = start_prometheus(&prom_bin, &tmp.path().join("p1"), prom_port, &rules);
    let daemon = Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"))
        .args([
            "run",
            "-f",
            cfg.to_str().unwrap(),
            "--interval",
            "1s",
            "--listen",
            &format!("127.0.0.1:{listen_port}"),
        ])
        // Only the alert-rules step is exercised here; the others are not configured or need services.
        .env("TEMPORAL_DB_PASSWORD", "unused")
        .env("TB_PG_ADMIN_PASSWORD", "unused")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Killed(daemon);
    let base_url = format!("http://127.0.0.1:{listen_port}");

    assert!(
        wait_http(&format!("{base_url}/healthz"), 200, Duration::from_secs(20)),
        "no /healthz"
    );
    // Steps other than alert-rules may fail here (no PostgreSQL or Temporal configured for this
    // test's stack); readiness needs every step, so look at alert-rules through the metrics.
    let rule_files_written = || std::fs::read_dir(&rules).map(|d| d.count()).unwrap_or(0) == 4;
    let start = Instant::now();
    while !rule_files_written() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        rule_files_written(),
        "the daemon did not write the rule files"
    );

    // Outage: Prometheus stops; the alert-rules step must fail and be counted.
    drop(prom);
    std::fs::remove_file(rules.join("temporal-capacity.yaml")).unwrap();
    let failures = |body: &str| {
        body.lines().any(|l| {
            l.starts_with("temporal_bootstrap_step_failures_total{step=\"alert-rules\"")
                && !l.ends_with(" 0")
        })
    };
    let start = Instant::now();
    let mut saw_failure = false;
    while start.elapsed() < Duration::from_secs(20) {
        if let Some((200, body)) = get(&format!("{base_url}/metrics"))
            && failures(&body)
        {
            saw_failure = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(saw_failure, "the outage was not reported in /metrics");
    // Readiness follows the steps the cluster needs, which this test's platform does not
    // converge (no PostgreSQL credentials): unit-tested in daemon::tests instead.
    let (code, body) = get(&format!("{base_url}/readyz")).unwrap();
    assert_eq!(code, 503, "/readyz: {body}");
    assert!(body.contains("not converged yet"), "{body}");

    // Recovery: Prometheus is back; the daemon retries (with backoff) and rewrites the rule file.
    prom = start_prometheus(&prom_bin, &tmp.path().join("p2"), prom_port, &rules);
    let start = Instant::now();
    while !rule_files_written() && start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        rule_files_written(),
        "the daemon did not recover after the outage"
    );
    let (_, metrics) = get(&format!("{base_url}/metrics")).unwrap();
    for name in [
        "temporal_bootstrap_reconcile_runs_total",
        "temporal_bootstrap_step_duration_seconds_bucket",
        "temporal_bootstrap_drift",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // SIGTERM: the daemon finishes its step and exits 0.
    let pid = daemon.0.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "daemon exit status {status:?}");
    drop(prom);
}
