//! The CLI: plan shows pending changes, apply --dry-run writes nothing, secrets stay out of output.

use super::*;

pub(crate) fn cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"));
    c.env_remove("TEMPORAL_BOOTSTRAP_CONFIG")
        .env_remove("TEMPORAL_BOOTSTRAP_LOG")
        .args(args)
        .arg("-f")
        .arg(config);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

pub(crate) fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn cli_plan_shows_pending_changes_and_dry_run_writes_nothing() {
    let mut fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    fake.accept_auth = Some(basic("temporal_admin", "cli-Secret-Pw-42"));
    let server = start(&fake).await;
    let mut s = Setup::new(&server.uri(), "elasticsearch");
    s.auth = Some(
        "    auth:\n      basic:\n        username: temporal_admin\n        password: env:TB_TEST_ES_PASSWORD\n"
            .into(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(&file, s.yaml()).unwrap();
    let env = [("TB_TEST_ES_PASSWORD", "cli-Secret-Pw-42")];

    let o = cli(
        &file,
        &[
            "plan",
            "--only",
            "visibility",
            "--output",
            "json",
            "--detailed-exitcode",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(3), "{}", out_text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let step = &doc["steps"][0];
    assert_eq!(step["step"], "visibility");
    assert_eq!(step["status"], "pending");
    let changes: Vec<String> = step["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["action"].as_str().unwrap(),
                c["resource"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            "update cluster setting action.auto_create_index",
            "create index template temporal_visibility_v1_template",
            "create index temporal_visibility_v1_test",
        ]
    );

    let o = cli(&file, &["apply", "--dry-run", "--only", "visibility"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert!(out_text(&o).contains("pending"), "{}", out_text(&o));
    assert!(
        writes(&received(&server).await).is_empty(),
        "dry-run wrote: {:?}",
        writes(&received(&server).await)
    );

    let o = cli(&file, &["apply", "--only", "visibility", "-vvv"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert!(out_text(&o).contains("applied"), "{}", out_text(&o));
    assert_eq!(writes(&received(&server).await).len(), 3);

    let o = cli(
        &file,
        &["plan", "--only", "visibility", "--detailed-exitcode"],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "converged: {}", out_text(&o));
    assert!(out_text(&o).contains("up-to-date"), "{}", out_text(&o));
}

#[tokio::test]
async fn cli_never_prints_secrets_even_at_trace_level() {
    let password = "cli-Trace-Secret-77";
    let key = "c2VjcmV0LWFwaS1rZXktaWQ6c2VjcmV0LWFwaS1rZXk=";
    for (auth, right) in [
        (
            "    auth:\n      basic:\n        username: temporal_admin\n        password: env:TB_TEST_ES_SECRET\n",
            true,
        ),
        (
            "    auth:\n      basic:\n        username: temporal_admin\n        password: env:TB_TEST_ES_SECRET\n",
            false,
        ),
        (
            "    auth:\n      api_key:\n        key: env:TB_TEST_ES_KEY\n",
            true,
        ),
    ] {
        let mut fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
        fake.accept_auth = Some(if !right {
            basic("temporal_admin", "something-else")
        } else if auth.contains("api_key") {
            format!("ApiKey {key}")
        } else {
            basic("temporal_admin", password)
        });
        fake.echo_auth_on_401 = !right;
        let server = start(&fake).await;
        let mut s = Setup::new(&server.uri(), "elasticsearch");
        s.auth = Some(auth.into());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("platform.yaml");
        std::fs::write(&file, s.yaml()).unwrap();
        let env = [("TB_TEST_ES_SECRET", password), ("TB_TEST_ES_KEY", key)];
        for args in [
            vec!["apply", "--only", "visibility", "-vvv"],
            vec![
                "plan",
                "--only",
                "visibility",
                "-vvv",
                "--log-format",
                "json",
                "--output",
                "json",
            ],
        ] {
            let o = cli(&file, &args, &env);
            let t = out_text(&o);
            assert_eq!(o.status.code(), Some(if right { 0 } else { 1 }), "{t}");
            for secret in [
                password.to_string(),
                key.to_string(),
                basic("temporal_admin", password)
                    .trim_start_matches("Basic ")
                    .to_string(),
            ] {
                assert!(!t.contains(&secret), "{args:?} printed a secret:\n{t}");
            }
        }
    }
}

#[tokio::test]
async fn cli_warns_when_the_detected_flavour_differs_from_the_config() {
    let fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    let server = start(&fake).await;
    let s = Setup::new(&server.uri(), "elasticsearch");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(&file, s.yaml()).unwrap();
    let o = cli(&file, &["plan", "--only", "visibility"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("flavor is `elasticsearch`") && stderr.contains("OpenSearch 2.17.1"),
        "{stderr}"
    );
}
