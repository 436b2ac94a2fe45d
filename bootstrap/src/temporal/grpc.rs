//! [`TemporalApi`] over gRPC with the official client (`temporalio-client`).
//!
//! Flow: build the connection options from the configuration (TLS material read and checked
//! first, proxy chosen from `HTTPS_PROXY` / `NO_PROXY`), connect with bounded retries, then call
//! the raw WorkflowService / OperatorService RPCs, each with a deadline and the same retries.
//!
//! Guarantees: the client's own retry layer is bypassed (raw service clients), so the only retries
//! are ours: UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED, [`RetryPolicy`] bounded. Every mutating attempt is
//! counted ([`super::api::mutating_calls`]). Private keys and proxy credentials never appear in
//! errors or logs.
//!
//! Assumptions: the frontend speaks gRPC (directly, or behind a TLS-terminating proxy such as
//! nginx with `grpc_pass`).
//!
//! Caveats: DNS load balancing of the client is disabled (one target; it is incompatible with the
//! proxy); certificates are read at connect time (a long-running daemon reconnects per run).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use temporalio_client::tonic::{self, Code, Status};
use temporalio_client::{
    ClientTlsOptions, Connection, ConnectionOptions, HttpConnectProxyOptions, RetryOptions,
    TlsOptions, Url,
};
use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
use temporalio_common::protos::temporal::api::enums::v1::{
    ArchivalState, IndexedValueType, NamespaceState as ProtoNamespaceState,
    TaskQueueKind as TaskQueueKindProto, TaskQueueType,
};
use temporalio_common::protos::temporal::api::namespace::v1::{
    NamespaceConfig as ProtoNamespaceConfig, UpdateNamespaceInfo,
};
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflow::v1::WorkflowExecutionInfo;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, DescribeNamespaceResponse, DescribeTaskQueueRequest,
    GetClusterInfoRequest, GetSystemInfoRequest, GetWorkflowExecutionHistoryRequest,
    ListNamespacesRequest, ListWorkflowExecutionsRequest, RegisterNamespaceRequest,
    UpdateNamespaceRequest,
};

use super::TemporalError;
use super::api::{
    ApiFuture, ClusterInfo, ExecutionRef, HistoryPage, NamespaceSpec, NamespaceState,
    NamespaceUpdate, ObservedAttributes, TaskQueueKind, TaskQueueState, TemporalApi,
    record_mutating_call, record_rpc,
};
use super::proxy::{ProxyChoice, ProxyEnv};
use super::retry::{self, CONNECT_TIMEOUT, RPC_TIMEOUT, RetryPolicy, is_transient};
use crate::config::types::SearchAttributeType;
use crate::reconcile::Context;

/// Certificates and key for TLS to the frontend, already read from their files.
#[derive(Clone)]
pub struct TlsMaterial {
    /// CA bundle (PEM) the server certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Client certificate and private key (PEM) for mTLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify in the server certificate (and send as SNI / :authority).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &format!("{} bytes", self.ca_pem.len()))
            .field(
                "client",
                &self.client.as_ref().map(|_| "<certificate and key>"),
            )
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsMaterial {
    /// Reads and checks the PEM files (`field` names the config path in messages).
    pub fn from_files(
        ca: &std::path::Path,
        client: Option<(&std::path::Path, &std::path::Path)>,
        server_name: Option<String>,
        field: &str,
    ) -> Result<Self, TemporalError> {
        let read = |p: &std::path::Path, what: &str| {
            crate::fsutil::read_limited(p, crate::fsutil::FileKind::Pem)
                .map_err(|e| TemporalError::Config(format!("{field}.{what}: {e}")))
        };
        let ca_pem = read(ca, "ca")?;
        check_certs(&ca_pem, &format!("{field}.ca"), ca)?;
        let client = match client {
            None => None,
            Some((cert, key)) => {
                let cert_pem = read(cert, "cert")?;
                check_certs(&cert_pem, &format!("{field}.cert"), cert)?;
                let key_pem = read(key, "key")?;
                if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                    return Err(TemporalError::Config(format!(
                        "{field}.key: {} holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)",
                        key.display()
                    )));
                }
                warn_if_key_readable_by_others(key, field);
                Some((cert_pem, key_pem))
            }
        };
        Ok(Self {
            ca_pem,
            client,
            server_name,
        })
    }
}

fn check_certs(pem: &[u8], field: &str, path: &std::path::Path) -> Result<(), TemporalError> {
    let n = CertificateDer::pem_slice_iter(pem)
        .filter(|c| c.is_ok())
        .count();
    if n == 0 {
        return Err(TemporalError::Config(format!(
            "{field}: {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(key: &std::path::Path, field: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{field}.key: {} is readable by group or others (mode {:o}); chmod 600 it",
            key.display(),
            meta.permissions().mode() & 0o777
        );
    }
}
#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_: &std::path::Path, _: &str) {}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// host:port of the frontend.
    pub address: String,
    pub tls: Option<TlsMaterial>,
    pub proxy: Option<ProxyChoice>,
    /// Sent as `authorization: Bearer` on every call (cluster.authorization.token).
    pub bearer: Option<crate::config::types::Secret>,
}

impl ConnectSettings {
    /// From `cluster.frontend` (paths relative to the config file) and the proxy variables.
    pub fn from_config(ctx: &Context) -> Result<Self, TemporalError> {
        let fe = &ctx.config.cluster.frontend;
        let tls = match &fe.tls {
            None => None,
            Some(t) => {
                let client = match (&t.cert, &t.key) {
                    (Some(c), Some(k)) => Some((ctx.resolve_path(c), ctx.resolve_path(k))),
                    (None, None) => None,
                    _ => {
                        return Err(TemporalError::Config(
                            "cluster.frontend.tls: set both `cert` and `key` for mTLS, or neither"
                                .into(),
                        ));
                    }
                };
                Some(TlsMaterial::from_files(
                    &ctx.resolve_path(&t.ca),
                    client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                    t.server_name.as_ref().map(|n| n.as_str().to_string()),
                    "cluster.frontend.tls",
                )?)
            }
        };
        let bearer =
            match &ctx.config.cluster.authorization {
                None => None,
                Some(a) => Some(a.token.resolve().map_err(|e| {
                    TemporalError::Config(format!("cluster.authorization.token: {e}"))
                })?),
            };
        let mut settings = Self::new(
            &fe.address.host,
            fe.address.port,
            tls,
            &ProxyEnv::from_env(),
        )?;
        settings.bearer = bearer;
        Ok(settings)
    }

    /// From parts; the proxy is chosen for `host:port` from `proxy_env`.
    pub fn new(
        host: &str,
        port: u16,
        tls: Option<TlsMaterial>,
        proxy_env: &ProxyEnv,
    ) -> Result<Self, TemporalError> {
        let proxy = proxy_env
            .resolve(host, port)
            .map_err(TemporalError::Config)?;
        Ok(Self {
            address: format!("{host}:{port}"),
            tls,
            proxy,
            bearer: None,
        })
    }

    fn options(&self) -> Result<ConnectionOptions, TemporalError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = Url::parse(&format!("{scheme}://{}", self.address)).map_err(|e| {
            TemporalError::Config(format!(
                "cluster.frontend.address: `{}` is not a usable address: {e}",
                self.address
            ))
        })?;
        let tls = self.tls.as_ref().map(|t| {
            let client = t.client.as_ref().map(|(cert, key)| {
                ClientTlsOptions::builder()
                    .client_cert(cert.clone())
                    .client_private_key(key.clone())
                    .build()
            });
            TlsOptions::builder()
                .server_root_ca_cert(t.ca_pem.clone())
                .maybe_domain(t.server_name.clone())
                .maybe_client_tls_options(client)
                .build()
        });
        let proxy = self.proxy.as_ref().map(|p| {
            HttpConnectProxyOptions::new(p.address.clone())
                .maybe_basic_auth(p.basic_auth.clone())
                .build()
        });
        Ok(ConnectionOptions::new(url)
            .identity(format!(
                "temporal-bootstrap/{}@{}",
                env!("CARGO_PKG_VERSION"),
                hostname()
            ))
            .maybe_tls_options(tls)
            .maybe_api_key(self.bearer.as_ref().map(|t| t.expose().to_string()))
            .maybe_http_connect_proxy(proxy)
            .dns_load_balancing(None)
            .connect_timeout(CONNECT_TIMEOUT)
            .retry_options(RetryOptions::no_retries())
            .build())
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The error and its causes on one line (tonic hides the interesting part in `source()`).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

fn looks_like_certificate_problem(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "handshake",
        "tls",
        "ssl",
        "alert",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// A TLS 1.3 server that refuses the client certificate sends its alert after the client has
/// finished the handshake: the client only sees the connection end, as a close or reset when
/// it was reading, or as a broken pipe when it was still writing the HTTP/2 preface.
fn closed_after_handshake(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    ["connection closed", "connection reset", "broken pipe"]
        .iter()
        .any(|k| m.contains(k))
}

fn status_text(s: &Status) -> String {
    let mut msg = s.message().to_string();
    if let Some(src) = std::error::Error::source(s) {
        let c = chain(src);
        if !msg.contains(&c) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&c);
        }
    }
    if msg.is_empty() {
        msg = "(no message)".into();
    }
    msg
}

fn tls_hint(msg: &str, tls: bool) -> String {
    if tls && msg.contains("400 Bad Request") {
        return format!(
            "the frontend answered HTTP 400 Bad Request instead of gRPC; a TLS-terminating front such as nginx does this when the client certificate is missing or not signed by the CA it trusts: set cluster.frontend.tls.cert and .key to a client certificate issued by the frontend's client CA (raw error: {msg})"
        );
    }
    if tls && closed_after_handshake(msg) {
        return format!(
            "{msg} (hint: the frontend closed the TLS connection right after the handshake; with TLS 1.3 \
             this is how a server with requireClientAuth (the Temporal server's frontend mTLS) refuses a \
             missing client certificate, or one not signed by a CA it trusts: set cluster.frontend.tls.cert \
             and .key to a client certificate issued by the frontend's client CA)"
        );
    }
    if looks_like_certificate_problem(msg) {
        format!(
            "{msg} (hint: check cluster.frontend.tls: the CA must have signed the server certificate, \
             server_name must match it, and an mTLS frontend needs a client certificate from its CA)"
        )
    } else {
        msg.to_string()
    }
}

/// The real adapter.
#[derive(Clone)]
pub struct GrpcTemporal {
    conn: Connection,
    address: String,
    tls: bool,
    policy: RetryPolicy,
}

enum ConnectFailure {
    Fatal(TemporalError),
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fatal(e) => write!(f, "{e}"),
            Self::Transient(m) | Self::Permanent(m) => f.write_str(m),
        }
    }
}

impl GrpcTemporal {
    /// Connects (TCP, TLS, proxy tunnel, then GetSystemInfo), retrying transient failures.
    pub async fn connect(
        settings: ConnectSettings,
        policy: RetryPolicy,
    ) -> Result<Self, TemporalError> {
        crate::ensure_crypto_provider();
        let options = settings.options()?;
        let via = settings
            .proxy
            .as_ref()
            .map(|p| format!(" via proxy {p}"))
            .unwrap_or_default();
        tracing::debug!(address = %settings.address, tls = settings.tls.is_some(), "connecting{via}");
        let what = format!("connect to {}{via}", settings.address);
        let (res, attempts) =
            retry::retry(
                policy,
                &what,
                |e: &ConnectFailure| matches!(e, ConnectFailure::Transient(_)),
                || {
                    let options = options.clone();
                    async move {
                        use temporalio_client::errors::ClientConnectError as E;
                        record_rpc("GetSystemInfo");
                        match Connection::connect(options).await {
                            Ok(c) => Ok(c),
                            Err(E::TonicTransportError(e)) => {
                                let msg = chain(&e);
                                if looks_like_certificate_problem(&msg) {
                                    Err(ConnectFailure::Permanent(msg))
                                } else {
                                    Err(ConnectFailure::Transient(msg))
                                }
                            }
                            Err(E::SystemInfoCallError(s)) if is_transient(s.code()) => {
                                Err(ConnectFailure::Transient(format!(
                                    "{:?}: {}",
                                    s.code(),
                                    status_text(&s)
                                )))
                            }
                            Err(E::SystemInfoCallError(s)) => Err(ConnectFailure::Permanent(
                                format!("GetSystemInfo: {:?}: {}", s.code(), status_text(&s)),
                            )),
                            Err(e @ E::DnsResolutionError { .. }) => {
                                Err(ConnectFailure::Transient(chain(&e)))
                            }
                            Err(e) => Err(ConnectFailure::Fatal(TemporalError::Config(format!(
                                "cluster.frontend: {}",
                                chain(&e)
                            )))),
                        }
                    }
                },
            )
            .await;
        match res {
            Ok(conn) => Ok(Self {
                conn,
                address: settings.address,
                tls: settings.tls.is_some(),
                policy,
            }),
            Err(ConnectFailure::Fatal(e)) => Err(e),
            Err(ConnectFailure::Transient(m) | ConnectFailure::Permanent(m)) => {
                Err(TemporalError::Connect {
                    address: format!("{}{via}", settings.address),
                    attempts,
                    message: tls_hint(&m, settings.tls.is_some()),
                })
            }
        }
    }

    /// One RPC with deadline and retries; the error keeps the status for callers to map.
    async fn call<T, F, Fut>(&self, rpc: &'static str, mut f: F) -> Result<T, (Status, u32)>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let what = format!("{rpc} on {}", self.address);
        let (res, attempts) = retry::retry(
            self.policy,
            &what,
            |s: &Status| is_transient(s.code()),
            || {
                record_rpc(rpc);
                f(self.conn.clone())
            },
        )
        .await;
        res.map(tonic::Response::into_inner)
            .map_err(|s| (s, attempts))
    }

    fn rpc_error(&self, rpc: &'static str, (status, attempts): (Status, u32)) -> TemporalError {
        TemporalError::Rpc {
            rpc,
            code: status.code(),
            message: tls_hint(&status_text(&status), self.tls),
            attempts,
        }
    }
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(RPC_TIMEOUT);
    r
}

fn namespace_state_name(v: i32) -> String {
    match ProtoNamespaceState::try_from(v) {
        Ok(ProtoNamespaceState::Registered) => "Registered".into(),
        Ok(ProtoNamespaceState::Deprecated) => "Deprecated".into(),
        Ok(ProtoNamespaceState::Deleted) => "Deleted".into(),
        _ => format!("Unknown({v})"),
    }
}

/// The visibility facts of one listed execution (custom search attribute values dropped).
fn execution_ref(e: WorkflowExecutionInfo) -> Option<ExecutionRef> {
    let x = e.execution?;
    let fields = e
        .search_attributes
        .map(|s| s.indexed_fields)
        .unwrap_or_default();
    let reported_problems = fields
        .get(REPORTED_PROBLEMS)
        .and_then(|p| serde_json::from_slice::<Vec<String>>(&p.data).ok())
        .unwrap_or_default();
    // ListWorkflowExecutions leaves `worker_deployment_name` empty (server 1.32: only describe
    // fills it), and a worker that names a deployment with versioning off records the name
    // anyway; the server's `TemporalWorkerDeploymentVersion` ("deployment:build") is set only
    // for executions that ran versioned.
    let worker_deployment = fields
        .get(DEPLOYMENT_VERSION)
        .and_then(|p| serde_json::from_slice::<String>(&p.data).ok())
        .and_then(|v| v.split_once(':').map(|(d, _)| d.to_string()))
        .unwrap_or_default();
    let mut search_attributes: Vec<String> = fields.into_keys().collect();
    search_attributes.sort();
    Some(ExecutionRef {
        workflow_id: x.workflow_id,
        run_id: x.run_id,
        workflow_type: e.r#type.map(|t| t.name).unwrap_or_default(),
        task_queue: e.task_queue,
        search_attributes,
        reported_problems,
        external_payloads: u64::try_from(e.external_payload_count).unwrap_or(0),
        external_payload_bytes: u64::try_from(e.external_payload_size_bytes).unwrap_or(0),
        worker_deployment,
    })
}

/// The server's search attribute naming the Worker Deployment version an execution ran on.
pub const DEPLOYMENT_VERSION: &str = "TemporalWorkerDeploymentVersion";

/// The server's own search attribute for repeated workflow task failures (server 1.29+).
pub const REPORTED_PROBLEMS: &str = "TemporalReportedProblems";

fn from_describe(r: DescribeNamespaceResponse) -> NamespaceState {
    let info = r.namespace_info.unwrap_or_default();
    let history_archival = r
        .config
        .as_ref()
        .is_some_and(|c| c.history_archival_state == ArchivalState::Enabled as i32);
    NamespaceState {
        history_archival,
        name: info.name,
        state: namespace_state_name(info.state),
        retention: r
            .config
            .and_then(|c| c.workflow_execution_retention_ttl)
            .and_then(|d| Duration::try_from(d).ok()),
        description: info.description,
        owner_email: info.owner_email,
        data: info.data.into_iter().collect(),
    }
}

/// Our type -> the protobuf enum.
pub fn to_indexed_value_type(t: SearchAttributeType) -> IndexedValueType {
    match t {
        SearchAttributeType::Bool => IndexedValueType::Bool,
        SearchAttributeType::Datetime => IndexedValueType::Datetime,
        SearchAttributeType::Double => IndexedValueType::Double,
        SearchAttributeType::Int => IndexedValueType::Int,
        SearchAttributeType::Keyword => IndexedValueType::Keyword,
        SearchAttributeType::KeywordList => IndexedValueType::KeywordList,
        SearchAttributeType::Text => IndexedValueType::Text,
    }
}

/// The protobuf enum -> our type (`None` for unspecified or unknown values).
pub fn from_indexed_value_type(v: i32) -> Option<SearchAttributeType> {
    match IndexedValueType::try_from(v).ok()? {
        IndexedValueType::Bool => Some(SearchAttributeType::Bool),
        IndexedValueType::Datetime => Some(SearchAttributeType::Datetime),
        IndexedValueType::Double => Some(SearchAttributeType::Double),
        IndexedValueType::Int => Some(SearchAttributeType::Int),
        IndexedValueType::Keyword => Some(SearchAttributeType::Keyword),
        IndexedValueType::KeywordList => Some(SearchAttributeType::KeywordList),
        IndexedValueType::Text => Some(SearchAttributeType::Text),
        IndexedValueType::Unspecified => None,
    }
}

impl TemporalApi for GrpcTemporal {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn cluster_info(&self) -> ApiFuture<'_, ClusterInfo> {
        Box::pin(async move {
            let sys = self
                .call("GetSystemInfo", |c| async move {
                    c.workflow_service()
                        .get_system_info(request(GetSystemInfoRequest::default()))
                        .await
                })
                .await
                .map_err(|e| self.rpc_error("GetSystemInfo", e))?;
            let info = self
                .call("GetClusterInfo", |c| async move {
                    c.workflow_service()
                        .get_cluster_info(request(GetClusterInfoRequest::default()))
                        .await
                })
                .await
                .map_err(|e| self.rpc_error("GetClusterInfo", e))?;
            let server_version = if sys.server_version.is_empty() {
                info.server_version.clone()
            } else {
                sys.server_version
            };
            Ok(ClusterInfo {
                server_version,
                cluster_name: info.cluster_name,
                cluster_id: info.cluster_id,
                persistence_store: info.persistence_store,
                visibility_store: info.visibility_store,
                history_shard_count: u32::try_from(info.history_shard_count).unwrap_or(0),
            })
        })
    }

    fn list_namespaces(&self) -> ApiFuture<'_, Vec<NamespaceState>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut token: Vec<u8> = Vec::new();
            loop {
                let page_token = token.clone();
                let resp = self
                    .call("ListNamespaces", |c| {
                        let page_token = page_token.clone();
                        async move {
                            c.workflow_service()
                                .list_namespaces(request(ListNamespacesRequest {
                                    page_size: 200,
                                    next_page_token: page_token,
                                    ..Default::default()
                                }))
                                .await
                        }
                    })
                    .await
                    .map_err(|e| self.rpc_error("ListNamespaces", e))?;
                out.extend(resp.namespaces.into_iter().map(from_describe));
                if resp.next_page_token.is_empty() {
                    return Ok(out);
                }
                token = resp.next_page_token;
            }
        })
    }

    fn list_executions<'a>(
        &'a self,
        namespace: &'a str,
        query: &'a str,
        limit: usize,
    ) -> ApiFuture<'a, Vec<ExecutionRef>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut token: Vec<u8> = Vec::new();
            while out.len() < limit {
                let page_token = token.clone();
                let page_size = i32::try_from((limit - out.len()).min(1000)).unwrap_or(1000);
                let resp = self
                    .call("ListWorkflowExecutions", |c| {
                        let page_token = page_token.clone();
                        async move {
                            c.workflow_service()
                                .list_workflow_executions(request(ListWorkflowExecutionsRequest {
                                    namespace: namespace.to_string(),
                                    page_size,
                                    next_page_token: page_token,
                                    query: query.to_string(),
                                }))
                                .await
                        }
                    })
                    .await
                    .map_err(|e| self.rpc_error("ListWorkflowExecutions", e))?;
                out.extend(resp.executions.into_iter().filter_map(execution_ref));
                if resp.next_page_token.is_empty() {
                    break;
                }
                token = resp.next_page_token;
            }
            out.truncate(limit);
            Ok(out)
        })
    }

    fn describe_task_queue<'a>(
        &'a self,
        namespace: &'a str,
        task_queue: &'a str,
        kind: TaskQueueKind,
    ) -> ApiFuture<'a, TaskQueueState> {
        Box::pin(async move {
            let task_queue_type = match kind {
                TaskQueueKind::Workflow => TaskQueueType::Workflow,
                TaskQueueKind::Activity => TaskQueueType::Activity,
            } as i32;
            let resp = self
                .call("DescribeTaskQueue", |c| async move {
                    c.workflow_service()
                        .describe_task_queue(request(DescribeTaskQueueRequest {
                            namespace: namespace.to_string(),
                            task_queue: Some(TaskQueue {
                                name: task_queue.to_string(),
                                kind: TaskQueueKindProto::Normal as i32,
                                ..Default::default()
                            }),
                            task_queue_type,
                            report_stats: true,
                            ..Default::default()
                        }))
                        .await
                })
                .await
                .map_err(|e| self.rpc_error("DescribeTaskQueue", e))?;
            let stats = resp.stats.unwrap_or_default();
            Ok(TaskQueueState {
                pollers: resp.pollers.into_iter().map(|p| p.identity).collect(),
                backlog_count: u64::try_from(stats.approximate_backlog_count).unwrap_or(0),
                backlog_age: stats
                    .approximate_backlog_age
                    .and_then(|d| Duration::try_from(d).ok())
                    .filter(|d| !d.is_zero()),
            })
        })
    }

    fn history_page<'a>(
        &'a self,
        namespace: &'a str,
        execution: &'a ExecutionRef,
        next_page_token: Vec<u8>,
    ) -> ApiFuture<'a, HistoryPage> {
        Box::pin(async move {
            let resp = self
                .call("GetWorkflowExecutionHistory", |c| {
                    let next_page_token = next_page_token.clone();
                    async move {
                        c.workflow_service()
                            .get_workflow_execution_history(request(
                                GetWorkflowExecutionHistoryRequest {
                                    namespace: namespace.to_string(),
                                    execution: Some(WorkflowExecution {
                                        workflow_id: execution.workflow_id.clone(),
                                        run_id: execution.run_id.clone(),
                                    }),
                                    maximum_page_size: 250,
                                    next_page_token,
                                    ..Default::default()
                                },
                            ))
                            .await
                    }
                })
                .await
                .map_err(|e| self.rpc_error("GetWorkflowExecutionHistory", e))?;
            let events = resp.history.map(|h| h.events).unwrap_or_default();
            Ok((events, resp.next_page_token))
        })
    }

    fn describe_namespace<'a>(&'a self, name: &'a str) -> ApiFuture<'a, NamespaceState> {
        Box::pin(async move {
            let resp = self
                .call("DescribeNamespace", |c| async move {
                    c.workflow_service()
                        .describe_namespace(request(DescribeNamespaceRequest {
                            namespace: name.to_string(),
                            ..Default::default()
                        }))
                        .await
                })
                .await;
            match resp {
                Ok(r) => Ok(from_describe(r)),
                Err((s, _)) if s.code() == Code::NotFound => {
                    Err(TemporalError::NamespaceNotFound(name.to_string()))
                }
                Err(e) => Err(self.rpc_error("DescribeNamespace", e)),
            }
        })
    }

    fn register_namespace<'a>(&'a self, spec: &'a NamespaceSpec) -> ApiFuture<'a, bool> {
        Box::pin(async move {
            let msg = RegisterNamespaceRequest {
                namespace: spec.name.clone(),
                description: spec.description.clone(),
                owner_email: spec.owner_email.clone(),
                // Protobuf Duration (prost-wkt-types) from std: cannot fail for day-scale retentions.
                workflow_execution_retention_period: spec.retention.try_into().ok(),
                data: spec.data.clone().into_iter().collect::<HashMap<_, _>>(),
                ..Default::default()
            };
            let resp = self
                .call("RegisterNamespace", |c| {
                    let msg = msg.clone();
                    record_mutating_call("RegisterNamespace", &spec.name);
                    async move { c.workflow_service().register_namespace(request(msg)).await }
                })
                .await;
            match resp {
                Ok(_) => Ok(true),
                Err((s, _)) if s.code() == Code::AlreadyExists => Ok(false),
                Err((s, attempts)) if s.code() == Code::InvalidArgument => {
                    Err(TemporalError::Refused(format!(
                        "the server refused to register namespace `{}` ({} attempt(s)): {}",
                        spec.name,
                        attempts,
                        status_text(&s)
                    )))
                }
                Err(e) => Err(self.rpc_error("RegisterNamespace", e)),
            }
        })
    }

    fn update_namespace<'a>(&'a self, update: &'a NamespaceUpdate) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let info_changed = update.description.is_some()
                || update.owner_email.is_some()
                || !update.data.is_empty();
            let msg = UpdateNamespaceRequest {
                namespace: update.name.clone(),
                update_info: info_changed.then(|| UpdateNamespaceInfo {
                    description: update.description.clone().unwrap_or_default(),
                    owner_email: update.owner_email.clone().unwrap_or_default(),
                    data: update.data.clone().into_iter().collect(),
                    ..Default::default()
                }),
                config: update.retention.map(|r| ProtoNamespaceConfig {
                    workflow_execution_retention_ttl: r.try_into().ok(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let resp = self
                .call("UpdateNamespace", |c| {
                    let msg = msg.clone();
                    record_mutating_call("UpdateNamespace", &update.name);
                    async move { c.workflow_service().update_namespace(request(msg)).await }
                })
                .await;
            match resp {
                Ok(_) => Ok(()),
                Err((s, _)) if s.code() == Code::NotFound => {
                    Err(TemporalError::NamespaceNotFound(update.name.clone()))
                }
                Err((s, attempts)) if s.code() == Code::InvalidArgument => {
                    Err(TemporalError::Refused(format!(
                        "the server refused to update namespace `{}` ({} attempt(s)): {}",
                        update.name,
                        attempts,
                        status_text(&s)
                    )))
                }
                Err(e) => Err(self.rpc_error("UpdateNamespace", e)),
            }
        })
    }

    fn list_search_attributes<'a>(
        &'a self,
        namespace: &'a str,
    ) -> ApiFuture<'a, ObservedAttributes> {
        Box::pin(async move {
            let resp = self
                .call("ListSearchAttributes", |c| async move {
                    c.operator_service()
                        .list_search_attributes(request(ListSearchAttributesRequest {
                            namespace: namespace.to_string(),
                        }))
                        .await
                })
                .await;
            match resp {
                Ok(r) => Ok(r
                    .custom_attributes
                    .into_iter()
                    .map(|(k, v)| (k, from_indexed_value_type(v)))
                    .collect::<BTreeMap<_, _>>()),
                Err((s, _)) if s.code() == Code::NotFound => {
                    Err(TemporalError::NamespaceNotFound(namespace.to_string()))
                }
                Err(e) => Err(self.rpc_error("ListSearchAttributes", e)),
            }
        })
    }

    fn add_search_attributes<'a>(
        &'a self,
        namespace: &'a str,
        attributes: &'a BTreeMap<String, SearchAttributeType>,
    ) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let msg = AddSearchAttributesRequest {
                namespace: namespace.to_string(),
                search_attributes: attributes
                    .iter()
                    .map(|(k, t)| (k.clone(), to_indexed_value_type(*t) as i32))
                    .collect(),
            };
            let resp = self
                .call("AddSearchAttributes", |c| {
                    let msg = msg.clone();
                    record_mutating_call("AddSearchAttributes", namespace);
                    async move {
                        c.operator_service()
                            .add_search_attributes(request(msg))
                            .await
                    }
                })
                .await;
            match resp {
                Ok(_) => Ok(()),
                Err((s, _)) if s.code() == Code::NotFound => {
                    Err(TemporalError::NamespaceNotFound(namespace.to_string()))
                }
                Err((s, attempts))
                    if matches!(
                        s.code(),
                        Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists
                    ) =>
                {
                    Err(TemporalError::Refused(format!(
                        "the server refused to add search attributes {} to namespace `{namespace}` ({attempts} attempt(s)): {:?}: {}",
                        attributes.keys().cloned().collect::<Vec<_>>().join(", "),
                        s.code(),
                        status_text(&s)
                    )))
                }
                Err(e) => Err(self.rpc_error("AddSearchAttributes", e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_mapping_round_trips() {
        for t in SearchAttributeType::ALL {
            assert_eq!(
                from_indexed_value_type(to_indexed_value_type(t) as i32),
                Some(t)
            );
        }
        assert_eq!(from_indexed_value_type(0), None);
        assert_eq!(from_indexed_value_type(99), None);
    }

    #[test]
    fn a_connection_closed_after_the_tls_handshake_points_at_the_client_certificate() {
        // What tonic reports when the real Temporal frontend (Go, TLS 1.3, requireClientAuth)
        // refuses the client certificate.
        let raw = "GetSystemInfo: Cancelled: operation was canceled: transport error: operation was canceled: connection closed";
        let hinted = tls_hint(raw, true);
        assert!(hinted.starts_with(raw), "{hinted}");
        assert!(
            hinted.contains("client certificate") && hinted.contains("cluster.frontend.tls.cert")
        );
        // Plaintext: no TLS hint.
        assert_eq!(tls_hint(raw, false), raw);
        // The same refusal while the client was still writing (seen on the real frontend).
        let raw = "GetSystemInfo: Unknown: transport error: transport error: connection error: stream closed because of a broken pipe";
        assert!(tls_hint(raw, true).contains("cluster.frontend.tls.cert"));
    }

    #[test]
    fn tls_material_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = TlsMaterial::from_files(&ca, None, None, "cluster.frontend.tls").unwrap_err();
        assert!(err.is_invalid());
        assert!(err.to_string().contains("cluster.frontend.tls.ca"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err =
            TlsMaterial::from_files(&missing, None, None, "cluster.frontend.tls").unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn tls_material_debug_hides_the_key() {
        let m = TlsMaterial {
            ca_pem: b"ca".to_vec(),
            client: Some((b"cert".to_vec(), b"SECRET-KEY".to_vec())),
            server_name: Some("localhost".into()),
        };
        assert!(!format!("{m:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn unreachable_server_is_retried_then_reported() {
        // A port nobody listens on: bind then drop to get a free one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = ConnectSettings::new("127.0.0.1", port, None, &ProxyEnv::default()).unwrap();
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            multiplier: 2,
            max_backoff: Duration::from_millis(20),
        };
        let err = match GrpcTemporal::connect(settings, policy).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(e) => e,
        };
        assert!(!err.is_invalid());
        let msg = err.to_string();
        assert!(msg.contains("after 3 attempt(s)"), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    }
}
