//! The `temporal` adapter: the Temporal frontend over gRPC (cluster facts, namespaces, search
//! attributes) and the three steps built on it: `cluster`, `namespaces`, `search-attributes`.
//!
//! Layout:
//! - [`api`]: the small [`TemporalApi`] trait the steps use, its value types, and the process-wide
//!   counter of mutating RPCs (tests prove "no write" with it);
//! - [`grpc`]: the real implementation on `temporalio-client` (TLS/mTLS, HTTP CONNECT proxy,
//!   bounded exponential backoff on UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED);
//! - [`proxy`]: `HTTPS_PROXY` / `NO_PROXY` resolution (pure);
//! - [`retry`]: the backoff policy (pure) and the retry loop;
//! - [`cluster`], [`namespaces`], [`search_attributes`]: the steps (observe -> diff -> apply ->
//!   verify), with their diff logic as pure functions.
//!
//! Errors: one enum, [`TemporalError`]; [`TemporalError::is_invalid`] decides the exit code
//! (refused change or bad input = 2, the world failing = 1).

pub mod api;
pub mod cluster;
pub mod grpc;
pub mod namespaces;
pub mod proxy;
pub mod retry;
pub mod search_attributes;

#[cfg(test)]
pub(crate) mod fake;

use std::sync::Arc;
use std::time::Duration;

pub use api::{
    ClusterInfo, NamespaceSpec, NamespaceState, NamespaceUpdate, ObservedAttributes, TemporalApi,
    mutating_calls, total_mutating_calls,
};
pub use cluster::{ClusterStep, check_history_shards, expected_history_shards};
pub use grpc::{ConnectSettings, GrpcTemporal, TlsMaterial};
pub use namespaces::NamespacesStep;
pub use retry::RetryPolicy;
pub use search_attributes::SearchAttributesStep;

use crate::reconcile::{Context, ErrorClass, ErrorKind, StepError};

/// How many namespaces are registered/updated (and how many namespaces get their search
/// attributes added) at the same time. Search attributes of ONE namespace are never added
/// concurrently, whatever this is.
pub const APPLY_CONCURRENCY: usize = 8;
/// How long `search-attributes` waits for added attributes to show up in ListSearchAttributes.
pub const SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);
/// First poll interval while waiting for search attributes (doubles up to 1 s).
pub const SEARCH_ATTRIBUTES_POLL_INITIAL: Duration = Duration::from_millis(100);
/// Namespaces the server owns; never reported as drift.
pub const SYSTEM_NAMESPACES: &[&str] = &["temporal-system"];

/// Everything that can go wrong talking to Temporal, phrased for the operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemporalError {
    /// Our own input is unusable (TLS files, proxy URL, addresses). Exit 2.
    #[error("{0}")]
    Config(String),
    /// The frontend could not be reached (after retries when the failure was transient). Exit 1.
    #[error(
        "cannot connect to the Temporal frontend at {address} after {attempts} attempt(s): {message}"
    )]
    Connect {
        address: String,
        attempts: u32,
        message: String,
    },
    /// An RPC failed (after retries when the failure was transient). Exit 1.
    #[error("{rpc} failed after {attempts} attempt(s): {code:?}: {message}")]
    Rpc {
        rpc: &'static str,
        code: temporalio_client::tonic::Code,
        message: String,
        attempts: u32,
    },
    /// A namespace the server says does not exist.
    #[error("namespace `{0}` does not exist")]
    NamespaceNotFound(String),
    /// A change that Temporal cannot make or that would break the cluster. Exit 2.
    #[error("{0}")]
    Refused(String),
    /// Applied, but the result did not show up or differs. Exit 1.
    #[error("{0}")]
    Verify(String),
}

impl TemporalError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) => ErrorKind::Invalid,
            Self::Refused(_) => ErrorKind::Refused,
            Self::Connect { .. } => ErrorKind::Unreachable,
            Self::Rpc { code, .. } => rpc_kind(*code),
            Self::NamespaceNotFound(_) | Self::Verify(_) => ErrorKind::Failed,
        }
    }

    /// Whether this is the user's input or a refused change (exit 2) rather than the world (1).
    pub fn is_invalid(&self) -> bool {
        self.kind().class() == ErrorClass::Invalid
    }
}

fn rpc_kind(code: temporalio_client::tonic::Code) -> ErrorKind {
    use temporalio_client::tonic::Code;
    match code {
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::Denied,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::Unavailable => ErrorKind::Unreachable,
        Code::AlreadyExists | Code::Aborted => ErrorKind::Conflict,
        Code::InvalidArgument => ErrorKind::Invalid,
        _ => ErrorKind::Failed,
    }
}

impl From<TemporalError> for StepError {
    fn from(e: TemporalError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

/// Connects to the frontend the configuration names (TLS, proxy from the environment).
pub async fn connect(ctx: &Context) -> Result<Arc<dyn TemporalApi>, TemporalError> {
    let settings = ConnectSettings::from_config(ctx)?;
    let api = GrpcTemporal::connect(settings, RetryPolicy::DEFAULT).await?;
    Ok(Arc::new(api))
}

/// Connects like a client with neither a certificate nor a token would, and makes one
/// read call. `None`: the frontend is configured without TLS (plaintext). `Some(Ok(()))`: it
/// was accepted. `Some(Err(reason))`: refused (handshake, or the call denied). One attempt.
pub async fn connect_without_credentials(
    ctx: &Context,
) -> Result<Option<Result<(), String>>, TemporalError> {
    let mut settings = ConnectSettings::from_config(ctx)?;
    let Some(tls) = settings.tls.as_mut() else {
        return Ok(None);
    };
    tls.client = None;
    settings.bearer = None;
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::DEFAULT
    };
    let api = match GrpcTemporal::connect(settings, once).await {
        Ok(api) => api,
        Err(e) => return Ok(Some(Err(e.to_string()))),
    };
    Ok(Some(match api.list_namespaces().await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }))
}

/// The steps of this module, for the registry.
pub fn steps() -> Vec<Box<dyn crate::reconcile::Step>> {
    vec![
        Box::new(ClusterStep::new()),
        Box::new(NamespacesStep::new()),
        Box::new(SearchAttributesStep::new()),
    ]
}

/// A connection shared by `plan` and `apply` of one step instance (each run builds new steps).
#[derive(Default)]
pub(crate) struct Lazy {
    cell: tokio::sync::OnceCell<Arc<dyn TemporalApi>>,
}

impl Lazy {
    pub(crate) fn with(api: Arc<dyn TemporalApi>) -> Self {
        let cell = tokio::sync::OnceCell::new();
        // A fresh cell is empty, so `set` cannot fail.
        let _ = cell.set(api);
        Self { cell }
    }

    pub(crate) async fn get(&self, ctx: &Context) -> Result<Arc<dyn TemporalApi>, TemporalError> {
        self.cell
            .get_or_try_init(|| connect(ctx))
            .await
            .map(Arc::clone)
    }
}

/// Runs `f` on every item, at most `limit` at a time; results in input order. A panicking task
/// becomes an error rather than taking the process down.
pub(crate) async fn run_bounded<T, R, F, Fut>(
    items: Vec<T>,
    limit: usize,
    f: F,
) -> Vec<Result<R, TemporalError>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, TemporalError>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let fut = f(item);
        let limit = Arc::clone(&limit);
        set.spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = limit.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<Result<R, TemporalError>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            Err(e) => tracing::error!("internal task failed: {e}"),
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(TemporalError::Verify(
                    "internal error: a task panicked".into(),
                ))
            })
        })
        .collect()
}

/// Joins several failures into one step error: exit 2 if any is a refused change, else 1.
pub(crate) fn combine_errors(mut errors: Vec<TemporalError>) -> StepError {
    if errors.len() == 1 {
        return errors.remove(0).into();
    }
    // What the operator must fix first decides the kind (and so the exit code).
    let kind = errors
        .iter()
        .map(TemporalError::kind)
        .find(|k| k.class() == ErrorClass::Invalid)
        .or_else(|| errors.first().map(TemporalError::kind))
        .unwrap_or(ErrorKind::Internal);
    let mut message = format!("{} problems:", errors.len());
    for e in &errors {
        message.push_str("\n  - ");
        message.push_str(&e.to_string());
    }
    StepError::new(kind, message)
}
