//! Reliability of `temporal-bootstrap apply` against the real local stack (issue 9 item 5):
//! idempotence (a second run writes nothing), crash safety (SIGKILL at ten points of a cold
//! apply, then re-run), concurrent runs, and unreachable dependencies.
//!
//! Environment: the TB_* variables of `scripts/dev-services env` (PostgreSQL admin login, the real
//! Temporal server's mTLS frontend and client certificate, the release's schema folder, OpenSearch,
//! `temporal` CLI). The tests are ignored unless the stack is meant to be there (`TB_REPO_LOCAL` or
//! `CI=true` at build time, see `build.rs`); when they run, a missing variable is a failure.
//! `psql`, `curl` and `openssl` must be on PATH.
//!
//! Every test derives its own configuration from examples/local.yaml: a unique PostgreSQL database
//! and role (brought to the release's real schema), a unique OpenSearch visibility index, unique
//! namespaces, its own temporary `pki.dir` and `rules_dir` (`reload: false`, so the shared
//! Prometheus is never reloaded with rules it does not load). The cluster, namespaces and search
//! attributes steps talk to the stack's real server over mTLS with the stack's client certificate
//! (the fixture's own PKI is issued, checked and left out of the connection). Tests run in
//! parallel.

#[path = "common/attribute_lock.rs"]
mod attribute_lock;
#[path = "common/temporal_cli.rs"]
mod temporal_cli;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const APP_PASSWORD: &str = "reliability-app-pass";

#[derive(Clone)]
struct Env {
    pg_host: String,
    pg_port: u16,
    pg_admin_user: String,
    pg_admin_password: String,
    temporal_address: String,
    /// CA bundle, client certificate and key of the stack's mTLS frontend.
    temporal_tls: [String; 3],
    temporal_cli: String,
    schema_dir: String,
    opensearch_url: String,
}

fn env() -> Env {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    const NAMES: [&str; 11] = [
        "TB_PG_HOST",
        "TB_PG_PORT",
        "TB_PG_ADMIN_USER",
        "TB_PG_ADMIN_PASSWORD",
        "TB_TEMPORAL_ADDRESS",
        "TB_TEMPORAL_TLS_CA",
        "TB_TEMPORAL_TLS_CERT",
        "TB_TEMPORAL_TLS_KEY",
        "TB_TEMPORAL_CLI",
        "TB_TEMPORAL_SCHEMA_DIR",
        "TB_OPENSEARCH_URL",
    ];
    match NAMES.map(get) {
        [
            Some(h),
            Some(p),
            Some(u),
            Some(pw),
            Some(t),
            Some(ca),
            Some(cert),
            Some(key),
            Some(cli),
            Some(schema_dir),
            Some(opensearch_url),
        ] => Env {
            pg_host: h,
            pg_port: p.parse().expect("TB_PG_PORT is a port number"),
            pg_admin_user: u,
            pg_admin_password: pw,
            temporal_address: t,
            temporal_tls: [ca, cert, key],
            temporal_cli: cli,
            schema_dir,
            opensearch_url,
        },
        _ => panic!(
            "{} must be set; run `scripts/dev-services start` and `eval \"$(scripts/dev-services env)\"`",
            NAMES.join("/")
        ),
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test's world: a config file under a temp dir and the unique names it uses.
struct Fixture {
    env: Env,
    dir: tempfile::TempDir,
    db: String,
    /// The OpenSearch visibility index (matches the template pattern temporal_visibility_v1*).
    index: String,
    role: String,
    namespaces: [String; 2],
    /// Every apply may add examples/local.yaml's search attributes to the shared cluster; one
    /// fixture at a time per machine (and none while another test adds attributes).
    _attributes: attribute_lock::AttributeWriter,
}

impl Fixture {
    fn new(env: &Env, tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let p = format!(
            "rel_{tag}_{}_{seq}_{:x}",
            std::process::id(),
            nanos % 0xfffff
        );
        let ns = p.replace('_', "-");
        let f = Fixture {
            env: env.clone(),
            dir: tempfile::tempdir().unwrap(),
            db: format!("{p}_t"),
            index: format!("temporal_visibility_v1_{p}"),
            role: format!("{p}_app"),
            namespaces: [format!("{ns}-a"), format!("{ns}-b")],
            _attributes: attribute_lock::attribute_writer(),
        };
        f.write_config(env.pg_port, &env.temporal_address, "config.yaml");
        f
    }

    /// examples/local.yaml with this fixture's names; `pg_port`/`temporal` allow pointing at
    /// closed ports.
    fn write_config(&self, pg_port: u16, temporal: &str, name: &str) -> PathBuf {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local.yaml");
        let src = std::fs::read_to_string(&example).unwrap();
        let pki = self.dir.path().join("pki");
        let rules = self.dir.path().join("rules");
        let [ca, cert, key] = &self.env.temporal_tls;
        let schema = Path::new(&self.env.schema_dir);
        let replacements: [(&str, String); 18] = [
            ("host: 127.0.0.1\n", format!("host: {}\n", self.env.pg_host)),
            ("port: 55432\n", format!("port: {pg_port}\n")),
            ("address: 127.0.0.1:57233 ", format!("address: {temporal} ")),
            ("ca: ../.local/pki/ca-bundle.pem\n", format!("ca: {ca}\n")),
            (
                "cert: ../.local/pki/clients/temporal-bootstrap.pem\n",
                format!("cert: {cert}\n"),
            ),
            (
                "key: ../.local/pki/clients/temporal-bootstrap-key.pem\n",
                format!("key: {key}\n"),
            ),
            ("database: temporal\n", format!("database: {}\n", self.db)),
            (
                "schema_dir: ../.local/temporal/schema/postgresql/v12\n",
                format!("schema_dir: {}\n", schema.join("postgresql/v12").display()),
            ),
            (
                "url: http://127.0.0.1:59200\n",
                format!("url: {}\n", self.env.opensearch_url),
            ),
            (
                "index: temporal_visibility_v1_dev\n",
                format!("index: {}\n", self.index),
            ),
            (
                "schema_dir: ../.local/temporal/schema/elasticsearch\n",
                format!("schema_dir: {}\n", schema.join("elasticsearch").display()),
            ),
            ("user: temporal\n", format!("user: {}\n", self.role)),
            ("dir: ../.local/pki\n", format!("dir: {}\n", pki.display())),
            (
                "rules_dir: ../.local/prometheus/rules\n",
                format!("rules_dir: {}\n", rules.display()),
            ),
            ("reload: true\n", "reload: false\n".to_string()),
            (
                "- name: demo\n",
                format!("- name: {}\n", self.namespaces[0]),
            ),
            (
                "- name: demo-batch\n",
                format!("- name: {}\n", self.namespaces[1]),
            ),
            (
                "namespace: demo\n",
                format!("namespace: {}\n", self.namespaces[0]),
            ),
        ];
        let mut out = src;
        for (from, to) in replacements {
            assert!(
                out.contains(from),
                "examples/local.yaml no longer contains {from:?}"
            );
            out = out.replace(from, &to);
        }
        let path = self.dir.path().join(name);
        std::fs::write(&path, out).unwrap();
        path
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn command(&self, config: &Path, verbose: bool) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--output").arg("json");
        if verbose {
            c.arg("-v");
        }
        c.arg("apply").arg("--file").arg(config);
        c.env("TEMPORAL_DB_PASSWORD", APP_PASSWORD)
            .env("TB_PG_ADMIN_PASSWORD", &self.env.pg_admin_password)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn apply_file(&self, config: &Path, verbose: bool) -> Run {
        Run::from(self.command(config, verbose).output().unwrap())
    }

    fn apply(&self, verbose: bool) -> Run {
        self.apply_file(&self.config(), verbose)
    }

    fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.env.pg_host)
            .arg("-p")
            .arg(self.env.pg_port.to_string())
            .arg("-U")
            .arg(&self.env.pg_admin_user)
            .arg("-d")
            .arg("postgres")
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", &self.env.pg_admin_password)
            .output()
            .expect("psql on PATH");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn temporal(&self, args: &[&str]) -> Output {
        Command::new(&self.env.temporal_cli)
            .args(args)
            .arg("--address")
            .arg(&self.env.temporal_address)
            .args(temporal_cli::tls_flags(&self.env.temporal_tls))
            .output()
            .expect("TB_TEMPORAL_CLI runs")
    }

    /// What the PostgreSQL side looks like, as a comparable value: role and its password hash,
    /// the database with its oid and owner, its schema version (a drop/recreate, password reset or
    /// schema rewrite shows up), and the visibility index's uuid in OpenSearch.
    fn pg_state(&self) -> String {
        let pg = self.psql(&format!(
            "select coalesce((select rolname || ':' || coalesce(rolpassword, '') from pg_authid where rolname = '{r}'), 'no role') || ' ' || \
             coalesce((select string_agg(datname || ':' || oid || ':' || pg_get_userbyid(datdba), ',' order by datname) from pg_database where datname = '{d}'), 'no db')",
            r = self.role,
            d = self.db,
        ));
        format!("{pg} index:{}", self.index_uuid().unwrap_or_default())
    }

    /// The visibility index's uuid, None when it does not exist.
    fn index_uuid(&self) -> Option<String> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10"])
            .arg(format!(
                "{}/{}/_settings/index.uuid",
                self.env.opensearch_url, self.index
            ))
            .output()
            .expect("curl on PATH");
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[&self.index]["settings"]["index"]["uuid"]
            .as_str()
            .map(str::to_string)
    }

    /// Modification times of every file under the pki and rules dirs.
    fn mtimes(&self) -> BTreeMap<PathBuf, SystemTime> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, SystemTime>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.insert(p.clone(), e.metadata().unwrap().modified().unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.pki(), &mut out);
        walk(&self.dir.path().join("rules"), &mut out);
        out
    }

    /// The end state of a clean run, checked against the services themselves.
    fn assert_converged(&self, why: &str) {
        // OpenSearch: the visibility index exists.
        assert!(
            self.index_uuid().is_some(),
            "{why}: visibility index {} missing",
            self.index
        );
        // PostgreSQL: the role logs in with the configured password and owns the database.
        let db = &self.db;
        let owner = self.psql(&format!(
            "select pg_get_userbyid(datdba) from pg_database where datname = '{db}'"
        ));
        assert_eq!(owner, self.role, "{why}: database {db} owner");
        let login = Command::new("psql")
            .args(["-X", "-A", "-t", "-c", "select current_user"])
            .arg("-h")
            .arg(&self.env.pg_host)
            .arg("-p")
            .arg(self.env.pg_port.to_string())
            .arg("-U")
            .arg(&self.role)
            .arg("-d")
            .arg(db)
            .env("PGPASSWORD", APP_PASSWORD)
            .output()
            .unwrap();
        assert!(
            login.status.success(),
            "{why}: role {} cannot log into {db}: {}",
            self.role,
            String::from_utf8_lossy(&login.stderr)
        );
        // Namespaces: retention, description, and the first one's search attributes.
        for (ns, retention) in [
            (&self.namespaces[0], "259200s"),
            (&self.namespaces[1], "86400s"),
        ] {
            let out = self.temporal(&["operator", "namespace", "describe", "-n", ns, "-o", "json"]);
            assert!(
                out.status.success(),
                "{why}: namespace {ns} describe: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                v["config"]["workflowExecutionRetentionTtl"], retention,
                "{why}: namespace {ns} retention"
            );
            assert_eq!(
                v["namespaceInfo"]["state"], "NAMESPACE_STATE_REGISTERED",
                "{why}: {ns}"
            );
        }
        let out = self.temporal(&[
            "operator",
            "search-attribute",
            "list",
            "-n",
            &self.namespaces[0],
            "-o",
            "json",
        ]);
        assert!(out.status.success(), "{why}: search-attribute list");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (name, ty) in [
            ("CustomerId", "INDEXED_VALUE_TYPE_KEYWORD"),
            ("OrderTotal", "INDEXED_VALUE_TYPE_DOUBLE"),
            ("Priority", "INDEXED_VALUE_TYPE_INT"),
        ] {
            assert_eq!(
                v["customAttributes"][name], ty,
                "{why}: search attribute {name}"
            );
        }
        // Certificates: present, and each leaf verifies against the CA.
        let pki = self.pki();
        for f in ["ca.pem", "ca-key.pem", "ca-bundle.pem", "temporal-tls.yaml"] {
            assert!(pki.join(f).is_file(), "{why}: {f} missing");
        }
        let mut leaves = vec![pki.join("frontend.pem"), pki.join("internode.pem")];
        for e in std::fs::read_dir(pki.join("clients")).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pem")
                && !p.to_string_lossy().ends_with("-key.pem")
            {
                leaves.push(p);
            }
        }
        assert!(
            leaves.len() >= 4,
            "{why}: expected frontend, internode and 2 clients: {leaves:?}"
        );
        for leaf in &leaves {
            let out = Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(pki.join("ca-bundle.pem"))
                .arg(leaf)
                .output()
                .expect("openssl on PATH");
            assert!(
                out.status.success(),
                "{why}: {} does not verify: {}{}",
                leaf.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Rules written.
        let rules = std::fs::read_dir(self.dir.path().join("rules"))
            .unwrap()
            .count();
        assert!(rules > 0, "{why}: no alert rules written");
        // And a further apply changes nothing.
        let run = self.apply(true);
        run.assert_no_change(why);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var("TB_KEEP").is_ok() {
            return;
        }
        for ns in &self.namespaces {
            let _ = self.temporal(&["operator", "namespace", "delete", "-n", ns, "--yes"]);
        }
        let _ = Command::new("psql")
            // One -c per statement: several in one -c run as one transaction, which DROP
            // DATABASE refuses.
            .args(["-X", "-q"])
            .arg("-c")
            .arg(format!(
                "drop database if exists \"{}\" with (force)",
                self.db
            ))
            .arg("-c")
            .arg(format!("drop role if exists \"{}\"", self.role))
            .arg("-h")
            .arg(&self.env.pg_host)
            .arg("-p")
            .arg(self.env.pg_port.to_string())
            .arg("-U")
            .arg(&self.env.pg_admin_user)
            .arg("-d")
            .arg("postgres")
            .env("PGPASSWORD", &self.env.pg_admin_password)
            .output();
        let _ = Command::new("curl")
            .args([
                "-fsS",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-X",
                "DELETE",
            ])
            .arg(format!("{}/{}", self.env.opensearch_url, self.index))
            .output();
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// step -> (status, message)
    fn steps(&self) -> BTreeMap<String, (String, String)> {
        let v: serde_json::Value = serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "apply JSON: {e}\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        });
        v["steps"]
            .as_array()
            .expect("steps array")
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().unwrap().to_string(),
                    (
                        s["status"].as_str().unwrap().to_string(),
                        s["message"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect()
    }

    fn status(&self, step: &str) -> String {
        self.steps()
            .get(step)
            .map(|s| s.0.clone())
            .unwrap_or_else(|| panic!("no step {step} in {}", self.stdout))
    }

    fn mutating_calls(&self) -> usize {
        self.stderr.matches("mutating call").count()
    }

    fn describe(&self) -> String {
        format!(
            "exit {:?}\nsteps {:?}\nstderr tail: {}",
            self.code,
            self.steps(),
            tail(&self.stderr)
        )
    }

    fn assert_ok(&self, why: &str) {
        assert_eq!(self.code, Some(0), "{why}: {}", self.describe());
    }

    /// Exit 0, every step up-to-date/drift/skipped, no mutating Temporal call (needs -v).
    fn assert_no_change(&self, why: &str) {
        self.assert_ok(why);
        for (step, (status, _)) in self.steps() {
            assert!(
                ["up-to-date", "drift", "skipped"].contains(&status.as_str()),
                "{why}: step {step} is {status} on a converged system: {}",
                self.describe()
            );
        }
        assert_eq!(
            self.mutating_calls(),
            0,
            "{why}: mutating Temporal calls:\n{}",
            self.stderr
        );
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn second_apply_writes_nothing() {
    let env = env();
    let fx = Fixture::new(&env, "twice");
    let first = fx.apply(true);
    first.assert_ok("first apply");
    assert!(
        first.mutating_calls() > 0,
        "a cold apply creates namespaces"
    );
    let mtimes = fx.mtimes();
    assert!(mtimes.len() >= 8, "pki and rules files written: {mtimes:?}");
    let pg = fx.pg_state();
    assert!(!pg.contains("no role") && !pg.contains("no db"), "{pg}");

    std::thread::sleep(Duration::from_millis(20)); // a rewrite would show in the mtimes
    let second = fx.apply(true);
    second.assert_no_change("second apply");
    assert_eq!(fx.mtimes(), mtimes, "second apply rewrote files");
    assert_eq!(fx.pg_state(), pg, "second apply changed role/databases");
    fx.assert_converged("after two applies");
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn sigkill_at_ten_points_then_rerun_converges() {
    let env = env();
    // Duration of a clean cold apply, measured on its own fixture.
    let clean = Fixture::new(&env, "kclean");
    let started = Instant::now();
    clean.apply(false).assert_ok("clean cold apply");
    let cold = started.elapsed();
    clean.assert_converged("clean run");
    drop(clean);

    let mut hit = 0;
    for i in 0..10u32 {
        let delay = cold.mul_f64((f64::from(i) + 0.5) / 10.0);
        let fx = Fixture::new(&env, &format!("kill{i}"));
        let mut child = fx.command(&fx.config(), false).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            hit += 1;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let _ = child.wait_with_output();
        let why = format!("kill #{i} after {delay:?} (cold apply {cold:?})");
        fx.apply(false).assert_ok(&format!("{why}: re-run"));
        fx.assert_converged(&why);
    }
    eprintln!("cold apply {cold:?}; {hit}/10 kills hit a running process");
    assert!(hit >= 5, "only {hit}/10 kills landed during the apply");
}

/// Certificates are issued first, then two full applies race on PostgreSQL and Temporal.
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn concurrent_applies_converge() {
    let env = env();
    for round in 0..3 {
        let fx = Fixture::new(&env, &format!("conc{round}"));
        let mut c = fx.command(&fx.config(), false);
        c.args(["--only", "certificates"]);
        Run::from(c.output().unwrap()).assert_ok("certificates first");
        race_and_check(&fx, round);
    }
}

/// Same as above from an empty pki dir: both runs issue the CA at once.
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn concurrent_cold_applies_converge() {
    let env = env();
    for round in 0..3 {
        let fx = Fixture::new(&env, &format!("cold{round}"));
        race_and_check(&fx, round);
    }
}

fn race_and_check(fx: &Fixture, round: usize) {
    let a = fx.command(&fx.config(), false).spawn().unwrap();
    let b = fx.command(&fx.config(), false).spawn().unwrap();
    let runs = [
        Run::from(a.wait_with_output().unwrap()),
        Run::from(b.wait_with_output().unwrap()),
    ];
    let failed: Vec<&Run> = runs.iter().filter(|r| r.code != Some(0)).collect();
    assert!(
        failed.len() < 2,
        "round {round}: both concurrent applies failed:\n{}\n---\n{}",
        runs[0].describe(),
        runs[1].describe()
    );
    for r in failed {
        assert_eq!(
            r.code,
            Some(1),
            "round {round}: a lost race is a runtime failure: {}",
            r.describe()
        );
        let messages: Vec<String> = r
            .steps()
            .into_values()
            .filter(|(s, _)| s == "failed")
            .map(|(_, m)| m)
            .collect();
        assert!(
            messages
                .iter()
                .all(|m| m.contains("lock") || m.contains("concurrent") || m.contains("already")),
            "round {round}: unclear failure of the losing run: {messages:?}"
        );
    }
    fx.apply(false)
        .assert_ok(&format!("round {round}: apply after the race"));
    fx.assert_converged(&format!("round {round}: after two concurrent applies"));
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn postgres_unreachable_fails_its_steps_only() {
    let env = env();
    let fx = Fixture::new(&env, "pgdown");
    let port = closed_port();
    let cfg = fx.write_config(port, &env.temporal_address, "pgdown.yaml");
    let run = fx.apply_file(&cfg, false);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let steps = run.steps();
    let (status, message) = &steps["persistence"];
    assert_eq!(status, "failed");
    assert!(
        message.contains(&format!("{}:{port}", env.pg_host)),
        "persistence error names the host:port: {message}"
    );
    for dependent in ["visibility", "cluster"] {
        assert_eq!(
            run.status(dependent),
            "skipped",
            "{dependent}: {}",
            run.describe()
        );
    }
    for independent in ["certificates", "alert-rules"] {
        assert_eq!(
            run.status(independent),
            "applied",
            "{independent}: {}",
            run.describe()
        );
    }
    assert!(fx.pki().join("ca.pem").is_file());
    assert!(
        run.stderr.contains("persistence"),
        "stderr names the failed step: {}",
        run.stderr
    );
}

/// Namespaces and search attributes depend on the cluster, itself on persistence: they must
/// not run when PostgreSQL is down.
#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn postgres_unreachable_skips_transitive_dependents() {
    let env = env();
    let fx = Fixture::new(&env, "pgdown2");
    let cfg = fx.write_config(closed_port(), &env.temporal_address, "pgdown.yaml");
    let run = fx.apply_file(&cfg, true);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    for dependent in ["visibility", "cluster", "namespaces", "search-attributes"] {
        assert_eq!(
            run.status(dependent),
            "skipped",
            "{dependent}: {}",
            run.describe()
        );
    }
    assert_eq!(run.mutating_calls(), 0, "{}", run.stderr);
}

#[test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
fn temporal_unreachable_fails_cluster_and_skips_namespaces() {
    let env = env();
    let fx = Fixture::new(&env, "tdown");
    let addr = format!("127.0.0.1:{}", closed_port());
    let cfg = fx.write_config(env.pg_port, &addr, "tdown.yaml");
    let run = fx.apply_file(&cfg, false);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let steps = run.steps();
    let (status, message) = &steps["cluster"];
    assert_eq!(status, "failed");
    assert!(
        message.contains(&addr),
        "cluster error names {addr}: {message}"
    );
    assert_eq!(run.status("namespaces"), "skipped", "{}", run.describe());
    // search-attributes depends on namespaces; it is either skipped or fails naming the address.
    let (sa, sa_msg) = &steps["search-attributes"];
    assert!(
        sa == "skipped" || (sa == "failed" && sa_msg.contains(&addr)),
        "search-attributes: {sa} {sa_msg}"
    );
    for independent in ["certificates", "persistence", "visibility", "alert-rules"] {
        assert_eq!(
            run.status(independent),
            "applied",
            "{independent}: {}",
            run.describe()
        );
    }
    assert_eq!(
        fx.pg_state().matches(&fx.role).count(),
        2,
        "role and database created"
    );
    assert!(fx.index_uuid().is_some(), "visibility index created");
}
