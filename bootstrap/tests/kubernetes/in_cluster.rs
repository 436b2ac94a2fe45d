//! The in-cluster configuration end to end over real TLS.

use super::*;

/// The in-cluster path end to end over real TLS: `KUBERNETES_SERVICE_HOST`/`PORT` (an IP, as in a
/// Pod) become `https://IP:PORT`, the server certificate is verified against the CA file, the
/// bearer token is sent. The API server is a minimal HTTP/1.1 server behind tokio-rustls that
/// answers every GET with the documented 404 Status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_configuration_uses_https_with_the_serviceaccount_ca_and_token() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A server certificate for 127.0.0.1 from our own PKI, and an unrelated CA.
    let tmp = tempfile::tempdir().unwrap();
    let issue = |dir: &str| {
        let yaml = format!(
            "{}\npki:\n  dir: {dir}\n  frontend: {{ dns_names: [localhost], ip_addresses: [127.0.0.1] }}\n",
            PLATFORM.split("\npki:").next().unwrap()
        );
        let loaded = load_str(&yaml, "platform.yaml").unwrap();
        pki::Pki::new(loaded.config.pki.as_ref().unwrap(), "api", tmp.path())
            .apply(pki::Policy::CreateMissing)
            .unwrap();
    };
    issue("apiserver");
    issue("other");
    let srv = tmp.path().join("apiserver");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(srv.join("frontend.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(srv.join("frontend-key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_string();
                        let auth = head
                            .lines()
                            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                            .map(|l| l.split_once(':').unwrap().1.trim().to_string())
                            .unwrap_or_default();
                        log.lock().unwrap().push(format!(
                            "{line} auth-ok={}",
                            auth == format!("Bearer {TOKEN}")
                        ));
                        let name = line
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .rsplit('/')
                            .next()
                            .unwrap_or("");
                        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": format!("secrets \"{name}\" not found"),
                            "reason": "NotFound", "details": {"name": name, "kind": "secrets"}, "code": 404})
                        .to_string();
                        let resp = format!(
                            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(
        &file,
        PLATFORM.replace("FRONTEND_NAMES", "temporal-frontend"),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let run = |ca: PathBuf| {
        let mut c = Command::new(BIN);
        c.args(["plan", "--only", "certificates", "--output", "json", "-f"])
            .arg(&file)
            .env_remove("TB_KUBE_API_URL")
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", port.to_string())
            .env("TB_KUBE_TOKEN_FILE", dir.path().join("token"))
            .env("TB_KUBE_CA_FILE", ca)
            .env("TEMPORAL_DB_PASSWORD", "unused");
        c
    };
    let o = tokio::task::spawn_blocking({
        let mut c = run(srv.join("ca.pem"));
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let creates = json_out(&o)["steps"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["action"] == "create" && c["resource"].as_str().unwrap().starts_with("secret ")
        })
        .count();
    assert_eq!(creates, ALL.len());
    let requests = seen.lock().unwrap().clone();
    assert_eq!(
        requests,
        ALL.iter()
            .map(|n| format!("GET {} HTTP/1.1 auth-ok=true", secret_path(n)))
            .collect::<Vec<_>>()
    );

    // An API server certificate from another CA is refused.
    let o = tokio::task::spawn_blocking({
        let mut c = run(tmp.path().join("other/ca.pem"));
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    assert!(
        out_text(&o).to_lowercase().contains("certificate"),
        "{}",
        out_text(&o)
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        ALL.len(),
        "a request got through"
    );
}
