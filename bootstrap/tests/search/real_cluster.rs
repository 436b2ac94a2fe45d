//! A real cluster, when one is given (`TB_ES_URL`).

use super::*;

/// Runs the scenarios against a real, disposable Elasticsearch/OpenSearch at `TB_ES_URL`.
/// It writes the cluster setting `action.auto_create_index: false` and the template
/// `temporal_visibility_v1_template`, creates and deletes indices `temporal_visibility_v1_tbtest_*`.
#[tokio::test]
#[cfg_attr(
    not(tb_es_url),
    ignore = "needs a disposable Elasticsearch/OpenSearch cluster: TB_ES_URL (none runs in CI)"
)]
async fn real_cluster_converges_is_idempotent_and_reports_drift() {
    let url = std::env::var("TB_ES_URL").expect(
        "built with TB_ES_URL (cfg tb_es_url) but run without it: set TB_ES_URL, optionally TB_ES_USERNAME/TB_ES_PASSWORD and TB_ES_CA, to run against a disposable cluster",
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let suffix = std::process::id();
    let index = format!("temporal_visibility_v1_tbtest_{suffix}");
    let drift_index = format!("temporal_visibility_v1_tbtest_drift_{suffix}");

    let http = {
        let mut b = reqwest::Client::builder();
        if let Ok(ca) = std::env::var("TB_ES_CA") {
            let pem = std::fs::read(ca).unwrap();
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap());
        }
        b.build().unwrap()
    };
    let user = std::env::var("TB_ES_USERNAME").ok();
    let pass = std::env::var("TB_ES_PASSWORD").ok();
    let raw = |m: reqwest::Method, p: &str| {
        let mut r = http.request(m, format!("{}{p}", url.trim_end_matches('/')));
        if let (Some(u), Some(pw)) = (&user, &pass) {
            r = r.basic_auth(u, Some(pw));
        }
        r
    };
    let flavor = {
        let root: Value = raw(reqwest::Method::GET, "/")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if root.pointer("/version/distribution") == Some(&json!("opensearch")) {
            "opensearch"
        } else {
            "elasticsearch"
        }
    };
    let setup = |index: &str| {
        let mut s = Setup::new(&url, flavor);
        s.index = index.to_string();
        if let (Some(u), Some(p)) = (&user, &pass) {
            let pw = secret_file(dir.path(), "pw", p);
            s.auth = Some(format!(
                "    auth:\n      basic:\n        username: {u}\n        password: file:{}\n",
                pw.display()
            ));
        }
        if let Ok(ca) = std::env::var("TB_ES_CA") {
            s.ca = Some(PathBuf::from(ca));
        }
        s.context()
    };
    let step = SearchVisibilityStep::new();

    // Fresh index: converge, then nothing pending.
    let ctx = setup(&index);
    apply(&step, &ctx).await.expect("apply on the real cluster");
    let again = plan(&step, &ctx).await.unwrap();
    assert!(
        again.is_empty(),
        "not converged on the real cluster: {again:?}"
    );

    // Drift: an index whose WorkflowType was created as text.
    let r = raw(reqwest::Method::PUT, &format!("/{drift_index}"))
        .json(&json!({"mappings": {"properties": {"WorkflowType": {"type": "text"}}}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let dctx = setup(&drift_index);
    let done = apply(&step, &dctx).await.unwrap();
    assert!(
        done.iter()
            .any(|c| c.action == Action::Drift && c.resource.ends_with("field WorkflowType")),
        "{done:?}"
    );
    let again = plan(&step, &dctx).await.unwrap();
    assert!(again.iter().all(|c| c.action == Action::Drift), "{again:?}");

    for i in [&index, &drift_index] {
        let _ = raw(reqwest::Method::DELETE, &format!("/{i}")).send().await;
    }
}
