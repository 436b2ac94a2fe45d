//! The codec server under attack, as an attacker would do it: the real binary over real TCP on
//! loopback, with raw HTTP/1.1 written by hand so that nothing (a client library's timeouts,
//! retries or header checks) softens the attack.
//!
//! Covered: unauthenticated large bodies (the server's RSS from /proc/PID/status stays bounded),
//! slow headers and bodies (connections are closed after `codec.limits.*_timeout`), the connection
//! cap, header injection into `/metrics` and into audit lines (text and JSON), every refusal being
//! JSON + audited + counted, the CORS preflight of the Web UI, and 10,000 requests with RSS flat.
//! After every attack the `/metrics` scrape goes through `promtool check metrics` (and through a
//! built-in check of the label syntax, which needs no promtool).
//!
//! promtool: /usr/bin/promtool or `promtool` on PATH (the Debian package `prometheus`, installed
//! by `scripts/dev-services start`). Missing, the promtool step fails with the dev stack or
//! CI=true (cfg `tb_stack`, see `build.rs`); elsewhere it says so and the built-in check still
//! runs.
//!
//! Waits are bounded (deadlines of a few seconds over the configured timeouts); no assertion is
//! about speed.

#[path = "common/codec_server.rs"]
mod codec_server;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const TOKEN_OK: &str = "tok-oncall-7f3a-2c9d41e8";
/// The token of the caller named `ops "quoted" \ team` (rights on `orders` only).
const TOKEN_QUOTED: &str = "tok-quoted-91c2-77ab03f5";
const QUOTED_CALLER: &str = r#"ops "quoted" \ team"#;
const ORIGIN: &str = "https://ui.example.test";
/// A namespace header that closes the label value (metrics) or the field (audit) and adds its own.
const INJECTED: &str = r#"x" outcome="ok" status=200 caller="admin"#;
const MIB: usize = 1024 * 1024;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `codec-server` on a complete platform.yaml; `limits` is YAML under `codec.limits`
/// (flow style) or empty for the defaults; `log_format` is `text` or `json`.
fn start(limits: &str, log_format: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    codec_server::keygen(&dir.path().join("k1.key"));
    let port = free_port();
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("  limits: {limits}\n")
    };
    let rest = format!(
        r#"  keys:
    - {{ id: k1, secret: "file:k1.key", current: true }}
  access:
    tokens:
      - {{ name: oncall, token: env:ABUSE_TOKEN_OK, decode: [default], encode: [default] }}
      - {{ name: '{QUOTED_CALLER}', token: env:ABUSE_TOKEN_QUOTED, decode: [orders] }}
{limits}"#
    );
    let text = codec_server::platform_yaml("codec-abuse", port, ORIGIN, &rest);
    let cfg = dir.path().join("platform.yaml");
    std::fs::write(&cfg, text).unwrap();
    let (child, stderr) = codec_server::spawn_capturing_stderr(
        Command::new(BIN)
            .args(["--log-format", log_format, "codec-server", "-f"])
            .arg(&cfg)
            .env("ABUSE_TOKEN_OK", TOKEN_OK)
            .env("ABUSE_TOKEN_QUOTED", TOKEN_QUOTED),
    );
    let mut s = Server {
        child,
        port,
        stderr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = s.send(&request("GET", "/healthz", &[], b""))
            && r.status == 200
        {
            break;
        }
        if let Some(status) = s.child.try_wait().unwrap() {
            panic!(
                "codec server exited with {status}: {}",
                s.stderr.lock().unwrap()
            );
        }
        assert!(Instant::now() < deadline, "codec server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answer is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A raw HTTP/1.1 request; `Content-Length` is added when the body is not empty or the method
/// is POST.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one response (headers, then `Content-Length` bytes).
fn read_response(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "closed before a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A 16 KiB receive buffer (no autotuning): a client that does not read fills it quickly.
fn small_receive_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 16 * 1024;
    // SAFETY: `s` owns a valid socket descriptor; the option value is a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

/// True when the peer has closed the connection (EOF or reset) within `wait`.
fn closed_within(s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let mut r = s;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

impl Server {
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// One request on its own connection.
    fn send(&self, raw: &[u8]) -> std::io::Result<Resp> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(raw)?;
        read_response(&mut BufReader::new(s))
    }

    fn post(&self, op: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        self.send(&request(
            "POST",
            &format!("/{op}"),
            &[&[("Content-Type", "application/json")], headers].concat(),
            body.as_bytes(),
        ))
        .unwrap()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// The scrape, checked by promtool and by [`assert_well_formed`].
    fn checked_scrape(&self) -> String {
        let r = self.send(&request("GET", "/metrics", &[], b"")).unwrap();
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        assert_well_formed(&text);
        promtool_check(&text);
        text
    }

    /// Audit lines in the JSON log format (`fields` of each), after the count stops growing
    /// (the server logs after answering; stderr is read by another thread). Bounded: 3 s.
    fn audit_json(&self) -> Vec<Value> {
        let now = || {
            self.stderr
                .lock()
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["target"] == "audit")
                .map(|v| v["fields"].clone())
                .collect::<Vec<_>>()
        };
        settle(|| now().len());
        now()
    }

    fn audit_text(&self) -> Vec<String> {
        let now = || {
            self.stderr
                .lock()
                .unwrap()
                .lines()
                .filter(|l| l.contains(" audit: codec request "))
                .map(String::from)
                .collect::<Vec<_>>()
        };
        settle(|| now().len());
        now()
    }
}

/// Waits until `count` stops changing for 200 ms (at most 3 s).
fn settle(count: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let n = count();
        if n == last || Instant::now() > deadline {
            return;
        }
        last = n;
    }
}

/// The label syntax of every sample line: `name{k="v",...} value`, values with only `\\`, `\"`
/// and `\n` escapes. Catches a broken scrape without promtool.
fn assert_well_formed(text: &str) {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let bad = || panic!("malformed sample line: {line}");
        let Some(open) = line.find('{') else {
            if line.split_whitespace().count() != 2 {
                bad();
            }
            continue;
        };
        let mut chars = line[open + 1..].chars().peekable();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bad();
            }
            if chars.next() != Some('"') {
                bad();
            }
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('\\' | '"' | 'n') => {}
                        _ => bad(),
                    },
                    Some('"') => break,
                    Some(_) => {}
                    None => bad(),
                }
            }
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                _ => bad(),
            }
        }
        let rest: String = chars.collect();
        let value = rest.trim();
        if value.is_empty() || value.contains(' ') || value.parse::<f64>().is_err() {
            bad();
        }
    }
}

fn promtool_check(scrape: &str) {
    let found = ["/usr/bin/promtool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("promtool"))
                    .find(|p| p.exists())
            })
        });
    let Some(promtool) = found else {
        if cfg!(tb_stack) {
            panic!(
                "promtool is required with the dev stack and in CI (Debian package `prometheus`, installed by scripts/dev-services start)"
            );
        }
        eprintln!("note: promtool not found; only the built-in scrape check ran");
        return;
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 1: the scrape does not parse. Exit 3: lint problems. promtool reads the Prometheus
    // 0.0.4 text format, where a counter's samples carry the family's name; our scrape is
    // OpenMetrics (`# TYPE foo counter` then `foo_total`), so promtool reports `foo_total no help
    // text` for every counter. That one finding is accepted when `foo` has its HELP line; any
    // other finding fails.
    let openmetrics_counter = |l: &str| {
        l.strip_suffix(" no help text")
            .and_then(|m| m.strip_suffix("_total"))
            .is_some_and(|family| {
                scrape.contains(&format!("# HELP {family} "))
                    && scrape.contains(&format!("# TYPE {family} counter"))
            })
    };
    let ok = out.status.success()
        || (out.status.code() == Some(3)
            && report
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(openmetrics_counter));
    assert!(
        ok,
        "promtool check metrics failed ({}): {report}\n--- scrape ---\n{scrape}",
        out.status
    );
}

fn sample(scrape: &str, prefix: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn series(scrape: &str, metric: &str) -> usize {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .count()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `key=value` fields of a text-format audit line, values unquoted and unescaped. Panics
/// when a key appears twice (a forged field).
fn text_fields(line: &str) -> Vec<(String, String)> {
    let rest = line
        .split_once(" audit: codec request ")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("not an audit line: {line}"));
    let mut out: Vec<(String, String)> = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') | None => break,
                    Some(c) => value.push(c),
                }
            }
            chars.next_if_eq(&' ');
        } else {
            value = chars.by_ref().take_while(|c| *c != ' ').collect();
        }
        let key = key.trim().to_string();
        assert!(
            out.iter().all(|(k, _)| *k != key),
            "field `{key}` appears twice in the audit line: {line}"
        );
        out.push((key, value));
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no `{key}` in {fields:?}"))
}

// ---------------------------------------------------------------------------------------------

/// Issue 16 item 2: label values were written unescaped, so `X-Namespace: x" outcome="ok`
/// from a caller without rights broke the whole scrape; every invented namespace was a series.
#[test]
fn metrics_survive_label_injection_and_stay_bounded() {
    let s = start("", "json");
    let quoted = bearer(TOKEN_QUOTED);
    // Forbidden (the caller has rights on `orders` only) and unauthenticated, with injection.
    let r = s.post(
        "decode",
        &[("X-Namespace", INJECTED), ("Authorization", &quoted)],
        "{\"payloads\":[]}",
    );
    assert_eq!(r.status, 403);
    let r = s.post("decode", &[("X-Namespace", INJECTED)], "{\"payloads\":[]}");
    assert_eq!(r.status, 401);
    // A caller whose configured name holds `"` and `\`.
    let r = s.post(
        "decode",
        &[("X-Namespace", "orders"), ("Authorization", &quoted)],
        "{\"payloads\":[]}",
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    // 200 invented namespaces from a caller without rights, 200 from nobody.
    for i in 0..200 {
        let ns = format!("invented-{i}");
        let r = s.post(
            "encode",
            &[("X-Namespace", &ns), ("Authorization", &quoted)],
            "{\"payloads\":[]}",
        );
        assert_eq!(r.status, 403);
        let r = s.post("encode", &[("X-Namespace", &ns)], "{\"payloads\":[]}");
        assert_eq!(r.status, 401);
    }
    let m = s.checked_scrape();
    let caller = r#"caller="ops \"quoted\" \\ team""#;
    assert!(
        m.contains(&format!(
            r#"temporal_bootstrap_codec_requests_total{{{caller},namespace="orders",operation="decode",outcome="ok"}} 1"#
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            r#"temporal_bootstrap_codec_requests_total{{{caller},namespace="_other",operation="encode",outcome="forbidden"}} 200"#
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            r#"temporal_bootstrap_codec_requests_total{{{caller},namespace="_other",operation="decode",outcome="forbidden"}} 1"#
        )),
        "{m}"
    );
    assert!(!m.contains("invented-"), "{m}");
    assert!(
        series(&m, "temporal_bootstrap_codec_requests_total") <= 6,
        "{m}"
    );
    // The audit line keeps the real namespace (bounded to 255 printable characters).
    let audit = s.audit_json();
    assert_eq!(audit[0]["namespace"], INJECTED);
    assert_eq!(audit[0]["outcome"], "forbidden");
    assert_eq!(audit[0]["caller"], QUOTED_CALLER);
}

/// Issue 16 item 4: `X-Namespace` and `Origin` were written unquoted in the text format, so a
/// header could append `outcome="ok" status=200 caller=...` to an audit line.
#[test]
fn audit_fields_cannot_be_forged_in_text_or_json() {
    let forged_origin = r#"https://evil.example" outcome="ok" status=200 caller="admin"#;
    for format in ["text", "json"] {
        let s = start("", format);
        let r = s.post("decode", &[("X-Namespace", INJECTED)], "{\"payloads\":[]}");
        assert_eq!(r.status, 401);
        let r = s.post(
            "decode",
            &[("X-Namespace", "default"), ("Origin", forged_origin)],
            "{\"payloads\":[]}",
        );
        assert_eq!(r.status, 403);
        let r = s.post(
            "decode",
            &[
                ("X-Namespace", "default"),
                ("Authorization", &bearer(TOKEN_OK)),
            ],
            "{\"payloads\":[]}",
        );
        assert_eq!(r.status, 200);
        let got: Vec<[String; 6]> = if format == "text" {
            s.audit_text()
                .iter()
                .map(|l| {
                    let f = text_fields(l);
                    [
                        "caller",
                        "namespace",
                        "outcome",
                        "status",
                        "origin",
                        "operation",
                    ]
                    .map(|k| field(&f, k).to_string())
                })
                .collect()
        } else {
            s.audit_json()
                .iter()
                .map(|f| {
                    [
                        "caller",
                        "namespace",
                        "outcome",
                        "status",
                        "origin",
                        "operation",
                    ]
                    .map(|k| match &f[k] {
                        Value::String(v) => v.clone(),
                        other => other.to_string(),
                    })
                })
                .collect()
        };
        let want = [
            [
                "anonymous",
                INJECTED,
                "unauthenticated",
                "401",
                "",
                "decode",
            ],
            [
                "anonymous",
                "default",
                "forbidden_origin",
                "403",
                forged_origin,
                "decode",
            ],
            ["oncall", "default", "ok", "200", "", "decode"],
        ]
        .map(|a| a.map(String::from));
        assert_eq!(got, want, "{format}: {}", s.stderr.lock().unwrap());
        s.checked_scrape();
    }
}

/// Issue 16 item 5: the Web UI (2.32.4+) sends `Authorization-Extras` with codec requests when
/// "pass access token" is on; the preflight did not allow it, so the browser never sent them.
#[test]
fn cors_preflight_allows_the_web_uis_authorization_extras() {
    let s = start("", "json");
    let asked = "authorization,authorization-extras,content-type,x-namespace";
    let r = s
        .send(&request(
            "OPTIONS",
            "/decode",
            &[
                ("Origin", ORIGIN),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", asked),
            ],
            b"",
        ))
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let allowed: Vec<String> = r
        .header("access-control-allow-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in asked.split(',') {
        assert!(allowed.iter().any(|a| a == h), "`{h}` not in {allowed:?}");
    }
    // The actual request with the header works.
    let r = s.post(
        "decode",
        &[
            ("Origin", ORIGIN),
            ("X-Namespace", "default"),
            ("Authorization", &bearer(TOKEN_OK)),
            ("Authorization-Extras", "eyJpZF90b2tlbiI6IngifQ"),
        ],
        "{\"payloads\":[]}",
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    s.checked_scrape();
    // The answered preflight is audited; neither token nor ID token reaches the log.
    settle(|| {
        s.stderr
            .lock()
            .unwrap()
            .lines()
            .filter(|l| {
                l.contains("\"operation\":\"preflight\"") && l.contains("\"outcome\":\"ok\"")
            })
            .count()
    });
    let log = s.stderr.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("\"operation\":\"preflight\"") && l.contains("\"outcome\":\"ok\"")),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN_OK) && !log.contains("eyJpZF90b2tlbiI6IngifQ"),
        "{log}"
    );
}

/// Issue 16 item 13: 413 was plain text and not audited; every refusal is now
/// `{"error": "..."}`, writes an audit line and counts.
#[test]
fn every_refusal_is_json_audited_and_counted() {
    let s = start("", "json");
    let auth = bearer(TOKEN_OK);
    let over = (32 * MIB + 1).to_string();
    // Authorised, Content-Length over the default 32 MiB: refused before any byte of the body.
    let mut c = s.connect();
    c.write_all(
        format!(
            "POST /decode HTTP/1.1\r\nHost: x\r\nX-Namespace: default\r\nAuthorization: {auth}\r\nContent-Length: {over}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let r413 = read_response(&mut BufReader::new(c)).unwrap();
    let cases = [
        (
            r413,
            413,
            "too_large",
            "decode",
            "codec.limits.max_body_bytes",
        ),
        (
            s.send(&request("GET", "/decode", &[], b"")).unwrap(),
            405,
            "method_not_allowed",
            "unknown",
            "GET is not allowed",
        ),
        (
            s.send(&request("GET", "/nope", &[], b"")).unwrap(),
            404,
            "not_found",
            "unknown",
            "no such path",
        ),
        (
            s.send(&request(
                "OPTIONS",
                "/decode",
                &[
                    ("Origin", "https://evil.example"),
                    ("Access-Control-Request-Method", "POST"),
                ],
                b"",
            ))
            .unwrap(),
            403,
            "forbidden_origin",
            "preflight",
            "origin",
        ),
        (
            s.post("encode", &[("X-Namespace", "default")], "{}"),
            401,
            "unauthenticated",
            "encode",
            "Authorization",
        ),
        (
            s.post(
                "encode",
                &[("Authorization", &auth), ("X-Namespace", "orders")],
                "{}",
            ),
            403,
            "forbidden",
            "encode",
            "may not encode",
        ),
        (
            s.post("encode", &[("Authorization", &auth)], "{}"),
            400,
            "bad_request",
            "encode",
            "X-Namespace",
        ),
    ];
    let audit = s.audit_json();
    assert_eq!(audit.len(), cases.len(), "{audit:?}");
    let m = s.checked_scrape();
    for (i, (r, status, outcome, operation, needle)) in cases.iter().enumerate() {
        assert_eq!(r.status, *status, "case {i}: {r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "case {i}: {r:?}"
        );
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(needle), "case {i}: {error}");
        assert_eq!(audit[i]["status"], *status, "{:?}", audit[i]);
        assert_eq!(audit[i]["outcome"], *outcome, "{:?}", audit[i]);
        assert_eq!(audit[i]["operation"], *operation, "{:?}", audit[i]);
        assert!(
            m.lines().any(
                |l| l.starts_with("temporal_bootstrap_codec_requests_total{")
                    && l.contains(&format!("operation=\"{operation}\",outcome=\"{outcome}\""))
            ),
            "case {i} not counted: {m}"
        );
    }
}

/// Issue 16 item 3: bodies up to 32 MiB were buffered before authentication; 20 connections
/// without a token took the server from 114 MB to 748 MB of RSS, and it stayed there.
#[test]
fn unauthenticated_large_bodies_do_not_grow_memory() {
    let s = start("", "json");
    // Warm up the paths the attack takes.
    for _ in 0..20 {
        s.post("decode", &[("X-Namespace", "default")], "{\"payloads\":[]}");
    }
    let before = s.rss_kib();
    let chunk = vec![b'A'; 64 * 1024];
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let mut c = s.connect();
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST /decode HTTP/1.1\r\nHost: x\r\nX-Namespace: default\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    32 * MIB
                );
                let _ = c.write_all(head.as_bytes());
                // The server may answer and close early: write errors end the attack.
                let mut sent = 0;
                while sent < 32 * MIB && c.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
                let status = read_response(&mut BufReader::new(&c)).ok().map(|r| r.status);
                (sent, status)
            })
        })
        .collect();
    let results: Vec<(usize, Option<u16>)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let after = s.rss_kib();
    // A bounded wait for anything still being freed, then the level it settles at.
    std::thread::sleep(Duration::from_millis(500));
    let settled = s.rss_kib();
    eprintln!(
        "RSS before {before} KiB, after 20 x 32 MiB unauthenticated bodies {after} KiB, settled {settled} KiB; bytes sent per connection: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (_, status) in &results {
        assert!(matches!(status, None | Some(401)), "{results:?}");
    }
    assert!(
        results.iter().any(|r| r.1 == Some(401)),
        "no connection got its 401: {results:?}"
    );
    let bound = 64 * 1024;
    assert!(
        after.saturating_sub(before) < bound && settled.saturating_sub(before) < bound,
        "RSS grew from {before} KiB to {after} KiB (settled {settled} KiB)"
    );
    // Still serving, and the scrape is intact.
    assert_eq!(
        s.send(&request("GET", "/healthz", &[], b""))
            .unwrap()
            .status,
        200
    );
    let m = s.checked_scrape();
    assert!(
        sample(
            &m,
            r#"temporal_bootstrap_codec_requests_total{caller="anonymous",namespace="",operation="decode",outcome="unauthenticated"}"#
        )
        .is_some_and(|n| n >= 20.0),
        "{m}"
    );
}

/// Issue 16 item 3: no header or body read timeout; slow connections stayed open past 60 s.
#[test]
fn slow_headers_and_bodies_are_cut_off_after_the_timeouts() {
    let s = start("{ header_read_timeout: 1s, body_read_timeout: 1s }", "json");
    let deadline = Duration::from_secs(10);

    // Headers one byte at a time, never finished.
    let mut c = s.connect();
    c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    c.write_all(b"POST /decode HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        .unwrap();
    let mut closed = false;
    while started.elapsed() < deadline {
        if c.write_all(b"a").is_err() || closed_within(&c, Duration::from_millis(100)) {
            closed = true;
            break;
        }
    }
    let lived = started.elapsed();
    assert!(
        closed,
        "a trickling header kept its connection for {lived:?}"
    );
    assert!(
        lived >= Duration::from_millis(900),
        "closed before header_read_timeout: {lived:?}"
    );

    // A connection that sends nothing at all.
    let idle = s.connect();
    assert!(
        closed_within(&idle, deadline),
        "an idle connection stayed open"
    );

    // An authorised request whose body never completes: 408 in JSON, then the connection closes.
    let mut c = s.connect();
    c.write_all(
        format!(
            "POST /decode HTTP/1.1\r\nHost: x\r\nX-Namespace: default\r\nAuthorization: {}\r\nContent-Length: 1000\r\n\r\n{{\"payloads\"",
            bearer(TOKEN_OK)
        )
        .as_bytes(),
    )
    .unwrap();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("body_read_timeout")
    );
    assert!(closed_within(&c, deadline), "still open after the 408");

    // Without a token, the server does not wait for the body at all.
    let mut c = s.connect();
    c.write_all(
        b"POST /decode HTTP/1.1\r\nHost: x\r\nX-Namespace: default\r\nContent-Length: 1000000\r\n\r\n{",
    )
    .unwrap();
    let r = read_response(&mut BufReader::new(c.try_clone().unwrap())).unwrap();
    assert_eq!(r.status, 401);
    assert!(closed_within(&c, deadline), "still open after the 401");

    let audit = s.audit_json();
    assert!(
        audit
            .iter()
            .any(|a| a["outcome"] == "timeout" && a["status"] == 408),
        "{audit:?}"
    );
    let m = s.checked_scrape();
    assert!(
        sample(
            &m,
            r#"temporal_bootstrap_codec_connection_errors_total{reason="header_timeout"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{m}"
    );
}

/// Issue 16 item 3: no connection limit; issue 20: slow clients must not lock others out.
/// With `max_connections: 4`, four idle connections take every slot; a fifth is served at once
/// by closing the one idle the longest (long before the 5-minute header timeout).
#[test]
fn idle_connections_are_shed_when_every_slot_is_taken() {
    let s = start("{ max_connections: 4, header_read_timeout: 5m }", "json");
    // The kernel's accept queue is FIFO: the four are accepted before the fifth.
    let held: Vec<TcpStream> = (0..4).map(|_| s.connect()).collect();
    let r = s.send(&request("GET", "/healthz", &[("Connection", "close")], b""));
    assert_eq!(r.unwrap().status, 200);
    let closed = held
        .iter()
        .filter(|c| closed_within(c, Duration::from_millis(200)))
        .count();
    assert_eq!(closed, 1, "exactly one idle connection makes room");
    let m = s.checked_scrape();
    assert!(
        sample(
            &m,
            "temporal_bootstrap_codec_connection_errors_total{reason=\"shed\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
}

/// Connections inside a request (head received, body still arriving) are never shed: with both
/// slots busy, a third client waits in the backlog until a body timeout frees a slot, and the
/// two busy clients get their 408, not a cut connection.
#[test]
fn connections_inside_a_request_are_never_shed() {
    let s = start(
        "{ max_connections: 2, header_read_timeout: 5m, body_read_timeout: 2s }",
        "json",
    );
    let auth = bearer(TOKEN_OK);
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = s.connect();
            let head = format!(
                "POST /decode HTTP/1.1\r\nHost: x\r\nX-Namespace: default\r\nAuthorization: {auth}\r\nContent-Length: 100\r\n\r\n{{\"pay"
            );
            c.write_all(head.as_bytes()).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = s.send(&request("GET", "/healthz", &[("Connection", "close")], b""));
    assert_eq!(r.unwrap().status, 200);
    for c in busy {
        let r = read_response(&mut BufReader::new(c)).unwrap();
        assert_eq!(
            r.status, 408,
            "a busy connection was cut instead of answered"
        );
    }
    let m = s.checked_scrape();
    assert!(
        sample(&m, "temporal_bootstrap_codec_connection_limit_waits_total")
            .is_some_and(|n| n >= 1.0),
        "{m}"
    );
}

/// Slowloris, bounded and local: 1,000 connections that send a request head a byte at a time
/// and never finish it, against the default cap of 256 and a 5-minute header timeout. Twenty
/// other clients are each answered (a read timeout of 10 s on each), because head-waiting
/// connections are shed for them; the server stays within its cap.
#[test]
fn a_thousand_slowloris_connections_do_not_lock_out_other_clients() {
    let s = start("{ header_read_timeout: 5m }", "json");
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut c = s.connect();
            c.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let _ = c.write_all(b"POST /decode HTTP/1.1\r\nHost: x\r\nX-Pad: ");
            c
        })
        .collect();
    let auth = bearer(TOKEN_OK);
    let body =
        r#"{"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IngiIg=="}]}"#;
    for i in 0..20 {
        // The attackers keep trickling between the honest requests.
        for c in slow.iter_mut().skip(i * 50).take(50) {
            let _ = c.write_all(b"a");
        }
        let mut c = s.connect();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&request(
            "POST",
            "/encode",
            &[
                ("X-Namespace", "default"),
                ("Authorization", &auth),
                ("Connection", "close"),
            ],
            body.as_bytes(),
        ))
        .unwrap();
        let r = read_response(&mut BufReader::new(c))
            .unwrap_or_else(|e| panic!("honest request {i} was not answered: {e}"));
        assert_eq!(r.status, 200, "honest request {i}");
    }
    let m = s.checked_scrape();
    let open = sample(&m, "temporal_bootstrap_codec_connections").unwrap();
    assert!(open <= 256.0, "{open} connections open, over the cap");
    assert!(
        sample(
            &m,
            "temporal_bootstrap_codec_connection_errors_total{reason=\"shed\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    drop(slow);
}

/// A client that sends a request and never reads the answer: once the server's write has made
/// no progress for `write_timeout`, the connection is closed (it no longer holds a slot).
#[test]
fn a_client_that_never_reads_the_answer_loses_its_connection() {
    use base64::Engine;
    let s = start("{ write_timeout: 1s }", "json");
    // 12 MiB of payload: a ~16 MiB answer, more than the loopback socket buffers hold.
    let data = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 12 * MIB]);
    let body = json!({"payloads": [{"metadata": {"encoding": "YmluYXJ5L3BsYWlu"}, "data": data}]})
        .to_string();
    let c = s.connect();
    small_receive_buffer(&c);
    let raw = request(
        "POST",
        "/encode",
        &[
            ("X-Namespace", "default"),
            ("Authorization", &bearer(TOKEN_OK)),
        ],
        body.as_bytes(),
    );
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&raw).is_ok());
    let deadline = Instant::now() + Duration::from_secs(20);
    let stalled = r#"temporal_bootstrap_codec_connection_errors_total{reason="write_timeout"}"#;
    let m = loop {
        let m = s.checked_scrape();
        if sample(&m, stalled).is_some_and(|n| n >= 1.0) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(writer.join().unwrap(), "the request was not read");
    assert!(
        sample(&m, stalled).is_some_and(|n| n >= 1.0),
        "the stalled connection was not closed: {m}"
    );
    // What the server had written before giving up is still readable, then the connection ends.
    assert!(closed_within(&c, Duration::from_secs(5)));
    assert_eq!(
        sample(&m, "temporal_bootstrap_codec_connections"),
        Some(1.0),
        "only the scrape's own connection is open: {m}"
    );
}

/// The body limit holds while streaming (chunked, no Content-Length) and by Content-Length.
#[test]
fn the_body_limit_holds_while_streaming() {
    let s = start("{ max_body_bytes: 65536 }", "json");
    let auth = bearer(TOKEN_OK);
    // Chunked, 1 MiB in 16 KiB chunks: refused once past 64 KiB.
    let mut c = s.connect();
    c.write_all(
        format!(
            "POST /encode HTTP/1.1\r\nHost: x\r\nX-Namespace: default\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let reader = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0;
        while sent < MIB {
            if c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|_| c.write_all(&chunk))
                .and_then(|_| c.write_all(b"\r\n"))
                .is_err()
            {
                break;
            }
            sent += chunk.len();
        }
        let _ = c.write_all(b"0\r\n\r\n");
        let _ = c.shutdown(Shutdown::Write);
        sent
    });
    let r = read_response(&mut BufReader::new(reader)).unwrap();
    let sent = writer.join().unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("65536"));
    eprintln!("chunked upload: {sent} bytes written before the server gave up");
    // By Content-Length.
    let r = s.post(
        "encode",
        &[("X-Namespace", "default"), ("Authorization", &auth)],
        &" ".repeat(65537),
    );
    assert_eq!(r.status, 413);
    // Under the limit: fine.
    let body =
        json!({"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IngiIg=="}]});
    let r = s.post(
        "encode",
        &[("X-Namespace", "default"), ("Authorization", &auth)],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let audit = s.audit_json();
    assert_eq!(
        audit.iter().filter(|a| a["outcome"] == "too_large").count(),
        2,
        "{audit:?}"
    );
    s.checked_scrape();
}

/// 10,000 requests of every kind (valid, unauthenticated, forbidden with invented namespaces,
/// injected headers) on keep-alive connections: RSS after warm-up and at the end differ by less
/// than 20 MB, and the metric series stay a handful.
#[test]
fn ten_thousand_requests_keep_memory_and_series_flat() {
    let s = start("", "json");
    let auth = bearer(TOKEN_OK);
    let quoted = bearer(TOKEN_QUOTED);
    let enc =
        json!({"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IngiIg=="}]})
            .to_string();
    let run = |from: usize, to: usize| {
        let mut c = s.connect();
        let mut reader = BufReader::new(c.try_clone().unwrap());
        for i in from..to {
            let ns = format!("invented-{i}");
            let raw = match i % 4 {
                0 => request(
                    "POST",
                    "/encode",
                    &[("X-Namespace", "default"), ("Authorization", &auth)],
                    enc.as_bytes(),
                ),
                1 => request("POST", "/decode", &[("X-Namespace", &ns)], b"{}"),
                2 => request(
                    "POST",
                    "/decode",
                    &[("X-Namespace", &ns), ("Authorization", &quoted)],
                    b"{}",
                ),
                _ => request(
                    "POST",
                    "/decode",
                    &[("X-Namespace", INJECTED), ("Authorization", &quoted)],
                    b"{}",
                ),
            };
            c.write_all(&raw).unwrap();
            let r = read_response(&mut reader).unwrap();
            let want = [200, 401, 403, 403][i % 4];
            assert_eq!(r.status, want, "request {i}");
        }
    };
    run(0, 1000);
    let warm = s.rss_kib();
    std::thread::scope(|scope| {
        scope.spawn(|| run(1000, 6000));
        scope.spawn(|| run(6000, 11000));
    });
    let end = s.rss_kib();
    eprintln!("RSS after 1,000 warm-up requests {warm} KiB, after 10,000 more {end} KiB");
    assert!(
        end.saturating_sub(warm) < 20 * 1000,
        "RSS grew from {warm} KiB to {end} KiB"
    );
    let m = s.checked_scrape();
    assert!(
        series(&m, "temporal_bootstrap_codec_requests_total") <= 6,
        "{m}"
    );
    assert!(!m.contains("invented-"));
}
