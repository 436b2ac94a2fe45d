//! The HTTP side: where the API server is, authentication, and the three Secret calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use super::{KubeError, Secret};

/// API server base URL (e.g. `https://10.0.0.1:443`, or `http://127.0.0.1:8001` for
/// `kubectl proxy`). Overrides `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`.
pub const ENV_API_URL: &str = "TB_KUBE_API_URL";
/// Bearer token file. Default: the ServiceAccount token; none when `TB_KUBE_API_URL` is set and
/// the default file does not exist (e.g. through `kubectl proxy`).
pub const ENV_TOKEN_FILE: &str = "TB_KUBE_TOKEN_FILE";
/// CA bundle (PEM) of the API server. Default: the ServiceAccount `ca.crt`.
pub const ENV_CA_FILE: &str = "TB_KUBE_CA_FILE";
/// Where the kubelet mounts the ServiceAccount token, `ca.crt` and `namespace`.
pub const SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// RBAC verbs of the calls we make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Create,
    Update,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// The client. `Debug` shows the base URL and whether a token is used, never the token.
pub struct KubeClient {
    http: reqwest::Client,
    base: String,
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("base", &self.base)
            .field("token", &self.auth.as_ref().map(|_| "***"))
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl KubeClient {
    /// In-cluster configuration, with the `TB_KUBE_*` overrides (see the constants). The token is
    /// read on every call of this function (projected tokens rotate; callers build one client per
    /// run).
    pub fn from_env() -> Result<Self, KubeError> {
        let sa = Path::new(SERVICEACCOUNT_DIR);
        let (base, explicit) = match env_nonempty(ENV_API_URL) {
            Some(u) => (u.trim().trim_end_matches('/').to_string(), true),
            None => {
                let host = env_nonempty("KUBERNETES_SERVICE_HOST").ok_or_else(|| {
                    KubeError::Config(format!(
                        "pki.kubernetes_secrets is set but no Kubernetes API server is known: not running in a Pod (KUBERNETES_SERVICE_HOST is not set) and {ENV_API_URL} is not set; outside a cluster set {ENV_API_URL} (e.g. http://127.0.0.1:8001 with `kubectl proxy`) and, when needed, {ENV_TOKEN_FILE} and {ENV_CA_FILE}"
                    ))
                })?;
                let port = env_nonempty("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                (format!("https://{host}:{port}"), false)
            }
        };
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(KubeError::Config(format!(
                "{ENV_API_URL} `{base}` must start with https:// or http://"
            )));
        }
        let token_file = match env_nonempty(ENV_TOKEN_FILE) {
            Some(p) => Some(PathBuf::from(p)),
            None => {
                let p = sa.join("token");
                if p.exists() || !explicit {
                    Some(p)
                } else {
                    None
                }
            }
        };
        let auth = match &token_file {
            None => None,
            Some(p) => Some(bearer(p)?),
        };
        let ca_file = match env_nonempty(ENV_CA_FILE) {
            Some(p) => Some(PathBuf::from(p)),
            None => Some(sa.join("ca.crt")).filter(|p| p.exists() || !explicit),
        };
        Self::new(&base, auth, ca_file.as_deref())
    }

    /// An explicit configuration: `token` is the bearer token, `ca_file` the API server's CA.
    pub fn with_token(
        base: &str,
        token: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self, KubeError> {
        let auth = match token {
            Some(t) => Some(header_value(t)?),
            None => None,
        };
        Self::new(base.trim_end_matches('/'), auth, ca_file)
    }

    fn new(
        base: &str,
        auth: Option<HeaderValue>,
        ca_file: Option<&Path>,
    ) -> Result<Self, KubeError> {
        crate::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("temporal-bootstrap/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") {
            let ca = ca_file.ok_or_else(|| {
                KubeError::Config(format!(
                    "{base} is https but no CA is known to verify it: set {ENV_CA_FILE} (in a Pod the ServiceAccount's ca.crt is used)"
                ))
            })?;
            let pem = crate::fsutil::read_limited(ca, crate::fsutil::FileKind::Pem)
                .map_err(|e| KubeError::Config(format!("the API server CA: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    KubeError::Config(format!(
                        "the API server CA {} holds no PEM certificate",
                        ca.display()
                    ))
                })?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| KubeError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.to_string(),
            auth,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1/namespaces/{ns}/secrets/{name}`: `None` on 404.
    pub async fn get_secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, KubeError> {
        let (call, status, body) = self.send(Method::GET, ns, Some(name), None).await?;
        match status {
            200 => decode(&call, &body).map(Some),
            404 => Ok(None),
            _ => Err(self.error(call, status, &body, Verb::Get, ns, name)),
        }
    }

    /// `POST /api/v1/namespaces/{ns}/secrets`. A 409 (already exists) is [`KubeError::Conflict`].
    pub async fn create_secret(&self, secret: &Secret) -> Result<Secret, KubeError> {
        let mut obj = secret.to_json();
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let (call, status, body) = self
            .send(Method::POST, &secret.namespace, None, Some(&obj))
            .await?;
        match status {
            200..=202 => decode(&call, &body),
            _ => Err(self.error(
                call,
                status,
                &body,
                Verb::Create,
                &secret.namespace,
                &secret.name,
            )),
        }
    }

    /// `PUT /api/v1/namespaces/{ns}/secrets/{name}` with the `resourceVersion` of `secret`; a
    /// stale version is [`KubeError::Conflict`].
    pub async fn replace_secret(&self, secret: &Secret) -> Result<Secret, KubeError> {
        let obj = secret.to_json();
        let (call, status, body) = self
            .send(
                Method::PUT,
                &secret.namespace,
                Some(&secret.name),
                Some(&obj),
            )
            .await?;
        match status {
            200 | 201 => decode(&call, &body),
            _ => Err(self.error(
                call,
                status,
                &body,
                Verb::Update,
                &secret.namespace,
                &secret.name,
            )),
        }
    }

    /// `DELETE /api/v1/namespaces/{ns}/secrets/{name}`; `false` when it did not exist. Not used
    /// by the bootstrap (its Role grants no `delete`): for tests and cleanup tools.
    pub async fn delete_secret(&self, ns: &str, name: &str) -> Result<bool, KubeError> {
        let (call, status, body) = self.send(Method::DELETE, ns, Some(name), None).await?;
        match status {
            200 | 202 => Ok(true),
            404 => Ok(false),
            _ => Err(self.error(call, status, &body, Verb::Delete, ns, name)),
        }
    }

    async fn send(
        &self,
        method: Method,
        ns: &str,
        name: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(String, u16, Value), KubeError> {
        let path = match name {
            Some(n) => format!("/api/v1/namespaces/{ns}/secrets/{n}"),
            None => format!("/api/v1/namespaces/{ns}/secrets"),
        };
        let call = format!("{method} {path}");
        for part in std::iter::once(ns).chain(name) {
            if !crate::config::validate::is_dns1123_subdomain(part) {
                return Err(KubeError::Config(format!(
                    "{call}: `{part}` is not a valid Kubernetes object name"
                )));
            }
        }
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(ACCEPT, "application/json");
        if let Some(h) = &self.auth {
            req = req.header(AUTHORIZATION, h.clone());
        }
        if let Some(b) = body {
            // Never logged: the body carries key material.
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| KubeError::Transport {
            call: call.clone(),
            message: transport_message(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| KubeError::Transport {
            call: call.clone(),
            message: format!("reading the answer failed: {e}"),
        })?;
        tracing::debug!(request = %call, status, "kubernetes API");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((call, status, body))
    }

    fn error(
        &self,
        call: String,
        status: u16,
        body: &Value,
        verb: Verb,
        ns: &str,
        name: &str,
    ) -> KubeError {
        let message = status_message(body);
        match status {
            401 => KubeError::Unauthorized { call, message },
            403 => KubeError::Forbidden(Box::new(super::Denied {
                call,
                verb: verb.as_str(),
                name: name.to_string(),
                namespace: ns.to_string(),
                message,
            })),
            409 => KubeError::Conflict { call, message },
            _ => KubeError::Api {
                call,
                status,
                message,
            },
        }
    }
}

fn bearer(path: &Path) -> Result<HeaderValue, KubeError> {
    let token = crate::fsutil::read_limited_string(path, crate::fsutil::FileKind::Secret).map_err(|e| {
        KubeError::Config(format!(
            "the ServiceAccount token: {e} (in a Pod, set automountServiceAccountToken: true; elsewhere set {ENV_TOKEN_FILE})"
        ))
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(KubeError::Config(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    header_value(token)
}

fn header_value(token: &str) -> Result<HeaderValue, KubeError> {
    let mut h = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        KubeError::Config("the token contains characters not allowed in an HTTP header".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}

fn decode(call: &str, body: &Value) -> Result<Secret, KubeError> {
    Secret::from_json(body).map_err(|message| KubeError::Decode {
        call: call.to_string(),
        message,
    })
}

/// `Status.message` (with its reason), or a generic text: never the raw body of a non-Status
/// answer, which could be anything a proxy sends back.
fn status_message(body: &Value) -> String {
    let msg = body.get("message").and_then(Value::as_str);
    let reason = body.get("reason").and_then(Value::as_str);
    match (msg, reason) {
        (Some(m), Some(r)) => format!("{r}: {m}"),
        (Some(m), None) => m.to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => "no Status object in the answer".to_string(),
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    if e.is_timeout() {
        msg.push_str(" (timed out)");
    } else if e.is_connect() {
        msg.push_str(" (is the API server reachable from here?)");
    }
    msg
}
