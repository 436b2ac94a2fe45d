//! Setup: a platform.yaml with pki + kubernetes_secrets, the CLI, and what the tests read back.

use super::*;

pub(crate) const PLATFORM: &str = r#"
cluster:
  name: k8s-test
  temporal_version: "1.31.2"
  environment: development
  frontend:
    address: temporal-frontend.temporal.svc:7233
capacity:
  peak_workflow_starts_per_second: 5
  activities_per_workflow: 4
  average_workflow_duration: 10m
persistence:
  postgres:
    host: 127.0.0.1
    password: env:TEMPORAL_DB_PASSWORD
visibility:
  postgres:
    database: temporal_visibility
namespaces:
  - name: demo
    retention: 3d
pki:
  dir: pki
  ca: { validity: 1y }
  renew_before: 7d
  frontend:
    dns_names: [FRONTEND_NAMES]
  internode:
    dns_names: [temporal-internode.temporal.svc]
  clients:
    - name: temporal-bootstrap
    - name: payments
  kubernetes_secrets:
    namespace: temporal
    ca: temporal-tls-ca
    frontend: temporal-tls-frontend
    internode: temporal-tls-internode
    clients: { temporal-bootstrap: temporal-tls-bootstrap, payments: temporal-tls-payments }
"#;

pub(crate) const ALL: [&str; 5] = [
    "temporal-tls-ca",
    "temporal-tls-frontend",
    "temporal-tls-internode",
    "temporal-tls-bootstrap",
    "temporal-tls-payments",
];

pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    /// The fake's URL; `None`: use the caller's TB_KUBE_* environment (real API server).
    pub(crate) url: Option<String>,
}

impl Setup {
    pub(crate) fn new(server: &MockServer) -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
            url: Some(server.uri()),
        };
        s.write_config("temporal-frontend.temporal.svc");
        std::fs::write(s.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        s
    }
    pub(crate) fn write_config(&self, frontend_names: &str) {
        std::fs::write(
            self.file(),
            PLATFORM.replace("FRONTEND_NAMES", frontend_names),
        )
        .unwrap();
    }
    pub(crate) fn file(&self) -> PathBuf {
        self.dir.path().join("platform.yaml")
    }
    pub(crate) fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }
    pub(crate) fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.pki().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Runs the binary with `args` (`-f platform.yaml -vvv` added) and checks that no key material
    /// and no token appears in its output.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("-f")
            .arg(self.file())
            .arg("-vvv")
            .env_remove("TEMPORAL_BOOTSTRAP_LOG")
            .env("TEMPORAL_DB_PASSWORD", "unused");
        if let Some(url) = &self.url {
            c.env("TB_KUBE_API_URL", url)
                .env("TB_KUBE_TOKEN_FILE", self.dir.path().join("token"))
                .env_remove("TB_KUBE_CA_FILE")
                .env_remove("KUBERNETES_SERVICE_HOST");
        }
        let o = c.output().unwrap();
        self.assert_no_secrets(&o);
        o
    }

    pub(crate) fn apply(&self) -> Output {
        self.cli(&["apply", "--only", "certificates", "--output", "json"])
    }

    /// No private key (PEM body, any 16-character piece of it, or its base64 as sent in a
    /// Secret) and no token in stdout/stderr.
    pub(crate) fn assert_no_secrets(&self, o: &Output) {
        let text = out_text(o);
        assert!(!text.contains(TOKEN), "token leaked:\n{text}");
        assert!(!text.contains("test-sa-token"), "token leaked:\n{text}");
        assert!(!text.contains("PRIVATE KEY"), "key PEM leaked:\n{text}");
        for key in key_files(&self.pki()) {
            let pem = std::fs::read(&key).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
            for piece in [&b64[..40], &b64[b64.len() / 2..b64.len() / 2 + 40]] {
                assert!(!text.contains(piece), "Secret data leaked:\n{text}");
            }
            let body: String = String::from_utf8_lossy(&pem)
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            for chunk in body.as_bytes().chunks(16).filter(|c| c.len() == 16) {
                let chunk = std::str::from_utf8(chunk).unwrap();
                assert!(
                    !text.contains(chunk),
                    "key material of {} leaked:\n{text}",
                    key.display()
                );
            }
        }
    }
}

pub(crate) fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("clients")] {
        if let Ok(rd) = std::fs::read_dir(&sub) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("-key.pem") {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

pub(crate) fn out_text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out_text(o)))
}

pub(crate) fn step_status(o: &Output) -> String {
    json_out(o)["steps"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn writes_summary(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {} {}", c.method, c.path, c.status))
        .collect()
}

pub(crate) fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}
