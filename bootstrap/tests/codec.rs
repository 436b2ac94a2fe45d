//! The codec server as users run it: the real binary, real HTTP(S), and (when the dev stack is up)
//! a real Python SDK worker and the real `temporal` CLI against the stack's real Temporal server,
//! both over its frontend mTLS with the stack's client certificate.
//!
//! Tests without external services always run. `python_worker_*` needs TB_PYTHON (with
//! `temporalio` and `cryptography`), TB_TEMPORAL_ADDRESS, TB_TEMPORAL_TLS_CA/CERT/KEY and
//! TB_TEMPORAL_CLI (`scripts/dev-services env`): it is ignored unless the stack is meant to be
//! there (`TB_REPO_LOCAL` or `CI=true` at build time, see `build.rs`), and fails when it runs
//! without them.

#[path = "common/codec_server.rs"]
mod codec_server;
#[path = "common/temporal_cli.rs"]
mod temporal_cli;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const TOKEN_OK: &str = "tok-oncall-7f3a-5e21";
const TOKEN_OTHER: &str = "tok-orders-91c2-b804";
const TOKEN_ENCODER: &str = "tok-encoder-55d0-93aa";
const ORIGIN: &str = "https://ui.example.test";

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

use codec_server::keygen;

/// A platform.yaml with a `codec:` section; `keys`: (id, file name, current).
fn write_config(dir: &Path, port: u16, keys: &[(&str, &str, bool)], extra: &str) -> PathBuf {
    let keys: String = keys
        .iter()
        .map(|(id, file, cur)| {
            format!("    - {{ id: {id}, secret: \"file:{file}\", current: {cur} }}\n")
        })
        .collect();
    let rest = format!(
        r#"  keys:
{keys}  access:
    tokens:
      - {{ name: oncall, token: env:CODEC_TEST_TOKEN_OK, decode: [default] }}
      - {{ name: orders-team, token: env:CODEC_TEST_TOKEN_OTHER, decode: [orders], encode: [orders] }}
      - {{ name: encoder, token: env:CODEC_TEST_TOKEN_ENCODER, encode: [default] }}
{extra}"#
    );
    let text = codec_server::platform_yaml("codec-test", port, ORIGIN, &rest);
    let path = dir.join("platform.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Server {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(config: &Path, scheme: &str, client: reqwest::Client) -> Server {
        let text = std::fs::read_to_string(config).unwrap();
        let port: u16 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("listen: 127.0.0.1:"))
            .unwrap()
            .parse()
            .unwrap();
        let base = format!("{scheme}://localhost:{port}");
        let (child, stderr) = codec_server::spawn_until_healthy(
            Command::new(BIN)
                .args(["--log-format", "json", "codec-server", "-f"])
                .arg(config)
                .env("CODEC_TEST_TOKEN_OK", TOKEN_OK)
                .env("CODEC_TEST_TOKEN_OTHER", TOKEN_OTHER)
                .env("CODEC_TEST_TOKEN_ENCODER", TOKEN_ENCODER),
            &base,
            &client,
        )
        .await;
        Server {
            child,
            base,
            stderr,
            client,
        }
    }

    async fn http(config: &Path) -> Server {
        temporal_bootstrap::ensure_crypto_provider();
        Server::start(config, "http", reqwest::Client::new()).await
    }

    async fn post(
        &self,
        op: &str,
        ns: Option<&str>,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/{op}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(ns) = ns {
            req = req.header("X-Namespace", ns);
        }
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `POST /encode` of plain JSON strings in namespace `default` with the encoder's token,
    /// which must succeed.
    async fn encode_plain(&self, texts: &[&str]) -> Value {
        let (st, enc) = self
            .post(
                "encode",
                Some("default"),
                Some(TOKEN_ENCODER),
                &plain_payloads(texts),
            )
            .await;
        assert_eq!(st, 200, "{enc}");
        enc
    }

    /// The audit lines so far. The server logs a request after answering it, and its stderr is
    /// read by another thread: wait until the count stops growing (at most 2 s) before reading.
    fn audit_lines(&self) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut last = self.audit_lines_now().len();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = self.audit_lines_now().len();
            if now == last || std::time::Instant::now() > deadline {
                break;
            }
            last = now;
        }
        self.audit_lines_now()
    }

    fn audit_lines_now(&self) -> Vec<Value> {
        self.stderr
            .lock()
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "audit")
            .map(|v| v["fields"].clone())
            .collect()
    }
}

fn plain_payloads(texts: &[&str]) -> String {
    let payloads: Vec<Value> = texts
        .iter()
        .map(|t| {
            json!({"metadata": {"encoding": b64(b"json/plain")}, "data": b64(format!("\"{t}\"").as_bytes())})
        })
        .collect();
    json!({ "payloads": payloads }).to_string()
}

fn setup(keys: &[(&str, bool)]) -> (tempfile::TempDir, PathBuf, u16) {
    let dir = tempfile::tempdir().unwrap();
    for (id, _) in keys {
        keygen(&dir.path().join(format!("{id}.key")));
    }
    let port = free_port();
    let files: Vec<(String, String, bool)> = keys
        .iter()
        .map(|(id, cur)| (id.to_string(), format!("{id}.key"), *cur))
        .collect();
    let refs: Vec<(&str, &str, bool)> = files
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    let cfg = write_config(dir.path(), port, &refs, "");
    (dir, cfg, port)
}

#[test]
fn keygen_writes_a_0600_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.key");
    keygen(&p);
    let first = std::fs::read_to_string(&p).unwrap();
    assert_eq!(STANDARD.decode(first.trim()).unwrap().len(), 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = Command::new(BIN)
        .args(["codec", "keygen", "--out"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), first);
}

#[test]
fn bad_codec_configuration_exits_2_without_leaking_the_key() {
    let (dir, cfg, _) = setup(&[("k1", true)]);
    // A 16-byte key.
    std::fs::write(dir.path().join("k1.key"), format!("{}\n", b64(&[7u8; 16]))).unwrap();
    let out = Command::new(BIN)
        .args(["codec-server", "-f"])
        .arg(&cfg)
        .env("CODEC_TEST_TOKEN_OK", "x")
        .env("CODEC_TEST_TOKEN_OTHER", "y")
        .env("CODEC_TEST_TOKEN_ENCODER", "z")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16 bytes"), "{err}");
    assert!(!err.contains(&b64(&[7u8; 16])));
    // A missing token variable names the variable.
    std::fs::remove_file(dir.path().join("k1.key")).unwrap();
    keygen(&dir.path().join("k1.key"));
    let out = Command::new(BIN)
        .args(["codec-server", "-f"])
        .arg(&cfg)
        .env_remove("CODEC_TEST_TOKEN_OK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CODEC_TEST_TOKEN_OK"));
    // Two current keys: a validation error with the field path.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("current: false", "current: true");
    let text = text.replace(
        "keys:\n",
        "keys:\n    - { id: k0, secret: \"file:k1.key\", current: true }\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("codec.keys"));
}

/// Issue 16 item 13: one token shared by two callers, and 1-character tokens, were accepted.
/// Both are refused at start with exit 2, naming the field and never the value.
#[test]
fn short_and_shared_tokens_are_refused_without_printing_them() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    // A server that accepts the tokens would run until killed: wait at most 15 s.
    let run = |ok: &str, other: &str, encoder: &str| {
        let mut child = Command::new(BIN)
            .args(["codec-server", "-f"])
            .arg(&cfg)
            .env("CODEC_TEST_TOKEN_OK", ok)
            .env("CODEC_TEST_TOKEN_OTHER", other)
            .env("CODEC_TEST_TOKEN_ENCODER", encoder)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the server started with these tokens: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let out = run(TOKEN_OK, "x", TOKEN_ENCODER);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("codec.access.tokens[1].token")
            && err.contains("env:CODEC_TEST_TOKEN_OTHER")
            && err.contains("shorter than 16 characters"),
        "{err}"
    );
    let out = run(TOKEN_OK, TOKEN_OTHER, TOKEN_OK);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("codec.access.tokens[2].token")
            && err.contains("same token as codec.access.tokens[0]"),
        "{err}"
    );
    assert!(!err.contains(TOKEN_OK), "{err}");
    // One reference used by two callers: `validate` refuses it too, with the field's position.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("env:CODEC_TEST_TOKEN_ENCODER", "env:CODEC_TEST_TOKEN_OK");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("codec.access.tokens[2].token: `env:CODEC_TEST_TOKEN_OK` is also the token of access.tokens[0]"),
        "{err}"
    );
}

/// Issue 16 item 13: `codec-server` needed a complete platform.yaml; a file with only `codec:`
/// is enough (a complete one still works, as every other test here shows).
#[tokio::test]
async fn the_server_starts_from_a_codec_only_file() {
    let (dir, full, port) = setup(&[("k1", true)]);
    let text = std::fs::read_to_string(&full).unwrap();
    let codec_only = &text[text.find("codec:\n").unwrap()..];
    let cfg = dir.path().join("codec.yaml");
    std::fs::write(&cfg, codec_only).unwrap();
    assert!(codec_only.contains(&format!("listen: 127.0.0.1:{port}")));
    let s = Server::http(&cfg).await;
    let enc = s.encode_plain(&["codec-only"]).await;
    let (st, dec) = s
        .post("decode", Some("default"), Some(TOKEN_OK), &enc.to_string())
        .await;
    assert_eq!(st, 200, "{dec}");
    assert_eq!(dec["payloads"][0]["data"], b64(b"\"codec-only\""));
    drop(s);
    // Errors in a codec-only file keep FILE:LINE:COL and the field path, and exit 2.
    std::fs::write(&cfg, codec_only.replace("current: true", "current: false")).unwrap();
    let out = Command::new(BIN)
        .args(["codec-server", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("codec.yaml:") && err.contains(": codec.keys: exactly one key"),
        "{err}"
    );
}

#[tokio::test]
async fn encode_decode_and_access_rules() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    let s = Server::http(&cfg).await;
    let body = plain_payloads(&["SECRET-MARKER-1", "two"]);

    // 401: no token, bad token, not bearer.
    let (st, v) = s.post("encode", Some("default"), None, &body).await;
    assert_eq!(st, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Authorization"));
    let (st, _) = s
        .post("decode", Some("default"), Some("wrong"), &body)
        .await;
    assert_eq!(st, 401);
    // 403: a namespace not granted; decode right does not grant encode and vice versa.
    let (st, v) = s
        .post("decode", Some("default"), Some(TOKEN_OTHER), &body)
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, _) = s
        .post("encode", Some("default"), Some(TOKEN_OK), &body)
        .await;
    assert_eq!(st, 403);
    // 400: no namespace.
    let (st, _) = s.post("encode", None, Some(TOKEN_ENCODER), &body).await;
    assert_eq!(st, 400);

    // Encode: binary/encrypted with the key id; no plaintext in the result.
    let (st, enc) = s
        .post("encode", Some("default"), Some(TOKEN_ENCODER), &body)
        .await;
    assert_eq!(st, 200, "{enc}");
    let payloads = enc["payloads"].as_array().unwrap();
    assert_eq!(payloads.len(), 2);
    for p in payloads {
        assert_eq!(p["metadata"]["encoding"], b64(b"binary/encrypted"));
        assert_eq!(p["metadata"]["encryption-key-id"], b64(b"k1"));
        let data = STANDARD.decode(p["data"].as_str().unwrap()).unwrap();
        assert!(!String::from_utf8_lossy(&data).contains("SECRET-MARKER"));
    }
    // Decode: the original payloads; a foreign payload in the same request passes through.
    let mut mixed = enc.clone();
    mixed["payloads"]
        .as_array_mut()
        .unwrap()
        .push(json!({"metadata": {"encoding": b64(b"binary/plain")}, "data": b64(b"raw")}));
    let (st, dec) = s
        .post(
            "decode",
            Some("default"),
            Some(TOKEN_OK),
            &mixed.to_string(),
        )
        .await;
    assert_eq!(st, 200, "{dec}");
    let orig: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dec["payloads"][0], orig["payloads"][0]);
    assert_eq!(dec["payloads"][1], orig["payloads"][1]);
    assert_eq!(dec["payloads"][2]["data"], b64(b"raw"));
    // An empty request is fine.
    let (st, v) = s
        .post(
            "decode",
            Some("default"),
            Some(TOKEN_OK),
            "{\"payloads\":[]}",
        )
        .await;
    assert_eq!((st, v), (200, json!({"payloads": []})));

    // Audit: one line per request, outcome and caller, never plaintext or tokens.
    let audit = s.audit_lines();
    assert_eq!(audit.len(), 8, "{audit:?}");
    let outcomes: Vec<&str> = audit
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "unauthenticated",
            "unauthenticated",
            "forbidden",
            "forbidden",
            "bad_request",
            "ok",
            "ok",
            "ok"
        ]
    );
    assert_eq!(audit[5]["caller"], "encoder");
    assert_eq!(audit[5]["operation"], "encode");
    assert_eq!(audit[5]["payloads"], 2);
    assert_eq!(audit[6]["caller"], "oncall");
    assert_eq!(audit[6]["namespace"], "default");
    assert_eq!(audit[6]["payloads"], 3);
    assert_eq!(audit[6]["key_ids"], "k1");
    assert_eq!(audit[2]["caller"], "orders-team");
    let all = s.stderr.lock().unwrap().clone();
    for secret in [
        "SECRET-MARKER",
        TOKEN_OK,
        TOKEN_OTHER,
        TOKEN_ENCODER,
        &b64(b"\"SECRET-MARKER-1\""),
    ] {
        assert!(!all.contains(secret), "`{secret}` leaked into the logs");
    }

    // Metrics: per caller, namespace, operation, outcome; unauthenticated requests carry no namespace.
    let m = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains(r#"temporal_bootstrap_codec_requests_total{caller="oncall",namespace="default",operation="decode",outcome="ok"} 2"#), "{m}");
    assert!(m.contains(r#"temporal_bootstrap_codec_payloads_total{caller="oncall",namespace="default",operation="decode",outcome="ok"} 3"#), "{m}");
    assert!(m.contains(r#"temporal_bootstrap_codec_requests_total{caller="anonymous",namespace="",operation="encode",outcome="unauthenticated"} 1"#), "{m}");
    assert!(m.contains(r#"temporal_bootstrap_codec_requests_total{caller="orders-team",namespace="default",operation="decode",outcome="forbidden"} 1"#), "{m}");
}

#[tokio::test]
async fn malformed_unknown_key_and_tampered_payloads_get_clear_4xx() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    let s = Server::http(&cfg).await;
    let dec = |body: String| {
        let s = &s;
        async move {
            s.post("decode", Some("default"), Some(TOKEN_OK), &body)
                .await
        }
    };
    // A malformed body quoting a secret: the caller sees the parser's message, the audit log does not.
    let (st, v) = dec(json!({"payloads": [{"metadata": "LEAKY-SECRET"}]}).to_string()).await;
    assert_eq!(st, 400, "{v}");
    assert!(!s.stderr.lock().unwrap().contains("LEAKY-SECRET"));
    for (body, needle) in [
        ("not json".to_string(), "proto JSON"),
        ("{\"payload\": []}".to_string(), "proto JSON"),
        (
            json!({"payloads": [{"data": "@@@"}]}).to_string(),
            "payloads[0]: `data` is not valid base64",
        ),
        (
            json!({"payloads": [{"metadata": {"encoding": "%%"}}]}).to_string(),
            "metadata `encoding`",
        ),
    ] {
        let (st, v) = dec(body).await;
        assert_eq!(st, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }

    let enc = s.encode_plain(&["x"]).await;
    // Unknown key id.
    let mut unknown = enc.clone();
    unknown["payloads"][0]["metadata"]["encryption-key-id"] = json!(b64(b"retired-2019"));
    let (st, v) = dec(unknown.to_string()).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown encryption key id `retired-2019`")
    );
    // Tampered ciphertext (one bit of the GCM tag).
    let mut data = STANDARD
        .decode(enc["payloads"][0]["data"].as_str().unwrap())
        .unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    let mut tampered = enc.clone();
    tampered["payloads"][0]["data"] = json!(b64(&data));
    let (st, v) = dec(tampered.to_string()).await;
    assert_eq!(st, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("altered"), "{v}");
    // Too short to hold a nonce and a tag.
    let mut short = enc.clone();
    short["payloads"][0]["data"] = json!(b64(b"0123456789"));
    let (st, v) = dec(short.to_string()).await;
    assert_eq!(st, 422, "{v}");
    // Still serving.
    let (st, _) = dec(enc.to_string()).await;
    assert_eq!(st, 200);
    assert!(
        s.audit_lines()
            .iter()
            .filter(|a| a["outcome"] == "undecryptable")
            .count()
            == 3
    );
}

#[tokio::test]
async fn key_rotation_keeps_old_payloads_decodable() {
    let (dir, cfg, port) = setup(&[("k1", true)]);
    let old = Server::http(&cfg).await.encode_plain(&["from-2025"]).await;
    // Rotate: k2 becomes current, k1 stays for decryption.
    keygen(&dir.path().join("k2.key"));
    write_config(
        dir.path(),
        port,
        &[("k2", "k2.key", true), ("k1", "k1.key", false)],
        "",
    );
    {
        let s = Server::http(&cfg).await;
        let (st, v) = s
            .post("decode", Some("default"), Some(TOKEN_OK), &old.to_string())
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["payloads"][0]["data"], b64(b"\"from-2025\""));
        let new = s.encode_plain(&["from-2026"]).await;
        assert_eq!(
            new["payloads"][0]["metadata"]["encryption-key-id"],
            b64(b"k2")
        );
    }
    // Retiring k1 makes its payloads undecryptable, with an error naming the key.
    write_config(dir.path(), port, &[("k2", "k2.key", true)], "");
    let s = Server::http(&cfg).await;
    let (st, v) = s
        .post("decode", Some("default"), Some(TOKEN_OK), &old.to_string())
        .await;
    assert_eq!(st, 422);
    assert!(v["error"].as_str().unwrap().contains("`k1`"));
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    let s = Server::http(&cfg).await;
    let pre = |origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, format!("{}/decode", s.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,x-namespace",
            )
            .send()
    };
    let ok = pre(ORIGIN).await.unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for needed in [
        "authorization",
        "authorization-extras",
        "content-type",
        "x-namespace",
    ] {
        assert!(allowed.contains(needed));
    }
    let bad = pre("https://evil.example").await.unwrap();
    assert_eq!(bad.status(), 403);
    assert!(bad.headers().get("access-control-allow-origin").is_none());
    // Actual requests from a browser on another origin are refused too.
    let r = s
        .client
        .post(format!("{}/decode", s.base))
        .header("Origin", "https://evil.example")
        .header("X-Namespace", "default")
        .header("Authorization", format!("Bearer {TOKEN_OK}"))
        .body("{\"payloads\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .client
        .post(format!("{}/decode", s.base))
        .header("Origin", ORIGIN)
        .header("X-Namespace", "default")
        .header("Authorization", format!("Bearer {TOKEN_OK}"))
        .body("{\"payloads\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
}

/// `/download`, as the Web UI (2.50+) calls it for a payload in external storage: the same
/// preflight, rights and audit as `/decode`; a storage reference gets the 404 the UI turns into
/// "not configured to download from external storage"; an inline payload is decoded.
#[tokio::test]
async fn download_route_answers_as_the_web_ui_expects() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    let s = Server::http(&cfg).await;
    let route = "download?preserveStorageRefs=true";

    let pre = s
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/{route}", s.base))
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,authorization-extras,content-type,x-namespace",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert!(
        pre.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization-extras")
    );

    let enc = s.encode_plain(&["DOWNLOAD-MARKER"]).await;
    let (st, dec) = s
        .post(route, Some("default"), Some(TOKEN_OK), &enc.to_string())
        .await;
    assert_eq!(st, 200, "{dec}");
    let data = STANDARD
        .decode(dec["payloads"][0]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, b"\"DOWNLOAD-MARKER\"");

    let (st, v) = s
        .post(route, Some("default"), Some(TOKEN_OTHER), &enc.to_string())
        .await;
    assert_eq!(st, 403, "a caller without the decode right: {v}");

    let reference = json!({"payloads": [{"metadata": {
        "encoding": b64(b"json/protobuf"),
        "messageType": b64(b"temporal.api.sdk.v1.ExternalStorageReference")},
        "data": b64(b"{\"driverName\":\"s3\"}")}]});
    let (st, v) = s
        .post(
            route,
            Some("default"),
            Some(TOKEN_OK),
            &reference.to_string(),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("external payload storage"),
        "{v}"
    );

    let audit = s.audit_lines();
    let downloads: Vec<&Value> = audit
        .iter()
        .filter(|l| l["operation"] == "download")
        .collect();
    let outcomes: Vec<&str> = downloads
        .iter()
        .map(|l| l["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "forbidden", "no_external_storage"],
        "{downloads:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|l| l.to_string().contains("DOWNLOAD-MARKER")),
        "payload bytes in the audit"
    );
}

/// The Temporal Proxy's codec contract: every route also under `/{namespace}/` (the CLI's
/// `--codec-endpoint https://codec/{namespace}` templating). The path names the namespace that
/// rights are checked for; a request naming a different one in `X-Namespace` is refused.
#[tokio::test]
async fn namespace_path_routes_as_the_temporal_proxy_serves_them() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    let s = Server::http(&cfg).await;
    let (st, enc) = s
        .post(
            "default/encode",
            None,
            Some(TOKEN_ENCODER),
            &plain_payloads(&["PATH-MARKER"]),
        )
        .await;
    assert_eq!(st, 200, "{enc}");
    for route in ["default/decode", "default/download"] {
        let (st, dec) = s.post(route, None, Some(TOKEN_OK), &enc.to_string()).await;
        assert_eq!(st, 200, "{route}: {dec}");
        let data = STANDARD
            .decode(dec["payloads"][0]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, b"\"PATH-MARKER\"", "{route}");
    }
    // Same namespace in both places: fine. Different: 400, nothing decoded.
    let (st, _) = s
        .post(
            "default/decode",
            Some("default"),
            Some(TOKEN_OK),
            &enc.to_string(),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = s
        .post(
            "orders/decode",
            Some("default"),
            Some(TOKEN_OK),
            &enc.to_string(),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("differs"), "{v}");
    // Rights follow the path's namespace.
    let (st, _) = s
        .post("orders/decode", None, Some(TOKEN_OK), &enc.to_string())
        .await;
    assert_eq!(st, 403);
    // Preflight under a namespace path; unknown paths and methods as on the plain routes.
    let pre = s
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/default/decode", s.base),
        )
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    let (st, _) = s
        .post("default/decrypt", None, Some(TOKEN_OK), &enc.to_string())
        .await;
    assert_eq!(st, 404);
    let get = s
        .client
        .get(format!("{}/default/decode", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let audit = s.audit_lines();
    assert!(
        audit.iter().any(|l| l["operation"] == "decode"
            && l["namespace"] == "orders"
            && l["outcome"] == "forbidden"),
        "{audit:?}"
    );
}

/// Every fresh encryption uses one random nonce of the current key: counted per key in
/// `/metrics` (the 2^32 budget); a payload that was already ours passes through uncounted.
#[tokio::test]
async fn encryptions_are_counted_per_key() {
    let (_dir, cfg, _) = setup(&[("k1", true)]);
    let s = Server::http(&cfg).await;
    let counted = || async {
        let text = s
            .client
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(r#"temporal_bootstrap_codec_encryptions_total{key_id="k1"} "#)
            })
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(counted().await, 0);
    let enc = s.encode_plain(&["a", "b", "c"]).await;
    assert_eq!(counted().await, 3);
    let (st, again) = s
        .post(
            "encode",
            Some("default"),
            Some(TOKEN_ENCODER),
            &enc.to_string(),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(again, enc, "already encrypted payloads pass through");
    assert_eq!(counted().await, 3, "no nonce used for a pass-through");
}

/// HTTPS with a certificate file pair, and JWTs (ES256) verified against a JWKS file.
#[tokio::test]
async fn https_and_jwt_access() {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    temporal_bootstrap::ensure_crypto_provider();

    let (dir, cfg, port) = setup(&[("k1", true)]);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("codec.pem"), ck.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("codec-key.pem"),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let pt = pair.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "idp-1",
        "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..])}]});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let sign = |claims: Value| {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "idp-1"}).to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let msg = format!("{h}.{p}");
        let sig = pair.sign(&rng, msg.as_bytes()).unwrap();
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    write_config(
        dir.path(),
        port,
        &[("k1", "k1.key", true)],
        r#"    jwt:
      jwks_file: jwks.json
      issuer: https://idp.test
      audience: temporal-codec
      caller_claim: email
      rules:
        - { claim: groups, value: payments-oncall, decode: [default] }
        - { claim: groups, value: payments-writers, encode: [default] }
  tls: { cert: codec.pem, key: codec-key.pem }
"#,
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let s = Server::start(&cfg, "https", client).await;

    let claims = |groups: Value, exp: i64| {
        json!({"iss": "https://idp.test", "aud": "temporal-codec", "email": "ana@example.test",
               "groups": groups, "exp": exp})
    };
    let reader = sign(claims(json!(["payments-oncall"]), now + 600));
    let writer = sign(claims(json!(["payments-writers"]), now + 600));
    let expired = sign(claims(
        json!(["payments-oncall", "payments-writers"]),
        now - 3600,
    ));

    let (st, enc) = s
        .post(
            "encode",
            Some("default"),
            Some(&writer),
            &plain_payloads(&["jwt"]),
        )
        .await;
    assert_eq!(st, 200, "{enc}");
    let (st, _) = s
        .post("decode", Some("default"), Some(&writer), &enc.to_string())
        .await;
    assert_eq!(st, 403, "encode right must not grant decode");
    let (st, dec) = s
        .post("decode", Some("default"), Some(&reader), &enc.to_string())
        .await;
    assert_eq!(st, 200);
    assert_eq!(dec["payloads"][0]["data"], b64(b"\"jwt\""));
    let (st, v) = s
        .post("decode", Some("default"), Some(&expired), &enc.to_string())
        .await;
    assert_eq!(st, 401);
    assert!(v["error"].as_str().unwrap().contains("expired"));
    let (st, _) = s
        .post("decode", Some("other-ns"), Some(&reader), &enc.to_string())
        .await;
    assert_eq!(st, 403);
    let audit = s.audit_lines();
    assert_eq!(audit[2]["caller"], "jwt:ana@example.test");
    // Plain HTTP to the HTTPS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

// ---------------------------------------------------------------------------------------------
// A real Python SDK worker, the real Temporal server over mTLS and the real `temporal` CLI.
// ---------------------------------------------------------------------------------------------

struct Stack {
    python: String,
    address: String,
    /// CA bundle, client certificate and key of the stack's mTLS frontend.
    tls: [String; 3],
    cli: String,
}

fn stack() -> Stack {
    const NAMES: [&str; 6] = [
        "TB_PYTHON",
        "TB_TEMPORAL_ADDRESS",
        "TB_TEMPORAL_TLS_CA",
        "TB_TEMPORAL_TLS_CERT",
        "TB_TEMPORAL_TLS_KEY",
        "TB_TEMPORAL_CLI",
    ];
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match NAMES.map(get) {
        [
            Some(python),
            Some(address),
            Some(ca),
            Some(cert),
            Some(key),
            Some(cli),
        ] => {
            let st = Stack {
                python,
                address,
                tls: [ca, cert, key],
                cli,
            };
            // The codec rules below name the `default` namespace; a real cluster has it only
            // when someone registers it.
            let out = Command::new(&st.cli)
                .args([
                    "operator",
                    "namespace",
                    "create",
                    "-n",
                    "default",
                    "--retention",
                    "24h",
                ])
                .args(st.cli_connection())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || err.contains("already"),
                "registering `default`: {err}"
            );
            st
        }
        _ => panic!(
            "{} must be set: run `scripts/dev-services start`, then `eval \"$(scripts/dev-services env)\"`",
            NAMES.join(", ")
        ),
    }
}

impl Stack {
    /// `--address` and the mTLS flags of the `temporal` CLI.
    fn cli_connection(&self) -> Vec<String> {
        let mut args = vec!["--address".to_string(), self.address.clone()];
        args.extend(temporal_cli::tls_flags(&self.tls).map(String::from));
        args
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payload-encryption/python")
}

fn run_worker(st: &Stack, key_files: &str, current: &str, wf: &str, input: &str) {
    let out = Command::new(&st.python)
        .current_dir(example_dir())
        .args([
            "worker.py",
            "--address",
            &st.address,
            "--namespace",
            "default",
            "--tls-ca",
            &st.tls[0],
            "--tls-cert",
            &st.tls[1],
            "--tls-key",
            &st.tls[2],
            "--tls-server-name",
            "localhost",
        ])
        .args(["--workflow-id", wf, "--input", input])
        .env("CODEC_KEY_FILES", key_files)
        .env("CODEC_CURRENT_KEY", current)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "worker failed (does TB_PYTHON have `temporalio` and `cryptography`?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(input));
}

fn show(st: &Stack, wf: &str, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(&st.cli)
        .args(["workflow", "show", "--namespace", "default", "-w", wf])
        .args(st.cli_connection())
        .args(["--command-timeout", "8s"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every payload `data` and metadata value in a proto-JSON history, base64-decoded.
fn decoded_history_bytes(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let (true, Value::String(s)) = (k == "data", x)
                    && let Ok(b) = STANDARD.decode(s)
                {
                    out.push(String::from_utf8_lossy(&b).into_owned());
                }
                decoded_history_bytes(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| decoded_history_bytes(x, out)),
        _ => {}
    }
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn python_worker_history_holds_only_ciphertext_and_the_codec_server_decrypts_it() {
    let st = stack();
    let (dir, cfg, port) = setup(&[("k1", true)]);
    let k1 = dir.path().join("k1.key");
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (wf_a, marker_a) = (format!("codec-a-{run}"), format!("MARKER-A-{run}"));
    let (wf_b, marker_b) = (format!("codec-b-{run}"), format!("MARKER-B-{run}"));

    run_worker(&st, &format!("k1={}", k1.display()), "k1", &wf_a, &marker_a);

    // The server's history: only ciphertext.
    let (ok, json_out, err) = show(&st, &wf_a, &["--output", "json"]);
    assert!(ok, "{err}");
    assert!(!json_out.contains(&marker_a));
    let history: Value = serde_json::from_str(&json_out).unwrap();
    let mut decoded = Vec::new();
    decoded_history_bytes(&history, &mut decoded);
    assert!(
        decoded.len() >= 3,
        "input, activity input/result, workflow result"
    );
    assert!(
        decoded.iter().all(|d| !d.contains(&marker_a)),
        "plaintext in the history"
    );
    assert!(json_out.contains(&b64(b"binary/encrypted")));

    let endpoint = format!("http://127.0.0.1:{port}");
    {
        let s = Server::http(&cfg).await;
        // An allowed token: the CLI prints the plaintext.
        let bearer = format!("Bearer {TOKEN_OK}");
        let (ok, text, err) = show(
            &st,
            &wf_a,
            &["--codec-endpoint", &endpoint, "--codec-auth", &bearer],
        );
        assert!(ok, "{err}");
        assert!(text.contains(&format!("processed: {marker_a}")), "{text}");
        // The CLI's endpoint templating, as the Temporal Proxy documents it: the CLI fills in
        // `{namespace}` and the server serves /default/decode.
        let templated = format!("{endpoint}/{{namespace}}");
        let (ok, text, err) = show(
            &st,
            &wf_a,
            &["--codec-endpoint", &templated, "--codec-auth", &bearer],
        );
        assert!(ok, "{err}");
        assert!(text.contains(&format!("processed: {marker_a}")), "{text}");
        // A token for another namespace: 403, nothing decrypted.
        let bearer = format!("Bearer {TOKEN_OTHER}");
        let (ok, text, err) = show(
            &st,
            &wf_a,
            &["--codec-endpoint", &endpoint, "--codec-auth", &bearer],
        );
        assert!(!ok || !text.contains(&marker_a));
        assert!(!text.contains(&marker_a) && !err.contains(&marker_a));
        let audit = s.audit_lines();
        assert!(
            audit.iter().any(|a| a["caller"] == "oncall"
                && a["outcome"] == "ok"
                && a["namespace"] == "default"
                && a["operation"] == "decode"
                && a["key_ids"] == "k1"),
            "{audit:?}"
        );
        assert!(
            audit.iter().any(|a| a["caller"] == "orders-team"
                && a["outcome"] == "forbidden"
                && a["namespace"] == "default"),
            "{audit:?}"
        );
        assert!(!s.stderr.lock().unwrap().contains(&marker_a));

        // The other direction: what the server encodes, the SDK-side example codec decodes.
        let (code, enc) = s
            .post(
                "encode",
                Some("default"),
                Some(TOKEN_ENCODER),
                &plain_payloads(&[&marker_a]),
            )
            .await;
        assert_eq!(code, 200);
        let script = r#"
import asyncio, json, sys
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from codec import EncryptionCodec
body = json.load(sys.stdin)
ps = [json_format.ParseDict(p, Payload()) for p in body["payloads"]]
out = asyncio.run(EncryptionCodec.from_env().decode(ps))
print(out[0].data.decode())
"#;
        let mut child = Command::new(&st.python)
            .current_dir(example_dir())
            .args(["-c", script])
            .env("CODEC_KEY_FILES", format!("k1={}", k1.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(enc.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("\"{marker_a}\"")
        );
    }

    // Rotation: k2 current on the worker and the server; k1 kept for history.
    let k2 = dir.path().join("k2.key");
    keygen(&k2);
    write_config(
        dir.path(),
        port,
        &[("k2", "k2.key", true), ("k1", "k1.key", false)],
        "",
    );
    run_worker(
        &st,
        &format!("k2={},k1={}", k2.display(), k1.display()),
        "k2",
        &wf_b,
        &marker_b,
    );
    let (_, json_b, _) = show(&st, &wf_b, &["--output", "json"]);
    assert!(json_b.contains(&b64(b"k2")) && !json_b.contains(&marker_b));
    let s = Server::http(&cfg).await;
    let bearer = format!("Bearer {TOKEN_OK}");
    for (wf, marker) in [(&wf_a, &marker_a), (&wf_b, &marker_b)] {
        let (ok, text, err) = show(
            &st,
            wf,
            &["--codec-endpoint", &endpoint, "--codec-auth", &bearer],
        );
        assert!(ok, "{err}");
        assert!(
            text.contains(marker.as_str()),
            "{wf} not decodable after rotation: {text}"
        );
    }
    let audit = s.audit_lines();
    assert!(audit.iter().any(|a| a["key_ids"] == "k1"));
    assert!(audit.iter().any(|a| a["key_ids"] == "k2"));
}
