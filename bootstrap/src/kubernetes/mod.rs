//! A minimal Kubernetes API client: core/v1 Secrets only, over reqwest, authenticated with the
//! in-cluster ServiceAccount token.
//!
//! Flow: [`KubeClient::from_env`] finds the API server (in-cluster: `KUBERNETES_SERVICE_HOST` /
//! `KUBERNETES_SERVICE_PORT`, the token and `ca.crt` under
//! `/var/run/secrets/kubernetes.io/serviceaccount/`; overridable with `TB_KUBE_API_URL`,
//! `TB_KUBE_TOKEN_FILE`, `TB_KUBE_CA_FILE`), then [`KubeClient::get_secret`],
//! [`KubeClient::create_secret`] and [`KubeClient::replace_secret`] talk to
//! `/api/v1/namespaces/{ns}/secrets[/{name}]`.
//!
//! Guarantees: the bearer token is a sensitive header and never logged; Secret data never appears
//! in a log line, a `Debug` output or an error (errors carry the server's `Status.message`, which
//! names the object, never its data); 401 and 403 name the verb, resource, name and namespace
//! and the RBAC rule that is missing.
//!
//! Assumptions: the API server speaks the documented core/v1 shapes (Secret with base64 `data`,
//! `metadata.resourceVersion`; `Status` objects on errors). Caveats: no watch, no list, no
//! patch: the caller re-reads and retries on a 409 conflict.

mod client;
mod secret;

pub use client::{ENV_API_URL, ENV_CA_FILE, ENV_TOKEN_FILE, KubeClient, SERVICEACCOUNT_DIR, Verb};
pub use secret::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, Secret};

use crate::reconcile::{ErrorKind, StepError};

/// Errors of the Kubernetes client, already phrased for the operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeError {
    /// No usable API server configuration (not in a cluster and no `TB_KUBE_API_URL`, unreadable
    /// token or CA file).
    #[error("{0}")]
    Config(String),
    /// The request did not get an HTTP answer.
    #[error("{call}: {message}")]
    Transport { call: String, message: String },
    /// 401: the token was not accepted.
    #[error(
        "{call}: 401 Unauthorized: the API server did not accept the ServiceAccount token ({message}); check that the token file is current (projected tokens are refreshed by the kubelet) and that {ENV_TOKEN_FILE} points at it when set"
    )]
    Unauthorized { call: String, message: String },
    /// 403: RBAC refused the verb (boxed: the details are large and rare).
    #[error("{0}")]
    Forbidden(Box<Denied>),
    /// 409: the object changed since it was read (update) or exists already (create).
    #[error("{call}: 409 Conflict: {message}")]
    Conflict { call: String, message: String },
    /// Any other non-success answer.
    #[error("{call}: HTTP {status}: {message}")]
    Api {
        call: String,
        status: u16,
        message: String,
    },
    /// The answer was not the documented shape.
    #[error("{call}: unexpected answer: {message}")]
    Decode { call: String, message: String },
}

/// What a 403 refused, and the RBAC rule that would allow it.
#[derive(Debug, Clone)]
pub struct Denied {
    pub call: String,
    pub verb: &'static str,
    pub name: String,
    pub namespace: String,
    /// The server's `Status.message` (names the user, never data).
    pub message: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            call,
            verb,
            name,
            namespace,
            message,
        } = self;
        // RBAC cannot restrict create by name (the name is not in the URL).
        let names = if *verb == "create" {
            String::new()
        } else {
            format!(", resourceNames [\"{name}\"]")
        };
        write!(
            f,
            "{call}: 403 Forbidden: cannot {verb} secrets `{name}` in namespace `{namespace}` ({message}); the ServiceAccount needs a Role in `{namespace}` with apiGroups [\"\"], resources [\"secrets\"], verbs [\"{verb}\"]{names} (the Helm chart's bootstrap Role grants create, and get/update/patch on the certificate Secrets by name)"
        )
    }
}

impl KubeError {
    /// Every Kubernetes failure is the world's, not the configuration's: exit 1.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::Api { .. } | Self::Decode { .. } => ErrorKind::Failed,
            Self::Transport { .. } => ErrorKind::Unreachable,
            Self::Unauthorized { .. } | Self::Forbidden(_) => ErrorKind::Denied,
            Self::Conflict { .. } => ErrorKind::Conflict,
        }
    }
}

impl From<KubeError> for StepError {
    fn from(e: KubeError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}
