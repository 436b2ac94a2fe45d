//! Publishing certificates into Secrets: create, update, conflicts, forbidden.

use super::*;

#[tokio::test]
async fn fresh_publish_creates_every_secret_and_a_second_run_writes_nothing() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);

    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert_eq!(step_status(&o), "applied", "{}", out_text(&o));
    // One create per Secret, the CA first (its key must be durable before leaves signed by it).
    let writes = fake.writes();
    let created: Vec<(String, String, u16)> = writes
        .iter()
        .map(|c| (c.method.clone(), c.name.clone(), c.status))
        .collect();
    assert_eq!(
        created,
        ALL.iter()
            .map(|n| ("POST".to_string(), n.to_string(), 201))
            .collect::<Vec<_>>()
    );
    let bundle = s.read("ca-bundle.pem");
    let ca = s.read("ca.pem");
    for name in ALL {
        let obj = fake.secret(name).unwrap();
        assert_eq!(obj["type"], "kubernetes.io/tls", "{name}");
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"], "temporal-bootstrap",
            "{name}"
        );
        assert_eq!(
            fake.data(name, "ca.crt"),
            bundle,
            "{name}: ca.crt is the trust bundle"
        );
    }
    assert_eq!(fake.data("temporal-tls-ca", "tls.crt"), ca);
    assert_eq!(
        fake.data("temporal-tls-ca", "tls.key"),
        s.read("ca-key.pem")
    );
    assert_eq!(fake.data("temporal-tls-ca", "ca.key"), s.read("ca-key.pem"));
    let ca_keys: Vec<String> = fake.secret("temporal-tls-ca").unwrap()["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(ca_keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    for (name, cert, key) in [
        ("temporal-tls-frontend", "frontend.pem", "frontend-key.pem"),
        (
            "temporal-tls-internode",
            "internode.pem",
            "internode-key.pem",
        ),
        (
            "temporal-tls-bootstrap",
            "clients/temporal-bootstrap.pem",
            "clients/temporal-bootstrap-key.pem",
        ),
        (
            "temporal-tls-payments",
            "clients/payments.pem",
            "clients/payments-key.pem",
        ),
    ] {
        assert_eq!(fake.data(name, "tls.crt"), s.read(cert), "{name}");
        assert_eq!(fake.data(name, "tls.key"), s.read(key), "{name}");
        let keys: Vec<String> = fake.secret(name).unwrap()["data"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"], "{name}");
    }
    // What a Pod mounts is a usable mTLS identity: the frontend Secret's tls.crt verifies
    // against its own ca.crt for the service name; a client's verifies as a client.
    let trust = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "ca.crt")).unwrap();
    let chain = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "tls.crt")).unwrap();
    pki::verify_server(
        &chain,
        &trust,
        "temporal-frontend.temporal.svc",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let chain = pki::parse_pem_chain(&fake.data("temporal-tls-payments", "tls.crt")).unwrap();
    pki::verify_client(&chain, &trust, time::OffsetDateTime::now_utc()).unwrap();

    // The no-leak check is meaningful: the log is at trace level and covers the Secret calls.
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        log.contains("TRACE") && log.contains("kubernetes API"),
        "{log}"
    );
    assert!(
        log.contains("POST /api/v1/namespaces/temporal/secrets"),
        "{log}"
    );

    // Second run: converged, GETs only.
    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert_eq!(step_status(&o), "up-to-date", "{}", out_text(&o));
    assert!(
        fake.writes().is_empty(),
        "{:?}",
        writes_summary(&fake.writes())
    );
    assert_eq!(fake.calls().len(), ALL.len(), "one GET per Secret");
    // And plan agrees.
    let o = s.cli(&["plan", "--only", "certificates", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
}

#[tokio::test]
async fn plan_lists_missing_secrets_and_writes_nothing() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    let o = s.cli(&[
        "plan",
        "--only",
        "certificates",
        "--output",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", out_text(&o));
    let doc = json_out(&o);
    let resources: Vec<String> = doc["steps"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["resource"].as_str().unwrap().starts_with("secret "))
        .map(|c| {
            format!(
                "{} {}",
                c["action"].as_str().unwrap(),
                c["resource"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        resources,
        ALL.iter()
            .map(|n| format!("create secret {NS}/{n}"))
            .collect::<Vec<_>>()
    );
    assert!(fake.writes().is_empty());
    assert!(!s.pki().exists(), "plan created pki.dir");
}

#[tokio::test]
async fn a_changed_certificate_updates_only_its_secret_with_the_current_resource_version() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    assert_eq!(s.apply().status.code(), Some(0));
    let before: BTreeMap<&str, Value> = ALL.iter().map(|n| (*n, fake.secret(n).unwrap())).collect();
    let rv = before["temporal-tls-frontend"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // A new frontend DNS name: only the frontend certificate is re-issued.
    s.write_config("temporal-frontend.temporal.svc, temporal.example.com");
    fake.clear_calls();
    let o = s.cli(&["plan", "--only", "certificates", "--output", "json"]);
    let secret_changes: Vec<Value> = json_out(&o)["steps"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["resource"].as_str().unwrap().starts_with("secret "))
        .cloned()
        .collect();
    assert_eq!(secret_changes.len(), 1, "{secret_changes:?}");
    assert_eq!(
        secret_changes[0]["resource"],
        format!("secret {NS}/temporal-tls-frontend")
    );
    assert_eq!(secret_changes[0]["action"], "update");

    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let writes = fake.writes();
    assert_eq!(
        writes_summary(&writes),
        [format!("PUT {} 200", secret_path("temporal-tls-frontend"))],
        "only the frontend Secret is written"
    );
    assert_eq!(
        writes[0].sent_rv.as_deref(),
        Some(rv.as_str()),
        "PUT carries the resourceVersion read"
    );
    assert_eq!(
        fake.data("temporal-tls-frontend", "tls.crt"),
        s.read("frontend.pem")
    );
    let chain = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "tls.crt")).unwrap();
    let trust = pki::parse_pem_chain(&fake.data("temporal-tls-frontend", "ca.crt")).unwrap();
    pki::verify_server(
        &chain,
        &trust,
        "temporal.example.com",
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    for n in ALL.iter().filter(|n| **n != "temporal-tls-frontend") {
        assert_eq!(fake.secret(n).unwrap(), before[n], "{n} changed");
    }
}

#[tokio::test]
async fn conflicts_are_retried_after_reading_the_secret_again() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    // Create race: another writer creates the payments Secret between our GET and POST.
    fake.state
        .lock()
        .unwrap()
        .race_on_create
        .push("temporal-tls-payments".into());
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let calls = writes_summary(&fake.calls());
    let p = secret_path("temporal-tls-payments");
    let i = calls
        .iter()
        .position(|c| c == &format!("POST /api/v1/namespaces/{NS}/secrets 409"))
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert_eq!(calls[i + 1], format!("GET {p} 200"), "{calls:#?}");
    assert_eq!(calls[i + 2], format!("PUT {p} 200"), "{calls:#?}");
    assert_eq!(
        fake.data("temporal-tls-payments", "tls.key"),
        s.read("clients/payments-key.pem")
    );
    // The other writer's annotation survives: we replaced the object we read, not ours.
    assert_eq!(
        fake.secret("temporal-tls-payments").unwrap()["metadata"]["annotations"]["created-by"],
        "someone-else"
    );

    // Update race: a stale resourceVersion gets 409 Conflict, then GET and PUT again.
    s.write_config("temporal-frontend.temporal.svc, temporal.example.com");
    fake.state
        .lock()
        .unwrap()
        .conflict_on_put
        .push("temporal-tls-frontend".into());
    fake.clear_calls();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let p = secret_path("temporal-tls-frontend");
    let calls = writes_summary(&fake.calls());
    let i = calls
        .iter()
        .position(|c| c == &format!("PUT {p} 409"))
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert_eq!(
        calls[i + 1..i + 3],
        [format!("GET {p} 200"), format!("PUT {p} 200")],
        "{calls:#?}"
    );
    let obj = fake.secret("temporal-tls-frontend").unwrap();
    assert_eq!(
        obj["metadata"]["annotations"]["touched-by"],
        "another-writer"
    );
    assert_eq!(
        fake.data("temporal-tls-frontend", "tls.crt"),
        s.read("frontend.pem")
    );
    assert_eq!(fake.writes().iter().filter(|c| c.status < 300).count(), 1);
}

#[tokio::test]
async fn forbidden_names_the_verb_resource_and_namespace_and_exits_1() {
    // No `create` at all.
    let fake = FakeApi::default();
    fake.deny("create", "*");
    let server = start(&fake).await;
    let s = Setup::new(&server);
    let o = s.apply();
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    let doc = json_out(&o);
    let msg = doc["steps"][0]["message"].as_str().unwrap().to_string();
    for want in [
        "403 Forbidden",
        "cannot create secrets `temporal-tls-ca`",
        "namespace `temporal`",
        "verbs [\"create\"]",
        "system:serviceaccount:temporal:temporal-bootstrap",
    ] {
        assert!(msg.contains(want), "missing `{want}` in: {msg}");
    }
    assert!(
        !msg.contains("resourceNames"),
        "create cannot be restricted by name: {msg}"
    );
    assert_eq!(doc["steps"][0]["error_class"], "runtime");

    // `get` refused on one name: the rule to add names it.
    let fake = FakeApi::default();
    fake.deny("get", "temporal-tls-internode");
    let server = start(&fake).await;
    let s = Setup::new(&server);
    let o = s.cli(&["plan", "--only", "certificates", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    let msg = json_out(&o)["steps"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    for want in [
        "cannot get secrets `temporal-tls-internode`",
        "verbs [\"get\"], resourceNames [\"temporal-tls-internode\"]",
    ] {
        assert!(msg.contains(want), "missing `{want}` in: {msg}");
    }

    // A token the server rejects: 401 with a hint, exit 1.
    let fake = FakeApi::default();
    let server = start(&fake).await;
    let s = Setup::new(&server);
    std::fs::write(s.dir.path().join("token"), "expired-token").unwrap();
    let o = s.apply();
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    assert!(
        out_text(&o).contains("401 Unauthorized"),
        "{}",
        out_text(&o)
    );
    assert!(!out_text(&o).contains("expired-token"), "{}", out_text(&o));
    assert!(fake.secret("temporal-tls-ca").is_none());
}
