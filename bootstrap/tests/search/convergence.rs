//! Convergence and idempotency, per flavour.

use super::*;

pub(crate) async fn converge_then_no_write(fake: FakeCluster, setup: impl FnOnce(&mut Setup)) {
    let server = start(&fake).await;
    let mut s = Setup::new(
        &server.uri(),
        if fake.is_os() {
            "opensearch"
        } else {
            "elasticsearch"
        },
    );
    setup(&mut s);
    let ctx = s.context();
    let step = SearchVisibilityStep::new();

    let pending = plan(&step, &ctx).await.expect("plan");
    assert_eq!(
        resources(&pending),
        vec![
            "update cluster setting action.auto_create_index",
            "create index template temporal_visibility_v1_template",
            "create index temporal_visibility_v1_test",
        ]
    );
    assert!(writes(&received(&server).await).is_empty(), "plan wrote");

    let done = apply(&step, &ctx).await.expect("apply");
    assert_eq!(done, pending, "apply reports what plan showed");
    assert_eq!(
        writes(&received(&server).await),
        vec![
            "PUT /_cluster/settings",
            "PUT /_template/temporal_visibility_v1_template",
            "PUT /temporal_visibility_v1_test",
        ]
    );

    // What the next run relies on: the index records the template digest and schema version.
    let st = fake.state.lock().unwrap().indices["temporal_visibility_v1_test"].clone();
    let meta = &st["_meta"]["temporal_bootstrap"];
    assert_eq!(meta["schema_version"], "v14");
    assert_eq!(meta["template_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        st["properties"]["TemporalExternalPayloadCount"]["type"],
        "long"
    );

    // Second run: nothing pending, no write at all.
    let before = received(&server).await.len();
    let again = apply(&step, &ctx).await.expect("second apply");
    assert!(again.is_empty(), "converged run reported {again:?}");
    let reqs = received(&server).await;
    assert!(
        writes(&reqs[before..]).is_empty(),
        "second run wrote: {:?}",
        writes(&reqs[before..])
    );
}

#[tokio::test]
async fn es7_basic_auth_converges_and_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "pw", "es7-Pa55word");
    let mut fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
    fake.accept_auth = Some(basic("temporal_admin", "es7-Pa55word"));
    converge_then_no_write(fake, |s| {
        s.auth = Some(format!(
            "    auth:\n      basic:\n        username: temporal_admin\n        password: file:{}\n",
            pw.display()
        ))
    })
    .await;
}

#[tokio::test]
async fn es8_api_key_converges_and_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    let k = secret_file(dir.path(), "key", key);
    let mut fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    fake.accept_auth = Some(format!("ApiKey {key}"));
    converge_then_no_write(fake, |s| {
        s.auth = Some(format!(
            "    auth:\n      api_key:\n        key: file:{}\n",
            k.display()
        ))
    })
    .await;
}

#[tokio::test]
async fn es9_without_auth_converges_and_second_run_writes_nothing() {
    // Legacy `_template` is deprecated but still served by 9.x; same code path.
    converge_then_no_write(
        FakeCluster::new(Flavour::Es9, Security::Es { denied: vec![] }),
        |_| {},
    )
    .await;
}

#[tokio::test]
async fn opensearch2_converges_and_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "pw", "os2-Pa55word");
    let mut fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    fake.accept_auth = Some(basic("temporal_admin", "os2-Pa55word"));
    converge_then_no_write(fake, |s| {
        s.auth = Some(format!(
            "    auth:\n      basic:\n        username: temporal_admin\n        password: file:{}\n",
            pw.display()
        ))
    })
    .await;
}

#[tokio::test]
async fn security_disabled_or_absent_skips_the_privilege_check() {
    converge_then_no_write(FakeCluster::new(Flavour::Es7, Security::EsDisabled), |_| {}).await;
    converge_then_no_write(FakeCluster::new(Flavour::Os2, Security::OsAbsent), |_| {}).await;
}
