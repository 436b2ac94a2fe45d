//! A thin Elasticsearch/OpenSearch REST client over reqwest: base URL, authentication, private CA,
//! JSON in and out, and error bodies turned into operator-readable messages with every secret
//! redacted.
//!
//! Guarantees: the `Authorization` header is marked sensitive and never logged; every error
//! message passes through [`SearchClient::redact`], which removes the password, the API key and
//! the encoded header value wherever they appear (a server may echo them).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use super::SearchError;
use crate::config::{ElasticsearchConfig, SearchAuth};

/// One HTTP answer: status and body (JSON when it parses, else `Value::Null` with `text`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `error.type` of an Elasticsearch error body (`root_cause` first), when present.
    pub fn error_type(&self) -> Option<&str> {
        self.body
            .pointer("/error/type")
            .and_then(Value::as_str)
            .or_else(|| {
                self.body
                    .pointer("/error/root_cause/0/type")
                    .and_then(Value::as_str)
            })
    }

    /// `error.reason`, or a string `error`, or the raw text (not shortened: redact first).
    pub fn error_reason(&self) -> String {
        if let Some(r) = self.body.pointer("/error/reason").and_then(Value::as_str) {
            return r.to_string();
        }
        if let Some(r) = self.body.get("error").and_then(Value::as_str) {
            return r.to_string();
        }
        if let Some(r) = self.body.get("message").and_then(Value::as_str) {
            return r.to_string();
        }
        self.text.trim().to_string()
    }
}

/// The client. `Debug` shows the URL and the auth kind only.
pub struct SearchClient {
    http: reqwest::Client,
    base: String,
    auth: Option<HeaderValue>,
    auth_kind: &'static str,
    /// Values that must never appear in a message.
    secrets: Vec<String>,
}

impl std::fmt::Debug for SearchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchClient")
            .field("base", &self.base)
            .field("auth", &self.auth_kind)
            .finish()
    }
}

impl SearchClient {
    /// Builds the client: resolves secret references, loads the CA (paths relative to
    /// `base_dir`). `request_timeout` bounds every call that does not pass its own.
    pub fn new(
        cfg: &ElasticsearchConfig,
        base_dir: &Path,
        request_timeout: Duration,
    ) -> Result<Self, SearchError> {
        let mut builder = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("temporal-bootstrap/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca {
            let path = if ca.is_absolute() {
                ca.clone()
            } else {
                base_dir.join(ca)
            };
            let pem = crate::fsutil::read_limited(&path, crate::fsutil::FileKind::Pem)
                .map_err(|e| SearchError::Config(format!("visibility.elasticsearch.ca: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SearchError::Config(format!(
                    "visibility.elasticsearch.ca: {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(SearchError::Config(format!(
                    "visibility.elasticsearch.ca: {} holds no PEM certificate",
                    path.display()
                )));
            }
            // A private CA: trust only it, not the system roots.
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| SearchError::Config(format!("cannot build the HTTP client: {e}")))?;

        let mut secrets = Vec::new();
        let (auth, auth_kind) = match &cfg.auth {
            None => (None, "none"),
            Some(SearchAuth::Basic { username, password }) => {
                let pw = password.resolve().map_err(|e| {
                    SearchError::Secret(format!(
                        "visibility.elasticsearch.auth.basic.password: {e}"
                    ))
                })?;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", pw.expose()));
                secrets.push(pw.expose().to_string());
                secrets.push(encoded.clone());
                (Some(header(&format!("Basic {encoded}"))?), "basic")
            }
            Some(SearchAuth::ApiKey { key }) => {
                let k = key.resolve().map_err(|e| {
                    SearchError::Secret(format!("visibility.elasticsearch.auth.api_key.key: {e}"))
                })?;
                secrets.push(k.expose().to_string());
                (Some(header(&format!("ApiKey {}", k.expose()))?), "api_key")
            }
        };
        // Longest first so a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.retain(|s| !s.is_empty());
        Ok(Self {
            http,
            base: cfg.url.to_string().trim_end_matches('/').to_string(),
            auth,
            auth_kind,
            secrets,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Removes every known secret from `s`.
    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// Sends one request. Transport failures are errors; any HTTP status is a [`Reply`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, SearchError> {
        let url = format!("{}{}", self.base, path);
        let what = format!("{method} {path}");
        let mut req = self.http.request(method.clone(), &url);
        if let Some(h) = &self.auth {
            req = req.header(AUTHORIZATION, h.clone());
        }
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(super::schema::canonical_string(b));
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        tracing::debug!(request = %what, "search request");
        let resp = req.send().await.map_err(|e| SearchError::Transport {
            call: what.clone(),
            message: self.redact(&transport_message(&e)),
        })?;
        let status = resp.status().as_u16();
        let text = if method == Method::HEAD {
            String::new()
        } else {
            resp.text().await.map_err(|e| SearchError::Transport {
                call: what.clone(),
                message: self.redact(&transport_message(&e)),
            })?
        };
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        tracing::debug!(request = %what, status, "search reply");
        Ok(Reply { status, body, text })
    }

    /// Sends and requires a 2xx; anything else becomes [`SearchError::Api`] (401/403 phrased
    /// as authentication/authorisation failures).
    pub async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, SearchError> {
        let call = format!("{method} {path}");
        let reply = self.send(method, path, body, None).await?;
        if reply.ok() {
            Ok(reply)
        } else {
            Err(self.api_error(&call, &reply))
        }
    }

    pub fn api_error(&self, call: &str, reply: &Reply) -> SearchError {
        let kind = reply.error_type().unwrap_or("").to_string();
        // Redact before shortening, so no part of a secret survives a cut.
        let reason = shorten(&self.redact(&reply.error_reason()), 300);
        let detail = match reply.status {
            401 => format!(
                "authentication failed ({kind}: {reason}); check visibility.elasticsearch.auth and the referenced secret"
            ),
            403 => format!(
                "not authorised ({kind}: {reason}); grant the privileges listed in docs/visibility-elasticsearch.md"
            ),
            _ if kind.is_empty() => reason,
            _ => format!("{kind}: {reason}"),
        };
        SearchError::Api {
            call: call.to_string(),
            status: reply.status,
            detail,
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s.to_string()
    }
}

fn header(v: &str) -> Result<HeaderValue, SearchError> {
    let mut h = HeaderValue::from_str(v).map_err(|_| {
        SearchError::Config(
            "visibility.elasticsearch.auth: the credential holds characters not allowed in an HTTP header".into(),
        )
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// reqwest's error with its source chain (TLS and connect causes live there).
fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(auth: Value, dir: &Path) -> SearchClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg: ElasticsearchConfig = serde_json::from_value(json!({
            "url": "http://127.0.0.1:9200/",
            "auth": auth,
        }))
        .unwrap();
        SearchClient::new(&cfg, dir, Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn secrets_are_redacted_before_messages_are_shortened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "S3cr3t-Value!\n").unwrap();
        let pw = dir.path().join("pw");
        let c = client(
            json!({"basic": {"username": "u", "password": format!("file:{}", pw.display())}}),
            dir.path(),
        );
        // The secret straddles the 300-character cut.
        let text = format!(
            "{}S3cr3t-Value! and {}",
            "x".repeat(294),
            "VTpTM2NyM3QtVmFsdWUh"
        );
        let reply = Reply {
            status: 500,
            body: Value::Null,
            text,
        };
        let msg = c.api_error("GET /", &reply).to_string();
        assert!(!msg.contains("S3cr"), "{msg}");
        assert!(msg.contains("***"), "{msg}");
        // base64("u:S3cr3t-Value!") is redacted too.
        let reply = Reply {
            status: 401,
            body: json!({"error": {"type": "security_exception", "reason": "bad [Basic dTpTM2NyM3QtVmFsdWUh]"}}),
            text: String::new(),
        };
        let msg = c.api_error("GET /", &reply).to_string();
        assert!(!msg.contains("dTpTM2NyM3QtVmFsdWUh"), "{msg}");
        assert!(msg.contains("authentication failed"), "{msg}");
        assert_eq!(
            format!("{c:?}"),
            "SearchClient { base: \"http://127.0.0.1:9200\", auth: \"basic\" }"
        );
    }

    #[test]
    fn unresolvable_secret_is_a_runtime_error_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg: ElasticsearchConfig = serde_json::from_value(json!({
            "url": "http://127.0.0.1:9200",
            "auth": {"api_key": {"key": "file:/nonexistent/es-key"}},
        }))
        .unwrap();
        let err = SearchClient::new(&cfg, dir.path(), Duration::from_secs(5)).unwrap_err();
        // The configuration is valid; the environment lacks the file (README: exit 1).
        assert!(matches!(err, SearchError::Secret(_)));
        assert!(
            err.to_string()
                .starts_with("visibility.elasticsearch.auth.api_key.key:"),
            "{err}"
        );
        assert_eq!(
            crate::reconcile::StepError::from(err).class(),
            crate::reconcile::ErrorClass::Runtime
        );
    }
}
