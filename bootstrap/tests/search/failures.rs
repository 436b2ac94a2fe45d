//! Failures: each a clear message, the right class, and no write.

use super::*;

#[tokio::test]
async fn health_timeout_408_is_a_runtime_error_naming_the_state() {
    let mut fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
    fake.health_times_out = true;
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let err = apply(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Runtime);
    assert!(
        err.message.contains("still red after waiting 5s")
            && err.message.contains("2 unassigned shards")
            && err.message.contains("health_timeout"),
        "{}",
        err.message
    );
    assert!(writes(&received(&server).await).is_empty());
}

#[tokio::test]
async fn unsupported_versions_are_refused_with_the_supported_list() {
    for (flavour, name) in [
        (Flavour::Es6, "Elasticsearch 6.8.23"),
        (Flavour::Os1, "OpenSearch 1.3.19"),
    ] {
        let fake = FakeCluster::new(flavour, Security::EsDisabled);
        let server = start(&fake).await;
        let ctx = Setup::new(&server.uri(), "elasticsearch").context();
        let err = plan(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Invalid, "{}", err.message);
        assert!(
            err.message.contains(name)
                && err
                    .message
                    .contains("Elasticsearch 7.x, 8.x, 9.x and OpenSearch 2.x"),
            "{}",
            err.message
        );
        assert!(writes(&received(&server).await).is_empty());
    }
}

#[tokio::test]
async fn missing_privileges_are_named_before_any_write() {
    let fake = FakeCluster::new(
        Flavour::Es8,
        Security::Es {
            denied: vec!["cluster:manage", "index:create_index"],
        },
    );
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let err = apply(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Runtime);
    assert!(
        err.message
            .contains("temporal_admin lacks cluster privilege `manage`")
            && err
                .message
                .contains("index privilege `create_index` on `temporal_visibility_v1_test`"),
        "{}",
        err.message
    );
    assert!(writes(&received(&server).await).is_empty());
}

#[tokio::test]
async fn privileges_are_asked_once_and_only_what_is_pending_is_required() {
    // One `_has_privileges` call per run, asking for everything the step may use.
    let fake = FakeCluster::new(
        Flavour::Es7,
        Security::Es {
            denied: vec!["cluster:manage"],
        },
    );
    v13_cluster(&fake);
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    // The upgrade needs no cluster-setting write, so a user without cluster `manage` is enough.
    apply(&SearchVisibilityStep::new(), &ctx)
        .await
        .expect("cluster manage is not needed here");
    let asked: Vec<Value> = received(&server)
        .await
        .iter()
        .filter(|r| r.url.path() == "/_security/user/_has_privileges")
        .map(|r| r.body_json().unwrap())
        .collect();
    assert_eq!(
        asked[0],
        json!({"cluster": ["monitor", "manage_index_templates", "manage"],
               "index": [{"names": ["temporal_visibility_v1_test"],
                          "privileges": ["view_index_metadata", "create_index", "manage"]}]})
    );

    // A read privilege missing: refused before anything is read.
    let fake = FakeCluster::new(
        Flavour::Es8,
        Security::Es {
            denied: vec!["cluster:manage_index_templates"],
        },
    );
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let err = plan(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
    assert!(
        err.message
            .contains("lacks cluster privilege `manage_index_templates` needed to read"),
        "{}",
        err.message
    );
    assert!(
        !received(&server)
            .await
            .iter()
            .any(|r| r.url.path().starts_with("/_template")),
        "read the template without the privilege"
    );
}

#[tokio::test]
async fn auth_failure_is_clear_and_never_shows_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Wr0ng-but-Secret-Pw";
    let pw = secret_file(dir.path(), "pw", secret);
    let encoded = basic("temporal_admin", secret);
    for (flavour, echo) in [
        (Flavour::Es8, false),
        (Flavour::Os2, false),
        (Flavour::Es7, true),
    ] {
        let mut fake = FakeCluster::new(flavour, Security::Es { denied: vec![] });
        fake.accept_auth = Some(basic("temporal_admin", "the-right-one"));
        fake.echo_auth_on_401 = echo;
        let server = start(&fake).await;
        let mut s = Setup::new(&server.uri(), "elasticsearch");
        s.auth = Some(format!(
            "    auth:\n      basic:\n        username: temporal_admin\n        password: file:{}\n",
            pw.display()
        ));
        let ctx = s.context();
        let err = plan(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Runtime);
        assert!(
            err.message.contains("GET / returned 401")
                && err.message.contains("authentication failed"),
            "{}",
            err.message
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(secret), "{flavour:?}: {shown}");
        assert!(
            !shown.contains(encoded.trim_start_matches("Basic ")),
            "{flavour:?}: {shown}"
        );
    }
}

#[tokio::test]
async fn missing_schema_dir_is_invalid_input_before_any_request() {
    let server = MockServer::start().await;
    let mut s = Setup::new(&server.uri(), "elasticsearch");
    s.schema_dir = PathBuf::from("/nonexistent/schema/elasticsearch");
    let err = plan(&SearchVisibilityStep::new(), &s.context())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(
        err.message.contains("index_template_v7.json"),
        "{}",
        err.message
    );
    assert!(received(&server).await.is_empty());
}

#[test]
fn step_is_disabled_for_other_visibility_stores() {
    let yaml = Setup::new("http://127.0.0.1:9", "elasticsearch")
        .yaml()
        .split("visibility:")
        .next()
        .unwrap()
        .to_string()
        + "visibility:\n  sqlite:\n    path: /tmp/v.db\nnamespaces:\n  - name: default-ns\n    retention: 1d\n";
    let loaded = load_str(&yaml, "platform.yaml").unwrap();
    let ctx = Context {
        config: Arc::new(loaded.config),
        base_dir: crate_dir(),
        offline: false,
        force: false,
    };
    assert!(!SearchVisibilityStep::new().enabled(&ctx).unwrap());
}
