//! Restoring the CA from its Secret, refusals, intermediates, other Secret types, CA rotation.

use super::*;

#[tokio::test]
async fn the_ca_is_restored_from_its_secret_into_an_empty_pki_dir() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    assert_eq!(s.apply().status.code(), Some(0));
    let ca_secret = fake.secret("temporal-tls-ca").unwrap();
    let ca_key = fake.data("temporal-tls-ca", "ca.key");

    // A restarted Pod: pki.dir (an emptyDir) is empty; every Secret is there.
    std::fs::remove_dir_all(s.pki()).unwrap();
    fake.clear_calls();
    let o = s.cli(&["plan", "--only", "certificates", "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let changes = json_out(&o)["steps"][0]["changes"].clone();
    let text = changes.to_string();
    assert!(
        text.contains("restore from secret temporal/temporal-tls-ca"),
        "{text}"
    );
    assert!(
        !text.contains("root CA private key"),
        "plan would issue a new CA: {text}"
    );
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["resource"].as_str().unwrap().starts_with("secret ")),
        "plan would write a Secret: {text}"
    );
    assert!(!s.pki().exists(), "plan wrote files");

    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert!(
        fake.writes().is_empty(),
        "{:?}",
        writes_summary(&fake.writes())
    );
    assert_eq!(
        s.read("ca-key.pem"),
        ca_key,
        "CA key restored, not re-issued"
    );
    assert_eq!(s.read("ca.pem"), fake.data("temporal-tls-ca", "tls.crt"));
    let mode = std::fs::metadata(s.pki().join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(fake.secret("temporal-tls-ca").unwrap(), ca_secret);

    // Only the CA Secret survived (leaf Secrets deleted): leaves are issued under the restored
    // CA, the CA Secret is not written.
    std::fs::remove_dir_all(s.pki()).unwrap();
    for n in &ALL[1..] {
        fake.remove(n);
    }
    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let writes = fake.writes();
    assert_eq!(writes.len(), 4, "{:?}", writes_summary(&writes));
    assert!(writes.iter().all(|c| c.method == "POST" && c.status == 201));
    assert_eq!(
        fake.secret("temporal-tls-ca").unwrap(),
        ca_secret,
        "CA Secret untouched"
    );
    let trust = pki::parse_pem_chain(&fake.data("temporal-tls-ca", "tls.crt")).unwrap();
    let chain = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "tls.crt")).unwrap();
    pki::verify_server(
        &chain,
        &trust,
        "temporal-frontend.temporal.svc",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    // And it is converged again.
    fake.clear_calls();
    assert_eq!(step_status(&s.apply()), "up-to-date");
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn a_ca_secret_whose_key_does_not_match_is_refused_before_any_write() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    assert_eq!(s.apply().status.code(), Some(0));
    // Someone edits the CA Secret: ca.key is now another (valid) key.
    let other_key = base64::engine::general_purpose::STANDARD.encode(s.read("frontend-key.pem"));
    {
        let mut st = fake.state.lock().unwrap();
        let obj = st
            .secrets
            .get_mut(&(NS.to_string(), "temporal-tls-ca".to_string()))
            .unwrap();
        obj["data"]["ca.key"] = json!(other_key);
    }
    std::fs::remove_dir_all(s.pki()).unwrap();
    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(2), "{}", out_text(&o));
    let msg = json_out(&o)["steps"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("does not belong to")
            && msg.contains("restored from secret temporal/temporal-tls-ca"),
        "{msg}"
    );
    assert!(!s.pki().exists(), "files were written");
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn a_ca_secret_holding_another_ca_is_never_overwritten_without_force() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let first = Setup::new(&server);
    assert_eq!(first.apply().status.code(), Some(0));
    let ca_secret = fake.secret("temporal-tls-ca").unwrap();

    // Another pki.dir with its own CA (e.g. a copy made by hand), pointed at the same Secrets.
    let other = Setup::new(&server);
    let o = other.cli(&["certs", "issue"]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    fake.clear_calls();
    let o = other.apply();
    assert_eq!(o.status.code(), Some(2), "{}", out_text(&o));
    let msg = json_out(&o)["steps"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("secret temporal/temporal-tls-ca holds a different CA"),
        "{msg}"
    );
    assert!(
        fake.writes().is_empty(),
        "{:?}",
        writes_summary(&fake.writes())
    );
    assert_eq!(fake.secret("temporal-tls-ca").unwrap(), ca_secret);

    // --force replaces it (and the leaves follow).
    let o = other.cli(&[
        "apply",
        "--only",
        "certificates",
        "--output",
        "json",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert_eq!(
        fake.data("temporal-tls-ca", "ca.key"),
        other.read("ca-key.pem")
    );
    assert_eq!(fake.writes().len(), ALL.len());
}

#[tokio::test]
async fn with_an_intermediate_the_chain_is_published_and_restored() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    let yaml = std::fs::read_to_string(s.file()).unwrap().replace(
        "ca: { validity: 1y }",
        "ca: { validity: 1y, intermediate: true }",
    );
    std::fs::write(s.file(), yaml).unwrap();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert_eq!(
        fake.data("temporal-tls-ca", "intermediate.crt"),
        s.read("intermediate.pem")
    );
    assert_eq!(
        fake.data("temporal-tls-ca", "intermediate.key"),
        s.read("intermediate-key.pem")
    );
    let chain = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "tls.crt")).unwrap();
    assert_eq!(chain.len(), 2, "leaf + intermediate");
    let trust = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "ca.crt")).unwrap();
    pki::verify_server(
        &chain,
        &trust,
        "temporal-frontend.temporal.svc",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();

    let inter_key = s.read("intermediate-key.pem");
    std::fs::remove_dir_all(s.pki()).unwrap();
    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert!(
        fake.writes().is_empty(),
        "{:?}",
        writes_summary(&fake.writes())
    );
    assert_eq!(s.read("intermediate-key.pem"), inter_key);
}

#[tokio::test]
async fn a_secret_of_another_type_is_reported_not_written() {
    let fake = FakeApi::default();
    {
        let mut st = fake.state.lock().unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "temporal-tls-payments", "namespace": NS, "resourceVersion": "7"},
            "type": "Opaque", "data": {"password": "aHVudGVyMg=="}});
        st.secrets
            .insert((NS.into(), "temporal-tls-payments".into()), obj);
    }
    let server = start(&fake).await;
    let s = Setup::new(&server);
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let changes = json_out(&o)["steps"][0]["changes"].to_string();
    assert!(
        changes.contains("\"action\":\"drift\",\"detail\":\"type is Opaque"),
        "{changes}"
    );
    assert_eq!(fake.writes().len(), ALL.len() - 1);
    assert_eq!(
        fake.secret("temporal-tls-payments").unwrap()["type"],
        "Opaque"
    );
    let o = s.cli(&["plan", "--only", "certificates", "--output", "json"]);
    let change = &json_out(&o)["steps"][0]["changes"][0];
    assert_eq!(change["action"], "drift", "{change}");
    assert_eq!(
        change["resource"],
        format!("secret {NS}/temporal-tls-payments")
    );
    assert!(
        change["detail"]
            .as_str()
            .unwrap()
            .contains("type is Opaque"),
        "{change}"
    );
}

#[tokio::test]
async fn a_promoted_ca_rotation_updates_the_ca_secret_without_force() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    assert_eq!(s.apply().status.code(), Some(0));
    for phase in ["start", "promote"] {
        let o = s.cli(&["certs", "rotate-ca", phase]);
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    }
    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert_eq!(fake.data("temporal-tls-ca", "ca.key"), s.read("ca-key.pem"));
    assert_eq!(
        fake.data("temporal-tls-ca", "ca.crt"),
        s.read("ca-bundle.pem")
    );
    // Every leaf was re-issued by the promotion: every Secret is updated once.
    let writes = fake.writes();
    assert_eq!(writes.len(), ALL.len(), "{:?}", writes_summary(&writes));
    assert!(writes.iter().all(|c| c.method == "PUT" && c.status == 200));
    assert_eq!(writes[0].name, "temporal-tls-ca");
}
