//! `temporal-bootstrap audit` against the stack's real Temporal server (PostgreSQL visibility,
//! over mTLS): a namespace marked sensitive holding a plaintext payload and one holding only
//! encrypted payloads. The plaintext one yields exactly its critical finding, the encrypted one
//! none, `--fail-on critical` exits 4, and no output (stdout, stderr, the HTML report) holds the
//! payload marker.

#[path = "common/temporal_cli.rs"]
mod temporal_cli;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `eval \"$(scripts/dev-services env)\"` (scripts/dev-services start)")
    })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Stack {
    address: String,
    tls: [String; 3],
}

impl Stack {
    fn temporal(&self, args: &[&str]) -> Output {
        Command::new(required("TB_TEMPORAL_CLI"))
            .args(["--address", &self.address])
            .args(temporal_cli::tls_flags(&self.tls))
            .args(args)
            .env_remove("HTTPS_PROXY")
            .output()
            .unwrap()
    }

    /// Starts a workflow (no worker needed: its input is in the first event), retrying while a
    /// new namespace is not usable yet.
    fn start(&self, ns: &str, wf: &str, extra: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut args = vec![
                "workflow",
                "start",
                "--namespace",
                ns,
                "--type",
                "AuditProbe",
                "--task-queue",
                "audit-no-worker",
                "--workflow-id",
                wf,
            ];
            args.extend_from_slice(extra);
            let o = self.temporal(&args);
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "workflow start in {ns}: {}",
                text(&o)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn plaintext_in_a_sensitive_namespace_is_critical_and_encrypted_is_clean() {
    let st = Stack {
        address: required("TB_TEMPORAL_SQL_ADDRESS"),
        tls: [
            required("TB_TEMPORAL_SQL_TLS_CA"),
            required("TB_TEMPORAL_SQL_TLS_CERT"),
            required("TB_TEMPORAL_SQL_TLS_KEY"),
        ],
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (plain_ns, enc_ns) = (format!("audit-plain-{run}"), format!("audit-enc-{run}"));
    let marker = format!("PATIENT-MARKER-{run}");
    for ns in [&plain_ns, &enc_ns] {
        let o = st.temporal(&[
            "operator",
            "namespace",
            "create",
            "--namespace",
            ns,
            "--retention",
            "24h",
        ]);
        assert!(o.status.success(), "namespace create {ns}: {}", text(&o));
    }
    st.start(
        &plain_ns,
        "audit-plain-wf",
        &["--input", &format!("\"{marker}\"")],
    );
    st.start(
        &enc_ns,
        "audit-enc-wf",
        &[
            "--input",
            "\"AAECAwQ\"",
            "--input-meta",
            "encoding=binary/encrypted",
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = &st.tls;
    let cfg = dir.path().join("platform.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cluster:\n  name: audit-it\n  temporal_version: \"1.32.2\"\n  environment: development\n  frontend:\n    address: {}\n    tls: {{ ca: {ca}, cert: {cert}, key: {key}, server_name: localhost }}\n\
capacity:\n  peak_workflow_starts_per_second: 1\n  activities_per_workflow: 1\n  average_workflow_duration: 1m\n\
persistence:\n  sqlite: {{ path: dev.db }}\n\
visibility:\n  sqlite: {{ path: dev.db }}\n\
namespaces:\n  - {{ name: {plain_ns}, retention: 1d, sensitive: true }}\n  - {{ name: {enc_ns}, retention: 1d }}\n",
            st.address
        ),
    )
    .unwrap();
    let report = dir.path().join("audit.html");

    // Visibility is eventually consistent: retry until both executions are listed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (out, v) = loop {
        let out = Command::new(BIN)
            .args(["--output", "json", "audit", "-f"])
            .arg(&cfg)
            .args([
                "--since",
                "1h",
                "--sample",
                "20",
                "--fail-on",
                "critical",
                "--report",
            ])
            .arg(&report)
            .env_remove("HTTPS_PROXY")
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["inputs"]["histories_read"].as_u64() == Some(2) || Instant::now() > deadline {
            break (out, v);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(v["inputs"]["histories_read"], 2, "{}", text(&out));
    assert_eq!(
        out.status.code(),
        Some(4),
        "--fail-on critical: {}",
        text(&out)
    );
    assert_eq!(v["schema"], "temporal-bootstrap/audit/v1");
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f["check"], "payload-plaintext");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["namespace"], plain_ns.as_str());
    assert_eq!(f["evidence"]["counts"]["plaintext_payloads"], 1);
    assert_eq!(f["evidence"]["example_workflow_ids"][0], "audit-plain-wf");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("payload-plaintext"));
    for (what, s) in [("output", text(&out)), ("html report", html)] {
        assert!(!s.contains(&marker), "the payload marker is in the {what}");
    }

    // Without --fail-on the same findings exit 0; a bad --since is exit 2 before any call.
    let o = Command::new(BIN)
        .args(["audit", "-f"])
        .arg(&cfg)
        .args(["--namespace", &enc_ns, "--since", "1h"])
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 critical, 0 warning, 0 info"),
        "{}",
        text(&o)
    );
    let o = Command::new(BIN)
        .args(["audit", "-f"])
        .arg(&cfg)
        .args(["--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--since `yesterday`"), "{}", text(&o));
}
