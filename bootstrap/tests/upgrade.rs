//! `temporal-bootstrap upgrade plan|apply` through the real binary.
//!
//! Offline tests use `--from`; `real_server_*` reads the running version from the real Temporal
//! server of scripts/dev-services over its mTLS HTTP API (TB_TEMPORAL_HTTP_ADDRESS and the
//! TB_TEMPORAL_TLS_* client certificate).
//! The apply orchestration is tested against in-memory fakes in src/upgrade/apply.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"));
    c.env_remove("TEMPORAL_BOOTSTRAP_CONFIG");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives in the workspace")
        .to_path_buf()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The local example at another release, on PostgreSQL visibility (the upgrade path from 1.27
/// predates OpenSearch support, 1.30.1).
fn example(version: &str) -> String {
    let base = std::fs::read_to_string(repo().join("examples/local.yaml")).unwrap();
    let example_version = base
        .lines()
        .find_map(|l| l.trim().strip_prefix("temporal_version: \""))
        .and_then(|rest| rest.split('"').next())
        .expect("examples/local.yaml sets cluster.temporal_version")
        .to_string();
    let base = base.replace(
        &format!("temporal_version: \"{example_version}\""),
        &format!("temporal_version: \"{version}\""),
    );
    // The visibility block ends at the first blank line.
    let start = base
        .find("visibility:\n  elasticsearch:\n")
        .expect("examples/local.yaml has Elasticsearch visibility");
    let end = start
        + base[start..]
            .find("\n\n")
            .expect("blank line after visibility");
    format!(
        "{}visibility:\n  postgres:\n    database: temporal_visibility{}",
        &base[..start],
        &base[end..]
    )
}

/// Drops `cluster.frontend.tls` (offline tests and plaintext addresses).
fn without_tls(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_tls = false;
    for line in text.lines() {
        if line == "    tls:" {
            in_tls = true;
            continue;
        }
        if in_tls && line.starts_with("      ") {
            continue;
        }
        in_tls = false;
        out.push(line);
    }
    out.join("\n") + "\n"
}

fn write(dir: &Path, text: String) -> PathBuf {
    let p = dir.join("platform.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The example (see [`example`]) with a plaintext frontend, after `edit`.
fn config(dir: &Path, version: &str, edit: impl Fn(String) -> String) -> PathBuf {
    write(dir, edit(without_tls(&example(version))))
}

fn run(args: &[&str], file: &Path) -> Output {
    bin()
        .args(args)
        .arg("-f")
        .arg(file)
        .output()
        .expect("binary runs")
}

#[test]
fn plan_1_27_to_1_31_table_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let f = config(dir.path(), "1.27.4", |s| s);
    let out = run(
        &["upgrade", "plan", "--to", "1.31.2", "--from", "1.27.4"],
        &f,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn plan_1_27_to_1_31_json_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let f = config(dir.path(), "1.27.4", |s| s);
    let out = run(
        &[
            "upgrade", "plan", "--to", "1.31.2", "--from", "1.27.4", "--output", "json",
        ],
        &f,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hops: Vec<String> = doc["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}->{} {}/{}/v{}",
                h["from"].as_str().unwrap(),
                h["to"].as_str().unwrap(),
                h["schemas"]["postgres_temporal"].as_str().unwrap(),
                h["schemas"]["postgres_visibility"].as_str().unwrap(),
                h["schemas"]["elasticsearch"]
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            "1.27.4->1.28.4 1.17/1.9/v9",
            "1.28.4->1.29.7 1.18/1.9/v9",
            "1.29.7->1.30.9 1.18/1.13/v13",
            "1.30.9->1.31.2 1.19/1.14/v14"
        ]
    );
    insta::assert_json_snapshot!(doc);
}

#[test]
fn refusals_exit_2_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let f = config(dir.path(), "1.31.2", |s| s);
    let cases: &[(&[&str], &str)] = &[
        (
            &["upgrade", "plan", "--to", "1.30.6", "--from", "1.31.2"],
            "downgrades are refused",
        ),
        (
            &["upgrade", "plan", "--to", "1.27.0", "--from", "1.26.3"],
            "target 1.27.4 instead",
        ),
        (
            &["upgrade", "plan", "--to", "1.24.0", "--from", "1.23.1"],
            "known-broken",
        ),
        (
            &["upgrade", "plan", "--to", "1.31.9", "--from", "1.30.6"],
            "target 1.31.5",
        ),
        (
            &["upgrade", "plan", "--to", "1.30.0", "--from", "1.29.7"],
            "1.30.0 is retracted (the go.temporal.io/server module withdrew it); target 1.30.9 instead",
        ),
        (
            &["upgrade", "plan", "--to", "1.29.5", "--from", "1.28.4"],
            "1.29.5 lacks the authorization security fixes that landed in 1.29.6",
        ),
        (
            &[
                "upgrade", "plan", "--to", "1.32.2", "--from", "1.29.7", "--via", "1.31.1",
            ],
            "1.31.1 lacks the authorization security fixes",
        ),
        (
            &[
                "upgrade", "plan", "--to", "1.32.2", "--from", "1.29.7", "--via", "1.32.1",
            ],
            "--via 1.32.1: an intermediate hop must be on a release line strictly between",
        ),
        (
            &["upgrade", "apply", "--to", "1.30.0", "--from", "1.29.7"],
            "retracted",
        ),
        (
            &["upgrade", "plan", "--to", "1.33.0", "--from", "1.32.2"],
            "not a release this bundle knows",
        ),
        (
            &["upgrade", "plan", "--to", "1.19.0", "--from", "1.18.2"],
            "not a release this bundle knows",
        ),
        (
            &["upgrade", "plan", "--to", "1.21.6", "--from", "1.19.3"],
            "upgrade to 1.20.x with Temporal's own tools first",
        ),
        (
            &["upgrade", "plan", "--to", "latest", "--from", "1.30.6"],
            "--to: `latest` is not a Temporal release",
        ),
        (
            &[
                "upgrade", "plan", "--to", "1.31.2", "--from", "1.30.6", "--soak", "ten",
            ],
            "--soak",
        ),
        (
            &["upgrade", "apply", "--to", "1.30.6", "--from", "1.31.2"],
            "downgrades are refused",
        ),
    ];
    for (args, expect) in cases {
        let out = run(args, &f);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expect), "{args:?}: {}", text(&out));
    }
}

#[test]
fn opensearch_before_1_30_1_fails_the_offline_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let f = config(dir.path(), "1.28.4", |s| {
        s.replace(
            "visibility:\n  postgres:\n    database: temporal_visibility",
            "visibility:\n  elasticsearch:\n    url: https://search.example:9200\n    flavor: opensearch",
        )
    });
    let out = run(
        &["upgrade", "plan", "--to", "1.31.2", "--from", "1.28.4"],
        &f,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("visibility-store") && t.contains("1.29.7"),
        "{t}"
    );
    // The plan is still printed, so the operator sees why.
    assert!(t.contains("temporalio/server:1.30.9"), "{t}");
}

#[test]
fn apply_dry_run_changes_nothing_and_apply_stops_before_any_change_when_the_cluster_is_unreachable()
{
    let dir = tempfile::tempdir().unwrap();
    // A frontend HTTP address where nothing listens: the version check fails before any change.
    let f = config(dir.path(), "1.29.7", |s| {
        s.replace("127.0.0.1:57243", "127.0.0.1:9")
    });
    let out = run(
        &[
            "upgrade",
            "apply",
            "--to",
            "1.31.2",
            "--from",
            "1.29.7",
            "--dry-run",
        ],
        &f,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Dry run: nothing was changed."));
    let out = run(
        &["upgrade", "apply", "--to", "1.31.2", "--from", "1.29.7"],
        &f,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cannot read the running server version"),
        "{}",
        text(&out)
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no state file was written");
}

#[test]
fn without_from_or_http_address_the_plan_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let f = config(dir.path(), "1.29.7", |s| {
        s.lines()
            .filter(|l| !l.trim_start().starts_with("http_address:"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let out = run(&["upgrade", "plan", "--to", "1.31.2"], &f);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("http_address"), "{}", text(&out));
}

#[test]
fn an_unreachable_cluster_is_a_runtime_failure() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    let f = config(dir.path(), "1.29.7", |s| {
        s.replace("127.0.0.1:57243", "127.0.0.1:9")
    });
    let out = run(&["upgrade", "plan", "--to", "1.31.2"], &f);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "cannot read the running server version from http://127.0.0.1:9/api/v1/system-info"
        ),
        "{}",
        text(&out)
    );
}

/// The real server's HTTP API address and the stack's client certificate (CA, cert, key).
fn real_server_http() -> (String, [String; 3]) {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("TB_TEMPORAL_HTTP_ADDRESS"),
        get("TB_TEMPORAL_TLS_CA"),
        get("TB_TEMPORAL_TLS_CERT"),
        get("TB_TEMPORAL_TLS_KEY"),
    ) {
        (Some(a), Some(ca), Some(cert), Some(key)) => (a, [ca, cert, key]),
        _ => panic!(
            "TB_TEMPORAL_HTTP_ADDRESS/TB_TEMPORAL_TLS_CA/TB_TEMPORAL_TLS_CERT/TB_TEMPORAL_TLS_KEY are not set: run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
        ),
    }
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn real_server_version_is_read_over_its_mtls_http_api() {
    let (addr, [ca, cert, key]) = real_server_http();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), {
        let s = example("1.29.7");
        s.replace("127.0.0.1:57243", &addr)
            .replace("ca: ../.local/pki/ca-bundle.pem", &format!("ca: {ca}"))
            .replace(
                "cert: ../.local/pki/clients/temporal-bootstrap.pem",
                &format!("cert: {cert}"),
            )
            .replace(
                "key: ../.local/pki/clients/temporal-bootstrap-key.pem",
                &format!("key: {key}"),
            )
    });
    // 1.20.5 is older than any server this bundle can meet: the refusal names what runs.
    let out = run(&["upgrade", "plan", "--to", "1.20.5"], &f);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    let running = msg
        .split("older than the running ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no running version in: {msg}"))
        .to_string();
    assert!(running.starts_with("1."), "{running}");
    // Planning to what runs: nothing to do, and the JSON says where the version came from.
    let out = run(
        &["upgrade", "plan", "--to", &running, "--output", "json"],
        &f,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["from"], running.as_str());
    assert_eq!(doc["hops"], serde_json::json!([]));
    assert_eq!(
        doc["from_source"]["cluster"],
        format!("https://{addr}/api/v1/system-info")
    );
    // The stack runs the release it was built for.
    if let Ok(release) = std::env::var("TB_TEMPORAL_VERSION") {
        assert_eq!(running, release);
    }
}

#[test]
fn hazards_via_and_insecure_targets_show_in_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let f = config(dir.path(), "1.29.7", |s| s);
    // Through 1.31.2 instead of the line's latest (a mirror without 1.31.5), to the newest.
    let out = run(
        &[
            "upgrade", "plan", "--to", "1.32.2", "--from", "1.29.7", "--via", "1.31.2",
        ],
        &f,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    for hop in [
        "temporalio/server:1.30.9",
        "temporalio/server:1.31.2",
        "temporalio/server:1.32.2",
    ] {
        assert!(t.contains(hop), "{hop}: {t}");
    }
    assert!(!t.contains("1.31.5"), "{t}");
    for issue in ["#9930", "#10358", "#11594"] {
        assert!(
            t.contains(&format!("HAZARD temporalio/temporal{issue}")),
            "{t}"
        );
    }
    // --from contacts nothing: the database check is listed, not run.
    assert!(
        t.contains("visibility-gin-character") && t.contains("--from contacts nothing"),
        "{t}"
    );
    let out = run(
        &[
            "upgrade",
            "plan",
            "--to",
            "1.29.5",
            "--from",
            "1.28.4",
            "--allow-insecure-release",
        ],
        &f,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
