//! Upgrade path, drift, race, sizing.

use super::*;

#[tokio::test]
async fn v13_index_gets_exactly_the_missing_fields_and_a_meta_record() {
    let fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    v13_cluster(&fake);
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let step = SearchVisibilityStep::new();

    let pending = plan(&step, &ctx).await.unwrap();
    assert_eq!(
        resources(&pending),
        vec![
            "update index template temporal_visibility_v1_template",
            "update index temporal_visibility_v1_test field TemporalExternalPayloadCount",
            "update index temporal_visibility_v1_test field TemporalExternalPayloadSizeBytes",
            "update index temporal_visibility_v1_test _meta",
        ]
    );
    assert!(
        pending[0]
            .detail
            .contains("mappings.properties.TemporalExternalPayloadCount: missing"),
        "{}",
        pending[0].detail
    );
    assert!(pending[3].detail.contains("was: nothing recorded"));

    apply(&step, &ctx).await.unwrap();
    let reqs = received(&server).await;
    assert_eq!(
        writes(&reqs),
        vec![
            "PUT /_template/temporal_visibility_v1_template",
            "PUT /temporal_visibility_v1_test/_mapping",
            "PUT /temporal_visibility_v1_test/_mapping",
        ],
        "no cluster-setting write (already false), no index creation"
    );
    let add: Value = reqs
        .iter()
        .find(|r| r.url.path().ends_with("/_mapping") && r.method.as_str() == "PUT")
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(
        add,
        json!({"properties": {
            "TemporalExternalPayloadCount": {"type": "long"},
            "TemporalExternalPayloadSizeBytes": {"type": "long"}
        }})
    );
    let before = reqs.len();
    assert!(apply(&step, &ctx).await.unwrap().is_empty());
    assert!(writes(&received(&server).await[before..]).is_empty());
}

#[tokio::test]
async fn drift_is_reported_and_never_written() {
    let fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
    v13_cluster(&fake);
    {
        let mut st = fake.state.lock().unwrap();
        let idx = st.indices.get_mut("temporal_visibility_v1_test").unwrap();
        idx["properties"]["WorkflowType"] = json!({"type": "text"});
        // A custom search attribute Temporal added: not ours, left alone, not drift.
        idx["properties"]["CustomerId"] = json!({"type": "keyword"});
    }
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let step = SearchVisibilityStep::new();
    let done = apply(&step, &ctx).await.unwrap();
    let drift: Vec<&Change> = done.iter().filter(|c| c.action == Action::Drift).collect();
    assert_eq!(drift.len(), 1, "{done:?}");
    assert_eq!(
        drift[0].resource,
        "index temporal_visibility_v1_test field WorkflowType"
    );
    assert!(drift[0].detail.contains("index has {\"type\":\"text\"}"));
    for r in received(&server).await {
        if r.method.as_str() == "PUT" && r.url.path().ends_with("/_mapping") {
            let b: Value = r.body_json().unwrap();
            assert!(
                b.pointer("/properties/WorkflowType").is_none(),
                "a drifted field was written: {b}"
            );
        }
    }
    // Converged apart from the drift: the next plan shows only the drift and nothing is written.
    let before = received(&server).await.len();
    let again = apply(&step, &ctx).await.unwrap();
    assert_eq!(
        resources(&again),
        vec!["drift index temporal_visibility_v1_test field WorkflowType"]
    );
    assert!(writes(&received(&server).await[before..]).is_empty());
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.indices["temporal_visibility_v1_test"]["properties"]["WorkflowType"],
        json!({"type": "text"})
    );
}

#[tokio::test]
async fn index_created_concurrently_is_success() {
    let fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    fake.state.lock().unwrap().race_on_create = true;
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "opensearch").context();
    let step = SearchVisibilityStep::new();
    let done = apply(&step, &ctx)
        .await
        .expect("a lost creation race is not an error");
    assert!(
        resources(&done).contains(&"update index temporal_visibility_v1_test _meta".to_string())
    );
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.indices["temporal_visibility_v1_test"]["_meta"]["temporal_bootstrap"]["schema_version"],
        "v14",
        "the index someone else created still gets our record"
    );
}

#[tokio::test]
async fn shards_from_the_plan_and_configured_replicas_go_into_the_template() {
    let fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    let server = start(&fake).await;
    let mut s = Setup::new(&server.uri(), "elasticsearch");
    s.replicas = Some(2);
    let ctx = s.context();
    let step = SearchVisibilityStep::new().with_primary_shards(3);
    apply(&step, &ctx).await.unwrap();
    let put = received(&server)
        .await
        .into_iter()
        .find(|r| r.method.as_str() == "PUT" && r.url.path().starts_with("/_template/"))
        .unwrap();
    let body: Value = put.body_json().unwrap();
    assert_eq!(body["settings"]["index.number_of_shards"], "3");
    assert_eq!(body["settings"]["index.number_of_replicas"], "2");
    assert!(body["settings"].get("index.auto_expand_replicas").is_none());
    assert_eq!(body["index_patterns"], json!(["temporal_visibility_v1*"]));
    assert_eq!(body["mappings"]["dynamic"], "false");
    // A different shard count later is a template update, reported before it happens.
    let step1 = SearchVisibilityStep::new();
    let pending = plan(&step1, &ctx).await.unwrap();
    assert!(
        pending.iter().any(|c| c
            .detail
            .contains("settings.index.number_of_shards: \"3\" -> \"1\"")),
        "{pending:?}"
    );
}

#[tokio::test]
async fn existing_index_gets_configured_replicas_and_a_shard_change_is_drift() {
    let fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    v13_cluster(&fake);
    let server = start(&fake).await;
    let mut s = Setup::new(&server.uri(), "opensearch");
    s.replicas = Some(1);
    let ctx = s.context();
    // The capacity planner's hook decides the primary shard count at plan time.
    let step = SearchVisibilityStep::new().with_shard_hook(|_ctx| 4);
    assert_eq!(step.primary_shards(&ctx), 4);
    let done = apply(&step, &ctx).await.unwrap();
    let r = resources(&done);
    assert!(
        r.contains(&"drift index temporal_visibility_v1_test primary shards".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(&"update index temporal_visibility_v1_test settings".to_string()),
        "{r:?}"
    );
    let reqs = received(&server).await;
    let put: Value = reqs
        .iter()
        .find(|r| r.method.as_str() == "PUT" && r.url.path().ends_with("/_settings"))
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(
        put,
        json!({"index.auto_expand_replicas": "false", "index.number_of_replicas": "1"})
    );
    let template: Value = reqs
        .iter()
        .find(|r| r.method.as_str() == "PUT" && r.url.path().starts_with("/_template/"))
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(template["settings"]["index.number_of_shards"], "4");
    // Converged apart from the shard drift: no write on the next run.
    let before = reqs.len();
    let again = apply(&step, &ctx).await.unwrap();
    assert_eq!(
        resources(&again),
        vec!["drift index temporal_visibility_v1_test primary shards"]
    );
    assert!(writes(&received(&server).await[before..]).is_empty());
}
