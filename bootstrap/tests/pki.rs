//! PKI integration tests: real files, real TLS peers (rustls on 127.0.0.1), the openssl CLI as an
//! independent reader, and (when the dev stack is up) the real Temporal server loading our
//! certificates for its frontend mTLS, with the Temporal CLI as client.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use temporal_bootstrap::pki::{self, LeafKind, Pki, Policy};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");

const BASE: &str = r#"
cluster:
  name: pki-test
  temporal_version: "1.31.2"
  environment: development
  frontend:
    address: 127.0.0.1:57233
capacity:
  peak_workflow_starts_per_second: 5
  activities_per_workflow: 4
  timers_and_signals_per_workflow: 1
  average_workflow_duration: 10m
  burst_multiplier: 5
  growth: { annual: 50%, years: 2 }
  persistence_write_latency: 5ms
  history_shards: auto
persistence:
  postgres:
    host: 127.0.0.1
    port: 55432
    database: temporal
    user: temporal
    password: env:TEMPORAL_DB_PASSWORD
visibility:
  postgres:
    database: temporal_visibility
namespaces:
  - name: demo
    retention: 3d
"#;

const PKI_SIMPLE: &str = r#"
pki:
  dir: pki
  ca: { validity: 1y }
  renew_before: 7d
  frontend:
    dns_names: [localhost, temporal-frontend]
    ip_addresses: [127.0.0.1]
    validity: 30d
  internode:
    dns_names: [temporal-internode]
    validity: 30d
  clients:
    - name: demo-worker
    - name: temporal-bootstrap
      validity: 60d
"#;

const PKI_INTERMEDIATE: &str = r#"
pki:
  dir: pki
  ca: { validity: 2y, intermediate: true, key_algorithm: ecdsa-p384 }
  renew_before: 10d
  frontend:
    dns_names: [localhost]
    ip_addresses: [127.0.0.1]
  clients:
    - name: demo-worker
"#;

// ------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn new(pki_yaml: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let s = Site { _tmp: tmp, root };
        s.set_pki(pki_yaml);
        s
    }
    fn set_pki(&self, pki_yaml: &str) {
        std::fs::write(self.config(), format!("{BASE}{pki_yaml}")).unwrap();
    }
    fn config(&self) -> PathBuf {
        self.root.join("platform.yaml")
    }
    fn dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    fn file(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }
    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
    fn run(&self, args: &[&str]) -> Output {
        let mut a: Vec<&str> = args.to_vec();
        let cfg = self.config();
        a.extend(["-f", cfg.to_str().unwrap()]);
        Command::new(BIN)
            .args(&a)
            .env_remove("TEMPORAL_BOOTSTRAP_LOG")
            .output()
            .unwrap()
    }
    /// `certs inspect --output json` where some certificate is unusable: exit 1, the report on
    /// stdout.
    fn inspect_with_problems(&self) -> serde_json::Value {
        let out = self.run(&["certs", "inspect", "--output", "json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    fn pki(&self) -> Pki {
        let loaded = temporal_bootstrap::config::load_file(&self.config()).unwrap();
        Pki::new(loaded.config.pki.as_ref().unwrap(), "pki-test", &self.root)
    }
    /// Every file under the root with its bytes, mode and mtime.
    fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)> {
        let mut out = BTreeMap::new();
        fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.file_type().is_symlink() {
                    let target = std::fs::read_link(e.path()).unwrap();
                    out.insert(
                        e.path(),
                        (
                            target.as_os_str().as_encoded_bytes().to_vec(),
                            0,
                            m.modified().unwrap(),
                        ),
                    );
                } else if m.is_dir() {
                    out.insert(
                        e.path(),
                        (vec![], m.permissions().mode(), m.modified().unwrap()),
                    );
                    walk(&e.path(), out);
                } else {
                    out.insert(
                        e.path(),
                        (
                            std::fs::read(e.path()).unwrap(),
                            m.permissions().mode(),
                            m.modified().unwrap(),
                        ),
                    );
                }
            }
        }
        walk(&self.root, &mut out);
        out
    }
}

fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn key(pem: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem).unwrap()
}

fn roots(pem: &[u8]) -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    for c in certs(pem) {
        r.add(c).unwrap();
    }
    Arc::new(r)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a TLS server and client need.
struct Tls<'a> {
    server_chain: &'a [u8],
    server_key: &'a [u8],
    /// CAs the server accepts client certificates from.
    server_trust: &'a [u8],
    client_chain: Option<(&'a [u8], &'a [u8])>,
    client_trust: &'a [u8],
    server_name: &'a str,
}

/// A real mTLS handshake over 127.0.0.1 with tokio-rustls; Ok when the client read the server's
/// greeting, Err with both sides' errors otherwise.
async fn handshake(t: Tls<'_>) -> Result<(), String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(t.server_trust), provider())
        .build()
        .unwrap();
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(t.server_chain), key(t.server_key))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"hello from server\n")
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(t.client_trust));
    let client_cfg = match t.client_chain {
        Some((c, k)) => builder.with_client_auth_cert(certs(c), key(k)).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let name = ServerName::try_from(t.server_name.to_string()).unwrap();
    let client = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if buf == b"hello from server\n" {
            Ok(())
        } else {
            Err(format!("unexpected greeting {buf:?}"))
        }
    };
    let client_result: Result<(), String> =
        tokio::time::timeout(std::time::Duration::from_secs(10), client)
            .await
            .unwrap_or_else(|_| Err("client timed out".into()));
    let server_result = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .map_err(|_| "server timed out".to_string())
        .and_then(|j| j.map_err(|e| e.to_string()))
        .and_then(|r| r);
    match (client_result, server_result) {
        (Ok(()), Ok(())) => Ok(()),
        (c, s) => Err(format!("client: {c:?}; server: {s:?}")),
    }
}

/// Default TLS setup of a site: frontend server, `demo-worker` client, bundle trust.
async fn site_handshake(
    s: &Site,
    client: Option<(&[u8], &[u8])>,
    name: &str,
) -> Result<(), String> {
    let fe = s.read("frontend.pem");
    let fek = s.read("frontend-key.pem");
    let bundle = s.read("ca-bundle.pem");
    handshake(Tls {
        server_chain: &fe,
        server_key: &fek,
        server_trust: &bundle,
        client_chain: client,
        client_trust: &bundle,
        server_name: name,
    })
    .await
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ------------------------------------------------------------------------------------------
// issue: layout, permissions, idempotence
// ------------------------------------------------------------------------------------------

#[test]
fn issue_writes_the_documented_layout_with_safe_modes() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    for f in [
        "ca.pem",
        "ca-key.pem",
        "ca-bundle.pem",
        "frontend.pem",
        "frontend-key.pem",
        "internode.pem",
        "internode-key.pem",
        "clients/demo-worker.pem",
        "clients/demo-worker-key.pem",
        "clients/temporal-bootstrap.pem",
        "clients/temporal-bootstrap-key.pem",
        "temporal-tls.yaml",
    ] {
        let mode = std::fs::metadata(s.file(f)).unwrap().permissions().mode() & 0o777;
        let want = if f.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode, want, "{f} has mode {mode:o}");
    }
    for d in ["", "clients"] {
        let mode = std::fs::metadata(s.file(d)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "dir {d:?} has mode {mode:o}");
    }
    // No temp file is left behind, and nothing is written outside pki.dir but the config.
    let names: Vec<String> = s
        .snapshot()
        .keys()
        .map(|p| p.strip_prefix(&s.root).unwrap().display().to_string())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n == "platform.yaml" || n.starts_with("pki")),
        "{names:?}"
    );
    // The snippet points at these files.
    let tls = String::from_utf8(s.read("temporal-tls.yaml")).unwrap();
    assert!(tls.contains("refreshInterval: 1m"));
    assert!(tls.contains(&format!("{}/frontend.pem", s.dir().display())));
    assert_eq!(tls.matches("requireClientAuth: true").count(), 2);
}

#[test]
fn issue_twice_changes_nothing() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let before = s.snapshot();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = s.ok(&["certs", "issue"]);
    assert!(out.contains("0 file(s) written"), "{out}");
    let after = s.snapshot();
    assert_eq!(before, after, "second issue changed bytes, modes or mtimes");
    // renew, the certificates step and inspect on a converged directory write nothing either.
    s.ok(&["certs", "renew"]);
    s.ok(&["apply", "--only", "certificates"]);
    s.ok(&["certs", "inspect"]);
    assert_eq!(before, s.snapshot());
    let plan = s.ok(&[
        "plan",
        "--offline",
        "--only",
        "certificates",
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(v["steps"][0]["status"], "up-to-date", "{plan}");
}

#[test]
fn step_apply_twice_writes_nothing_the_second_time() {
    let s = Site::new(PKI_INTERMEDIATE);
    let pki = s.pki();
    let first = pki.apply(Policy::Converge).unwrap();
    assert!(first.writes > 0);
    let second = pki.apply(Policy::Converge).unwrap();
    assert_eq!(second.writes, 0, "{:?}", second.changes);
    assert!(second.changes.is_empty(), "{:?}", second.changes);
    // Through the CLI: plan exits 0 with --detailed-exitcode (3 would mean pending changes).
    let out = s.run(&[
        "plan",
        "--offline",
        "--only",
        "certificates",
        "--detailed-exitcode",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn plan_lists_missing_files_and_writes_nothing() {
    let s = Site::new(PKI_SIMPLE);
    let out = s.run(&[
        "plan",
        "--offline",
        "--only",
        "certificates",
        "--detailed-exitcode",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = v["steps"][0]["changes"].as_array().unwrap();
    let resources: Vec<&str> = changes
        .iter()
        .map(|c| c["resource"].as_str().unwrap())
        .collect();
    assert!(
        resources.contains(&"file pki/frontend.pem"),
        "{resources:?}"
    );
    assert!(
        resources.contains(&"file pki/clients/demo-worker-key.pem"),
        "{resources:?}"
    );
    assert!(!s.dir().exists(), "plan created the directory");
}

#[test]
fn crash_between_key_and_certificate_converges_reusing_the_key() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let key_before = s.read("clients/demo-worker-key.pem");
    std::fs::remove_file(s.file("clients/demo-worker.pem")).unwrap();
    let ca_key_before = s.read("ca-key.pem");
    std::fs::remove_file(s.file("ca.pem")).unwrap();
    // The CA certificate is re-made for the same key, so every leaf stays valid, and the client
    // certificate is re-issued for the key already on disk.
    let out = s.ok(&["certs", "issue"]);
    assert!(out.contains("for the existing"), "{out}");
    assert_eq!(s.read("clients/demo-worker-key.pem"), key_before);
    assert_eq!(s.read("ca-key.pem"), ca_key_before);
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["certs", "inspect", "--output", "json"])).unwrap();
    for c in v["certificates"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert!(s.ok(&["certs", "issue"]).contains("0 file(s) written"));
}

// ------------------------------------------------------------------------------------------
// secrets never printed
// ------------------------------------------------------------------------------------------

#[test]
fn private_keys_never_appear_in_output_or_logs() {
    let s = Site::new(PKI_INTERMEDIATE);
    let mut outputs = Vec::new();
    let runs: Vec<Vec<&str>> = vec![
        vec!["-vvv", "certs", "issue"],
        vec!["-vvv", "certs", "issue", "--output", "json"],
        vec!["-vvv", "certs", "inspect"],
        vec!["-vvv", "certs", "inspect", "--output", "json"],
        vec!["-vvv", "certs", "renew"],
        vec![
            "-vvv",
            "--log-format",
            "json",
            "certs",
            "renew",
            "--output",
            "json",
        ],
        vec!["-vvv", "plan", "--offline"],
        vec![
            "-vvv",
            "apply",
            "--only",
            "certificates",
            "--output",
            "json",
        ],
        vec!["-vvv", "certs", "rotate-ca", "start"],
        vec!["-vvv", "certs", "rotate-ca", "promote"],
        vec!["-vvv", "certs", "rotate-ca", "finish"],
    ];
    for args in &runs {
        let out = s.run(args);
        outputs.push((args.clone(), out));
    }
    // Key material of every key that existed at any point: collect the final ones, and the
    // ones replaced during rotation are covered by the generic marker check.
    let mut key_lines = Vec::new();
    for f in walk_keys(&s.dir()) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("PRIVATE KEY"));
        key_lines.extend(
            text.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(|l| l[..16].to_string()),
        );
    }
    assert!(!key_lines.is_empty());
    for (args, out) in &outputs {
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("PRIVATE KEY"),
            "{args:?} printed a private key marker"
        );
        for l in &key_lines {
            assert!(!all.contains(l.as_str()), "{args:?} printed key bytes");
        }
    }
    // -vvv really produced logs (the check above is not vacuous).
    assert!(!outputs[0].1.stderr.is_empty());
}

fn walk_keys(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_keys(&p));
        } else if p.to_string_lossy().ends_with("-key.pem") {
            out.push(p);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// real TLS peers
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn mtls_handshake_succeeds_with_issued_certificates() {
    for cfg in [PKI_SIMPLE, PKI_INTERMEDIATE] {
        let s = Site::new(cfg);
        s.ok(&["certs", "issue"]);
        let c = s.read("clients/demo-worker.pem");
        let k = s.read("clients/demo-worker-key.pem");
        site_handshake(&s, Some((&c, &k)), "localhost")
            .await
            .unwrap();
        // By IP SAN too.
        site_handshake(&s, Some((&c, &k)), "127.0.0.1")
            .await
            .unwrap();
        // Internode: both sides use the internode certificate (serverAuth + clientAuth).
        if cfg == PKI_SIMPLE {
            let i = s.read("internode.pem");
            let ik = s.read("internode-key.pem");
            let bundle = s.read("ca-bundle.pem");
            handshake(Tls {
                server_chain: &i,
                server_key: &ik,
                server_trust: &bundle,
                client_chain: Some((&i, &ik)),
                client_trust: &bundle,
                server_name: "temporal-internode",
            })
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn mtls_handshake_rejects_a_client_certificate_from_another_ca() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let other = Site::new(PKI_SIMPLE);
    other.ok(&["certs", "issue"]);
    let c = other.read("clients/demo-worker.pem");
    let k = other.read("clients/demo-worker-key.pem");
    let err = site_handshake(&s, Some((&c, &k)), "localhost")
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownIssuer")
            || err.contains("unknown issuer")
            || err.contains("BadSignature"),
        "{err}"
    );
}

#[tokio::test]
async fn mtls_handshake_rejects_an_expired_client_certificate() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let now = OffsetDateTime::now_utc();
    let (c, k) = pki::testing::issue_leaf_with_validity(
        &s.pki(),
        &LeafKind::Client("demo-worker".into()),
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let err = site_handshake(&s, Some((c.as_bytes(), k.as_bytes())), "localhost")
        .await
        .unwrap_err();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
    // And inspect calls such a certificate expired.
    std::fs::write(s.file("clients/demo-worker.pem"), &c).unwrap();
    std::fs::write(s.file("clients/demo-worker-key.pem"), &k).unwrap();
    let v = s.inspect_with_problems();
    let dw = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "pki/clients/demo-worker.pem")
        .unwrap();
    assert_eq!(dw["status"], "expired", "{dw}");
    // renew replaces it (issue only reports it).
    let out = s.ok(&["certs", "issue"]);
    assert!(
        out.contains("needs replacement") && out.contains("expired on"),
        "{out}"
    );
    let out = s.ok(&["certs", "renew"]);
    assert!(
        out.contains("replace") && out.contains("expired on"),
        "{out}"
    );
    let c = s.read("clients/demo-worker.pem");
    let k = s.read("clients/demo-worker-key.pem");
    site_handshake(&s, Some((&c, &k)), "localhost")
        .await
        .unwrap();
}

#[tokio::test]
async fn mtls_handshake_rejects_a_server_certificate_used_as_client_certificate() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let c = s.read("frontend.pem");
    let k = s.read("frontend-key.pem");
    let err = site_handshake(&s, Some((&c, &k)), "localhost")
        .await
        .unwrap_err();
    assert!(
        err.contains("does not allow extended key usage for client authentication"),
        "{err}"
    );
}

#[tokio::test]
async fn mtls_handshake_rejects_a_hostname_not_in_the_sans() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let c = s.read("clients/demo-worker.pem");
    let k = s.read("clients/demo-worker-key.pem");
    let err = site_handshake(&s, Some((&c, &k)), "evil.example.com")
        .await
        .unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );
}

#[tokio::test]
async fn mtls_handshake_rejects_a_client_without_certificate() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let err = site_handshake(&s, None, "localhost").await.unwrap_err();
    assert!(
        err.contains("NoCertificatesPresented") || err.contains("certificate"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// openssl agrees with inspect
// ------------------------------------------------------------------------------------------

#[test]
fn openssl_verify_and_x509_agree_with_inspect() {
    for cfg in [PKI_SIMPLE, PKI_INTERMEDIATE] {
        let s = Site::new(cfg);
        s.ok(&["certs", "issue"]);
        let v: serde_json::Value =
            serde_json::from_str(&s.ok(&["certs", "inspect", "--output", "json"])).unwrap();
        let reports = v["certificates"].as_array().unwrap();
        assert!(reports.len() >= 4);
        let ca = s.file("ca.pem");
        let inter = s.file("intermediate.pem");
        for r in reports {
            let rel = r["file"].as_str().unwrap().strip_prefix("pki/").unwrap();
            let path = s.file(rel);
            let p = path.to_str().unwrap();
            // Subject CN and not-after.
            let subject = openssl(&[
                "x509",
                "-in",
                p,
                "-noout",
                "-subject",
                "-nameopt",
                "multiline",
            ]);
            assert!(
                subject.contains(&format!(
                    "commonName                = {}",
                    r["subject"].as_str().unwrap()
                )),
                "{rel}: {subject} vs {r}"
            );
            let enddate = openssl(&[
                "x509", "-in", p, "-noout", "-enddate", "-dateopt", "iso_8601",
            ]);
            // notAfter=2026-12-26 10:06:53Z vs 2026-12-26T10:06:53Z
            let ours = r["not_after"].as_str().unwrap().replace('T', " ");
            assert!(enddate.contains(&ours), "{rel}: {enddate} vs {ours}");
            let text = openssl(&["x509", "-in", p, "-noout", "-text"]);
            let role = r["role"].as_str().unwrap();
            if role.ends_with("ca") {
                assert!(text.contains("CA:TRUE"), "{rel}");
                assert!(text.contains("Certificate Sign, CRL Sign"), "{rel}: {text}");
                let pathlen = r["usages"][0].as_str().unwrap();
                let n = pathlen
                    .trim_start_matches("CA(pathlen ")
                    .trim_end_matches(')');
                assert!(text.contains(&format!("pathlen:{n}")), "{rel}: {pathlen}");
                continue;
            }
            assert!(text.contains("CA:FALSE"), "{rel}");
            // SANs: openssl prints DNS:a, DNS:b, IP Address:127.0.0.1
            let sans: Vec<String> = r["sans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    let x = x.as_str().unwrap();
                    if x.parse::<std::net::IpAddr>().is_ok() {
                        format!("IP Address:{x}")
                    } else {
                        format!("DNS:{x}")
                    }
                })
                .collect();
            assert!(text.contains(&sans.join(", ")), "{rel}: {sans:?}\n{text}");
            let usages: Vec<&str> = r["usages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
                .collect();
            assert_eq!(
                text.contains("TLS Web Server Authentication"),
                usages.contains(&"serverAuth"),
                "{rel}"
            );
            assert_eq!(
                text.contains("TLS Web Client Authentication"),
                usages.contains(&"clientAuth"),
                "{rel}"
            );
            // openssl verify agrees with status ok, for the purpose the certificate claims.
            assert_eq!(r["status"], "ok");
            let purpose = if usages.contains(&"serverAuth") {
                "sslserver"
            } else {
                "sslclient"
            };
            let mut args = vec![
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                "-purpose",
                purpose,
            ];
            if inter.exists() {
                args.extend(["-untrusted", inter.to_str().unwrap()]);
            }
            args.push(p);
            assert!(openssl(&args).contains(": OK"), "{rel}");
        }
        // And both reject the frontend certificate as a client certificate.
        let out = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                "-purpose",
                "sslclient",
            ])
            .args(if inter.exists() {
                vec!["-untrusted", inter.to_str().unwrap()]
            } else {
                vec![]
            })
            .arg(s.file("frontend.pem"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "openssl accepted a server certificate as client"
        );
    }
}

#[test]
fn inspect_reports_an_invalid_chain_like_openssl() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let other = Site::new(PKI_SIMPLE);
    other.ok(&["certs", "issue"]);
    std::fs::copy(
        other.file("clients/demo-worker.pem"),
        s.file("clients/demo-worker.pem"),
    )
    .unwrap();
    let v = s.inspect_with_problems();
    let dw = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "pki/clients/demo-worker.pem")
        .unwrap()
        .clone();
    assert_eq!(dw["status"], "invalid_chain", "{dw}");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(s.file("ca.pem"))
        .arg(s.file("clients/demo-worker.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The table says it in words, and the exit code says it to scripts.
    let out = s.run(&["certs", "inspect"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid chain"));
}

// ------------------------------------------------------------------------------------------
// renew, config changes, rotation
// ------------------------------------------------------------------------------------------

#[test]
fn renew_reissues_only_certificates_inside_the_renew_window_keeping_the_ca() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let ca = s.read("ca.pem");
    let client = s.read("clients/temporal-bootstrap.pem");
    // 25 days later: frontend and internode (30d) are within renew_before (7d); clients (90d,
    // 60d) are not.
    let later = OffsetDateTime::now_utc() + time::Duration::days(25);
    let pki = s.pki().with_now(later);
    let plan = pki.plan(Policy::CreateMissing).unwrap();
    assert!(
        plan.iter().all(|c| c.kind == pki::ChangeKind::Drift),
        "{plan:?}"
    );
    let out = pki.apply(Policy::Converge).unwrap();
    let replaced: Vec<&str> = out
        .changes
        .iter()
        .filter(|c| c.kind == pki::ChangeKind::Replace)
        .map(|c| c.file.as_str())
        .collect();
    assert_eq!(
        replaced,
        vec!["pki/frontend.pem", "pki/internode.pem"],
        "{:?}",
        out.changes
    );
    assert!(out.changes.iter().all(|c| !c.detail.contains("PRIVATE")));
    assert!(
        out.changes[0].detail.contains("expires in"),
        "{:?}",
        out.changes[0]
    );
    assert_eq!(s.read("ca.pem"), ca, "renew changed the CA");
    assert_eq!(s.read("clients/temporal-bootstrap.pem"), client);
    // Converged at that time.
    assert_eq!(
        s.pki()
            .with_now(later)
            .apply(Policy::Converge)
            .unwrap()
            .writes,
        0
    );
}

#[test]
fn changed_sans_are_reported_by_issue_and_replaced_by_renew() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let fe = s.read("frontend.pem");
    s.set_pki(&PKI_SIMPLE.replace(
        "[localhost, temporal-frontend]",
        "[localhost, temporal.example.com]",
    ));
    // inspect no longer calls it ok (issue 16).
    let v = s.inspect_with_problems();
    let fe_report = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "pki/frontend.pem")
        .unwrap()
        .clone();
    assert_eq!(fe_report["status"], "mismatch", "{fe_report}");
    assert!(
        fe_report["detail"]
            .as_str()
            .unwrap()
            .contains("SANs changed (+temporal.example.com -temporal-frontend)"),
        "{fe_report}"
    );
    let out = s.run(&["certs", "issue"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("SANs changed (+temporal.example.com -temporal-frontend)"),
        "{stdout}"
    );
    assert!(stderr.contains("warning: pki/frontend.pem"), "{stderr}");
    assert_eq!(
        s.read("frontend.pem"),
        fe,
        "issue overwrote an existing certificate"
    );
    // The step plan says update with the reason.
    let plan = s.ok(&[
        "plan",
        "--offline",
        "--only",
        "certificates",
        "--output",
        "json",
    ]);
    assert!(
        plan.contains("replace: frontend server certificate") && plan.contains("SANs changed"),
        "{plan}"
    );
    let out = s.ok(&["apply", "--only", "certificates"]);
    assert!(out.contains("SANs changed"), "{out}");
    assert_ne!(s.read("frontend.pem"), fe);
    let text = openssl(&[
        "x509",
        "-in",
        s.file("frontend.pem").to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        text.contains("DNS:temporal.example.com") && !text.contains("temporal-frontend"),
        "{text}"
    );
    assert!(s.ok(&["certs", "renew"]).contains("0 file(s) written"));
}

#[test]
fn removed_clients_and_loose_key_modes_are_warned_not_changed() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    std::fs::set_permissions(
        s.file("frontend-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    s.set_pki(&PKI_SIMPLE.replace("    - name: demo-worker\n", ""));
    let out = s.run(&["certs", "issue"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mode 0644") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(
        stderr.contains("client `demo-worker` is no longer in pki.clients"),
        "{stderr}"
    );
    assert!(s.file("clients/demo-worker.pem").exists());
    let mode = std::fs::metadata(s.file("frontend-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644, "permissions changed silently");
}

#[tokio::test]
async fn ca_rotation_keeps_old_and_new_peers_talking_during_the_overlap() {
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let old_ca = s.read("ca.pem");
    let old_client = (
        s.read("clients/demo-worker.pem"),
        s.read("clients/demo-worker-key.pem"),
    );
    let old_frontend = (s.read("frontend.pem"), s.read("frontend-key.pem"));
    // Order is enforced.
    let out = s.run(&["certs", "rotate-ca", "promote"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotate-ca start"));

    s.ok(&["certs", "rotate-ca", "start"]);
    let bundle_overlap = s.read("ca-bundle.pem");
    assert_eq!(certs(&bundle_overlap).len(), 2);
    assert_eq!(s.read("ca.pem"), old_ca, "start changed the current CA");
    assert_eq!(
        s.read("frontend.pem"),
        old_frontend.0,
        "start re-issued leaves"
    );
    let out = s.run(&["certs", "rotate-ca", "finish"]);
    assert_eq!(out.status.code(), Some(2));

    s.ok(&["certs", "rotate-ca", "promote"]);
    assert_ne!(s.read("ca.pem"), old_ca);
    assert_eq!(s.read("ca-previous.pem"), old_ca);
    let new_bundle = s.read("ca-bundle.pem");
    assert_eq!(certs(&new_bundle).len(), 2);
    // A client still holding its old certificate and the overlap bundle talks to the server
    // that already runs the new certificate and the new bundle, and vice versa.
    let fe = s.read("frontend.pem");
    let fek = s.read("frontend-key.pem");
    handshake(Tls {
        server_chain: &fe,
        server_key: &fek,
        server_trust: &new_bundle,
        client_chain: Some((&old_client.0, &old_client.1)),
        client_trust: &bundle_overlap,
        server_name: "localhost",
    })
    .await
    .unwrap();
    let nc = s.read("clients/demo-worker.pem");
    let nk = s.read("clients/demo-worker-key.pem");
    handshake(Tls {
        server_chain: &old_frontend.0,
        server_key: &old_frontend.1,
        server_trust: &bundle_overlap,
        client_chain: Some((&nc, &nk)),
        client_trust: &new_bundle,
        server_name: "localhost",
    })
    .await
    .unwrap();

    s.ok(&["certs", "rotate-ca", "finish"]);
    assert!(!s.file("ca-previous.pem").exists());
    let final_bundle = s.read("ca-bundle.pem");
    assert_eq!(certs(&final_bundle).len(), 1);
    // Old leaves are no longer accepted; new ones are.
    let err = handshake(Tls {
        server_chain: &fe,
        server_key: &fek,
        server_trust: &final_bundle,
        client_chain: Some((&old_client.0, &old_client.1)),
        client_trust: &final_bundle,
        server_name: "localhost",
    })
    .await
    .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("BadSignature"),
        "{err}"
    );
    site_handshake(&s, Some((&nc, &nk)), "localhost")
        .await
        .unwrap();
    // Each phase is idempotent.
    let before = s.snapshot();
    s.ok(&["certs", "rotate-ca", "finish"]);
    s.ok(&["certs", "issue"]);
    assert_eq!(before, s.snapshot());
}

// ------------------------------------------------------------------------------------------
// bring your own CA
// ------------------------------------------------------------------------------------------

fn openssl_ca(dir: &Path, days: u32) -> (PathBuf, PathBuf) {
    let key = dir.join("byo-ca-key.pem");
    let cert = dir.join("byo-ca.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        &days.to_string(),
        "-subj",
        "/O=Example/CN=Example Corp Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:1",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    (cert, key)
}

#[tokio::test]
async fn bring_your_own_ca_issues_under_it_and_never_copies_its_key() {
    for intermediate in [false, true] {
        let s = Site::new("");
        let (cert, key) = openssl_ca(&s.root, 365);
        s.set_pki(&format!(
            "pki:\n  dir: pki\n  ca:\n    intermediate: {intermediate}\n    bring_your_own: {{ cert: byo-ca.pem, key: \"file:byo-ca-key.pem\" }}\n  frontend: {{ dns_names: [localhost] }}\n  clients: [ {{ name: demo-worker }} ]\n"
        ));
        s.ok(&["certs", "issue"]);
        assert!(!s.file("ca-key.pem").exists(), "BYO CA key copied");
        assert_eq!(
            certs(&s.read("ca.pem")),
            certs(&std::fs::read(&cert).unwrap()),
            "ca.pem is not the BYO CA"
        );
        assert_eq!(s.file("intermediate.pem").exists(), intermediate);
        let mut args = vec![
            "verify".to_string(),
            "-CAfile".into(),
            cert.display().to_string(),
        ];
        if intermediate {
            args.extend([
                "-untrusted".into(),
                s.file("intermediate.pem").display().to_string(),
            ]);
        }
        args.push(s.file("clients/demo-worker.pem").display().to_string());
        assert!(openssl(&args.iter().map(String::as_str).collect::<Vec<_>>()).contains(": OK"));
        let c = s.read("clients/demo-worker.pem");
        let k = s.read("clients/demo-worker-key.pem");
        site_handshake(&s, Some((&c, &k)), "localhost")
            .await
            .unwrap();
        assert!(s.ok(&["certs", "issue"]).contains("0 file(s) written"));
        // A BYO key readable by others is warned about (and still used).
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = s.run(&["certs", "issue"]);
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("file:byo-ca-key.pem: bring-your-own CA key has mode 0644"),
            "{stderr}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Rotation of a BYO CA is a configuration change, not rotate-ca.
        let out = s.run(&["certs", "rotate-ca", "start"]);
        assert_eq!(out.status.code(), Some(2));
    }
}

// ------------------------------------------------------------------------------------------
// bad input: exit 2, clear message, nothing written
// ------------------------------------------------------------------------------------------

fn assert_refused(s: &Site, args: &[&str], needle: &str) {
    let before = s.snapshot();
    let out = s.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in:\n{stderr}"
    );
    assert_eq!(before, s.snapshot(), "{args:?} changed files");
}

#[test]
fn invalid_sans_are_rejected_by_the_config_layer() {
    for (bad, needle) in [
        ("dns_names: [\"not a dns name\"]", "pki.frontend.dns_names"),
        (
            "dns_names: [\"-leading-dash.example\"]",
            "pki.frontend.dns_names",
        ),
        ("dns_names: [\"a..b\"]", "pki.frontend.dns_names"),
        ("ip_addresses: [999.1.1.1]", "pki.frontend.ip_addresses"),
        ("ip_addresses: [\"localhost\"]", "pki.frontend.ip_addresses"),
        ("dns_names: []", "pki.frontend"),
    ] {
        let s = Site::new(&format!("pki:\n  dir: pki\n  frontend: {{ {bad} }}\n"));
        assert_refused(&s, &["certs", "issue"], needle);
        assert!(!s.dir().exists());
    }
}

#[test]
fn validity_longer_than_the_ca_and_renew_window_longer_than_validity_are_refused() {
    let s = Site::new(
        "pki:\n  dir: pki\n  ca: { validity: 30d }\n  renew_before: 7d\n  frontend: { dns_names: [localhost], validity: 90d }\n",
    );
    assert_refused(&s, &["certs", "issue"], "longer than the CA's validity");
    let s = Site::new(
        "pki:\n  dir: pki\n  renew_before: 60d\n  frontend: { dns_names: [localhost], validity: 30d }\n",
    );
    assert_refused(&s, &["certs", "issue"], "renew_before");
    // A bring-your-own CA shorter than a leaf's validity.
    let s = Site::new("");
    openssl_ca(&s.root, 20);
    s.set_pki("pki:\n  dir: pki\n  ca: { bring_your_own: { cert: byo-ca.pem, key: \"file:byo-ca-key.pem\" } }\n  renew_before: 5d\n  frontend: { dns_names: [localhost], validity: 30d }\n");
    assert_refused(
        &s,
        &["certs", "issue"],
        "longer than the whole validity of the bring-your-own CA",
    );
}

#[test]
fn missing_or_mismatched_byo_ca_key_is_refused_without_writing() {
    let s = Site::new("");
    openssl_ca(&s.root, 365);
    s.set_pki("pki:\n  dir: pki\n  ca: { bring_your_own: { cert: byo-ca.pem, key: \"file:missing-key.pem\" } }\n  frontend: { dns_names: [localhost] }\n");
    assert_refused(
        &s,
        &["certs", "issue"],
        "pki.ca.bring_your_own.key (file:missing-key.pem)",
    );
    s.set_pki("pki:\n  dir: pki\n  ca: { bring_your_own: { cert: byo-ca.pem, key: \"env:TB_TEST_UNSET_CA_KEY\" } }\n  frontend: { dns_names: [localhost] }\n");
    assert_refused(&s, &["certs", "issue"], "TB_TEST_UNSET_CA_KEY");
    // A key that belongs to another certificate.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        s.root.join("other-key.pem").to_str().unwrap(),
    ]);
    s.set_pki("pki:\n  dir: pki\n  ca: { bring_your_own: { cert: byo-ca.pem, key: \"file:other-key.pem\" } }\n  frontend: { dns_names: [localhost] }\n");
    assert_refused(&s, &["certs", "issue"], "does not belong to");
    // Not a CA certificate at all.
    s.set_pki("pki:\n  dir: pki\n  ca: { bring_your_own: { cert: platform.yaml, key: \"file:other-key.pem\" } }\n  frontend: { dns_names: [localhost] }\n");
    assert_refused(&s, &["certs", "issue"], "pki.ca.bring_your_own.cert");
    assert!(!s.dir().exists());
}

#[test]
fn unusable_directories_and_a_lost_ca_key_are_refused_without_writing() {
    // pki.dir is a file.
    let s = Site::new("pki:\n  dir: pki\n  frontend: { dns_names: [localhost] }\n");
    std::fs::write(s.dir(), "not a directory").unwrap();
    assert_refused(&s, &["certs", "issue"], "is not a directory");
    assert_refused(&s, &["certs", "inspect"], "is not a directory");
    assert_refused(&s, &["apply", "--only", "certificates"], "certificates");
    // pki.dir below a file.
    let s = Site::new("pki:\n  dir: blocker/pki\n  frontend: { dns_names: [localhost] }\n");
    std::fs::write(s.root.join("blocker"), "x").unwrap();
    assert_refused(&s, &["certs", "issue"], "is not a directory");
    // The CA certificate without its key: never replaced silently.
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    std::fs::remove_file(s.file("ca-key.pem")).unwrap();
    std::fs::remove_file(s.file("frontend.pem")).unwrap();
    assert_refused(&s, &["certs", "issue"], "ca-key.pem is missing");
    assert_refused(&s, &["certs", "renew"], "restore the CA key");
    // A garbage key file.
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    std::fs::write(s.file("ca-key.pem"), "garbage").unwrap();
    assert_refused(&s, &["certs", "renew"], "PKCS#8");
}

#[test]
fn an_unreadable_directory_is_refused_without_writing() {
    // Root bypasses permission bits: as root, run the binary as `nobody` (runuser).
    let s = Site::new(PKI_SIMPLE);
    s.ok(&["certs", "issue"]);
    let as_root = is_root();
    assert!(
        !as_root || Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists(),
        "running as root needs runuser (util-linux) to check permission bits, which do not apply to root"
    );
    // Everything readable by others except pki.dir itself.
    std::fs::set_permissions(&s.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(s.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o000)).unwrap();
    let before = s.snapshot();
    // `nobody` may not be able to reach the build directory (e.g. a checkout under /root): run a
    // copy of the binary from a world-readable temporary directory.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin_copy = bin_dir.path().join("temporal-bootstrap");
    std::fs::copy(BIN, &bin_copy).unwrap();
    std::fs::set_permissions(&bin_copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(&bin_copy);
        c
    } else {
        Command::new(BIN)
    };
    let cfg = s.config();
    let out = cmd
        .args(["certs", "issue", "-f", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let after = s.snapshot();
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pki.dir `pki` is not readable"), "{stderr}");
    assert_eq!(before, after);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

// ------------------------------------------------------------------------------------------
// end to end: the real Temporal server's frontend mTLS, Temporal CLI as client
// ------------------------------------------------------------------------------------------

/// Reads a TB_* variable. Only the test marked to need the stack calls it (ignored without it,
/// see `build.rs`), so a missing one is a failure.
fn dev_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
        ),
    }
}

/// The real Temporal server of scripts/dev-services loads `global.tls` with frontend
/// `requireClientAuth` and the certificates the certificates step issued from
/// examples/local.yaml: it serves the issued client certificate and refuses none, one from
/// another CA, an expired one signed by its own CA, and its own server-only frontend certificate.
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn real_temporal_server_accepts_only_valid_client_certificates() {
    let (address, cli, ca, cert, key) = (
        dev_env("TB_TEMPORAL_ADDRESS"),
        dev_env("TB_TEMPORAL_CLI"),
        dev_env("TB_TEMPORAL_TLS_CA"),
        dev_env("TB_TEMPORAL_TLS_CERT"),
        dev_env("TB_TEMPORAL_TLS_KEY"),
    );
    let health = |client: Option<(&Path, &Path)>| {
        let mut c = Command::new(&cli);
        c.args(["operator", "cluster", "health", "--address", &address])
            .args(["--tls-ca-path", &ca, "--tls-server-name", "localhost"])
            .args(["--command-timeout", "10s"]);
        if let Some((cert, key)) = client {
            c.arg("--tls-cert-path")
                .arg(cert)
                .arg("--tls-key-path")
                .arg(key);
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success() && text.contains("SERVING"), text)
    };
    let (ok, text) = health(Some((Path::new(&cert), Path::new(&key))));
    assert!(ok, "the issued client certificate: {text}");

    let (ok, text) = health(None);
    assert!(!ok, "without a client certificate: {text}");

    let other = Site::new(PKI_SIMPLE);
    other.ok(&["certs", "issue"]);
    let (ok, text) = health(Some((
        &other.file("clients/demo-worker.pem"),
        &other.file("clients/demo-worker-key.pem"),
    )));
    assert!(!ok, "a client certificate from another CA: {text}");

    // Expired, but signed by the stack's own CA (examples/local.yaml's pki.dir).
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local.yaml");
    let loaded = temporal_bootstrap::config::load_file(&stack).unwrap();
    let stack_pki = Pki::new(
        loaded.config.pki.as_ref().unwrap(),
        "stack",
        stack.parent().unwrap(),
    );
    let now = OffsetDateTime::now_utc();
    let (c, k) = pki::testing::issue_leaf_with_validity(
        &stack_pki,
        &LeafKind::Client("demo-worker".into()),
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cp, kp) = (
        dir.path().join("expired.pem"),
        dir.path().join("expired-key.pem"),
    );
    std::fs::write(&cp, c).unwrap();
    std::fs::write(&kp, k).unwrap();
    std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, text) = health(Some((&cp, &kp)));
    assert!(!ok, "an expired client certificate of the right CA: {text}");

    // The frontend's own certificate carries serverAuth only.
    let pki_dir = Path::new(&ca).parent().unwrap();
    let (ok, text) = health(Some((
        &pki_dir.join("frontend.pem"),
        &pki_dir.join("frontend-key.pem"),
    )));
    assert!(
        !ok,
        "the server certificate as a client certificate: {text}"
    );
}

// ------------------------------------------------------------------------------------------
// issue 16: the directory that holds the keys
// ------------------------------------------------------------------------------------------

fn dir_mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_loose_pki_dir_of_ours_is_tightened_to_0700_and_reported() {
    let s = Site::new(PKI_SIMPLE);
    std::fs::create_dir(s.dir()).unwrap();
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let plan = s.ok(&["plan", "--only", "certificates"]);
    assert!(plan.contains("directory mode 0777 -> 0700"), "{plan}");
    assert_eq!(dir_mode(&s.dir()), 0o777, "plan changes nothing");
    let out = s.ok(&["certs", "issue"]);
    assert!(out.contains("directory mode 0777 -> 0700"), "{out}");
    assert_eq!(dir_mode(&s.dir()), 0o700);
    assert_eq!(dir_mode(&s.dir().join("clients")), 0o700);
    // Converged: a second run has nothing to say about the directory.
    let again = s.ok(&["certs", "issue"]);
    assert!(!again.contains("directory mode"), "{again}");
}

#[test]
fn a_symlinked_foreign_or_shared_pki_dir_with_a_loose_mode_is_refused_untouched() {
    // A symlink to a 0755 directory elsewhere.
    let s = Site::new(PKI_SIMPLE);
    let other = tempfile::tempdir().unwrap();
    let elsewhere = other.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.dir()).unwrap();
    assert_refused(&s, &["certs", "issue"], "is a symlink to");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "no key written"
    );
    assert_eq!(dir_mode(&elsewhere), 0o755);

    // A sticky, world-writable directory (like /tmp).
    let s = Site::new(PKI_SIMPLE);
    std::fs::create_dir(s.dir()).unwrap();
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_refused(&s, &["certs", "issue"], "shared directory");
    assert_eq!(dir_mode(&s.dir()), 0o1777);

    // Another user's directory (only root can make one here).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let s = Site::new(PKI_SIMPLE);
        std::fs::create_dir(s.dir()).unwrap();
        std::os::unix::fs::chown(s.dir(), Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_refused(&s, &["certs", "issue"], "owned by uid 65534");
        assert_eq!(dir_mode(&s.dir()), 0o755);
    }
}

#[test]
fn an_empty_pki_dir_and_an_ip_under_dns_names_are_refused() {
    let s = Site::new(&PKI_SIMPLE.replace("dir: pki", "dir: \"\""));
    assert_refused(&s, &["certs", "issue"], "pki.dir: ``");
    assert!(!s.root.join("ca-key.pem").exists());
    let s = Site::new(&PKI_SIMPLE.replace("dir: pki", "dir: ."));
    assert_refused(&s, &["certs", "issue"], "next to platform.yaml");
    let s =
        Site::new("pki:\n  dir: pki\n  frontend: { dns_names: [temporal-frontend, 10.0.0.7] }\n");
    assert_refused(
        &s,
        &["certs", "issue"],
        "pki.frontend.dns_names[1]: `10.0.0.7` is an IP address; list it under pki.frontend.ip_addresses",
    );
}
