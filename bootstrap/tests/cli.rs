//! The CLI contract: exit codes, located config errors, help texts, examples, JSON Schema.
//! Runs the real binary; no services needed.

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

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_invalid_config_exits_2_with_line_and_field_path() {
    let dir = repo().join("bootstrap/tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 150,
        "the corpus has {} configs, expected at least 150",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let content = std::fs::read_to_string(f).unwrap();
        let mut lines = content.lines();
        let path = lines
            .next()
            .unwrap()
            .trim_start_matches("# expect-path:")
            .trim()
            .to_string();
        let line: usize = lines
            .next()
            .unwrap()
            .trim_start_matches("# expect-line:")
            .trim()
            .parse()
            .unwrap();
        let out = run(&["validate", "-f", f.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let first = stderr.lines().next().unwrap_or("").to_string();
        let shown_path = if path.is_empty() {
            "(document)".to_string()
        } else {
            path.clone()
        };
        let want = format!("{}:{line}:", f.display());
        // FILE:LINE:COL: a column number follows the line.
        let has_col = first.split_once(&want).is_some_and(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            !digits.is_empty() && rest[digits.len()..].starts_with(": ")
        });
        if out.status.code() != Some(2)
            || !first.contains(&want)
            || !has_col
            || !first.contains(&format!(": {shown_path}: "))
        {
            failures.push(format!(
                "{}: exit {:?}, want line {line} path `{shown_path}`, got: {first}",
                f.display(),
                out.status.code()
            ));
        }
        // Inline secrets in the corpus must never be echoed back.
        for secret in [
            "Sup3rSecret",
            "12345678",
            "glsa_abcdef123456",
            "BEGIN PRIVATE KEY",
        ] {
            if content.contains(secret) && stderr.contains(secret) {
                failures.push(format!(
                    "{}: the secret `{secret}` appears in the error",
                    f.display()
                ));
            }
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{}: wrote to stdout on failure", f.display()));
        }
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            failures.push(format!("{}: panicked: {stderr}", f.display()));
        }
        // No write: `apply` on the same file in an empty directory refuses it (exit 2) and leaves
        // the directory as it was (no pki/, no rendered file, no state file).
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("platform.yaml");
        std::fs::write(&copy, &content).unwrap();
        let out = bin()
            .args(["apply", "-f"])
            .arg(&copy)
            .env_remove("TEMPORAL_BOOTSTRAP_LOG")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        if out.status.code() != Some(2) || left != ["platform.yaml"] {
            failures.push(format!(
                "{}: apply exited {:?} and left {left:?}",
                f.display(),
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn examples_and_init_profiles_validate() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2);
    for f in examples {
        let out = run(&["validate", "-f", f.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            f.display(),
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("OK: "),
            "{}",
            text(&out)
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    for profile in ["local", "production"] {
        let out = run(&["init", "--profile", profile]);
        assert_eq!(out.status.code(), Some(0));
        let yaml = String::from_utf8(out.stdout).unwrap();
        assert!(
            yaml.lines().filter(|l| l.contains("# ")).count() >= 8,
            "{profile} example is commented"
        );
        let f = tmp.path().join(format!("{profile}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        let out = run(&["validate", "-f", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{profile}: {}", text(&out));
    }
}

#[test]
fn production_example_exercises_every_section() {
    let out = run(&["init", "--profile", "production"]);
    let yaml = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "cluster:",
        "capacity:",
        "persistence:\n  postgres:",
        "schema_dir:",
        "visibility:\n  elasticsearch:",
        "tls:",
        "pki:",
        "clients:",
        "namespaces:",
        "search_attributes:",
        "profile: io",
        "profile: cpu",
        "profile: gpu",
        "prometheus:",
        "grafana:",
        "authorization:",
    ] {
        assert!(yaml.contains(needle), "production example lacks `{needle}`");
    }
}

#[test]
fn json_schema_is_committed_and_current() {
    let out = run(&["config-schema"]);
    assert_eq!(out.status.code(), Some(0));
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = repo().join("schemas/platform.schema.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
            .unwrap_or(serde_json::Value::Null);
    assert!(
        generated == committed,
        "schemas/platform.schema.json is stale; regenerate with: cargo run -q -- config-schema > schemas/platform.schema.json"
    );
    // Unknown fields are errors in the schema too.
    assert_eq!(generated["additionalProperties"], serde_json::json!(false));
}

#[test]
fn every_subcommand_has_a_purpose_and_an_example() {
    for sub in [
        "validate",
        "plan",
        "apply",
        "run",
        "status",
        "certs",
        "render",
        "upgrade",
        "init",
        "audit",
        "config-schema",
    ] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example: temporal-bootstrap"),
            "{sub} --help has no example:\n{help}"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_unknown_steps_are_named() {
    let local = repo().join("examples/local.yaml");
    let local = local.to_str().unwrap();
    assert_eq!(run(&["validate"]).status.code(), Some(2), "missing -f");
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    let out = run(&[
        "plan",
        "-f",
        local,
        "--offline",
        "--only",
        "certificates,dns",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    assert!(
        msg.contains("unknown step `dns`") && msg.contains("search-attributes"),
        "{msg}"
    );
    let out = run(&["validate", "-f", "/nonexistent/platform.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cannot read the configuration file"));
}

#[test]
fn plan_lists_steps_in_fixed_order_as_json() {
    let local = repo().join("examples/local.yaml");
    let out = run(&[
        "plan",
        "-f",
        local.to_str().unwrap(),
        "--offline",
        "--output",
        "json",
        "--only",
        "namespaces,certificates,persistence",
    ]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("plan --output json is JSON");
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["certificates", "persistence", "namespaces"]);
}

#[test]
fn secret_values_never_reach_output_or_logs() {
    let local = repo().join("examples/local.yaml");
    let local = local.to_str().unwrap();
    let secret = "zz-very-secret-db-password-31337";
    for args in [
        vec!["validate", "-f", local, "-vvv"],
        vec![
            "plan",
            "-f",
            local,
            "--offline",
            "-vvv",
            "--log-format",
            "json",
        ],
        vec!["plan", "-f", local, "--offline", "--output", "json", "-vvv"],
    ] {
        let out = bin()
            .args(&args)
            .env("TEMPORAL_DB_PASSWORD", secret)
            .env("TB_PG_ADMIN_PASSWORD", secret)
            .output()
            .unwrap();
        assert!(!text(&out).contains(secret), "{args:?} printed the secret");
    }
}

/// `temporal-bootstrap ... | head -1`: a reader that goes away ends the CLI quietly (status 141,
/// as for SIGPIPE), without a panic message, while SIGPIPE itself stays ignored so a socket the
/// peer closed can never kill the process without a word.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Stdio;
    // A pipe whose reading end is closed before the CLI starts: its first write fails (EPIPE)
    // whatever the timing (closing it after spawn raced with a fast child).
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] and fds[1] are open descriptors this test owns; each is used once.
    let write_end = unsafe {
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    };
    let out = bin()
        .args(["init", "--profile", "production"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Issue 16 #11: with `--output json` an invalid config still yields one JSON document on
/// stdout (exit 2) with every issue and its position, for CI pipelines.
#[test]
fn output_json_reports_an_invalid_config_as_json() {
    let f = repo().join("bootstrap/tests/fixtures/invalid/10-bad-cluster-name.yaml");
    for command in ["validate", "plan"] {
        let out = run(&["--output", "json", command, "-f", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{command}: stdout is not JSON ({e}): {}", text(&out)));
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["exit_code"], 2);
        let issue = &doc["issues"][0];
        assert_eq!(issue["path"], "cluster.name", "{doc}");
        assert_eq!(
            (issue["line"].as_u64(), issue["col"].as_u64()),
            (Some(4), Some(3))
        );
        assert!(issue["message"].as_str().unwrap().contains("Prod_EU1"));
    }
}

/// Issue 16 #11: `validate` reports the capacity planner's warnings too, the same as `plan`.
#[test]
fn validate_and_plan_report_the_same_warnings() {
    // A large platform whose storage outgrows one PostgreSQL primary: a planner warning.
    let f = repo().join("examples/fintech-large.yaml");
    let warnings = |args: &[&str]| -> Vec<String> {
        let out = bin()
            .args(args)
            .arg("-f")
            .arg(&f)
            .env("TEMPORAL_DB_PASSWORD", "x")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .map(String::from)
            .collect()
    };
    let from_validate = warnings(&["validate"]);
    let from_plan = warnings(&["plan", "--offline", "--only", "certificates"]);
    assert!(
        from_validate.iter().any(|w| w.contains("capacity.")),
        "{from_validate:#?}"
    );
    assert_eq!(from_validate, from_plan);
    let out = run(&["validate", "-f", f.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} warnings)", from_validate.len())),
        "{stdout}"
    );
}

/// Issue 16 #13: `init --profile production` is documented as showing every section: every
/// top-level section of the JSON schema, and the optional subsections users ask about.
#[test]
fn init_production_shows_every_section() {
    let out = run(&["init", "--profile", "production"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/platform.schema.json")).unwrap(),
    )
    .unwrap();
    for section in schema["properties"].as_object().unwrap().keys() {
        assert!(
            doc.get(section).is_some(),
            "init --profile production lacks `{section}`"
        );
    }
    for (section, sub) in [
        ("capacity", "overrides"),
        ("observability", "alert_thresholds"),
        ("pki", "kubernetes_secrets"),
        ("codec", "limits"),
        ("codec", "tls"),
    ] {
        assert!(
            doc[section].get(sub).is_some(),
            "init --profile production lacks `{section}.{sub}`"
        );
    }
}

/// Runs `cmd`, killing it after `limit` (a hang is a failure, not a stuck CI job).
fn output_within(mut cmd: std::process::Command, limit: std::time::Duration) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Issue 16 #6: devices, FIFOs, oversized and non-UTF-8 files are refused at once with the
/// field or flag named, instead of growing until the kernel kills the process or blocking.
#[test]
fn special_oversized_and_binary_files_are_refused_promptly() {
    let limit = std::time::Duration::from_secs(20);
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("platform.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = tmp.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(16 * 1024 * 1024 + 1)).unwrap();
    let binary = tmp.path().join("binary.yaml");
    std::fs::write(&binary, b"cluster:\n  name: caf\xe9\n").unwrap();
    for (file, needle) in [
        (
            std::path::PathBuf::from("/dev/zero"),
            "is a character device, not a regular file",
        ),
        (fifo.clone(), "is a FIFO, not a regular file"),
        (big.clone(), "larger than 16777216 bytes"),
        (
            binary.clone(),
            "binary.yaml:2:12: (document): the file is not UTF-8 text",
        ),
    ] {
        let mut cmd = bin();
        cmd.args(["validate", "-f"]).arg(&file);
        let out = output_within(cmd, limit);
        assert_eq!(out.status.code(), Some(2), "{file:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{file:?}: {}", text(&out));
    }

    // Secret references to a device: the field is named, the process stays small, exit 1
    // (the configuration is valid; the environment is not what it says).
    let cfg = tmp.path().join("platform.yaml");
    let example = std::fs::read_to_string(repo().join("examples/small-team.yaml")).unwrap();
    let password_line = example
        .lines()
        .find(|l| l.trim_start().starts_with("password: "))
        .unwrap()
        .to_string();
    let indent = &password_line[..password_line.len() - password_line.trim_start().len()];
    std::fs::write(
        &cfg,
        example.replacen(
            &password_line,
            &format!("{indent}password: file:/dev/zero"),
            1,
        ),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["plan", "--only", "persistence", "-f"]).arg(&cfg);
    let out = output_within(cmd, limit);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "persistence.postgres.password: secret file: `/dev/zero` is a character device"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn cluster_authorization_is_checked_and_its_absence_warned() {
    let tmp = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo().join("examples/production.yaml")).unwrap();
    let sources = "    jwt_key_sources:\n      - https://idp.example.com/.well-known/jwks.json\n";
    assert!(
        example.contains(sources),
        "the production example sets cluster.authorization"
    );
    let validate = |name: &str, yaml: &str| {
        let f = tmp.path().join(name);
        std::fs::write(&f, yaml).unwrap();
        let out = run(&["validate", "-f", f.to_str().unwrap()]);
        (out.status.code(), text(&out))
    };

    let start = example.find("  authorization:").unwrap();
    let end = start + example[start..].find("\n\n").unwrap() + 1;
    let (code, out) = validate(
        "off.yaml",
        &format!("{}{}", &example[..start], &example[end..]),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cluster.authorization")
            && out.contains("every client with a valid certificate"),
        "{out}"
    );

    for (name, replacement, field, why) in [
        (
            "empty.yaml",
            "    jwt_key_sources: []\n",
            "cluster.authorization.jwt_key_sources",
            "at least one JWKS URL",
        ),
        (
            "plain.yaml",
            "    jwt_key_sources:\n      - http://idp.example.com/jwks.json\n",
            "cluster.authorization.jwt_key_sources",
            "use https in production",
        ),
    ] {
        let (code, out) = validate(name, &example.replace(sources, replacement));
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(field) && out.contains(why), "{name}: {out}");
    }
}
