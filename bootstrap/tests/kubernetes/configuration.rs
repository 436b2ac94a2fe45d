//! Configuration validation and the step without an API server.

use super::*;

#[test]
fn configuration_is_validated() {
    let base = PLATFORM.replace("FRONTEND_NAMES", "temporal-frontend");
    let ok = load_str(&base, "platform.yaml").unwrap();
    let ks = ok.config.pki.unwrap().kubernetes_secrets.unwrap();
    assert_eq!(ks.clients["payments"], "temporal-tls-payments");

    for (from, to, path, want) in [
        (
            "namespace: temporal",
            "namespace: Temporal_NS",
            "pki.kubernetes_secrets.namespace",
            "DNS-1123 label",
        ),
        (
            "frontend: temporal-tls-frontend",
            "frontend: temporal_tls",
            "pki.kubernetes_secrets.frontend",
            "DNS-1123 subdomain",
        ),
        (
            "internode: temporal-tls-internode",
            "internode: temporal-tls-frontend",
            "pki.kubernetes_secrets.internode",
            "already used by pki.kubernetes_secrets.frontend",
        ),
        (
            "payments: temporal-tls-payments",
            "payments: temporal-tls-payments, billing: temporal-tls-billing",
            "pki.kubernetes_secrets.clients.billing",
            "not in pki.clients",
        ),
        (
            "    ca: temporal-tls-ca\n",
            "    ca: temporal-tls-ca\n    ca_key: x\n",
            "",
            "ca_key",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let text = base.replace(from, to);
        let err = load_str(&text, "platform.yaml").unwrap_err().to_string();
        assert!(
            err.contains(path) && err.contains(want),
            "{from} -> {to}: {err}"
        );
    }
    // A client without a Secret is allowed, with a warning.
    let text = base.replace(", payments: temporal-tls-payments", "");
    let loaded = load_str(&text, "platform.yaml").unwrap();
    let w = format!("{:?}", loaded.warnings);
    assert!(w.contains("`payments` has no entry"), "{w}");
}

#[test]
fn without_an_api_server_the_step_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(
        &file,
        PLATFORM.replace("FRONTEND_NAMES", "temporal-frontend"),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["apply", "--only", "certificates", "-f"])
        .arg(&file)
        .env_remove("TB_KUBE_API_URL")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("TEMPORAL_DB_PASSWORD", "unused")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    let text = out_text(&o);
    assert!(
        text.contains("KUBERNETES_SERVICE_HOST is not set") && text.contains("TB_KUBE_API_URL"),
        "{text}"
    );
    // Offline planning never needs the API server.
    let o = Command::new(BIN)
        .args(["plan", "--offline", "--only", "certificates", "-f"])
        .arg(&file)
        .env_remove("TB_KUBE_API_URL")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("TEMPORAL_DB_PASSWORD", "unused")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
}
