//! The HTTP side: Temporal's remote codec protocol, CORS for the Web UI, audit and metrics.
//!
//! Order of a request: origin, token and namespace rights are checked from the headers alone;
//! only then is the body read, streamed against `codec.limits.max_body_bytes` and
//! `codec.limits.body_read_timeout`. A caller without rights never makes the server hold a body.
//! Every answer other than 2xx is `{"error": "..."}`, and every request to a codec route, the
//! rejected ones included, writes one audit line and counts in the metrics.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;

pub use crate::serve::LabelText;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::auth::{Authenticator, Caller, Operation};
use super::crypto::{DecryptError, Keyring};
use super::keys::KeySource;
use super::payload::{PayloadJson, PayloadsJson};
use crate::config::codec::CodecLimits;

/// Bodies up to this size are processed on the async worker; larger ones on the blocking pool.
const INLINE_BODY_BYTES: usize = 64 * 1024;
/// Most bytes reserved up front from a declared Content-Length (the rest grows as data arrives).
const PREALLOCATE_MAX: usize = 1024 * 1024;
/// Headers a browser may send (preflight answer). `authorization-extras` is sent by the Temporal
/// Web UI (2.32.4 and later) with codec requests when "pass access token" is on.
pub const ALLOWED_HEADERS: &str = "authorization, authorization-extras, content-type, x-namespace";
/// The metrics' namespace label for namespaces that the configuration does not name.
pub const OTHER_NAMESPACE: &str = "_other";

/// The runtime form of `codec.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub write_timeout: Duration,
}

impl From<&CodecLimits> for Limits {
    fn from(l: &CodecLimits) -> Self {
        Self {
            // Validated to at most 1 GiB, which fits every usize we build for.
            max_body_bytes: usize::try_from(l.max_body_bytes).unwrap_or(usize::MAX),
            max_connections: l.max_connections as usize,
            header_read_timeout: l.header_read_timeout.as_duration(),
            body_read_timeout: l.body_read_timeout.as_duration(),
            write_timeout: l.write_timeout.as_duration(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&CodecLimits::default())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub caller: LabelText,
    pub namespace: LabelText,
    pub operation: LabelText,
    pub outcome: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key_id: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsLabels {
    pub operation: LabelText,
    pub outcome: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub reason: LabelText,
}

/// The codec server's counters and gauges (prefix `temporal_bootstrap_codec_`).
pub struct CodecMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    payloads: Family<RequestLabels, Counter>,
    /// Payloads encrypted, by key id: each used one random 96-bit nonce of that key, whose
    /// budget is 2^32 (NIST SP 800-38D); rotate long before (docs/payload-encryption.md).
    pub encryptions: Family<KeyLabels, Counter>,
    /// Connections open now.
    pub connections: Gauge,
    /// Times the accept loop found every connection slot taken and waited for one.
    pub connection_limit_waits: Counter,
    /// Connections closed before a complete exchange: `header_timeout`, `tls_handshake`,
    /// `write_timeout`.
    pub connection_errors: Family<ConnectionLabels, Counter>,
    /// Keys held now.
    pub keys: Gauge,
    /// 1 while the KMS answered its last call (0 without a KMS, or after a failed call).
    pub kms_up: Gauge,
    /// KMS calls by operation (`unwrap`, `probe`) and outcome.
    pub kms_requests: Family<KmsLabels, Counter>,
    encode_lock: Mutex<()>,
}

impl Default for CodecMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("temporal_bootstrap");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "codec_requests",
            "Codec server requests by caller, namespace, operation and outcome",
            requests.clone(),
        );
        let payloads = Family::<RequestLabels, Counter>::default();
        registry.register(
            "codec_payloads",
            "Payloads in codec server requests by caller, namespace, operation and outcome",
            payloads.clone(),
        );
        let encryptions = Family::<KeyLabels, Counter>::default();
        registry.register(
            "codec_encryptions",
            "Payloads encrypted by the codec server, by key id (each uses one random nonce of that key; rotate well before 2^32)",
            encryptions.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "codec_connections",
            "Codec server connections open now",
            connections.clone(),
        );
        let connection_limit_waits = Counter::default();
        registry.register(
            "codec_connection_limit_waits",
            "Times every codec server connection slot (codec.limits.max_connections) was taken",
            connection_limit_waits.clone(),
        );
        let connection_errors = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "codec_connection_errors",
            "Codec server connections closed before a complete request, by reason",
            connection_errors.clone(),
        );
        let keys = Gauge::default();
        registry.register(
            "codec_keys",
            "Encryption keys the codec server holds",
            keys.clone(),
        );
        let kms_up = Gauge::default();
        registry.register(
            "codec_kms_up",
            "1 while the KMS (codec.kms) answered its last unwrap or probe; 0 after a failure",
            kms_up.clone(),
        );
        let kms_requests = Family::<KmsLabels, Counter>::default();
        registry.register(
            "codec_kms_requests",
            "KMS calls of the codec server by operation and outcome",
            kms_requests.clone(),
        );
        Self {
            registry,
            requests,
            payloads,
            encryptions,
            connections,
            connection_limit_waits,
            connection_errors,
            keys,
            kms_up,
            kms_requests,
            encode_lock: Mutex::new(()),
        }
    }
}

impl CodecMetrics {
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let _guard = self.encode_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn connection_error(&self, reason: &str) {
        self.connection_errors
            .get_or_create(&ConnectionLabels {
                reason: reason.into(),
            })
            .inc();
    }
}

/// Everything a request needs; built once at start (the keyring grows when a new key id is
/// loaded, see [`super::keys`]).
pub struct CodecState {
    keyring: RwLock<Arc<Keyring>>,
    pub key_source: KeySource,
    pub auth: Authenticator,
    pub origins: BTreeSet<String>,
    pub metrics: CodecMetrics,
    pub limits: Limits,
    /// Namespaces the configuration names (access rules, and `namespaces:` of a complete
    /// platform.yaml): the only values the metrics' namespace label takes besides `_other`.
    pub namespaces: BTreeSet<String>,
}

impl CodecState {
    pub fn new(
        keyring: Keyring,
        key_source: KeySource,
        auth: Authenticator,
        origins: BTreeSet<String>,
        limits: Limits,
        namespaces: BTreeSet<String>,
    ) -> Self {
        let metrics = CodecMetrics::default();
        metrics.keys.set(keyring.ids().count() as i64);
        metrics.kms_up.set(i64::from(key_source.kms.is_some()));
        Self {
            keyring: RwLock::new(Arc::new(keyring)),
            key_source,
            auth,
            origins,
            metrics,
            limits,
            namespaces,
        }
    }

    /// The keys now (a cheap clone; a refresh swaps in a new keyring).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads key ids added to the configuration since start. True when the keyring changed.
    async fn refresh_keys(&self) -> bool {
        let current = self.keyring();
        match self.key_source.refresh(&current).await {
            Ok(None) => false,
            Ok(Some((ring, added))) => {
                self.metrics.keys.set(ring.ids().count() as i64);
                let current_id = ring.current_id().to_string();
                *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
                if self.key_source.kms.is_some() {
                    self.kms_result("unwrap", Ok(()));
                }
                tracing::info!(
                    target: "audit",
                    operation = "keys",
                    outcome = "loaded",
                    key_ids = added.join(",").as_str(),
                    current_key = current_id.as_str(),
                    "codec keys loaded"
                );
                true
            }
            Err(e) => {
                let reason = e.to_string();
                if matches!(e, super::keys::KeyError::Kms { .. }) {
                    self.kms_result("unwrap", Err(reason.clone()));
                }
                tracing::warn!(
                    target: "audit",
                    operation = "keys",
                    outcome = "error",
                    reason = reason.as_str(),
                    "codec keys not loaded; serving with the keys already held"
                );
                false
            }
        }
    }

    /// Counts a KMS call, sets `kms_up`, and writes an audit line when availability changes.
    fn kms_result(&self, operation: &'static str, r: Result<(), String>) {
        let ok = r.is_ok();
        self.metrics
            .kms_requests
            .get_or_create(&KmsLabels {
                operation: operation.into(),
                outcome: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        let was_up = self.metrics.kms_up.set(i64::from(ok)) == 1;
        if was_up != ok {
            let reason = r.err().unwrap_or_default();
            if ok {
                tracing::info!(target: "audit", operation = "kms", outcome = "available", reason = "", "KMS answers again");
            } else {
                tracing::warn!(
                    target: "audit",
                    operation = "kms",
                    outcome = "unavailable",
                    reason = reason.as_str(),
                    "KMS unavailable; serving with the keys already unwrapped"
                );
            }
        }
    }
}

/// How often the KMS is probed while the server runs.
pub const KMS_PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Probes the KMS every [`KMS_PROBE_INTERVAL`] (one unwrap of a loaded key) so `/metrics` and
/// the audit show an outage before a new key id needs it. Returns at once without a KMS.
pub async fn watch_kms(st: Arc<CodecState>) {
    if st.key_source.kms.is_none() || st.key_source.probe.is_none() {
        return;
    }
    let interval = std::env::var("TB_CODEC_KMS_PROBE_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(KMS_PROBE_INTERVAL, Duration::from_millis);
    loop {
        tokio::time::sleep(interval).await;
        if let Some(r) = st.key_source.probe().await {
            st.kms_result("probe", r.map_err(|e| e.to_string()));
        }
    }
}

pub fn router(state: Arc<CodecState>) -> Router {
    Router::new()
        .route("/encode", post(encode).options(preflight))
        .route("/decode", post(decode).options(preflight))
        // The Web UI (2.50+) asks here for a payload kept in external storage
        // (`metadata.messageType` = ExternalStorageReference). Access is a decode right.
        .route("/download", post(download).options(preflight))
        // The Temporal Proxy's codec contract also serves every route under a namespace path
        // segment, for the CLI's `--codec-endpoint https://codec/{namespace}` templating.
        .route("/{namespace}/encode", post(encode).options(preflight))
        .route("/{namespace}/decode", post(decode).options(preflight))
        .route("/{namespace}/download", post(download).options(preflight))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn encode(s: State<Arc<CodecState>>, ns: PathNamespace, r: Request) -> Response {
    handle(s, ns, r, Operation::Encode).await
}

async fn decode(s: State<Arc<CodecState>>, ns: PathNamespace, r: Request) -> Response {
    handle(s, ns, r, Operation::Decode).await
}

/// The namespace of `/{namespace}/decode` and friends; `None` on the plain routes.
type PathNamespace = Option<axum::extract::Path<String>>;

/// The outcome of one request, for the response, the audit line and the metric.
pub(crate) struct Outcome {
    status: StatusCode,
    outcome: &'static str,
    body: serde_json::Value,
    reason: Option<String>,
    /// A payload named a key id this server does not hold (worth re-reading the keys once).
    unknown_key: bool,
}

impl Outcome {
    fn error(status: StatusCode, outcome: &'static str, reason: String) -> Self {
        Self {
            status,
            outcome,
            body: json!({ "error": reason }),
            reason: Some(reason),
            unknown_key: false,
        }
    }
}

/// What the audit line and the metrics say about one request.
pub(crate) struct Record {
    caller: String,
    /// `X-Namespace`, printable and bounded (see [`clean`]).
    namespace: String,
    operation: &'static str,
    origin: Option<String>,
    payloads: usize,
    key_ids: BTreeSet<String>,
}

impl Record {
    fn new(headers: &HeaderMap, operation: &'static str) -> Self {
        Self::with_namespace(headers, operation, None)
    }

    /// The namespace comes from the path when the route has one, else from `X-Namespace`.
    fn with_namespace(headers: &HeaderMap, operation: &'static str, path: Option<&str>) -> Self {
        let header = header_str(headers, "x-namespace");
        Self {
            caller: "anonymous".into(),
            namespace: path.or(header).map(clean).unwrap_or_default(),
            operation,
            origin: header_str(headers, header::ORIGIN).map(String::from),
            payloads: 0,
            key_ids: BTreeSet::new(),
        }
    }
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Printable, bounded copy of an untrusted header value for logs.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(255).collect()
}

async fn handle(
    State(st): State<Arc<CodecState>>,
    ns: PathNamespace,
    req: Request,
    op: Operation,
) -> Response {
    let (parts, body) = req.into_parts();
    let path_ns = ns.map(|p| p.0);
    let mut rec = Record::with_namespace(&parts.headers, op.as_str(), path_ns.as_deref());
    let outcome = match authorize(&st, &parts.headers, path_ns.as_deref(), op, &mut rec) {
        Err(o) => o,
        Ok(()) => match read_body(&st, &parts.headers, body).await {
            Err(o) => o,
            Ok(bytes) => convert_body(&st, bytes, op, &mut rec).await,
        },
    };
    finish(&st, rec, outcome)
}

/// `POST /download`: authorised and audited like `/decode`. This server reads no external
/// payload storage, so a storage reference gets 404 with the reason, which the Web UI turns into
/// "your codec server is connected, but it isn't configured to download from external
/// storage"; a payload stored inline is decoded as `/decode` would.
async fn download(State(st): State<Arc<CodecState>>, ns: PathNamespace, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path_ns = ns.map(|p| p.0);
    let mut rec = Record::with_namespace(&parts.headers, "download", path_ns.as_deref());
    let outcome = match authorize(
        &st,
        &parts.headers,
        path_ns.as_deref(),
        Operation::Decode,
        &mut rec,
    ) {
        Err(o) => o,
        Ok(()) => match read_body(&st, &parts.headers, body).await {
            Err(o) => o,
            Ok(bytes) => match external_reference(&bytes) {
                Some(i) => Outcome::error(
                    StatusCode::NOT_FOUND,
                    "no_external_storage",
                    format!(
                        "payloads[{i}] is a reference to external payload storage, which this codec server does not read"
                    ),
                ),
                None => convert_body(&st, bytes, Operation::Decode, &mut rec).await,
            },
        },
    };
    finish(&st, rec, outcome)
}

/// The proto message type the SDKs put in `metadata.messageType` of a payload they moved to
/// external storage.
const EXTERNAL_STORAGE_REFERENCE: &[u8] = b"temporal.api.sdk.v1.ExternalStorageReference";

/// Index of the first payload that is an external storage reference (an unparsable body is left
/// to the decoder, which names the error).
fn external_reference(body: &[u8]) -> Option<usize> {
    use base64::Engine as _;
    let req: PayloadsJson = serde_json::from_slice(body).ok()?;
    req.payloads.iter().position(|p| {
        p.metadata.get("messageType").is_some_and(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .is_ok_and(|t| t == EXTERNAL_STORAGE_REFERENCE)
        })
    })
}

/// Origin, token, namespace and rights, from the headers alone (the body is not read yet).
fn authorize(
    st: &CodecState,
    headers: &HeaderMap,
    path_namespace: Option<&str>,
    op: Operation,
    rec: &mut Record,
) -> Result<(), Outcome> {
    if let Some(o) = rec.origin.as_deref()
        && !st.origins.contains(o)
    {
        return Err(Outcome::error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            format!("origin `{}` is not in codec.cors_origins", clean(o)),
        ));
    }
    let caller: Caller = st
        .auth
        .authenticate(header_str(headers, header::AUTHORIZATION), now_secs())
        .map_err(|e| Outcome::error(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()))?;
    rec.caller = caller.name.clone();
    if rec.namespace.is_empty() {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the X-Namespace header is required (or a namespace path: /{namespace}/decode)".into(),
        ));
    }
    // Rights are checked for one namespace: a request naming two is refused, not guessed.
    if let (Some(path), Some(header)) = (path_namespace, header_str(headers, "x-namespace"))
        && path != header
    {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "X-Namespace `{}` differs from the namespace in the path `{}`",
                clean(header),
                clean(path)
            ),
        ));
    }
    if !caller.rights.allows(op, &rec.namespace) {
        return Err(Outcome::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "caller `{}` may not {} payloads of namespace `{}`",
                caller.name,
                op.as_str(),
                rec.namespace
            ),
        ));
    }
    Ok(())
}

fn too_large(limit: usize) -> Outcome {
    Outcome::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than {limit} bytes (codec.limits.max_body_bytes)"),
    )
}

/// Reads the body of an authorised request: refused by its Content-Length when that is over
/// the limit, otherwise streamed and abandoned as soon as it passes the limit or the timeout.
async fn read_body(st: &CodecState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Outcome> {
    let limit = st.limits.max_body_bytes;
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let read = async move {
        let capacity = declared.map_or(0, |n| (n as usize).min(PREALLOCATE_MAX));
        let mut buf = Vec::with_capacity(capacity);
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("the request body could not be read: {e}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len().saturating_add(data.len()) > limit {
                    return Err(too_large(limit));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    };
    match tokio::time::timeout(st.limits.body_read_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(Outcome::error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request body did not arrive within {} ms (codec.limits.body_read_timeout)",
                st.limits.body_read_timeout.as_millis()
            ),
        )),
    }
}

/// Decrypting a large body is CPU work: keep it off the async workers.
async fn convert_body(
    st: &Arc<CodecState>,
    body: Vec<u8>,
    op: Operation,
    rec: &mut Record,
) -> Outcome {
    let body = Arc::new(body);
    let first = convert_once(st, body.clone(), op, rec).await;
    // A key id we do not hold: the operator may have added it (and rolled workers first).
    // Re-read the keys once (rate-limited), then answer with whatever we hold.
    if first.unknown_key && st.refresh_keys().await {
        return convert_once(st, body, op, rec).await;
    }
    first
}

async fn convert_once(
    st: &Arc<CodecState>,
    body: Arc<Vec<u8>>,
    op: Operation,
    rec: &mut Record,
) -> Outcome {
    let (outcome, count, key_ids) = if body.len() > INLINE_BODY_BYTES {
        let st2 = st.clone();
        tokio::task::spawn_blocking(move || convert(&st2, &body, op))
            .await
            .unwrap_or_else(|_| {
                (
                    Outcome::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "error",
                        "internal error while processing the request".into(),
                    ),
                    0,
                    BTreeSet::new(),
                )
            })
    } else {
        convert(st, &body, op)
    };
    rec.payloads = count;
    rec.key_ids = key_ids;
    outcome
}

/// The payloads: parse, encrypt or decrypt. Synchronous (CPU only).
fn convert(st: &CodecState, body: &[u8], op: Operation) -> (Outcome, usize, BTreeSet<String>) {
    let keyring = st.keyring();
    let mut key_ids = BTreeSet::new();
    let req: PayloadsJson = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let mut o = Outcome::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not {{\"payloads\": [...]}} in proto JSON: {e}"),
            );
            // serde messages can quote input values (payload data): the audit line gets only
            // the position.
            o.reason = Some(format!(
                "the body is not {{\"payloads\": [...]}} in proto JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ));
            return (o, 0, key_ids);
        }
    };
    let count = req.payloads.len();
    let mut out = Vec::with_capacity(count);
    for (i, pj) in req.payloads.iter().enumerate() {
        let p = match pj.to_payload() {
            Ok(p) => p,
            Err(e) => {
                let o = Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("payloads[{i}]: {e}"),
                );
                return (o, count, key_ids);
            }
        };
        let converted = match op {
            Operation::Encode => match keyring.encrypt(&p) {
                Ok(encrypted) => {
                    let current = keyring.current_id();
                    key_ids.insert(current.to_string());
                    // A payload that was already ours is passed through: no nonce was used.
                    if !Keyring::is_encrypted(&p) {
                        st.metrics
                            .encryptions
                            .get_or_create(&KeyLabels {
                                key_id: current.into(),
                            })
                            .inc();
                    }
                    encrypted
                }
                Err(e) => {
                    let o = Outcome::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "error",
                        format!("payloads[{i}]: {e}"),
                    );
                    return (o, count, key_ids);
                }
            },
            Operation::Decode => match keyring.decrypt(&p) {
                Ok((p, id)) => {
                    key_ids.extend(id);
                    p
                }
                Err(e) => {
                    let mut o = Outcome::error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "undecryptable",
                        format!("payloads[{i}]: {e}"),
                    );
                    o.unknown_key = matches!(e, DecryptError::UnknownKey(_));
                    return (o, count, key_ids);
                }
            },
        };
        out.push(PayloadJson::from_payload(&converted));
    }
    let ok = Outcome {
        status: StatusCode::OK,
        outcome: "ok",
        body: json!({ "payloads": out }),
        reason: None,
        unknown_key: false,
    };
    (ok, count, key_ids)
}

/// The metrics' namespace label: empty when the caller is not known (no series per invented
/// name), the namespace when the configuration names it, `_other` otherwise.
fn namespace_label(st: &CodecState, rec: &Record, outcome: &str) -> String {
    if rec.namespace.is_empty()
        || matches!(
            outcome,
            "unauthenticated" | "forbidden_origin" | "not_found" | "method_not_allowed"
        )
    {
        String::new()
    } else if st.namespaces.contains(&rec.namespace) {
        rec.namespace.clone()
    } else {
        OTHER_NAMESPACE.into()
    }
}

/// Writes the audit line, counts the request and builds the answer.
pub(crate) fn record(st: &CodecState, rec: &Record, o: &Outcome) {
    let labels = RequestLabels {
        caller: rec.caller.as_str().into(),
        namespace: LabelText(namespace_label(st, rec, o.outcome)),
        operation: rec.operation.into(),
        outcome: o.outcome.into(),
    };
    st.metrics.requests.get_or_create(&labels).inc();
    st.metrics
        .payloads
        .get_or_create(&labels)
        .inc_by(rec.payloads as u64);
    let key_ids: Vec<&str> = rec.key_ids.iter().map(String::as_str).collect();
    let key_ids = key_ids.join(",");
    let origin = rec.origin.as_deref().map(clean).unwrap_or_default();
    // Every value is passed as a `&str`, never with `%`: the text format then writes it quoted
    // with `"` and `\` escaped, and the JSON format as a JSON string, so no header can add a
    // field to the line.
    tracing::info!(
        target: "audit",
        caller = rec.caller.as_str(),
        namespace = rec.namespace.as_str(),
        operation = rec.operation,
        payloads = rec.payloads,
        outcome = o.outcome,
        status = o.status.as_u16(),
        key_ids = key_ids.as_str(),
        origin = origin.as_str(),
        reason = o.reason.as_deref().unwrap_or(""),
        "codec request"
    );
}

fn finish(st: &CodecState, rec: Record, o: Outcome) -> Response {
    record(st, &rec, &o);
    let mut resp = (o.status, axum::Json(o.body)).into_response();
    let h = resp.headers_mut();
    if o.status == StatusCode::UNAUTHORIZED {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if matches!(
        o.status,
        StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
    ) {
        // The rest of the body is not read: the connection cannot carry another request.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(o) = rec.origin.as_deref()
        && st.origins.contains(o)
    {
        add_cors(h, o);
    }
    resp
}

/// An HTTP parse error answered by the HTTP layer itself (400 or 431, empty body): audited and
/// counted like any refused request.
pub(crate) fn record_parse_error(st: &CodecState, status: StatusCode, reason: String) {
    let rec = Record {
        caller: "anonymous".into(),
        namespace: String::new(),
        operation: "unknown",
        origin: None,
        payloads: 0,
        key_ids: BTreeSet::new(),
    };
    record(st, &rec, &Outcome::error(status, "bad_request", reason));
}

fn add_cors(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// CORS preflight: only configured origins, only POST.
async fn preflight(State(st): State<Arc<CodecState>>, headers: HeaderMap) -> Response {
    let origin = header_str(&headers, header::ORIGIN);
    let method_ok = header_str(&headers, header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_none_or(|m| m.eq_ignore_ascii_case("POST"));
    match origin {
        Some(o) if st.origins.contains(o) && method_ok => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            add_cors(h, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            // Answered preflights are audited too: the line shows a browser at that origin was
            // about to call (the caller is unknown until the request itself).
            let rec = Record::new(&headers, "preflight");
            let ok = Outcome {
                status: StatusCode::NO_CONTENT,
                outcome: "ok",
                body: serde_json::Value::Null,
                reason: None,
                unknown_key: false,
            };
            record(&st, &rec, &ok);
            resp
        }
        _ => {
            // Not an origin we answer for: no CORS headers on the refusal either.
            let rec = Record::new(&headers, "preflight");
            let o = Outcome::error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "origin or method not allowed (codec.cors_origins; POST only)".into(),
            );
            record(&st, &rec, &o);
            (o.status, axum::Json(o.body)).into_response()
        }
    }
}

async fn not_found(State(st): State<Arc<CodecState>>, uri: Uri, headers: HeaderMap) -> Response {
    route_error(
        &st,
        &headers,
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such path `{}`; the codec server serves POST /encode, /decode and /download (also under /{{namespace}}/), GET /healthz, GET /metrics",
            clean(uri.path())
        ),
    )
}

async fn method_not_allowed(
    State(st): State<Arc<CodecState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    route_error(
        &st,
        &headers,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on `{}`",
            clean(method.as_str()),
            clean(uri.path())
        ),
    )
}

fn route_error(
    st: &CodecState,
    headers: &HeaderMap,
    status: StatusCode,
    outcome: &'static str,
    reason: String,
) -> Response {
    let rec = Record::new(headers, "unknown");
    let o = Outcome::error(status, outcome, reason);
    record(st, &rec, &o);
    (o.status, axum::Json(o.body)).into_response()
}

async fn metrics_handler(State(st): State<Arc<CodecState>>) -> Response {
    crate::serve::metrics_response(st.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let m = CodecMetrics::default();
        m.requests
            .get_or_create(&RequestLabels {
                caller: LabelText("a\"b\\c\nd".into()),
                namespace: "x\" outcome=\"ok".into(),
                operation: "decode".into(),
                outcome: "forbidden".into(),
            })
            .inc();
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"{caller="a\"b\\c\nd",namespace="x\" outcome=\"ok",operation="decode",outcome="forbidden"} 1"#
            ),
            "{text}"
        );
    }
}
