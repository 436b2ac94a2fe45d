//! Loaders for alert rules (real Prometheus from scripts/dev-services) and dashboards (Grafana
//! contract tests with wiremock; a real Grafana when TB_GRAFANA_URL is set).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use temporal_bootstrap::config::GrafanaConfig;
use temporal_bootstrap::observability::grafana::{self, Grafana};
use temporal_bootstrap::reconcile::Action;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A variable the test needs. Only tests marked to need it call this (they are ignored without
/// it, see `build.rs`), so a missing one is a failure.
fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
        ),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A minimal valid platform.yaml with the given observability section.
fn config_with(dir: &Path, name: &str, observability: &str) -> PathBuf {
    let base = std::fs::read_to_string(repo().join("examples/local.yaml")).unwrap();
    let cut = base.find("\nobservability:").unwrap();
    let yaml = format!("{}\nobservability:\n{observability}", &base[..cut]).replace(
        "dir: ../.local/pki",
        &format!("dir: {}", dir.join("pki").display()),
    );
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    p
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn alert_rules_load_into_real_prometheus_idempotently_and_report_rejections() {
    let (url, rules_dir) = (
        required("TB_PROMETHEUS_URL"),
        required("TB_PROMETHEUS_RULES_DIR"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config_with(
        tmp.path(),
        "defaults.yaml",
        &format!("  prometheus:\n    url: {url}\n    rules_dir: {rules_dir}\n    reload: true\n"),
    );
    let cfg = cfg.to_str().unwrap();
    let ours = [
        "temporal-bootstrap.yaml",
        "temporal-capacity.yaml",
        "temporal-server.yaml",
        "temporal-workloads.yaml",
    ];
    for f in ours {
        let _ = std::fs::remove_file(Path::new(&rules_dir).join(f));
    }

    // First apply creates the four files and Prometheus reports the groups.
    let out = run(&[
        "apply",
        "-f",
        cfg,
        "--only",
        "alert-rules",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["steps"][0]["status"], "applied");
    assert_eq!(doc["steps"][0]["changes"].as_array().unwrap().len(), 4);
    let rules: Value = reqwest::blocking_get(&format!("{url}/api/v1/rules"));
    let groups: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "temporal-bootstrap",
        "temporal-capacity",
        "temporal-server",
        "temporal-workloads",
    ] {
        assert!(groups.contains(&g), "group {g} not loaded: {groups:?}");
    }
    let mtimes: Vec<_> = ours
        .iter()
        .map(|f| {
            std::fs::metadata(Path::new(&rules_dir).join(f))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();

    // Second apply: nothing pending, no file rewritten.
    let out = run(&[
        "apply",
        "-f",
        cfg,
        "--only",
        "alert-rules",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["steps"][0]["status"], "up-to-date", "{doc}");
    let again: Vec<_> = ours
        .iter()
        .map(|f| {
            std::fs::metadata(Path::new(&rules_dir).join(f))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(mtimes, again, "a converged apply rewrote rule files");

    // Threshold overrides reach the loaded rules.
    let cfg2 = config_with(
        tmp.path(),
        "tighter-slo.yaml",
        &format!(
            "  prometheus:\n    url: {url}\n    rules_dir: {rules_dir}\n  slo:\n    schedule_to_start_warning: 150ms\n    schedule_to_start_critical: 400ms\n"
        ),
    );
    let out = run(&[
        "apply",
        "-f",
        cfg2.to_str().unwrap(),
        "--only",
        "alert-rules",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rules: Value = reqwest::blocking_get(&format!("{url}/api/v1/rules"));
    assert!(
        rules.to_string().contains("> 150 / 1000"),
        "the 150ms warning threshold is not loaded"
    );

    // A rule file Prometheus rejects: the step fails with Prometheus' own error, exit 1.
    let bogus = Path::new(&rules_dir).join("zz-bogus-test.yaml");
    std::fs::write(
        &bogus,
        "groups:\n  - name: bogus\n    rules:\n      - alert: Broken\n        expr: rate(\n",
    )
    .unwrap();
    let out = run(&["apply", "-f", cfg, "--only", "alert-rules"]);
    std::fs::remove_file(&bogus).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Prometheus rejected the reload"),
        "{}",
        text(&out)
    );
    // And recovers once the bad file is gone.
    let out = run(&["apply", "-f", cfg, "--only", "alert-rules"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Tiny blocking GET for assertions (the tests are synchronous).
mod reqwest {
    pub fn blocking_get(url: &str) -> serde_json::Value {
        let out = std::process::Command::new("curl")
            .args(["-sf", url])
            .output()
            .expect("curl runs");
        serde_json::from_slice(&out.stdout).expect("JSON from Prometheus")
    }
}

// ---------------------------------------------------------------------------------------------
// Grafana contract tests (Grafana HTTP API shapes: folders, dashboards/uid, dashboards/db)
// ---------------------------------------------------------------------------------------------

const TOKEN_ENV: &str = "TB_TEST_GRAFANA_TOKEN";
const TOKEN: &str = "glsa_contract_test_token_9f8e7d";

fn grafana_cfg(url: &str) -> GrafanaConfig {
    // SAFETY (test only): every test sets the same value, so concurrent tests agree.
    unsafe { std::env::set_var(TOKEN_ENV, TOKEN) };
    serde_json::from_value(
        json!({"url": url, "token": format!("env:{TOKEN_ENV}"), "folder": "Temporal"}),
    )
    .unwrap()
}

async fn mount_common(server: &MockServer, folder_exists: bool) {
    let folders = if folder_exists {
        json!([{"id": 7, "uid": "tb-temporal", "title": "Temporal"}])
    } else {
        json!([])
    };
    Mock::given(method("GET"))
        .and(path("/api/folders"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(folders))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/datasources"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!([{"id": 1, "uid": "prom", "name": "Prometheus", "type": "prometheus"}]),
        ))
        .mount(server)
        .await;
}

/// What Grafana returns for a dashboard we uploaded (it adds id and version).
fn stored(d: &grafana::Desired, edited: bool) -> Value {
    let mut dash = d.json.clone();
    dash["id"] = json!(42);
    dash["version"] = json!(3);
    dash["temporalBootstrap"] = json!({"sha256": d.sha256});
    if edited {
        dash["title"] = json!("Edited by someone in the UI");
    }
    json!({"dashboard": dash, "meta": {"folderUid": "tb-temporal", "version": 3}})
}

#[tokio::test]
async fn grafana_fresh_install_creates_folder_and_every_dashboard() {
    let server = MockServer::start().await;
    mount_common(&server, false).await;
    Mock::given(method("GET"))
        .and(path_regex_dash())
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"message": "Dashboard not found"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/folders"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 7, "uid": "tb-temporal", "title": "Temporal"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/dashboards/db"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": 42, "uid": "x", "url": "/d/x", "status": "success", "version": 1}),
        ))
        .expect(5)
        .mount(&server)
        .await;

    let cfg = grafana_cfg(&server.uri());
    let g = Grafana::new(&cfg).unwrap();
    let plan = g.plan(false).await.unwrap();
    assert_eq!(
        plan.iter().filter(|c| c.action == Action::Create).count(),
        6,
        "{plan:?}"
    );
    g.apply(false, &plan).await.unwrap();

    let posted: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/dashboards/db")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(posted.len(), 5);
    for body in posted {
        assert_eq!(body["folderUid"], "tb-temporal");
        assert!(
            body["dashboard"]["temporalBootstrap"]["sha256"]
                .as_str()
                .unwrap()
                .len()
                == 64,
            "checksum marker recorded"
        );
        assert_eq!(body["dashboard"]["id"], Value::Null);
    }
}

fn path_regex_dash() -> wiremock::matchers::PathRegexMatcher {
    wiremock::matchers::path_regex(r"^/api/dashboards/uid/.+$")
}

#[tokio::test]
async fn grafana_converged_run_posts_nothing_and_edits_are_never_clobbered_without_force() {
    let desired = grafana::desired().unwrap();
    let server = MockServer::start().await;
    mount_common(&server, true).await;
    for (i, d) in desired.iter().enumerate() {
        // The first dashboard was edited in the UI; the others are as we uploaded them.
        Mock::given(method("GET"))
            .and(path(format!("/api/dashboards/uid/{}", d.uid)))
            .respond_with(ResponseTemplate::new(200).set_body_json(stored(d, i == 0)))
            .mount(&server)
            .await;
    }
    let cfg = grafana_cfg(&server.uri());
    let g = Grafana::new(&cfg).unwrap();

    let plan = g.plan(false).await.unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(plan[0].action, Action::Drift);
    assert!(plan[0].detail.contains("edited in Grafana") && plan[0].detail.contains("--force"));
    g.apply(false, &plan).await.unwrap();
    assert!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| r.method.as_str() == "GET"),
        "no write without --force"
    );

    Mock::given(method("POST"))
        .and(path("/api/dashboards/db"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success"})))
        .expect(1)
        .mount(&server)
        .await;
    let forced = g.plan(true).await.unwrap();
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0].action, Action::Update);
    g.apply(true, &forced).await.unwrap();
}

#[tokio::test]
async fn grafana_auth_failure_is_clear_and_never_shows_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "invalid API key"})),
        )
        .mount(&server)
        .await;
    let cfg = grafana_cfg(&server.uri());
    let err = Grafana::new(&cfg)
        .unwrap()
        .plan(false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused the token") && err.contains("observability.grafana.token"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
}

#[tokio::test]
async fn grafana_missing_datasource_is_reported() {
    let desired = grafana::desired().unwrap();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/folders"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"id": 7, "uid": "tb-temporal", "title": "Temporal"}])),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/datasources"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    for d in &desired {
        Mock::given(method("GET"))
            .and(path(format!("/api/dashboards/uid/{}", d.uid)))
            .respond_with(ResponseTemplate::new(200).set_body_json(stored(d, false)))
            .mount(&server)
            .await;
    }
    let cfg = grafana_cfg(&server.uri());
    let plan = Grafana::new(&cfg).unwrap().plan(false).await.unwrap();
    assert_eq!(plan.len(), 1);
    assert!(
        plan[0].resource.contains("datasource") && plan[0].action == Action::Drift,
        "{plan:?}"
    );
}

/// Against a real Grafana: TB_GRAFANA_URL and TB_GRAFANA_TOKEN (a service account token).
#[tokio::test]
#[cfg_attr(
    not(tb_grafana),
    ignore = "needs a real Grafana: TB_GRAFANA_URL and TB_GRAFANA_TOKEN (none runs in CI)"
)]
async fn real_grafana_when_configured() {
    let (url, token) = (required("TB_GRAFANA_URL"), required("TB_GRAFANA_TOKEN"));
    let cfg: GrafanaConfig = serde_json::from_value(
        json!({"url": url, "token": "env:TB_GRAFANA_TOKEN", "folder": "Temporal bootstrap test"}),
    )
    .unwrap();
    let _ = token;
    let g = Grafana::new(&cfg).unwrap();
    let plan = g.plan(false).await.unwrap();
    g.apply(false, &plan).await.unwrap();
    let again = g.plan(false).await.unwrap();
    assert!(
        again
            .iter()
            .all(|c| c.action == Action::Drift && c.resource.contains("datasource")),
        "not converged: {again:?}"
    );
}
