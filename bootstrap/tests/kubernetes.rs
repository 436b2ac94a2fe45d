//! Contract tests of `pki.kubernetes_secrets`: the `certificates` step publishing certificates
//! into Kubernetes Secrets and restoring the CA from them.
//!
//! No Kubernetes API server runs on this machine or in CI, so these tests run the real binary
//! against `FakeApi`, a wiremock responder that answers the core/v1 Secret calls with the
//! request and response shapes documented in the Kubernetes API reference: the Secret object
//! (`metadata.resourceVersion`, `type`, base64 `data`), `Status` objects for 401 Unauthorized,
//! 403 Forbidden, 404 NotFound, 409 AlreadyExists / Conflict (stale `resourceVersion`) and 422
//! Invalid. It also refuses requests a real server refuses (a `kubernetes.io/tls` Secret without
//! `tls.crt`/`tls.key`, a type change, a namespace mismatch, non-base64 data, a `resourceVersion`
//! on create, a missing bearer token), so it checks what we send, not only what we parse.
//!
//! `real_api_server_*` runs against a real API server when `TB_KUBE_API_URL` is set (see its doc
//! comment) at build time (cfg `tb_kube_api`, see `build.rs`), and is listed as ignored
//! otherwise, also in CI (no API server exists there).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use temporal_bootstrap::config::load_str;
use temporal_bootstrap::pki;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-sa-token-DO-NOT-LOG.c2lnbmF0dXJl";
const NS: &str = "temporal";

// ------------------------------------------------------------------------------------------------
// The fake API server
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    /// The Secret's name (from the URL, or the body of a POST).
    name: String,
    status: u16,
    /// `metadata.resourceVersion` sent in the body (PUT).
    sent_rv: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// (namespace, name) -> stored Secret object.
    secrets: BTreeMap<(String, String), Value>,
    next_rv: u64,
    calls: Vec<Call>,
    /// (verb, name or "*") pairs RBAC refuses.
    denied: Vec<(&'static str, String)>,
    /// Names whose next PUT loses a race: another writer updates the object first.
    conflict_on_put: Vec<String>,
    /// Names whose next POST loses a race: another writer creates the object first.
    race_on_create: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: String, name: Option<&str>) -> ResponseTemplate {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    if let Some(n) = name {
        body["details"] = json!({"name": n, "kind": "secrets"});
    }
    ResponseTemplate::new(code).set_body_json(body)
}

impl FakeApi {
    fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
    fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method != "GET")
            .collect()
    }
    fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }
    fn secret(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .secrets
            .get(&(NS.to_string(), name.to_string()))
            .cloned()
    }
    fn data(&self, name: &str, key: &str) -> Vec<u8> {
        let s = self
            .secret(name)
            .unwrap_or_else(|| panic!("no Secret {name}"));
        let b64 = s["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("Secret {name} has no {key}"));
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
    fn remove(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .secrets
            .remove(&(NS.to_string(), name.to_string()));
    }
    fn deny(&self, verb: &'static str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .denied
            .push((verb, name.to_string()));
    }

    fn stored(st: &mut State, mut obj: Value, ns: &str) -> Value {
        st.next_rv += 1;
        let rv = (1000 + st.next_rv).to_string();
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("namespace".into(), json!(ns));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.entry("uid")
            .or_insert(json!(format!("6f1b7c0e-0000-4000-8000-{:012}", st.next_rv)));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-11-26T10:00:00Z"));
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
        obj
    }

    /// What the API server's validation says about a Secret body (None: valid).
    fn invalid(obj: &Value, name: &str) -> Option<ResponseTemplate> {
        if obj["kind"] != "Secret" || obj["apiVersion"] != "v1" {
            return Some(status(
                400,
                "BadRequest",
                "the object provided is unrecognized (must be of type Secret)".into(),
                None,
            ));
        }
        if let Some(d) = obj.get("data").and_then(Value::as_object) {
            for v in d.values() {
                if v.as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .is_none()
                {
                    return Some(status(
                        400,
                        "BadRequest",
                        "illegal base64 data".into(),
                        None,
                    ));
                }
            }
        }
        if obj["type"] == "kubernetes.io/tls" {
            for k in ["tls.crt", "tls.key"] {
                if obj["data"].get(k).is_none() {
                    return Some(status(
                        422,
                        "Invalid",
                        format!("Secret \"{name}\" is invalid: data[{k}]: Required value"),
                        Some(name),
                    ));
                }
            }
        }
        None
    }
}

impl Respond for FakeApi {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let sent_rv = body["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let mut st = self.state.lock().unwrap();
        let name = path
            .rsplit_once("/secrets/")
            .map(|(_, n)| n.to_string())
            .or_else(|| body["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        let resp = self.answer(&mut st, &method, &path, req, body);
        // The status code of a ResponseTemplate is not readable back; record it from a probe.
        let code = resp.1;
        st.calls.push(Call {
            method,
            path,
            name,
            status: code,
            sent_rv,
        });
        resp.0
    }
}

impl FakeApi {
    fn answer(
        &self,
        st: &mut State,
        method: &str,
        path: &str,
        req: &Request,
        body: Value,
    ) -> (ResponseTemplate, u16) {
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return (
                status(401, "Unauthorized", "Unauthorized".into(), None),
                401,
            );
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (ns, name) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, "secrets"] => (ns.to_string(), None),
            ["api", "v1", "namespaces", ns, "secrets", n] => (ns.to_string(), Some(n.to_string())),
            _ => {
                return (
                    status(
                        404,
                        "NotFound",
                        "the server could not find the requested resource".into(),
                        None,
                    ),
                    404,
                );
            }
        };
        let verb = match (method, &name) {
            ("GET", Some(_)) => "get",
            ("GET", None) => "list",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "update",
            ("DELETE", Some(_)) => "delete",
            _ => {
                return (
                    status(
                        405,
                        "MethodNotAllowed",
                        format!("{method} is not supported here"),
                        None,
                    ),
                    405,
                );
            }
        };
        let target = name
            .clone()
            .or_else(|| body["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        if st
            .denied
            .iter()
            .any(|(v, n)| *v == verb && (n == "*" || *n == target))
        {
            let what = match &name {
                Some(n) => format!("secrets \"{n}\" is forbidden"),
                None => "secrets is forbidden".into(),
            };
            return (
                status(
                    403,
                    "Forbidden",
                    format!(
                        "{what}: User \"system:serviceaccount:{ns}:temporal-bootstrap\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
                    ),
                    name.as_deref(),
                ),
                403,
            );
        }
        let key = |n: &str| (ns.clone(), n.to_string());
        match verb {
            "get" => {
                let n = name.unwrap_or_default();
                match st.secrets.get(&key(&n)) {
                    Some(obj) => (ResponseTemplate::new(200).set_body_json(obj), 200),
                    None => (
                        status(
                            404,
                            "NotFound",
                            format!("secrets \"{n}\" not found"),
                            Some(&n),
                        ),
                        404,
                    ),
                }
            }
            "create" => {
                if let Some(r) = Self::invalid(&body, &target) {
                    return (r, 400);
                }
                if body["metadata"]["namespace"]
                    .as_str()
                    .is_some_and(|b| b != ns)
                {
                    return (
                        status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request".into(), None),
                        400,
                    );
                }
                if body["metadata"].get("resourceVersion").is_some() {
                    return (
                        status(
                            500,
                            "InternalError",
                            "resourceVersion should not be set on objects to be created".into(),
                            None,
                        ),
                        500,
                    );
                }
                if let Some(i) = st.race_on_create.iter().position(|n| *n == target) {
                    st.race_on_create.remove(i);
                    let other = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": target, "annotations": {"created-by": "someone-else"}},
                        "type": "kubernetes.io/tls",
                        "data": {"tls.crt": "b3RoZXI=", "tls.key": "b3RoZXI="}});
                    let obj = Self::stored(st, other, &ns);
                    st.secrets.insert(key(&target), obj);
                }
                if st.secrets.contains_key(&key(&target)) {
                    return (
                        status(
                            409,
                            "AlreadyExists",
                            format!("secrets \"{target}\" already exists"),
                            Some(&target),
                        ),
                        409,
                    );
                }
                let obj = Self::stored(st, body, &ns);
                st.secrets.insert(key(&target), obj.clone());
                (ResponseTemplate::new(201).set_body_json(obj), 201)
            }
            "delete" => {
                let n = name.unwrap_or_default();
                match st.secrets.remove(&key(&n)) {
                    Some(_) => (
                        ResponseTemplate::new(200).set_body_json(json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "details": {"name": n, "kind": "secrets"}
                        })),
                        200,
                    ),
                    None => (
                        status(
                            404,
                            "NotFound",
                            format!("secrets \"{n}\" not found"),
                            Some(&n),
                        ),
                        404,
                    ),
                }
            }
            "update" => {
                let n = name.unwrap_or_default();
                if let Some(r) = Self::invalid(&body, &n) {
                    return (r, 400);
                }
                if body["metadata"]["name"].as_str() != Some(n.as_str()) {
                    return (
                        status(
                            400,
                            "BadRequest",
                            "the name of the object does not match the name on the URL".into(),
                            None,
                        ),
                        400,
                    );
                }
                if let Some(i) = st.conflict_on_put.iter().position(|x| *x == n) {
                    st.conflict_on_put.remove(i);
                    // Another writer (e.g. an operator adding an annotation) updates it first.
                    if let Some(mut cur) = st.secrets.get(&key(&n)).cloned() {
                        cur["metadata"]["annotations"] = json!({"touched-by": "another-writer"});
                        let obj = Self::stored(st, cur, &ns);
                        st.secrets.insert(key(&n), obj);
                    }
                }
                let Some(cur) = st.secrets.get(&key(&n)).cloned() else {
                    return (
                        status(
                            404,
                            "NotFound",
                            format!("secrets \"{n}\" not found"),
                            Some(&n),
                        ),
                        404,
                    );
                };
                if body["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                    return (
                        status(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on secrets \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                            Some(&n),
                        ),
                        409,
                    );
                }
                if body["type"] != cur["type"] {
                    return (
                        status(
                            422,
                            "Invalid",
                            format!(
                                "Secret \"{n}\" is invalid: type: Invalid value: \"{}\": field is immutable",
                                body["type"].as_str().unwrap_or_default()
                            ),
                            Some(&n),
                        ),
                        422,
                    );
                }
                let obj = Self::stored(st, body, &ns);
                st.secrets.insert(key(&n), obj.clone());
                (ResponseTemplate::new(200).set_body_json(obj), 200)
            }
            _ => (
                status(
                    403,
                    "Forbidden",
                    format!("{verb} is not granted to the bootstrap"),
                    None,
                ),
                403,
            ),
        }
    }
}

async fn start(fake: &FakeApi) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    server
}

// ------------------------------------------------------------------------------------------------
// Setup: a platform.yaml with pki + kubernetes_secrets, the CLI
// ------------------------------------------------------------------------------------------------

const PLATFORM: &str = r#"
cluster:
  name: k8s-test
  temporal_version: "1.31.2"
  environment: development
  frontend:
    address: temporal-frontend.temporal.svc:7233
capacity:
  peak_workflow_starts_per_second: 5
  activities_per_workflow: 4
  average_workflow_duration: 10m
persistence:
  postgres:
    host: 127.0.0.1
    password: env:TEMPORAL_DB_PASSWORD
visibility:
  postgres:
    database: temporal_visibility
namespaces:
  - name: demo
    retention: 3d
pki:
  dir: pki
  ca: { validity: 1y }
  renew_before: 7d
  frontend:
    dns_names: [FRONTEND_NAMES]
  internode:
    dns_names: [temporal-internode.temporal.svc]
  clients:
    - name: temporal-bootstrap
    - name: payments
  kubernetes_secrets:
    namespace: temporal
    ca: temporal-tls-ca
    frontend: temporal-tls-frontend
    internode: temporal-tls-internode
    clients: { temporal-bootstrap: temporal-tls-bootstrap, payments: temporal-tls-payments }
"#;

const ALL: [&str; 5] = [
    "temporal-tls-ca",
    "temporal-tls-frontend",
    "temporal-tls-internode",
    "temporal-tls-bootstrap",
    "temporal-tls-payments",
];

struct Setup {
    dir: tempfile::TempDir,
    /// The fake's URL; `None`: use the caller's TB_KUBE_* environment (real API server).
    url: Option<String>,
}

impl Setup {
    fn new(server: &MockServer) -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
            url: Some(server.uri()),
        };
        s.write_config("temporal-frontend.temporal.svc");
        std::fs::write(s.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        s
    }
    fn write_config(&self, frontend_names: &str) {
        std::fs::write(
            self.file(),
            PLATFORM.replace("FRONTEND_NAMES", frontend_names),
        )
        .unwrap();
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("platform.yaml")
    }
    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }
    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.pki().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Runs the binary with `args` (`-f platform.yaml -vvv` added) and checks that no key material
    /// and no token appears in its output.
    fn cli(&self, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("-f")
            .arg(self.file())
            .arg("-vvv")
            .env_remove("TEMPORAL_BOOTSTRAP_LOG")
            .env("TEMPORAL_DB_PASSWORD", "unused");
        if let Some(url) = &self.url {
            c.env("TB_KUBE_API_URL", url)
                .env("TB_KUBE_TOKEN_FILE", self.dir.path().join("token"))
                .env_remove("TB_KUBE_CA_FILE")
                .env_remove("KUBERNETES_SERVICE_HOST");
        }
        let o = c.output().unwrap();
        self.assert_no_secrets(&o);
        o
    }

    fn apply(&self) -> Output {
        self.cli(&["apply", "--only", "certificates", "--output", "json"])
    }

    /// No private key (PEM body, any 16-character piece of it, or its base64 as sent in a
    /// Secret) and no token in stdout/stderr.
    fn assert_no_secrets(&self, o: &Output) {
        let text = out_text(o);
        assert!(!text.contains(TOKEN), "token leaked:\n{text}");
        assert!(!text.contains("test-sa-token"), "token leaked:\n{text}");
        assert!(!text.contains("PRIVATE KEY"), "key PEM leaked:\n{text}");
        for key in key_files(&self.pki()) {
            let pem = std::fs::read(&key).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
            for piece in [&b64[..40], &b64[b64.len() / 2..b64.len() / 2 + 40]] {
                assert!(!text.contains(piece), "Secret data leaked:\n{text}");
            }
            let body: String = String::from_utf8_lossy(&pem)
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            for chunk in body.as_bytes().chunks(16).filter(|c| c.len() == 16) {
                let chunk = std::str::from_utf8(chunk).unwrap();
                assert!(
                    !text.contains(chunk),
                    "key material of {} leaked:\n{text}",
                    key.display()
                );
            }
        }
    }
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("clients")] {
        if let Ok(rd) = std::fs::read_dir(&sub) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("-key.pem") {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

fn out_text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out_text(o)))
}

fn step_status(o: &Output) -> String {
    json_out(o)["steps"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn writes_summary(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {} {}", c.method, c.path, c.status))
        .collect()
}

fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

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

#[test]
fn configuration_is_validated() {
    let base = PLATFORM.replace("FRONTEND_NAMES", "temporal-frontend");
    let ok = load_str(&base, "platform.yaml").unwrap();
    let ks = ok.config.pki.unwrap().kubernetes_secrets.unwrap();
    assert_eq!(ks.clients["payments"], "temporal-tls-payments");

    for (from, to, path, want) in [
        (
            "namespace: temporal",
            "namespace: Temporal_NS",
            "pki.kubernetes_secrets.namespace",
            "DNS-1123 label",
        ),
        (
            "frontend: temporal-tls-frontend",
            "frontend: temporal_tls",
            "pki.kubernetes_secrets.frontend",
            "DNS-1123 subdomain",
        ),
        (
            "internode: temporal-tls-internode",
            "internode: temporal-tls-frontend",
            "pki.kubernetes_secrets.internode",
            "already used by pki.kubernetes_secrets.frontend",
        ),
        (
            "payments: temporal-tls-payments",
            "payments: temporal-tls-payments, billing: temporal-tls-billing",
            "pki.kubernetes_secrets.clients.billing",
            "not in pki.clients",
        ),
        (
            "    ca: temporal-tls-ca\n",
            "    ca: temporal-tls-ca\n    ca_key: x\n",
            "",
            "ca_key",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let text = base.replace(from, to);
        let err = load_str(&text, "platform.yaml").unwrap_err().to_string();
        assert!(
            err.contains(path) && err.contains(want),
            "{from} -> {to}: {err}"
        );
    }
    // A client without a Secret is allowed, with a warning.
    let text = base.replace(", payments: temporal-tls-payments", "");
    let loaded = load_str(&text, "platform.yaml").unwrap();
    let w = format!("{:?}", loaded.warnings);
    assert!(w.contains("`payments` has no entry"), "{w}");
}

#[test]
fn without_an_api_server_the_step_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(
        &file,
        PLATFORM.replace("FRONTEND_NAMES", "temporal-frontend"),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["apply", "--only", "certificates", "-f"])
        .arg(&file)
        .env_remove("TB_KUBE_API_URL")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("TEMPORAL_DB_PASSWORD", "unused")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    let text = out_text(&o);
    assert!(
        text.contains("KUBERNETES_SERVICE_HOST is not set") && text.contains("TB_KUBE_API_URL"),
        "{text}"
    );
    // Offline planning never needs the API server.
    let o = Command::new(BIN)
        .args(["plan", "--offline", "--only", "certificates", "-f"])
        .arg(&file)
        .env_remove("TB_KUBE_API_URL")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("TEMPORAL_DB_PASSWORD", "unused")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
}

/// Runs against a real Kubernetes API server when `TB_KUBE_API_URL` is set, e.g.
/// `kubectl proxy --port 8001 & TB_KUBE_API_URL=http://127.0.0.1:8001 cargo test --test kubernetes real_`
/// (or an https URL with `TB_KUBE_TOKEN_FILE` and `TB_KUBE_CA_FILE`). `TB_KUBE_NAMESPACE`
/// (default `default`) must exist; the test writes Secrets named `tb-it-<pid>-<n>-*` there and
/// deletes them at the end. Ignored otherwise (cfg `tb_kube_api`, see `build.rs`), also in CI: no
/// API server exists there. `real_scenario_against_the_fake` runs the same scenario on the fake, so the
/// scenario itself is exercised on every run.
#[tokio::test]
#[cfg_attr(
    not(tb_kube_api),
    ignore = "needs a real Kubernetes API server: TB_KUBE_API_URL (none runs in CI)"
)]
async fn real_api_server_publish_restore_and_converge() {
    assert!(
        std::env::var("TB_KUBE_API_URL").is_ok_and(|u| !u.is_empty()),
        "built with TB_KUBE_API_URL (cfg tb_kube_api) but run without it: real_api_server_publish_restore_and_converge needs TB_KUBE_API_URL (e.g. `kubectl proxy --port 8001` and TB_KUBE_API_URL=http://127.0.0.1:8001)"
    );
    let ns = std::env::var("TB_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    real_scenario(None, ns).await;
}

#[tokio::test]
async fn real_scenario_against_the_fake() {
    let fake = FakeApi::default();
    let server = start(&fake).await;
    real_scenario(Some(server.uri()), "default".into()).await;
    // Cleaned up.
    assert!(fake.state.lock().unwrap().secrets.is_empty());
}

/// `url`: the fake (with the test token); `None`: the caller's TB_KUBE_* environment.
fn client_for(url: Option<&str>) -> temporal_bootstrap::kubernetes::KubeClient {
    match url {
        Some(u) => temporal_bootstrap::kubernetes::KubeClient::with_token(u, Some(TOKEN), None),
        None => temporal_bootstrap::kubernetes::KubeClient::from_env(),
    }
    .unwrap()
}

async fn real_scenario(url: Option<String>, ns: String) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 100_000;
    let prefix = format!("tb-it-{}-{stamp}", std::process::id());
    let names: Vec<String> = ["ca", "frontend", "internode", "bootstrap", "payments"]
        .iter()
        .map(|n| format!("{prefix}-{n}"))
        .collect();
    let s = Setup {
        dir: tempfile::tempdir().unwrap(),
        url: url.clone(),
    };
    std::fs::write(s.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let yaml = PLATFORM
        .replace("FRONTEND_NAMES", "temporal-frontend.temporal.svc")
        .replace("namespace: temporal", &format!("namespace: {ns}"))
        .replace("temporal-tls-bootstrap", &names[3])
        .replace("temporal-tls-payments", &names[4])
        .replace("temporal-tls-ca", &names[0])
        .replace("temporal-tls-frontend", &names[1])
        .replace("temporal-tls-internode", &names[2]);
    std::fs::write(s.file(), yaml).unwrap();
    let (names2, ns2, url2) = (names.clone(), ns.clone(), url.clone());

    let result = tokio::spawn(async move {
        let (names, ns) = (names2, ns2);
        let client = client_for(url2.as_deref());
        let o = s.apply();
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
        let mut rvs = Vec::new();
        for n in &names {
            let secret = client.get_secret(&ns, n).await.unwrap().expect(n);
            assert_eq!(secret.type_, "kubernetes.io/tls");
            assert_eq!(secret.data["ca.crt"], s.read("ca-bundle.pem"));
            rvs.push(secret.resource_version.clone());
        }
        assert_eq!(
            client
                .get_secret(&ns, &names[1])
                .await
                .unwrap()
                .unwrap()
                .data["tls.crt"],
            s.read("frontend.pem")
        );
        // Converged: no write (resourceVersions unchanged).
        let o = s.apply();
        assert_eq!(step_status(&o), "up-to-date", "{}", out_text(&o));
        // Restart: empty pki.dir, CA restored, still no write.
        let ca_key = s.read("ca-key.pem");
        std::fs::remove_dir_all(s.pki()).unwrap();
        let o = s.apply();
        assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
        assert_eq!(s.read("ca-key.pem"), ca_key);
        for (n, rv) in names.iter().zip(&rvs) {
            let now = client.get_secret(&ns, n).await.unwrap().unwrap();
            assert_eq!(&now.resource_version, rv, "{n} was written");
        }
    })
    .await;
    // Clean up whatever happened, then report.
    let client = client_for(url.as_deref());
    for n in &names {
        let _ = client.delete_secret(&ns, n).await;
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The in-cluster path end to end over real TLS: `KUBERNETES_SERVICE_HOST`/`PORT` (an IP, as in a
/// Pod) become `https://IP:PORT`, the server certificate is verified against the CA file, the
/// bearer token is sent. The API server is a minimal HTTP/1.1 server behind tokio-rustls that
/// answers every GET with the documented 404 Status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_configuration_uses_https_with_the_serviceaccount_ca_and_token() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A server certificate for 127.0.0.1 from our own PKI, and an unrelated CA.
    let tmp = tempfile::tempdir().unwrap();
    let issue = |dir: &str| {
        let yaml = format!(
            "{}\npki:\n  dir: {dir}\n  frontend: {{ dns_names: [localhost], ip_addresses: [127.0.0.1] }}\n",
            PLATFORM.split("\npki:").next().unwrap()
        );
        let loaded = load_str(&yaml, "platform.yaml").unwrap();
        pki::Pki::new(loaded.config.pki.as_ref().unwrap(), "api", tmp.path())
            .apply(pki::Policy::CreateMissing)
            .unwrap();
    };
    issue("apiserver");
    issue("other");
    let srv = tmp.path().join("apiserver");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(srv.join("frontend.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(srv.join("frontend-key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_string();
                        let auth = head
                            .lines()
                            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                            .map(|l| l.split_once(':').unwrap().1.trim().to_string())
                            .unwrap_or_default();
                        log.lock().unwrap().push(format!(
                            "{line} auth-ok={}",
                            auth == format!("Bearer {TOKEN}")
                        ));
                        let name = line
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .rsplit('/')
                            .next()
                            .unwrap_or("");
                        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": format!("secrets \"{name}\" not found"),
                            "reason": "NotFound", "details": {"name": name, "kind": "secrets"}, "code": 404})
                        .to_string();
                        let resp = format!(
                            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(
        &file,
        PLATFORM.replace("FRONTEND_NAMES", "temporal-frontend"),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let run = |ca: PathBuf| {
        let mut c = Command::new(BIN);
        c.args(["plan", "--only", "certificates", "--output", "json", "-f"])
            .arg(&file)
            .env_remove("TB_KUBE_API_URL")
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", port.to_string())
            .env("TB_KUBE_TOKEN_FILE", dir.path().join("token"))
            .env("TB_KUBE_CA_FILE", ca)
            .env("TEMPORAL_DB_PASSWORD", "unused");
        c
    };
    let o = tokio::task::spawn_blocking({
        let mut c = run(srv.join("ca.pem"));
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let creates = json_out(&o)["steps"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["action"] == "create" && c["resource"].as_str().unwrap().starts_with("secret ")
        })
        .count();
    assert_eq!(creates, ALL.len());
    let requests = seen.lock().unwrap().clone();
    assert_eq!(
        requests,
        ALL.iter()
            .map(|n| format!("GET {} HTTP/1.1 auth-ok=true", secret_path(n)))
            .collect::<Vec<_>>()
    );

    // An API server certificate from another CA is refused.
    let o = tokio::task::spawn_blocking({
        let mut c = run(tmp.path().join("other/ca.pem"));
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    assert!(
        out_text(&o).to_lowercase().contains("certificate"),
        "{}",
        out_text(&o)
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        ALL.len(),
        "a request got through"
    );
}
