//! The real API server scenario (`TB_KUBE_API_URL`) and the same scenario against the fake.

use super::*;

/// Runs against a real Kubernetes API server when `TB_KUBE_API_URL` is set, e.g.
/// `kubectl proxy --port 8001 & TB_KUBE_API_URL=http://127.0.0.1:8001 cargo test --test kubernetes real_`
/// (or an https URL with `TB_KUBE_TOKEN_FILE` and `TB_KUBE_CA_FILE`). `TB_KUBE_NAMESPACE`
/// (default `default`) must exist; the test writes Secrets named `tb-it-<pid>-<n>-*` there and
/// deletes them at the end. Ignored otherwise (cfg `tb_kube_api`, see `build.rs`), also in CI: no
/// API server exists there. `real_scenario_against_the_fake` runs the same scenario on the fake, so the
/// scenario itself is exercised on every run.
#[tokio::test]
#[cfg_attr(
    not(tb_kube_api),
    ignore = "needs a real Kubernetes API server: TB_KUBE_API_URL (none runs in CI)"
)]
async fn real_api_server_publish_restore_and_converge() {
    assert!(
        std::env::var("TB_KUBE_API_URL").is_ok_and(|u| !u.is_empty()),
        "built with TB_KUBE_API_URL (cfg tb_kube_api) but run without it: real_api_server_publish_restore_and_converge needs TB_KUBE_API_URL (e.g. `kubectl proxy --port 8001` and TB_KUBE_API_URL=http://127.0.0.1:8001)"
    );
    let ns = std::env::var("TB_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    real_scenario(None, ns).await;
}

#[tokio::test]
async fn real_scenario_against_the_fake() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    real_scenario(Some(server.uri()), "default".into()).await;
    // Cleaned up.
    assert!(fake.state.lock().unwrap().secrets.is_empty());
}

/// `url`: the fake (with the test token); `None`: the caller's TB_KUBE_* environment.
pub(crate) fn client_for(url: Option<&str>) -> temporal_bootstrap::kubernetes::KubeClient {
    match url {
        Some(u) => temporal_bootstrap::kubernetes::KubeClient::with_token(u, Some(TOKEN), None),
        None => temporal_bootstrap::kubernetes::KubeClient::from_env(),
    }
    .unwrap()
}

pub(crate) async fn real_scenario(url: Option<String>, ns: String) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 100_000;
    let prefix = format!("tb-it-{}-{stamp}", std::process::id());
    let names: Vec<String> = ["ca", "frontend", "internode", "bootstrap", "payments"]
        .iter()
        .map(|n| format!("{prefix}-{n}"))
        .collect();
    let s = Setup {
        dir: tempfile::tempdir().unwrap(),
        url: url.clone(),
    };
    std::fs::write(s.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let yaml = PLATFORM
        .replace("FRONTEND_NAMES", "temporal-frontend.temporal.svc")
        .replace("namespace: temporal", &format!("namespace: {ns}"))
        .replace("temporal-tls-bootstrap", &names[3])
        .replace("temporal-tls-payments", &names[4])
        .replace("temporal-tls-ca", &names[0])
        .replace("temporal-tls-frontend", &names[1])
        .replace("temporal-tls-internode", &names[2]);
    std::fs::write(s.file(), yaml).unwrap();
    let (names2, ns2, url2) = (names.clone(), ns.clone(), url.clone());

    let result = tokio::spawn(async move {
        let (names, ns) = (names2, ns2);
        let client = client_for(url2.as_deref());
        let o = s.apply();
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
        let mut rvs = Vec::new();
        for n in &names {
            let secret = client.get_secret(&ns, n).await.unwrap().expect(n);
            assert_eq!(secret.type_, "kubernetes.io/tls");
            assert_eq!(secret.data["ca.crt"], s.read("ca-bundle.pem"));
            rvs.push(secret.resource_version.clone());
        }
        assert_eq!(
            client
                .get_secret(&ns, &names[1])
                .await
                .unwrap()
                .unwrap()
                .data["tls.crt"],
            s.read("frontend.pem")
        );
        // Converged: no write (resourceVersions unchanged).
        let o = s.apply();
        assert_eq!(step_status(&o), "up-to-date", "{}", out_text(&o));
        // Restart: empty pki.dir, CA restored, still no write.
        let ca_key = s.read("ca-key.pem");
        std::fs::remove_dir_all(s.pki()).unwrap();
        let o = s.apply();
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
        assert_eq!(s.read("ca-key.pem"), ca_key);
        for (n, rv) in names.iter().zip(&rvs) {
            let now = client.get_secret(&ns, n).await.unwrap().unwrap();
            assert_eq!(&now.resource_version, rv, "{n} was written");
        }
    })
    .await;
    // Clean up whatever happened, then report.
    let client = client_for(url.as_deref());
    for n in &names {
        let _ = client.delete_secret(&ns, n).await;
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
